//! The filter's counters: their names, and what one decision adds to them.
//!
//! Names are defined once per VM at configure time. Envoy shows them in `/stats` with its
//! own prefix for wasm metrics (`wasmcustom.`), e.g. `wasmcustom.eventseal_fields_sealed`.

use eventseal_core::{FieldResult, ProblemKind, Report};

/// The counters, in a fixed order; [`Counter::name`] gives each its metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Fields replaced by an envelope.
    FieldsSealed,
    /// Fields replaced by their plaintext for an allowed reader.
    FieldsOpened,
    /// Fields left sealed because the reader may not open them.
    FieldsWithheld,
    /// Fields replaced by a mask because the reader may not open them.
    FieldsMasked,
    /// Signatures that verified.
    SignaturesVerified,
    /// Bodies signed.
    SignaturesSigned,
    /// Signatures missing, malformed, expired, invalid or replayed (refused or not).
    SignatureFailures,
    /// Failures let through by `on_error: forward_unchanged`.
    ForwardedDespiteError,
    /// Every local reply with a problem.
    RefusedTotal,
    /// Audit records written (to the proxy log, and buffered for a collector if configured).
    AuditRecords,
    /// Audit records the collector acknowledged.
    AuditDelivered,
    /// Audit records dropped from the collector buffer undelivered (they stay in the proxy log).
    AuditUndelivered,
    /// Calls sent to the KMS (`datakey` and `decrypt`), or attempted.
    KmsCalls,
    /// KMS calls that failed: not sent, answered with an error, timed out, or never answered.
    KmsCallFailures,
    /// KMS calls sent again from the root context because the stream that sent them ended
    /// before the answer (Envoy cancels them with it).
    KmsCallsResent,
    /// Held streams answered 503 because Envoy lacks `allow_on_headers_stop_iteration`
    /// while the policy says `envoy.headers: hold`.
    HoldUnavailable,
    /// NATS connections closed because a side did not speak the protocol, sent a control
    /// line or payload over the limit, or outran the gateway's bounds.
    NatsProtocolErrors,
    /// Fields opened under a `retired` key: envelopes still to be resealed (a rotation is
    /// finished when this stops moving).
    OpenedUnderRetiredKey,
    /// Signatures that verified under a signing key other than the primary: senders still
    /// signing with a key being rotated out.
    VerifiedUnderNonPrimaryKey,
    /// A gauge: signature ids held in the replay buckets of this VM id (expired ones not
    /// yet dropped included), at most `signatures.replay_capacity`.
    ReplayIds,
    /// A gauge: KMS calls sent and not answered yet, over every worker VM (at most
    /// `max_unwraps_in_flight` decrypt calls and one datakey call each).
    KmsCallsInFlight,
    /// A gauge: audit records buffered for the collector, over every worker VM (at most
    /// `audit.buffer_records` each).
    AuditBuffered,
    /// Local replies of one problem kind (index into [`ProblemKind::ALL`]).
    Refused(usize),
}

impl Counter {
    /// Every counter, each once.
    pub fn all() -> impl Iterator<Item = Counter> {
        [
            Self::FieldsSealed,
            Self::FieldsOpened,
            Self::FieldsWithheld,
            Self::FieldsMasked,
            Self::SignaturesVerified,
            Self::SignaturesSigned,
            Self::SignatureFailures,
            Self::ForwardedDespiteError,
            Self::RefusedTotal,
            Self::AuditRecords,
            Self::AuditDelivered,
            Self::AuditUndelivered,
            Self::KmsCalls,
            Self::KmsCallFailures,
            Self::KmsCallsResent,
            Self::HoldUnavailable,
            Self::NatsProtocolErrors,
            Self::OpenedUnderRetiredKey,
            Self::VerifiedUnderNonPrimaryKey,
            Self::ReplayIds,
            Self::KmsCallsInFlight,
            Self::AuditBuffered,
        ]
        .into_iter()
        .chain((0..ProblemKind::ALL.len()).map(Self::Refused))
    }

    /// The metric name.
    pub fn name(self) -> String {
        match self {
            Self::FieldsSealed => "eventseal_fields_sealed".to_owned(),
            Self::FieldsOpened => "eventseal_fields_opened".to_owned(),
            Self::FieldsWithheld => "eventseal_fields_withheld".to_owned(),
            Self::FieldsMasked => "eventseal_fields_masked".to_owned(),
            Self::SignaturesVerified => "eventseal_signatures_verified".to_owned(),
            Self::SignaturesSigned => "eventseal_signatures_signed".to_owned(),
            Self::SignatureFailures => "eventseal_signature_failures".to_owned(),
            Self::ForwardedDespiteError => "eventseal_forwarded_despite_error".to_owned(),
            Self::RefusedTotal => "eventseal_refused_total".to_owned(),
            Self::AuditRecords => "eventseal_audit_records".to_owned(),
            Self::AuditDelivered => "eventseal_audit_delivered".to_owned(),
            Self::AuditUndelivered => "eventseal_audit_undelivered".to_owned(),
            Self::KmsCalls => "eventseal_kms_calls".to_owned(),
            Self::KmsCallFailures => "eventseal_kms_call_failures".to_owned(),
            Self::KmsCallsResent => "eventseal_kms_calls_resent".to_owned(),
            Self::HoldUnavailable => "eventseal_hold_unavailable".to_owned(),
            Self::NatsProtocolErrors => "eventseal_nats_protocol_errors".to_owned(),
            Self::OpenedUnderRetiredKey => "eventseal_opened_under_retired_key".to_owned(),
            Self::VerifiedUnderNonPrimaryKey => "eventseal_verified_under_non_primary_key".to_owned(),
            Self::ReplayIds => "eventseal_replay_ids".to_owned(),
            Self::KmsCallsInFlight => "eventseal_kms_calls_in_flight".to_owned(),
            Self::AuditBuffered => "eventseal_audit_buffered".to_owned(),
            Self::Refused(i) => format!("eventseal_refused_{}", ProblemKind::ALL[i].slug().replace('-', "_")),
        }
    }

