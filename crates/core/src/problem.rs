//! The one boundary where every refusal becomes an HTTP status and a problem type.
//!
//! Bodies are `application/problem+json` (RFC 9457). `type` values are stable: clients and
//! dashboards may rely on them. Details never contain secrets or field values.

use crate::document::{OpenError, SealError};
use crate::json::DocumentError;
use crate::webhook::{SignError, VerifyError};
use serde_json::json;

/// Which body a decision is about. Response-side failures are the upstream's fault (502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The request going upstream.
    Request,
    /// The response coming back.
    Response,
}

impl Direction {
    /// `request` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// The stable classes of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The body is not JSON.
    MalformedJson,
    /// The JSON nests deeper than the limit.
    JsonTooDeep,
    /// The body is not JSON by its content type.
    UnsupportedMediaType,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// A required field is missing.
    FieldMissing,
    /// A value bound into the envelope context is missing.
    ContextMissing,
    /// A signature header is missing.
    SignatureMissing,
    /// A signature header is malformed.
    SignatureMalformed,
    /// The signature timestamp is outside the tolerance.
    SignatureExpired,
    /// No signature verifies.
    SignatureInvalid,
    /// The message id was seen before.
    SignatureReplayed,
    /// The principal may not send on this route.
    ProducerForbidden,
    /// The principal may not read a field and the rule says refuse.
    ReaderForbidden,
    /// A sealed field failed to open.
    SealedFieldRejected,
    /// Sealing failed for a reason on our side (keys, randomness).
    SealFailed,
    /// Signing failed for a reason on our side.
    SignFailed,
    /// The key management service could not be reached.
    KmsUnavailable,
    /// The replay memory has no room for the message's id (a full bucket): refused, since
    /// an id that is not remembered could be replayed.
    ReplayCacheFull,
}

impl ProblemKind {
    /// Every kind, for hosts that define one counter or one WIT case per kind.
    pub const ALL: [ProblemKind; 18] = [
        Self::MalformedJson,
        Self::JsonTooDeep,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::FieldMissing,
        Self::ContextMissing,
        Self::SignatureMissing,
        Self::SignatureMalformed,
        Self::SignatureExpired,
        Self::SignatureInvalid,
        Self::SignatureReplayed,
        Self::ProducerForbidden,
        Self::ReaderForbidden,
        Self::SealedFieldRejected,
        Self::SealFailed,
        Self::SignFailed,
        Self::KmsUnavailable,
        Self::ReplayCacheFull,
    ];

