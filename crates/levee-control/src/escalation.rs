//! Alert routing and escalation decisions, as a plain struct on passed-in
//! time: which webhooks an alert reaches directly (its severity and labels
//! against each webhook's `severities` and `match`/`match_re`), when an
//! unacknowledged page goes on to the next webhook of a chain
//! (`escalate_after`, `escalate_to`), and who hears that it resolved.
//! `notify` does the I/O around it.
//!
//! The rules:
//! - An alert reaches every webhook whose severities take it and whose
//!   matchers all match its labels, except `escalation_only` ones.
//! - A page (a firing page alert with its incident) is followed: each
//!   webhook it reaches with an `escalation` schedules the page for `to`
//!   at `after` past the time it reached that webhook. When that time
//!   comes and no operator acknowledged or resolved the incident, the page
//!   goes to `to` (whatever its own filters say: it was named), which may
//!   schedule the next step of its own chain. A webhook that has the page
//!   already is not sent it twice.
//! - An acknowledgement or an operator's resolution stops every escalation
//!   still to come for that incident.
//! - When the page alert resolves, the notice goes to every webhook that
//!   received the page, escalation targets included, and the page is
//!   forgotten.
//! - Alerts that are not followed pages (tickets, and pages this struct
//!   never saw, such as those sent before a restart) are routed directly.
//!
//! At most [`MAX_PAGES`] pages are followed; past that the oldest incident
//! is forgotten (its resolution is then routed directly).

use levee_config::{AlertSeverity, Webhook};
use levee_core::Nanos;
use std::collections::BTreeMap;

/// How many pages are followed at once.
pub(crate) const MAX_PAGES: usize = 1024;

/// The webhooks an alert of `severity` with `labels` reaches directly,
/// in config order.
pub(crate) fn direct<'w, 'l>(
    webhooks: &'w [Webhook],
    severity: AlertSeverity,
    labels: &'l [(String, String)],
) -> impl Iterator<Item = &'w Webhook> + use<'w, 'l> {
    webhooks.iter().filter(move |w| {
        !w.escalation_only
            && w.severities.contains(&severity)
            && w.matchers
                .iter()
                .all(|m| m.matches(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    })
}

/// One escalation still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    due: Nanos,
    from: String,
    to: String,
}

/// A page being followed.
#[derive(Debug, Clone)]
struct Page<T> {
    payload: T,
    /// The webhooks it reached, in the order it reached them.
    reached: Vec<String>,
    pending: Vec<Pending>,
}

/// A page escalated now: send `payload` to `to`, saying it came from
/// `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Escalated<T> {
    pub(crate) incident: u64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) payload: T,
}

/// The pages followed, by incident, with what each carries (`T`: the
/// notification to send again on escalation).
#[derive(Debug, Clone)]
pub(crate) struct Escalations<T> {
    pages: BTreeMap<u64, Page<T>>,
}

impl<T> Default for Escalations<T> {
    fn default() -> Self {
        Self {
            pages: BTreeMap::new(),
        }
    }
}

impl<T: Clone> Escalations<T> {
    /// A page for `incident` fired at `now`: the webhooks it goes to now
    /// (in config order), each chain's first step scheduled.
    pub(crate) fn page(
        &mut self,
        webhooks: &[Webhook],
        incident: u64,
        labels: &[(String, String)],
        payload: T,
        now: Nanos,
    ) -> Vec<String> {
        let mut page = Page {
            payload,
            reached: Vec::new(),
            pending: Vec::new(),
        };
        for w in direct(webhooks, AlertSeverity::Page, labels) {
            page.reach(w, now);
        }
        let reached = page.reached.clone();
        self.pages.insert(incident, page);
        while self.pages.len() > MAX_PAGES {
            self.pages.pop_first();
        }
        reached
    }

    /// An operator acknowledged or resolved `incident`: nothing more
    /// escalates. Whether it was being followed.
    pub(crate) fn stop(&mut self, incident: u64) -> bool {
        match self.pages.get_mut(&incident) {
            Some(page) => {
                page.pending.clear();
                true
            }
            None => false,
        }
    }

