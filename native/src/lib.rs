//! pixelpipe's edge fast path, in one call per request: parse an HTTP/1.x pixel request, verify its token,
//! and write the raw hit's JSON line.
//!
//! It answers only the common case and declines everything else (`None`), which the Python edge then
//! serves as before: the Python code (`ingest.edge`, `schemas.tokens`, `schemas.events`) is the reference,
//! and this module must never accept what it would refuse nor write a line it would not write. The line is
//! byte for byte what `orjson.dumps(RawHit(...))` writes (checked by `tests/unit/test_native_fast_path.py`).
//!
//! Declined: anything but exactly one complete `GET /o/…` request with no body (a pipelined or partial
//! read, a body, `Upgrade`, `Expect`), a percent-encoded path, an `X-Forwarded-For` chain from a trusted
//! proxy with a hop it cannot read exactly as Python does, and every token that does not verify as an open
//! token (its error is the Python code's to name).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

const TOKEN_VERSION: u8 = 1;
const KIND_OPEN: u8 = 1;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 1 + 1 + 1 + 4 + 8; // version, kind, key id, sent_at, recipient tag
const MAX_TOKEN_CHARS: usize = 4096;
const MAX_UA_CHARS: usize = 1024;
const MAX_HEADERS: usize = 64;
const RANDOM_BATCH: usize = 256; // hit ids per getrandom call, as `ingest.edge._RandomHex`

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

/// Canonical unpadded base64url only: the one spelling `schemas.tokens.sign` writes.
fn decode_base64url(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
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

/// What an open token asserts, borrowed from its decoded bytes.
struct OpenClaim<'a> {
    sent_at: u32,
    recipient_tag: &'a [u8],
    account: &'a str,
    campaign_id: &'a str,
    message_id: &'a str,
}

fn verify_open<'a>(macs: &[Option<KeyedMac>], raw: &'a [u8]) -> Option<OpenClaim<'a>> {
    if raw.len() < HEADER_BYTES + TAG_BYTES {
        return None;
    }
    let (body, tag) = raw.split_at(raw.len() - TAG_BYTES);
    if body[0] != TOKEN_VERSION {
        return None;
    }
    let mac = macs[usize::from(body[2])].as_ref()?;
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

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
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

/// What the request asks, when it is one the fast path may answer.
struct PixelRequest<'a> {
    token: &'a [u8],
    keep_alive: bool,
    user_agent: &'a [u8],
    forwarded_for: Option<&'a [u8]>, // the first X-Forwarded-For, as the Python path reads it
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// ``value`` (a header value httparse has trimmed) with the spaces and tabs that followed it on its line:
/// llhttp, the Python path's parser, keeps them.
fn with_trailing_whitespace<'a>(data: &'a [u8], value: &'a [u8]) -> &'a [u8] {
    let (base, at) = (data.as_ptr() as usize, value.as_ptr() as usize);
    if at < base || at + value.len() > base + data.len() {
        return value; // not a slice of data (an empty value may not be): nothing follows it
    }
    let start = at - base;
    let mut end = start + value.len();
    while end < data.len() && (data[end] == b' ' || data[end] == b'\t') {
        end += 1;
    }
    &data[start..end]
}

fn parse_pixel_request(data: &[u8]) -> Option<PixelRequest<'_>> {
    // httparse takes a bare LF as a line's end; llhttp refuses it (uvicorn answers 400): so do we.
    if data
        .iter()
        .enumerate()
        .any(|(at, &b)| b == b'\n' && (at == 0 || data[at - 1] != b'\r'))
    {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(data) {
        Ok(httparse::Status::Complete(used)) if used == data.len() => {}
        _ => return None, // partial, pipelined, malformed, or over MAX_HEADERS: the Python path's
    }
    if request.method? != "GET" {
        return None;
    }
    let path = request.path?.as_bytes();
    let path = path.split(|&b| b == b'?').next()?;
    if !path.starts_with(b"/o/") || path.contains(&b'%') {
        return None;
    }
    let token = &path[3..];
    let token = token.strip_suffix(b".gif").unwrap_or(token);
    let mut keep_alive = request.version? == 1;
    let mut user_agent: Option<&[u8]> = None;
    let mut forwarded_for: Option<&[u8]> = None;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent.get_or_insert(with_trailing_whitespace(data, header.value));
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for.get_or_insert(with_trailing_whitespace(data, header.value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(header.value, b"close") {
                keep_alive = false;
            }
        } else if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return None;
        }
    }
    Some(PixelRequest {
        token,
        keep_alive,
        user_agent: user_agent.unwrap_or(b""),
        forwarded_for,
    })
}

