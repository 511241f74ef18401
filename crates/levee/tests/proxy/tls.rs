//! TLS listeners with ALPN: h2 and http/1.1 over rustls.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use levee_testkit::{
    Cluster, FakeUpstream, GatewayConfig, Listener, Reply, Route, TempDir, TestGateway,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::sync::Arc;

struct Certs {
    dir: TempDir,
    cert_pem: String,
}

fn certs() -> Certs {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = TempDir::new();
    std::fs::write(dir.path.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path.join("key.pem"), key.serialize_pem()).unwrap();
    Certs {
        cert_pem: cert.pem(),
        dir,
    }
}

async fn tls_client(
    addr: std::net::SocketAddr,
    cert_pem: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn tls_listener_negotiates_h2_and_http1_by_alpn() {
    let up = FakeUpstream::builder("u")
        .otherwise(Reply::echo())
        .start()
        .await;
    let certs = certs();
    let config = GatewayConfig::without_listeners()
        .listener(Listener::new("tls").tls(
            &certs.dir.path.join("cert.pem"),
            &certs.dir.path.join("key.pem"),
        ))
        .route(Route::new("r", "c"))
        .cluster(Cluster::new("c").endpoint(&up));
    let gw = TestGateway::start(&config.toml()).await;
    let addr = gw.addr("tls");

    let tls = tls_client(addr, &certs.cert_pem, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    let tls = tls_client(addr, &certs.cert_pem, b"http/1.1").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/h1")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn bad_certificate_files_fail_start_with_the_file_named() {
    let dir = TempDir::new();
    let cert = dir.path.join("cert.pem");
    let key = dir.path.join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let config = GatewayConfig::without_listeners()
        .listener(Listener::new("tls").tls(&cert, &key))
        .toml();
    let config = levee_config::load_str(&config, levee_config::Format::Toml, "t.toml").unwrap();
    let err = levee_proxy::Gateway::start(config, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cert.pem"), "{err}");
}
