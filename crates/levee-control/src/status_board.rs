//! What operators tell customers on the status page: incidents they write
//! (investigating, identified, monitoring, resolved, each update with its
//! message and time) and scheduled maintenance (announced ahead, in
//! progress, completed or cancelled), optionally excluded from the error
//! budget.
//!
//! The rules live in [`Board`], a plain struct on passed-in time: what
//! may be posted, the state each post is in at a given moment, and which
//! windows of time are taken out of the budget. [`StatusBoard`] adds the
//! lock, the state store (every change is written before it is answered,
//! so a restart loses nothing) and the list of exclusion windows the SLO
//! engine reads on each tick.
//!
//! With a store the replicas of a fleet share (PostgreSQL), every replica
//! reads the posts again before each change and every few seconds
//! ([`StatusBoard::refresh`]), so a post written on one replica is on
//! every replica's status page and numbered after every post in the store.
//!
//! A post names **components**: SLOs by their `name`, or a tier (`core`,
//! `optional`). None means every service. The status page shows them by
//! their public names only.

use arc_swap::ArcSwap;
use levee_core::Nanos;
use levee_store::{StatusPostRow, Store};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, PoisonError};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest update message, in characters.
pub const MAX_MESSAGE: usize = 5_000;
/// Updates one post may carry.
pub const MAX_UPDATES: usize = 100;
/// Components one post may name.
pub const MAX_COMPONENTS: usize = 50;
/// Posts kept; the oldest settled ones leave first.
pub const MAX_POSTS: usize = 500;
/// Longest maintenance window.
pub const MAX_MAINTENANCE: Nanos = 7 * DAY;
/// How far ahead a maintenance may be announced.
pub const MAX_NOTICE: Nanos = 366 * DAY;
const DAY: Nanos = 86_400 * 1_000_000_000;

/// An incident's or a maintenance's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostKind {
    Incident,
    Maintenance,
}

/// How bad an incident is, as status aggregators read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

impl Impact {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "minor" => Self::Minor,
            "major" => Self::Major,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

/// The states of an incident, in Atlassian Statuspage's words.
pub const INCIDENT_STATES: [&str; 4] = ["investigating", "identified", "monitoring", "resolved"];
/// What an operator may post on a maintenance; `scheduled`, `in_progress`
/// and `completed` also follow from the clock.
pub const MAINTENANCE_STATES: [&str; 4] = ["in_progress", "verifying", "completed", "cancelled"];

/// One update of a post: its state from then on and what was said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub status: String,
    pub message: String,
    pub at_ns: Nanos,
}

/// A maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub starts_ns: Nanos,
    pub ends_ns: Nanos,
}

/// One post, as stored and as the operator API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: u64,
    pub kind: PostKind,
    pub title: String,
    pub impact: Impact,
    /// SLO names or tiers; empty means every service.
    pub components: Vec<String>,
    pub created_ns: Nanos,
    /// Oldest first; an incident has at least one.
    pub updates: Vec<Update>,
    /// Maintenance only.
    pub window: Option<Window>,
    /// Maintenance only: requests during the window do not count against
    /// the error budget of the components it names.
    #[serde(default)]
    pub exclude_from_budget: bool,
}

impl Post {
    /// The state at `now`: an incident's last update; a maintenance's last
    /// `completed`, `cancelled` or `verifying`, else `scheduled` before its
    /// window, `in_progress` during it and `completed` after it.
    pub fn state(&self, now: Nanos) -> &str {
        let last = self.updates.last().map(|u| u.status.as_str());
        match self.kind {
            PostKind::Incident => last.unwrap_or("investigating"),
            PostKind::Maintenance => {
                if let Some(s @ ("completed" | "cancelled")) = last {
                    return s;
                }
                let Some(w) = self.window else {
                    return "scheduled";
                };
                if now < w.starts_ns {
                    "scheduled"
                } else if now < w.ends_ns {
                    match last {
                        Some("verifying") => "verifying",
                        _ => "in_progress",
                    }
                } else {
                    "completed"
                }
            }
        }
    }

