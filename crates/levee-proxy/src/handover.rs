//! Zero-downtime process handover: a running gateway passes its listening
//! sockets (every proxy listener, the admin API's and this control socket)
//! to a successor over a Unix socket with `SCM_RIGHTS`. The successor
//! serves on the very same sockets, so there is one accept queue and no
//! connection is refused or reset while the old process drains and exits.
//! (`SO_REUSEPORT` would give each process its own queue, and connections
//! waiting in the old one are reset when it closes.)
//!
//! The exchange, one JSON line each way on a stream socket:
//!
//! 1. successor → running: a [`Request`];
//! 2. running → successor: a [`Manifest`] naming each socket, with the file
//!    descriptors attached in the same order;
//! 3. successor → running: `ready`, once it serves (anything else, or the
//!    connection closing first, leaves the running process untouched);
//! 4. running → successor: `done`, after its drain and last SLO flush, so
//!    the successor loads the SLO store only once nothing else writes it.
//!
//! Both ends refuse a peer running as another user (`SO_PEERCRED`).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The protocol's name and version, checked by both ends.
pub const PROTOCOL: &str = "levee-handover/1";

/// The most descriptors one message carries (Linux's `SCM_MAX_FD`).
const MAX_SOCKETS: usize = 253;

/// The most bytes a request or manifest line may take.
const MAX_LINE: usize = 1 << 20;

/// How long either end waits for the other's request or manifest.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handover could not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// Nothing listens on the control socket.
    #[error("no running Levee to take over: nothing listens on {path}: {source}")]
    NotRunning {
        /// The control socket's path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another live process already listens on the control socket.
    #[error("another Levee already listens on the handover socket {path}; use `levee run --takeover` to replace it")]
    InUse {
        /// The control socket's path.
        path: PathBuf,
    },
    /// The peer runs as another user.
    #[error("the handover peer runs as uid {peer}, not {ours}; refused")]
    OtherUser {
        /// The peer's uid.
        peer: u32,
        /// Ours.
        ours: u32,
    },
    /// The peer broke the protocol.
    #[error("handover protocol error: {0}")]
    Protocol(String),
    /// The peer went away before finishing.
    #[error("the other process closed the handover connection early")]
    Closed,
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HandoverError {
    let what = what.into();
    move |source| HandoverError::Io { what, source }
}

/// What the successor asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL`].
    pub protocol: String,
    /// The successor's process id, for logs.
    pub pid: u32,
}

/// What a passed socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketRole {
    /// A proxy listener.
    Listener,
    /// The admin API.
    Admin,
    /// The handover control socket itself.
    Control,
}

/// One passed socket, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketEntry {
    /// What it is for.
    pub role: SocketRole,
    /// The listener's name (`admin`, `control` for the others).
    pub name: String,
    /// The address in the running process's config (TCP sockets only).
    pub configured: Option<SocketAddr>,
    /// The address it is bound to (TCP sockets only).
    pub bound: Option<SocketAddr>,
}

/// The running process's answer: its sockets, in descriptor order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`PROTOCOL`].
    pub protocol: String,
    /// The running process's id, for logs.
    pub pid: u32,
    /// One entry per attached descriptor.
    pub sockets: Vec<SocketEntry>,
}

/// A listening TCP socket received from the predecessor.
#[derive(Debug)]
pub struct InheritedListener {
    /// The name it had there.
    pub name: String,
    /// The address configured there.
    pub configured: SocketAddr,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// The socket, blocking as received.
    pub socket: TcpListener,
}

/// Proxy listening sockets received from a predecessor, claimed by the
/// listeners of the new config that have the same address.
#[derive(Debug, Default)]
pub struct InheritedSockets {
    listeners: Vec<InheritedListener>,
}

impl InheritedSockets {
    /// Wraps received listeners.
    pub fn new(listeners: Vec<InheritedListener>) -> Self {
        Self { listeners }
    }

    /// The socket for listener `name` configured at `configured`: one that
    /// was configured or bound at that address. With port 0 the name must
    /// match too, as any such listener could take it.
    pub(crate) fn take(&mut self, name: &str, configured: SocketAddr) -> Option<TcpListener> {
        let at = self.listeners.iter().position(|l| {
            if configured.port() == 0 {
                l.configured == configured && l.name == name
            } else {
                l.configured == configured || l.bound == configured
            }
        })?;
        Some(self.listeners.swap_remove(at).socket)
    }

