//! Header rules at the proxy boundary: the request head's size and declared
//! body, hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*`, request ids,
//! the caller's deadline, the Host the upstream sees, and the route's own
//! header edits.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use levee_config::HostHeader;
use std::fmt::Write as _;

/// Header names that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The request id header.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header naming why the gateway answered itself.
pub const LEVEE_ERROR: HeaderName = HeaderName::from_static("levee-error");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The gRPC deadline header, read from callers and relayed upstream.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// Levee's own deadline header (milliseconds left).
pub(crate) const LEVEE_DEADLINE: HeaderName =
    HeaderName::from_static(levee_core::deadline::LEVEE_DEADLINE_HEADER);

/// The size of the request head as sent: request line and header lines.
pub(crate) fn head_size<B>(req: &http::Request<B>) -> u64 {
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers) as u64
}

/// The header fields of an HTTP/1.1 head parsed in place (`levee-h1`),
/// values sharing `bytes` (no copy); `None` when a name or value is not
/// valid.
pub(crate) fn from_fields(bytes: &bytes::Bytes, fields: &[levee_h1::Field]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name(bytes)).ok()?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(f.value_range())).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// The HTTP/1.x version of a head's minor version number.
pub(crate) fn http1_version(minor: u8) -> http::Version {
    if minor == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    }
}

/// The declared `Content-Length`, when present and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The caller's deadline: the shorter of `grpc-timeout` and
/// `levee-deadline-ms` as they will be forwarded (after hop-by-hop removal
/// and the route's `remove`/`set` edits), when either is present and valid.
pub(crate) fn caller_deadline(
    headers: &HeaderMap,
    remove: &[HeaderName],
    set: &[(HeaderName, HeaderValue)],
) -> Option<std::time::Duration> {
    use levee_core::deadline;
    let grpc = forwarded(headers, remove, set, &GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(deadline::parse_grpc_timeout);
    let levee = forwarded(headers, remove, set, &LEVEE_DEADLINE)
        .and_then(|v| v.to_str().ok())
        .and_then(deadline::parse_levee_deadline);
    match (grpc, levee) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A request header as the upstream will get it, without editing the
/// request: a name the route sets, else none if the route removes it or
/// the `Connection` header lists it (hop-by-hop), else the client's.
fn forwarded<'h>(
    headers: &'h HeaderMap,
    remove: &[HeaderName],
    set: &'h [(HeaderName, HeaderValue)],
    name: &HeaderName,
) -> Option<&'h HeaderValue> {
    if let Some((_, value)) = set.iter().rev().find(|(n, _)| n == name) {
        return Some(value);
    }
    if remove.contains(name) {
        return None;
    }
    let value = headers.get(name)?;
    let hop_by_hop = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()));
    (!hop_by_hop).then_some(value)
}

