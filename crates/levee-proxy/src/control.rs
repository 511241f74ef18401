//! The data plane's side of its contract with the control plane (the
//! loops in `levee-control`): what a loop may read, what it may turn, and
//! how a reload hands a loop its configuration. ARCHITECTURE.md ("The
//! control-plane contract") states the rules; this module is the code.
//!
//! - **Read**: published state only: the SLO counters ([`crate::slo`]),
//!   the running config, cluster and listener status, capacity, the metric
//!   registry, all through [`crate::Gateway`]'s public methods. Nothing a
//!   loop reads takes a lock the request path takes.
//! - **Turn**: knobs ([`Knob`]), each a small published handle swapped
//!   atomically, read by the request path with one load. No loop turns
//!   one yet; rollouts (a route's traffic split) and experiments (the set
//!   of active faults) will hold theirs as `Knob`s next to the route.
//! - **Reload**: [`ControlPlane::commit`] runs in the commit phase of
//!   `Gateway::apply`, after every step that can fail, so a rejected reload
//!   changes no loop's configuration either. A knob a loop has turned
//!   keeps its value through a reload that leaves its configured value
//!   alone; a reload that changes it wins ([`Knob::reconcile`]).

use futures_util::future::BoxFuture;
use levee_config::Config;
use std::sync::Arc;

/// The control loops a gateway hands its configuration to and tells when
/// it has drained. Implemented by `levee-control`; a gateway without one
/// (embedded use, some tests) only counts.
pub trait ControlPlane: std::fmt::Debug + Send + Sync + 'static {
    /// Takes `config`, which a reload is committing: nothing can fail any
    /// more, and the listeners switch to it right after this returns.
    fn commit<'a>(&'a self, config: &'a Arc<Config>) -> BoxFuture<'a, ()>;

    /// The cluster that last served all of `route`, and the weights of
    /// its rollout to `configured` now: when it is not the configured
    /// cluster, the reload being built serves it as the stable version and
    /// the configured one as the canary, at these weights until the loop
    /// turns them (zero for a rollout about to begin). `None` serves the
    /// configured cluster alone. Asked while a reload builds, so it must
    /// not wait.
    fn rollout_base(
        &self,
        route: &str,
        configured: &str,
    ) -> Option<(String, crate::release::Weights)> {
        let _ = (route, configured);
        None
    }

    /// The data plane has drained (shutdown or handover): persist what a
    /// restart must not lose. Called once, after the last request.
    fn drained(&self) -> BoxFuture<'_, ()>;
}

/// One setting a control loop may turn, published for the request path
/// to read with one atomic load. The config gives its value; a loop may
/// turn it to another ([`Knob::turn`]) and give it back
/// ([`Knob::release`]). A reload ([`Knob::reconcile`]) keeps a turned
/// value while the configured value is unchanged, and otherwise lets the
/// new config win and drops the turn: the operator's latest word beats a
/// loop's earlier decision, and the loop sees the change in
/// [`Knob::generation`] and decides again from there.
#[derive(Debug)]
pub struct Knob<T> {
    effective: arc_swap::ArcSwap<T>,
    state: std::sync::Mutex<KnobState<T>>,
}

#[derive(Debug)]
struct KnobState<T> {
    configured: Arc<T>,
    /// Who turned it, while turned.
    turned_by: Option<&'static str>,
    /// Bumped whenever the config replaces a turned value.
    generation: u64,
}

impl<T: PartialEq> Knob<T> {
    /// A knob at its configured value.
    pub fn new(configured: T) -> Self {
        let configured = Arc::new(configured);
        Self {
            effective: arc_swap::ArcSwap::new(configured.clone()),
            state: std::sync::Mutex::new(KnobState {
                configured,
                turned_by: None,
                generation: 0,
            }),
        }
    }

    /// The value in force: what the request path reads.
    #[inline]
    pub fn get(&self) -> arc_swap::Guard<Arc<T>> {
        self.effective.load()
    }

    /// A loop (`by`) sets the value in force until it releases it or a
    /// reload changes the configured value. Refused (false) when `seen`,
    /// the generation the loop decided on, is no longer current.
    pub fn turn(&self, value: T, by: &'static str, seen: u64) -> bool {
        let mut state = self.lock();
        if state.generation != seen {
            return false;
        }
        state.turned_by = Some(by);
        self.effective.store(Arc::new(value));
        true
    }

    /// The loop gives the knob back to its configured value.
    pub fn release(&self) {
        let mut state = self.lock();
        state.turned_by = None;
        self.effective.store(state.configured.clone());
    }

    /// Takes the configured value of a committed reload (see the type's
    /// docs for what happens to a turned value).
    pub fn reconcile(&self, configured: T) {
        let mut state = self.lock();
        if *state.configured == configured {
            return;
        }
        state.configured = Arc::new(configured);
        if state.turned_by.take().is_some() {
            state.generation += 1;
        }
        self.effective.store(state.configured.clone());
    }

    /// Who turned the knob, if anyone has it now.
    pub fn turned_by(&self) -> Option<&'static str> {
        self.lock().turned_by
    }

    /// Changes each time a reload overrides a loop's turn.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KnobState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turned_knob_survives_a_reload_that_leaves_its_setting_alone() {
        let knob = Knob::new(10u32);
        assert!(knob.turn(50, "rollout", knob.generation()));
        knob.reconcile(10);
        assert_eq!(**knob.get(), 50);
        assert_eq!(knob.turned_by(), Some("rollout"));
        knob.release();
        assert_eq!(**knob.get(), 10);
        assert_eq!(knob.turned_by(), None);
    }

    #[test]
    fn a_reload_that_changes_the_setting_wins_and_the_loop_must_decide_again() {
        let knob = Knob::new(10u32);
        let seen = knob.generation();
        assert!(knob.turn(50, "rollout", seen));
        knob.reconcile(20);
        assert_eq!(**knob.get(), 20);
        assert_eq!(knob.turned_by(), None);
        assert!(!knob.turn(60, "rollout", seen), "decided on an old config");
        assert_eq!(**knob.get(), 20);
        assert!(knob.turn(60, "rollout", knob.generation()));
        assert_eq!(**knob.get(), 60);
    }

    #[test]
    fn an_untouched_knob_follows_the_config() {
        let knob = Knob::new(1u32);
        knob.reconcile(2);
        assert_eq!(**knob.get(), 2);
        assert_eq!(knob.generation(), 0);
    }
}