    /// Whether nothing more will happen to it at `now`.
    pub fn settled(&self, now: Nanos) -> bool {
        matches!(self.state(now), "resolved" | "completed" | "cancelled")
    }

    /// When it settled: the update that did it, or a maintenance's end.
    pub fn settled_ns(&self, now: Nanos) -> Option<Nanos> {
        if !self.settled(now) {
            return None;
        }
        let by_update = self
            .updates
            .iter()
            .rev()
            .find(|u| matches!(u.status.as_str(), "resolved" | "completed" | "cancelled"))
            .map(|u| u.at_ns);
        by_update.or(self.window.map(|w| w.ends_ns))
    }

    /// When it was last updated by an operator.
    pub fn updated_ns(&self) -> Nanos {
        self.updates.last().map_or(self.created_ns, |u| u.at_ns)
    }

    /// When its state last changed as of `now`: its last update, or the
    /// start or end of its window once the clock has passed them.
    pub fn changed_ns(&self, now: Nanos) -> Nanos {
        let mut at = self.updated_ns();
        if let Some(w) = self.window {
            for edge in [w.starts_ns, w.ends_ns] {
                if edge <= now {
                    at = at.max(edge);
                }
            }
        }
        if let Some(settled) = self.settled_ns(now) {
            at = at.min(settled.max(self.updated_ns()));
        }
        at
    }

    /// Whether it names `component` (an SLO name or a tier), or everything.
    pub fn covers(&self, slo: &str, tier: Option<&str>) -> bool {
        self.components.is_empty()
            || self
                .components
                .iter()
                .any(|c| c == slo || Some(c.as_str()) == tier)
    }
}

/// A span of time taken out of the error budget of some components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub starts_ns: Nanos,
    pub ends_ns: Nanos,
    /// SLO names or tiers; empty means every SLO.
    pub components: Vec<String>,
}

impl Exclusion {
    /// Whether events of `slo` (in `tier`, for the tier series) at `at`
    /// are left out.
    pub fn excludes(&self, at: Nanos, slo: &str, tier: Option<&str>) -> bool {
        (self.starts_ns..self.ends_ns).contains(&at)
            && (self.components.is_empty()
                || self
                    .components
                    .iter()
                    .any(|c| c == slo || Some(c.as_str()) == tier))
    }
}

/// A new incident, as the operator API reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub title: String,
    /// `none`, `minor` (the default), `major` or `critical`.
    #[serde(default)]
    pub impact: Option<String>,
    #[serde(default)]
    pub components: Vec<String>,
    /// The first state; `investigating` unless given.
    #[serde(default)]
    pub status: Option<String>,
    pub message: String,
}

/// A new maintenance, as the operator API reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMaintenance {
    pub title: String,
    #[serde(default)]
    pub components: Vec<String>,
    /// RFC 3339, e.g. `2026-12-10T02:00:00Z`.
    pub starts: String,
    pub ends: String,
    pub message: String,
    #[serde(default)]
    pub exclude_from_budget: bool,
}

/// An update to a post.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUpdate {
    pub status: String,
    pub message: String,
}

/// Why a post or update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    /// The request is malformed: the field and what is wrong.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no status page post {0}")]
    NotFound(u64),
    /// The post cannot take this update (already settled, full).
    #[error("{0}")]
    Conflict(String),
    /// The state store refused the write; nothing changed.
    #[error("the state store could not save the post")]
    Store,
}

fn invalid(field: &'static str, message: impl Into<String>) -> BoardError {
    BoardError::Invalid {
        field,
        message: message.into(),
    }
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, BoardError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("at most {max} characters")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(field, "control characters are not allowed"));
    }
    Ok(value.to_string())
}

/// The posts and the rules for changing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// By id, oldest first.
    posts: Vec<Post>,
    /// Ids are never reused, so a feed reader never confuses two posts.
    next_id: u64,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            posts: Vec::new(),
            next_id: 1,
        }
    }
}

impl Board {
    /// A board holding `posts` (from the store).
    pub fn from_posts(mut posts: Vec<Post>) -> Self {
        posts.sort_by_key(|p| p.id);
        let next_id = posts.last().map_or(1, |p| p.id + 1);
        Self { posts, next_id }
    }

