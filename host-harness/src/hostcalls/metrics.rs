//! Hostcalls for metrics: counters only go up, gauges go both ways, histograms record
//! samples and cannot be read, as in Envoy.

use wasmtime::{Caller, Linker};

use crate::abi::{Status, metric};
use crate::memory::{read_text, u, write_u32, write_u64};
use crate::shared::{MetricKind, MetricValue};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(linker, "proxy_define_metric", |caller,
                                          kind: i32,
                                          name_ptr: i32,
                                          name_len: i32,
                                          ret: i32| {
        let kind = u(kind);
        let metric_kind = match kind {
            metric::COUNTER => MetricKind::Counter,
            metric::GAUGE => MetricKind::Gauge,
            metric::HISTOGRAM => MetricKind::Histogram,
            _ => return Err(Status::BadArgument.into()),
        };
        let name = read_text(&mut caller, name_ptr, name_len)?;
        let state = caller.data_mut();
        state.shared.define_metric(&name, metric_kind);
        let id = (state.next_metric_seq << 2) | kind;
        state.next_metric_seq += 1;
        state.metrics.insert(id, (metric_kind, name));
        write_u32(&mut caller, ret, id)
    });
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, HostState>, id: i32, offset: i64| -> i32 {
            let state = caller.data();
            let result = match state.metrics.get(&u(id)) {
                None => Status::NotFound,
                Some((MetricKind::Counter, _)) if offset <= 0 => Status::BadArgument,
                Some((MetricKind::Histogram, _)) => Status::BadArgument,
                Some((_, name)) => {
                    state.shared.update_metric(name, |value| match value {
                        MetricValue::Counter(v) => *v = v.saturating_add(offset.unsigned_abs()),
                        MetricValue::Gauge(v) if offset >= 0 => *v = v.saturating_add(offset.unsigned_abs()),
                        MetricValue::Gauge(v) => *v = v.saturating_sub(offset.unsigned_abs()),
                        MetricValue::Histogram(_) => {}
                    });
                    Status::Ok
                }
            };
            i32::try_from(result.code()).unwrap_or(i32::MAX)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, HostState>, id: i32, value: i64| -> i32 {
            let value = u64::from_ne_bytes(value.to_ne_bytes());
            let state = caller.data();
            let result = match state.metrics.get(&u(id)) {
                None => Status::NotFound,
                Some((_, name)) => {
                    state.shared.update_metric(name, |metric| match metric {
                        MetricValue::Counter(v) => *v = v.saturating_add(value),
                        MetricValue::Gauge(v) => *v = value,
                        MetricValue::Histogram(samples) => samples.push(value),
                    });
                    Status::Ok
                }
            };
            i32::try_from(result.code()).unwrap_or(i32::MAX)
        },
    )?;
    host!(linker, "proxy_get_metric", |caller, id: i32, ret: i32| {
        let state = caller.data();
        let value = match state.metrics.get(&u(id)) {
            None => return Err(Status::NotFound.into()),
            Some((MetricKind::Histogram, _)) => return Err(Status::BadArgument.into()),
            Some((_, name)) => state.shared.metric(name).map_or(0, |m| m.value()),
        };
        write_u64(&mut caller, ret, value)
    });
    Ok(())
}
