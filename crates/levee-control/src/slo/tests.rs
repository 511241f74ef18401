use super::*;
use levee_proxy::slo::tier_series_id;
use levee_slo::calendar;

const S: u64 = 1_000_000_000;
/// 2026-11-29T00:00:00Z, a bucket boundary.
const T0: u64 = 1_795_910_400 * S;

const ONE_RULE: &str = r#"[{ long = "60s", short = "10s", factor = 10 }]"#;

fn config() -> Arc<Config> {
    config_with(ONE_RULE)
}

/// A listener, route `r` and cluster `c`, for the SLOs of each test.
const ROUTE: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:9"]
"#;

/// Loads ROUTE plus `slos`.
fn load(slos: &str) -> Arc<Config> {
    let src = format!("{ROUTE}{slos}");
    Arc::new(levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap())
}

fn config_with(page_rules: &str) -> Arc<Config> {
    let src = r#"
[[slos]]
name = "x"
sli = "availability"
route = "r"
objective = "99%"
period = "1h"
runbook = "https://runbooks.example.com/x"
alerting = { min_events = 0, page = PAGE_RULES, ticket = [] }
[alerting]
evaluate_every = "1s"
bucket = "1s"
"#
    .replace("PAGE_RULES", page_rules);
    load(&src)
}

fn temp_db() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-engine-{}", levee_core::ids::request_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state.db")
}

async fn engine(db: &std::path::Path) -> SloEngine {
    engine_with(db, config()).await
}

async fn engine_with(db: &std::path::Path, config: Arc<Config>) -> SloEngine {
    let store = levee_store::SqliteStore::open(db).unwrap();
    let engine = SloEngine::new(
        Some(Box::new(store)),
        Arc::default(),
        config.clone(),
        Arc::new(Registry::new()),
        false,
    )
    .unwrap();
    engine.configure(config).await;
    engine
}

/// Second `k` of the run: `good` and `bad` events, then the tick just
/// after the second ends (as the loop does).
async fn second(engine: &SloEngine, k: u64, good: u32, bad: u32) {
    let counter = engine.counters.get("x");
    (0..good).for_each(|_| counter.record(true));
    (0..bad).for_each(|_| counter.record(false));
    engine.tick(T0 + (k + 1) * S + 5_000_000).await;
}

fn incident(engine: &SloEngine) -> Option<IncidentStatus> {
    engine.report().incidents.first().cloned()
}

