//! The client's address behind trusted proxies, from `X-Forwarded-For`, as `ingest.client_ip.client_ip`
//! reads it: from the right, the first hop that is not itself a trusted proxy (at most 32 hops).
//!
//! A chain with a hop it cannot read exactly as Python does is declined (`None`) whole, and the Python
//! path serves the request.

use std::net::IpAddr;

/// A trusted proxy network (`PIXELPIPE_TRUSTED_PROXIES`).
pub enum Network {
    V4(u32, u32), // address, mask
    V6(u128, u128),
}

impl Network {
    /// ``address``: the packed network address (4 or 16 bytes); ``prefix``: its length in bits.
    pub fn new(address: &[u8], prefix: u32) -> Result<Self, String> {
        let bad = || format!("not a network: {address:?}/{prefix}");
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
pub fn client_from_chain(chain: &[u8], proxies: &[Network]) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.0/8 and fd00::/8, as `PIXELPIPE_TRUSTED_PROXIES` would give them.
    fn proxies() -> Vec<Network> {
        let mut fd00 = [0u8; 16];
        fd00[0] = 0xfd;
        vec![
            Network::new(&[10, 0, 0, 0], 8).unwrap(),
            Network::new(&fd00, 8).unwrap(),
        ]
    }

    // Expected: `ingest.client_ip.client_ip("10.9.9.9", chain, [ip_network("10.0.0.0/8"),
    // ip_network("fd00::/8")])`.
    #[test]
    fn the_client_is_the_first_hop_from_the_right_that_is_not_a_proxy() {
        let chain33: Vec<String> = std::iter::once("203.0.113.9".to_string())
            .chain((1..=32).map(|i| format!("10.0.0.{i}")))
            .collect();
        let chain33 = chain33.join(", ");
        for (chain, client) in [
            ("203.0.113.7", "203.0.113.7"),
            ("203.0.113.7, 10.0.0.1", "203.0.113.7"),
            (
                "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.1",
                "203.0.113.7",
            ),
            ("10.0.0.3, 10.0.0.1", "10.0.0.3"),
            ("203.0.113.7:4711", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            (" 2001:DB8::0001 \t", "2001:db8::1"),
            ("2001:db8::2, fd00::5", "2001:db8::2"),
            ("unknown, 203.0.113.7", "203.0.113.7"), // left of the client: never read
            (&chain33, "10.0.0.1"),                  // 32 hops read, all proxies
        ] {
            assert_eq!(
                client_from_chain(chain.as_bytes(), &proxies()).as_deref(),
                Some(client),
                "{chain}"
            );
        }
    }

    #[test]
    fn a_hop_it_cannot_read_as_python_does_declines() {
        for chain in [
            &b"unknown, 10.0.0.1"[..],
            b"203.0.113.7,,10.0.0.1",
            b"fe80::1%eth0",
            b"203.0.113.7\x0b",
            b"203.0.113.256",
            b"",
        ] {
            assert_eq!(client_from_chain(chain, &proxies()), None, "{chain:?}");
        }
    }

    #[test]
    fn a_network_is_4_or_16_bytes_with_a_prefix_that_fits() {
        assert!(Network::new(&[0; 4], 0).is_ok());
        assert!(Network::new(&[0; 16], 128).is_ok());
        assert!(Network::new(&[0; 4], 33).is_err());
        assert_eq!(
            Network::new(&[1, 2, 3], 8).err().as_deref(),
            Some("not a network: [1, 2, 3]/8")
        );
    }
}
