//! The process side of a zero-downtime handover (`levee run --takeover`):
//! receiving a running gateway's sockets before this one starts, and
//! serving the control socket so a later process can take over from this
//! one. The protocol itself is `levee_proxy::handover`.

use anyhow::Context as _;
use levee_proxy::handover::{self as proto, InheritedListener, SocketEntry, SocketRole};
use levee_proxy::Gateway;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixListener;

/// What a successor brings from its predecessor into `run`.
pub(crate) struct Inherited {
    /// For `levee_control::start`.
    pub(crate) options: levee_control::StartOptions,
    /// The admin API's socket.
    pub(crate) admin: Option<InheritedListener>,
    /// The rest of the exchange, once this process serves.
    pub(crate) pending: PendingReady,
}

/// A successor's unfinished exchange with its predecessor.
pub(crate) struct PendingReady {
    handshake: proto::Handshake,
    predecessor: u32,
    store_go: tokio::sync::oneshot::Sender<()>,
    control: Option<std::os::unix::net::UnixListener>,
}

/// Connects to the running gateway's control socket at `path` and takes
/// its sockets. Nothing changes for the running gateway until
/// [`PendingReady::ready`].
pub(crate) async fn take_over(path: &Path) -> anyhow::Result<Inherited> {
    let owned = path.to_path_buf();
    let taken = tokio::task::spawn_blocking(move || proto::take_over(&owned))
        .await
        .context("the handover task")?
        .context("taking over from the running Levee")?;
    let (handshake, sockets) = taken.into_parts();
    tracing::info!(
        predecessor = sockets.predecessor_pid,
        listeners = sockets.listeners.len(),
        "received the running gateway's sockets"
    );
    let (store_go, store_after) = tokio::sync::oneshot::channel();
    Ok(Inherited {
        options: levee_control::StartOptions {
            inherited: proto::InheritedSockets::new(sockets.listeners),
            slo_store_after: Some(store_after),
            connector: None,
            // `run` sets the layers it was given.
            config_overlays: Vec::new(),
        },
        admin: sockets.admin,
        pending: PendingReady {
            handshake,
            predecessor: sockets.predecessor_pid,
            store_go,
            control: sockets.control,
        },
    })
}

impl PendingReady {
    /// Tells the predecessor this process serves, so it stops accepting
    /// and drains. Returns a task that ends with the control socket once
    /// the predecessor has drained and written its last SLO events (or
    /// exited, or `limit` passed): only then does this process load the
    /// SLO store and accept a takeover itself.
    pub(crate) fn ready(
        mut self,
        limit: Duration,
    ) -> tokio::task::JoinHandle<Option<std::os::unix::net::UnixListener>> {
        if let Err(e) = self.handshake.ready() {
            tracing::warn!(error = %e, "the old process went away before the handover finished");
        } else {
            tracing::info!(
                predecessor = self.predecessor,
                "serving; the old process stops accepting and drains"
            );
        }
        let predecessor = self.predecessor;
        tokio::spawn(async move {
            let handshake = self.handshake;
            let confirmed = tokio::task::spawn_blocking(move || handshake.wait_done(limit))
                .await
                .unwrap_or(false);
            if confirmed {
                tracing::info!(
                    predecessor,
                    "the old process drained and saved its SLO state"
                );
            } else {
                tracing::warn!(
                    predecessor,
                    "the old process ended without confirming its last SLO flush"
                );
            }
            let _ = self.store_go.send(());
            self.control
        })
    }
}

/// The control socket of this process, serving one takeover at a time.
pub(crate) struct Control {
    listener: Option<UnixListener>,
    /// Where it is, removed at exit unless handed over.
    path: Option<PathBuf>,
    /// The admin API's socket, to pass on.
    admin: OwnedFd,
    /// A successor's exchange in progress.
    exchange: Option<tokio::task::JoinHandle<Result<proto::Successor, proto::HandoverError>>>,
    /// The inherited control socket, once the predecessor is done.
    pending: Option<tokio::task::JoinHandle<Option<std::os::unix::net::UnixListener>>>,
}

impl Control {
    /// A process that accepts no takeover (handover off, or no file).
    pub(crate) fn none(admin: OwnedFd) -> Self {
        Self {
            listener: None,
            path: None,
            admin,
            exchange: None,
            pending: None,
        }
    }

