//! State Envoy shares between the VMs of one `vm_id`: shared data, shared queues and stats.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::abi::Status;

/// Shared data, shared queues and metrics, shared by every plugin created with the same
/// handle (as Envoy shares them between the worker threads' VMs of one `vm_id`).
///
/// Each plugin gets a fresh one unless [`crate::PluginConfig::shared_state`] passes one in:
/// nothing is process-global, so independent tests never see each other's data. Clone the
/// handle to share it.
#[derive(Clone, Default)]
pub struct SharedState {
    inner: Arc<Mutex<SharedInner>>,
}

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down, or is set.
    Gauge,
    /// Records samples.
    Histogram,
}

/// A metric's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(u64),
    /// Every sample a histogram recorded, in order.
    Histogram(Vec<u64>),
}

impl MetricValue {
    /// The counter or gauge value, or the number of histogram samples.
    pub fn value(&self) -> u64 {
        match self {
            MetricValue::Counter(v) | MetricValue::Gauge(v) => *v,
            MetricValue::Histogram(samples) => samples.len() as u64,
        }
    }
}

#[derive(Default)]
struct SharedInner {
    data: HashMap<(String, String), (Vec<u8>, u32)>,
    next_cas: u32,
    queues: Vec<Queue>,
    metrics: BTreeMap<String, MetricValue>,
    /// Queue-ready notifications not yet delivered, per plugin instance.
    ready: HashMap<u64, Vec<(u32, u32)>>,
    next_instance: u64,
}

struct Queue {
    vm_id: String,
    name: String,
    owner: u64,
    root_context: u32,
    items: VecDeque<Vec<u8>>,
}

impl SharedState {
    /// A fresh, empty state.
    pub fn new() -> SharedState {
        SharedState::default()
    }

    fn lock(&self) -> MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value and CAS of a shared-data key, as `proxy_get_shared_data` returns them.
    pub fn shared_data(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().data.get(&(vm_id.to_owned(), key.to_owned())).cloned()
    }

    /// Stores a shared-data value as a plugin would (CAS 0 means unconditional).
    ///
    /// # Errors
    ///
    /// [`Status::CasMismatch`] when `cas` is not 0 and differs from the stored CAS.
    pub fn set_shared_data(&self, vm_id: &str, key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
        let mut inner = self.lock();
        let next = inner.take_cas();
        match inner.data.get_mut(&(vm_id.to_owned(), key.to_owned())) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return Err(Status::CasMismatch);
                }
                *entry = (value.to_vec(), next);
            }
            None => {
                inner.data.insert((vm_id.to_owned(), key.to_owned()), (value.to_vec(), next));
            }
        }
        Ok(())
    }

    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.lock().metrics.get(name).cloned()
    }

    /// Every metric, sorted by name.
    pub fn metrics(&self) -> Vec<(String, MetricValue)> {
        self.lock().metrics.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The metrics rendered the way Envoy's `/stats` admin endpoint lists them: one
    /// `name: value` line each (histograms as `name: count=N sum=S`), sorted by name.
    pub fn stats_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in self.lock().metrics.iter() {
            match value {
                MetricValue::Counter(v) | MetricValue::Gauge(v) => out.push_str(&format!("{name}: {v}\n")),
                MetricValue::Histogram(samples) => {
                    let sum: u64 = samples.iter().sum();
                    out.push_str(&format!("{name}: count={} sum={sum}\n", samples.len()));
                }
            }
        }
        out
    }

    /// The items waiting in a queue, oldest first.
    pub fn queue_items(&self, vm_id: &str, name: &str) -> Option<Vec<Vec<u8>>> {
        let inner = self.lock();
        inner
            .queues
            .iter()
            .find(|q| q.vm_id == vm_id && q.name == name)
            .map(|q| q.items.iter().cloned().collect())
    }

    // ---- used by the host ----

    pub(crate) fn new_instance(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_instance += 1;
        inner.next_instance
    }

    pub(crate) fn define_metric(&self, name: &str, kind: MetricKind) {
        let mut inner = self.lock();
        inner.metrics.entry(name.to_owned()).or_insert(match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram(Vec::new()),
        });
    }

    pub(crate) fn update_metric(&self, name: &str, update: impl FnOnce(&mut MetricValue)) {
        if let Some(value) = self.lock().metrics.get_mut(name) {
            update(value);
        }
    }

    pub(crate) fn register_queue(&self, vm_id: &str, name: &str, owner: u64, root_context: u32) -> u32 {
        let mut inner = self.lock();
        if let Some(index) = inner.queues.iter().position(|q| q.vm_id == vm_id && q.name == name) {
            let queue = &mut inner.queues[index];
            queue.owner = owner;
            queue.root_context = root_context;
            return token(index);
        }
        inner.queues.push(Queue {
            vm_id: vm_id.to_owned(),
            name: name.to_owned(),
            owner,
            root_context,
            items: VecDeque::new(),
        });
        token(inner.queues.len() - 1)
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.lock()
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(token)
    }

    pub(crate) fn dequeue(&self, queue: u32) -> Result<Vec<u8>, Status> {
        let mut inner = self.lock();
        let queue = index(queue).and_then(|i| inner.queues.get_mut(i)).ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    pub(crate) fn enqueue(&self, queue_token: u32, value: &[u8]) -> Result<(), Status> {
        let mut inner = self.lock();
        let queue = index(queue_token).and_then(|i| inner.queues.get_mut(i)).ok_or(Status::NotFound)?;
        queue.items.push_back(value.to_vec());
        let (owner, root) = (queue.owner, queue.root_context);
        inner.ready.entry(owner).or_default().push((root, queue_token));
        Ok(())
    }

    pub(crate) fn take_ready(&self, instance: u64) -> Vec<(u32, u32)> {
        self.lock().ready.remove(&instance).unwrap_or_default()
    }
}

impl SharedInner {
    fn take_cas(&mut self) -> u32 {
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        cas
    }
}

fn token(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn index(token: u32) -> Option<usize> {
    usize::try_from(token).ok()?.checked_sub(1)
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SharedState")
            .field("shared_data_keys", &inner.data.len())
            .field("queues", &inner.queues.len())
            .field("metrics", &inner.metrics.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_is_checked_only_for_existing_keys() {
        let state = SharedState::new();
        state.set_shared_data("vm", "k", b"1", 42).unwrap();
        let (_, cas) = state.shared_data("vm", "k").unwrap();
        assert_eq!(state.set_shared_data("vm", "k", b"2", cas + 1), Err(Status::CasMismatch));
        state.set_shared_data("vm", "k", b"2", cas).unwrap();
        assert_eq!(state.shared_data("vm", "k").unwrap().0, b"2");
        assert_eq!(state.shared_data("other-vm", "k"), None);
    }

    #[test]
    fn queues_notify_their_owner() {
        let state = SharedState::new();
        let token = state.register_queue("vm", "q", 7, 1);
        assert_eq!(state.resolve_queue("vm", "q"), Some(token));
        assert_eq!(state.dequeue(token), Err(Status::Empty));
        state.enqueue(token, b"x").unwrap();
        assert_eq!(state.take_ready(7), vec![(1, token)]);
        assert_eq!(state.dequeue(token), Ok(b"x".to_vec()));
        assert_eq!(state.enqueue(99, b"x"), Err(Status::NotFound));
    }
}
