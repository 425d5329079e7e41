//! One plugin VM: the wasmtime store and instance, and calling the module's exports with a
//! context current, as proxy-wasm-cpp-host does.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use wasmtime::{Func, Instance, Store, Val};

use crate::error::Error;
use crate::store::HostState;

/// The VM and its store, behind the plugin's mutex.
pub(crate) struct Vm {
    store: Store<HostState>,
    instance: Instance,
    failed: bool,
    /// Exports looked up once, with their number of results (`None`: not exported). A
    /// lookup by name and a type query per callback were a sixth of a stream's host time.
    exports: HashMap<&'static str, Option<(Func, usize)>>,
}

/// Locks a plugin's VM; a panic elsewhere (e.g. in an upstream handler) does not make it
/// unusable.
pub(crate) fn lock(vm: &Mutex<Vm>) -> MutexGuard<'_, Vm> {
    vm.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A wasmtime error with its causes, on one line.
pub(crate) fn chain(error: &wasmtime::Error) -> String {
    error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

impl Vm {
    pub(crate) fn new(store: Store<HostState>, instance: Instance) -> Vm {
        Vm {
            store,
            instance,
            failed: false,
            exports: HashMap::new(),
        }
    }

    pub(crate) fn host(&self) -> &HostState {
        self.store.data()
    }

    pub(crate) fn host_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Whether an earlier trap left the VM unusable.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Whether the module exports a function by this name.
    pub(crate) fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    pub(crate) fn new_context_id(&mut self) -> u32 {
        let host = self.host_mut();
        let id = host.next_context_id;
        host.next_context_id += 1;
        id
    }

    /// Calls an export with `context` as the current context. A missing export is skipped
    /// (`Ok(None)`), as cpp-host skips callbacks a module does not define.
    pub(crate) fn call(&mut self, name: &'static str, context: u32, args: &[u32]) -> Result<Option<u32>, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let export = match self.exports.get(name) {
            Some(export) => *export,
            None => {
                let export = self
                    .instance
                    .get_func(&mut self.store, name)
                    .map(|func| (func, func.ty(&self.store).results().len()));
                self.exports.insert(name, export);
                export
            }
        };
        let Some((func, result_count)) = export else {
            return Ok(None);
        };
        let params: Vec<Val> = args.iter().map(|a| Val::I32(i32::from_ne_bytes(a.to_ne_bytes()))).collect();
        let mut results = vec![Val::I32(0); result_count];
        {
            let host = self.host_mut();
            host.current = context;
            host.effective = 0;
            host.stop_iteration = false;
        }
        let outcome = func.call(&mut self.store, &params, &mut results);
        {
            let host = self.host_mut();
            host.current = 0;
            host.effective = 0;
        }
        match outcome {
            Ok(()) => Ok(results.first().and_then(Val::i32).map(|v| u32::from_ne_bytes(v.to_ne_bytes()))),
            Err(error) => {
                self.failed = true;
                Err(Error::Trap {
                    function: name.to_owned(),
                    message: chain(&error),
                    logs: self.host().logs.clone(),
                })
            }
        }
    }
}
