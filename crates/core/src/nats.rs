//! The NATS client protocol as data (nats.docs, "Client Protocol"): bytes in, whole frames
//! out, and whole frames back to bytes with their counts recomputed. No I/O: a host feeds
//! what it reads, in pieces of any size, and writes what it gets back, the shape of
//! `kms.rs`.
//!
//! The rules this reader holds to: operation names are case-insensitive; fields are
//! separated by runs of spaces or tabs; every control line and every payload ends with
//! `\r\n`; a control line is at most [`MAX_CONTROL_LINE`] bytes; a payload is at most the
//! `max_payload` the reader was made with. What it cannot read is an error, never a skip:
//! the host closes that connection.

use crate::problem::ProblemKind;
use core::fmt;

/// Longest control line accepted, `\r\n` included (nats-server's default).
pub const MAX_CONTROL_LINE: usize = 4096;

/// One protocol message, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// `INFO {json}` (server).
    Info(String),
    /// `CONNECT {json}` (client).
    Connect(String),
    /// `PUB`, or `HPUB` when `headers` is set (client).
    Pub {
        /// The subject.
        subject: String,
        /// The reply subject.
        reply: Option<String>,
        /// The `NATS/1.0` header block, `\r\n\r\n` included (HPUB only).
        headers: Option<Vec<u8>>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `MSG`, or `HMSG` when `headers` is set (server).
    Msg {
        /// The subject.
        subject: String,
        /// The subscription id.
        sid: String,
        /// The reply subject.
        reply: Option<String>,
        /// The `NATS/1.0` header block (HMSG only).
        headers: Option<Vec<u8>>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `SUB <subject> [queue] <sid>` (client).
    Sub {
        /// The subject.
        subject: String,
        /// The queue group.
        queue: Option<String>,
        /// The subscription id.
        sid: String,
    },
    /// `UNSUB <sid> [max_msgs]` (client).
    Unsub {
        /// The subscription id.
        sid: String,
        /// Messages after which the subscription ends.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` (server).
    Ok,
    /// `-ERR '<message>'` (server).
    Err(String),
}

/// Why the bytes are not the NATS protocol. The connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A control line longer than [`MAX_CONTROL_LINE`].
    ControlLineTooLong,
    /// A payload larger than `max_payload`.
    PayloadTooLarge {
        /// The announced size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not an operation this protocol has, or a malformed one; says which.
    Malformed(&'static str),
    /// The client sent more than [`MAX_WAITING`] pings and refused messages that the
    /// server has not answered yet.
    Backlog,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ControlLineTooLong => write!(f, "control line longer than {MAX_CONTROL_LINE} bytes"),
            Self::PayloadTooLarge { size, limit } => write!(f, "payload of {size} bytes is larger than {limit}"),
            Self::Malformed(what) => write!(f, "malformed protocol: {what}"),
            Self::Backlog => write!(f, "more than {MAX_WAITING} pings and refusals wait for the server"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads frames from a byte stream that arrives in pieces.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Where the next frame starts in `buffer`: frames read are dropped once per
    /// [`FrameReader::push`], not each, so many frames in one read cost one move.
    start: usize,
    max_payload: usize,
}

impl FrameReader {
    /// A reader that refuses payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            max_payload,
        }
    }

    /// Refuses payloads over `max_payload` from now on (a server's `INFO` names its limit).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// Bytes held for a frame that is not complete yet: at most `max_payload` plus the
    /// control line and two line ends.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one is complete.
    ///
    /// # Errors
    /// [`FrameError`] for bytes that are not the protocol, a control line over the limit,
    /// or a payload over `max_payload`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let buffer = &self.buffer[self.start..];
        let Some(line_end) = buffer.windows(2).position(|w| w == b"\r\n") else {
            return if buffer.len() >= MAX_CONTROL_LINE {
                Err(FrameError::ControlLineTooLong)
            } else {
                Ok(None)
            };
        };
        if line_end + 2 > MAX_CONTROL_LINE {
            return Err(FrameError::ControlLineTooLong);
        }
        let line = std::str::from_utf8(&buffer[..line_end]).map_err(|_| FrameError::Malformed("control line is not UTF-8"))?;
        let (op, rest) = split_op(line);
        let fields: Vec<&str> = rest.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
        let upper = op.to_ascii_uppercase();
        let (frame, consumed) = match upper.as_str() {
            "PING" | "PONG" | "+OK" if !fields.is_empty() => return Err(FrameError::Malformed("arguments after PING, PONG or +OK")),
            "PING" => (Frame::Ping, line_end + 2),
            "PONG" => (Frame::Pong, line_end + 2),
            "+OK" => (Frame::Ok, line_end + 2),
            "-ERR" => (Frame::Err(rest.trim().trim_matches('\'').to_owned()), line_end + 2),
            "INFO" => (Frame::Info(rest.trim().to_owned()), line_end + 2),
            "CONNECT" => (Frame::Connect(rest.trim().to_owned()), line_end + 2),
            "SUB" => {
                let (subject, queue, sid) = match fields.as_slice() {
                    [subject, sid] => (*subject, None, *sid),
                    [subject, queue, sid] => (*subject, Some((*queue).to_owned()), *sid),
                    _ => return Err(FrameError::Malformed("SUB takes a subject, an optional queue and a sid")),
                };
                (
                    Frame::Sub {
                        subject: subject.to_owned(),
                        queue,
                        sid: sid.to_owned(),
                    },
                    line_end + 2,
                )
            }
            "UNSUB" => {
                let (sid, max) = match fields.as_slice() {
                    [sid] => (*sid, None),
                    [sid, max] => (
                        *sid,
                        Some(max.parse().map_err(|_| FrameError::Malformed("UNSUB max_msgs is not a number"))?),
                    ),
                    _ => return Err(FrameError::Malformed("UNSUB takes a sid and an optional max_msgs")),
                };
                (Frame::Unsub { sid: sid.to_owned(), max }, line_end + 2)
            }
            "PUB" | "HPUB" | "MSG" | "HMSG" => {
                let with_headers = upper.starts_with('H');
                let with_sid = upper.ends_with("MSG");
                let counts = if with_headers { 2 } else { 1 };
                let names = if with_sid { 2 } else { 1 };
                if fields.len() != names + counts && fields.len() != names + counts + 1 {
                    return Err(FrameError::Malformed("wrong number of fields"));
                }
                let number = |text: &str| {
                    text.parse::<usize>()
                        .map_err(|_| FrameError::Malformed("a byte count is not a number"))
                };
                let total = number(fields[fields.len() - 1])?;
                let header_len = if with_headers { number(fields[fields.len() - 2])? } else { 0 };
                if header_len > total {
                    return Err(FrameError::Malformed("header bytes exceed total bytes"));
                }
                if total > self.max_payload {
                    return Err(FrameError::PayloadTooLarge {
                        size: total,
                        limit: self.max_payload,
                    });
                }
                let reply = (fields.len() == names + counts + 1).then(|| fields[names].to_owned());
                let start = line_end + 2;
                let Some(body) = buffer.get(start..start + total + 2) else {
                    return Ok(None);
                };
                if &body[total..] != b"\r\n" {
                    return Err(FrameError::Malformed("payload does not end with CRLF"));
                }
                let headers = with_headers.then(|| body[..header_len].to_vec());
                let payload = body[header_len..total].to_vec();
                let subject = fields[0].to_owned();
                let frame = if with_sid {
                    Frame::Msg {
                        subject,
                        sid: fields[1].to_owned(),
                        reply,
                        headers,
                        payload,
                    }
                } else {
                    Frame::Pub {
                        subject,
                        reply,
                        headers,
                        payload,
                    }
                };
                (frame, start + total + 2)
            }
            _ => return Err(FrameError::Malformed("unknown operation")),
        };
        self.start += consumed;
        Ok(Some(frame))
    }
}

/// The operation name and the rest of a control line.
fn split_op(line: &str) -> (&str, &str) {
    let end = line.find([' ', '\t']).unwrap_or(line.len());
    (&line[..end], &line[end..])
}

impl Frame {
    /// The frame on the wire, its byte counts computed from what it holds.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let body = |out: &mut Vec<u8>, headers: &Option<Vec<u8>>, payload: &[u8]| {
            if let Some(headers) = headers {
                out.extend_from_slice(format!(" {} {}\r\n", headers.len(), headers.len() + payload.len()).as_bytes());
                out.extend_from_slice(headers);
            } else {
                out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
            }
            out.extend_from_slice(payload);
        };
        match self {
            Self::Info(json) => out.extend_from_slice(format!("INFO {json}").as_bytes()),
            Self::Connect(json) => out.extend_from_slice(format!("CONNECT {json}").as_bytes()),
            Self::Pub {
                subject,
                reply,
                headers,
                payload,
            } => {
                let op = if headers.is_some() { "HPUB" } else { "PUB" };
                out.extend_from_slice(format!("{op} {subject}").as_bytes());
                if let Some(reply) = reply {
                    out.extend_from_slice(format!(" {reply}").as_bytes());
                }
                body(&mut out, headers, payload);
            }
            Self::Msg {
                subject,
                sid,
                reply,
                headers,
                payload,
            } => {
                let op = if headers.is_some() { "HMSG" } else { "MSG" };
                out.extend_from_slice(format!("{op} {subject} {sid}").as_bytes());
                if let Some(reply) = reply {
                    out.extend_from_slice(format!(" {reply}").as_bytes());
                }
                body(&mut out, headers, payload);
            }
            Self::Sub { subject, queue, sid } => match queue {
                Some(queue) => out.extend_from_slice(format!("SUB {subject} {queue} {sid}").as_bytes()),
                None => out.extend_from_slice(format!("SUB {subject} {sid}").as_bytes()),
            },
            Self::Unsub { sid, max } => match max {
                Some(max) => out.extend_from_slice(format!("UNSUB {sid} {max}").as_bytes()),
                None => out.extend_from_slice(format!("UNSUB {sid}").as_bytes()),
            },
            Self::Ping => out.extend_from_slice(b"PING"),
            Self::Pong => out.extend_from_slice(b"PONG"),
            Self::Ok => out.extend_from_slice(b"+OK"),
            Self::Err(message) => out.extend_from_slice(format!("-ERR '{message}'").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A NATS subject pattern (nats.docs, "Subject-Based Messaging"): tokens separated by `.`;
/// `*` matches exactly one token, `>` one or more and only as the last token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern(Vec<String>);

impl SubjectPattern {
    /// Reads a pattern.
    ///
    /// # Errors
    /// What is wrong with it: an empty token, whitespace, or `>` before the end.
    pub fn parse(pattern: &str) -> Result<Self, &'static str> {
        if pattern.is_empty() {
            return Err("a subject is not empty");
        }
        if pattern.chars().any(char::is_whitespace) {
            return Err("a subject has no whitespace");
        }
        let tokens: Vec<String> = pattern.split('.').map(str::to_owned).collect();
        if tokens.iter().any(String::is_empty) {
            return Err("tokens are separated by single dots and not empty");
        }
        if tokens[..tokens.len() - 1].iter().any(|t| t == ">") {
            return Err("'>' may only be the last token");
        }
        Ok(Self(tokens))
    }

    /// Whether a message's subject fits the pattern.
    pub fn matches(&self, subject: &str) -> bool {
        let mut tokens = subject.split('.');
        for want in &self.0 {
            if want == ">" {
                return tokens.next().is_some_and(|t| !t.is_empty());
            }
            match tokens.next() {
                Some(token) if !token.is_empty() && (want == "*" || want == token) => {}
                _ => return false,
            }
        }
        tokens.next().is_none()
    }
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// The headers of an `HPUB` or `HMSG` (`NATS/1.0[ status]\r\n`, then `Name: value` lines,
/// then an empty line), names as sent.
///
/// # Errors
/// [`FrameError::Malformed`] when the block does not have that shape: a verifier must never
/// read "no signature" out of a block it could not read.
pub fn read_headers(block: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let malformed = FrameError::Malformed("header block");
    let text = std::str::from_utf8(block).map_err(|_| malformed.clone())?;
    let body = text.strip_suffix("\r\n\r\n").ok_or_else(|| malformed.clone())?;
    let mut lines = body.split("\r\n");
    let version = lines.next().unwrap_or_default();
    if version != "NATS/1.0" && !version.starts_with("NATS/1.0 ") {
        return Err(malformed);
    }
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or_else(|| malformed.clone())?;
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(malformed.clone());
            }
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The most envelopes one message may carry for [`advertised_max_payload`] to hold.
pub const SEALED_FIELDS_ALLOWANCE: usize = 16;

/// The longest protected header (pointer, context, key id, wrapped data key) that
/// [`advertised_max_payload`] allows for, in bytes before base64url.
pub const ENVELOPE_HEADER_ALLOWANCE: usize = 1024;

/// The `max_payload` to announce to clients when the server allows `server_max` bytes:
/// small enough that a message of that size still fits once sealed.
///
/// Sealing a value of `n` bytes writes a JWE of at most `4n/3 + 4h/3 + 48` bytes (quotes,
/// dots, IV and tag included) for a protected header of `h` bytes; summed over the fields
/// of one message the values grow by at most a third, and each envelope adds its header and
/// fixed parts. This is the bound for [`SEALED_FIELDS_ALLOWANCE`] envelopes with headers of
/// up to [`ENVELOPE_HEADER_ALLOWANCE`] bytes; a message that grows past `server_max` anyway
/// (more or longer envelopes) is refused by the gateway before it reaches the server.
pub fn advertised_max_payload(server_max: usize, seals: bool, max_body: usize) -> usize {
    let limit = server_max.min(max_body);
    if !seals {
        return limit;
    }
    let per_envelope = ENVELOPE_HEADER_ALLOWANCE.div_ceil(3) * 4 + 48;
    let room = server_max.saturating_sub(SEALED_FIELDS_ALLOWANCE * per_envelope + 2);
    (room / 4 * 3).min(limit)
}

/// The server's `INFO` as a client of the gateway must see it: `max_payload` lowered by
/// `advertise` (given the server's), no `connect_urls` (a client must not reconnect around
/// the gateway), and `tls_required` when the client reached the gateway over TLS. Also the
/// server's own `max_payload`.
///
/// # Errors
/// [`FrameError::Malformed`] if the `INFO` is not a JSON object with a `max_payload`.
pub fn rewrite_info(info: &str, advertise: impl Fn(usize) -> usize, tls: bool) -> Result<(String, usize), FrameError> {
    let malformed = FrameError::Malformed("INFO is not a JSON object with a max_payload");
    let mut info: serde_json::Map<String, serde_json::Value> = serde_json::from_str(info).map_err(|_| malformed.clone())?;
    let server_max = info
        .get("max_payload")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed.clone())?;
    let advertised = u64::try_from(advertise(server_max).min(server_max)).unwrap_or(u64::MAX);
    info.insert("max_payload".to_owned(), serde_json::Value::from(advertised));
    info.remove("connect_urls");
    info.remove("ws_connect_urls");
    if tls {
        info.insert("tls_required".to_owned(), serde_json::Value::Bool(true));
    }
    let text = serde_json::to_string(&info).map_err(|_| malformed)?;
    Ok((text, server_max))
}

/// One message a rule may touch, as the gateway hands it to the host's decision.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The subject it was published to or delivered on.
    pub subject: &'a str,
    /// Its headers (`HPUB`/`HMSG`), empty for `PUB`/`MSG`.
    pub headers: &'a [(String, String)],
    /// The payload.
    pub payload: &'a [u8],
}

/// The host's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on, with this payload (`None`: as it came).
    Forward(Option<Vec<u8>>),
    /// Do not send it on; the client is told with an `-ERR` naming this refusal.
    Refuse(ProblemKind),
}