/// A trusted proxy network (`PIXELPIPE_TRUSTED_PROXIES`).
enum Network {
    V4(u32, u32), // address, mask
    V6(u128, u128),
}

impl Network {
    fn new(address: &[u8], prefix: u32) -> PyResult<Self> {
        let bad = || PyValueError::new_err(format!("not a network: {address:?}/{prefix}"));
        match address.len() {
            4 if prefix <= 32 => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                Ok(Network::V4(
                    u32::from_be_bytes(address.try_into().map_err(|_| bad())?),
                    mask,
                ))
            }
            16 if prefix <= 128 => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                Ok(Network::V6(
                    u128::from_be_bytes(address.try_into().map_err(|_| bad())?),
                    mask,
                ))
            }
            _ => Err(bad()),
        }
    }

    fn contains(&self, address: &IpAddr) -> bool {
        match (self, address) {
            (Network::V4(net, mask), IpAddr::V4(a)) => u32::from(*a) & mask == *net & mask,
            (Network::V6(net, mask), IpAddr::V6(a)) => u128::from(*a) & mask == *net & mask,
            _ => false,
        }
    }
}

/// One hop of the chain as `ingest.client_ip._parse` reads it (``[v6]:port``, ``v4:port``, an IPv4-mapped
/// IPv6 address as IPv4), or None when the hop is not one this path can read exactly as Python does: the
/// whole request is then declined. Only hex digits, ``.:[]``, spaces and tabs are read at all, so Python's
/// ``strip`` (which also strips other whitespace) strips the same.
fn parse_hop(part: &[u8]) -> Option<IpAddr> {
    if !part
        .iter()
        .all(|b| b.is_ascii_hexdigit() || b".:[] \t".contains(b))
    {
        return None;
    }
    let text = std::str::from_utf8(part.trim_ascii()).ok()?;
    let text = if let (Some(rest), true) = (text.strip_prefix('['), text.contains(']')) {
        &rest[..rest.find(']')?]
    } else if text.matches(':').count() == 1 {
        text.split(':').next()?
    } else {
        text
    };
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// `ingest.client_ip.client_ip` for a request from a trusted proxy: the first address from the right of
/// the chain that is not itself a trusted proxy (at most 32 hops), as text; None to decline.
fn client_from_chain(chain: &[u8], proxies: &[Network]) -> Option<String> {
    let mut client = None;
    for part in chain.rsplit(|&b| b == b',').take(32) {
        let hop = parse_hop(part)?;
        client = Some(hop);
        if !proxies.iter().any(|net| net.contains(&hop)) {
            break;
        }
    }
    client.map(|address| address.to_string())
}

/// The edge's fast path for pixels: one `answer` call per request read.
#[pyclass(module = "pixelpipe_native", weakref)]
struct PixelPath {
    macs: Vec<Option<KeyedMac>>, // by key id
    proxies: Vec<Network>,
    random_hex: Vec<u8>,
    random_pos: usize,
}

impl PixelPath {
    fn next_random_hex(&mut self) -> PyResult<&[u8]> {
        if self.random_pos + 16 > self.random_hex.len() {
            let mut fresh = vec![0u8; 8 * RANDOM_BATCH];
            getrandom::fill(&mut fresh)
                .map_err(|e| PyValueError::new_err(format!("getrandom: {e}")))?;
            self.random_hex.clear();
            push_hex(&mut self.random_hex, &fresh);
            self.random_pos = 0;
        }
        let start = self.random_pos;
        self.random_pos += 16;
        Ok(&self.random_hex[start..start + 16])
    }

    fn hit_line(
        &mut self,
        claim: &OpenClaim<'_>,
        now_ms: u64,
        ip: &str,
        user_agent: &[u8],
    ) -> PyResult<Vec<u8>> {
        let mut line = Vec::with_capacity(400 + user_agent.len());
        line.extend_from_slice(b"{\"hit_id\":\"");
        line.extend_from_slice(format!("{now_ms:012x}").as_bytes());
        let random = self.next_random_hex()?;
        line.extend_from_slice(random);
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
        line.extend_from_slice(b"\",\"v\":1}");
        Ok(line)
    }
}

#[pymethods]
impl PixelPath {
    /// ``keys``: (key id, secret) in keyring order; the first secret of an id is the one that verifies,
    /// as in `schemas.tokens.Keyring`.
    /// ``proxies``: the trusted proxy networks, each as (packed network address, prefix length).
    #[new]
    fn new(keys: Vec<(u8, Vec<u8>)>, proxies: Vec<(Vec<u8>, u32)>) -> PyResult<Self> {
        if keys.is_empty() {
            return Err(PyValueError::new_err("a keyring needs at least one key"));
        }
        let mut macs: Vec<Option<KeyedMac>> = vec![None; 256];
        for (key_id, secret) in keys {
            if secret.len() < 16 {
                return Err(PyValueError::new_err(format!(
                    "key {key_id} is shorter than 16 bytes"
                )));
            }
            let slot = &mut macs[usize::from(key_id)];
            if slot.is_none() {
                *slot = Some(KeyedMac::new(&secret));
            }
        }
        let proxies = proxies
            .iter()
            .map(|(address, prefix)| Network::new(address, *prefix))
            .collect::<PyResult<_>>()?;
        Ok(PixelPath {
            macs,
            proxies,
            random_hex: Vec::new(),
            random_pos: 0,
        })
    }

    /// Forget the random digits fetched so far (a forked child must not hand out its parent's).
    fn discard_random(&mut self) {
        self.random_hex.clear();
        self.random_pos = 0;
    }

    /// The pixel request in ``data`` (everything one read brought), answered: ``(keep_alive,
    /// recipient_tag, partition_key, hit_line)``; None when the Python path must serve it.
    /// ``ip``: the peer's address as text; ``forwarded_for_matters``: the peer is a trusted proxy, so the
    /// client is read from ``X-Forwarded-For`` as `ingest.client_ip.client_ip` reads it.
    fn answer<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        ip: &str,
        forwarded_for_matters: bool,
        now_ms: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(request) = parse_pixel_request(data) else {
            return Ok(None);
        };
        let from_chain = match request.forwarded_for {
            Some(chain) if forwarded_for_matters && !chain.is_empty() => {
                let Some(client) = client_from_chain(chain, &self.proxies) else {
                    return Ok(None);
                };
                Some(client)
            }
            _ => None,
        };
        let ip = from_chain.as_deref().unwrap_or(ip);
        if request.token.is_empty() || request.token.len() > MAX_TOKEN_CHARS {
            return Ok(None);
        }
        let Some(raw) = decode_base64url(request.token) else {
            return Ok(None);
        };
        let Some(claim) = verify_open(&self.macs, &raw) else {
            return Ok(None);
        };
        let line = self.hit_line(&claim, now_ms, ip, request.user_agent)?;
        let mut key = Vec::with_capacity(claim.account.len() + 1 + claim.message_id.len());
        key.extend_from_slice(claim.account.as_bytes());
        key.push(0x1f);
        key.extend_from_slice(claim.message_id.as_bytes());
        let answer = (
            request.keep_alive,
            PyBytes::new(py, claim.recipient_tag),
            PyBytes::new(py, &key),
            PyBytes::new(py, &line),
        );
        Ok(Some(answer.into_pyobject(py)?))
    }
}

#[pymodule]
fn pixelpipe_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PixelPath>()?;
    Ok(())
}
