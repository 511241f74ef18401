//! What operators do about an incident: acknowledge it, write notes, and
//! resolve it; the rules those follow and the log each incident keeps.
//! Plain data and decisions: the engine (`super::SloEngine::act`) checks
//! an action here, persists it, then applies it.
//!
//! The rules:
//! - **Acknowledge** once: a second acknowledgement is a conflict that
//!   names who acknowledged and when. An incident already resolved (by an
//!   operator, or because its alert resolved) cannot be acknowledged.
//! - **Notes** any time, also after resolution (for the review), up to
//!   [`MAX_NOTES`] per incident.
//! - **Resolve** once, acknowledged or not (resolving does not count as an
//!   acknowledgement for MTTA). An incident whose alert already resolved
//!   is resolved already. Resolving while the alert still fires closes the
//!   incident for operators and stops its escalations; the alert's own
//!   resolution is still recorded on it when it comes, and only a new
//!   firing opens a new incident.
//! - `by` is 1 to [`MAX_ACTOR_CHARS`] characters without control
//!   characters; a message is 1 to [`MAX_MESSAGE_CHARS`] characters after
//!   trimming (newlines and tabs allowed).

use levee_core::Nanos;
use levee_slo::calendar::rfc3339;
use levee_store::{IncidentActionRow, IncidentRow};
use serde::Serialize;

/// The most notes one incident keeps.
pub const MAX_NOTES: usize = 100;
/// The longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4_000;
/// The longest name in `by`, in characters.
pub const MAX_ACTOR_CHARS: usize = 100;

/// What an operator does about an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentAction {
    /// "I have it": stops escalation.
    Acknowledge {
        /// Who.
        by: String,
    },
    /// A line in the incident's log.
    Note {
        /// Who.
        by: String,
        /// What.
        message: String,
    },
    /// The incident is over for operators: stops escalation.
    Resolve {
        /// Who.
        by: String,
        /// Why, or what was done.
        message: Option<String>,
    },
}

impl IncidentAction {
    /// Its name in the store, the API path and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            IncidentAction::Acknowledge { .. } => "ack",
            IncidentAction::Note { .. } => "note",
            IncidentAction::Resolve { .. } => "resolve",
        }
    }

    fn by(&self) -> &str {
        match self {
            IncidentAction::Acknowledge { by }
            | IncidentAction::Note { by, .. }
            | IncidentAction::Resolve { by, .. } => by,
        }
    }

    fn message(&self) -> Option<&str> {
        match self {
            IncidentAction::Acknowledge { .. } => None,
            IncidentAction::Note { message, .. } => Some(message),
            IncidentAction::Resolve { message, .. } => message.as_deref(),
        }
    }

    /// The action with `by` and its message trimmed, or why it is not
    /// valid whatever the incident.
    pub fn validated(self) -> Result<Self, ActionError> {
        let by = self.by().trim();
        if by.is_empty() {
            return Err(ActionError::Invalid(
                "`by` is empty: say who is acting".into(),
            ));
        }
        if by.chars().count() > MAX_ACTOR_CHARS {
            return Err(ActionError::Invalid(format!(
                "`by` is longer than {MAX_ACTOR_CHARS} characters"
            )));
        }
        if by.chars().any(char::is_control) {
            return Err(ActionError::Invalid("`by` holds control characters".into()));
        }
        let message = match self.message().map(str::trim) {
            Some("") if matches!(self, IncidentAction::Note { .. }) => {
                return Err(ActionError::Invalid("the note is empty".into()));
            }
            Some("") | None => None,
            Some(m) if m.chars().count() > MAX_MESSAGE_CHARS => {
                return Err(ActionError::Invalid(format!(
                    "the message is longer than {MAX_MESSAGE_CHARS} characters"
                )));
            }
            Some(m) if m.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                return Err(ActionError::Invalid(
                    "the message holds control characters other than newlines and tabs".into(),
                ));
            }
            Some(m) => Some(m.to_string()),
        };
        let by = by.to_string();
        Ok(match self {
            IncidentAction::Acknowledge { .. } => IncidentAction::Acknowledge { by },
            IncidentAction::Note { .. } => IncidentAction::Note {
                by,
                message: message.unwrap_or_default(),
            },
            IncidentAction::Resolve { .. } => IncidentAction::Resolve { by, message },
        })
    }
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No incident with this id is kept.
    #[error("no incident {0}")]
    NotFound(u64),
    /// The action is malformed (an empty name, a message too long...).
    #[error("{0}")]
    Invalid(String),
    /// The incident's state does not allow it (already acknowledged,
    /// already resolved, too many notes).
    #[error("{0}")]
    Conflict(String),
    /// It could not be stored, so it was not taken.
    #[error("the action could not be stored: {0}")]
    Store(String),
}