    /// The last segment of the problem `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed-json",
            Self::JsonTooDeep => "json-too-deep",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::FieldMissing => "field-missing",
            Self::ContextMissing => "context-missing",
            Self::SignatureMissing => "signature-missing",
            Self::SignatureMalformed => "signature-malformed",
            Self::SignatureExpired => "signature-expired",
            Self::SignatureInvalid => "signature-invalid",
            Self::SignatureReplayed => "signature-replayed",
            Self::ProducerForbidden => "producer-forbidden",
            Self::ReaderForbidden => "reader-forbidden",
            Self::SealedFieldRejected => "sealed-field-rejected",
            Self::SealFailed => "seal-failed",
            Self::SignFailed => "sign-failed",
            Self::KmsUnavailable => "kms-unavailable",
            Self::ReplayCacheFull => "replay-cache-full",
        }
    }

    /// The problem `type` URI.
    pub fn type_uri(self) -> String {
        format!("urn:eventseal:problem:{}", self.slug())
    }

    /// A short human title.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "Body is not valid JSON",
            Self::JsonTooDeep => "JSON nesting is too deep",
            Self::UnsupportedMediaType => "Body is not JSON",
            Self::PayloadTooLarge => "Body is too large",
            Self::FieldMissing => "Required field is missing",
            Self::ContextMissing => "Context value is missing",
            Self::SignatureMissing => "Signature is missing",
            Self::SignatureMalformed => "Signature headers are malformed",
            Self::SignatureExpired => "Signature timestamp is outside the tolerance",
            Self::SignatureInvalid => "Signature is not valid",
            Self::SignatureReplayed => "Message was already delivered",
            Self::ProducerForbidden => "Principal may not send this event",
            Self::ReaderForbidden => "Principal may not read this event",
            Self::SealedFieldRejected => "Sealed field cannot be opened",
            Self::SealFailed => "Event could not be sealed",
            Self::SignFailed => "Event could not be signed",
            Self::KmsUnavailable => "Key service unavailable",
            Self::ReplayCacheFull => "Replay memory is full",
        }
    }

    /// The HTTP status for this kind in this direction.
    pub fn status(self, direction: Direction) -> u16 {
        match (self, direction) {
            (Self::SealFailed | Self::SignFailed, _) => 500,
            (Self::KmsUnavailable | Self::ReplayCacheFull, _) => 503,
            (_, Direction::Response) => 502,
            (Self::MalformedJson | Self::JsonTooDeep | Self::FieldMissing | Self::ContextMissing, _) => 400,
            (Self::UnsupportedMediaType, _) => 415,
            (Self::PayloadTooLarge, _) => 413,
            (
                Self::SignatureMissing
                | Self::SignatureMalformed
                | Self::SignatureExpired
                | Self::SignatureInvalid
                | Self::SignatureReplayed,
                _,
            ) => 401,
            (Self::ProducerForbidden | Self::ReaderForbidden, _) => 403,
            (Self::SealedFieldRejected, _) => 422,
        }
    }
}

/// A refusal, ready to become a local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The class.
    pub kind: ProblemKind,
    /// The HTTP status.
    pub status: u16,
    /// Which field or header, and why; never a value or a secret.
    pub detail: String,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u32>,
}

