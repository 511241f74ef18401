//! Alert notifications: a bounded queue drained by one task that routes
//! each notification to its webhooks and escalates unacknowledged pages;
//! the decisions (severity and label matching, escalation chains, who
//! hears a resolution) are `crate::escalation`'s, on this task's clock.
//! Each webhook has its own bounded queue and worker, which POSTs in order
//! and retries failures with capped, fully jittered exponential backoff: a
//! slow receiver delays no other, and a retried "firing" never lands after
//! its "resolved". Two payloads: Alertmanager's `POST /api/v2/alerts` body
//! (a JSON array of alerts, re-sent every minute while firing because
//! Alertmanager forgets alerts past their `endsAt`), and Levee's own
//! object.

use crate::escalation::{self, Escalations};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use levee_config::{AlertSeverity, Webhook, WebhookFormat};
use levee_core::metrics::{names, Counter, Registry};
use levee_core::Nanos;
use levee_slo::calendar::rfc3339;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Notifications waiting beyond this are dropped (and counted): a dead
/// receiver must not grow memory without bound.
const QUEUE: usize = 1024;

/// How long Alertmanager should keep a firing alert without a refresh:
/// four resend intervals, as Prometheus does.
const AM_VALIDITY: Duration = Duration::from_secs(240);

/// One alert to announce.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    /// Firing (true) or resolved.
    pub(crate) firing: bool,
    /// A periodic re-send of a firing alert, for Alertmanager only.
    pub(crate) refresh: bool,
    pub(crate) severity: AlertSeverity,
    /// The objective's id.
    pub(crate) slo: String,
    /// The SLO's name.
    pub(crate) slo_name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) summary: String,
    pub(crate) description: String,
    pub(crate) runbook: Option<String>,
    /// When the alert fired.
    pub(crate) starts_at: Nanos,
    /// When it resolved.
    pub(crate) ends_at: Option<Nanos>,
    /// The incident a page opened.
    pub(crate) incident: Option<u64>,
    /// The SLO's figures (the API's SLO status).
    pub(crate) status: serde_json::Value,
    /// The webhook whose unacknowledged page this escalates.
    pub(crate) escalated_from: Option<String>,
}

/// What the delivery task is told.
#[derive(Debug)]
enum Message {
    /// Boxed: the queue holds up to 1,024 messages, mostly small ones.
    Notify(Box<Notification>),
    /// An operator acknowledged or resolved this incident.
    StopEscalation(u64),
}

/// The webhooks of the running config, with their delivery queues, in
/// config order.
#[derive(Debug, Default)]
struct Hooks {
    configs: Vec<Webhook>,
    queues: Vec<Arc<Hook>>,
}

impl Hooks {
    fn queue(&self, name: &str) -> Option<&Arc<Hook>> {
        self.queues.iter().find(|h| h.config.name == name)
    }
}

/// A webhook with its delivery counters and its ordered queue.
#[derive(Debug)]
struct Hook {
    config: Webhook,
    sent: Arc<Counter>,
    retried: Arc<Counter>,
    dropped: Arc<Counter>,
    queue: mpsc::Sender<Arc<Notification>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends notifications to the configured webhooks.
#[derive(Debug)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Message>,
    hooks: Arc<ArcSwap<Hooks>>,
    registry: Arc<Registry>,
    overflow: Arc<Counter>,
    client: HttpClient,
}

impl Notifier {
    /// Starts the delivery task.
    pub(crate) fn start(registry: &Arc<Registry>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let hooks: Arc<ArcSwap<Hooks>> = Arc::default();
        tokio::spawn(deliver_all(rx, hooks.clone()));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            tx,
            hooks,
            client: Client::builder(TokioExecutor::new()).build(connector),
            registry: registry.clone(),
            overflow: registry.counter(
                names::NOTIFICATIONS,
                "Alert notifications by webhook and result.",
                &[("webhook", ""), ("result", "queue_full")],
            ),
        }
    }

    /// Takes the webhooks of a new config.
    pub(crate) fn configure(&self, webhooks: &[Webhook]) {
        let current = self.hooks.load_full();
        let queues = webhooks
            .iter()
            .map(|w| {
                // An unchanged webhook keeps its queue and its worker, so a
                // reload loses no pending delivery.
                if let Some(same) = current.queues.iter().find(|h| h.config == *w) {
                    return same.clone();
                }
                let c = |result| {
                    self.registry.counter(
                        names::NOTIFICATIONS,
                        "Alert notifications by webhook and result.",
                        &[("webhook", w.name.as_str()), ("result", result)],
                    )
                };
                let (queue, rx) = mpsc::channel(QUEUE);
                let hook = Arc::new(Hook {
                    config: w.clone(),
                    sent: c("sent"),
                    retried: c("retried"),
                    dropped: c("dropped"),
                    queue,
                });
                // The worker ends once the hook is replaced and its queue
                // is drained.
                tokio::spawn(hook_worker(self.client.clone(), Arc::downgrade(&hook), rx));
                hook
            })
            .collect();
        self.hooks.store(Arc::new(Hooks {
            configs: webhooks.to_vec(),
            queues,
        }));
    }

    /// Queues `n`; never waits.
    pub(crate) fn send(&self, n: Notification) {
        if self.tx.try_send(Message::Notify(Box::new(n))).is_err() {
            self.overflow.inc();
            tracing::error!("alert notification queue full; notification dropped");
        }
    }

    /// Stops the escalations still to come for `incident`'s page (an
    /// operator acknowledged or resolved it); never waits.
    pub(crate) fn stop_escalation(&self, incident: u64) {
        if self.tx.try_send(Message::StopEscalation(incident)).is_err() {
            self.overflow.inc();
            tracing::error!(
                incident,
                "alert notification queue full; the escalation may still go out"
            );
        }
    }
}

