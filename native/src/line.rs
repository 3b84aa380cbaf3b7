//! What the edge publishes for a verified open: the raw hit's JSON line, byte for byte what
//! `schemas.events.encode_hit` (orjson) writes for the `RawHit` the Python edge would make, and its
//! partition key.
//!
//! `WIRE_VERSION` is the line's `"v"`: the Python edge refuses to use a module whose version is not
//! `schemas.events.SCHEMA_VERSION` (`ingest.native`).

use crate::token::OpenClaim;

/// The wire version of the lines this module writes (`schemas.events.SCHEMA_VERSION`).
pub const WIRE_VERSION: u8 = 1;
/// Header bytes of a user agent kept in the hit (each read as one latin-1 character), as the Python edge.
const MAX_UA_CHARS: usize = 1024;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
/// `\u00xx`, everything else (DEL and non-ASCII included) as UTF-8.
fn push_json_chars(out: &mut Vec<u8>, chars: impl Iterator<Item = char>) {
    let mut utf8 = [0u8; 4];
    for c in chars {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(b"\\u00");
                push_hex(out, &[c as u8]);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
}

fn push_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    push_json_chars(out, text.chars());
    out.push(b'"');
}

/// The raw hit's line for ``claim``, received at ``now_ms`` from ``ip`` with ``user_agent`` (header bytes):
/// its hit id is ``now_ms`` as 12 hex digits then ``random_hex`` (16 hex digits), as `ingest.edge` makes it.
pub fn open_hit_line(
    claim: &OpenClaim<'_>,
    now_ms: u64,
    random_hex: &[u8],
    ip: &str,
    user_agent: &[u8],
) -> Vec<u8> {
    let mut line = Vec::with_capacity(400 + user_agent.len());
    line.extend_from_slice(b"{\"hit_id\":\"");
    line.extend_from_slice(format!("{now_ms:012x}").as_bytes());
    line.extend_from_slice(random_hex);
    line.extend_from_slice(b"\",\"kind\":\"open\",\"received_at_ms\":");
    line.extend_from_slice(now_ms.to_string().as_bytes());
    line.extend_from_slice(b",\"ip\":");
    push_json_str(&mut line, ip);
    line.extend_from_slice(b",\"user_agent\":\"");
    // Header bytes read as latin-1, as the Python edge does, and cut to MAX_UA_CHARS characters.
    let user_agent = &user_agent[..user_agent.len().min(MAX_UA_CHARS)];
    push_json_chars(&mut line, user_agent.iter().map(|&b| char::from(b)));
    line.extend_from_slice(b"\",\"token_ok\":true,\"account\":");
    push_json_str(&mut line, claim.account);
    line.extend_from_slice(b",\"campaign_id\":");
    push_json_str(&mut line, claim.campaign_id);
    line.extend_from_slice(b",\"message_id\":");
    push_json_str(&mut line, claim.message_id);
    line.extend_from_slice(b",\"sent_at\":");
    line.extend_from_slice(claim.sent_at.to_string().as_bytes());
    line.extend_from_slice(
        b",\"link_index\":-1,\"url\":\"\",\"token_error\":\"\",\"token_head\":\"\",\"recipient_tag\":\"",
    );
    push_hex(&mut line, claim.recipient_tag);
    line.extend_from_slice(b"\",\"v\":");
    line.extend_from_slice(WIRE_VERSION.to_string().as_bytes());
    line.push(b'}');
    line
}

/// The hit's Kafka key, `RawHit.partition_key`: account, 0x1f, message id.
pub fn partition_key(claim: &OpenClaim<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(claim.account.len() + 1 + claim.message_id.len());
    key.extend_from_slice(claim.account.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(claim.message_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::{ODD_CLAIM, OPEN_CLAIM};

    const NOW_MS: u64 = 1_763_000_123_456;
    const RANDOM_HEX: &[u8] = b"0123456789abcdef";

    // Expected lines: `schemas.events.encode_hit(RawHit(hit_id=f"{NOW_MS:012x}0123456789abcdef",
    // kind="open", received_at_ms=NOW_MS, ip=..., user_agent=<the header bytes>.decode("latin-1"),
    // token_ok=True, account=..., campaign_id=..., message_id=..., sent_at=...,
    // recipient_tag=<tag>.hex()))`, with the claims of token.rs's OPEN_TOKEN and ODD_TOKEN.
    #[test]
    fn a_plain_hit_is_the_line_python_writes() {
        let line = open_hit_line(&OPEN_CLAIM, NOW_MS, RANDOM_HEX, "127.0.0.1", b"Mozilla/5.0");
        let expected = concat!(
            r#"{"hit_id":"019a7aff00400123456789abcdef","kind":"open","received_at_ms":1763000123456,"#,
            r#""ip":"127.0.0.1","user_agent":"Mozilla/5.0","token_ok":true,"account":"acme","#,
            r#""campaign_id":"spring-2026","message_id":"msg-1","sent_at":1763000000,"link_index":-1,"#,
            r#""url":"","token_error":"","token_head":"","recipient_tag":"0001020304050607","v":1}"#,
        );
        assert_eq!(String::from_utf8(line).unwrap(), expected);
    }

    #[test]
    fn strings_are_escaped_as_orjson_escapes_them() {
        let user_agent = b"quote \" backslash \\ tab \t latin-1 \xe9\xff \x01";
        let line = open_hit_line(&ODD_CLAIM, NOW_MS, RANDOM_HEX, "2001:db8::1", user_agent);
        let expected = concat!(
            r#"{"hit_id":"019a7aff00400123456789abcdef","kind":"open","received_at_ms":1763000123456,"#,
            r#""ip":"2001:db8::1","user_agent":"quote \" backslash \\ tab \t latin-1 "#,
            "\u{e9}\u{ff}",
            r#" \u0001","token_ok":true,"account":"a\"c\\me","campaign_id":"caf"#,
            "\u{e9} \u{1f600}",
            r#"","message_id":"m\n\t\u0000\u001f"#,
            "\u{7f}",
            r#"","sent_at":4294967295,"link_index":-1,"url":"","token_error":"","token_head":"","#,
            r#""recipient_tag":"ffffffffffffffff","v":1}"#,
        );
        assert_eq!(String::from_utf8(line).unwrap(), expected);
    }

    #[test]
    fn every_control_character_has_orjsons_escape() {
        let mut out = Vec::new();
        push_json_chars(&mut out, (0u8..0x20).map(char::from));
        let expected = concat!(
            r#"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
            r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d"#,
            r#"\u001e\u001f"#,
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn the_user_agent_is_cut_to_1024_characters() {
        let line = open_hit_line(&OPEN_CLAIM, NOW_MS, RANDOM_HEX, "", &[b'x'; 1500]);
        let text = String::from_utf8(line).unwrap();
        let expected = format!(r#","ip":"","user_agent":"{}","token_ok""#, "x".repeat(1024));
        assert!(text.contains(&expected));
    }

    #[test]
    fn the_key_is_account_and_message_id() {
        assert_eq!(partition_key(&OPEN_CLAIM), b"acme\x1fmsg-1");
    }

    #[test]
    fn the_line_says_its_wire_version() {
        let line = open_hit_line(&OPEN_CLAIM, NOW_MS, RANDOM_HEX, "", b"");
        assert!(line.ends_with(format!(r#","v":{WIRE_VERSION}}}"#).as_bytes()));
    }
}
