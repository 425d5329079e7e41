//! Runs the language-neutral envelope vectors of `tests/vectors/` (docs/FORMAT.md §9).
//!
//! The vectors are written by `tests/vectors/generate.py`, an independent Python
//! implementation of the format; here every one of them goes through
//! [`eventseal_core::open_value`], and every success vector is also tampered with
//! byte by byte.

use eventseal_core::{Context, KeyStatus, Keyring, Rejection, open_value};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Every outcome a vector can expect. `not_sealed` is not here: it is given to a
/// selected value that is not a JSON string, and a vector's envelope always is one.
const OUTCOMES: [&str; 7] = [
    "success",
    "malformed",
    "unauthenticated",
    "unknown_key",
    "disabled_key",
    "moved_field",
    "wrong_context",
];

/// The vector whose bytes docs/FORMAT.md shows as its worked example.
const FORMAT_EXAMPLE: &str = "000-format-example.json";

struct Vector {
    file: String,
    keyring: Keyring,
    pointer: String,
    context: Context,
    envelope: String,
    expected: String,
    plaintext: Option<Value>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn vector_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .expect("tests/vectors exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Vector {
    let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
    let field = |name: &str| doc.get(name).unwrap_or_else(|| panic!("{file}: no \"{name}\""));
    let string = |name: &str| {
        field(name)
            .as_str()
            .unwrap_or_else(|| panic!("{file}: \"{name}\" is not a string"))
            .to_owned()
    };
    let keyring = Keyring::from_value(field("keys"), "/keys").unwrap_or_else(|e| panic!("{file}: {e}"));
    let context = field("context")
        .as_object()
        .unwrap_or_else(|| panic!("{file}: \"context\" is not an object"))
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{file}: context member {name} is not a string"));
            (name.clone(), value.to_owned())
        })
        .collect();
    Vector {
        keyring,
        pointer: string("pointer"),
        context,
        envelope: string("envelope"),
        expected: string("expected"),
        plaintext: doc.get("plaintext").cloned(),
        file,
    }
}

fn all_vectors() -> Vec<Vector> {
    vector_files().iter().map(|path| load(path)).collect()
}

