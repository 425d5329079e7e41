//! The tests' HTTP/1.1 client, over `ureq`: plain or mTLS (a client certificate, rustls),
//! a request the way a case describes it (its `:authority` as `host`, the body in chunks
//! written separately), and whatever comes back, telling a complete response from one cut
//! short by a reset.
//!
//! Error statuses are answers, not errors; nothing is added to the request but what
//! HTTP/1.1 framing needs (no `user-agent`, `accept` or `accept-encoding`), so the filter
//! and the upstream see what the case says.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use ureq::config::AutoHeaderValue;
use ureq::http;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, SendBody};

/// How long a connect, a response or a body may wait for the server.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Pause between the body chunks of a request, so that they reach the server as separate
/// segments (Envoy then hands the filter separate body callbacks).
const CHUNK_GAP: Duration = Duration::from_millis(5);

/// A client certificate and the CA that signed the server's, for mTLS (PEM).
#[derive(Clone)]
pub struct ClientIdentity {
    cert: String,
    key: String,
    ca: String,
}

impl ClientIdentity {
    /// A client presenting `cert` with its private `key` and trusting servers whose
    /// certificate `ca` signed (all PEM).
    pub fn new(cert: String, key: String, ca: String) -> ClientIdentity {
        ClientIdentity { cert, key, ca }
    }

    /// The certificate, its private key and the CA it trusts (PEM), for clients that read
    /// them from files.
    pub fn pem(&self) -> (&str, &str, &str) {
        (&self.cert, &self.key, &self.ca)
    }

    /// The same identity as a rustls client configuration (ring as the provider), for
    /// clients of other protocols over TLS (the NATS tests' raw client and `async-nats`).
    ///
    /// # Errors
    ///
    /// When a PEM does not parse or rustls refuses the certificate and key.
    pub fn rustls_config(&self) -> io::Result<rustls::ClientConfig> {
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(ca.map_err(|e| invalid(&e))?).map_err(|e| invalid(&e))?;
        }
        let chain = CertificateDer::pem_slice_iter(self.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).map_err(|e| invalid(&e))?;
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(&e))
    }

    fn tls(&self) -> io::Result<TlsConfig> {
        let pem = |e: ureq::Error| io::Error::new(io::ErrorKind::InvalidInput, e);
        let cert = Certificate::from_pem(self.cert.as_bytes()).map_err(pem)?;
        let key = PrivateKey::from_pem(self.key.as_bytes()).map_err(pem)?;
        let ca = Certificate::from_pem(self.ca.as_bytes()).map_err(pem)?;
        Ok(TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
            .build())
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// A request on the wire: headers with pseudo-headers (`:method`, `:path`, `:authority`),
/// and the body in chunks.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Headers, pseudo-headers included (`:scheme` is ignored).
    pub headers: &'a [(String, String)],
    /// The body, if any.
    pub body: Option<&'a [u8]>,
    /// In how many writes the body goes out.
    pub chunks: usize,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The status, if a status line arrived.
    pub status: Option<u16>,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (decoded from chunked framing).
    pub body: Vec<u8>,
    /// Whether the response ended as its framing says (not cut by a reset).
    pub complete: bool,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// An agent for one exchange: no pooled connections, no redirects, statuses as answers,
/// no headers of its own.
fn agent(tls: Option<TlsConfig>) -> Agent {
    let mut config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .allow_non_standard_methods(true)
        .timeout_connect(Some(TIMEOUT))
        .timeout_recv_response(Some(TIMEOUT))
        .timeout_recv_body(Some(TIMEOUT))
        .timeout_send_body(Some(TIMEOUT));
    if let Some(tls) = tls {
        config = config.tls_config(tls);
    }
    config.build().into()
}

/// A body that a reader hands out chunk by chunk, pausing between chunks.
struct Chunked {
    parts: Vec<Vec<u8>>,
    next: usize,
    at: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(part) = self.parts.get(self.next) else {
            return Ok(0);
        };
        if self.at == 0 && self.next > 0 {
            std::thread::sleep(CHUNK_GAP);
        }
        let n = buf.len().min(part.len() - self.at);
        buf[..n].copy_from_slice(&part[self.at..self.at + n]);
        self.at += n;
        if self.at == part.len() {
            self.next += 1;
            self.at = 0;
        }
        Ok(n)
    }
}