/// Who did something and when, with what they said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorMark {
    /// Who.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// When, in nanoseconds since the UNIX epoch (not shown).
    #[serde(skip)]
    pub at_ns: Nanos,
    /// The note, or the resolution's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What operators did about one incident, in the order they did it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OperatorLog {
    pub(crate) acknowledged: Option<OperatorMark>,
    pub(crate) resolved: Option<OperatorMark>,
    pub(crate) notes: Vec<OperatorMark>,
    /// The place of the next action in the store.
    next_seq: u32,
    /// The places taken (at most the notes and two more), so a row read
    /// twice is taken once.
    taken: std::collections::BTreeSet<u32>,
}

impl OperatorLog {
    /// The row that records `action` (validated) on `incident` at `at`,
    /// or why the incident's state refuses it. Changes nothing.
    pub(crate) fn check(
        &self,
        incident: &IncidentRow,
        action: &IncidentAction,
        at: Nanos,
    ) -> Result<IncidentActionRow, ActionError> {
        let id = incident.id;
        let resolved = || match (&self.resolved, incident.resolve_ns) {
            (Some(r), _) => Some(format!(
                "incident {id} was resolved by {} at {}",
                r.by, r.at
            )),
            (None, Some(at)) => Some(format!(
                "incident {id} is resolved: its alert resolved at {}",
                rfc3339(at)
            )),
            (None, None) => None,
        };
        match action {
            IncidentAction::Acknowledge { .. } => {
                if let Some(a) = &self.acknowledged {
                    return Err(ActionError::Conflict(format!(
                        "incident {id} was acknowledged by {} at {}",
                        a.by, a.at
                    )));
                }
                if let Some(why) = resolved() {
                    return Err(ActionError::Conflict(why));
                }
            }
            IncidentAction::Note { .. } => {
                if self.notes.len() >= MAX_NOTES {
                    return Err(ActionError::Conflict(format!(
                        "incident {id} has {MAX_NOTES} notes, the most one keeps"
                    )));
                }
            }
            IncidentAction::Resolve { .. } => {
                if let Some(why) = resolved() {
                    return Err(ActionError::Conflict(why));
                }
            }
        }
        Ok(IncidentActionRow {
            incident_id: id,
            seq: self.next_seq,
            kind: action.kind().to_string(),
            actor: action.by().to_string(),
            at_ns: at,
            message: action.message().map(str::to_string),
        })
    }

    /// Takes a stored (or just checked) row into the log; rows of an
    /// unknown kind are skipped. False when the log had it already (a
    /// fleet's replicas read each other's actions, and their own, back).
    pub(crate) fn apply(&mut self, row: &IncidentActionRow) -> bool {
        if !self.taken.insert(row.seq) {
            return false;
        }
        let mark = OperatorMark {
            by: row.actor.clone(),
            at: rfc3339(row.at_ns),
            at_ns: row.at_ns,
            message: row.message.clone(),
        };
        match row.kind.as_str() {
            "ack" => {
                self.acknowledged.get_or_insert(mark);
            }
            "note" => self.notes.push(mark),
            "resolve" => {
                self.resolved.get_or_insert(mark);
            }
            other => {
                tracing::warn!(
                    incident = row.incident_id,
                    kind = other,
                    "unknown incident action in the store; skipped"
                );
            }
        }
        self.next_seq = self.next_seq.max(row.seq.saturating_add(1));
        true
    }

