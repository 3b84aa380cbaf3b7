//! The Python module `pixelpipe_native`: `PixelPath`, one `answer` call per request read, over the pure
//! request parser, token check, client address and line writer; and `WIRE_VERSION`, which `ingest.native`
//! checks at load. This shell only moves bytes between Python and those modules, and fetches the random
//! digits of hit ids.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::forwarded::{client_from_chain, Network};
use crate::line::{open_hit_line, partition_key, push_hex, WIRE_VERSION};
use crate::request::parse_pixel_request;
use crate::token::{decode_token, Keyring};

const RANDOM_BATCH: usize = 256; // hit ids per getrandom call, as `ingest.edge._RandomHex`

/// The edge's fast path for pixels: one `answer` call per request read.
#[pyclass(module = "pixelpipe_native", weakref)]
struct PixelPath {
    keyring: Keyring,
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
}

#[pymethods]
impl PixelPath {
    /// ``keys``: (key id, secret) in keyring order; the first secret of an id is the one that verifies,
    /// as in `schemas.tokens.Keyring`.
    /// ``proxies``: the trusted proxy networks, each as (packed network address, prefix length).
    #[new]
    fn new(keys: Vec<(u8, Vec<u8>)>, proxies: Vec<(Vec<u8>, u32)>) -> PyResult<Self> {
        let keyring = Keyring::new(keys).map_err(PyValueError::new_err)?;
        let proxies = proxies
            .iter()
            .map(|(address, prefix)| Network::new(address, *prefix))
            .collect::<Result<_, _>>()
            .map_err(PyValueError::new_err)?;
        Ok(PixelPath {
            keyring,
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
        let Some(raw) = decode_token(request.token) else {
            return Ok(None);
        };
        let Some(claim) = self.keyring.verify_open(&raw) else {
            return Ok(None);
        };
        let random_hex = self.next_random_hex()?;
        let line = open_hit_line(&claim, now_ms, random_hex, ip, request.user_agent);
        let answer = (
            request.keep_alive,
            PyBytes::new(py, claim.recipient_tag),
            PyBytes::new(py, &partition_key(&claim)),
            PyBytes::new(py, &line),
        );
        Ok(Some(answer.into_pyobject(py)?))
    }
}

#[pymodule]
fn pixelpipe_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PixelPath>()?;
    module.add("WIRE_VERSION", WIRE_VERSION)?;
    Ok(())
}