/// The delivery task: routes each notification, and sends each
/// escalation when it falls due (on the pausable clock, so tests can run
/// a chain of minutes in no time).
async fn deliver_all(mut rx: mpsc::Receiver<Message>, hooks: Arc<ArcSwap<Hooks>>) {
    let epoch = levee_core::time::now();
    let clock =
        move || u64::try_from((levee_core::time::now() - epoch).as_nanos()).unwrap_or(u64::MAX);
    let mut escalations: Escalations<Arc<Notification>> = Escalations::default();
    loop {
        let message = match escalations.next_due() {
            Some(due) => {
                tokio::select! {
                    m = rx.recv() => m,
                    () = tokio::time::sleep_until(epoch + Duration::from_nanos(due)) => {
                        let hooks = hooks.load();
                        for e in escalations.due(&hooks.configs, clock()) {
                            tracing::warn!(incident = e.incident, from = %e.from, to = %e.to, "page not acknowledged in time; escalated");
                            let escalated = Notification {
                                escalated_from: Some(e.from),
                                ..(*e.payload).clone()
                            };
                            enqueue(&hooks, &e.to, &Arc::new(escalated));
                        }
                        continue;
                    }
                }
            }
            None => rx.recv().await,
        };
        let Some(message) = message else { return };
        match message {
            Message::StopEscalation(incident) => {
                escalations.stop(incident);
            }
            Message::Notify(n) => route(&mut escalations, &hooks.load(), Arc::new(*n), clock()),
        }
    }
}

/// Sends `n` to its webhooks: a page to those it reaches now (its
/// escalations scheduled), a page's refresh and resolution to every
/// webhook the page reached, anything else to the webhooks its severity
/// and labels select.
fn route(
    escalations: &mut Escalations<Arc<Notification>>,
    hooks: &Hooks,
    n: Arc<Notification>,
    now: Nanos,
) {
    let labels: Vec<(String, String)> = labels(&n)
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect();
    let page = n.incident.filter(|_| n.severity == AlertSeverity::Page);
    let targets: Vec<String> = match page {
        Some(incident) if n.firing && !n.refresh => {
            escalations.page(&hooks.configs, incident, &labels, n.clone(), now)
        }
        Some(incident) if n.firing => match escalations.reached(incident) {
            Some(reached) => reached.to_vec(),
            None => direct(hooks, &n, &labels),
        },
        Some(incident) => match escalations.resolve(incident) {
            Some(reached) => reached,
            None => direct(hooks, &n, &labels),
        },
        None => direct(hooks, &n, &labels),
    };
    for name in targets {
        enqueue(hooks, &name, &n);
    }
}

fn direct(hooks: &Hooks, n: &Notification, labels: &[(String, String)]) -> Vec<String> {
    escalation::direct(&hooks.configs, n.severity, labels)
        .map(|w| w.name.clone())
        .collect()
}

/// Puts `n` on the queue of the webhook `name` (a refresh only on an
/// Alertmanager webhook's).
fn enqueue(hooks: &Hooks, name: &str, n: &Arc<Notification>) {
    let Some(hook) = hooks.queue(name) else {
        return;
    };
    if n.refresh && hook.config.format != WebhookFormat::Alertmanager {
        return;
    }
    if hook.queue.try_send(n.clone()).is_err() {
        hook.dropped.inc();
        tracing::error!(webhook = %hook.config.name, "webhook queue full; notification dropped");
    }
}

/// Delivers one webhook's notifications in order, until the webhook is
/// replaced (by a reload) and its queue is drained.
async fn hook_worker(
    client: HttpClient,
    hook: std::sync::Weak<Hook>,
    mut rx: mpsc::Receiver<Arc<Notification>>,
) {
    while let Some(n) = rx.recv().await {
        let Some(hook) = hook.upgrade() else { return };
        deliver(&client, &hook, &n).await;
    }
}

