//! The parser-differential oracle for sealing (FORMAT.md §2.1).
//!
//! Hostile events (escaped, duplicated and lone-surrogate member names, NUL, `~` and `/`
//! in names, non-ASCII, deep nesting) go through the engine with a sealing rule. Whatever
//! it forwards is read again by an independent strict reading: a whole tree built by
//! serde_json's tokenizer that keeps every member, duplicates included (so it stands for
//! first-wins and last-wins parsers alike). Every selected pointer present in that reading
//! must hold an envelope bound to that pointer and context that opens to the value the
//! input had there, and nothing else may differ; or the body must have been refused, with
//! the refusal the input calls for.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventseal_core::{BodyJob, Context, Decision, Direction, Engine, Keyring, MemoryReplayCache, Policy, RequestHead, open_bytes};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use std::fmt;

/// Nesting limit of the policy below (`limits.max_json_depth`).
const MAX_DEPTH: usize = 32;

const SELECTORS: [&str; 5] = ["/data/card", "/data/email", "/data/items/*/price", "/*/ssn", "/data/a~1b/~0c"];

/// A JSON value read whole, every member kept in order (duplicates too).
#[derive(Debug, Clone, PartialEq)]
enum Tree {
    Scalar(Value),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// The strict reading: `None` for anything RFC 8259 with valid Unicode does not allow
    /// (serde_json refuses unpaired surrogate escapes when it decodes a string).
    fn read(text: &[u8]) -> Option<Tree> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let tree = Tree::deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(tree)
    }

    fn depth(&self) -> usize {
        match self {
            Tree::Scalar(_) => 0,
            Tree::Array(items) => 1 + items.iter().map(Tree::depth).max().unwrap_or(0),
            Tree::Object(members) => 1 + members.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
        }
    }

    fn member(&self, name: &str) -> Option<&Tree> {
        match self {
            Tree::Object(members) => members.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TreeVisitor;
        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Scalar(Value::String(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut members = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    // With serde_json's `arbitrary_precision`, a number that is not an
                    // integer arrives as a one-member map under this private name (the
                    // generator never writes that name).
                    if name == "$serde_json::private::Number" && members.is_empty() {
                        let digits: String = map.next_value()?;
                        let number = digits.parse().map_err(serde::de::Error::custom)?;
                        return Ok(Tree::Scalar(Value::Number(number)));
                    }
                    members.push((name, map.next_value()?));
                }
                Ok(Tree::Object(members))
            }
        }
        deserializer.deserialize_any(TreeVisitor)
    }
}

/// One RFC 6901 reference token.
fn escaped(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The segments of a selector, unescaped (RFC 6901); `*` stays the wildcard.
fn unescaped_segments(selector: &str) -> Vec<String> {
    selector[1..].split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

/// Every value `selector` matches, with its concrete pointer, in document order; every
/// member of a repeated name matches.
fn matches<'t>(tree: &'t Tree, selector: &str) -> Vec<(String, &'t Tree)> {
    fn go<'t>(node: &'t Tree, segments: &[String], pointer: String, out: &mut Vec<(String, &'t Tree)>) {
        let Some((first, rest)) = segments.split_first() else {
            out.push((pointer, node));
            return;
        };
        match node {
            Tree::Object(members) => {
                for (name, child) in members.iter().filter(|(n, _)| first == "*" || n == first) {
                    go(child, rest, format!("{pointer}/{}", escaped(name)), out);
                }
            }
            Tree::Array(items) => {
                for (i, child) in items.iter().enumerate().filter(|(i, _)| first == "*" || *first == i.to_string()) {
                    go(child, rest, format!("{pointer}/{i}"), out);
                }
            }
            Tree::Scalar(_) => {}
        }
    }
    let segments = unescaped_segments(selector);
    let mut out = Vec::new();
    go(tree, &segments, String::new(), &mut out);
    out
}

/// `tree` with the value at every selected place replaced by `f(pointer, value)`.
fn replace_matches(tree: &Tree, selector: &str, f: &mut dyn FnMut(&str, &Tree) -> Tree) -> Tree {
    fn go(node: &Tree, segments: &[String], pointer: String, f: &mut dyn FnMut(&str, &Tree) -> Tree) -> Tree {
        let Some((first, rest)) = segments.split_first() else {
            return f(&pointer, node);
        };
        match node {
            Tree::Object(members) => Tree::Object(
                members
                    .iter()
                    .map(|(name, child)| {
                        let child = if first == "*" || name == first {
                            go(child, rest, format!("{pointer}/{}", escaped(name)), f)
                        } else {
                            child.clone()
                        };
                        (name.clone(), child)
                    })
                    .collect(),
            ),
            Tree::Array(items) => Tree::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, child)| {
                        if first == "*" || *first == i.to_string() {
                            go(child, rest, format!("{pointer}/{i}"), f)
                        } else {
                            child.clone()
                        }
                    })
                    .collect(),
            ),
            Tree::Scalar(_) => node.clone(),
        }
    }
    let segments = unescaped_segments(selector);
    go(tree, &segments, String::new(), f)
}

