//! A minimal DNS client for SRV lookups, the one query type the standard
//! library's resolver (`getaddrinfo`, behind `tokio::net::lookup_host`)
//! cannot make. It sends one question over UDP to the system's name servers
//! (`/etc/resolv.conf`, read at each lookup) or a configured one, asks again
//! over TCP when the answer is truncated, and decodes the answer in
//! [`wire`]. A, AAAA and search domains stay with the system resolver.
//!
//! Kept this small on purpose: a full resolver library (hickory) would add
//! dozens of crates for one record type.

pub(crate) mod wire;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{Answer, WireError};

/// Where the system's name servers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// What one try may take, at most, whatever resolv.conf says: a lookup
/// at start holds the gateway's start.
const MAX_TRY: Duration = Duration::from_secs(2);
/// Largest answer over TCP that is read (its length prefix is 16 bits).
const MAX_TCP_ANSWER: usize = 65_535;

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    /// No server answered in time.
    #[error("no answer from {servers} within {timeout:?} ({attempts} attempts)")]
    Timeout {
        servers: String,
        timeout: Duration,
        attempts: u32,
    },
    /// A socket error.
    #[error("{server}: {message}")]
    Io { server: SocketAddr, message: String },
    /// The answer said no, or was not usable.
    #[error("{server}: {error}")]
    Answer {
        server: SocketAddr,
        error: WireError,
    },
}

/// Name servers and how long to wait for them, as resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Servers {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
}

impl Servers {
    /// One server, with resolv.conf's default wait.
    pub(crate) fn one(addr: SocketAddr) -> Servers {
        Servers {
            addrs: vec![addr],
            timeout: MAX_TRY,
            attempts: 2,
        }
    }

    /// The servers in `/etc/resolv.conf` (the local host when it names
    /// none, or cannot be read, as glibc does).
    pub(crate) fn system() -> Servers {
        parse_resolv_conf(&std::fs::read_to_string(RESOLV_CONF).unwrap_or_default())
    }
}

/// Reads `nameserver` lines and `options timeout:n attempts:n`; the rest
/// (search, ndots) concerns names SRV lookups do not complete.
pub(crate) fn parse_resolv_conf(text: &str) -> Servers {
    let mut servers = Servers {
        addrs: Vec::new(),
        timeout: Duration::from_secs(5),
        attempts: 2,
    };
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A scope (`fe80::1%eth0`) cannot be kept in an IpAddr:
                // such a server is skipped.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    // glibc uses the first three.
                    if servers.addrs.len() < 3 {
                        servers.addrs.push(SocketAddr::new(ip, 53));
                    }
                }
            }
            Some("options") => {
                for option in words {
                    let number = |prefix: &str| {
                        option
                            .strip_prefix(prefix)
                            .and_then(|n| n.parse::<u32>().ok())
                    };
                    if let Some(t) = number("timeout:") {
                        servers.timeout = Duration::from_secs(u64::from(t.clamp(1, 30)));
                    }
                    if let Some(a) = number("attempts:") {
                        servers.attempts = a.clamp(1, 5);
                    }
                }
            }
            _ => {}
        }
    }
    if servers.addrs.is_empty() {
        servers
            .addrs
            .push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
    }
    servers.timeout = servers.timeout.min(MAX_TRY);
    servers
}