    /// Binds the control socket at `path`. An explicitly configured path
    /// that cannot be bound is an error; the default one only a warning.
    pub(crate) fn bind(path: PathBuf, explicit: bool, admin: OwnedFd) -> anyhow::Result<Self> {
        let mut control = Self::none(admin);
        match proto::bind_control(&path).and_then(|l| to_tokio(l).map_err(io_error)) {
            Ok(l) => {
                tracing::info!(path = %path.display(), "handover socket listening");
                control.listener = Some(l);
                control.path = Some(path);
            }
            Err(e) if explicit => {
                return Err(anyhow::Error::new(e).context("runtime.handover_socket"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "no handover socket; `levee run --takeover` cannot replace this process")
            }
        }
        Ok(control)
    }

    /// A successor's control: the inherited socket arrives from `pending`
    /// once its predecessor is done.
    pub(crate) fn inherit(
        path: Option<PathBuf>,
        admin: OwnedFd,
        pending: tokio::task::JoinHandle<Option<std::os::unix::net::UnixListener>>,
    ) -> Self {
        let mut control = Self::none(admin);
        control.path = path;
        control.pending = Some(pending);
        control
    }

    /// Waits for a successor that serves; meanwhile serves exchanges one
    /// at a time (a failed one leaves this process as it was). Never
    /// returns without a control socket.
    pub(crate) async fn successor(&mut self, gateway: &Gateway) -> proto::Successor {
        loop {
            if let Some(exchange) = &mut self.exchange {
                let result = exchange.await;
                self.exchange = None;
                match result {
                    Ok(Ok(successor)) => return successor,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "handover failed; this process keeps serving")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "handover task failed; this process keeps serving")
                    }
                }
                continue;
            }
            if let Some(pending) = &mut self.pending {
                let control = pending.await.ok().flatten();
                self.pending = None;
                match control.map(to_tokio) {
                    Some(Ok(l)) => self.listener = Some(l),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "cannot use the handed-over control socket")
                    }
                    None => {
                        // The predecessor had none: bind our own.
                        if let Some(path) = &self.path {
                            match proto::bind_control(path)
                                .and_then(|l| to_tokio(l).map_err(io_error))
                            {
                                Ok(l) => self.listener = Some(l),
                                Err(e) => tracing::warn!(error = %e, "no handover socket"),
                            }
                        }
                    }
                }
                if self.listener.is_some() {
                    if let Some(path) = &self.path {
                        tracing::info!(path = %path.display(), "handover socket listening");
                    }
                }
                continue;
            }
            let Some(listener) = &self.listener else {
                return std::future::pending().await;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "handover socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.offers(gateway, listener) {
                Ok(offered) => {
                    let stream = match stream.into_std().and_then(|s| {
                        s.set_nonblocking(false)?;
                        Ok(s)
                    }) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "handover connection unusable");
                            continue;
                        }
                    };
                    tracing::info!("a new process asks to take over");
                    self.exchange = Some(tokio::task::spawn_blocking(move || {
                        let offers: Vec<proto::Offer<'_>> = offered
                            .iter()
                            .map(|(entry, fd)| proto::offer(entry.clone(), fd))
                            .collect();
                        proto::serve_successor(stream, &offers)
                    }));
                }
                Err(e) => tracing::warn!(error = %e, "cannot offer this process's sockets"),
            }
        }
    }

    /// This process's sockets, duplicated for the exchange.
    fn offers(
        &self,
        gateway: &Gateway,
        control: &UnixListener,
    ) -> std::io::Result<Vec<(SocketEntry, OwnedFd)>> {
        let mut offered = gateway.listening_sockets();
        let admin = self.admin.try_clone()?;
        let admin_addr = std::net::TcpListener::from(admin.try_clone()?).local_addr()?;
        offered.push((
            SocketEntry {
                role: SocketRole::Admin,
                name: "admin".into(),
                configured: Some(gateway.config().admin.listen),
                bound: Some(admin_addr),
            },
            admin,
        ));
        offered.push((
            SocketEntry {
                role: SocketRole::Control,
                name: "control".into(),
                configured: None,
                bound: None,
            },
            control.as_fd().try_clone_to_owned()?,
        ));
        Ok(offered)
    }

    /// After a handover: the successor owns the control socket now.
    pub(crate) fn handed_over(mut self) {
        self.path = None;
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let (Some(path), Some(_)) = (&self.path, &self.listener) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn to_tokio(l: std::os::unix::net::UnixListener) -> std::io::Result<UnixListener> {
    l.set_nonblocking(true)?;
    UnixListener::from_std(l)
}

fn io_error(source: std::io::Error) -> proto::HandoverError {
    proto::HandoverError::Io {
        what: "using the handover socket".into(),
        source,
    }
}