    /// The webhooks that received `incident`'s page, or `None` when it is
    /// not followed.
    pub(crate) fn reached(&self, incident: u64) -> Option<&[String]> {
        self.pages.get(&incident).map(|p| p.reached.as_slice())
    }

    /// The page of `incident` resolved: every webhook that received it,
    /// and it is forgotten. `None` when it was not followed.
    pub(crate) fn resolve(&mut self, incident: u64) -> Option<Vec<String>> {
        self.pages.remove(&incident).map(|p| p.reached)
    }

    /// When the next escalation is due, if any is.
    pub(crate) fn next_due(&self) -> Option<Nanos> {
        self.pages
            .values()
            .flat_map(|p| p.pending.iter().map(|e| e.due))
            .min()
    }

    /// The escalations due at `now`, oldest first, each chain's next step
    /// scheduled. A step whose webhook left the config is dropped.
    pub(crate) fn due(&mut self, webhooks: &[Webhook], now: Nanos) -> Vec<Escalated<T>> {
        let mut out: Vec<(Nanos, Escalated<T>)> = Vec::new();
        for (&incident, page) in &mut self.pages {
            // A step can make the next one due at once (a zero wait is
            // refused by the config, but a late tick can pass several).
            while let Some(i) = page.pending.iter().position(|e| e.due <= now) {
                let step = page.pending.remove(i);
                if page.reached.contains(&step.to) {
                    continue;
                }
                let Some(target) = webhooks.iter().find(|w| w.name == step.to) else {
                    continue;
                };
                page.reach(target, step.due);
                out.push((
                    step.due,
                    Escalated {
                        incident,
                        from: step.from,
                        to: step.to,
                        payload: page.payload.clone(),
                    },
                ));
            }
        }
        out.sort_by_key(|(due, e)| (*due, e.incident));
        out.into_iter().map(|(_, e)| e).collect()
    }
}