/// Looks up the SRV records of `name` (taken as fully qualified).
/// NXDOMAIN ends the lookup; silence, SERVFAIL, refusals, malformed
/// answers and socket errors move on to the next server and attempt, as
/// the system resolver does.
pub(crate) async fn lookup_srv(servers: &Servers, name: &str) -> Result<Answer, LookupError> {
    let mut last = None;
    for _ in 0..servers.attempts.max(1) {
        for &server in &servers.addrs {
            match query(server, name, servers.timeout).await {
                Ok(answer) => return Ok(answer),
                Err(
                    e @ LookupError::Answer {
                        error: WireError::NxDomain,
                        ..
                    },
                ) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(match last {
        Some(LookupError::Timeout { .. }) | None => LookupError::Timeout {
            servers: servers
                .addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            timeout: servers.timeout,
            attempts: servers.attempts,
        },
        Some(other) => other,
    })
}

/// One question to one server: UDP, then TCP if the answer was truncated.
async fn query(server: SocketAddr, name: &str, timeout: Duration) -> Result<Answer, LookupError> {
    let id = levee_core::ids::random_u64() as u16;
    let io = |e: std::io::Error| LookupError::Io {
        server,
        message: e.to_string(),
    };
    let answer_error = |error| LookupError::Answer { server, error };
    let msg = wire::encode_query(id, name, wire::TYPE_SRV).map_err(answer_error)?;
    let timed_out = || LookupError::Timeout {
        servers: server.to_string(),
        timeout,
        attempts: 1,
    };
    let udp = async {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
        // Connected: datagrams from other addresses are dropped by the
        // kernel, which with a random ID makes spoofing harder.
        socket.connect(server).await.map_err(io)?;
        socket.send(&msg).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(wire::EDNS_PAYLOAD).max(512)];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            match wire::decode_answer(&buf[..n], id, name, wire::TYPE_SRV) {
                // A late answer to an earlier question: keep waiting.
                Err(WireError::NotOurs) => continue,
                other => return Ok(other),
            }
        }
    };
    let decoded = tokio::time::timeout(timeout, udp)
        .await
        .map_err(|_| timed_out())??;
    match decoded {
        Err(WireError::Truncated) => {
            let tcp = async {
                let mut stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
                let mut framed = Vec::with_capacity(msg.len() + 2);
                framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
                framed.extend_from_slice(&msg);
                stream.write_all(&framed).await.map_err(io)?;
                let len = usize::from(stream.read_u16().await.map_err(io)?);
                let mut buf = vec![0u8; len.min(MAX_TCP_ANSWER)];
                stream.read_exact(&mut buf).await.map_err(io)?;
                Ok::<_, LookupError>(wire::decode_answer(&buf, id, name, wire::TYPE_SRV))
            };
            tokio::time::timeout(timeout, tcp)
                .await
                .map_err(|_| timed_out())??
                .map_err(answer_error)
        }
        other => other.map_err(answer_error),
    }
}

#[cfg(test)]
mod tests {
    use super::wire::tests::Builder;
    use super::*;
    use tokio::net::{TcpListener, UdpSocket};

    const NAME: &str = "_http._tcp.orders.test";

    #[test]
    fn resolv_conf_servers_and_options() {
        let s = parse_resolv_conf(
            "# generated\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver ::1 ; local\noptions ndots:5 timeout:1 attempts:3\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n",
        );
        assert_eq!(
            s.addrs,
            [
                "10.96.0.10:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "1.1.1.1:53".parse().unwrap()
            ]
        );
        assert_eq!((s.timeout, s.attempts), (Duration::from_secs(1), 3));
        let empty = parse_resolv_conf("");
        assert_eq!(empty.addrs, ["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(
            empty.timeout, MAX_TRY,
            "resolv.conf's 5 s default is capped"
        );
    }

    /// A server that answers each question with what `answer` builds from
    /// its ID; returns its address.
    async fn udp_server(answer: impl Fn(u16) -> Vec<u8> + Send + 'static) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if n >= 2 {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    let _ = socket.send_to(&answer(id), from).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_answer_over_udp() {
        let server = udp_server(|id| {
            Builder::new(id, 0x8580, NAME, wire::TYPE_SRV)
                .srv(0, 5, 8080, "a.orders.test", 30)
                .addr("a.orders.test", "127.0.0.9".parse().unwrap(), 30)
                .build()
        })
        .await;
        let answer = lookup_srv(&Servers::one(server), NAME).await.unwrap();
        assert_eq!(answer.srv[0].port, 8080);
        assert_eq!(
            answer.addresses[0].ip,
            "127.0.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        // Both sides on one port, as servers listen: TCP's free port
        // first (the busier space), then UDP's, trying again on a clash.
        let mut pair = None;
        for _ in 0..50 {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if let Ok(udp) = UdpSocket::bind(addr).await {
                pair = Some((tcp, udp, addr));
                break;
            }
        }
        let (tcp, udp, addr) = pair.expect("a port free for both TCP and UDP");
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((_, from)) = udp.recv_from(&mut buf).await {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let cut = Builder::new(id, 0x8380, NAME, wire::TYPE_SRV).build();
                let _ = udp.send_to(&cut, from).await;
            }
        });
        tokio::spawn(async move {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut q = vec![0u8; usize::from(len)];
            stream.read_exact(&mut q).await.unwrap();
            let id = u16::from_be_bytes([q[0], q[1]]);
            let mut b = Builder::new(id, 0x8180, NAME, wire::TYPE_SRV);
            for i in 0..60u16 {
                b = b.srv(0, 1, 9000 + i, &format!("host-{i}.orders.test"), 5);
            }
            let full = b.build();
            assert!(full.len() > 1232, "more than fits in UDP");
            stream
                .write_all(&(full.len() as u16).to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&full).await.unwrap();
        });
        let answer = lookup_srv(&Servers::one(addr), NAME).await.unwrap();
        assert_eq!(answer.srv.len(), 60);
        assert_eq!(answer.srv[59].target, "host-59.orders.test");
    }

    #[tokio::test]
    async fn nxdomain_ends_the_lookup_and_silence_times_out() {
        let nx = udp_server(|id| Builder::new(id, 0x8183, NAME, wire::TYPE_SRV).build()).await;
        let err = lookup_srv(&Servers::one(nx), NAME).await.unwrap_err();
        assert_eq!(
            err,
            LookupError::Answer {
                server: nx,
                error: WireError::NxDomain
            }
        );
        assert!(err.to_string().contains("NXDOMAIN"), "{err}");

        // Someone else's answers are ignored, then nothing: a timeout.
        let stray =
            udp_server(|id| Builder::new(id.wrapping_add(1), 0x8180, NAME, wire::TYPE_SRV).build())
                .await;
        let quick = Servers {
            addrs: vec![stray],
            timeout: Duration::from_millis(100),
            attempts: 2,
        };
        let err = lookup_srv(&quick, NAME).await.unwrap_err();
        assert!(
            matches!(err, LookupError::Timeout { attempts: 2, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_next_server_is_asked_when_one_is_silent() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let answering = udp_server(|id| {
            Builder::new(id, 0x8180, NAME, wire::TYPE_SRV)
                .srv(0, 1, 80, "b.orders.test", 5)
                .build()
        })
        .await;
        let servers = Servers {
            addrs: vec![silent.local_addr().unwrap(), answering],
            timeout: Duration::from_millis(100),
            attempts: 1,
        };
        let answer = lookup_srv(&servers, NAME).await.unwrap();
        assert_eq!(answer.srv[0].target, "b.orders.test");
    }
}