fn class(result: &Result<(Value, eventseal_core::KeyId), Rejection>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(rejection) => rejection.class(),
    }
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let mut failures = Vec::new();
    let vectors = all_vectors();
    for v in &vectors {
        let result = open_value(&v.keyring, &v.pointer, &v.context, &v.envelope);
        let got = class(&result);
        if got != v.expected {
            failures.push(format!("{}: expected {}, got {got} ({result:?})", v.file, v.expected));
        } else if let Ok((value, _)) = &result
            && Some(value) != v.plaintext.as_ref()
        {
            failures.push(format!("{}: plaintext {value} instead of {:?}", v.file, v.plaintext));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn the_vector_set_is_well_formed_and_covers_every_outcome() {
    let files = vector_files();
    assert!(
        files.len() >= 20,
        "only {} vector files in {}",
        files.len(),
        vectors_dir().display()
    );
    let vectors = all_vectors();
    let mut problems = Vec::new();
    for v in &vectors {
        let (number, rest) = v.file.split_at(v.file.len().min(4));
        if !(number.len() == 4 && number[..3].bytes().all(|b| b.is_ascii_digit()) && number.ends_with('-') && rest.len() > 5) {
            problems.push(format!("{}: name is not NNN-short-name.json", v.file));
        }
        if !OUTCOMES.contains(&v.expected.as_str()) {
            problems.push(format!("{}: unknown expected outcome {:?}", v.file, v.expected));
        }
        if (v.expected == "success") != v.plaintext.is_some() {
            problems.push(format!("{}: plaintext must be given exactly for success", v.file));
        }
    }
    for outcome in OUTCOMES {
        if !vectors.iter().any(|v| v.expected == outcome) {
            problems.push(format!("no vector expects {outcome}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_format_worked_example_is_a_vector() {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md")).expect("docs/FORMAT.md");
    let example = load(&vectors_dir().join(FORMAT_EXAMPLE));
    assert_eq!(example.expected, "success");
    // The spec breaks the compact form into lines; compare without whitespace.
    let unwrapped: String = spec.split_whitespace().collect();
    assert!(
        unwrapped.contains(&example.envelope),
        "docs/FORMAT.md does not show the envelope of {FORMAT_EXAMPLE}: the spec and the vectors change together"
    );
    let text = std::fs::read_to_string(vectors_dir().join(FORMAT_EXAMPLE)).expect("example vector");
    let doc: Value = serde_json::from_str(&text).expect("example vector is JSON");
    let k = doc["keys"]["keys"][0]["k"].as_str().expect("the example key");
    assert!(spec.contains(k), "docs/FORMAT.md does not show the key of {FORMAT_EXAMPLE}");
    // The outcomes §7 states for the example moved elsewhere.
    let moved = open_value(&example.keyring, "/data/customer/phone", &example.context, &example.envelope);
    assert_eq!(moved, Err(Rejection::MovedField));
    let globex: Context = [("type", "order.created"), ("tenant", "globex")].into_iter().collect();
    let copied = open_value(&example.keyring, &example.pointer, &globex, &example.envelope);
    assert_eq!(copied, Err(Rejection::WrongContext));
}

/// Strict base64url (RFC 4648 §5) without padding, refusing non-zero unused bits.
///
/// Written here rather than borrowed from the crate under test, so the tampering
/// oracle below does not share the implementation it judges.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        acc = (acc << 6) | u32::from(sextet(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// Whether decoded header bytes have the shape FORMAT.md §3 requires: a JSON object
/// with `alg` "dir", `enc` "A256GCM", string `kid` and `ptr`, a `ctx` object of
/// strings, and no `crit`. Returns the kid when they do.
fn header_kid(header: &[u8]) -> Option<String> {
    let header: Value = serde_json::from_slice(header).ok()?;
    let ctx_ok = header.get("ctx")?.as_object()?.values().all(Value::is_string);
    let ok = ctx_ok
        && header.get("crit").is_none()
        && header.get("alg")? == "dir"
        && header.get("enc")? == "A256GCM"
        && header.get("ptr")?.is_string();
    ok.then(|| header.get("kid")?.as_str().map(str::to_owned)).flatten()
}

/// The one outcome an authentic envelope must have once byte `position` of its text is
/// XORed with 0x01.
///
/// - A flipped `.` becomes `/`: the segments no longer split in five → malformed.
/// - A flipped base64url character either leaves the alphabet (`A`→`@`, `-`→`,`, …),
///   or sets an unused low bit of a segment's last character (non-canonical): malformed.
///   Otherwise the segment decodes to bytes of the same length that differ:
///   - in the IV, ciphertext or tag, everything before the AEAD check still holds, and
///     the tag fails → unauthenticated;
///   - in the header, the header is checked before the key: if it no longer has the
///     required shape → malformed; if it does, its `kid` is looked up → unknown_key
///     when no key has it, disabled_key when that key is disabled; else the tag fails
///     because the AAD (the header segment) changed → unauthenticated.
///
/// moved_field and wrong_context are never right: the binding is only judged for
/// authentic envelopes, so a changed `ptr` or `ctx` must show as unauthenticated.
/// (A single flip cannot duplicate a header member name: the names differ in every
/// byte and one base64 character touches at most two adjacent bytes.)
fn expected_after_flip(keyring: &Keyring, mutated: &str, position: usize) -> &'static str {
    let segments: Vec<&str> = mutated.split('.').collect();
    if segments.len() != 5 || !segments.iter().all(|s| decode_base64url(s).is_some()) {
        return "malformed";
    }
    if position >= segments[0].len() {
        return "unauthenticated";
    }
    let header = decode_base64url(segments[0]).unwrap_or_default();
    match header_kid(&header) {
        None => "malformed",
        Some(kid) => match keyring.get(&kid).map(|key| key.status()) {
            None => "unknown_key",
            Some(KeyStatus::Disabled) => "disabled_key",
            Some(_) => "unauthenticated",
        },
    }
}

#[test]
fn no_single_byte_change_to_a_success_vector_opens() {
    let mut failures = Vec::new();
    let mut tried = 0usize;
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for v in all_vectors().iter().filter(|v| v.expected == "success") {
        for position in 0..v.envelope.len() {
            let mut bytes = v.envelope.clone().into_bytes();
            bytes[position] ^= 0x01;
            // The envelope is ASCII, and an ASCII byte XOR 0x01 stays ASCII.
            let mutated = String::from_utf8(bytes).expect("ASCII stays ASCII");
            let outcome = std::panic::catch_unwind(|| class(&open_value(&v.keyring, &v.pointer, &v.context, &mutated)));
            let Ok(got) = outcome else {
                failures.push(format!("{}: byte {position}: open_value panicked", v.file));
                continue;
            };
            let want = expected_after_flip(&v.keyring, &mutated, position);
            if got != want {
                failures.push(format!("{}: byte {position} ^ 0x01: expected {want}, got {got}", v.file));
            }
            *seen.entry(got).or_default() += 1;
            tried += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} modified vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The oracle must have been exercised on both sides of the header boundary.
    for class in ["malformed", "unauthenticated", "unknown_key"] {
        assert!(seen.contains_key(class), "no modified vector gave {class}: {seen:?}");
    }
}

/// The KMS vectors of `tests/vectors/kms/` (docs/FORMAT.md §10): envelopes whose data key is
/// wrapped by Vault Transit. The vector's `kms` member describes the KMS this runner plays:
/// the configured key sources, and the only wrapped keys it unwraps (with their data keys).
mod kms {
    use super::{OUTCOMES, decode_base64url};
    use eventseal_core::{Context, DataKey, DataKeyLookup, KeyId, Keyring, Rejection, SecretBytes, Unwrap, WrappedKey, open_value_with};
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    struct Kms {
        sources: Vec<String>,
        keys: Vec<DataKey>,
    }

    impl DataKeyLookup for Kms {
        fn unwrap(&self, source: &str, wrapped: &WrappedKey) -> Unwrap<'_> {
            if !self.sources.iter().any(|s| s == source) {
                return Unwrap::UnknownSource;
            }
            let issued = self.keys.iter().find(|k| k.source().as_str() == source && k.wrapped() == wrapped);
            issued.map_or(Unwrap::Refused, Unwrap::Ready)
        }
    }

    struct Vector {
        file: String,
        kms: Kms,
        pointer: String,
        context: Context,
        envelope: String,
        expected: String,
        plaintext: Option<Value>,
    }

    fn source_kid(text: &str) -> KeyId {
        let (mount, key) = text
            .strip_prefix("transit:")
            .and_then(|rest| rest.rsplit_once('/'))
            .unwrap_or_else(|| panic!("{text}: not transit:<mount>/<key>"));
        KeyId::vault_transit(mount, key).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn load(path: &Path) -> Vector {
        let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("readable vector")).expect("vector is JSON");
        let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("{file}: {v} is not a string")).to_owned();
        let kms = &doc["kms"];
        let sources = kms["sources"].as_array().expect("kms.sources").iter().map(text).collect();
        let keys = kms["data_keys"]
            .as_array()
            .expect("kms.data_keys")
            .iter()
            .map(|entry| {
                let bytes = decode_base64url(&text(&entry["k"])).expect("k is base64url");
                let wrapped = WrappedKey::parse(&text(&entry["wrapped"])).expect("a vault: ciphertext");
                DataKey::new(source_kid(&text(&entry["source"])), &SecretBytes::new(bytes), wrapped).expect("a 32-byte data key")
            })
            .collect();
        let context = doc["context"]
            .as_object()
            .expect("context")
            .iter()
            .map(|(name, value)| (name.clone(), text(value)))
            .collect();
        Vector {
            kms: Kms { sources, keys },
            pointer: text(&doc["pointer"]),
            context,
            envelope: text(&doc["envelope"]),
            expected: text(&doc["expected"]),
            plaintext: doc.get("plaintext").cloned(),
            file,
        }
    }

    fn all() -> Vec<Vector> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/kms");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("tests/vectors/kms exists")
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files.iter().map(|path| load(path)).collect()
    }

    fn open(v: &Vector, envelope: &str) -> Result<Value, Rejection> {
        open_value_with(&Keyring::default(), &v.kms, &v.pointer, &v.context, envelope).map(|(value, _)| value)
    }

    #[test]
    fn every_kms_vector_gives_its_expected_outcome() {
        let vectors = all();
        assert!(vectors.len() >= 10, "only {} KMS vectors", vectors.len());
        let mut failures = Vec::new();
        for v in &vectors {
            let result = open(v, &v.envelope);
            let got = result.as_ref().map_or_else(Rejection::class, |_| "success");
            if got != v.expected {
                failures.push(format!("{}: expected {}, got {got} ({result:?})", v.file, v.expected));
            } else if let Ok(value) = &result
                && Some(value) != v.plaintext.as_ref()
            {
                failures.push(format!("{}: plaintext {value} instead of {:?}", v.file, v.plaintext));
            }
        }
        for outcome in OUTCOMES.iter().filter(|o| **o != "disabled_key") {
            if !vectors.iter().any(|v| v.expected == *outcome) {
                failures.push(format!("no KMS vector expects {outcome}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_format_kms_worked_example_is_a_vector() {
        let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md")).expect("docs/FORMAT.md");
        let unwrapped: String = spec.split_whitespace().collect();
        let example = all()
            .into_iter()
            .find(|v| v.file == "100-vault-transit-example.json")
            .expect("the §10 example");
        assert_eq!(
            open(&example, &example.envelope).expect("it opens"),
            Value::from("zoe@example.test")
        );
        assert!(
            unwrapped.contains(&example.envelope),
            "docs/FORMAT.md §10.5 does not show the envelope of kms/100"
        );
        assert!(
            unwrapped.contains(example.kms.keys[0].wrapped().as_str()),
            "§10.5 does not show its wrapped key"
        );
    }

    #[test]
    fn no_single_byte_change_to_a_kms_success_vector_opens() {
        let mut tried = 0usize;
        for v in all().iter().filter(|v| v.expected == "success") {
            for position in 0..v.envelope.len() {
                let mut bytes = v.envelope.clone().into_bytes();
                bytes[position] ^= 0x01;
                let mutated = String::from_utf8(bytes).expect("ASCII stays ASCII");
                let result = std::panic::catch_unwind(|| open(v, &mutated).map_err(|r| r.class()));
                match result {
                    Err(_) => panic!("{}: byte {position}: open_value_with panicked", v.file),
                    Ok(Ok(value)) => panic!("{}: byte {position} ^ 0x01 still opens, to {value}", v.file),
                    // The binding is judged only after authentication.
                    Ok(Err(class @ ("moved_field" | "wrong_context" | "needs_data_key"))) => {
                        panic!("{}: byte {position} ^ 0x01 gave {class}", v.file)
                    }
                    Ok(Err(_)) => tried += 1,
                }
            }
        }
        assert!(tried > 500, "only {tried} modified KMS vectors");
    }
}

/// The event vectors of `tests/vectors/events/` (docs/FORMAT.md §2.1): whole events and the
/// selectors a sealing rule applies. `malformed` events must be refused whole; for the others
/// the vector lists, from the generator's own reading, every pointer that must be sealed.
mod events {
    use eventseal_core::{Context, DocumentError, FieldPath, FieldResult, Keyring, Limits, SealError, open_fields, seal_fields};
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    fn all() -> Vec<(String, Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/events");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("tests/vectors/events exists")
            .map(|entry| entry.expect("readable directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).expect("readable vector");
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                (name, serde_json::from_str(&text).expect("vector is JSON"))
            })
            .collect()
    }

    #[test]
    fn every_event_vector_is_refused_or_sealed_as_it_expects() {
        let keyring = Keyring::from_jwks(
            r#"{"keys":[{"kty":"oct","kid":"ev","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
        )
        .expect("keyring");
        let vectors = all();
        assert!(vectors.iter().any(|(_, v)| v["expected"] == "malformed") && vectors.iter().any(|(_, v)| v["expected"] == "sealed"));
        let mut failures = Vec::new();
        for (name, v) in &vectors {
            let fields: Vec<FieldPath> = v["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| FieldPath::parse(f.as_str().expect("a selector")).expect("a valid selector"))
                .collect();
            let event = v["event"].as_str().expect("event").as_bytes();
            let (context, limits) = (Context::new(), Limits::default());
            let result = seal_fields(event, &fields, false, &keyring, &context, &limits);
            match (v["expected"].as_str(), result) {
                (Some("malformed"), Err(SealError::Document(DocumentError::LoneSurrogate { .. }))) => {}
                (Some("sealed"), Ok((sealed, outcomes))) => {
                    let pointers: Vec<&str> = outcomes
                        .iter()
                        .filter(|o| o.result == FieldResult::Sealed)
                        .map(|o| o.pointer.as_str())
                        .collect();
                    let expected: Vec<&str> = v["sealed"].as_array().expect("sealed").iter().filter_map(Value::as_str).collect();
                    let opened = open_fields(&sealed, &fields, false, &keyring, &context, &limits).map(|(o, _)| o);
                    if pointers != expected || opened.as_deref().ok() != Some(event) {
                        failures.push(format!(
                            "{name}: sealed {pointers:?}, expected {expected:?}; opened back: {}",
                            opened.is_ok()
                        ));
                    }
                }
                (expected, got) => failures.push(format!("{name}: expected {expected:?}, got {got:?}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