    /// When it was acknowledged.
    pub(crate) fn acknowledged_ns(&self) -> Option<Nanos> {
        self.acknowledged.as_ref().map(|m| m.at_ns)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_795_910_400 * S;

    fn incident(resolve_ns: Option<u64>) -> IncidentRow {
        IncidentRow {
            id: 4,
            slo: "x".into(),
            severity: "page".into(),
            start_ns: T0,
            start_clipped: false,
            detect_ns: T0 + 7 * S,
            recover_ns: None,
            resolve_ns,
            bad_events: 0,
            budget_spent_ppm: 0,
            runbook: None,
            labels: Vec::new(),
        }
    }

    pub(in crate::slo) fn ack(by: &str) -> IncidentAction {
        IncidentAction::Acknowledge { by: by.into() }
    }

    pub(in crate::slo) fn note(by: &str, message: &str) -> IncidentAction {
        IncidentAction::Note {
            by: by.into(),
            message: message.into(),
        }
    }

    pub(in crate::slo) fn resolve(by: &str, message: Option<&str>) -> IncidentAction {
        IncidentAction::Resolve {
            by: by.into(),
            message: message.map(str::to_string),
        }
    }

    /// Checks and applies, as the engine does once the row is stored.
    fn act(
        log: &mut OperatorLog,
        i: &IncidentRow,
        a: IncidentAction,
        at: u64,
    ) -> Result<IncidentActionRow, ActionError> {
        let row = log.check(i, &a.validated()?, at)?;
        log.apply(&row);
        Ok(row)
    }

    #[test]
    fn acknowledge_once_note_any_time_resolve_once() {
        let i = incident(None);
        let mut log = OperatorLog::default();
        let first = act(&mut log, &i, ack(" alice "), T0 + 60 * S).unwrap();
        assert_eq!(
            (first.seq, first.kind.as_str(), first.actor.as_str()),
            (0, "ack", "alice")
        );
        assert_eq!(log.acknowledged_ns(), Some(T0 + 60 * S));
        assert_eq!(
            act(&mut log, &i, ack("bob"), T0 + 61 * S),
            Err(ActionError::Conflict(
                "incident 4 was acknowledged by alice at 2026-11-29T00:01:00.000Z".into()
            ))
        );
        act(
            &mut log,
            &i,
            note("bob", "  rolled back checkout v42\n"),
            T0 + 90 * S,
        )
        .unwrap();
        let resolved = act(&mut log, &i, resolve("alice", None), T0 + 120 * S).unwrap();
        assert_eq!(
            (resolved.seq, resolved.message),
            (2, None),
            "the refused ack took no place"
        );
        assert!(matches!(
            act(&mut log, &i, resolve("bob", Some("again")), T0 + 121 * S),
            Err(ActionError::Conflict(m)) if m == "incident 4 was resolved by alice at 2026-11-29T00:02:00.000Z"
        ));
        // Notes go on after resolution, for the review.
        act(
            &mut log,
            &i,
            note("carol", "postmortem: PM-12"),
            T0 + 500 * S,
        )
        .unwrap();
        assert_eq!(log.notes.len(), 2);
        assert_eq!(
            log.notes[0].message.as_deref(),
            Some("rolled back checkout v42")
        );
    }

    #[test]
    fn an_incident_whose_alert_resolved_is_resolved_already() {
        let i = incident(Some(T0 + 300 * S));
        let mut log = OperatorLog::default();
        let why = "incident 4 is resolved: its alert resolved at 2026-11-29T00:05:00.000Z";
        assert_eq!(
            act(&mut log, &i, ack("alice"), T0),
            Err(ActionError::Conflict(why.into()))
        );
        assert_eq!(
            act(&mut log, &i, resolve("alice", Some("done")), T0),
            Err(ActionError::Conflict(why.into()))
        );
        assert!(act(&mut log, &i, note("alice", "noted"), T0).is_ok());
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let invalid = |a: IncidentAction| match a.validated() {
            Err(ActionError::Invalid(m)) => m,
            other => panic!("accepted: {other:?}"),
        };
        assert_eq!(invalid(ack("  ")), "`by` is empty: say who is acting");
        assert!(invalid(ack(&"x".repeat(MAX_ACTOR_CHARS + 1))).contains("longer than 100"));
        assert!(invalid(ack("al\u{7}ice")).contains("control characters"));
        assert_eq!(invalid(note("alice", " \n ")), "the note is empty");
        assert!(
            invalid(note("alice", &"é".repeat(MAX_MESSAGE_CHARS + 1))).contains("longer than 4000")
        );
        assert!(invalid(note("alice", "a\u{1b}[31m")).contains("control characters"));
        // The longest allowed, counted in characters; an empty resolution
        // message is no message.
        assert!(note("alice", &"é".repeat(MAX_MESSAGE_CHARS))
            .validated()
            .is_ok());
        assert_eq!(
            resolve("alice", Some("  ")).validated(),
            Ok(resolve("alice", None))
        );
    }

    #[test]
    fn a_row_read_twice_is_taken_once() {
        // A fleet's replicas read back the actions they shared.
        let i = incident(None);
        let mut log = OperatorLog::default();
        let row = log.check(&i, &note("bob", "looking"), T0).unwrap();
        assert!(log.apply(&row));
        assert!(!log.apply(&row), "the second reading changes nothing");
        assert_eq!(log.notes.len(), 1);
        assert_eq!(log.check(&i, &ack("bob"), T0).unwrap().seq, 1);
    }

    #[test]
    fn notes_are_bounded_and_a_restored_log_continues_its_numbering() {
        let i = incident(None);
        let mut log = OperatorLog::default();
        for k in 0..MAX_NOTES as u64 {
            act(&mut log, &i, note("bot", &format!("line {k}")), T0 + k).unwrap();
        }
        assert_eq!(
            act(&mut log, &i, note("bot", "one more"), T0),
            Err(ActionError::Conflict(
                "incident 4 has 100 notes, the most one keeps".into()
            ))
        );
        // Rebuilt from its rows (out of order on purpose), it numbers on.
        let mut rows: Vec<IncidentActionRow> = (0..3)
            .map(|seq| IncidentActionRow {
                incident_id: 4,
                seq,
                kind: ["note", "ack", "note"][seq as usize].into(),
                actor: "a".into(),
                at_ns: T0 + u64::from(seq),
                message: Some("m".into()),
            })
            .collect();
        rows.reverse();
        let mut restored = OperatorLog::default();
        for r in &rows {
            restored.apply(r);
        }
        assert_eq!(restored.notes.len(), 2);
        assert!(restored.acknowledged.is_some());
        let next = restored.check(&i, &resolve("a", None), T0).unwrap();
        assert_eq!(next.seq, 3);
    }
}