    pub fn posts(&self) -> &[Post] {
        &self.posts
    }

    pub fn get(&self, id: u64) -> Option<&Post> {
        self.posts.iter().find(|p| p.id == id)
    }

    /// Checks that each component is one of `known` (SLO names and tiers).
    fn components(&self, given: &[String], known: &[&str]) -> Result<Vec<String>, BoardError> {
        if given.len() > MAX_COMPONENTS {
            return Err(invalid(
                "components",
                format!("at most {MAX_COMPONENTS} components"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(given.len());
        for c in given {
            if !known.contains(&c.as_str()) {
                return Err(invalid(
                    "components",
                    format!("`{c}` is neither an SLO name nor a tier (core, optional)"),
                ));
            }
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        Ok(out)
    }

    /// Opens an incident at `now`; `known` lists the valid components.
    /// Returns the new post's id; the board is unchanged on error.
    pub fn open_incident(
        &mut self,
        new: &NewIncident,
        known: &[&str],
        now: Nanos,
    ) -> Result<u64, BoardError> {
        let title = text("title", &new.title, MAX_TITLE)?;
        let message = text("message", &new.message, MAX_MESSAGE)?;
        let impact = match new.impact.as_deref() {
            None => Impact::Minor,
            Some(s) => Impact::parse(s)
                .ok_or_else(|| invalid("impact", "one of none, minor, major, critical"))?,
        };
        let status = new.status.as_deref().unwrap_or("investigating");
        if !INCIDENT_STATES.contains(&status) {
            return Err(invalid(
                "status",
                format!("one of {}", INCIDENT_STATES.join(", ")),
            ));
        }
        let components = self.components(&new.components, known)?;
        let id = self.next_id;
        self.push(Post {
            id,
            kind: PostKind::Incident,
            title,
            impact,
            components,
            created_ns: now,
            updates: vec![Update {
                status: status.to_string(),
                message,
                at_ns: now,
            }],
            window: None,
            exclude_from_budget: false,
        });
        Ok(id)
    }

    /// Announces a maintenance at `now`.
    pub fn schedule_maintenance(
        &mut self,
        new: &NewMaintenance,
        known: &[&str],
        now: Nanos,
    ) -> Result<u64, BoardError> {
        let title = text("title", &new.title, MAX_TITLE)?;
        let message = text("message", &new.message, MAX_MESSAGE)?;
        let time = |field: &'static str, s: &str| {
            levee_slo::calendar::parse_rfc3339(s).ok_or_else(|| {
                invalid(
                    field,
                    format!("`{s}` is not an RFC 3339 time like 2026-12-10T02:00:00Z"),
                )
            })
        };
        let starts_ns = time("starts", &new.starts)?;
        let ends_ns = time("ends", &new.ends)?;
        if ends_ns <= starts_ns {
            return Err(invalid("ends", "must be after starts"));
        }
        if ends_ns - starts_ns > MAX_MAINTENANCE {
            return Err(invalid("ends", "a maintenance lasts at most 7 days"));
        }
        if ends_ns <= now {
            return Err(invalid("ends", "the window is already over"));
        }
        if starts_ns > now.saturating_add(MAX_NOTICE) {
            return Err(invalid("starts", "at most a year ahead"));
        }
        let components = self.components(&new.components, known)?;
        let id = self.next_id;
        self.push(Post {
            id,
            kind: PostKind::Maintenance,
            title,
            impact: Impact::None,
            components,
            created_ns: now,
            updates: vec![Update {
                status: "scheduled".to_string(),
                message,
                at_ns: now,
            }],
            window: Some(Window { starts_ns, ends_ns }),
            exclude_from_budget: new.exclude_from_budget,
        });
        Ok(id)
    }

    /// Adds an update to post `id` at `now`.
    pub fn update(&mut self, id: u64, new: &NewUpdate, now: Nanos) -> Result<(), BoardError> {
        let message = text("message", &new.message, MAX_MESSAGE)?;
        let post = self
            .posts
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or(BoardError::NotFound(id))?;
        let allowed: &[&str] = match post.kind {
            PostKind::Incident => &INCIDENT_STATES,
            PostKind::Maintenance => &MAINTENANCE_STATES,
        };
        if !allowed.contains(&new.status.as_str()) {
            return Err(invalid(
                "status",
                format!("for this post, one of {}", allowed.join(", ")),
            ));
        }
        if post.settled(now) {
            return Err(BoardError::Conflict(format!(
                "post {id} is {} and takes no more updates",
                post.state(now)
            )));
        }
        if post.updates.len() >= MAX_UPDATES {
            return Err(BoardError::Conflict(format!(
                "post {id} has {MAX_UPDATES} updates, the most it may carry"
            )));
        }
        if post.kind == PostKind::Maintenance {
            let starts = post.window.map_or(0, |w| w.starts_ns);
            if matches!(new.status.as_str(), "in_progress" | "verifying") && now < starts {
                return Err(BoardError::Conflict(format!(
                    "maintenance {id} has not started yet (cancel it, or wait for its start)"
                )));
            }
        }
        post.updates.push(Update {
            status: new.status.clone(),
            message,
            at_ns: now,
        });
        Ok(())
    }

    fn push(&mut self, post: Post) {
        self.next_id = post.id + 1;
        self.posts.push(post);
    }

    /// Drops the oldest settled posts beyond [`MAX_POSTS`]; the ids dropped.
    pub fn trim(&mut self, now: Nanos) -> Vec<u64> {
        let mut removed = Vec::new();
        while self.posts.len() > MAX_POSTS {
            let Some(i) = self.posts.iter().position(|p| p.settled(now)) else {
                break;
            };
            removed.push(self.posts.remove(i).id);
        }
        removed
    }

    /// The windows taken out of the budget: maintenances with
    /// `exclude_from_budget`, from their start to their end, or to when
    /// they were completed; a cancelled one excludes nothing it did not
    /// already cover.
    pub fn exclusions(&self) -> Vec<Exclusion> {
        self.posts
            .iter()
            .filter(|p| p.kind == PostKind::Maintenance && p.exclude_from_budget)
            .filter_map(|p| {
                let w = p.window?;
                let cut = p
                    .updates
                    .iter()
                    .find(|u| matches!(u.status.as_str(), "completed" | "cancelled"))
                    .map(|u| u.at_ns);
                let ends_ns = cut.map_or(w.ends_ns, |c| c.min(w.ends_ns));
                (ends_ns > w.starts_ns).then(|| Exclusion {
                    starts_ns: w.starts_ns,
                    ends_ns,
                    components: p.components.clone(),
                })
            })
            .collect()
    }
}

/// The board behind a lock, written through to the state store, with the
/// exclusion windows published for the SLO engine.
pub struct StatusBoard {
    inner: Mutex<Inner>,
    exclusions: Arc<ArcSwap<Vec<Exclusion>>>,
    /// Other replicas write to the same store.
    shared: bool,
}

struct Inner {
    board: Board,
    store: Option<Box<dyn Store>>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    /// Loads the posts from `store` (none without a store); `shared`: other
    /// replicas write to it too. A post the store holds but this version
    /// cannot read is skipped and logged.
    pub fn open(mut store: Option<Box<dyn Store>>, shared: bool) -> Result<Self, String> {
        let board = match store.as_mut() {
            Some(s) => load_board(s.as_mut()).map_err(|e| e.to_string())?,
            None => Board::default(),
        };
        let exclusions = Arc::new(ArcSwap::from_pointee(board.exclusions()));
        Ok(Self {
            inner: Mutex::new(Inner { board, store }),
            exclusions,
            shared,
        })
    }

    /// Whether other replicas write to this board's store.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Reads the posts again from a shared store (what other replicas
    /// posted); nothing without one. Blocks on the store.
    pub fn refresh(&self) {
        if !self.shared {
            return;
        }
        let mut inner = self.lock();
        if let Err(e) = reload(&mut inner) {
            tracing::warn!(error = %e, "reading the status page posts again failed; keeping these");
            return;
        }
        self.exclusions.store(Arc::new(inner.board.exclusions()));
    }

    /// The exclusion windows, as the SLO engine reads them.
    pub fn exclusions(&self) -> Arc<ArcSwap<Vec<Exclusion>>> {
        self.exclusions.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of every post.
    pub fn posts(&self) -> Vec<Post> {
        self.lock().board.posts().to_vec()
    }

    /// Applies `change` to a copy of the board; when it succeeds, writes
    /// the posts it touched (and removes trimmed ones) before keeping the
    /// copy, so the store and the board never disagree.
    pub fn change(
        &self,
        now: Nanos,
        change: impl FnOnce(&mut Board) -> Result<u64, BoardError>,
    ) -> Result<Post, BoardError> {
        let mut inner = self.lock();
        if self.shared {
            // Another replica's posts first: this change applies to them,
            // and a new post is numbered after them.
            reload(&mut inner).map_err(|e| {
                tracing::error!(error = %e, "status page posts cannot be read; not changed");
                BoardError::Store
            })?;
        }
        let mut next = inner.board.clone();
        let id = change(&mut next)?;
        let removed = next.trim(now);
        let post = next.get(id).cloned().ok_or(BoardError::NotFound(id))?;
        if let Some(store) = inner.store.as_mut() {
            let doc = serde_json::to_string(&post).map_err(|_| BoardError::Store)?;
            let row = StatusPostRow {
                id,
                doc,
                updated_ns: post.updated_ns(),
            };
            if let Err(e) = store.write_status_posts(&[row], &removed) {
                tracing::error!(error = %e, "status page post not saved");
                return Err(BoardError::Store);
            }
        }
        self.exclusions.store(Arc::new(next.exclusions()));
        inner.board = next;
        Ok(post)
    }
}

/// How often a board on a shared store reads what other replicas posted.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a shared board's posts again every [`REFRESH_EVERY`] until the
/// gateway drains.
pub(crate) fn spawn_refresh(
    board: std::sync::Weak<StatusBoard>,
    mut drain: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = drain.changed() => return,
            }
            let Some(board) = board.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || board.refresh()).await;
        }
    });
}