/// The protected header of a compact JWE, decoded and read strictly.
fn protected_header(envelope: &str) -> Option<Value> {
    let segments: Vec<&str> = envelope.split('.').collect();
    if segments.len() != 5 {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).ok()?).ok()
}

/// One engine for every generated case (a replay cache is made per decision).
static ENGINE: std::sync::LazyLock<Engine> = std::sync::LazyLock::new(engine);

fn engine() -> Engine {
    let policy = Policy::from_value(&json!({
        "keys": {"env": "EVENTSEAL_KEYS"},
        "limits": {"max_json_depth": MAX_DEPTH},
        "rules": [{
            "name": "in",
            "match": {"methods": ["POST"], "path": "/in"},
            "context": {"type": {"body": "/type"}},
            "seal": {"fields": SELECTORS},
        }],
    }))
    .expect("the test policy loads");
    let keyring = Keyring::from_jwks(
        r#"{"keys":[{"kty":"oct","kid":"diff","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
    )
    .expect("the test keyring loads");
    Engine::new(policy, keyring)
}

/// Member names as they are spelled in the body (escapes unresolved): the selected names
/// in several spellings, and odd but valid ones.
const NAMES: &[&str] = &[
    "data",
    "d\\u0061ta",
    "card",
    "c\\u0061rd",
    "\\u0063ard",
    "email",
    "items",
    "it\\u0065ms",
    "price",
    "pr\\u0069ce",
    "ssn",
    "a/b",
    "a\\/b",
    "~c",
    "~0c",
    "\\ud83d\\ude00",
    "\\u0000",
    "nul\\u0000card",
    "é",
    "\\u00e9",
    "*",
    "~1",
    "",
    "\\\"",
    "\\\\",
    "0",
    "id",
];

/// Names no valid Unicode text has: unpaired UTF-16 surrogate escapes.
const LONE_SURROGATE_NAMES: &[&str] = &["car\\ud800d", "p\\ud800", "\\udc00x", "\\ud800\\ud800", "\\ud800\\u0041"];

/// String values as they are spelled in the body.
const STRINGS: &[&str] = &[
    "",
    "4000123412341234",
    "zed@example.test",
    "\\ud83d\\ude00",
    "\\u0000",
    "tab\\there",
    "é\\u00e9",
    "\\\"quoted\\\"",
];

const LONE_SURROGATE_STRINGS: &[&str] = &["\\ud800", "x\\udfff", "\\udbff\\ud800"];

/// A member name: mostly valid, now and then a lone surrogate.
fn name() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![40 => prop::sample::select(NAMES), 1 => prop::sample::select(LONE_SURROGATE_NAMES)]
}

/// A string value, spelled as in the body: mostly valid, now and then a lone surrogate.
fn string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![40 => prop::sample::select(STRINGS), 1 => prop::sample::select(LONE_SURROGATE_STRINGS)].prop_map(|s| format!("\"{s}\""))
}

