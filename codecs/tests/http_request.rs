//! HTTP/1.1 request decoding: one test per limit and framing rule with its exact status,
//! round trips of generated requests, byte-at-a-time decoding, pipelining, keep-alive.

mod common;

use bytes::BytesMut;
use codecs::http::{HttpError, HttpLimits, ProduceRequest, Request, RequestDecoder};
use codecs::{Decoder, ErrorAnswer, ProtocolError};
use common::{decode_bytewise, decode_whole};
use proptest::prelude::*;

fn limits() -> HttpLimits {
    HttpLimits {
        max_head_bytes: 512,
        max_headers: 8,
        max_body_bytes: 64,
        max_line_bytes: 32,
    }
}

fn status_of(wire: &str) -> Result<Option<Request>, u16> {
    RequestDecoder::new(limits())
        .decode(&mut BytesMut::from(wire.as_bytes()))
        .map_err(|e| {
            assert_eq!(e.answer(), ErrorAnswer::HttpStatus(e.status()));
            e.status()
        })
}

#[test]
fn every_rule_has_its_status() {
    let post = |extra: &str, body: &str| {
        format!("POST /topics/t HTTP/1.1\r\nHost: h\r\n{extra}\r\n{body}")
    };
    let cases: Vec<(&str, String, Result<bool, u16>)> = vec![
        (
            "a good Content-Length request",
            post("Content-Length: 2\r\n", "hi"),
            Ok(true),
        ),
        (
            "a good chunked request",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhi\r\n0\r\n\r\n"),
            Ok(true),
        ),
        (
            "a GET without a body",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n".into(),
            Ok(true),
        ),
        ("POST without a length", post("", ""), Err(411)),
        (
            "PUT without a length",
            post("", "").replace("POST", "PUT"),
            Err(411),
        ),
        (
            "Content-Length over the limit, no body sent",
            post("Content-Length: 65\r\n", ""),
            Err(413),
        ),
        (
            "chunks adding up over the limit",
            post("Transfer-Encoding: chunked\r\n", "40\r\n"),
            Ok(false),
        ),
        (
            "one chunk over the limit, size line only",
            post("Transfer-Encoding: chunked\r\n", "41\r\n"),
            Err(413),
        ),
        (
            "Content-Length not a number",
            post("Content-Length: 1x\r\n", "a"),
            Err(400),
        ),
        (
            "Content-Length with a sign",
            post("Content-Length: +1\r\n", "a"),
            Err(400),
        ),
        (
            "two different Content-Lengths",
            post("Content-Length: 1\r\nContent-Length: 2\r\n", "ab"),
            Err(400),
        ),
        (
            "two equal Content-Lengths",
            post("Content-Length: 2\r\nContent-Length: 2\r\n", "ab"),
            Ok(true),
        ),
        (
            "both Content-Length and chunked",
            post("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "ab"),
            Err(400),
        ),
        (
            "gzip transfer coding",
            post("Transfer-Encoding: gzip, chunked\r\n", ""),
            Err(501),
        ),
        (
            "chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "",
            ),
            Err(501),
        ),
        (
            "a chunk size that is not hex",
            post("Transfer-Encoding: chunked\r\n", "zz\r\n"),
            Err(400),
        ),
        (
            "a chunk without its CRLF",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhiXX0\r\n\r\n"),
            Err(400),
        ),
        (
            "a chunk-size line with a bare LF",
            post("Transfer-Encoding: chunked\r\n", "2\nhi\r\n"),
            Err(400),
        ),
        (
            "a chunk-size line over the line limit",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("1;{}\r\n", "e".repeat(40)),
            ),
            Err(400),
        ),
        (
            "a chunk extension is ignored",
            post("Transfer-Encoding: chunked\r\n", "2;x=y\r\nhi\r\n0\r\n\r\n"),
            Ok(true),
        ),
        (
            "trailers are skipped",
            post(
                "Transfer-Encoding: chunked\r\n",
                "2\r\nhi\r\n0\r\nT: 1\r\n\r\n",
            ),
            Ok(true),
        ),
        (
            "more trailers than the header limit",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0\r\n{}\r\n", "T: 1\r\n".repeat(9)),
            ),
            Err(431),
        ),
        (
            "more headers than the limit",
            post(&"X: 1\r\n".repeat(8), ""),
            Err(431),
        ),
        (
            "a head over the limit, unterminated",
            format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(600)),
            Err(431),
        ),
        (
            "HTTP/2.0 in the request line",
            "GET / HTTP/2.0\r\n\r\n".into(),
            Err(505),
        ),
        ("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n".into(), Err(505)),
        (
            "a space in a header name",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".into(),
            Err(400),
        ),
        (
            "not HTTP at all",
            "\u{16}\u{3}\u{1}hello\r\n\r\n".into(),
            Err(400),
        ),
        (
            "an incomplete head",
            "GET / HTTP/1.1\r\nHost: h\r\n".into(),
            Ok(false),
        ),
    ];
    for (name, wire, want) in cases {
        let got = status_of(&wire).map(|r| r.is_some());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let ka = |wire: &str| status_of(wire).unwrap().unwrap().keep_alive();
    assert!(ka("GET / HTTP/1.1\r\n\r\n"));
    assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
    assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

#[test]
fn expect_continue_is_signalled_once_while_the_body_is_missing() {
    let mut dec = RequestDecoder::new(limits());
    let mut buf = BytesMut::from(
        &b"POST /topics/t HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..],
    );
    assert!(dec.decode(&mut buf).unwrap().is_none());
    assert!(dec.take_continue());
    assert!(dec.decode(&mut buf).unwrap().is_none());
    assert!(!dec.take_continue(), "100 Continue requested twice");
    buf.extend_from_slice(b"ok");
    assert_eq!(&dec.decode(&mut buf).unwrap().unwrap().body()[..], b"ok");
    assert!(!dec.take_continue());
}

#[test]
fn a_multi_chunk_body_is_joined() {
    let wire = "POST /topics/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let reqs = decode_whole(&mut RequestDecoder::new(limits()), wire.as_bytes()).unwrap();
    assert_eq!(&reqs[0].body()[..], b"abc0123456789!");
    assert_eq!(reqs[1].method(), "GET");
    assert_eq!(
        decode_bytewise(&mut RequestDecoder::new(limits()), wire.as_bytes()).unwrap(),
        reqs
    );
}

#[test]
fn produce_calls_are_read_from_path_and_headers() {
    let req = |wire: &str| status_of(wire).unwrap().unwrap();
    let ok = req("POST /topics/orders.v1?x=1 HTTP/1.1\r\nsluice-key: k\r\nSLUICE-HEADER-a: 1\r\nSluice: short\r\nX-Sluice-Header-b: 3\r\nSluice-Header-a: 2\r\nContent-Length: 1\r\n\r\nv");
    let p = ProduceRequest::from_request(&ok, "/topics/").unwrap();
    assert_eq!(p.topic, "orders.v1");
    assert_eq!(p.key.as_deref(), Some(&b"k"[..]));
    let headers: Vec<(&str, &[u8])> = p
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), &v[..]))
        .collect();
    assert_eq!(headers, [("a", &b"1"[..]), ("a", b"2")]);
    let status = |wire: &str| {
        ProduceRequest::from_request(&req(wire), "/topics/")
            .unwrap_err()
            .status()
    };
    assert_eq!(
        status("POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        404
    );
    assert_eq!(
        status("POST /topics/a%2Fb HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        400
    );
    assert_eq!(
        status("POST /topics/.. HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        400
    );
    assert_eq!(status("GET /topics/t HTTP/1.1\r\n\r\n"), 405);
    assert!(matches!(
        ProduceRequest::from_request(&req("GET /topics/t HTTP/1.1\r\n\r\n"), "/topics/"),
        Err(HttpError::MethodNotAllowed { .. })
    ));
}

/// A generated request and the wire form of it.
#[derive(Debug, Clone)]
struct Case {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Vec<usize>,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        "/[a-z0-9._-]{1,20}",
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}"), 0..5),
        proptest::collection::vec(any::<u8>(), 0..60),
        proptest::collection::vec(1usize..20, 0..4),
    )
        .prop_map(|(path, headers, body, chunks)| {
            // Header names must not collide with the framing headers we add.
            let headers = headers
                .into_iter()
                .filter(|(n, _)| {
                    ![
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "expect",
                    ]
                    .contains(&n.to_ascii_lowercase().as_str())
                })
                .map(|(n, v)| (n, v.trim().to_owned()))
                .collect();
            Case {
                path,
                headers,
                body,
                chunks,
            }
        })
}