    /// What no listener claimed; dropping it closes this process's copies.
    pub(crate) fn unclaimed(&mut self) -> Vec<InheritedListener> {
        std::mem::take(&mut self.listeners)
    }
}

/// Where the control socket is: `runtime.handover_socket` (a relative path
/// from the first config file's directory), or for the default a name
/// derived from the config files' canonical paths in `$XDG_RUNTIME_DIR` (or
/// `/tmp`). `None` when handover is off or the gateway was not started from
/// a file.
pub fn socket_path(config: &levee_config::Config, config_files: &[PathBuf]) -> Option<PathBuf> {
    let config_path = config_files.first()?;
    match &config.runtime.handover_socket {
        levee_config::HandoverSocket::Off => None,
        levee_config::HandoverSocket::Path(p) if p.is_absolute() => Some(p.clone()),
        levee_config::HandoverSocket::Path(p) => Some(match config_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.clone(),
        }),
        levee_config::HandoverSocket::Default => {
            // One file keeps the name it always had; layers are named by
            // all their files, so that `base + staging` and `base + prod`
            // side by side do not claim one socket.
            let mut key_bytes = Vec::new();
            for (i, file) in config_files.iter().enumerate() {
                if i > 0 {
                    key_bytes.push(0);
                }
                let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
                key_bytes.extend_from_slice(canonical.as_os_str().as_encoded_bytes());
            }
            let dir = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|d| d.is_absolute())
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            let key = levee_policy::hash::hash64(&key_bytes);
            Some(dir.join(format!("levee-{key:016x}.sock")))
        }
    }
}

/// Binds the control socket at `path`, mode 0600. A file left by a process
/// that is gone is replaced; one a live process answers on is refused.
pub fn bind_control(path: &Path) -> Result<UnixListener, HandoverError> {
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(HandoverError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path)
                .map_err(io(format!("removing the stale socket {}", path.display())))?;
            UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?
        }
        Err(e) => {
            return Err(HandoverError::Io {
                what: format!("binding {}", path.display()),
                source: e,
            })
        }
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("restricting {}", path.display())))?;
    Ok(listener)
}

/// Refuses a peer running as another user.
fn check_peer(stream: &UnixStream) -> Result<(), HandoverError> {
    let cred = rustix::net::sockopt::socket_peercred(stream)
        .map_err(|e| io("reading the peer's credentials")(e.into()))?;
    let (peer, ours) = (cred.uid.as_raw(), rustix::process::getuid().as_raw());
    if peer != ours {
        return Err(HandoverError::OtherUser { peer, ours });
    }
    Ok(())
}

/// Reads one line (without its newline) of at most [`MAX_LINE`] bytes.
fn read_line(reader: &mut impl BufRead) -> Result<String, HandoverError> {
    let mut line = String::new();
    let n = reader
        .take(MAX_LINE as u64)
        .read_line(&mut line)
        .map_err(io("reading from the handover peer"))?;
    if n == 0 || !line.ends_with('\n') {
        return Err(HandoverError::Closed);
    }
    line.pop();
    Ok(line)
}

/// One socket the running process offers, borrowed from where it lives.
pub struct Offer<'a> {
    /// How it is described to the successor.
    pub entry: SocketEntry,
    /// The descriptor.
    pub fd: BorrowedFd<'a>,
}

/// A successor that asked for the sockets, got them, and said it serves.
#[derive(Debug)]
pub struct Successor {
    stream: UnixStream,
    /// Its process id.
    pub pid: u32,
}

impl Successor {
    /// Tells the successor this process has drained and flushed; it may
    /// load the SLO store now.
    pub fn done(mut self) {
        let _ = self.stream.write_all(b"done\n");
    }
}

