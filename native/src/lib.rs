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
//!
//! A pure core in plain Rust, each part unit-tested by `cargo test` with no Python: `request` (the
//! parser), `token` (the token check), `forwarded` (the client address) and `line` (the line writer).
//! The Python module (`python`, pyo3) is the thin shell over them, built only with the `python` feature
//! (maturin turns it on: `native/pyproject.toml`), so the tests need neither libpython nor pyo3.

pub mod forwarded;
pub mod line;
pub mod request;
pub mod token;

#[cfg(feature = "python")]
mod python;