/// Whether a failure happened before anything was sent (so there is no exchange to
/// report).
fn unreachable(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(e) => e.kind() == io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Sends `request` to `addr`, over mTLS when `identity` is given, and reads the response.
///
/// # Errors
///
/// When the connection cannot be made. A reset during the exchange is a [`Response`]
/// with `complete: false` (and `status: None` if it came before the status line).
pub fn send(addr: SocketAddr, identity: Option<&ClientIdentity>, request: &Request<'_>) -> io::Result<Response> {
    let pseudo = |name: &str| request.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
    let scheme = if identity.is_some() { "https" } else { "http" };
    let mut builder = http::Request::builder()
        .method(pseudo(":method"))
        .uri(format!("{scheme}://{addr}{}", pseudo(":path")))
        .header("host", pseudo(":authority"));
    for (name, value) in request.headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // ureq frames a POST, PUT or PATCH without a body as an empty chunked body, which a
    // server reads as a body still to come; `content-length: 0` says "no body" as the
    // request means it (Envoy ends the stream with the headers either way).
    let method = pseudo(":method");
    let needs_framing = ["POST", "PUT", "PATCH"].iter().any(|m| m.eq_ignore_ascii_case(method));
    if request.body.is_none() && needs_framing && !request.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        builder = builder.header("content-length", "0");
    }
    let send_body = match request.body {
        Some(body) => SendBody::from_owned_reader(Chunked {
            parts: crate::case::chunks(body, request.chunks).into_iter().map(<[u8]>::to_vec).collect(),
            next: 0,
            at: 0,
        }),
        None => SendBody::none(),
    };
    let http_request = builder.body(send_body).map_err(io::Error::other)?;
    let agent = agent(identity.map(ClientIdentity::tls).transpose()?);
    let mut answer = match agent.run(http_request) {
        Ok(answer) => answer,
        Err(e) if unreachable(&e) => return Err(io::Error::other(e)),
        // Envoy answered and closed, or reset, before a status line arrived.
        Err(_) => return Ok(Response::default()),
    };
    let mut response = Response {
        status: Some(answer.status().as_u16()),
        headers: answer
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: Vec::new(),
        complete: false,
    };
    let mut reader = answer.body_mut().with_config().limit(u64::MAX).reader();
    let mut buffer = [0u8; 16 * 1024];
    response.complete = loop {
        match reader.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => response.body.extend_from_slice(&buffer[..n]),
            Err(_) => break false,
        }
    };
    Ok(response)
}

/// A GET over plain HTTP (e.g. Envoy's admin API).
///
/// # Errors
///
/// When the connection fails.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let headers = [
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), addr.to_string()),
    ];
    send(
        addr,
        None,
        &Request {
            headers: &headers,
            body: None,
            chunks: 1,
        },
    )
}

/// One plain request with `headers` and `body` (framed by `content-length`, added unless
/// `headers` has it): status and body.
///
/// # Errors
///
/// When the server cannot be reached or the response does not arrive whole.
pub fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut all = vec![
        (":method".to_owned(), method.to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), addr.to_string()),
    ];
    all.extend(headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        all.push(("content-length".to_owned(), body.len().to_string()));
    }
    let response = send(
        addr,
        None,
        &Request {
            headers: &all,
            body: Some(body),
            chunks: 1,
        },
    )?;
    match (response.status, response.complete) {
        (Some(status), true) => Ok((status, response.body)),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{method} {path}: the response from {addr} was cut short"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Serves one connection: reads the request head (and `body_len` body bytes), answers
    /// `answer` and closes; returns the bytes received.
    fn serve_once(answer: &'static [u8], body_len: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let head_end = received.windows(4).position(|w| w == b"\r\n\r\n");
                if head_end.is_some_and(|end| received.len() >= end + 4 + body_len) {
                    break;
                }
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer).unwrap();
            received
        });
        (addr, thread)
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn sends_only_what_the_request_says() {
        let (addr, server) = serve_once(b"HTTP/1.1 422 Unprocessable\r\ncontent-length: 2\r\n\r\n{}", 9);
        let headers = headers(&[
            (":method", "POST"),
            (":path", "/events?x=1"),
            (":authority", "gateway.example"),
            ("content-type", "application/json"),
            ("content-length", "9"),
        ]);
        let response = send(
            addr,
            None,
            &Request {
                headers: &headers,
                body: Some(b"{\"a\":123}"),
                chunks: 3,
            },
        )
        .unwrap();
        assert_eq!(
            (response.status, response.complete, response.body.as_slice()),
            (Some(422), true, &b"{}"[..])
        );
        assert_eq!(
            String::from_utf8(server.join().unwrap()).unwrap(),
            "POST /events?x=1 HTTP/1.1\r\nhost: gateway.example\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"a\":123}"
        );
    }

    #[test]
    fn a_request_without_a_body_says_so() {
        let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0);
        let headers = headers(&[(":method", "POST"), (":path", "/"), (":authority", "a.example")]);
        let request = Request {
            headers: &headers,
            body: None,
            chunks: 1,
        };
        let response = send(addr, None, &request).unwrap();
        assert_eq!((response.status, response.complete), (Some(200), true));
        assert_eq!(
            String::from_utf8(server.join().unwrap()).unwrap(),
            "POST / HTTP/1.1\r\nhost: a.example\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_chunked_answer_is_decoded_and_a_cut_one_is_incomplete() {
        let (addr, _server) = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            0,
        );
        let response = get(addr, "/stats").unwrap();
        assert_eq!((response.complete, response.body.as_slice()), (true, &b"abcde"[..]));
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));

        let (addr, _server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", 0);
        let response = get(addr, "/").unwrap();
        assert_eq!(
            (response.status, response.complete, response.body.as_slice()),
            (Some(200), false, &b"abc"[..])
        );

        let (addr, _server) = serve_once(b"", 0);
        let response = get(addr, "/").unwrap();
        assert_eq!((response.status, response.complete), (None, false));
    }

    #[test]
    fn a_closed_port_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(get(port, "/").is_err());
    }
}