/// A JSON value as text, from a small grammar that reaches every hostile spelling above.
fn value() -> BoxedStrategy<String> {
    let scalar = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        (-1000i64..1000).prop_map(|n| n.to_string()),
        Just("1.50e3".to_owned()),
        string(),
    ];
    scalar
        .prop_recursive(6, 64, 5, |inner| {
            let ws = prop::sample::select(&["", " ", "\n\t "][..]);
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), ws.clone()).prop_map(|(items, ws)| format!("[{ws}{}{ws}]", items.join(","))),
                (prop::collection::vec((name(), inner), 0..6), ws).prop_map(|(members, ws)| {
                    let members: Vec<String> = members.iter().map(|(n, v)| format!("{ws}\"{n}\"{ws}:{ws}{v}")).collect();
                    format!("{{{}{ws}}}", members.join(","))
                }),
            ]
        })
        .boxed()
}

/// An event: a `type`, usually a `data` object holding selected members, sometimes buried
/// deeper than the nesting limit.
fn event() -> impl Strategy<Value = String> {
    let type_value = prop_oneof![
        4 => Just("\"t.created\"".to_owned()),
        1 => string(),
    ];
    let data_member = (prop::sample::select(&["card", "email", "ssn", "a/b"][..]), value());
    let other_member = (name(), value());
    let price_items = prop::collection::vec(other_member.clone(), 0..3).prop_map(|others| {
        let others: String = others.iter().map(|(n, v)| format!(",\"{n}\":{v}")).collect();
        format!("[{{\"price\":5{others}}},{{\"price\":{{\"cents\":1}}}}]")
    });
    let data = (
        price_items,
        prop::collection::vec(data_member, 0..4),
        prop::collection::vec(other_member.clone(), 0..4),
    )
        .prop_map(|(items, selected, other)| {
            let members: Vec<String> = std::iter::once(format!("\"items\":{items}"))
                .chain(selected.iter().chain(&other).map(|(n, v)| format!("\"{n}\":{v}")))
                .collect();
            format!("{{{}}}", members.join(","))
        });
    (type_value, data, other_member, 0usize..=40, any::<bool>()).prop_map(|(type_value, data, (top_name, top_value), burial, bury)| {
        let data = if bury {
            format!("{}{data}{}", "[".repeat(burial), "]".repeat(burial))
        } else {
            data
        };
        format!("{{\"type\":{type_value},\"data\":{data},\"{top_name}\":{top_value}}}")
    })
}