/// Who asked for a `PONG` the server will send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pinger {
    Client,
    Gateway,
    /// The gateway, to tell a client that broke the protocol why it is closed.
    Closing,
}

/// Most `-ERR`s and `PING`s one connection may have waiting for the server; a client that
/// outruns it is disconnected, so the gateway's memory per connection stays bounded.
pub const MAX_WAITING: usize = 4096;

/// One client connection through the gateway: reads both directions, hands every message to
/// the host's decision, and writes what goes on. Refusals follow nats-server's wording for
/// permission violations, which clients report to their error callback and survive.
///
/// No host call writes to a client except by editing what the server sends, so the `-ERR`
/// of a refused publish waits for the next bytes from the server; the gateway sends a
/// `PING` in place of the refused message so that those bytes come, and keeps the `PONG`
/// for itself.
#[derive(Debug)]
pub struct Gateway {
    client: FrameReader,
    server: FrameReader,
    seals: bool,
    max_body: usize,
    tls: bool,
    server_max: Option<usize>,
    pingers: std::collections::VecDeque<Pinger>,
    errors: Vec<Frame>,
    /// Why the client is being closed, once it broke the protocol; the `-ERR` goes out
    /// with the `PONG` the gateway asked for.
    closing: Option<Frame>,
    /// That `-ERR` has gone out: the host closes the connection.
    closed: bool,
}