/// Through the wiring, in virtual time: a step to 100 % errors pages
/// when the workbook formula says, t = β / e · W · f = 0.01 / 1 · 60 s
/// · 10 = 6 s, at the first bucket end strictly after it (7 s); the
/// incident starts at the step and recovers at the step back; a new
/// engine on the same store reports the same history.
#[tokio::test]
async fn pages_on_time_traces_the_incident_and_restores_from_the_store() {
    let db = temp_db();
    let e = engine(&db).await;
    for k in 0..120 {
        second(&e, k, 10, 0).await;
    }
    assert!(incident(&e).is_none());
    let step = 120;
    let mut fired_at = None;
    for k in step..step + 30 {
        second(&e, k, 0, 10).await;
        if fired_at.is_none() && incident(&e).is_some() {
            fired_at = Some(k + 1 - step);
        }
    }
    assert_eq!(fired_at, Some(7), "fires 7 s after the step");
    let i = incident(&e).unwrap();
    assert_eq!(i.start, calendar::rfc3339(T0 + step * S));
    assert_eq!(i.detect, calendar::rfc3339(T0 + (step + 7) * S));
    assert_eq!(i.state, "open");
    assert_eq!(i.runbook.as_deref(), Some("https://runbooks.example.com/x"));
    let back = step + 30;
    for k in back..back + 90 {
        second(&e, k, 10, 0).await;
    }
    let i = incident(&e).unwrap();
    assert_eq!(i.state, "closed", "{i:?}");
    assert_eq!(i.recover, Some(calendar::rfc3339(T0 + back * S)));
    assert_eq!(i.bad_events, 300);
    let report = e.report();
    let slo = &report.slos[0];
    assert_eq!((slo.events, slo.bad_events), (2400, 300));
    // 300 bad of 2,400 against a 1 % budget: 300 / 24 = 12.5 budgets
    // spent, so 1 − 12.5 = −11.5 left.
    assert_eq!(slo.budget.remaining_ratio, Some(-11.5));
    assert_eq!(report.mttd.as_ref().unwrap().median_seconds, 7.0);
    assert_eq!(report.mttr.as_ref().unwrap().median_seconds, 30.0);
    drop(e);

    let again = engine(&db).await;
    again.tick(T0 + (back + 90) * S + 5_000_000).await;
    let restored = again.report();
    assert_eq!(
        (restored.slos[0].events, restored.slos[0].bad_events),
        (2400, 300)
    );
    assert_eq!(restored.incidents.len(), 1);
    let r = &restored.incidents[0];
    assert_eq!(
        (&r.start, &r.detect, &r.recover, &r.resolve),
        (&i.start, &i.detect, &i.recover, &i.resolve)
    );
    assert_eq!(restored.slos[0].alerts[0].state, "resolved");
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// With a second, slower page rule the incident recovers (its 10 s
/// excursion window is clean) well before the alert resolves (the
/// 60 s rule still burns); the resolution is persisted all the same,
/// and removing the SLO from the config resolves a firing alert.
#[tokio::test]
async fn a_resolution_after_recovery_is_persisted_and_removal_resolves() {
    let two_rules = r#"[{ long = "60s", short = "10s", factor = 10 }, { long = "300s", short = "60s", factor = 2 }]"#;
    let db = temp_db();
    let e = engine_with(&db, config_with(two_rules)).await;
    for k in 0..300 {
        second(&e, k, 10, 0).await;
    }
    for k in 300..330 {
        second(&e, k, 0, 10).await;
    }
    let mut recovered_first = false;
    for k in 330..460 {
        second(&e, k, 10, 0).await;
        let i = incident(&e).unwrap();
        if i.state == "recovered" {
            recovered_first = true;
        }
    }
    assert!(
        recovered_first,
        "the incident recovered before the alert resolved"
    );
    let i = incident(&e).unwrap();
    assert_eq!(i.state, "closed", "{i:?}");
    drop(e);
    let again = engine_with(&db, config_with(two_rules)).await;
    again.tick(T0 + 461 * S + 5_000_000).await;
    let r = incident(&again).unwrap();
    assert_eq!(
        (r.state, &r.resolve, &r.recover),
        ("closed", &i.resolve, &i.recover)
    );

    // Fire again, then drop the SLO from the config.
    for k in 461..480 {
        second(&again, k, 0, 10).await;
    }
    assert_eq!(again.report().slos[0].alerts[0].state, "firing");
    let mut without = (*config_with(two_rules)).clone();
    without.slos.clear();
    again.configure(Arc::new(without)).await;
    again.tick(T0 + 481 * S + 5_000_000).await;
    let newest = incident(&again).unwrap();
    assert_eq!(newest.state, "closed", "{newest:?}");
    assert!(again.report().slos.is_empty());
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// Second `k` of the core tier's traffic, then the tick after it.
async fn tier_second(engine: &SloEngine, k: u64, good: u32, bad: u32) {
    let counter = engine.counters.get(tier_series_id(Tier::Core));
    (0..good).for_each(|_| counter.record(true));
    (0..bad).for_each(|_| counter.record(false));
    engine.tick(T0 + (k + 1) * S + 5_000_000).await;
}

fn core_tier(engine: &SloEngine) -> TierStatus {
    engine
        .report()
        .tiers
        .iter()
        .find(|t| t.tier == "core")
        .cloned()
        .unwrap()
}

/// An engine with no store, configured with [`config`].
async fn memory_engine() -> SloEngine {
    let engine = SloEngine::new(
        None,
        Arc::default(),
        config(),
        Arc::new(Registry::new()),
        false,
    )
    .unwrap();
    engine.configure(config()).await;
    engine
}

/// In virtual time: a tier's uptime needs 100 requests spread over
/// 5 minutes; before that it has no data, unless most requests fail
/// (an outage shows at once).
#[tokio::test]
async fn a_tier_has_no_data_until_enough_requests_over_enough_time() {
    let e = memory_engine().await;
    for k in 0..60 {
        tier_second(&e, k, 10, 0).await;
    }
    let t = core_tier(&e);
    assert_eq!((t.events, t.no_data, t.status), (600, true, "no_data"));
    assert_eq!(t.observed_seconds, 60.0);
    for k in 60..299 {
        tier_second(&e, k, 10, 0).await;
    }
    assert!(core_tier(&e).no_data, "{:?}", core_tier(&e));
    tier_second(&e, 299, 10, 0).await;
    let t = core_tier(&e);
    assert_eq!((t.no_data, t.status), (false, "operational"), "{t:?}");
    assert_eq!(t.observed_seconds, 300.0);

    // Few requests over a long time: still no data.
    let sparse = memory_engine().await;
    for k in 0..600 {
        tier_second(&sparse, k, u32::from(k % 10 == 0), 0).await;
    }
    let t = core_tier(&sparse);
    assert_eq!((t.events, t.no_data, t.status), (60, true, "no_data"));

    // Failing from the start: an outage, data or not.
    let failing = memory_engine().await;
    for k in 0..20 {
        tier_second(&failing, k, 1, 9).await;
    }
    let t = core_tier(&failing);
    assert_eq!((t.no_data, t.status), (true, "outage"));
}

/// Two time-slice SLOs on one route, 10 s slices on 1 s buckets: `x`
/// judges each slice against 90 % good events (an objective of 90 % of
/// slices, one page rule 60 s / 20 s at factor 2); `y` averages the
/// slices' ratios.
fn sliced_config() -> Arc<Config> {
    let src = r#"
[[slos]]
name = "x"
sli = "availability"
route = "r"
objective = "90%"
period = "1h"
budgeting = "timeslices"
timeslice = "10s"
timeslice_target = "90%"
alerting = { page = [{ long = "60s", short = "20s", factor = 2 }], ticket = [] }
[[slos]]
name = "y"
sli = "availability"
route = "r"
objective = "90%"
period = "1h"
budgeting = "ratio_timeslices"
timeslice = "10s"
alerting = { page = [{ long = "60s", short = "20s", factor = 2 }], ticket = [] }
[alerting]
evaluate_every = "1s"
bucket = "1s"
"#;
    load(src)
}

/// The naive model of a time-slice SLO: the per-second events kept whole,
/// slices recounted from them at every tick.
struct NaiveSlices {
    /// (good, total) per second since T0.
    seconds: Vec<(u64, u64)>,
}

impl NaiveSlices {
    const WIDTH: u64 = 10;

    /// The slices that ended by second `now` and started at or after
    /// `now − window` (seconds since T0), as (good, total) events each.
    fn slices(&self, now: u64, window: u64) -> Vec<(u64, u64)> {
        (0..now / Self::WIDTH)
            .map(|j| j * Self::WIDTH)
            .filter(|&start| start + window >= now)
            .map(|start| {
                self.seconds[start as usize..(start + Self::WIDTH) as usize]
                    .iter()
                    .fold((0, 0), |a, s| (a.0 + s.0, a.1 + s.1))
            })
            .filter(|&(_, total)| total > 0)
            .collect()
    }

    /// (judged, bad) slices against a 90 % slice target.
    fn judged(&self, now: u64, window: u64) -> (u64, u64) {
        let s = self.slices(now, window);
        let bad = s.iter().filter(|(g, t)| g * 10 < t * 9).count() as u64;
        (s.len() as u64, bad)
    }

    /// The 60 s / 20 s rule at factor 2 with a 10 % budget: both windows
    /// hold a judged slice and a bad share strictly above 20 %.
    fn pages(&self, now: u64) -> bool {
        [60, 20].iter().all(|&w| {
            let (judged, bad) = self.judged(now, w);
            judged > 0 && bad * 5 > judged
        })
    }

    /// The same rule for the averaged SLO: the slices' mean shortfall is
    /// strictly above 20 % in both windows.
    fn ratio_pages(&self, now: u64) -> bool {
        [60, 20].iter().all(|&w| {
            let (sum, n) = self.ratios(now, w);
            n > 0 && (n * 1_000_000 - sum) * 5 > n * 1_000_000
        })
    }

    /// Sum of the slices' floored ppm ratios, and their count.
    fn ratios(&self, now: u64, window: u64) -> (u64, u64) {
        let s = self.slices(now, window);
        (
            s.iter().map(|(g, t)| g * 1_000_000 / t).sum(),
            s.len() as u64,
        )
    }
}

/// Proof of time-slice budgeting through the engine, on virtual time: a
/// stream of per-second events (quiet seconds, whole quiet slices, noise
/// under and over the slice target, a clean minute, then an outage) is replayed tick by
/// tick, and at every tick the slices judged and bad, the SLI, the budget
/// left and the page alert's state equal the naive model's. The page
/// fires when the multiwindow formula says: after a step to all-bad
/// slices, the long window's bad share passes 20 % at
/// t = (β / e) · W · f = 0.1 / 1 · 60 s · 2 = 12 s, so at the end of the
/// first slice after it (20 s). A new engine on the same store reports the
/// same slices.
#[tokio::test]
async fn time_slices_replay_against_a_naive_model() {
    let db = temp_db();
    let e = engine_with(&db, sliced_config()).await;
    let mut naive = NaiveSlices {
        seconds: Vec::new(),
    };
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let step = 600;
    let (mut fired_at, mut y_fired_at) = (None, None);
    for k in 0..step + 120 {
        let (good, bad) = if k >= step && k < step + 60 {
            (1, 9) // the outage: every slice bad
        } else if (step - 60..step).contains(&k) {
            (10, 0) // a clean minute before it, as the formula assumes
        } else if (200..220).contains(&k) || next(5) == 0 {
            (0, 0) // quiet seconds, and two whole quiet slices
        } else {
            let total = 1 + next(20);
            let bad = if next(8) == 0 { next(total + 1) } else { 0 };
            (total - bad, bad)
        };
        naive.seconds.push((good, good + bad));
        for id in ["x", "y"] {
            let counter = e.counters.get(id);
            (0..good).for_each(|_| counter.record(true));
            (0..bad).for_each(|_| counter.record(false));
        }
        e.tick(T0 + (k + 1) * S + 5_000_000).await;

        let now = k + 1;
        let report = e.report();
        let x = report.slos.iter().find(|s| s.id == "x").unwrap();
        let (judged, bad_slices) = naive.judged(now, 3600);
        assert_eq!(x.budgeting, "timeslices");
        assert_eq!(
            (x.slices, x.bad_slices),
            (Some(judged), Some(bad_slices)),
            "at {now} s"
        );
        if judged > 0 {
            assert_eq!(
                x.sli_value,
                Some((judged - bad_slices) as f64 / judged as f64)
            );
            // 1 − B / (β · N), floored to the millionth.
            let ppm = (judged as i64 * 100_000 - bad_slices as i64 * 1_000_000) * 1_000_000;
            let ppm = ppm.div_euclid(judged as i64 * 100_000);
            assert_eq!(
                x.budget.remaining_ratio,
                Some(ppm as f64 / 1e6),
                "at {now} s"
            );
        }
        let firing = x.alerts[0].state == "firing";
        assert_eq!(firing, naive.pages(now), "page state at {now} s");
        if firing && fired_at.is_none() && now > step {
            fired_at = Some(now - step);
        }
        let y = report.slos.iter().find(|s| s.id == "y").unwrap();
        let (sum, n) = naive.ratios(now, 3600);
        assert_eq!(y.slices, Some(n), "at {now} s");
        assert_eq!(y.bad_slices, Some((n * 1_000_000 - sum) / 1_000_000));
        if n > 0 {
            assert_eq!(y.sli_value, Some(sum as f64 / (n * 1_000_000) as f64));
        }
        let y_firing = y.alerts[0].state == "firing";
        assert_eq!(y_firing, naive.ratio_pages(now), "averaged page at {now} s");
        if y_firing && y_fired_at.is_none() && now > step {
            y_fired_at = Some(now - step);
        }
    }
    assert_eq!(
        fired_at,
        Some(20),
        "pages at the end of the second bad slice"
    );
    let report = e.report();
    let x = report.slos.iter().find(|s| s.id == "x").unwrap();
    assert_eq!(x.timeslice.as_deref(), Some("10s"));
    assert_eq!(x.timeslice_target, Some(0.9));
    // 10 % of the hour's 360 slices.
    assert_eq!(x.allowed_bad_slices, Some(36));
    let (slices, bad) = (x.slices, x.bad_slices);
    assert!(bad > Some(6), "the outage's six slices, and the noise's");
    assert_eq!(incident(&e).map(|i| i.slo), Some("x".to_string()));
    drop(e);

    let again = engine_with(&db, sliced_config()).await;
    again.tick(T0 + (step + 120) * S + 5_000_000).await;
    let restored = again.report();
    let x = restored.slos.iter().find(|s| s.id == "x").unwrap();
    assert_eq!(
        (x.slices, x.bad_slices),
        (slices, bad),
        "restored from the store"
    );
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

use super::actions::tests::{ack, note, resolve};

/// Through the engine, in virtual time: an operator acknowledges a page
/// 3 s after it fired, writes a note and resolves it while the alert
/// still fires; the incident is resolved for operators, the same firing
/// opens nothing new, the alert's own resolution is recorded on it when
/// it comes, and the next firing opens a new incident. MTTA is 60 s. A
/// new engine on the same store shows every action, and numbers the next
/// one after them.
#[tokio::test]
async fn operators_actions_are_kept_across_a_restart_and_give_mtta() {
    let db = temp_db();
    let e = engine(&db).await;
    for k in 0..120 {
        second(&e, k, 10, 0).await;
    }
    for k in 120..127 {
        second(&e, k, 0, 10).await;
    }
    let fired = incident(&e).expect("paged 7 s after the step");
    assert_eq!((fired.id, fired.workflow), (1, "triggered"));
    assert!(e.report().mtta.is_none());
    let detect = T0 + 127 * S;

    assert_eq!(
        e.act(9, ack("alice"), detect).await.unwrap_err(),
        ActionError::NotFound(9)
    );
    let acked = e.act(1, ack("alice"), detect + 3 * S).await.unwrap();
    assert_eq!(acked.workflow, "acknowledged");
    assert_eq!(acked.time_to_acknowledge_seconds, Some(3.0));
    assert_eq!(
        e.act(1, ack("bob"), detect + 4 * S).await.unwrap_err(),
        ActionError::Conflict(format!(
            "incident 1 was acknowledged by alice at {}",
            calendar::rfc3339(detect + 3 * S)
        ))
    );
    e.act(1, note("bob", "checkout v42 rolled back"), detect + 5 * S)
        .await
        .unwrap();
    // Still failing: the alert fires on while the operator resolves.
    for k in 127..140 {
        second(&e, k, 0, 10).await;
    }
    assert_eq!(e.report().slos[0].alerts[0].state, "firing");
    let resolved = e
        .act(1, resolve("alice", Some("fixed upstream")), detect + 12 * S)
        .await
        .unwrap();
    assert_eq!(resolved.workflow, "resolved");
    assert_eq!(resolved.resolve, None, "the alert itself still fires");
    assert!(matches!(
        e.act(1, resolve("bob", None), detect + 12 * S).await,
        Err(ActionError::Conflict(_))
    ));
    // The published report has it at once, without a tick.
    let shown = incident(&e).unwrap();
    assert_eq!(shown.resolved_by.as_ref().unwrap().by, "alice");
    assert_eq!(
        shown.resolved_by.as_ref().unwrap().message.as_deref(),
        Some("fixed upstream")
    );
    let mtta = e.report().mtta.clone().unwrap();
    assert_eq!(
        (mtta.count, mtta.median_seconds, mtta.mean_seconds),
        (1, 3.0, 3.0)
    );

    // Healthy again: the alert resolves, onto the same incident.
    for k in 140..240 {
        second(&e, k, 10, 0).await;
    }
    let report = e.report();
    assert_eq!(report.incidents.len(), 1, "no new incident while it fired");
    assert!(report.incidents[0].resolve.is_some());
    assert_eq!(report.incidents[0].state, "closed");
    // A new firing opens a new incident.
    for k in 240..250 {
        second(&e, k, 0, 10).await;
    }
    let newest = incident(&e).unwrap();
    assert_eq!((newest.id, newest.workflow), (2, "triggered"));
    drop(e);

    let again = engine(&db).await;
    again.tick(T0 + 251 * S).await;
    let report = again.report();
    let first = report.incidents.iter().find(|i| i.id == 1).unwrap();
    assert_eq!(first.workflow, "resolved");
    assert_eq!(first.acknowledged.as_ref().unwrap().by, "alice");
    assert_eq!(first.notes.len(), 1);
    assert_eq!(
        first.notes[0].message.as_deref(),
        Some("checkout v42 rolled back")
    );
    assert_eq!(first.resolved_by.as_ref().unwrap().by, "alice");
    assert_eq!(report.mtta.as_ref().unwrap().count, 1);
    let events: Vec<&str> = first.timeline().iter().map(|t| t.event).collect();
    assert_eq!(
        events,
        [
            "start",
            "detect",
            "acknowledge",
            "note",
            "resolve",
            "recover",
            "alert_resolve"
        ]
    );
    // Numbering goes on after the stored actions.
    again
        .act(1, note("carol", "postmortem PM-7"), T0 + 300 * S)
        .await
        .unwrap();
    drop(again);
    let mut store = levee_store::SqliteStore::open(&db).unwrap();
    let seqs: Vec<u32> = store
        .load_incident_actions()
        .unwrap()
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// A maintenance that leaves the budget: the errors inside its window
/// neither count nor page, those before and after do, and the report says
/// how many were left out.
#[tokio::test]
async fn a_maintenance_window_leaves_the_budget() {
    use crate::status_board::Exclusion;
    let db = temp_db();
    let mut e = engine(&db).await;
    let windows = Arc::new(ArcSwap::from_pointee(vec![Exclusion {
        starts_ns: T0 + 10 * S,
        ends_ns: T0 + 40 * S,
        components: vec!["x".into()],
    }]));
    e.exclude(windows.clone());
    for k in 0..10 {
        second(&e, k, 10, 0).await;
    }
    // 30 s of total failure inside the window: no page, nothing counted.
    for k in 10..40 {
        second(&e, k, 0, 10).await;
    }
    assert!(incident(&e).is_none(), "no page during the maintenance");
    let slo = e.report().slos[0].clone();
    assert_eq!((slo.events, slo.bad_events), (100, 0));
    assert_eq!(slo.excluded_events, 300);
    // After the window, errors count again.
    for k in 40..42 {
        second(&e, k, 5, 5).await;
    }
    let slo = e.report().slos[0].clone();
    assert_eq!((slo.events, slo.bad_events), (120, 10));
    // A window for another SLO or tier leaves this one alone.
    windows.store(Arc::new(vec![Exclusion {
        starts_ns: T0,
        ends_ns: T0 + 100 * S,
        components: vec!["optional".into(), "y".into()],
    }]));
    second(&e, 42, 0, 10).await;
    assert_eq!(e.report().slos[0].bad_events, 20);
}