/// What the engine must do with `body`, judged by the strict reading alone.
enum Expected {
    /// Refused, with this problem type (or too deep, when it is that too).
    Refused(&'static str),
    Forwarded(Tree),
}

/// Bracket nesting, counted naively: generated strings never hold brackets.
fn bracket_depth(body: &str) -> usize {
    let mut depth = (0usize, 0usize);
    for b in body.bytes() {
        match b {
            b'[' | b'{' => depth = (depth.0 + 1, depth.1.max(depth.0 + 1)),
            b']' | b'}' => depth.0 -= 1,
            _ => {}
        }
    }
    depth.1
}

fn expected(body: &str) -> Expected {
    let Some(tree) = Tree::read(body.as_bytes()) else {
        return Expected::Refused("malformed-json");
    };
    if tree.depth() > MAX_DEPTH {
        return Expected::Refused("json-too-deep");
    }
    let context_ok = matches!(tree.member("type"), Some(Tree::Scalar(Value::String(_) | Value::Number(_))));
    if !context_ok {
        return Expected::Refused("context-missing");
    }
    Expected::Forwarded(tree)
}

/// Checks one decision against the oracle; `Err` says what broke.
fn judge(engine: &Engine, body: &str) -> Result<(), String> {
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let request = RequestHead {
        method: "POST",
        path: "/in",
        authority: "gateway.test",
        headers: &headers,
        subject: None,
    };
    let job = BodyJob {
        rule: engine.rule(engine.route(&request).expect("the rule matches")),
        direction: Direction::Request,
        request,
        headers: &headers,
        principal: None,
        body: body.as_bytes(),
        now: 1_800_000_000,
    };
    let decision = engine.decide(&job, &mut MemoryReplayCache::default());
    match (expected(body), decision) {
        (Expected::Refused(kind), Decision::Refuse { problem, .. }) => {
            let got = problem.kind.slug();
            // A body that is both malformed and too deep may be refused for either.
            (got == kind || (got == "json-too-deep" && bracket_depth(body) > MAX_DEPTH))
                .then_some(())
                .ok_or_else(|| format!("refused as {got} ({}), expected {kind}: {}", problem.status, problem.detail))
        }
        (Expected::Refused(kind), Decision::Forward { body: forwarded, .. }) => {
            let forwarded = forwarded.map_or_else(|| body.to_owned(), |b| String::from_utf8_lossy(&b).into_owned());
            Err(format!("forwarded a body that calls for {kind}: {forwarded}"))
        }
        (Expected::Forwarded(_), Decision::Refuse { problem, .. }) => {
            Err(format!("refused a valid event: {} {}", problem.status, problem.detail))
        }
        (Expected::Forwarded(input), Decision::Forward { body: forwarded, .. }) => {
            let forwarded = forwarded.unwrap_or_else(|| body.as_bytes().to_vec());
            let output = Tree::read(&forwarded).ok_or("forwarded a body the strict reading refuses")?;
            let Some(Tree::Scalar(kind)) = input.member("type") else {
                unreachable!("checked by expected")
            };
            let kind = kind.as_str().map_or_else(|| kind.to_string(), str::to_owned);
            let context: Context = [("type", kind.as_str())].into_iter().collect();
            let mut restored = output;
            for selector in SELECTORS {
                let mut failure = None;
                restored = replace_matches(&restored, selector, &mut |pointer, found| {
                    let opened = match found {
                        Tree::Scalar(Value::String(envelope)) => match protected_header(envelope) {
                            Some(header) if header["ptr"] == pointer && header["ctx"] == json!({"type": kind}) => {
                                open_bytes(engine.keyring(), pointer, &context, envelope).ok()
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match opened.map(|(plaintext, _)| Tree::read(&plaintext)) {
                        Some(Some(tree)) => tree,
                        _ => {
                            failure.get_or_insert_with(|| format!("{pointer} is not an envelope bound to it: {found:?}"));
                            found.clone()
                        }
                    }
                });
                if let Some(failure) = failure {
                    return Err(failure);
                }
            }
            // Opening every envelope gives back the input: nothing else changed, nothing lost.
            (restored == input)
                .then_some(())
                .ok_or_else(|| "the forwarded event differs from the input".to_owned())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/differential.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn whatever_is_forwarded_holds_every_selected_field_sealed(body in event()) {
        if let Err(broken) = judge(&ENGINE, &body) {
            prop_assert!(false, "{broken}\nevent: {body}");
        }
    }
}

/// The generator reaches every branch of the oracle, so the property cannot pass by
/// producing only one kind of event.
#[test]
fn the_generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = event();
    let (mut malformed, mut deep, mut sealed) = (0, 0, 0);
    for _ in 0..2000 {
        let body = strategy.new_tree(&mut runner).expect("an event").current();
        match expected(&body) {
            Expected::Refused("malformed-json") => malformed += 1,
            Expected::Refused("json-too-deep") => deep += 1,
            Expected::Forwarded(tree) => sealed += usize::from(!matches(&tree, "/data/card").is_empty()),
            Expected::Refused(_) => {}
        }
    }
    assert!(
        malformed > 100 && deep > 50 && sealed > 100,
        "malformed {malformed}, deep {deep}, sealed {sealed}"
    );
}

/// The two reproductions of the reported defect, as written.
#[test]
fn a_lone_surrogate_in_a_nested_member_name_is_refused() {
    let engine = engine();
    for body in [
        r#"{"type":"t.created","data":{"car\ud800d":{"pan":"4000123412341234"},"email":"zed@example.test","items":[{"price":1}]}}"#,
        r#"{"type":"t.created","data":{"items":[{"p\ud800":1,"price":5}],"card":"4000123412341234"}}"#,
    ] {
        judge(&engine, body).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(expected(body), Expected::Refused("malformed-json")));
    }
}