/// The board the store holds.
fn load_board(store: &mut dyn Store) -> Result<Board, levee_store::StoreError> {
    let posts = store
        .load_status_posts()?
        .into_iter()
        .filter_map(|r| match serde_json::from_str::<Post>(&r.doc) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(id = r.id, error = %e, "unreadable status page post skipped");
                None
            }
        })
        .collect();
    Ok(Board::from_posts(posts))
}

/// Replaces the board with the store's; ids already used here stay used.
fn reload(inner: &mut Inner) -> Result<(), levee_store::StoreError> {
    let Some(store) = inner.store.as_mut() else {
        return Ok(());
    };
    let mut board = load_board(store.as_mut())?;
    board.next_id = board.next_id.max(inner.board.next_id);
    inner.board = board;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Nanos = 1_000_000_000;
    const T0: Nanos = 1_796_000_000 * S;
    const KNOWN: [&str; 4] = ["checkout", "search", "core", "optional"];

    fn incident(title: &str) -> NewIncident {
        NewIncident {
            title: title.into(),
            impact: None,
            components: vec!["checkout".into()],
            status: None,
            message: "We are looking into errors at checkout.".into(),
        }
    }

    fn maintenance(starts: Nanos, ends: Nanos, exclude: bool) -> NewMaintenance {
        NewMaintenance {
            title: "Database upgrade".into(),
            components: vec!["search".into()],
            starts: levee_slo::calendar::rfc3339(starts),
            ends: levee_slo::calendar::rfc3339(ends),
            message: "Search may be slow.".into(),
            exclude_from_budget: exclude,
        }
    }

    fn update(status: &str) -> NewUpdate {
        NewUpdate {
            status: status.into(),
            message: "More news.".into(),
        }
    }

    #[test]
    fn an_incident_goes_through_its_states_and_then_takes_no_more() {
        let mut b = Board::default();
        let id = b
            .open_incident(&incident("Checkout errors"), &KNOWN, T0)
            .unwrap();
        assert_eq!(id, 1);
        assert_eq!(b.get(id).unwrap().state(T0), "investigating");
        assert_eq!(b.get(id).unwrap().impact, Impact::Minor);
        for s in ["identified", "monitoring", "resolved"] {
            b.update(id, &update(s), T0 + 60 * S).unwrap();
        }
        let p = b.get(id).unwrap();
        assert_eq!(p.state(T0), "resolved");
        assert_eq!(p.settled_ns(T0), Some(T0 + 60 * S));
        assert!(matches!(
            b.update(id, &update("monitoring"), T0 + 120 * S),
            Err(BoardError::Conflict(_))
        ));
        assert_eq!(
            b.update(9, &update("resolved"), T0),
            Err(BoardError::NotFound(9))
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut b = Board::default();
        let field = |r: Result<u64, BoardError>| match r {
            Err(BoardError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(b.open_incident(&incident("  "), &KNOWN, T0)), "title");
        let mut i = incident("x");
        i.components = vec!["checkout-availability-v2".into()];
        assert_eq!(field(b.open_incident(&i, &KNOWN, T0)), "components");
        let mut i = incident("x");
        i.impact = Some("apocalyptic".into());
        assert_eq!(field(b.open_incident(&i, &KNOWN, T0)), "impact");
        let mut i = incident("x");
        i.message = "m".repeat(MAX_MESSAGE + 1);
        assert_eq!(field(b.open_incident(&i, &KNOWN, T0)), "message");
        let mut i = incident("x");
        i.status = Some("completed".into());
        assert_eq!(field(b.open_incident(&i, &KNOWN, T0)), "status");
        let mut m = maintenance(T0 + 3600 * S, T0, false);
        assert_eq!(field(b.schedule_maintenance(&m, &KNOWN, T0)), "ends");
        m.starts = "next tuesday".into();
        assert_eq!(field(b.schedule_maintenance(&m, &KNOWN, T0)), "starts");
        let m = maintenance(T0 - 7200 * S, T0 - 3600 * S, false);
        assert_eq!(field(b.schedule_maintenance(&m, &KNOWN, T0)), "ends");
        let m = maintenance(T0, T0 + 8 * DAY, false);
        assert_eq!(field(b.schedule_maintenance(&m, &KNOWN, T0)), "ends");
        assert!(b.posts().is_empty(), "nothing was kept");
    }

    #[test]
    fn a_maintenance_follows_the_clock_until_an_operator_settles_it() {
        let mut b = Board::default();
        let (start, end) = (T0 + 3600 * S, T0 + 7200 * S);
        let id = b
            .schedule_maintenance(&maintenance(start, end, true), &KNOWN, T0)
            .unwrap();
        let p = b.get(id).unwrap().clone();
        assert_eq!(p.state(T0), "scheduled");
        assert_eq!(p.state(start), "in_progress");
        assert_eq!(p.state(end), "completed");
        assert_eq!(p.settled_ns(end), Some(end));
        // Not before it starts.
        assert!(matches!(
            b.update(id, &update("in_progress"), T0),
            Err(BoardError::Conflict(_))
        ));
        b.update(id, &update("verifying"), start + 60 * S).unwrap();
        assert_eq!(b.get(id).unwrap().state(start + 61 * S), "verifying");
        b.update(id, &update("completed"), start + 600 * S).unwrap();
        assert_eq!(b.get(id).unwrap().state(start + 601 * S), "completed");
        // Finished early: the exclusion ends there.
        assert_eq!(
            b.exclusions(),
            vec![Exclusion {
                starts_ns: start,
                ends_ns: start + 600 * S,
                components: vec!["search".into()]
            }]
        );
    }

    #[test]
    fn only_maintenances_that_say_so_leave_the_budget() {
        let mut b = Board::default();
        let (start, end) = (T0 + 60 * S, T0 + 120 * S);
        b.schedule_maintenance(&maintenance(start, end, false), &KNOWN, T0)
            .unwrap();
        assert!(b.exclusions().is_empty());
        let id = b
            .schedule_maintenance(&maintenance(start, end, true), &KNOWN, T0)
            .unwrap();
        let x = &b.exclusions()[0];
        assert!(x.excludes(start, "search", None));
        assert!(!x.excludes(end, "search", None), "the end is outside");
        assert!(!x.excludes(start, "checkout", Some("core")));
        // Cancelled before it started: nothing is excluded.
        b.update(id, &update("cancelled"), T0 + 30 * S).unwrap();
        assert!(b.exclusions().is_empty());
    }

    #[test]
    fn a_board_rebuilt_from_its_posts_numbers_on() {
        let mut b = Board::default();
        b.open_incident(&incident("a"), &KNOWN, T0).unwrap();
        b.open_incident(&incident("b"), &KNOWN, T0).unwrap();
        let mut again = Board::from_posts(b.posts().iter().rev().cloned().collect());
        assert_eq!(again, b);
        assert_eq!(again.open_incident(&incident("c"), &KNOWN, T0).unwrap(), 3);
    }

    #[test]
    fn the_oldest_settled_posts_are_trimmed_first() {
        let mut b = Board::default();
        let open = b
            .open_incident(&incident("still open"), &KNOWN, T0)
            .unwrap();
        for _ in 0..MAX_POSTS {
            let id = b.open_incident(&incident("x"), &KNOWN, T0).unwrap();
            b.update(id, &update("resolved"), T0).unwrap();
        }
        let removed = b.trim(T0);
        assert_eq!(removed, vec![2]);
        assert!(b.get(open).is_some());
        assert_eq!(b.posts().len(), MAX_POSTS);
    }

    #[test]
    fn the_status_board_writes_through_and_reloads() {
        let dir = std::env::temp_dir().join(format!("levee-board-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("levee.db");
        let open = || {
            let store = levee_store::SqliteStore::open(&path).unwrap();
            StatusBoard::open(Some(Box::new(store)), false).unwrap()
        };
        let board = open();
        let post = board
            .change(T0, |b| {
                b.open_incident(&incident("Checkout errors"), &KNOWN, T0)
            })
            .unwrap();
        let (start, end) = (T0 + 60 * S, T0 + 120 * S);
        board
            .change(T0, |b| {
                b.schedule_maintenance(&maintenance(start, end, true), &KNOWN, T0)
            })
            .unwrap();
        assert_eq!(board.exclusions().load().len(), 1);
        let refused = board.change(T0, |b| b.update(post.id, &update("done"), T0).map(|()| 0));
        assert!(matches!(refused, Err(BoardError::Invalid { .. })));
        drop(board);
        let again = open();
        assert_eq!(again.posts().len(), 2);
        assert_eq!(again.posts()[0].title, "Checkout errors");
        assert_eq!(again.exclusions().load().len(), 1, "exclusions survive");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Whatever updates an operator throws at a post, its state is one
        /// of its kind's, a settled post stays settled, and no update is
        /// kept that was refused.
        #[test]
        fn states_stay_within_their_kind(
            statuses in proptest::collection::vec(0usize..8, 0..20),
            maintenance_kind in any::<bool>(),
        ) {
            const ALL: [&str; 8] = ["investigating", "identified", "monitoring", "resolved",
                "in_progress", "verifying", "completed", "cancelled"];
            let mut b = Board::default();
            let id = if maintenance_kind {
                b.schedule_maintenance(&maintenance(T0, T0 + 3600 * S, true), &KNOWN, T0).unwrap()
            } else {
                b.open_incident(&incident("x"), &KNOWN, T0).unwrap()
            };
            let mut settled = false;
            for (k, s) in statuses.into_iter().enumerate() {
                let now = T0 + k as u64 * S;
                let before = b.get(id).unwrap().updates.len();
                let r = b.update(id, &update(ALL[s]), now);
                let p = b.get(id).unwrap();
                prop_assert_eq!(p.updates.len(), before + usize::from(r.is_ok()));
                if settled { prop_assert!(r.is_err()); }
                settled = p.settled(now);
                let states: &[&str] = if maintenance_kind {
                    &["scheduled", "in_progress", "verifying", "completed", "cancelled"]
                } else {
                    &INCIDENT_STATES
                };
                prop_assert!(states.contains(&p.state(now)));
            }
        }
    }
}
