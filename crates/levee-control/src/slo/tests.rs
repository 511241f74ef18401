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

fn config_with(page_rules: &str) -> Arc<Config> {
    let src = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:0"
[[routes]]
name = "r"
cluster = "c"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:9"]
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
    Arc::new(levee_config::load_str(&src, levee_config::Format::Toml, "t.toml").unwrap())
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
