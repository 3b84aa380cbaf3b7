//! A pixel request, read from what one read of a connection brought: exactly one complete `GET /o/…`
//! with no body, or nothing (`None`), and the Python path (`ingest.http_protocol`, llhttp) serves it.
//!
//! It must never take a request llhttp would refuse, nor read a header differently: declined are a
//! pipelined or partial read, another method (HEAD included), a body (`Content-Length`,
//! `Transfer-Encoding`), `Upgrade`, `Expect`, a percent-encoded path, a bare LF and every byte a header
//! may not hold (httparse refuses control characters).

const MAX_HEADERS: usize = 64;

/// What the request asks, when it is one the fast path may answer.
#[derive(Debug, PartialEq, Eq)]
pub struct PixelRequest<'a> {
    pub token: &'a [u8],
    pub keep_alive: bool,
    pub user_agent: &'a [u8],
    pub forwarded_for: Option<&'a [u8]>, // the first X-Forwarded-For, as the Python path reads it
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

/// The pixel request ``data`` holds, when it holds exactly one the fast path may answer.
pub fn parse_pixel_request(data: &[u8]) -> Option<PixelRequest<'_>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIXEL: &[u8] =
        b"GET /o/AQEB.gif HTTP/1.1\r\nHost: mail.example.com\r\nUser-Agent: Mozilla/5.0\r\n\r\n";

    /// A request for ``target`` with a Host header, then ``headers``.
    fn request(method: &str, target: &str, version: &str, headers: &[&str]) -> Vec<u8> {
        let mut text = format!("{method} {target} HTTP/{version}\r\nHost: mail.example.com\r\n");
        for header in headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.into_bytes()
    }

    fn pixel(headers: &[&str]) -> Vec<u8> {
        request("GET", "/o/AQEB.gif", "1.1", headers)
    }

    #[test]
    fn a_complete_pixel_request_is_read() {
        assert_eq!(
            parse_pixel_request(PIXEL),
            Some(PixelRequest {
                token: b"AQEB",
                keep_alive: true,
                user_agent: b"Mozilla/5.0",
                forwarded_for: None,
            })
        );
    }

    #[test]
    fn the_token_is_the_path_after_o_without_gif_or_query() {
        for (target, token) in [
            ("/o/AQEB", &b"AQEB"[..]),
            ("/o/AQEB.gif?utm=1&x=%41", b"AQEB"),
            ("/o/AQEB.gif.gif", b"AQEB.gif"),
            ("/o/", b""),
        ] {
            let data = request("GET", target, "1.1", &[]);
            assert_eq!(parse_pixel_request(&data).unwrap().token, token, "{target}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_close() {
        let read = |version: &str, headers: &[&str]| {
            parse_pixel_request(&request("GET", "/o/AQEB.gif", version, headers))
                .unwrap()
                .keep_alive
        };
        assert!(read("1.1", &[]));
        assert!(read("1.1", &["Connection: keep-alive"]));
        assert!(!read("1.1", &["Connection: Close"]));
        assert!(!read("1.1", &["Connection: keep-alive, close "]));
        assert!(!read("1.0", &[]));
        assert!(!read("1.0", &["Connection: keep-alive"]));
    }

    #[test]
    fn headers_are_read_as_llhttp_reads_them() {
        let data = pixel(&[
            "user-agent: first \t ",
            "User-Agent: second",
            "X-Forwarded-For:  203.0.113.7, 10.0.0.1 ",
            "X-Forwarded-For: 198.51.100.1",
        ]);
        let request = parse_pixel_request(&data).unwrap();
        // Leading whitespace is not the value's; trailing whitespace is (llhttp keeps it).
        assert_eq!(request.user_agent, b"first \t ");
        assert_eq!(request.forwarded_for, Some(&b"203.0.113.7, 10.0.0.1 "[..]));
        let data = pixel(&["User-Agent:"]);
        assert_eq!(parse_pixel_request(&data).unwrap().user_agent, b"");
        let data = pixel(&[]);
        assert_eq!(parse_pixel_request(&data).unwrap().user_agent, b"");
        let latin1 = pixel(&["User-Agent: caf\u{e9}"]); // UTF-8 bytes, kept as bytes
        assert_eq!(
            parse_pixel_request(&latin1).unwrap().user_agent,
            "caf\u{e9}".as_bytes()
        );
    }

    #[test]
    fn anything_but_one_complete_request_is_declined() {
        let mut pipelined = PIXEL.to_vec();
        pipelined.extend_from_slice(PIXEL);
        assert_eq!(parse_pixel_request(&pipelined), None);
        let mut trailing = PIXEL.to_vec();
        trailing.push(b'G');
        assert_eq!(parse_pixel_request(&trailing), None);
        for cut in 0..PIXEL.len() {
            assert_eq!(parse_pixel_request(&PIXEL[..cut]), None, "partial at {cut}");
        }
    }

    #[test]
    fn other_methods_and_paths_are_declined() {
        for (method, target) in [
            ("HEAD", "/o/AQEB.gif"),
            ("POST", "/o/AQEB.gif"),
            ("get", "/o/AQEB.gif"),
            ("GET", "/c/AQEB"),
            ("GET", "/o"),
            ("GET", "/O/AQEB.gif"),
            ("GET", "/healthz"),
            ("GET", "http://mail.example.com/o/AQEB.gif"),
        ] {
            let data = request(method, target, "1.1", &[]);
            assert_eq!(parse_pixel_request(&data), None, "{method} {target}");
        }
    }

    #[test]
    fn a_percent_encoded_path_is_declined() {
        for target in ["/o/AQ%45B.gif", "/o/AQEB%2Egif", "/%6F/AQEB.gif"] {
            let data = request("GET", target, "1.1", &[]);
            assert_eq!(parse_pixel_request(&data), None, "{target}");
        }
    }

    #[test]
    fn a_body_upgrade_or_expect_is_declined() {
        for header in [
            "Content-Length: 0",
            "content-length: 5",
            "Transfer-Encoding: chunked",
            "Upgrade: websocket",
            "Expect: 100-continue",
        ] {
            assert_eq!(parse_pixel_request(&pixel(&[header])), None, "{header}");
        }
    }

    #[test]
    fn control_characters_and_bare_line_feeds_are_declined() {
        for byte in (0x00..0x09).chain(0x0a..0x20).chain([0x7f]) {
            let mut data = b"GET /o/AQEB.gif HTTP/1.1\r\nUser-Agent: a".to_vec();
            data.push(byte);
            data.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(parse_pixel_request(&data), None, "byte {byte:#04x}");
        }
        let data = b"GET /o/AQEB.gif HTTP/1.1\nHost: mail.example.com\r\n\r\n";
        assert_eq!(parse_pixel_request(data), None);
        let data = b"GET /o/AQEB.gif HTTP/1.1\r\nHost: mail.example.com\n\r\n";
        assert_eq!(parse_pixel_request(data), None);
        // A tab inside a value is a value's byte.
        let data = pixel(&["User-Agent: a\tb"]);
        assert_eq!(parse_pixel_request(&data).unwrap().user_agent, b"a\tb");
    }

    #[test]
    fn more_headers_than_it_reads_are_declined() {
        let many: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-{i}: {i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(parse_pixel_request(&pixel(&many)), None);
        assert!(parse_pixel_request(&pixel(&many[1..])).is_some()); // with Host: exactly MAX_HEADERS
    }
}