/// Media type of problem bodies.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    /// A problem of `kind` for a body travelling in `direction`.
    pub fn new(kind: ProblemKind, direction: Direction, detail: impl Into<String>) -> Self {
        Self {
            kind,
            status: kind.status(direction),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The problem+json body (RFC 9457), with the request id when known.
    pub fn to_json(&self, request_id: Option<&str>) -> String {
        let mut body = json!({
            "type": self.kind.type_uri(),
            "title": self.kind.title(),
            "status": self.status,
            "detail": self.detail,
        });
        if let Some(id) = request_id {
            body["request_id"] = json!(id);
        }
        body.to_string()
    }

    /// The KMS could not supply a data key of `source`: 503 with `Retry-After`.
    pub fn kms_unavailable(source: &crate::KeyId, direction: Direction, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                ProblemKind::KmsUnavailable,
                direction,
                format!("the key service of {source} is unavailable"),
            )
        }
    }

    /// The replay memory had no room for a verified message's id: 503 with `Retry-After`.
    pub fn replay_cache_full(direction: Direction, retry_after: u64) -> Self {
        Self {
            retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX).max(1)),
            ..Self::new(
                ProblemKind::ReplayCacheFull,
                direction,
                "the replay memory has no room for this message id until older ids expire",
            )
        }
    }

    /// The refusal of a body that is not an event core can work on: too large, too deep,
    /// or not JSON (a host that sees the size first refuses with this too).
    pub fn document(error: &DocumentError, direction: Direction) -> Self {
        let kind = match error {
            DocumentError::TooLarge { .. } => ProblemKind::PayloadTooLarge,
            DocumentError::TooDeep { .. } => ProblemKind::JsonTooDeep,
            DocumentError::NotJson { .. } | DocumentError::LoneSurrogate { .. } => ProblemKind::MalformedJson,
        };
        Self::new(kind, direction, error.to_string())
    }

    pub(crate) fn seal(error: &SealError, direction: Direction) -> Self {
        match error {
            SealError::Document(e) => Self::document(e, direction),
            SealError::FieldMissing { .. } => Self::new(ProblemKind::FieldMissing, direction, error.to_string()),
            SealError::ContextMissing { .. } => Self::new(ProblemKind::ContextMissing, direction, error.to_string()),
            SealError::Field { .. } => Self::new(ProblemKind::SealFailed, direction, error.to_string()),
        }
    }

    pub(crate) fn open(error: &OpenError, direction: Direction) -> Self {
        match error {
            OpenError::Document(e) => Self::document(e, direction),
            OpenError::FieldMissing { .. } => Self::new(ProblemKind::FieldMissing, direction, error.to_string()),
            OpenError::ContextMissing { .. } => Self::new(ProblemKind::ContextMissing, direction, error.to_string()),
            OpenError::Field { .. } => Self::new(ProblemKind::SealedFieldRejected, direction, error.to_string()),
        }
    }

    pub(crate) fn verify(error: &VerifyError, direction: Direction) -> Self {
        let kind = match error {
            VerifyError::MissingHeader(_) => ProblemKind::SignatureMissing,
            VerifyError::MalformedHeader(_) => ProblemKind::SignatureMalformed,
            VerifyError::TimestampTooOld | VerifyError::TimestampTooNew => ProblemKind::SignatureExpired,
            VerifyError::NotAuthentic | VerifyError::NoCheckableSignature => ProblemKind::SignatureInvalid,
            VerifyError::Replayed => ProblemKind::SignatureReplayed,
        };
        Self::new(kind, direction, error.to_string())
    }

    pub(crate) fn sign(error: &SignError, direction: Direction) -> Self {
        Self::new(ProblemKind::SignFailed, direction, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_design_table() {
        use ProblemKind::*;
        let req = Direction::Request;
        for (kind, status) in [
            (MalformedJson, 400),
            (UnsupportedMediaType, 415),
            (PayloadTooLarge, 413),
            (SignatureInvalid, 401),
            (SignatureReplayed, 401),
            (ProducerForbidden, 403),
            (SealedFieldRejected, 422),
            (KmsUnavailable, 503),
            (ReplayCacheFull, 503),
        ] {
            assert_eq!(kind.status(req), status, "{kind:?}");
        }
        assert_eq!(SealedFieldRejected.status(Direction::Response), 502);
        assert_eq!(KmsUnavailable.status(Direction::Response), 503);
    }

    #[test]
    fn all_lists_every_kind_once() {
        let mut slugs: Vec<&str> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
        // A kind added to the enum but not to ALL fails this match at compile time.
        for kind in ProblemKind::ALL {
            match kind {
                ProblemKind::MalformedJson
                | ProblemKind::JsonTooDeep
                | ProblemKind::UnsupportedMediaType
                | ProblemKind::PayloadTooLarge
                | ProblemKind::FieldMissing
                | ProblemKind::ContextMissing
                | ProblemKind::SignatureMissing
                | ProblemKind::SignatureMalformed
                | ProblemKind::SignatureExpired
                | ProblemKind::SignatureInvalid
                | ProblemKind::SignatureReplayed
                | ProblemKind::ProducerForbidden
                | ProblemKind::ReaderForbidden
                | ProblemKind::SealedFieldRejected
                | ProblemKind::SealFailed
                | ProblemKind::SignFailed
                | ProblemKind::KmsUnavailable
                | ProblemKind::ReplayCacheFull => {}
            }
        }
    }

    #[test]
    fn body_is_problem_json() {
        let p = Problem::new(ProblemKind::SignatureInvalid, Direction::Request, "no valid signature");
        let body: serde_json::Value = serde_json::from_str(&p.to_json(Some("req-1"))).unwrap();
        assert_eq!(body["type"], "urn:eventseal:problem:signature-invalid");
        assert_eq!(body["status"], 401);
        assert_eq!(body["request_id"], "req-1");
    }
}
