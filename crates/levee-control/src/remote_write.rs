//! Prometheus remote-write (`[remote_write]`): every `interval`, every
//! series of the gateway's registry (what `/metrics` shows: the SLOs'
//! event counters, request counts and latencies, capacity, queues) is
//! pushed, stamped now and with the configured labels added, as one
//! snappy-compressed protobuf `WriteRequest` (remote-write 1.0). History
//! then outlives Levee's own retention and is queried with the rest of the
//! platform's metrics; rates over the cumulative counters give back every
//! bucket. A push that fails is logged and counted; the next one carries
//! the same counters further, so a failure costs resolution, not events.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use levee_config::RemoteWrite;
use levee_core::metrics::Registry;
use std::sync::Arc;

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// One sample of the text exposition: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Exposed {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses Prometheus' text exposition (what `Registry::encode` writes);
/// lines it cannot read are skipped.
fn parse_exposition(text: &str) -> Vec<Exposed> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Exposed> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Exposed {
            name: series.to_string(),
            labels: Vec::new(),
            value,
        });
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Exposed {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The request body for `samples` at `timestamp_ms`, with `extra` labels.
fn body(samples: &[Exposed], extra: &[(String, String)], timestamp_ms: i64) -> Vec<u8> {
    let timeseries = samples
        .iter()
        .map(|s| {
            let mut labels = vec![Label {
                name: "__name__".into(),
                value: s.name.clone(),
            }];
            for (n, v) in s.labels.iter().chain(extra) {
                if !labels.iter().any(|l| l.name == *n) {
                    labels.push(Label {
                        name: n.clone(),
                        value: v.clone(),
                    });
                }
            }
            // Remote-write wants labels sorted by name.
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: timestamp_ms,
                }],
            }
        })
        .collect();
    let proto = prost::Message::encode_to_vec(&WriteRequest { timeseries });
    snap::raw::Encoder::new()
        .compress_vec(&proto)
        .unwrap_or_default()
}

/// Pushes the registry every `interval` until the gateway drains.
pub(crate) fn spawn(
    config: RemoteWrite,
    registry: Arc<Registry>,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    let pushed = registry.counter(
        levee_core::metrics::names::REMOTE_WRITES,
        "Remote-write pushes, by result.",
        &[("result", "ok")],
    );
    let failed = registry.counter(
        levee_core::metrics::names::REMOTE_WRITES,
        "Remote-write pushes, by result.",
        &[("result", "error")],
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(config.interval) => {}
                _ = drain.changed() => return,
            }
            let samples = parse_exposition(&registry.encode());
            let now_ms = (levee_core::time::unix_nanos() / 1_000_000) as i64;
            let payload = body(&samples, &config.labels, now_ms);
            match tokio::time::timeout(config.timeout, push(config.url.expose(), payload)).await {
                Ok(Ok(())) => pushed.inc(),
                Ok(Err(why)) => {
                    failed.inc();
                    tracing::warn!(error = %why, "remote write failed");
                }
                Err(_) => {
                    failed.inc();
                    tracing::warn!("remote write timed out");
                }
            }
        }
    });
}

async fn push(url: &str, payload: Vec<u8>) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "the remote-write URL is invalid".to_string())?;
    let authority = uri
        .authority()
        .ok_or("the remote-write URL has no host")?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("cannot connect to the receiver: {}", e.kind()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| "the receiver's connection failed".to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .header(http::header::CONTENT_ENCODING, "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .header(http::header::USER_AGENT, "levee")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|_| "cannot build the request".to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|_| "the receiver did not answer".to_string())?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_reads_back_with_escaped_labels() {
        let text = "# HELP x y\n# TYPE x counter\nlevee_requests_total{route=\"a\\\"b\",code=\"2xx\"} 12\nlevee_up 1\nlevee_h_bucket{le=\"+Inf\"} 3\n";
        let got = parse_exposition(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "levee_requests_total");
        assert_eq!(
            got[0].labels,
            vec![
                ("route".into(), "a\"b".into()),
                ("code".into(), "2xx".into())
            ]
        );
        assert_eq!(got[0].value, 12.0);
        assert_eq!(got[1].labels, vec![]);
        assert_eq!(got[2].labels, vec![("le".into(), "+Inf".into())]);
    }

    #[test]
    fn a_body_is_snappy_over_a_write_request_with_sorted_labels() {
        let samples = parse_exposition("m{z=\"1\",a=\"2\"} 5\n");
        let raw = body(&samples, &[("replica".into(), "r1".into())], 1000);
        let proto = snap::raw::Decoder::new().decompress_vec(&raw).unwrap();
        let req: WriteRequest = prost::Message::decode(proto.as_slice()).unwrap();
        let names: Vec<_> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "a", "replica", "z"]);
        assert_eq!(req.timeseries[0].samples[0].timestamp, 1000);
    }
}
