//! Property tests of the codec: generated messages round-trip through
//! the writer and the parser (heads and chunked bodies, fed in arbitrary
//! pieces), and arbitrary bytes never panic: they parse, wait for more,
//! or are refused.

use levee_h1::chunked::{chunk_start, Decoder, CHUNK_END, LAST_CHUNK};
use levee_h1::head::{parse_request, parse_response, Answering, Field, Framing, Limits};
use levee_h1::write;
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// Field values: visible characters and inner spaces, no surrounding
/// whitespace (which the parser trims).
fn value() -> impl Strategy<Value = String> {
    "[!-~]([ !-~]{0,20}[!-~])?"
}

/// Names that do not change framing or the connection.
fn plain_name() -> impl Strategy<Value = String> {
    token().prop_filter("not a framing field", |n| {
        ![
            "content-length",
            "transfer-encoding",
            "connection",
            "expect",
            "upgrade",
        ]
        .contains(&n.to_ascii_lowercase().as_str())
    })
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::None),
        proptest::collection::vec(any::<u8>(), 1..300).prop_map(Body::Length),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 0..5)
            .prop_map(Body::Chunked),
    ]
}

/// The body's bytes on the wire and the framing fields it needs.
fn encode_body(body: &Body, with_extensions: bool) -> (Vec<(String, String)>, Vec<u8>) {
    match body {
        Body::None => (Vec::new(), Vec::new()),
        Body::Length(b) => (
            vec![("Content-Length".into(), b.len().to_string())],
            b.clone(),
        ),
        Body::Chunked(chunks) => {
            let mut wire = Vec::new();
            for c in chunks {
                chunk_start(&mut wire, c.len());
                if with_extensions {
                    // Put an extension before the CRLF chunk_start wrote.
                    wire.truncate(wire.len() - 2);
                    wire.extend_from_slice(b";ext=\"a b\"\r\n");
                }
                wire.extend_from_slice(c);
                wire.extend_from_slice(CHUNK_END);
            }
            wire.extend_from_slice(LAST_CHUNK);
            (vec![("Transfer-Encoding".into(), "chunked".into())], wire)
        }
    }
}

fn expected(body: &Body) -> Vec<u8> {
    match body {
        Body::None => Vec::new(),
        Body::Length(b) => b.clone(),
        Body::Chunked(c) => c.concat(),
    }
}

/// Decodes a chunked body fed `piece` bytes at a time; the body and the
/// bytes used.
fn decode_in_pieces(wire: &[u8], piece: usize) -> Option<(Vec<u8>, usize)> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    let (mut at, mut avail) = (0, piece.min(wire.len()));
    while !d.is_done() {
        let step = d.step(&wire[at..avail]).ok()?;
        if let Some((s, e)) = step.data {
            out.extend_from_slice(&wire[at + s..at + e]);
        }
        at += step.consumed;
        if at == avail {
            if avail == wire.len() {
                break;
            }
            avail = (avail + piece).min(wire.len());
        }
    }
    d.is_done().then_some((out, at))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(
        method in token(),
        path in "/[a-z0-9/?=&.-]{0,30}",
        fields in proptest::collection::vec((plain_name(), value()), 0..12),
        body in body(),
        extensions in any::<bool>(),
        piece in 1usize..64,
    ) {
        let (framing_fields, body_wire) = encode_body(&body, extensions);
        let all: Vec<(String, String)> = fields.iter().cloned().chain(framing_fields).collect();
        let mut wire = Vec::new();
        write::request_head(
            &mut wire,
            method.as_bytes(),
            path.as_bytes(),
            all.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        let head_len = wire.len();
        wire.extend_from_slice(&body_wire);
        wire.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");

        // Every prefix of the head is incomplete, never an error.
        let mut f: Vec<Field> = Vec::new();
        for end in 0..head_len {
            prop_assert_eq!(parse_request(&wire[..end], &Limits::default(), &mut f), Ok(None));
        }
        let head = parse_request(&wire, &Limits::default(), &mut f).unwrap().unwrap();
        prop_assert_eq!(head.len, head_len);
        prop_assert_eq!(head.method(&wire), method.as_bytes());
        prop_assert_eq!(head.target(&wire), path.as_bytes());
        prop_assert!(head.keep_alive);
        let parsed: Vec<(Vec<u8>, Vec<u8>)> = f
            .iter()
            .map(|x| (x.name(&wire).to_vec(), x.value(&wire).to_vec()))
            .collect();
        let sent: Vec<(Vec<u8>, Vec<u8>)> = all
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        prop_assert_eq!(parsed, sent);

        let rest = &wire[head_len..];
        let (decoded, used) = match head.framing {
            Framing::None => (Vec::new(), 0),
            Framing::Length(n) => (rest[..n as usize].to_vec(), n as usize),
            Framing::Chunked => decode_in_pieces(rest, piece).expect("decodes"),
            Framing::UntilClose => unreachable!("requests are never framed by the close"),
        };
        prop_assert_eq!(decoded, expected(&body));
        prop_assert_eq!(&rest[used..], b"GET /next HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = Vec::new();
        let _ = parse_request(&bytes, &Limits::default(), &mut f);
        let _ = parse_response(&bytes, &Limits::default(), &mut f, Answering::default());
        let mut d = Decoder::default();
        let mut at = 0;
        while at < bytes.len() && !d.is_done() {
            match d.step(&bytes[at..]) {
                Ok(step) => {
                    prop_assert!(step.consumed > 0 || d.is_done());
                    if let Some((s, e)) = step.data {
                        prop_assert!(s <= e && e <= bytes.len() - at);
                    }
                    at += step.consumed;
                }
                Err(_) => break,
            }
        }
    }

    /// A head with random bytes spliced in is parsed, awaited or refused,
    /// and a parsed one's fields all lie inside it.
    #[test]
    fn damaged_heads_are_refused_or_parsed_within_bounds(
        at in 0usize..40,
        junk in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let mut wire = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let at = at.min(wire.len());
        wire.splice(at..at, junk);
        let mut f = Vec::new();
        if let Ok(Some(head)) = parse_request(&wire, &Limits::default(), &mut f) {
            prop_assert!(head.len <= wire.len());
            for x in &f {
                prop_assert!(x.name(&wire).len() + x.value(&wire).len() < head.len);
            }
        }
    }
}
