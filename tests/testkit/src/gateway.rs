//! The NATS gateway in the harness's TCP mode: what Envoy's listener does with the network
//! filter then `tcp_proxy`, on loopback sockets. Each accepted client gets a connection to
//! nats-server and a TCP stream context of the filter; the bytes each side sends go through
//! the filter's data callbacks, and what the filter forwards goes on to the other side.
//!
//! There is no TLS here: each listener stands for one client identity, which the gateway
//! sets as `connection.uri_san_peer_certificate`, where Envoy would put the mTLS peer's URI
//! SAN. So the same test can run against this gateway and against Envoy.
//!
//! As Envoy's timer does, a ticker calls the filter's `proxy_on_tick` at the period it set,
//! the harness's clock moved on with real time; a connection the filter closes from its
//! tick has its sockets shut.

use eventseal_harness::{Plugin, TcpStream as FilterStream};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// A connection being relayed: the filter's stream and both sockets.
struct Relay {
    stream: Arc<Mutex<FilterStream>>,
    sockets: [TcpStream; 2],
}

type Relays = Arc<Mutex<Vec<Relay>>>;

/// The gateway: one loopback listener per client identity.
pub struct HarnessGateway {
    plugin: Arc<Plugin>,
    listeners: Vec<(Option<String>, SocketAddr)>,
    stopping: Arc<AtomicBool>,
}

impl HarnessGateway {
    /// Starts listeners in front of the nats-server at `server`, one per identity (`None`:
    /// a client without a certificate).
    ///
    /// # Panics
    /// If a loopback port cannot be bound.
    pub fn start(plugin: Plugin, server: SocketAddr, identities: &[Option<&str>]) -> HarnessGateway {
        let plugin = Arc::new(plugin);
        let stopping = Arc::new(AtomicBool::new(false));
        let relays: Relays = Arc::default();
        {
            let (plugin, stopping, relays) = (Arc::clone(&plugin), Arc::clone(&stopping), Arc::clone(&relays));
            thread::spawn(move || tick(&plugin, &stopping, &relays));
        }
        let mut listeners = Vec::new();
        for identity in identities {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let addr = listener.local_addr().expect("a bound listener has an address");
            let identity = identity.map(str::to_owned);
            listeners.push((identity.clone(), addr));
            let (plugin, stopping, relays) = (Arc::clone(&plugin), Arc::clone(&stopping), Arc::clone(&relays));
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (plugin, identity, relays) = (Arc::clone(&plugin), identity.clone(), Arc::clone(&relays));
                    thread::spawn(move || serve(&plugin, client, server, identity.as_deref(), &relays));
                }
            });
        }
        HarnessGateway {
            plugin,
            listeners,
            stopping,
        }
    }

    /// Where a client with `identity` connects.
    ///
    /// # Panics
    /// If the gateway has no listener for it.
    pub fn addr(&self, identity: Option<&str>) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(id, _)| id.as_deref() == identity)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("the gateway has no listener for {identity:?}"))
    }

    /// The filter: its logs and counters.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}

impl Drop for HarnessGateway {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for (_, addr) in &self.listeners {
            // Wakes the accept loop, which then sees it is stopping.
            let _ = TcpStream::connect(addr);
        }
    }
}

/// Envoy's timer: `proxy_on_tick` every period the filter set (the clock moved on by as
/// much), then the sockets of connections the filter closed meanwhile are shut.
fn tick(plugin: &Plugin, stopping: &AtomicBool, relays: &Relays) {
    while !stopping.load(Ordering::SeqCst) {
        let period = plugin.tick_period().filter(|p| !p.is_zero());
        // A timer's period, not a wait for a condition.
        thread::sleep(period.unwrap_or(Duration::from_millis(50)));
        if let Some(period) = period {
            let _ = plugin.advance_time(period);
        }
        lock(relays).retain(|relay| {
            let closed = lock(&relay.stream).close_requested().is_some();
            if closed {
                for socket in &relay.sockets {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
            !closed
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays one client until either side closes or the filter closes the connection.
fn serve(plugin: &Plugin, client: TcpStream, server: SocketAddr, identity: Option<&str>, relays: &Relays) {
    let Ok(upstream) = TcpStream::connect(server) else { return };
    let Ok(stream) = plugin.tcp_stream() else { return };
    if let Some(identity) = identity {
        let _ = stream.set_property(["connection", "uri_san_peer_certificate"].as_slice(), identity);
    }
    let relay = Arc::new(Mutex::new(stream));
    if let (Ok(client), Ok(upstream)) = (client.try_clone(), upstream.try_clone()) {
        lock(relays).push(Relay {
            stream: Arc::clone(&relay),
            sockets: [client, upstream],
        });
    }
    let (client_in, server_in) = (client.try_clone(), upstream.try_clone());
    let (Ok(client_in), Ok(server_in)) = (client_in, server_in) else {
        return;
    };
    let from_server = {
        let (relay, client, upstream) = (Arc::clone(&relay), client.try_clone(), upstream.try_clone());
        thread::spawn(move || {
            if let (Ok(client), Ok(upstream)) = (client, upstream) {
                pump(&relay, server_in, client, upstream, false);
            }
        })
    };
    pump(&relay, client_in, upstream, client, true);
    let _ = from_server.join();
}

/// Reads one side and writes what the filter forwards to the other, until a side closes.
fn pump(relay: &Mutex<FilterStream>, mut from: TcpStream, mut to: TcpStream, other: TcpStream, from_client: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        let (out, closed) = {
            let mut stream = lock(relay);
            let sent = if from_client {
                stream.send_downstream_data(&buf[..n], n == 0)
            } else {
                stream.send_upstream_data(&buf[..n], n == 0)
            };
            let out = if from_client {
                stream.take_upstream_received()
            } else {
                stream.take_client_received()
            };
            (out, sent.is_err() || stream.close_requested().is_some())
        };
        if to.write_all(&out).is_err() || n == 0 || closed {
            break;
        }
    }
    for socket in [&from, &to, &other] {
        let _ = socket.shutdown(Shutdown::Both);
    }
}
