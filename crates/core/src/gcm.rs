//! AES-256-GCM (NIST SP 800-38D, 96-bit nonces, 128-bit tags) assembled from RustCrypto's
//! `aes`, `ctr` and `ghash`, the parts `aes-gcm` itself is made of, so that the GHASH state
//! after an AAD can be kept and reused.
//!
//! An envelope's AAD is its encoded protected header (FORMAT.md §3.5), about 130 bytes, the
//! same for every event of one type sealed at one pointer: nine of the twelve GHASH blocks
//! of a short field. Each [`Gcm`] keeps the GHASH state after the AADs it saw recently, so
//! a repeated header costs no GHASH block. The output is AES-256-GCM's, bit for bit; the
//! tests hold it to NIST's and Wycheproof's vectors and to `aes-gcm` itself.

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, InnerIvInit, KeyInit, StreamCipherCore};
use core::fmt;
use foldhash::HashMap;
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Length of a nonce: 96 bits, the one length GCM derives its counter from directly.
pub(crate) const NONCE_LEN: usize = 12;
/// Length of a tag: 128 bits.
pub(crate) const TAG_LEN: usize = 16;

/// AADs whose GHASH state one key keeps. When a new AAD finds the table full, the table is
/// emptied and fills again with the AADs in use: memory stays bounded whatever the headers.
const KEPT_AADS: usize = 64;

/// The longest message GCM encrypts under one nonce (SP 800-38D §5.2.1.1: 2^39 - 256 bits).
const MAX_MESSAGE: u64 = (1 << 36) - 32;

/// The counter block's keystream, one AES block per 16 bytes from `J0` on.
type Ctr<'a> = ctr::CtrCore<&'a Aes256, ctr::flavors::Ctr32BE>;

/// The message was longer than GCM can encrypt under one nonce.
#[derive(Debug)]
pub(crate) struct TooLong;

/// The tag did not verify. Nothing else is said: which part changed must not be learned.
#[derive(Debug)]
pub(crate) struct NotAuthentic;

/// An AES-256-GCM key: the expanded AES key, the GHASH key `H`, and the GHASH state after
/// each recent AAD.
///
/// Every part is as secret as the key (`H` is a block of its keystream; a kept state is a
/// polynomial in `H`). `Debug` prints none of them; `aes` and `polyval` wipe the round keys
/// and every GHASH state, `H` included, when dropped (their `zeroize` features), which is
/// also what happens to kept states when the table is emptied.
pub(crate) struct Gcm {
    aes: Aes256,
    ghash: GHash,
    /// Behind a mutex so that keys stay `Sync` for native hosts; the filter and the
    /// component have one thread, where std's mutex is a flag. Held only to look up, copy
    /// out or store one state, never while hashing. Looked up with foldhash, not SipHash:
    /// SipHash over a 130-byte header cost natively more than the GHASH it saved, and
    /// flooding needs no defence here (the table is small, and holds only headers this
    /// process sealed under or authenticated).
    after_aad: Mutex<HashMap<Box<[u8]>, GHash>>,
}

