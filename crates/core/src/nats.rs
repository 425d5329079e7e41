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
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ControlLineTooLong => write!(f, "control line longer than {MAX_CONTROL_LINE} bytes"),
            Self::PayloadTooLarge { size, limit } => write!(f, "payload of {size} bytes is larger than {limit}"),
            Self::Malformed(what) => write!(f, "malformed protocol: {what}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads frames from a byte stream that arrives in pieces.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    max_payload: usize,
}

impl FrameReader {
    /// A reader that refuses payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_payload,
        }
    }

    /// Bytes held for a frame that is not complete yet: at most `max_payload` plus the
    /// control line and two line ends.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one is complete.
    ///
    /// # Errors
    /// [`FrameError`] for bytes that are not the protocol, a control line over the limit,
    /// or a payload over `max_payload`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(line_end) = self.buffer.windows(2).position(|w| w == b"\r\n") else {
            return if self.buffer.len() >= MAX_CONTROL_LINE {
                Err(FrameError::ControlLineTooLong)
            } else {
                Ok(None)
            };
        };
        if line_end + 2 > MAX_CONTROL_LINE {
            return Err(FrameError::ControlLineTooLong);
        }
        let line = std::str::from_utf8(&self.buffer[..line_end]).map_err(|_| FrameError::Malformed("control line is not UTF-8"))?;
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
                let Some(body) = self.buffer.get(start..start + total + 2) else {
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
        self.buffer.drain(..consumed);
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
