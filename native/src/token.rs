//! Open tokens as `schemas.tokens` signs them, verified: canonical unpadded base64url of a binary claim
//! and the first 16 bytes of its HMAC-SHA256 under the key its key id names.
//!
//! Verification only, and of open tokens only: a token that does not verify as one is declined (`None`),
//! and the Python path names its error. It must never accept a token `schemas.tokens.verify` refuses.

use sha2::{Digest, Sha256};

const TOKEN_VERSION: u8 = 1;
const KIND_OPEN: u8 = 1;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 1 + 1 + 1 + 4 + 8; // version, kind, key id, sent_at, recipient tag
const MAX_TOKEN_CHARS: usize = 4096;

/// HMAC-SHA256 with its inner and outer hashes already fed their padded key (RFC 2104).
#[derive(Clone)]
struct KeyedMac {
    inner: Sha256,
    outer: Sha256,
}

impl KeyedMac {
    fn new(secret: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if secret.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let mut inner = Sha256::new();
        inner.update(&ipad);
        let mut outer = Sha256::new();
        outer.update(&opad);
        KeyedMac { inner, outer }
    }

    fn tag_matches(&self, body: &[u8], tag: &[u8]) -> bool {
        let mut inner = self.inner.clone();
        inner.update(body);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        let full = outer.finalize();
        // Constant time over the tag's bytes.
        let diff = full[..TAG_BYTES]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        tag.len() == TAG_BYTES && diff == 0
    }
}

/// The verifying keys by key id, as `schemas.tokens.Keyring`: the first secret of an id is the one that
/// verifies.
pub struct Keyring {
    macs: Vec<Option<KeyedMac>>, // by key id
}

impl Keyring {
    /// ``keys``: (key id, secret) in keyring order. The error never holds a secret.
    pub fn new(keys: impl IntoIterator<Item = (u8, Vec<u8>)>) -> Result<Self, String> {
        let mut macs: Vec<Option<KeyedMac>> = vec![None; 256];
        let mut empty = true;
        for (key_id, secret) in keys {
            if secret.len() < 16 {
                return Err(format!("key {key_id} is shorter than 16 bytes"));
            }
            let slot = &mut macs[usize::from(key_id)];
            if slot.is_none() {
                *slot = Some(KeyedMac::new(&secret));
            }
            empty = false;
        }
        if empty {
            return Err("a keyring needs at least one key".to_string());
        }
        Ok(Keyring { macs })
    }

    /// The claim of ``raw`` (a token's decoded bytes, `decode_token`) when it is an open token signed by
    /// one of these keys.
    pub fn verify_open<'a>(&self, raw: &'a [u8]) -> Option<OpenClaim<'a>> {
        if raw.len() < HEADER_BYTES + TAG_BYTES {
            return None;
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_BYTES);
        if body[0] != TOKEN_VERSION {
            return None;
        }
        let mac = self.macs[usize::from(body[2])].as_ref()?;
        if !mac.tag_matches(body, tag) || body[1] != KIND_OPEN {
            return None;
        }
        let sent_at = u32::from_be_bytes([body[3], body[4], body[5], body[6]]);
        let mut pos = HEADER_BYTES;
        let account = read_str(body, &mut pos)?;
        let campaign_id = read_str(body, &mut pos)?;
        let message_id = read_str(body, &mut pos)?;
        if pos != body.len() {
            return None;
        }
        Some(OpenClaim {
            sent_at,
            recipient_tag: &body[7..15],
            account,
            campaign_id,
            message_id,
        })
    }
}

/// What an open token asserts, borrowed from its decoded bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenClaim<'a> {
    pub sent_at: u32,
    pub recipient_tag: &'a [u8],
    pub account: &'a str,
    pub campaign_id: &'a str,
    pub message_id: &'a str,
}