impl Gcm {
    /// Expands `key`.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let aes = Aes256::new(key.into());
        let mut h = ghash::Key::default();
        aes.encrypt_block(&mut h);
        let ghash = GHash::new(&h);
        zeroize::Zeroize::zeroize(h.as_mut_slice());
        Self {
            aes,
            ghash,
            after_aad: Mutex::new(HashMap::default()),
        }
    }

    /// Encrypts `buffer` in place under `nonce`, authenticating `aad` with it; returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buffer: &mut [u8]) -> Result<[u8; TAG_LEN], TooLong> {
        if buffer.len() as u64 > MAX_MESSAGE {
            return Err(TooLong);
        }
        let keystream = self.keystream(nonce);
        let mask = keystream.mask();
        keystream.apply(buffer);
        let ghash = self.after_aad(aad).unwrap_or_else(|| {
            let ghash = self.hash_aad(aad);
            self.keep(aad, &ghash);
            ghash
        });
        Ok(tag(ghash, mask, aad, buffer))
    }

    /// Checks `tag` over `aad` and the ciphertext in `buffer`, then decrypts it in place.
    /// On failure `buffer` is left as it was.
    pub(crate) fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buffer: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), NotAuthentic> {
        if buffer.len() as u64 > MAX_MESSAGE {
            return Err(NotAuthentic);
        }
        let keystream = self.keystream(nonce);
        let kept = self.after_aad(aad);
        let (ghash, new) = match kept {
            Some(ghash) => (ghash, None),
            None => {
                let ghash = self.hash_aad(aad);
                (ghash.clone(), Some(ghash))
            }
        };
        let expected = self::tag(ghash, keystream.mask(), aad, buffer);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(NotAuthentic);
        }
        // Only an authentic AAD is kept: forgeries, which anyone can send, take no room.
        if let Some(ghash) = new {
            self.keep(aad, &ghash);
        }
        keystream.apply(buffer);
        Ok(())
    }

    /// The keystream from `J0 = nonce || 1` (SP 800-38D §7.1 step 2), its first blocks
    /// made at once.
    fn keystream(&self, nonce: &[u8; NONCE_LEN]) -> Keystream<'_> {
        let mut j0 = ghash::Block::default();
        j0[..NONCE_LEN].copy_from_slice(nonce);
        j0[15] = 1;
        let mut ctr = Ctr::inner_iv_init(&self.aes, &j0);
        let mut head = Head([ghash::Block::default(); HEAD_BLOCKS]);
        ctr.write_keystream_blocks(&mut head.0);
        Keystream { ctr, head }
    }

    /// GHASH over `aad`, zero-padded to a whole block.
    fn hash_aad(&self, aad: &[u8]) -> GHash {
        let mut ghash = self.ghash.clone();
        ghash.update_padded(aad);
        ghash
    }

    /// A copy of the kept state after `aad`, if there is one.
    fn after_aad(&self, aad: &[u8]) -> Option<GHash> {
        self.after_aad.lock().ok()?.get(aad).cloned()
    }

    /// Keeps the state after `aad`, emptying the table first when it is full.
    fn keep(&self, aad: &[u8], ghash: &GHash) {
        // A poisoned lock only costs the table: every message is still hashed in full.
        let Ok(mut kept) = self.after_aad.lock() else { return };
        if kept.len() >= KEPT_AADS {
            kept.clear();
        }
        kept.insert(aad.into(), ghash.clone());
    }
}

/// Blocks of keystream made in one call: the tag mask `E(K, J0)` and the first three blocks
/// of the message. The software AES (bitsliced, four blocks a batch on 64 bits) costs as
/// much for one block as for four, and `ctr` makes blocks past the last group of four one
/// call each, so a short field's three blocks would cost three batches, not one.
const HEAD_BLOCKS: usize = 4;

/// A message's keystream: the blocks made ahead, then the counter where they end.
struct Keystream<'a> {
    ctr: Ctr<'a>,
    head: Head,
}

/// The blocks made ahead, wiped on drop: the keystream is as secret as the plaintext.
struct Head([ghash::Block; HEAD_BLOCKS]);

impl Drop for Head {
    fn drop(&mut self) {
        for block in &mut self.0 {
            zeroize::Zeroize::zeroize(block.as_mut_slice());
        }
    }
}

impl Keystream<'_> {
    /// `E(K, J0)`, which masks the tag.
    fn mask(&self) -> ghash::Block {
        self.head.0[0]
    }

    /// XORs the keystream into `buffer`: from the blocks made ahead, then from the counter,
    /// which stands at the block after them.
    fn apply(self, buffer: &mut [u8]) {
        let (first, rest) = buffer.split_at_mut(buffer.len().min(16 * (HEAD_BLOCKS - 1)));
        for (byte, key) in first.iter_mut().zip(self.head.0[1..].iter().flatten()) {
            *byte ^= key;
        }
        if !rest.is_empty() {
            self.ctr.apply_keystream_partial(rest.into());
        }
    }
}

/// The tag (SP 800-38D §7.1 steps 5 and 6): GHASH over the ciphertext and the lengths block,
/// continued from the state after the padded AAD, then masked with `E(K, J0)`.
fn tag(mut ghash: GHash, mask: ghash::Block, aad: &[u8], ciphertext: &[u8]) -> [u8; TAG_LEN] {
    ghash.update_padded(ciphertext);
    let mut lengths = ghash::Block::default();
    lengths[..8].copy_from_slice(&(aad.len() as u64 * 8).to_be_bytes());
    lengths[8..].copy_from_slice(&(ciphertext.len() as u64 * 8).to_be_bytes());
    ghash.update(&[lengths]);
    let mut tag: [u8; TAG_LEN] = ghash.finalize().into();
    for (t, m) in tag.iter_mut().zip(mask.iter()) {
        *t ^= m;
    }
    tag
}