/// Largest payload read from the server before its `INFO` names the limit (nats-server's
/// own ceiling).
const SERVER_PAYLOAD_CEILING: usize = 64 << 20;

impl Gateway {
    /// A connection under a policy that `seals` on publish and reads payloads of up to
    /// `max_body` bytes; `tls` if the client reached the gateway over TLS.
    pub fn new(seals: bool, max_body: usize, tls: bool) -> Self {
        Self {
            // Until the server's INFO: nothing a client sends before it is a publish anyway.
            client: FrameReader::new(max_body.min(SERVER_PAYLOAD_CEILING)),
            server: FrameReader::new(SERVER_PAYLOAD_CEILING),
            seals,
            max_body,
            tls,
            server_max: None,
            pingers: std::collections::VecDeque::new(),
            errors: Vec::new(),
            closing: None,
            closed: false,
        }
    }

    /// The client broke the protocol (`error` from [`Gateway::from_client`]): returns what
    /// goes on to the server instead, a `PING`. Its `PONG` brings the client the `-ERR`
    /// saying why, and then [`Gateway::closed`] tells the host to close the connection
    /// (Envoy flushes what it writes before it closes). nats-server answers a `PING` even
    /// before `CONNECT`. Nothing more the client sends is read: [`Gateway::from_client`]
    /// then forwards nothing.
    pub fn refuse_client(&mut self, error: &FrameError) -> Vec<u8> {
        self.closing = Some(closing_error(error));
        // One per connection, beyond the bound of MAX_WAITING.
        self.pingers.push_back(Pinger::Closing);
        Frame::Ping.encode()
    }