    /// A position in [`Counter::all`], for a table of metric ids.
    pub fn index(self) -> usize {
        match self {
            Self::FieldsSealed => 0,
            Self::FieldsOpened => 1,
            Self::FieldsWithheld => 2,
            Self::FieldsMasked => 3,
            Self::SignaturesVerified => 4,
            Self::SignaturesSigned => 5,
            Self::SignatureFailures => 6,
            Self::ForwardedDespiteError => 7,
            Self::RefusedTotal => 8,
            Self::AuditRecords => 9,
            Self::AuditDelivered => 10,
            Self::AuditUndelivered => 11,
            Self::KmsCalls => 12,
            Self::KmsCallFailures => 13,
            Self::KmsCallsResent => 14,
            Self::HoldUnavailable => 15,
            Self::NatsProtocolErrors => 16,
            Self::OpenedUnderRetiredKey => 17,
            Self::VerifiedUnderNonPrimaryKey => 18,
            Self::ReplayIds => 19,
            Self::KmsCallsInFlight => 20,
            Self::AuditBuffered => 21,
            Self::Refused(i) => 22 + i,
        }
    }

    /// Whether Envoy keeps it as a gauge (it goes down as well as up), not a counter.
    pub fn is_gauge(self) -> bool {
        matches!(self, Self::ReplayIds | Self::KmsCallsInFlight | Self::AuditBuffered)
    }
}

/// What one VM last added to a gauge of a table it keeps: Envoy sums the changes of
/// every VM (worker) that defines the name, so each reports changes, not values.
#[derive(Debug, Default)]
pub struct Reported(usize);

impl Reported {
    /// The change to report now that the table holds `now` entries.
    pub fn change(&mut self, now: usize) -> i64 {
        let change = now as i64 - self.0 as i64;
        self.0 = now;
        change
    }
}

/// Whether a problem kind is a failed signature check.
fn is_signature_failure(kind: ProblemKind) -> bool {
    matches!(
        kind,
        ProblemKind::SignatureMissing
            | ProblemKind::SignatureMalformed
            | ProblemKind::SignatureExpired
            | ProblemKind::SignatureInvalid
            | ProblemKind::SignatureReplayed
    )
}

/// What a forwarded body adds to the counters.
pub fn forwarded(report: &Report) -> Vec<Counter> {
    let mut out: Vec<Counter> = report
        .fields
        .iter()
        .filter_map(|field| match field.result {
            FieldResult::Sealed => Some(Counter::FieldsSealed),
            FieldResult::Opened => Some(Counter::FieldsOpened),
            FieldResult::Withheld => Some(Counter::FieldsWithheld),
            FieldResult::Masked => Some(Counter::FieldsMasked),
            _ => None,
        })
        .collect();
    if report.verified_by.is_some() {
        out.push(Counter::SignaturesVerified);
    }
    if report.verified_by_non_primary {
        out.push(Counter::VerifiedUnderNonPrimaryKey);
    }
    out.extend(report.retired_opens.iter().map(|_| Counter::OpenedUnderRetiredKey));
    if report.signed {
        out.push(Counter::SignaturesSigned);
    }
    if let Some(kind) = report.forwarded_despite {
        out.push(Counter::ForwardedDespiteError);
        if is_signature_failure(kind) {
            out.push(Counter::SignatureFailures);
        }
    }
    out
}

/// What a refusal adds to the counters.
pub fn refused(kind: ProblemKind) -> Vec<Counter> {
    let mut out = vec![Counter::RefusedTotal];
    if let Some(i) = ProblemKind::ALL.iter().position(|k| *k == kind) {
        out.push(Counter::Refused(i));
    }
    if is_signature_failure(kind) {
        out.push(Counter::SignatureFailures);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventseal_core::FieldOutcome;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_prefixed_and_indexed_in_order() {
        let names: Vec<String> = Counter::all().map(Counter::name).collect();
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        for (i, counter) in Counter::all().enumerate() {
            assert_eq!(counter.index(), i);
            let name = counter.name();
            assert!(
                name.starts_with("eventseal_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        assert!(names.contains(&"eventseal_refused_signature_replayed".to_owned()));
        assert!(names.contains(&"eventseal_audit_undelivered".to_owned()));
    }

    #[test]
    fn kinds_are_listed_once() {
        let slugs: HashSet<&str> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
    }

    #[test]
    fn a_report_counts_each_field_and_signature() {
        let field = |result| FieldOutcome {
            pointer: "/a".into(),
            kid: None,
            result,
        };
        let report = Report {
            fields: vec![field(FieldResult::Sealed), field(FieldResult::Sealed), field(FieldResult::Absent)],
            verified_by: None,
            signed: true,
            ..Report::default()
        };
        assert_eq!(
            forwarded(&report),
            [Counter::FieldsSealed, Counter::FieldsSealed, Counter::SignaturesSigned]
        );
        assert_eq!(
            refused(ProblemKind::SignatureReplayed),
            [Counter::RefusedTotal, Counter::Refused(10), Counter::SignatureFailures]
        );
    }
}