fn base64url_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// A token's bytes, from its text in the path: canonical unpadded base64url only (the one spelling
/// `schemas.tokens.sign` writes), of 1 to 4096 characters.
pub fn decode_token(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() > MAX_TOKEN_CHARS || text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in text {
        acc = (acc << 6) | u32::from(base64url_value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or another string would decode to the same bytes.
    if acc != 0 {
        return None;
    }
    Some(out)
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn read_str<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let size = usize::try_from(read_varint(buf, pos)?).ok()?;
    let end = pos.checked_add(size)?;
    let text = std::str::from_utf8(buf.get(*pos..end)?).ok()?;
    *pos = end;
    Some(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Signed by Python: `schemas.tokens.sign(claim, Keyring(((key_id, b"k" * 32),)))` with
    //   OPEN_TOKEN:  Claim(TokenKind.OPEN, "acme", "spring-2026", "msg-1", 1_763_000_000,
    //                      recipient_tag=bytes(range(8))), key id 1
    //   ODD_TOKEN:   Claim(TokenKind.OPEN, 'a"c\\me', "caf\u00e9 \U0001f600", "m\n\t\x00\x1f\x7f", 2**32 - 1,
    //                      recipient_tag=b"\xff" * 8), key id 1
    //   KEY2_TOKEN:  the claim of OPEN_TOKEN, key id 2
    //   CLICK_TOKEN: Claim(TokenKind.CLICK, "acme", "spring-2026", "msg-1", 1_763_000_000, link_index=0,
    //                      url="https://example.com/"), key id 1
    const SECRET: &[u8] = b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
    const OPEN_TOKEN: &[u8] =
        b"AQEBaRU-wAABAgMEBQYHBGFjbWULc3ByaW5nLTIwMjYFbXNnLTFL23-rDHCp9ibbG6QeA0ix";
    const ODD_TOKEN: &[u8] =
        b"AQEB________________BmEiY1xtZQpjYWbDqSDwn5iABm0KCQAff4CVw8wcjs_76S-_KX8Y3_M";
    const KEY2_TOKEN: &[u8] =
        b"AQECaRU-wAABAgMEBQYHBGFjbWULc3ByaW5nLTIwMjYFbXNnLTGSb71GDMwkzXvdGrjsTU_r";
    const CLICK_TOKEN: &[u8] =
        b"AQIBaRU-wAAAAAAAAAAABGFjbWULc3ByaW5nLTIwMjYFbXNnLTEAFGh0dHBzOi8vZXhhbXBsZS5jb20vS6BtAiBaliPj0OcSdzDvWw";

    /// The claims of OPEN_TOKEN and ODD_TOKEN.
    pub(crate) const OPEN_CLAIM: OpenClaim<'static> = OpenClaim {
        sent_at: 1_763_000_000,
        recipient_tag: &[0, 1, 2, 3, 4, 5, 6, 7],
        account: "acme",
        campaign_id: "spring-2026",
        message_id: "msg-1",
    };
    pub(crate) const ODD_CLAIM: OpenClaim<'static> = OpenClaim {
        sent_at: u32::MAX,
        recipient_tag: &[0xff; 8],
        account: "a\"c\\me",
        campaign_id: "caf\u{e9} \u{1f600}",
        message_id: "m\n\t\u{0}\u{1f}\u{7f}",
    };

    fn keyring(key_id: u8) -> Keyring {
        Keyring::new([(key_id, SECRET.to_vec())]).unwrap()
    }

    fn verified(keys: &Keyring, token: &[u8]) -> bool {
        decode_token(token).is_some_and(|raw| keys.verify_open(&raw).is_some())
    }

    #[test]
    fn a_token_python_signed_verifies_with_its_claim() {
        let raw = decode_token(OPEN_TOKEN).unwrap();
        assert_eq!(keyring(1).verify_open(&raw), Some(OPEN_CLAIM));
    }

    #[test]
    fn a_claim_of_any_characters_and_the_largest_sent_at_verifies() {
        let raw = decode_token(ODD_TOKEN).unwrap();
        assert_eq!(keyring(1).verify_open(&raw), Some(ODD_CLAIM));
    }

    #[test]
    fn one_changed_byte_anywhere_fails() {
        let keys = keyring(1);
        let raw = decode_token(OPEN_TOKEN).unwrap();
        for at in 0..raw.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = raw.clone();
                damaged[at] ^= flip;
                assert!(
                    keys.verify_open(&damaged).is_none(),
                    "byte {at} ^ {flip:#x}"
                );
            }
        }
    }

    #[test]
    fn one_changed_character_of_the_text_fails() {
        let keys = keyring(1);
        for at in 0..OPEN_TOKEN.len() {
            let mut damaged = OPEN_TOKEN.to_vec();
            damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
            assert!(!verified(&keys, &damaged), "character {at}");
        }
    }

    #[test]
    fn an_unknown_key_id_fails_and_the_right_key_verifies() {
        assert!(!verified(&keyring(1), KEY2_TOKEN));
        assert!(verified(&keyring(2), KEY2_TOKEN));
        assert!(!verified(&keyring(2), OPEN_TOKEN));
    }

    #[test]
    fn a_click_token_is_not_an_open_token() {
        let keys = keyring(1);
        assert!(decode_token(CLICK_TOKEN).is_some());
        assert!(!verified(&keys, CLICK_TOKEN));
    }

    #[test]
    fn the_first_secret_of_a_key_id_verifies() {
        let other = b"o".repeat(32);
        let first = Keyring::new([(1, SECRET.to_vec()), (1, other.clone())]).unwrap();
        let second = Keyring::new([(1, other), (1, SECRET.to_vec())]).unwrap();
        assert!(verified(&first, OPEN_TOKEN));
        assert!(!verified(&second, OPEN_TOKEN));
    }

    #[test]
    fn a_long_secret_is_hashed_first_as_hmac_does() {
        // Python: sign(Claim(TokenKind.OPEN, "a", "c", "m", 1), Keyring(((7, b"s" * 100),)))
        let keys = Keyring::new([(7, b"s".repeat(100))]).unwrap();
        assert!(verified(
            &keys,
            b"AQEHAAAAAQAAAAAAAAAAAWEBYwFtBpARB47gxjQQ1RINAliCdw"
        ));
    }

    #[test]
    fn only_canonical_unpadded_base64url_decodes() {
        assert_eq!(decode_token(b"AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(decode_token(b"_-8"), Some(vec![0xff, 0xef]));
        for text in [
            &b""[..],
            b"A",     // a length no encoding has
            b"AAE=",  // padded
            b"AAE+",  // base64, not base64url
            b"AAE/",  // base64, not base64url
            b"_-9",   // leftover bits: another spelling of _-8's bytes
            b"AA E",  // a space
            b"AA%41", // percent-encoded
        ] {
            assert_eq!(decode_token(text), None, "{text:?}");
        }
        assert!(decode_token(&b"A".repeat(4096)).is_some());
        assert!(decode_token(&b"A".repeat(4100)).is_none());
    }

    #[test]
    fn short_or_truncated_tokens_fail() {
        let keys = keyring(1);
        let raw = decode_token(OPEN_TOKEN).unwrap();
        for len in 0..raw.len() {
            assert!(keys.verify_open(&raw[..len]).is_none(), "{len} bytes");
        }
    }

    #[test]
    fn a_keyring_needs_keys_of_16_bytes_or_more() {
        assert_eq!(
            Keyring::new([]).err().as_deref(),
            Some("a keyring needs at least one key")
        );
        assert_eq!(
            Keyring::new([(3, b"x".repeat(15))]).err().as_deref(),
            Some("key 3 is shorter than 16 bytes")
        );
        assert!(Keyring::new([(3, b"x".repeat(16))]).is_ok());
    }
}