fn wire(c: &Case) -> Vec<u8> {
    let mut out = format!("POST {} HTTP/1.1\r\n", c.path).into_bytes();
    for (n, v) in &c.headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if c.chunks.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", c.body.len()).as_bytes());
        out.extend_from_slice(&c.body);
        return out;
    }
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    let mut rest = &c.body[..];
    for &n in c.chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_requests_decode_field_by_field(cases in proptest::collection::vec(arb_case(), 1..3)) {
        let all: Vec<u8> = cases.iter().flat_map(wire).collect();
        let big = HttpLimits { max_body_bytes: 1024, ..HttpLimits::default() };
        let reqs = decode_whole(&mut RequestDecoder::new(big), &all).unwrap();
        prop_assert_eq!(reqs.len(), cases.len());
        for (r, c) in reqs.iter().zip(&cases) {
            prop_assert_eq!(r.method(), "POST");
            prop_assert_eq!(r.target(), c.path.as_str());
            prop_assert_eq!(&r.body()[..], &c.body[..]);
            prop_assert_eq!(r.is_chunked(), !c.chunks.is_empty());
            let got: Vec<(String, String)> = r
                .headers()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding"))
                .map(|(n, v)| (n.to_owned(), String::from_utf8(v.to_vec()).unwrap()))
                .collect();
            prop_assert_eq!(&got, &c.headers);
        }
        let bytewise = decode_bytewise(&mut RequestDecoder::new(big), &all).unwrap();
        prop_assert_eq!(bytewise, reqs);
    }
}