/// POSTs `n` to `hook` until it is accepted (2xx) or the attempts run out.
async fn deliver(client: &HttpClient, hook: &Hook, n: &Notification) {
    let w = &hook.config;
    let body = Bytes::from(match w.format {
        WebhookFormat::Alertmanager => alertmanager_payload(n),
        WebhookFormat::Levee => levee_payload(n),
    });
    let backoff = levee_policy::retry::Backoff {
        base: w.backoff,
        max: w.backoff_max,
    };
    for attempt in 1..=w.max_attempts {
        let mut req = http::Request::post(w.url.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("levee/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &w.headers {
            req = req.header(name.as_str(), value.expose());
        }
        let Ok(req) = req.body(Full::new(body.clone())) else {
            hook.dropped.inc();
            tracing::error!(webhook = %w.name, "webhook request could not be built");
            return;
        };
        let result = tokio::time::timeout(w.timeout, client.request(req)).await;
        let failure = match result {
            Ok(Ok(resp)) if resp.status().is_success() => {
                hook.sent.inc();
                tracing::debug!(webhook = %w.name, slo = %n.slo, "alert notification sent");
                return;
            }
            // A 4xx other than 408/429 will not succeed on retry.
            Ok(Ok(resp))
                if resp.status().is_client_error()
                    && !matches!(resp.status().as_u16(), 408 | 429) =>
            {
                hook.dropped.inc();
                tracing::error!(webhook = %w.name, status = resp.status().as_u16(), "webhook refused the notification");
                return;
            }
            Ok(Ok(resp)) => format!("status {}", resp.status().as_u16()),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => format!("no answer within {:?}", w.timeout),
        };
        if attempt == w.max_attempts {
            hook.dropped.inc();
            tracing::error!(webhook = %w.name, slo = %n.slo, attempts = attempt, error = %failure, "alert notification dropped after retries");
            return;
        }
        hook.retried.inc();
        tracing::warn!(webhook = %w.name, attempt, error = %failure, "webhook delivery failed; retrying");
        tokio::time::sleep(backoff.delay(attempt - 1, levee_core::ids::random_u64())).await;
    }
}

fn labels(n: &Notification) -> serde_json::Map<String, serde_json::Value> {
    let mut labels = serde_json::Map::new();
    // The names `levee slo rules` gives the same alerts.
    let alertname = match n.severity {
        AlertSeverity::Page => "LeveeSLOPageBurn",
        AlertSeverity::Ticket => "LeveeSLOTicketBurn",
    };
    labels.insert("alertname".into(), alertname.into());
    labels.insert("slo".into(), n.slo.clone().into());
    labels.insert("slo_name".into(), n.slo_name.clone().into());
    labels.insert("severity".into(), n.severity.name().into());
    for (k, v) in &n.labels {
        labels.insert(k.clone(), v.clone().into());
    }
    labels
}

/// Alertmanager's `POST /api/v2/alerts` body: one postable alert.
fn alertmanager_payload(n: &Notification) -> Vec<u8> {
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), n.summary.clone().into());
    annotations.insert("description".into(), n.description.clone().into());
    if let Some(r) = &n.runbook {
        annotations.insert("runbook_url".into(), r.clone().into());
    }
    if let Some(id) = n.incident {
        annotations.insert("incident".into(), id.to_string().into());
    }
    if let Some(from) = &n.escalated_from {
        annotations.insert("escalated_from".into(), from.clone().into());
    }
    let ends_at = match n.ends_at {
        Some(at) => at,
        None => crate::slo::unix_nanos() + AM_VALIDITY.as_nanos() as u64,
    };
    let alert = serde_json::json!([{
        "labels": labels(n),
        "annotations": annotations,
        "startsAt": rfc3339(n.starts_at),
        "endsAt": rfc3339(ends_at),
        "generatorURL": format!("/api/v1/slos#{}", n.slo),
    }]);
    serde_json::to_vec(&alert).unwrap_or_default()
}

/// Levee's own payload: the transition and the SLO's figures.
fn levee_payload(n: &Notification) -> Vec<u8> {
    let v = serde_json::json!({
        "status": if n.firing { "firing" } else { "resolved" },
        "severity": n.severity.name(),
        "slo": n.slo,
        "slo_name": n.slo_name,
        "labels": labels(n),
        "summary": n.summary,
        "description": n.description,
        "runbook_url": n.runbook,
        "starts_at": rfc3339(n.starts_at),
        "ends_at": n.ends_at.map(rfc3339),
        "incident": n.incident,
        "escalated_from": n.escalated_from,
        "slo_status": n.status,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}
