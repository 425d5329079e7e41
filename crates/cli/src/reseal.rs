//! `eventseal reseal`: moves the envelopes of an event that are sealed under `retired`
//! local keys to the keyring's primary key (FORMAT.md §5.1, docs/OPERATIONS.md "Rotation").
//!
//! Every `dir` envelope under a retired key is opened and sealed again under the primary
//! key, for the same pointer and context, by eventseal-core (`reseal`): the plaintext
//! exists only in its memory, and is wiped there. The new envelope replaces the old one in
//! the event's text; nothing else in the event changes, byte for byte. Envelopes under keys
//! in service, KMS envelopes (`eventseal rewrap` moves those) and other strings are left as
//! they are; an envelope that does not open (unknown key, disabled key, not authentic) is
//! left too, and reported.

use crate::{Failure, strings};
use eventseal_core::{KeyId, Keyring, Reseal, reseal};

/// What one run did.
#[derive(Debug, Default)]
pub struct Resealed {
    /// The event, with the moved envelopes replaced.
    pub event: Vec<u8>,
    /// Each envelope moved: where it is in the event, and the keys it moved from and to.
    pub moved: Vec<(String, KeyId, KeyId)>,
    /// How many envelopes were already under keys in service.
    pub current: usize,
    /// Each envelope that could not be moved: where, and why (no key material, no value).
    pub refused: Vec<(String, String)>,
}

/// Reseals the envelopes of `event` under retired keys of `keyring` with its primary key.
///
/// # Errors
/// A [`Failure`] when the event is not JSON or an envelope is written with JSON escapes.
pub fn run(event: &[u8], keyring: &Keyring) -> Result<Resealed, Failure> {
    let (text, value) = strings::parse(event)?;
    let mut out = text.to_owned();
    let mut done = Resealed::default();
    // Each distinct envelope once; a copy met again was replaced with the first.
    let mut seen: Vec<String> = Vec::new();
    for (at, envelope) in strings::find(&value, &|s| s.split('.').count() == 5) {
        if seen.contains(&envelope) {
            continue;
        }
        match reseal(keyring, &envelope) {
            Ok(Reseal::Moved {
                envelope: new, from, to, ..
            }) => {
                strings::replace(&mut out, &envelope, &new)?;
                done.moved.push((at, from, to));
            }
            Ok(Reseal::Current(_)) => done.current += 1,
            Ok(_) => {}
            Err(why) => done.refused.push((at, why.to_string())),
        }
        seen.push(envelope);
    }
    done.event = out.into_bytes();
    Ok(done)
}
