//! Result callbacks: a delivered job's result pushed to the URL its client
//! named, signed as the Standard Webhooks scheme says (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`), so the receiver can check it came from
//! this gateway and is not a replay. Only hosts the route allows may be
//! named (checked at accept, 400 otherwise), so a client cannot aim the
//! gateway at an internal address. Attempts are retried with backoff up to
//! the route's `max_attempts`; they are kept in memory (a restart forgets
//! a callback still being retried; the result itself stays readable).

use super::{JobId, StoredResult};
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use levee_config::JobCallback;
use std::time::Duration;

/// Signs and checks a route's callbacks.
#[derive(Debug)]
pub(crate) struct Signer {
    key: ring::hmac::Key,
    allowed_hosts: Vec<String>,
    pub(crate) header: http::HeaderName,
    pub(crate) max_attempts: u32,
    pub(crate) timeout: Duration,
}

impl Signer {
    pub(crate) fn new(config: &JobCallback) -> Result<Self, String> {
        let secret = config.secret.expose();
        // Standard Webhooks secrets are `whsec_` and base64; anything else
        // is used as raw bytes.
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    "callback.secret starts with `whsec_` but the rest is not base64".to_string()
                })?,
            None => secret.as_bytes().to_vec(),
        };
        let header = http::HeaderName::from_bytes(config.header.as_bytes())
            .map_err(|_| "callback.header is not a header name".to_string())?;
        Ok(Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            header,
            max_attempts: config.max_attempts,
            timeout: config.timeout,
        })
    }

    /// The callback URL a client named, if the route allows it: `http://`,
    /// to a host (or `host:port`) on the allowed list.
    pub(crate) fn check(&self, url: &str) -> Result<Uri, &'static str> {
        let uri: Uri = url.parse().map_err(|_| "the callback URL is not a URL")?;
        if uri.scheme_str() != Some("http") {
            return Err("the callback URL must be http://");
        }
        let authority = uri.authority().ok_or("the callback URL has no host")?;
        let host = authority.host().to_ascii_lowercase();
        let with_port = authority.as_str().to_ascii_lowercase();
        if !self
            .allowed_hosts
            .iter()
            .any(|h| *h == host || *h == with_port)
        {
            return Err("the callback URL's host is not allowed on this route");
        }
        Ok(uri)
    }

    /// The `webhook-signature` value for a message.
    pub(crate) fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        let tag = ctx.sign();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        )
    }
}

/// The JSON a callback carries: the job and its result (the body as
/// base64, since it may be any bytes).
pub(crate) fn payload(route: &str, id: &JobId, result: &StoredResult) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> = result
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned().into()))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "type": "job.completed",
        "route": route,
        "job_id": id.as_str(),
        "status": result.status,
        "headers": headers,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(&result.body),
        "truncated": result.truncated,
    }))
    .unwrap_or_default()
}

/// Posts a signed callback, retrying with backoff; whether it was taken
/// (a 2xx answer), and how many attempts it took.
pub(crate) async fn send(signer: &Signer, uri: &Uri, id: &JobId, body: Vec<u8>) -> (bool, u32) {
    let body = Bytes::from(body);
    let mut wait = Duration::from_millis(200);
    for attempt in 1..=signer.max_attempts {
        let timestamp = levee_core::time::unix_secs();
        let signature = signer.sign(id.as_str(), timestamp, &body);
        let sent = tokio::time::timeout(
            signer.timeout,
            post(uri, id.as_str(), timestamp, &signature, body.clone()),
        )
        .await;
        if matches!(sent, Ok(Ok(status)) if (200..300).contains(&status)) {
            return (true, attempt);
        }
        if attempt < signer.max_attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
    (false, signer.max_attempts)
}

async fn post(
    uri: &Uri,
    id: &str,
    timestamp: u64,
    signature: &str,
    body: Bytes,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let authority = uri.authority().ok_or("no authority")?;
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    // Read (and drop) the answer so the connection ends cleanly.
    let _ = resp.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_config::Secret;

    fn signer(secret: &str) -> Signer {
        Signer::new(&JobCallback {
            header: "levee-callback".into(),
            allowed_hosts: vec!["hooks.example.com".into(), "127.0.0.1:9000".into()],
            secret: Secret::new(secret),
            max_attempts: 3,
            timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The example in the Standard Webhooks specification's test suite.
        let s = signer("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn only_allowed_http_hosts_may_be_named() {
        let s = signer("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(s.check("http://hooks.example.com/done").is_ok());
        assert!(s.check("http://HOOKS.example.com:8080/x").is_ok());
        assert!(s.check("http://127.0.0.1:9000/cb").is_ok());
        assert!(s.check("http://127.0.0.1:9001/cb").is_err());
        assert!(s.check("http://169.254.169.254/latest").is_err());
        assert!(s.check("ftp://hooks.example.com/").is_err());
        assert!(s.check("not a url").is_err());
    }

    #[test]
    fn a_whsec_secret_must_be_base64() {
        let err = Signer::new(&JobCallback {
            header: "levee-callback".into(),
            allowed_hosts: vec!["h".into()],
            secret: Secret::new("whsec_!!!not base64!!!"),
            max_attempts: 1,
            timeout: Duration::from_secs(1),
        })
        .unwrap_err();
        assert!(err.contains("not base64"), "{err}");
    }
}