/// Whether the request asks for a protocol upgrade (WebSocket).
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Whether `name` is a hop-by-hop header (never stored or relayed as is).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including any the Connection header names.
/// `te: trailers` survives (gRPC needs it); with `keep_upgrade` the Upgrade
/// header and `connection: upgrade` survive for a WebSocket handshake.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the (few) headers is cheaper
    // than a hashed removal per hop-by-hop name.
    let any = headers
        .keys()
        .any(|k| *k == header::TE || HOP_BY_HOP.contains(k));
    if !any {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if name != header::TE && !(keep_upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
    }
    let upgrade = keep_upgrade
        .then(|| headers.remove(header::UPGRADE))
        .flatten();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let trailers_only = headers
        .get_all(header::TE)
        .iter()
        .all(|v| has_token(v, "trailers"));
    if !trailers_only {
        headers.remove(header::TE);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What the pipeline knows about where a request came from.
pub(crate) struct ForwardContext<'a> {
    pub(crate) client_ip: std::net::IpAddr,
    pub(crate) tls: bool,
    pub(crate) original_host: Option<&'a HeaderValue>,
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`.
pub(crate) fn set_forwarding(headers: &mut HeaderMap, ctx: &ForwardContext<'_>) {
    // One buffer, handed to the header value without another copy.
    let prev = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok());
    let mut xff = String::with_capacity(prev.map_or(0, |p| p.len() + 2) + 39);
    if let Some(prev) = prev {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    let _ = write!(xff, "{}", ctx.client_ip);
    if let Ok(v) = HeaderValue::try_from(xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
    );
    if let Some(host) = ctx.original_host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
}

/// Sets the Host one attempt's upstream sees: the client's (falling back to
/// the endpoint's when the client sent none), the endpoint's, or a fixed one.
pub(crate) fn set_host(
    headers: &mut HeaderMap,
    policy: &HostHeader,
    original_host: Option<&HeaderValue>,
    endpoint_host: &HeaderValue,
) {
    let host = match policy {
        HostHeader::Preserve => original_host.unwrap_or(endpoint_host).clone(),
        HostHeader::Endpoint => endpoint_host.clone(),
        HostHeader::Value(v) => HeaderValue::from_str(v).unwrap_or_else(|_| endpoint_host.clone()),
    };
    headers.insert(header::HOST, host);
}

/// Ensures the request has an id, generating one when absent; returns it.
/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header, and
/// no request has two. The request target's authority (absolute form, or
/// HTTP/2's `:authority`) takes precedence over `Host`, which is rewritten
/// to match so that routing, forwarding and caching all see one host.
pub(crate) fn check_host<B>(req: &mut http::Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err("the request has more than one Host header");
    }
    match (req.uri().authority(), first) {
        (_, None) if req.version() == http::Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header")
        }
        (Some(authority), Some(host)) if authority.as_str().as_bytes() != host.as_bytes() => {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| "the request target's authority is not a valid host")?;
            req.headers_mut().insert(header::HOST, value);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether the request is a gRPC call (`application/grpc`, `+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2): bytes outside
/// printable ASCII, and `%`, become `%XX`.
pub(crate) fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID) {
        if !v.is_empty() && v.len() <= 200 {
            return v.clone();
        }
    }
    let id = HeaderValue::from_bytes(&levee_core::ids::request_id_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(REQUEST_ID, id.clone());
    id
}

/// Applies a route's removals, then its sets.
pub(crate) fn apply_ops(
    headers: &mut HeaderMap,
    remove: &[HeaderName],
    set: &[(HeaderName, HeaderValue)],
) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_but_te_trailers_survives() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn upgrade_headers_survive_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn forwarding_appends_client_and_sets_host() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        let original = HeaderValue::from_static("api.example.com");
        let ctx = ForwardContext {
            client_ip: "192.0.2.7".parse().unwrap(),
            tls: true,
            original_host: Some(&original),
        };
        set_forwarding(&mut h, &ctx);
        let endpoint = HeaderValue::from_static("127.0.0.1:9000");
        set_host(&mut h, &HostHeader::Endpoint, Some(&original), &endpoint);
        assert_eq!(h.get(X_FORWARDED_FOR).unwrap(), "10.0.0.1, 192.0.2.7");
        assert_eq!(h.get(X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(h.get(X_FORWARDED_HOST).unwrap(), "api.example.com");
        assert_eq!(h.get(header::HOST).unwrap(), "127.0.0.1:9000");
    }

    #[test]
    fn the_caller_deadline_is_read_as_it_will_be_forwarded() {
        use std::time::Duration;
        let mut h = HeaderMap::new();
        h.insert(GRPC_TIMEOUT, HeaderValue::from_static("2S"));
        assert_eq!(caller_deadline(&h, &[], &[]), Some(Duration::from_secs(2)));
        // The route removes it, or sets a shorter one.
        assert_eq!(caller_deadline(&h, &[GRPC_TIMEOUT], &[]), None);
        let set = [(LEVEE_DEADLINE, HeaderValue::from_static("500"))];
        assert_eq!(
            caller_deadline(&h, &[], &set),
            Some(Duration::from_millis(500))
        );
        // Named by Connection, it is hop-by-hop and never forwarded.
        h.insert(header::CONNECTION, HeaderValue::from_static("Grpc-Timeout"));
        assert_eq!(caller_deadline(&h, &[], &[]), None);
        let mut forwarded = h.clone();
        remove_hop_by_hop(&mut forwarded, false);
        assert!(!forwarded.contains_key(GRPC_TIMEOUT));
    }
}