    /// The `-ERR` that tells the client why its connection closed, for the host to send
    /// when the server broke the protocol (`error` from [`Gateway::from_server`]).
    pub fn server_refused(error: &FrameError) -> Vec<u8> {
        closing_error(error).encode()
    }

    /// Whether the client has been told why it is closed: the host closes the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Bytes held for frames not complete yet, both ways.
    pub fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }

    /// Reads what the client sent; returns what goes on to the server: whole frames only,
    /// publishes as `decide` says.
    ///
    /// # Errors
    /// [`FrameError`] if the client does not speak the protocol, or outran [`MAX_WAITING`]:
    /// the host closes the connection.
    pub fn from_client(&mut self, bytes: &[u8], mut decide: impl FnMut(Message<'_>) -> Verdict) -> Result<Vec<u8>, FrameError> {
        if self.closing.is_some() || self.closed {
            // Refused for breaking the protocol: nothing more of the client is read.
            return Ok(Vec::new());
        }
        self.client.push(bytes);
        let mut out = Vec::new();
        while let Some(frame) = self.client.next_frame()? {
            match frame {
                Frame::Pub {
                    subject,
                    reply,
                    headers,
                    payload,
                } => {
                    let verdict = match judge(&subject, headers.as_deref(), &payload, &mut decide)? {
                        Verdict::Forward(Some(sealed))
                            if sealed.len() + headers.as_ref().map_or(0, Vec::len) > self.server_max.unwrap_or(0) =>
                        {
                            Verdict::Refuse(ProblemKind::PayloadTooLarge)
                        }
                        verdict => verdict,
                    };
                    match verdict {
                        Verdict::Forward(new) => {
                            let payload = new.unwrap_or(payload);
                            out.extend(
                                Frame::Pub {
                                    subject,
                                    reply,
                                    headers,
                                    payload,
                                }
                                .encode(),
                            );
                        }
                        Verdict::Refuse(kind) => {
                            self.wait(Pinger::Gateway)?;
                            self.errors.push(Frame::Err(violation("Publish", &subject, kind)));
                            out.extend(Frame::Ping.encode());
                        }
                    }
                }
                Frame::Ping => {
                    self.wait(Pinger::Client)?;
                    out.extend(Frame::Ping.encode());
                }
                frame @ (Frame::Connect(_) | Frame::Sub { .. } | Frame::Unsub { .. } | Frame::Pong) => out.extend(frame.encode()),
                Frame::Info(_) | Frame::Msg { .. } | Frame::Ok | Frame::Err(_) => {
                    return Err(FrameError::Malformed("a server operation from a client"));
                }
            }
        }
        Ok(out)
    }

    /// Reads what the server sent; returns what goes on to the client: the `-ERR`s of
    /// refused publishes first, then whole frames, deliveries as `decide` says.
    ///
    /// # Errors
    /// [`FrameError`] if the server does not speak the protocol: the host closes the
    /// connection.
    pub fn from_server(&mut self, bytes: &[u8], mut decide: impl FnMut(Message<'_>) -> Verdict) -> Result<Vec<u8>, FrameError> {
        self.server.push(bytes);
        let mut out: Vec<u8> = self.errors.drain(..).flat_map(|e| e.encode()).collect();
        while let Some(frame) = self.server.next_frame()? {
            match frame {
                Frame::Info(info) => {
                    let (seals, max_body) = (self.seals, self.max_body);
                    let advertise = |max| advertised_max_payload(max, seals, max_body);
                    let (info, server_max) = rewrite_info(&info, advertise, self.tls)?;
                    self.client.set_max_payload(advertise(server_max));
                    self.server.set_max_payload(server_max);
                    self.server_max = Some(server_max);
                    out.extend(Frame::Info(info).encode());
                }
                Frame::Msg {
                    subject,
                    sid,
                    reply,
                    headers,
                    payload,
                } => match judge(&subject, headers.as_deref(), &payload, &mut decide)? {
                    Verdict::Forward(new) => {
                        let payload = new.unwrap_or(payload);
                        out.extend(
                            Frame::Msg {
                                subject,
                                sid,
                                reply,
                                headers,
                                payload,
                            }
                            .encode(),
                        );
                    }
                    Verdict::Refuse(kind) => out.extend(Frame::Err(violation("Subscription", &subject, kind)).encode()),
                },
                Frame::Pong => match self.pingers.pop_front() {
                    Some(Pinger::Gateway) => {}
                    Some(Pinger::Closing) => {
                        out.extend(self.closing.take().map(|e| e.encode()).unwrap_or_default());
                        self.closed = true;
                        // Nothing after the -ERR: the connection closes.
                        return Ok(out);
                    }
                    Some(Pinger::Client) | None => out.extend(Frame::Pong.encode()),
                },
                frame @ (Frame::Ping | Frame::Ok | Frame::Err(_)) => out.extend(frame.encode()),
                Frame::Connect(_) | Frame::Pub { .. } | Frame::Sub { .. } | Frame::Unsub { .. } => {
                    return Err(FrameError::Malformed("a client operation from the server"));
                }
            }
        }
        Ok(out)
    }

    fn wait(&mut self, pinger: Pinger) -> Result<(), FrameError> {
        if self.pingers.len() >= MAX_WAITING {
            return Err(FrameError::Backlog);
        }
        self.pingers.push_back(pinger);
        Ok(())
    }
}

/// Hands one message to `decide`, with its header block read first.
fn judge(
    subject: &str,
    headers: Option<&[u8]>,
    payload: &[u8],
    decide: &mut impl FnMut(Message<'_>) -> Verdict,
) -> Result<Verdict, FrameError> {
    let headers = headers.map(read_headers).transpose()?.unwrap_or_default();
    Ok(decide(Message {
        subject,
        headers: &headers,
        payload,
    }))
}

/// The `-ERR` of a connection closed for breaking the protocol: the stable name, then
/// which rule was broken (never payload bytes). Clients report it and see the close.
fn closing_error(error: &FrameError) -> Frame {
    Frame::Err(format!("eventseal nats-protocol-error: {error}"))
}

/// nats-server's wording for a permission violation (`Permissions Violation for Publish to
/// "<subject>"`), which clients hand to their error callback without closing the
/// connection, followed by the refusal's stable name.
fn violation(operation: &str, subject: &str, kind: ProblemKind) -> String {
    format!("Permissions Violation for {operation} to \"{subject}\": eventseal {}", kind.slug())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], max_payload: usize) -> Result<Vec<Frame>, FrameError> {
        let mut reader = FrameReader::new(max_payload);
        reader.push(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame()? {
            frames.push(frame);
        }
        assert_eq!(reader.buffered(), 0, "a whole stream leaves nothing behind");
        Ok(frames)
    }

    #[test]
    fn every_operation_reads_with_any_case_and_runs_of_spaces_or_tabs() {
        let wire = b"INFO {\"max_payload\": 1048576}\r\nconnect {\"verbose\":false}\r\npub  orders.created\t_INBOX.1  5\r\nhello\r\n\
                     HPUB a.b 12 14\r\nNATS/1.0\r\n\r\nhi\r\nSub orders.* q 7\r\nUNSUB 7 10\r\nPING\r\npong\r\n+OK\r\n\
                     -ERR 'Permissions Violation for Publish to \"x\"'\r\nMSG orders.created 7 _INBOX.1 2\r\nok\r\n\
                     HMSG a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n";
        let frames = read_all(wire, 1 << 20).unwrap();
        assert_eq!(frames.len(), 12, "{frames:#?}");
        assert_eq!(
            frames[2],
            Frame::Pub {
                subject: "orders.created".into(),
                reply: Some("_INBOX.1".into()),
                headers: None,
                payload: b"hello".to_vec()
            }
        );
        assert_eq!(
            frames[3],
            Frame::Pub {
                subject: "a.b".into(),
                reply: None,
                headers: Some(b"NATS/1.0\r\n\r\n".to_vec()),
                payload: b"hi".to_vec()
            }
        );
        assert_eq!(
            frames[4],
            Frame::Sub {
                subject: "orders.*".into(),
                queue: Some("q".into()),
                sid: "7".into()
            }
        );
        assert_eq!(frames[9], Frame::Err("Permissions Violation for Publish to \"x\"".into()));
        assert!(matches!(&frames[11], Frame::Msg { headers: Some(h), payload, .. } if h.len() == 12 && payload.is_empty()));
    }

    #[test]
    fn frames_split_anywhere_read_the_same_as_whole_and_encode_back() {
        let wire = b"PUB a 5\r\nhello\r\nHPUB b r 12 15\r\nNATS/1.0\r\n\r\nabc\r\nPING\r\n";
        let whole = read_all(wire, 64).unwrap();
        for split in 0..wire.len() {
            let mut reader = FrameReader::new(64);
            let mut frames = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                reader.push(part);
                while let Some(frame) = reader.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames, whole, "split at {split}");
        }
        let encoded: Vec<u8> = whole.iter().flat_map(Frame::encode).collect();
        assert_eq!(encoded, wire.to_vec());
    }

    #[test]
    fn one_byte_at_a_time_with_the_split_between_cr_and_lf() {
        let wire = b"PUB orders.created 3\r\nabc\r\n";
        let mut reader = FrameReader::new(64);
        let mut frames = Vec::new();
        for byte in wire {
            reader.push(&[*byte]);
            if let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn what_cannot_be_read_is_an_error_never_a_skip() {
        assert_eq!(read_all(b"GARBAGE x\r\n", 64), Err(FrameError::Malformed("unknown operation")));
        assert_eq!(
            read_all(b"PUB a 5\r\nhelloX\r\n", 64),
            Err(FrameError::Malformed("payload does not end with CRLF"))
        );
        assert_eq!(
            read_all(b"PUB a five\r\nhello\r\n", 64),
            Err(FrameError::Malformed("a byte count is not a number"))
        );
        assert_eq!(
            read_all(b"HPUB a 9 5\r\n", 64),
            Err(FrameError::Malformed("header bytes exceed total bytes"))
        );
        assert_eq!(
            read_all(b"PUB a 65\r\n", 64),
            Err(FrameError::PayloadTooLarge { size: 65, limit: 64 })
        );
        let mut reader = FrameReader::new(64);
        reader.push(&vec![b'x'; MAX_CONTROL_LINE]);
        assert_eq!(reader.next_frame(), Err(FrameError::ControlLineTooLong));
        let long = format!("SUB {} 1\r\n", "s".repeat(MAX_CONTROL_LINE));
        assert_eq!(read_all(long.as_bytes(), 64), Err(FrameError::ControlLineTooLong));
    }

    #[test]
    fn subject_patterns_follow_nats_wildcards() {
        let p = |s| SubjectPattern::parse(s).unwrap();
        assert!(p("orders.*.created").matches("orders.eu.created"));
        assert!(!p("orders.*.created").matches("orders.eu.x.created"));
        assert!(!p("orders.*").matches("orders"));
        assert!(p("orders.>").matches("orders.eu.created"));
        assert!(!p("orders.>").matches("orders"));
        assert!(p(">").matches("a") && p("a.b").matches("a.b") && !p("a.b").matches("a.bc"));
        assert!(!p("a.*").matches("a."), "an empty token is no token");
        for bad in ["", "a..b", ".a", "a.>.b", "a b", "a.\tb"] {
            assert!(SubjectPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_blocks_read_or_refuse() {
        let h = read_headers(b"NATS/1.0\r\nwebhook-id: msg_1\r\nCE-Type:  a.b \r\n\r\n").unwrap();
        assert_eq!(h, vec![("webhook-id".into(), "msg_1".into()), ("CE-Type".into(), "a.b".into())]);
        assert_eq!(read_headers(b"NATS/1.0 503\r\n\r\n").unwrap(), vec![]);
        for bad in [
            &b"HTTP/1.1\r\n\r\n"[..],
            b"NATS/1.0\r\nno-colon\r\n\r\n",
            b"NATS/1.0\r\na: b\r\n",
            b"NATS/1.0\r\n\xff: b\r\n\r\n",
        ] {
            assert!(read_headers(bad).is_err(), "{bad:?}");
        }
    }

    const INFO: &[u8] = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576,\"headers\":true,\"connect_urls\":[\"10.0.0.1:4222\"]}\r\n";

    fn info_of(out: &[u8]) -> serde_json::Value {
        let line = std::str::from_utf8(out).unwrap().lines().next().unwrap();
        serde_json::from_str(line.strip_prefix("INFO ").unwrap()).unwrap()
    }

    #[test]
    fn info_is_rewritten_for_the_client() {
        let mut gateway = Gateway::new(true, 1 << 20, true);
        let out = gateway.from_server(INFO, |_| unreachable!()).unwrap();
        let info = info_of(&out);
        let advertised = advertised_max_payload(1 << 20, true, 1 << 20);
        assert_eq!(info["max_payload"], advertised);
        assert!(advertised < (1 << 20) * 3 / 4 && advertised > (1 << 20) / 2, "{advertised}");
        assert!(info.get("connect_urls").is_none());
        assert_eq!(
            (info["tls_required"].as_bool(), info["headers"].as_bool()),
            (Some(true), Some(true))
        );
        // Without sealing nothing grows: only the policy's body limit lowers it.
        let mut plain = Gateway::new(false, 4096, false);
        assert_eq!(info_of(&plain.from_server(INFO, |_| unreachable!()).unwrap())["max_payload"], 4096);
        // The client is held to what it was told.
        let big = format!("PUB a {}\r\n", advertised + 1);
        assert!(matches!(
            gateway.from_client(big.as_bytes(), |_| unreachable!()),
            Err(FrameError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn an_info_in_the_middle_of_the_stream_is_rewritten_too() {
        let mut gateway = Gateway::new(true, 1 << 20, false);
        let mut wire = INFO.to_vec();
        wire.extend(b"MSG a 1 2\r\nhi\r\n");
        wire.extend(INFO);
        let out = gateway.from_server(&wire, |_| Verdict::Forward(None)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("connect_urls").count(), 0, "{text}");
        assert_eq!(text.matches("\"max_payload\":1048576").count(), 0, "{text}");
        assert!(text.contains("MSG a 1 2\r\nhi\r\n"));
    }

    #[test]
    fn the_worst_case_within_the_allowance_fits_the_server() {
        let server_max = 1 << 20;
        let p = advertised_max_payload(server_max, true, usize::MAX);
        // Every byte sealed, in the allowed number of envelopes with the longest headers.
        let per_value = p / SEALED_FIELDS_ALLOWANCE;
        let envelope = |n: usize| 2 + (ENVELOPE_HEADER_ALLOWANCE.div_ceil(3) * 4) + 2 + 16 + 1 + n.div_ceil(3) * 4 + 1 + 22;
        let sealed: usize = (0..SEALED_FIELDS_ALLOWANCE).map(|_| envelope(per_value)).sum();
        assert!(sealed <= server_max, "{sealed} > {server_max}");
    }

    #[test]
    fn a_refused_publish_never_reaches_the_server_and_the_client_hears_of_it() {
        let mut gateway = Gateway::new(true, 1 << 20, false);
        gateway.from_server(INFO, |_| unreachable!()).unwrap();
        let wire = b"PING\r\nPUB orders.x _INBOX.1 2\r\nno\r\nPUB orders.y 2\r\nok\r\nPING\r\n";
        let to_server = gateway
            .from_client(wire, |m| match m.subject {
                "orders.x" => Verdict::Refuse(ProblemKind::ProducerForbidden),
                _ => Verdict::Forward(Some(b"sealed".to_vec())),
            })
            .unwrap();
        assert_eq!(to_server, b"PING\r\nPING\r\nPUB orders.y 6\r\nsealed\r\nPING\r\n");
        // The server answers three PINGs; the gateway keeps the PONG of its own.
        let to_client = gateway.from_server(b"PONG\r\nPONG\r\nPONG\r\n", |_| unreachable!()).unwrap();
        assert_eq!(
            std::str::from_utf8(&to_client).unwrap(),
            "-ERR 'Permissions Violation for Publish to \"orders.x\": eventseal producer-forbidden'\r\nPONG\r\nPONG\r\n"
        );
    }

    #[test]
    fn deliveries_are_decided_and_a_refused_one_is_named() {
        let mut gateway = Gateway::new(false, 1 << 20, false);
        let wire = b"MSG a.b 1 _INBOX.2 2\r\nhi\r\nHMSG a.c 2 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nno\r\n";
        let mut seen = Vec::new();
        let out = gateway
            .from_server(wire, |m| {
                seen.push((m.subject.to_owned(), m.headers.to_vec()));
                if m.subject == "a.c" {
                    Verdict::Refuse(ProblemKind::ReaderForbidden)
                } else {
                    Verdict::Forward(Some(b"opened".to_vec()))
                }
            })
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "MSG a.b 1 _INBOX.2 6\r\nopened\r\n-ERR 'Permissions Violation for Subscription to \"a.c\": eventseal reader-forbidden'\r\n"
        );
        assert_eq!(seen[1].1, vec![("k".to_owned(), "v".to_owned())]);
        assert!(gateway.from_server(b"PUB x 0\r\n\r\n", |_| unreachable!()).is_err());
        assert!(gateway.from_client(b"MSG x 1 0\r\n\r\n", |_| unreachable!()).is_err());
    }

    #[test]
    fn a_publish_that_grows_over_the_server_limit_is_refused() {
        // Beyond the allowance (here: none at all) a message can still grow too large.
        let mut gateway = Gateway::new(false, 1 << 20, false);
        gateway.from_server(b"INFO {\"max_payload\":64}\r\n", |_| unreachable!()).unwrap();
        let out = gateway
            .from_client(b"PUB a 2\r\nhi\r\n", |_| Verdict::Forward(Some(vec![b'x'; 65])))
            .unwrap();
        assert_eq!(out, b"PING\r\n");
        let err = gateway.from_server(b"PONG\r\n", |_| unreachable!()).unwrap();
        assert!(String::from_utf8(err).unwrap().contains("eventseal payload-too-large"));
    }

    #[test]
    fn a_client_that_breaks_the_protocol_is_told_why_before_the_close() {
        let mut gateway = Gateway::new(false, 1 << 20, false);
        gateway.from_server(b"INFO {\"max_payload\":64}\r\n", |_| unreachable!()).unwrap();
        // A refused publish still waits for its own PONG, ahead of the closing one.
        let refused = gateway.from_client(b"PUB a 2\r\nhi\r\n", |_| Verdict::Refuse(ProblemKind::ProducerForbidden));
        assert_eq!(refused.unwrap(), b"PING\r\n");
        let error = gateway.from_client(b"HELLO world\r\n", |_| unreachable!()).unwrap_err();
        assert_eq!(gateway.refuse_client(&error), b"PING\r\n");
        assert!(!gateway.closed());
        // What the client sends afterwards goes nowhere.
        assert_eq!(gateway.from_client(b"PUB a 2\r\nhi\r\n", |_| unreachable!()).unwrap(), b"");
        // Deliveries before the server's PONGs still go out; the -ERRs come in order, and
        // nothing after the closing one.
        let out = gateway.from_server(b"PONG\r\nMSG b 1 2\r\nok\r\nPONG\r\nMSG b 1 2\r\nno\r\n", |_| {
            Verdict::Forward(None)
        });
        let out = String::from_utf8(out.unwrap()).unwrap();
        assert_eq!(
            out,
            "-ERR 'Permissions Violation for Publish to \"a\": eventseal producer-forbidden'\r\nMSG b 1 2\r\nok\r\n\
             -ERR 'eventseal nats-protocol-error: malformed protocol: unknown operation'\r\n"
        );
        assert!(gateway.closed());
    }

    #[test]
    fn a_server_that_breaks_the_protocol_closes_the_client_with_an_error_it_sees() {
        let mut gateway = Gateway::new(false, 1 << 20, false);
        let error = gateway.from_server(b"PUB a 1\r\nx\r\n", |_| unreachable!()).unwrap_err();
        assert_eq!(
            Gateway::server_refused(&error),
            b"-ERR 'eventseal nats-protocol-error: malformed protocol: a client operation from the server'\r\n"
        );
    }

    #[test]
    fn a_client_that_outruns_the_server_is_cut_off() {
        let mut gateway = Gateway::new(false, 1 << 20, false);
        let pings = "PING\r\n".repeat(MAX_WAITING + 1);
        assert_eq!(gateway.from_client(pings.as_bytes(), |_| unreachable!()), Err(FrameError::Backlog));
    }

    proptest::proptest! {
        /// Any chunking of a valid stream gives the same frames, and what is held for an
        /// incomplete frame never exceeds max_payload plus a control line and two CRLFs.
        #[test]
        fn chunking_never_changes_the_frames_and_the_buffer_is_bounded(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..8),
            cuts in proptest::collection::vec(1usize..40, 1..40),
        ) {
            let frames: Vec<Frame> = payloads.iter().enumerate().map(|(i, p)| Frame::Pub {
                subject: format!("s.{i}"),
                reply: (i % 2 == 0).then(|| "_INBOX.x".to_owned()),
                headers: (i % 3 == 0).then(|| b"NATS/1.0\r\nk: v\r\n\r\n".to_vec()),
                payload: p.clone(),
            }).collect();
            let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
            let max_payload = 128;
            let mut reader = FrameReader::new(max_payload);
            let (mut got, mut at) = (Vec::new(), 0);
            for cut in cuts.iter().cycle() {
                if at >= wire.len() { break; }
                let end = (at + cut).min(wire.len());
                reader.push(&wire[at..end]);
                at = end;
                while let Some(frame) = reader.next_frame().unwrap() { got.push(frame); }
                proptest::prop_assert!(reader.buffered() <= max_payload + MAX_CONTROL_LINE + 2);
            }
            proptest::prop_assert_eq!(got, frames);
        }
    }
}
