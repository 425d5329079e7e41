//! Hosting `eventseal.component.wasm`, the WASI 0.2 component whose contract is `wit/`,
//! with wasmtime's component model: the Rust way to embed the component, and how tests
//! drive the very artifact that services in Python and JavaScript load.
//!
//! ```no_run
//! use eventseal_harness::component::{Exchange, SealerComponent};
//!
//! let component = SealerComponent::from_file("target/eventseal.component.wasm")?;
//! let policy = std::fs::read_to_string("policy.json").unwrap();
//! let keyring = std::env::var("EVENTSEAL_KEYRING").unwrap(); // from the service's secret store
//! let mut sealer = component.create(&policy, &keyring)?.expect("the policy and keyring load");
//! let exchange = Exchange {
//!     method: "POST".into(),
//!     path: "/events/orders".into(),
//!     authority: "events.example.org".into(),
//!     headers: vec![("content-type".into(), "application/json".into())],
//!     response: None,
//! };
//! match sealer.seal(br#"{"data":{"card":"4111"}}"#, &exchange, None)? {
//!     Ok(outcome) => println!("publish {} bytes", outcome.event.len()),
//!     Err(problem) => println!("refused: {:?} ({})", problem.kind, problem.status),
//! }
//! # Ok::<(), eventseal_harness::Error>(())
//! ```
//!
//! Every call returns `Result<Result<T, E>, Error>`: the outer error is the host's (the file,
//! compilation, a trap), the inner one the component's answer (`config-error`, `problem`).

use std::path::Path;

use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::abi::LogLevel;
use crate::error::Error;
use crate::log::LogLine;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eventseal",
        // So tests can compare whole outcomes, e.g. the byte and text forms'.
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::eventseal::seal::sealing::{
    BatchOutcome, BatchRefusal, ConfigDocument, ConfigError, Exchange, FieldOutcome, FieldResult, Header, Outcome, Principal, Problem,
    ProblemKind, TextOutcome,
};

/// The most the component may write to stderr (a panic message) that is kept for errors.
const STDERR_CAPACITY: usize = 64 * 1024;

/// A compiled `eventseal.component.wasm`. Compile once; every [`Sealer`] it creates has its
/// own store and instance, so sealers are independent and may live on different threads.
#[derive(Clone)]
pub struct SealerComponent {
    pre: bindings::EventsealPre<State>,
}

/// What a component instance's store holds: WASI with no files, no environment, no
/// network; the host's clocks and randomness; stderr captured for error reports.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl SealerComponent {
    /// Reads and compiles the component.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Compile`] if it is not a valid
    /// component, [`Error::Link`] if it imports more than WASI 0.2 or does not export
    /// `eventseal:seal/sealing@0.1.2`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Compiles the component from its bytes.
    ///
    /// # Errors
    /// As [`SealerComponent::from_file`], without the I/O.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let engine = crate::engine()?;
        let component = Component::new(&engine, bytes).map_err(|e| Error::Compile(format!("{e:#}")))?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = bindings::EventsealPre::new(pre).map_err(|e| Error::Link(format!("{e:#}")))?;
        Ok(Self { pre })
    }

    /// Builds a sealer from a policy (docs/CONFIG.md) and a keyring (a JWK Set), in a new
    /// instance of the component (`sealer.create` in the WIT).
    ///
    /// # Errors
    /// The outer [`Error`] if instantiation fails or the component traps; the inner
    /// [`ConfigError`] if the component refuses the policy or keyring.
    pub fn create(&self, policy: &str, keyring: &str) -> Result<Result<Sealer, ConfigError>, Error> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let mut store = Store::new(
            self.pre.engine(),
            State {
                wasi,
                table: ResourceTable::new(),
                stderr,
            },
        );
        let instance = self.pre.instantiate(&mut store).map_err(|e| trap(&store, "instantiate", &e))?;
        let created = instance
            .eventseal_seal_sealing()
            .sealer()
            .call_create(&mut store, policy, keyring)
            .map_err(|e| trap(&store, "[static]sealer.create", &e))?;
        Ok(created.map(|handle| Sealer {
            store,
            instance,
            handle: Some(handle),
        }))
    }
}

/// Turns a wasmtime error into the harness's, with what the component wrote to stderr.
fn trap(store: &Store<State>, function: &str, error: &wasmtime::Error) -> Error {
    let stderr = store.data().stderr.contents();
    let logs = String::from_utf8_lossy(&stderr)
        .lines()
        .map(|line| LogLine {
            level: LogLevel::Error,
            message: line.to_owned(),
            context_id: 0,
        })
        .collect();
    Error::Trap {
        function: function.to_owned(),
        message: format!("{error:#}"),
        logs,
    }
}

/// One `sealer` resource: a policy with its keyring, and the signature ids it accepted.
///
/// The four operations route the exchange to a rule, check that the rule fits the
/// operation and direction (else [`ProblemKind::NoRule`]), admit the principal and run
/// the rule's actions; see `wit/eventseal.wit`.
pub struct Sealer {
    store: Store<State>,
    instance: bindings::Eventseal,
    /// `None` only after the resource was dropped in [`Drop`].
    handle: Option<ResourceAny>,
}

