//! One NATS client connection through Envoy's network filter: core's [`Gateway`] reads both
//! directions, and each message a rule matches becomes an [`Exchange`] that is decided and
//! recorded like an HTTP body. Nothing here decides anything.
//!
//! Envoy shapes the flow (docs/OPERATIONS.md, "Envoy's limits on network filters"). Every
//! data callback continues, after replacing the buffer whole with the frames that are
//! complete: bytes of a frame still arriving stay in the gateway, never in Envoy. Data from
//! the server cannot be paused and resumed (`continueStream` is unimplemented for upstream
//! data), so every message is decided in its callback. With a KMS key source, a message
//! whose data key is not at hand (not fetched yet, not unwrapped yet, or the KMS down) is
//! refused with `kms-unavailable` while the call it needs goes out from the root's next
//! tick: the client is told, and a retry (or JetStream's redelivery) finds the key. What
//! cannot be read as the protocol closes that connection, and nothing of it is forwarded;
//! the client first gets an `-ERR` that says why (`eventseal nats-protocol-error: …`).

use crate::exchange::{Decided, Exchange, principal};
use crate::host::{self, Peer, log};
use crate::metrics::Counter;
use crate::vm::Vm;
use eventseal_core::{Decision, Direction, Gateway, Message, Operation, Principal, Problem, ProblemKind, Report, RequestHead, Verdict};
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, LogLevel, PeerType};

/// The filter of one client connection.
pub struct NatsStream {
    vm: Vm,
    /// This connection's context id, for the root to close it.
    id: u32,
    gateway: Gateway,
    /// The client's identity, read at the client's first data: Envoy decrypts nothing
    /// before the TLS handshake is done, while the server's `INFO` may come before it.
    principal: Option<Option<Principal>>,
    /// The connection is being closed: nothing more goes either way.
    closing: bool,
}

impl NatsStream {
    /// A new client connection of `vm`, context `id`.
    pub fn new(vm: Vm, id: u32) -> Self {
        let policy = vm.engine.policy();
        let seals = policy
            .rules
            .iter()
            .any(|r| r.applies_to(Direction::Request) && r.carries(Operation::Seal));
        let gateway = Gateway::new(seals, policy.limits.max_body_bytes, tls());
        Self {
            vm,
            id,
            gateway,
            principal: None,
            closing: false,
        }
    }

    /// Reads `size` bytes from `from`, and replaces them with what goes on.
    fn on_data(&mut self, from: Peer, size: usize) -> Action {
        let bytes = host::data(from, size);
        if self.closing {
            host::set_data(from, size, &[]);
            return Action::Continue;
        }
        if from == Peer::Client && self.principal.is_none() {
            self.principal = Some(principal(&self.vm, &[]));
        }
        // No delivery comes before the client's CONNECT and SUB, so none is decided without it.
        let principal = self.principal.clone().flatten();
        let vm = &self.vm;
        let direction = if from == Peer::Client {
            Direction::Request
        } else {
            Direction::Response
        };
        let decide = |message: Message<'_>| decide(vm, direction, &message, principal.clone());
        let out = match from {
            Peer::Client => self.gateway.from_client(&bytes, decide),
            Peer::Server => self.gateway.from_server(&bytes, decide),
        };
        let error = match out {
            Ok(out) => {
                host::set_data(from, size, &out);
                if self.gateway.closed() {
                    // The client has its -ERR.
                    self.close_after_this_callback();
                }
                return Action::Continue;
            }
            Err(error) => error,
        };
        // The error names the rule of the protocol that was broken, never payload bytes.
        let side = if from == Peer::Client { "client" } else { "server" };
        log(
            LogLevel::Info,
            &format!("eventseal: closing a NATS connection: the {side} sent {error}"),
        );
        self.vm.metrics.add(&[Counter::NatsProtocolErrors]);
        match from {
            // Only the server's bytes reach the client: a PING goes to the server in place
            // of what the client sent, and the -ERR rides on its PONG.
            Peer::Client => {
                host::set_data(from, size, &self.gateway.refuse_client(&error));
            }
            Peer::Server => {
                host::set_data(from, size, &Gateway::server_refused(&error));
                self.close_after_this_callback();
            }
        }
        Action::Continue
    }

    /// Closes the connection at the root's next tick, once the `-ERR` this callback wrote
    /// has left (at once if too many closes wait already).
    fn close_after_this_callback(&mut self) {
        self.closing = true;
        if !self.vm.closes.borrow_mut().defer(self.id) {
            host::close_client();
        }
    }
}

/// The verdict on one message: routed on its subject and direction, its producer admitted
/// on publish, its payload decided on like a body, and each decision recorded.
fn decide(vm: &Vm, direction: Direction, message: &Message<'_>, principal: Option<Principal>) -> Verdict {
    let head = RequestHead::nats(message.subject, message.headers);
    let Some(rule) = vm.engine.route_in(&head, direction) else {
        return Verdict::Forward(None);
    };
    let exchange = Exchange::message(rule, direction, message.subject, message.headers, principal);
    if direction == Direction::Request
        && let Err(problem) = vm.engine.admit(exchange.rule(vm), exchange.principal.as_ref())
    {
        let _problem_json = exchange.refused(vm, None, &problem, &Report::default());
        return Verdict::Refuse(problem.kind);
    }
    if !exchange.rule(vm).decides(direction) {
        // Admission was the whole decision.
        exchange.audit(vm, None, &Report::default(), None);
        return Verdict::Forward(None);
    }
    match exchange.decide(vm, direction, message.payload, None) {
        Decided::Now(Decision::Forward { body, report, .. }) => {
            exchange.forwarded(vm, direction, &report);
            Verdict::Forward(body)
        }
        Decided::Now(Decision::Refuse { problem, report }) => {
            let _problem_json = exchange.refused(vm, Some(direction), &problem, &report);
            Verdict::Refuse(problem.kind)
        }
        // The calls were queued for the root's tick; this message cannot wait for them.
        Decided::Wait(_) => {
            if let Some(kms) = vm.kms.as_deref() {
                let problem = Problem::kms_unavailable(&kms.borrow().transit().source(), direction, 1);
                let _problem_json = exchange.refused(vm, Some(direction), &problem, &Report::default());
            }
            Verdict::Refuse(ProblemKind::KmsUnavailable)
        }
    }
}

/// Whether the client reached Envoy over TLS (then `INFO` says `tls_required`, as it is).
fn tls() -> bool {
    host::property_text(&["connection", "tls_version"]).is_some()
}

impl Context for NatsStream {}

impl StreamContext for NatsStream {
    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.on_data(Peer::Client, data_size)
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.on_data(Peer::Server, data_size)
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {
        self.closing = true;
    }
}

/// The filter of a connection when the configuration was refused: closes it at once, like
/// the HTTP filter answers 503, so nothing passes unchecked.
pub struct UnconfiguredNats;

impl Context for UnconfiguredNats {}

impl StreamContext for UnconfiguredNats {
    fn on_new_connection(&mut self) -> Action {
        host::close_client();
        Action::Pause
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        host::set_data(Peer::Client, data_size, &[]);
        host::close_client();
        Action::Pause
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        host::set_data(Peer::Server, data_size, &[]);
        Action::Continue
    }
}