/// The running side of one exchange on `stream`: checks the peer, reads
/// its request, sends `offers`, and waits (for as long as the successor
/// takes to start) for `ready`. Blocking: run it on a blocking thread.
/// Any error leaves this process as it was.
pub fn serve_successor(
    stream: UnixStream,
    offers: &[Offer<'_>],
) -> Result<Successor, HandoverError> {
    check_peer(&stream)?;
    if offers.len() > MAX_SOCKETS {
        return Err(HandoverError::Protocol(format!(
            "{} sockets are more than one message carries ({MAX_SOCKETS})",
            offers.len()
        )));
    }
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io("setting a timeout"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(io("cloning the stream"))?);
    let request: Request = serde_json::from_str(&read_line(&mut reader)?)
        .map_err(|e| HandoverError::Protocol(format!("bad request: {e}")))?;
    if request.protocol != PROTOCOL {
        return Err(HandoverError::Protocol(format!(
            "the successor speaks {}, this process {PROTOCOL}",
            request.protocol
        )));
    }
    let manifest = Manifest {
        protocol: PROTOCOL.to_string(),
        pid: std::process::id(),
        sockets: offers.iter().map(|o| o.entry.clone()).collect(),
    };
    let mut line = serde_json::to_vec(&manifest).expect("a manifest serialises");
    line.push(b'\n');
    let fds: Vec<BorrowedFd<'_>> = offers.iter().map(|o| o.fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        return Err(HandoverError::Protocol("too many sockets to pass".into()));
    }
    // The descriptors travel with the first bytes; the rest is plain data.
    let sent = rustix::net::sendmsg(
        &stream,
        &[std::io::IoSlice::new(&line)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .map_err(|e| io("passing the sockets")(e.into()))?;
    (&stream)
        .write_all(&line[sent..])
        .map_err(io("passing the sockets"))?;
    // The successor builds its gateway now; that takes as long as it takes
    // (DNS, certificates). Closing the connection is its way to give up.
    stream
        .set_read_timeout(None)
        .map_err(io("clearing the timeout"))?;
    match read_line(&mut reader)?.as_str() {
        "ready" => Ok(Successor {
            stream,
            pid: request.pid,
        }),
        other => Err(HandoverError::Protocol(format!(
            "expected `ready`, got {other:?}"
        ))),
    }
}

/// What the successor received.
#[derive(Debug)]
pub struct Takeover {
    stream: UnixStream,
    /// The predecessor's process id.
    pub predecessor_pid: u32,
    /// Proxy listeners.
    pub listeners: Vec<InheritedListener>,
    /// The admin API's socket.
    pub admin: Option<InheritedListener>,
    /// The control socket, to serve the next handover.
    pub control: Option<UnixListener>,
}

/// The successor's side: connects to the control socket at `path`, checks
/// the peer, and receives the running process's sockets. Blocking.
pub fn take_over(path: &Path) -> Result<Takeover, HandoverError> {
    let stream = UnixStream::connect(path).map_err(|source| HandoverError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    check_peer(&stream)?;
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(io("setting a timeout"))?;
    let mut request = serde_json::to_vec(&Request {
        protocol: PROTOCOL.to_string(),
        pid: std::process::id(),
    })
    .expect("a request serialises");
    request.push(b'\n');
    (&stream)
        .write_all(&request)
        .map_err(io("asking for the sockets"))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| io("receiving the sockets")(e.into()))?;
    if received.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(HandoverError::Protocol(
            "the sockets did not fit the message".into(),
        ));
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received.bytes == 0 {
        return Err(HandoverError::Closed);
    }
    buf.truncate(received.bytes);
    let mut reader = BufReader::new(stream.try_clone().map_err(io("cloning the stream"))?);
    if !buf.contains(&b'\n') {
        let rest = read_line(&mut reader)?;
        buf.extend_from_slice(rest.as_bytes());
    } else {
        buf.truncate(buf.len() - 1);
    }
    let manifest: Manifest = serde_json::from_slice(&buf)
        .map_err(|e| HandoverError::Protocol(format!("bad manifest: {e}")))?;
    if manifest.protocol != PROTOCOL {
        return Err(HandoverError::Protocol(format!(
            "the running process speaks {}, this one {PROTOCOL}",
            manifest.protocol
        )));
    }
    if manifest.sockets.len() != fds.len() {
        return Err(HandoverError::Protocol(format!(
            "the manifest names {} sockets but {} came",
            manifest.sockets.len(),
            fds.len()
        )));
    }
    let mut takeover = Takeover {
        stream,
        predecessor_pid: manifest.pid,
        listeners: Vec::new(),
        admin: None,
        control: None,
    };
    for (entry, fd) in manifest.sockets.into_iter().zip(fds) {
        match entry.role {
            SocketRole::Control => takeover.control = Some(UnixListener::from(fd)),
            SocketRole::Listener | SocketRole::Admin => {
                let socket = TcpListener::from(fd);
                let bound = socket
                    .local_addr()
                    .map_err(io(format!("reading the address of {}", entry.name)))?;
                if entry.bound != Some(bound) {
                    return Err(HandoverError::Protocol(format!(
                        "socket {} is bound to {bound}, not {:?}",
                        entry.name, entry.bound
                    )));
                }
                let inherited = InheritedListener {
                    configured: entry.configured.unwrap_or(bound),
                    name: entry.name,
                    bound,
                    socket,
                };
                if entry.role == SocketRole::Admin {
                    takeover.admin = Some(inherited);
                } else {
                    takeover.listeners.push(inherited);
                }
            }
        }
    }
    Ok(takeover)
}

/// The successor's connection once it has its sockets.
#[derive(Debug)]
pub struct Handshake {
    stream: UnixStream,
}

impl Takeover {
    /// Splits off the connection, leaving the sockets to be used.
    pub fn into_parts(self) -> (Handshake, TakenSockets) {
        (
            Handshake {
                stream: self.stream,
            },
            TakenSockets {
                predecessor_pid: self.predecessor_pid,
                listeners: self.listeners,
                admin: self.admin,
                control: self.control,
            },
        )
    }
}

/// The sockets of a [`Takeover`], apart from its connection.
#[derive(Debug)]
pub struct TakenSockets {
    /// The predecessor's process id.
    pub predecessor_pid: u32,
    /// Proxy listeners.
    pub listeners: Vec<InheritedListener>,
    /// The admin API's socket.
    pub admin: Option<InheritedListener>,
    /// The control socket.
    pub control: Option<UnixListener>,
}

impl Handshake {
    /// Tells the predecessor this process serves: it stops accepting and
    /// drains.
    pub fn ready(&mut self) -> Result<(), HandoverError> {
        self.stream
            .write_all(b"ready\n")
            .map_err(io("telling the old process to stop"))
    }

    /// Waits until the predecessor has drained and flushed (it says `done`,
    /// or exits), at most `limit`. Blocking. Returns whether it said so.
    pub fn wait_done(self, limit: Duration) -> bool {
        if self.stream.set_read_timeout(Some(limit)).is_err() {
            return false;
        }
        let mut reader = BufReader::new(self.stream);
        matches!(read_line(&mut reader).as_deref(), Ok("done"))
    }
}

/// Borrows `fd` as an offer entry.
pub fn offer<'a>(entry: SocketEntry, fd: &'a impl AsFd) -> Offer<'a> {
    Offer {
        entry,
        fd: fd.as_fd(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layered_configs_get_a_default_socket_of_their_own() {
        let config = levee_config::load_str(
            "[[listeners]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\n",
            levee_config::Format::Toml,
            "levee.toml",
        )
        .expect("a valid config");
        // Paths that do not exist are used as written.
        let base = PathBuf::from("/nonexistent/levee/base.toml");
        let prod = PathBuf::from("/nonexistent/levee/prod.toml");
        let staging = PathBuf::from("/nonexistent/levee/staging.toml");
        let one = socket_path(&config, std::slice::from_ref(&base)).expect("a socket");
        let key = levee_policy::hash::hash64(base.as_os_str().as_encoded_bytes());
        assert_eq!(
            one.file_name().and_then(|n| n.to_str()),
            Some(format!("levee-{key:016x}.sock").as_str()),
            "one file keeps the name it always had"
        );
        let base_prod = socket_path(&config, &[base.clone(), prod]);
        let base_staging = socket_path(&config, &[base, staging]);
        assert_ne!(base_prod.as_ref(), Some(&one));
        assert_ne!(base_prod, base_staging);
        assert_eq!(socket_path(&config, &[]), None);
    }
}