/// One of the four operations of the `sealer` resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `seal` / `seal-text`.
    Seal,
    /// `open` / `open-text`.
    Open,
    /// `sign` / `sign-text`.
    Sign,
    /// `verify` / `verify-text`.
    Verify,
}

/// The operations that have a batch form (signatures are verified one event at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOperation {
    /// `seal-many`.
    Seal,
    /// `open-many`.
    Open,
    /// `sign-many`.
    Sign,
}

impl Sealer {
    /// Seals an event (the routed rule must have `seal`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn seal(&mut self, event: &[u8], exchange: &Exchange, principal: Option<&Principal>) -> Result<Result<Outcome, Problem>, Error> {
        self.call(Operation::Seal, event, exchange, principal)
    }

    /// Opens an event (the routed rule must have `open`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn open(&mut self, event: &[u8], exchange: &Exchange, principal: Option<&Principal>) -> Result<Result<Outcome, Problem>, Error> {
        self.call(Operation::Open, event, exchange, principal)
    }

    /// Signs an event (the routed rule must have `sign`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn sign(&mut self, event: &[u8], exchange: &Exchange, principal: Option<&Principal>) -> Result<Result<Outcome, Problem>, Error> {
        self.call(Operation::Sign, event, exchange, principal)
    }

    /// Verifies an event's signature (the routed rule must have `verify`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn verify(&mut self, event: &[u8], exchange: &Exchange, principal: Option<&Principal>) -> Result<Result<Outcome, Problem>, Error> {
        self.call(Operation::Verify, event, exchange, principal)
    }

    /// Runs `operation` in the byte form (`seal`, `open`, `sign`, `verify`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn call(
        &mut self,
        operation: Operation,
        event: &[u8],
        exchange: &Exchange,
        principal: Option<&Principal>,
    ) -> Result<Result<Outcome, Problem>, Error> {
        let handle = self.handle.ok_or(Error::Failed)?;
        let sealer = self.instance.eventseal_seal_sealing().sealer();
        let store = &mut self.store;
        let result = match operation {
            Operation::Seal => sealer.call_seal(store, handle, event, exchange, principal),
            Operation::Open => sealer.call_open(store, handle, event, exchange, principal),
            Operation::Sign => sealer.call_sign(store, handle, event, exchange, principal),
            Operation::Verify => sealer.call_verify(store, handle, event, exchange, principal),
        };
        self.trapped(operation.export(), result)
    }

    /// Runs `operation` in the text form (`seal-text`, ...), which takes and returns the
    /// event as a `string`.
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses.
    pub fn call_text(
        &mut self,
        operation: Operation,
        event: &str,
        exchange: &Exchange,
        principal: Option<&Principal>,
    ) -> Result<Result<TextOutcome, Problem>, Error> {
        let handle = self.handle.ok_or(Error::Failed)?;
        let sealer = self.instance.eventseal_seal_sealing().sealer();
        let store = &mut self.store;
        let result = match operation {
            Operation::Seal => sealer.call_seal_text(store, handle, event, exchange, principal),
            Operation::Open => sealer.call_open_text(store, handle, event, exchange, principal),
            Operation::Sign => sealer.call_sign_text(store, handle, event, exchange, principal),
            Operation::Verify => sealer.call_verify_text(store, handle, event, exchange, principal),
        };
        self.trapped(&format!("{}-text", operation.export()), result)
    }

    /// Runs `operation` on a batch of events (`seal-many`, `open-many`, `sign-many`).
    ///
    /// # Errors
    /// The outer [`Error`] if the component traps; the inner [`Problem`] if it refuses
    /// the batch as a whole.
    pub fn call_many(
        &mut self,
        operation: BatchOperation,
        events: &[String],
        exchange: &Exchange,
        principal: Option<&Principal>,
    ) -> Result<Result<BatchOutcome, Problem>, Error> {
        let handle = self.handle.ok_or(Error::Failed)?;
        let sealer = self.instance.eventseal_seal_sealing().sealer();
        let store = &mut self.store;
        let result = match operation {
            BatchOperation::Seal => sealer.call_seal_many(store, handle, events, exchange, principal),
            BatchOperation::Open => sealer.call_open_many(store, handle, events, exchange, principal),
            BatchOperation::Sign => sealer.call_sign_many(store, handle, events, exchange, principal),
        };
        self.trapped(&format!("{operation:?}-many"), result)
    }

    fn trapped<T>(&mut self, export: &str, result: wasmtime::Result<T>) -> Result<T, Error> {
        result.map_err(|e| {
            // A trapped instance cannot be used again.
            self.handle = None;
            trap(&self.store, export, &e)
        })
    }
}

impl Operation {
    /// The name of the byte form's export, for error reports.
    fn export(self) -> &'static str {
        match self {
            Self::Seal => "[method]sealer.seal",
            Self::Open => "[method]sealer.open",
            Self::Sign => "[method]sealer.sign",
            Self::Verify => "[method]sealer.verify",
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // Runs the component's destructor, which zeroizes the keys inside the instance.
        if let Some(handle) = self.handle.take() {
            let _ = handle.resource_drop(&mut self.store);
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SealerComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealerComponent").finish_non_exhaustive()
    }
}