impl fmt::Debug for Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gcm([redacted])")
    }
}

/// Compiles only for a type that is wiped on drop.
const fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}

// The round keys: fails to compile if aes's `zeroize` feature is lost. (polyval wipes its
// state in its own `Drop` under its `zeroize` feature, which ghash's turns on, but declares
// no `ZeroizeOnDrop` to check here.)
const _: fn() = wiped_on_drop::<Aes256>;

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::Aes256Gcm;
    use aes_gcm::aead::AeadInOut;
    use proptest::prelude::*;

    /// Seals with `gcm` and with `aes-gcm`, checks both agree, and opens with `gcm`.
    fn agrees_with_aes_gcm(gcm: &Gcm, key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> (Vec<u8>, [u8; 16]) {
        let oracle = Aes256Gcm::new(key.into());
        let mut expected = plaintext.to_vec();
        let expected_tag = oracle
            .encrypt_inout_detached(nonce.into(), aad, expected.as_mut_slice().into())
            .unwrap();
        let mut sealed = plaintext.to_vec();
        let tag = gcm.seal(nonce, aad, &mut sealed).unwrap();
        assert_eq!((&sealed, &tag[..]), (&expected, &expected_tag[..]));
        let mut opened = sealed.clone();
        gcm.open(nonce, aad, &mut opened, &tag).unwrap();
        assert_eq!(opened, plaintext);
        (sealed, tag)
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// NIST CAVS `gcmEncryptExtIV256.rsp` (SP 800-38D validation), the cases with a 96-bit IV
    /// and a 128-bit tag, as the `aes-gcm` crate's tests carry them; one case a line:
    /// key, IV, AAD, plaintext, ciphertext, tag, in hex (`-` for empty).
    #[test]
    fn nist_aes256_vectors() {
        let data = include_str!("../tests/data/gcm-nist-aes256.txt");
        let mut count = 0;
        for line in data.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let field: Vec<Vec<u8>> = line.split(' ').map(|f| if f == "-" { Vec::new() } else { hex(f) }).collect();
            let [key, iv, aad, pt, ct, tag] = &field[..] else {
                panic!("bad line {line}")
            };
            let gcm = Gcm::new(key[..].try_into().unwrap());
            let nonce: [u8; 12] = iv[..].try_into().unwrap();
            let tag: [u8; 16] = tag[..].try_into().unwrap();
            // Twice: the second time the AAD's state is kept.
            for _ in 0..2 {
                let mut buffer = pt.clone();
                assert_eq!(gcm.seal(&nonce, aad, &mut buffer).unwrap(), tag, "{line}");
                assert_eq!(&buffer, ct, "{line}");
                gcm.open(&nonce, aad, &mut buffer, &tag).unwrap();
                assert_eq!(&buffer, pt, "{line}");
            }
            let mut forged = tag;
            forged[15] ^= 1;
            let mut buffer = ct.clone();
            assert!(gcm.open(&nonce, aad, &mut buffer, &forged).is_err());
            assert_eq!(&buffer, ct, "a failed open leaves the ciphertext as it was");
            count += 1;
        }
        assert_eq!(count, 375);
    }

    /// Wycheproof `aes_gcm_test.json` (from the `wycheproof` crate): every AES-256 case with a
    /// 96-bit nonce and a 128-bit tag, the only shape envelopes have, valid and invalid.
    #[test]
    fn wycheproof_aes256_vectors() {
        use wycheproof::TestResult;
        use wycheproof::aead::{TestName, TestSet};
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in set
            .test_groups
            .iter()
            .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
        {
            for case in &group.tests {
                let gcm = Gcm::new(case.key[..].try_into().unwrap());
                let nonce: [u8; 12] = case.nonce[..].try_into().unwrap();
                let tag: [u8; 16] = case.tag[..].try_into().unwrap();
                let mut buffer = case.ct.to_vec();
                let opened = gcm.open(&nonce, &case.aad, &mut buffer, &tag);
                match case.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        opened.unwrap_or_else(|_| panic!("tcId {}", case.tc_id));
                        assert_eq!(buffer, &case.pt[..], "tcId {}", case.tc_id);
                        let mut sealed = case.pt.to_vec();
                        assert_eq!(gcm.seal(&nonce, &case.aad, &mut sealed).unwrap(), tag, "tcId {}", case.tc_id);
                        assert_eq!(sealed, &case.ct[..], "tcId {}", case.tc_id);
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "tcId {}", case.tc_id);
                        invalid += 1;
                    }
                }
            }
        }
        assert_eq!((valid, invalid), (39, 27), "cases run: valid, invalid");
    }

    /// An AAD and the same AAD with zero bytes added hash the same padded blocks: only the
    /// lengths block tells them apart, and a kept state must not.
    #[test]
    fn kept_states_are_per_exact_aad() {
        let key = [7; 32];
        let gcm = Gcm::new(&key);
        for aad in [&b"fifteen bytes.."[..], b"fifteen bytes..\0", b"", b"\0", &[0; 16], &[0; 17]] {
            agrees_with_aes_gcm(&gcm, &key, &[1; 12], aad, b"{\"a\":1}");
        }
    }

    /// Every message length up to past the blocks made ahead and the first group after them.
    #[test]
    fn every_length_around_the_blocks_made_ahead() {
        let key = [9; 32];
        let gcm = Gcm::new(&key);
        let message: Vec<u8> = (0..=120).collect();
        for len in 0..=message.len() {
            agrees_with_aes_gcm(&gcm, &key, &[4; 12], b"header", &message[..len]);
        }
    }

    #[test]
    fn the_table_of_kept_states_is_bounded() {
        let key = [3; 32];
        let gcm = Gcm::new(&key);
        for n in 0..(3 * KEPT_AADS as u32) {
            agrees_with_aes_gcm(&gcm, &key, &[2; 12], &n.to_be_bytes(), b"42");
            assert!(gcm.after_aad.lock().unwrap().len() <= KEPT_AADS);
        }
    }

    #[test]
    fn a_forged_aad_is_not_kept() {
        let key = [5; 32];
        let gcm = Gcm::new(&key);
        let mut buffer = b"secret".to_vec();
        assert!(gcm.open(&[0; 12], b"header", &mut buffer, &[0; 16]).is_err());
        assert!(gcm.after_aad.lock().unwrap().is_empty());
    }

    #[test]
    fn keys_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Gcm>();
        send_sync::<crate::Keyring>();
        send_sync::<crate::DataKey>();
        send_sync::<crate::Engine>();
    }

    #[test]
    fn debug_prints_no_key() {
        assert_eq!(format!("{:?}", Gcm::new(&[0x41; 32])), "Gcm([redacted])");
    }

    proptest! {
        /// Against `aes-gcm` on random keys, nonces, AADs (of every length modulo 16) and
        /// messages: sealing and opening once with the AAD new, again with its state kept,
        /// and refusing any change of AAD, ciphertext or tag.
        #[test]
        fn agrees_with_aes_gcm_and_refuses_changes(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..300),
            plaintext in proptest::collection::vec(any::<u8>(), 0..300),
            flip in any::<prop::sample::Index>(),
        ) {
            let gcm = Gcm::new(&key);
            let first = agrees_with_aes_gcm(&gcm, &key, &nonce, &aad, &plaintext);
            prop_assert!(gcm.after_aad.lock().unwrap().contains_key(&aad[..]));
            let second = agrees_with_aes_gcm(&gcm, &key, &nonce, &aad, &plaintext);
            prop_assert_eq!(&first, &second);

            // A fresh key opens what the first sealed, with the state kept from opening.
            let other = Gcm::new(&key);
            for _ in 0..2 {
                let mut buffer = first.0.clone();
                prop_assert!(other.open(&nonce, &aad, &mut buffer, &first.1).is_ok());
                prop_assert_eq!(&buffer, &plaintext);
            }

            let (sealed, tag) = first;
            let mut bad_tag = tag;
            bad_tag[flip.index(TAG_LEN)] ^= 0x80;
            prop_assert!(gcm.open(&nonce, &aad, &mut sealed.clone(), &bad_tag).is_err());
            if !sealed.is_empty() {
                let mut bad = sealed.clone();
                let i = flip.index(bad.len());
                bad[i] ^= 1;
                prop_assert!(gcm.open(&nonce, &aad, &mut bad, &tag).is_err());
            }
            let mut longer = aad.clone();
            longer.push(0);
            prop_assert!(gcm.open(&nonce, &longer, &mut sealed.clone(), &tag).is_err());
            if !aad.is_empty() {
                let mut bad = aad.clone();
                let i = flip.index(bad.len());
                bad[i] ^= 1;
                prop_assert!(gcm.open(&nonce, &bad, &mut sealed.clone(), &tag).is_err());
            }
        }
    }
}
