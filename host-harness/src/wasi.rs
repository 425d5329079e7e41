//! WASI preview1: the handful of `wasi_snapshot_preview1` imports a proxy-wasm module's
//! `std` links (environment from the VM config, stdout and stderr as log lines, the
//! virtual clock, OS randomness), hand-written because they read the store's state.

use wasmtime::{Caller, Linker};

use crate::abi::{LogLevel, errno};
use crate::memory::{read, text, u, write};
use crate::store::HostState;

fn errno_of(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => errno::SUCCESS,
        Err(e) => e,
    }
}

fn wasi_write(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
    write(caller, ptr, bytes).map_err(|_| errno::FAULT)
}

fn wasi_read(caller: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<Vec<u8>, i32> {
    read(caller, i32::from_ne_bytes(ptr.to_ne_bytes()), i32::from_ne_bytes(len.to_ne_bytes())).map_err(|_| errno::FAULT)
}

fn environment_block(state: &HostState) -> Vec<Vec<u8>> {
    state
        .setup
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

/// Defines the `wasi_snapshot_preview1` imports.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        W,
        "args_sizes_get",
        |mut caller: Caller<'_, HostState>, argc: i32, size: i32| -> i32 {
            errno_of((|| {
                wasi_write(&mut caller, u(argc), &0u32.to_le_bytes())?;
                wasi_write(&mut caller, u(size), &0u32.to_le_bytes())
            })())
        },
    )?;
    linker.func_wrap(W, "args_get", |_: Caller<'_, HostState>, _argv: i32, _buf: i32| -> i32 {
        errno::SUCCESS
    })?;
    linker.func_wrap(
        W,
        "environ_sizes_get",
        |mut caller: Caller<'_, HostState>, count: i32, size: i32| -> i32 {
            let block = environment_block(caller.data());
            let total: usize = block.iter().map(Vec::len).sum();
            errno_of((|| {
                wasi_write(&mut caller, u(count), &u32::try_from(block.len()).unwrap_or(u32::MAX).to_le_bytes())?;
                wasi_write(&mut caller, u(size), &u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes())
            })())
        },
    )?;
    linker.func_wrap(
        W,
        "environ_get",
        |mut caller: Caller<'_, HostState>, environ: i32, buf: i32| -> i32 {
            let block = environment_block(caller.data());
            errno_of((|| {
                let (mut pointer, mut cursor) = (u(environ), u(buf));
                for entry in &block {
                    wasi_write(&mut caller, pointer, &cursor.to_le_bytes())?;
                    wasi_write(&mut caller, cursor, entry)?;
                    pointer += 4;
                    cursor += u32::try_from(entry.len()).map_err(|_| errno::FAULT)?;
                }
                Ok(())
            })())
        },
    )?;
    linker.func_wrap(
        W,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>, id: i32, _precision: i64, ret: i32| -> i32 {
            let state = caller.data();
            let nanos = match id {
                0 => state.now_nanos(),
                1..=3 => u64::try_from(state.elapsed.as_nanos()).unwrap_or(u64::MAX) + 1,
                _ => return errno::INVAL,
            };
            errno_of(wasi_write(&mut caller, u(ret), &nanos.to_le_bytes()))
        },
    )?;
    linker.func_wrap(W, "clock_res_get", |mut caller: Caller<'_, HostState>, id: i32, ret: i32| -> i32 {
        if !(0..=3).contains(&id) {
            return errno::INVAL;
        }
        errno_of(wasi_write(&mut caller, u(ret), &1u64.to_le_bytes()))
    })?;
    linker.func_wrap(
        W,
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: i32, iovs: i32, iovs_len: i32, written: i32| -> i32 {
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return errno::BADF,
            };
            errno_of((|| {
                let mut message = Vec::new();
                for i in 0..u(iovs_len) {
                    let iov = wasi_read(&mut caller, u(iovs) + i * 8, 8)?;
                    let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                    let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                    message.extend(wasi_read(&mut caller, ptr, len)?);
                }
                let total = u32::try_from(message.len()).unwrap_or(u32::MAX);
                if message.last() == Some(&b'\n') {
                    message.pop();
                }
                if total > 0 {
                    caller.data_mut().log(level, text(&message));
                }
                wasi_write(&mut caller, u(written), &total.to_le_bytes())
            })())
        },
    )?;
    linker.func_wrap(
        W,
        "fd_read",
        |_: Caller<'_, HostState>, _fd: i32, _iovs: i32, _len: i32, _read: i32| -> i32 { errno::NOSYS },
    )?;
    linker.func_wrap(W, "fd_close", |_: Caller<'_, HostState>, _fd: i32| -> i32 { errno::SUCCESS })?;
    linker.func_wrap(
        W,
        "fd_seek",
        |_: Caller<'_, HostState>, _fd: i32, _offset: i64, _whence: i32, _ret: i32| -> i32 { errno::SUCCESS },
    )?;
    linker.func_wrap(W, "fd_fdstat_get", |mut caller: Caller<'_, HostState>, fd: i32, ret: i32| -> i32 {
        if fd != 1 && fd != 2 {
            return errno::BADF;
        }
        let mut stat = [0u8; 24];
        stat[8..16].copy_from_slice(&64u64.to_le_bytes());
        errno_of(wasi_write(&mut caller, u(ret), &stat))
    })?;
    linker.func_wrap(W, "fd_prestat_get", |_: Caller<'_, HostState>, _fd: i32, _ret: i32| -> i32 {
        errno::BADF
    })?;
    linker.func_wrap(
        W,
        "fd_prestat_dir_name",
        |_: Caller<'_, HostState>, _fd: i32, _p: i32, _l: i32| -> i32 { errno::BADF },
    )?;
    linker.func_wrap(W, "random_get", |mut caller: Caller<'_, HostState>, buf: i32, len: i32| -> i32 {
        let mut bytes = vec![0u8; u(len) as usize];
        if getrandom::fill(&mut bytes).is_err() {
            return errno::NOSYS;
        }
        errno_of(wasi_write(&mut caller, u(buf), &bytes))
    })?;
    linker.func_wrap(W, "sched_yield", |_: Caller<'_, HostState>| -> i32 { errno::SUCCESS })?;
    linker.func_wrap(
        W,
        "poll_oneoff",
        |_: Caller<'_, HostState>, _i: i32, _o: i32, _n: i32, _r: i32| -> i32 { errno::NOSYS },
    )?;
    linker.func_wrap(W, "proc_exit", |_: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!("the module called proc_exit({code})")))
    })?;
    Ok(())
}