impl<T> Page<T> {
    /// The page reached `w` at `at`: remembered, and its escalation
    /// scheduled.
    fn reach(&mut self, w: &Webhook, at: Nanos) {
        if self.reached.contains(&w.name) {
            return;
        }
        self.reached.push(w.name.clone());
        if let Some(e) = &w.escalation {
            let after = u64::try_from(e.after.as_nanos()).unwrap_or(u64::MAX);
            self.pending.push(Pending {
                due: at.saturating_add(after),
                from: w.name.clone(),
                to: e.to.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_config::{Escalation, LabelMatcher, Secret, ValueMatch, WebhookFormat};
    use proptest::prelude::*;
    use std::time::Duration;

    const MIN: u64 = 60_000_000_000;

    fn hook(name: &str) -> Webhook {
        Webhook {
            name: name.into(),
            url: Secret::new(format!("http://127.0.0.1:9/{name}")),
            format: WebhookFormat::Levee,
            severities: vec![AlertSeverity::Page, AlertSeverity::Ticket],
            matchers: Vec::new(),
            escalation: None,
            escalation_only: false,
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 1,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
        }
    }

    fn escalating(mut w: Webhook, minutes: u64, to: &str) -> Webhook {
        w.escalation = Some(Escalation {
            after: Duration::from_secs(minutes * 60),
            to: to.into(),
        });
        w
    }

    fn only_escalations(mut w: Webhook) -> Webhook {
        w.escalation_only = true;
        w
    }

    fn matching(mut w: Webhook, label: &str, value: ValueMatch) -> Webhook {
        w.matchers.push(LabelMatcher {
            label: label.into(),
            value,
        });
        w
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// primary (payments pages) → secondary after 10 min → manager after
    /// 15 more; search pages go to their own webhook; tickets to chat.
    fn chain() -> Vec<Webhook> {
        let mut chat = hook("chat");
        chat.severities = vec![AlertSeverity::Ticket];
        vec![
            escalating(
                matching(
                    hook("primary"),
                    "team",
                    ValueMatch::Exact("payments".into()),
                ),
                10,
                "secondary",
            ),
            escalating(only_escalations(hook("secondary")), 15, "manager"),
            only_escalations(hook("manager")),
            matching(
                hook("search"),
                "team",
                ValueMatch::Regex(levee_config::Pattern::whole("search|discovery").unwrap()),
            ),
            chat,
        ]
    }

    #[test]
    fn alerts_route_by_severity_and_labels() {
        let hooks = chain();
        let names = |sev, l: &[(&str, &str)]| {
            direct(&hooks, sev, &labels(l))
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(AlertSeverity::Page, &[("team", "payments")]),
            ["primary"]
        );
        assert_eq!(
            names(AlertSeverity::Page, &[("team", "discovery")]),
            ["search"]
        );
        assert_eq!(
            names(AlertSeverity::Page, &[("team", "searching")]),
            [] as [&str; 0]
        );
        assert_eq!(
            names(AlertSeverity::Page, &[]),
            [] as [&str; 0],
            "absent is empty"
        );
        assert_eq!(
            names(AlertSeverity::Ticket, &[("team", "payments")]),
            ["primary", "chat"]
        );
    }

    #[test]
    fn an_unacknowledged_page_climbs_the_chain_and_everyone_hears_it_resolved() {
        let hooks = chain();
        let mut e = Escalations::default();
        let team = labels(&[("team", "payments")]);
        assert_eq!(e.page(&hooks, 7, &team, "page-7", MIN), ["primary"]);
        assert_eq!(e.next_due(), Some(11 * MIN));
        assert!(
            e.due(&hooks, 11 * MIN - 1).is_empty(),
            "not a nanosecond early"
        );
        assert_eq!(
            e.due(&hooks, 11 * MIN),
            [Escalated {
                incident: 7,
                from: "primary".into(),
                to: "secondary".into(),
                payload: "page-7"
            }]
        );
        // The next step counts from when the secondary got it.
        assert_eq!(e.next_due(), Some(26 * MIN));
        assert!(e.due(&hooks, 25 * MIN).is_empty());
        let late = e.due(&hooks, 40 * MIN);
        assert_eq!(late.len(), 1);
        assert_eq!(
            (late[0].from.as_str(), late[0].to.as_str()),
            ("secondary", "manager")
        );
        assert_eq!(e.next_due(), None, "the chain ends at the manager");
        assert_eq!(
            e.resolve(7),
            Some(vec!["primary".into(), "secondary".into(), "manager".into()])
        );
        assert_eq!(e.resolve(7), None, "forgotten");
    }

    #[test]
    fn an_acknowledgement_stops_what_is_still_to_come() {
        let hooks = chain();
        let mut e = Escalations::default();
        let team = labels(&[("team", "payments")]);
        e.page(&hooks, 1, &team, (), 0);
        e.page(&hooks, 2, &team, (), 0);
        assert_eq!(e.due(&hooks, 10 * MIN).len(), 2);
        assert!(e.stop(1));
        assert!(!e.stop(99), "an unknown incident");
        let next = e.due(&hooks, 25 * MIN);
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].incident, next[0].to.as_str()), (2, "manager"));
        // Incident 1's secondary was paged before the acknowledgement: it
        // hears the resolution too.
        assert_eq!(
            e.reached(1),
            Some(&["primary".to_string(), "secondary".to_string()][..])
        );
        assert_eq!(e.resolve(1).unwrap().len(), 2);
    }

    #[test]
    fn a_target_that_has_the_page_or_left_the_config_is_skipped() {
        // `b` takes the page directly and escalates to `c`; `a` escalates
        // to `b` (already paged) and the chain goes on from b's own step.
        let hooks = vec![
            escalating(hook("a"), 5, "b"),
            escalating(hook("b"), 10, "c"),
            only_escalations(hook("c")),
        ];
        let mut e = Escalations::default();
        assert_eq!(e.page(&hooks, 1, &[], (), 0), ["a", "b"]);
        assert!(e.due(&hooks, 5 * MIN).is_empty());
        let c = e.due(&hooks, 10 * MIN);
        assert_eq!((c[0].from.as_str(), c[0].to.as_str()), ("b", "c"));
        // A reload that removed `c`: its step is dropped.
        e.page(&hooks, 2, &[], (), 0);
        let without_c = &hooks[..2];
        assert!(e.due(without_c, 60 * MIN).is_empty());
        assert_eq!(e.next_due(), None);
    }

    #[test]
    fn the_oldest_pages_are_forgotten_past_the_bound() {
        let hooks = vec![hook("a")];
        let mut e = Escalations::default();
        for id in 0..MAX_PAGES as u64 + 3 {
            e.page(&hooks, id, &[], (), 0);
        }
        assert_eq!(e.reached(2), None);
        assert!(e.reached(3).is_some());
        assert_eq!(e.resolve(2), None);
    }

    /// One event of a random run.
    #[derive(Debug, Clone)]
    enum Event {
        Page(u64),
        Stop(u64),
        Resolve(u64),
        Advance(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..4).prop_map(Event::Page),
            (0u64..4).prop_map(Event::Stop),
            (0u64..4).prop_map(Event::Resolve),
            (0u64..40 * MIN).prop_map(Event::Advance),
        ]
    }

    proptest! {
        /// Against a naive model of the chain primary → secondary (10 min)
        /// → manager (15 min): each escalation is sent exactly when the
        /// model says, never after a stop, never twice, in time order, and
        /// a resolution names exactly the webhooks that were sent the page.
        #[test]
        fn escalations_follow_a_naive_model(events in prop::collection::vec(event(), 1..60)) {
            let hooks = chain();
            let team = labels(&[("team", "payments")]);
            let mut e: Escalations<u64> = Escalations::default();
            // Model: per incident, when it was paged, when it stopped, and
            // which webhooks it reached.
            let mut model: BTreeMap<u64, (u64, Option<u64>, Vec<String>)> = BTreeMap::new();
            let mut now = 0u64;
            let mut last_sent = 0u64;
            let steps = [(10 * MIN, "secondary"), (25 * MIN, "manager")];
            for ev in events {
                match ev {
                    Event::Page(id) => {
                        let to = e.page(&hooks, id, &team, id, now);
                        prop_assert_eq!(&to, &vec!["primary".to_string()]);
                        model.insert(id, (now, None, to));
                    }
                    Event::Stop(id) => {
                        prop_assert_eq!(e.stop(id), model.contains_key(&id));
                        if let Some(m) = model.get_mut(&id) {
                            m.1.get_or_insert(now);
                        }
                    }
                    Event::Resolve(id) => {
                        let reached = e.resolve(id);
                        prop_assert_eq!(reached, model.remove(&id).map(|m| m.2));
                    }
                    Event::Advance(by) => {
                        let target = now + by;
                        // Step through each due time, as the worker does.
                        while let Some(due) = e.next_due().filter(|&d| d <= target) {
                            prop_assert!(due >= now, "nothing is left overdue");
                            now = due;
                            for sent in e.due(&hooks, now) {
                                let (paged, stopped, reached) = model.get_mut(&sent.incident).unwrap();
                                let step = steps.iter().position(|(_, to)| *to == sent.to).unwrap();
                                prop_assert_eq!(*paged + steps[step].0, now, "on time");
                                prop_assert!(stopped.is_none(), "never after a stop");
                                prop_assert!(!reached.contains(&sent.to), "never twice");
                                prop_assert_eq!(reached.len(), step + 1, "in chain order");
                                prop_assert_eq!(sent.payload, sent.incident);
                                prop_assert!(now >= last_sent);
                                last_sent = now;
                                reached.push(sent.to);
                            }
                        }
                        now = target;
                    }
                }
                // Everything the model expects by now has been sent: each
                // step due by now, unless a stop came before it.
                for (paged, stopped, reached) in model.values() {
                    let expected = 1 + steps
                        .iter()
                        .filter(|(after, _)| {
                            paged + after <= now && stopped.is_none_or(|s| paged + after <= s)
                        })
                        .count();
                    prop_assert_eq!(reached.len(), expected);
                }
            }
        }
    }
}
