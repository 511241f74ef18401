//! Heads written into one buffer: the request or status line, the
//! fields, the blank line; the caller appends a small body to the same
//! buffer, or writes a large one after it (vectored).

/// Appends a request head: `METHOD TARGET HTTP/1.1`, `fields` as given,
/// and the blank line.
pub fn request_head<'a>(
    out: &mut Vec<u8>,
    method: &[u8],
    target: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, fields);
}

/// Appends a response head: `HTTP/1.1 STATUS REASON`, `fields`, and the
/// blank line. `status` is 100 to 999.
pub fn response_head<'a>(
    out: &mut Vec<u8>,
    status: u16,
    reason: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = status.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    write_fields(out, fields);
}

fn write_fields<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
    for (name, value) in fields {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal (a Content-Length).
pub fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_written_as_sent() {
        let mut out = Vec::new();
        response_head(&mut out, 204, b"No Content", [(&b"X-A"[..], &b"1"[..])]);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
        out.clear();
        request_head(&mut out, b"GET", b"/x", [(&b"Host"[..], &b"h"[..])]);
        assert_eq!(out, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        out.clear();
        decimal(&mut out, 0);
        decimal(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }
}
