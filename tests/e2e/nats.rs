//! NATS through Envoy: a real nats-server behind a gateway listener (downstream mTLS from
//! the first byte, as NATS clients do it with TLS first; the filter, if any, before
//! `tcp_proxy`; plain TCP on loopback to nats-server), and the tests' clients: `async-nats`
//! through the gateway with a client certificate, and straight to nats-server (the tap,
//! which sees what the gateway let through).

use crate::envoy::{self, Envoy, Filter, Listener, ListenerTls, Protocol};
use crate::pki::{ClientIdentity, TestCa};
use async_nats::{Client, ConnectError, ConnectOptions};
use eventseal_testkit::nats::{NatsServer, RawClient};
use futures_util::StreamExt as _;
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway listener's name (and the filter's `vm_id`).
pub const LISTENER: &str = "nats";

/// The cluster of the nats-server behind the gateway.
const CLUSTER: &str = "nats-server";

/// How long a client may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a message may take to the server and back.
const ROUND_TRIP: Duration = Duration::from_secs(10);

/// nats-server behind Envoy, and the CA of the gateway's certificate and its clients'.
pub struct Gateway {
    /// Envoy, with the gateway listener [`LISTENER`].
    pub envoy: Envoy,
    /// The nats-server behind it.
    pub server: NatsServer,
    /// Signs Envoy's certificate (for 127.0.0.1 and `localhost`) and the clients'.
    pub ca: TestCa,
}

impl Gateway {
    /// A core NATS server behind a gateway with `filter` (`None`: `tcp_proxy` alone).
    ///
    /// # Panics
    /// When nats-server or Envoy is not installed or does not start.
    pub fn start(filter: Option<Filter>) -> Gateway {
        Gateway::start_in_front_of(NatsServer::start(), filter)
    }

    /// `server` (e.g. one with JetStream) behind a gateway with `filter`.
    ///
    /// # Panics
    /// When Envoy is not installed or does not start.
    pub fn start_in_front_of(server: NatsServer, filter: Option<Filter>) -> Gateway {
        Gateway::start_with_clusters(server, filter, &[])
    }

    /// `server` behind a gateway with `filter`, whose Envoy also has `clusters` (e.g. a KMS).
    ///
    /// # Panics
    /// When Envoy is not installed or does not start.
    pub fn start_with_clusters(server: NatsServer, filter: Option<Filter>, clusters: &[(String, SocketAddr)]) -> Gateway {
        let ca = TestCa::new();
        let listener = Listener {
            name: LISTENER.to_owned(),
            protocol: Protocol::Nats,
            filter,
            tls: Some(ListenerTls {
                cert: ca.server_cert_pem.clone(),
                key: ca.server_key_pem.clone(),
                client_ca: ca.cert_pem.clone(),
            }),
            cluster: CLUSTER.to_owned(),
        };
        let mut all = vec![(CLUSTER.to_owned(), server.addr())];
        all.extend_from_slice(clusters);
        let bootstrap = envoy::bootstrap(&[listener], &all);
        let envoy = Envoy::start(&bootstrap).unwrap_or_else(|r| panic!("Envoy refused ({}):\n{}", r.status, r.log));
        Gateway { envoy, server, ca }
    }

    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.envoy.listener(LISTENER)
    }

    /// A client certificate for `spiffe` (its URI SAN), trusting the gateway's certificate.
    pub fn identity(&self, spiffe: &str) -> ClientIdentity {
        self.ca.client(spiffe)
    }

    /// An `async-nats` client through the gateway as `spiffe`.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn client(&self, spiffe: &str) -> Client {
        connect_tls_first(self.addr(), &self.identity(spiffe))
            .await
            .unwrap_or_else(|e| panic!("connect through the gateway as {spiffe}: {e}\n{}", self.envoy.log()))
    }

    /// An `async-nats` client straight to nats-server, past the gateway.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn tap(&self) -> Client {
        connect_plain(self.server.addr())
            .await
            .unwrap_or_else(|e| panic!("connect to nats-server: {e}\n{}", self.server.log()))
    }

    /// A byte-level client through the gateway as `spiffe`, after the server's `INFO`.
    ///
    /// # Panics
    /// When it cannot connect or no `INFO` arrives.
    pub fn raw(&self, spiffe: &str) -> RawClient {
        RawClient::connect_tls_first(self.addr(), &self.identity(spiffe))
            .unwrap_or_else(|e| panic!("raw connect through the gateway as {spiffe}: {e}\n{}", self.envoy.log()))
    }
}

/// An `async-nats` client at `addr` with TLS first (`ConnectOptions::tls_first`),
/// presenting `identity`'s certificate and trusting only its CA. It never follows servers
/// that an `INFO` advertises: that would go around the gateway.
///
/// # Errors
/// When the connection, the TLS handshake or the NATS greeting fails.
pub async fn connect_tls_first(addr: SocketAddr, identity: &ClientIdentity) -> Result<Client, ConnectError> {
    let tls = identity
        .rustls_config()
        .map_err(|e| ConnectError::with_source(async_nats::ConnectErrorKind::Tls, e))?;
    ConnectOptions::new()
        .tls_first()
        .tls_client_config(tls)
        .ignore_discovered_servers()
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(format!("tls://{addr}"))
        .await
}

/// Returns once the server has processed everything `client` sent before (its
/// subscriptions are in place): a message to a fresh inbox of its own comes back, and a
/// server handles one connection's operations in order. (`Client::flush` only empties the
/// client's buffer.)
///
/// # Panics
/// When the message does not come back within 10 s.
pub async fn round_trip(client: &Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.expect("subscribe to an inbox");
    client.publish(inbox, Default::default()).await.expect("publish to the inbox");
    tokio::time::timeout(ROUND_TRIP, echo.next())
        .await
        .unwrap_or_else(|_| panic!("no round trip to the server within {ROUND_TRIP:?}"))
        .expect("the inbox subscription ended");
}

/// An `async-nats` client at `addr` over plain TCP.
///
/// # Errors
/// When the connection or the NATS greeting fails.
pub async fn connect_plain(addr: SocketAddr) -> Result<Client, ConnectError> {
    ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(format!("nats://{addr}"))
        .await
}
