//! The stored forms of a job's request and result: a version byte, then
//! length-prefixed fields (u32 big-endian lengths). Compact, copy-free to
//! write, and checked when read so a damaged record is an error, not a
//! panic or a wrong request.

use super::{StoredRequest, StoredResult};
use bytes::Bytes;
use std::net::IpAddr;

const REQUEST_V1: u8 = 1;
const RESULT_V1: u8 = 1;

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

fn put_headers(out: &mut Vec<u8>, headers: &[(String, Vec<u8>)]) {
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        put(out, name.as_bytes());
        put(out, value);
    }
}

pub(super) fn encode_request(r: &StoredRequest) -> Vec<u8> {
    let headers: usize = r.headers.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(32 + r.path_and_query.len() + headers + r.body.len());
    out.push(REQUEST_V1);
    put(&mut out, r.method.as_bytes());
    put(&mut out, r.path_and_query.as_bytes());
    put(&mut out, r.client_ip.to_string().as_bytes());
    put_headers(&mut out, &r.headers);
    put(&mut out, &r.body);
    out
}

pub(super) fn encode_result(r: &StoredResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + r.body.len());
    out.push(RESULT_V1);
    out.extend_from_slice(&r.status.to_be_bytes());
    out.push(u8::from(r.truncated));
    put_headers(&mut out, &r.headers);
    put(&mut out, &r.body);
    out
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("a stored job record is cut short".into());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn field(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.field()?.to_vec())
            .map_err(|_| "a stored job record holds text that is not UTF-8".to_string())
    }

    fn headers(&mut self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let n = self.u32()? as usize;
        // Each header takes at least 8 bytes: a count past that is damage.
        if n > self.rest.len() / 8 {
            return Err("a stored job record has a damaged header count".into());
        }
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.text()?;
            let value = self.field()?.to_vec();
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn end(&self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err("a stored job record has trailing bytes".into())
        }
    }
}

pub(super) fn decode_request(bytes: &[u8]) -> Result<StoredRequest, String> {
    let mut r = Reader { rest: bytes };
    if r.take(1)? != [REQUEST_V1] {
        return Err("a stored job request of an unknown version".into());
    }
    let method = r.text()?;
    let path_and_query = r.text()?;
    let client_ip: IpAddr = r
        .text()?
        .parse()
        .map_err(|_| "a stored job request has a damaged client address".to_string())?;
    let headers = r.headers()?;
    let body = Bytes::copy_from_slice(r.field()?);
    r.end()?;
    Ok(StoredRequest {
        method,
        path_and_query,
        headers,
        body,
        client_ip,
    })
}

pub(super) fn decode_result(bytes: &[u8]) -> Result<StoredResult, String> {
    let mut r = Reader { rest: bytes };
    if r.take(1)? != [RESULT_V1] {
        return Err("a stored job result of an unknown version".into());
    }
    let s = r.take(2)?;
    let status = u16::from_be_bytes([s[0], s[1]]);
    let truncated = r.take(1)? == [1];
    let headers = r.headers()?;
    let body = Bytes::copy_from_slice(r.field()?);
    r.end()?;
    Ok(StoredResult {
        status,
        headers,
        body,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = StoredRequest> {
        (
            "[A-Z]{1,7}",
            "/[a-z0-9/?=&]{0,40}",
            proptest::collection::vec(
                (
                    "[a-z-]{1,20}",
                    proptest::collection::vec(any::<u8>(), 0..40),
                ),
                0..8,
            ),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 4]>(),
        )
            .prop_map(
                |(method, path_and_query, headers, body, ip)| StoredRequest {
                    method,
                    path_and_query,
                    headers,
                    body: body.into(),
                    client_ip: IpAddr::from(ip),
                },
            )
    }

    proptest! {
        #[test]
        fn a_request_reads_back_as_written(req in request()) {
            prop_assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
        }

        #[test]
        fn a_result_reads_back_as_written(
            status in 100u16..600,
            truncated in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let res = StoredResult { status, headers: vec![("content-type".into(), b"text/plain".to_vec())], body: body.into(), truncated };
            prop_assert_eq!(decode_result(&encode_result(&res)).unwrap(), res);
        }

        #[test]
        fn damaged_bytes_are_an_error_not_a_panic(req in request(), cut in 0usize..400, flip in any::<(usize, u8)>()) {
            let mut bytes = encode_request(&req);
            let i = flip.0 % bytes.len();
            bytes[i] ^= flip.1;
            let _ = decode_request(&bytes);
            bytes.truncate(cut.min(bytes.len()));
            let _ = decode_request(&bytes);
        }
    }
}
