//! Where traffic goes among priority levels and zones, following Envoy's
//! documented algorithms. Priority load ([`priority_load`]) gives each level
//! the share its health can carry, with an overprovisioning factor, and
//! normalises when all levels together cannot carry everything;
//! [`PriorityFailover`] moves traffic away from a failing level at once but
//! back only after the level has stayed better for a hold time. Zone-aware
//! routing ([`ZoneRouting`]) keeps as much traffic as possible in the
//! gateway's own zone while every upstream endpoint still gets about the same
//! number of requests, assuming the whole gateway fleet uses the same rule.
//! Plain structs: time and randomness passed in; panic mode (nothing healthy)
//! stays the caller's business.

use crate::hash::mix64;
use levee_core::Nanos;
use std::collections::VecDeque;
use std::time::Duration;

/// Envoy's default overprovisioning factor: a level with at least 1/1.4
/// (about 72%) of its weight healthy counts as fully available.
pub const DEFAULT_OVERPROVISIONING: f64 = 1.4;

/// Share of traffic for each priority level (index 0 first), given each
/// level's healthy weight over its total weight (`0.0..=1.0`).
///
/// A level's health is `min(1, overprovisioning × healthy_share)`; level `p`
/// takes `min(health_p, what levels before it left)`. When the levels'
/// health adds up to less than 1 the loads are scaled up to sum to 1
/// (Envoy's "normalized total health"). When nothing is healthy, all traffic
/// goes to level 0 and the caller applies its panic rule. Shares are clamped
/// to `0.0..=1.0` (NaN counts as 0); a factor that is not a positive number
/// counts as 1 (no overprovisioning). Loads are fractions, not
/// Envoy's integer percents, so 71% healthy gives 99.4%, not 99%.
pub fn priority_load(healthy_share: &[f64], overprovisioning: f64) -> Vec<f64> {
    let health: Vec<f64> = healthy_share
        .iter()
        .map(|&s| level_health(s, overprovisioning))
        .collect();
    loads_from_health(&health)
}

/// `min(1, factor × share)`, with every input sanitised so that no NaN or
/// infinity (0 × ∞) can come out.
fn level_health(share: f64, overprovisioning: f64) -> f64 {
    let share = if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    };
    let factor = if overprovisioning > 0.0 {
        overprovisioning
    } else {
        1.0
    };
    if share == 0.0 {
        0.0
    } else {
        (share * factor).min(1.0)
    }
}

/// Priority load from health already in `0.0..=1.0`.
fn loads_from_health(health: &[f64]) -> Vec<f64> {
    let mut loads = vec![0.0; health.len()];
    let mut left = 1.0_f64;
    for (load, &h) in loads.iter_mut().zip(health) {
        *load = h.min(left);
        left = (left - *load).max(0.0);
    }
    let sum: f64 = loads.iter().sum();
    if sum > 0.0 {
        // Either 1 already (up to rounding) or the normalized total health.
        loads.iter_mut().for_each(|l| *l /= sum);
    } else if let Some(first) = loads.first_mut() {
        *first = 1.0;
    }
    loads
}

/// Chooses a priority level from loads such as [`priority_load`]'s, given 64
/// random bits. Returns 0 for an empty or all-zero slice.
pub fn pick_level(loads: &[f64], random: u64) -> usize {
    sample(loads, random).unwrap_or(0)
}

/// Index drawn from `weights` (non-negative, summing to about 1), or None if
/// none is positive. The bits are mixed first so that a caller may reuse the
/// random word it gives a balancer without coupling the two choices.
fn sample(weights: &[f64], random: u64) -> Option<usize> {
    let x = (mix64(random) >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last = Some(i);
            if x < acc {
                return last;
            }
        }
    }
    // Rounding left the sum a hair below x: the last live entry takes it.
    last
}

/// Priority load with a failback hold: a level's health counts at once when
/// it falls, but a rise counts only after the level has stayed at least that
/// healthy for `failback_delay`. Precisely, each level counts the lowest
/// health it had at any moment of the last `failback_delay`, so any dip
/// during the hold restarts it, and a recovery in steps is credited step by
/// step. The first report of a level counts at once (a fresh gateway does
/// not hold traffic away from a healthy primary).
#[derive(Debug, Clone)]
pub struct PriorityFailover {
    delay: Nanos,
    /// Per level, the reports that may still be the window's minimum, oldest
    /// first with health strictly rising (a report followed by a lower one
    /// can never be the minimum again). The front is the minimum.
    history: Vec<VecDeque<Report>>,
    loads: Vec<f64>,
    pending: bool,
}

impl PriorityFailover {
    /// A failover for `levels` priority levels; until the first update all
    /// traffic goes to level 0.
    pub fn new(levels: usize, failback_delay: Duration) -> Self {
        Self {
            delay: failback_delay.as_nanos().min(u128::from(u64::MAX)) as Nanos,
            history: vec![VecDeque::new(); levels],
            loads: loads_from_health(&vec![0.0; levels]),
            pending: false,
        }
    }

    /// Reports each level's healthy share at `now` and returns the loads to
    /// use. Call it whenever health changes and also periodically (see
    /// [`Self::next_change`]): a held failback completes only on a call. A
    /// slice longer or shorter than before adds levels (counted at once) or
    /// drops them.
    pub fn update(&mut self, now: Nanos, healthy_share: &[f64], overprovisioning: f64) -> &[f64] {
        self.history.resize_with(healthy_share.len(), VecDeque::new);
        let mut counted = Vec::with_capacity(healthy_share.len());
        let mut current = Vec::with_capacity(healthy_share.len());
        for (history, &share) in self.history.iter_mut().zip(healthy_share) {
            let health = level_health(share, overprovisioning);
            counted.push(record(history, now, health, self.delay));
            current.push(health);
        }
        self.loads = loads_from_health(&counted);
        let unheld = loads_from_health(&current);
        self.pending = self
            .loads
            .iter()
            .zip(&unheld)
            .any(|(a, b)| (a - b).abs() > 1e-12);
        &self.loads
    }

    /// The loads from the last update, one per level, summing to 1.
    pub fn loads(&self) -> &[f64] {
        &self.loads
    }

    /// Whether, at the last update, the hold kept traffic away from a level
    /// that has recovered (the loads would differ without it).
    pub fn failback_pending(&self) -> bool {
        self.pending
    }

    /// When the next held recovery will count if health stays as last
    /// reported, if one is held: call [`Self::update`] then (or on a regular
    /// tick) for the failback to happen on time.
    pub fn next_change(&self) -> Option<Nanos> {
        self.history
            .iter()
            .filter_map(|h| h.front()?.replaced.map(|t| t.saturating_add(self.delay)))
            .min()
    }
}

/// One health report of a level.
#[derive(Debug, Clone, Copy)]
struct Report {
    health: f64,
    /// When the next report changed the health; None while it is current.
    replaced: Option<Nanos>,
}

/// Adds one report to a level's history, forgets what the hold window no
/// longer covers, and returns the health to count: the lowest health in
/// effect at any moment of `[now − delay, now]` (a report replaced at once
/// still counts for that instant: a glitch seen is a glitch).
fn record(history: &mut VecDeque<Report>, now: Nanos, health: f64, delay: Nanos) -> f64 {
    if history.back().is_none_or(|r| r.health != health) {
        if let Some(last) = history.back_mut() {
            last.replaced = Some(now);
        }
        while history.back().is_some_and(|r| r.health >= health) {
            history.pop_back();
        }
        history.push_back(Report {
            health,
            replaced: None,
        });
    }
    // The front goes once it was no longer in effect at now − delay.
    while history
        .front()
        .and_then(|r| r.replaced)
        .is_some_and(|t| t.saturating_add(delay) <= now)
    {
        history.pop_front();
    }
    history.front().map_or(health, |r| r.health)
}

/// How [`ZoneRouting`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneMode {
    /// Zone-aware routing is off (too few endpoints, no usable fleet shares,
    /// no healthy endpoint in the local zone, or no local zone): balance over
    /// every endpoint by weight.
    Spread,
    /// The local zone can carry all of this gateway's traffic.
    Local,
    /// Part of the traffic stays local, the rest spills to zones with spare
    /// capacity.
    Spill,
}

/// The inputs of a zone-aware routing decision. Zone `i` is the same zone in
/// both slices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneInput<'a> {
    /// The gateway's own zone (an index into `healthy_weight`).
    pub local_zone: usize,
    /// Healthy upstream weight in each zone.
    pub healthy_weight: &'a [u64],
    /// Healthy upstream endpoints in all zones together.
    pub healthy_hosts: usize,
    /// Each zone's share of the gateway fleet's traffic (any scale; it is
    /// normalised). Entries past `healthy_weight` are fleet zones with no
    /// endpoints; missing, negative or NaN entries count as 0. Without a
    /// configured fleet layout, pass [`weight_shares`] of the upstream's
    /// configured per-zone weight.
    pub fleet_share: &'a [f64],
    /// Fewer healthy endpoints than this: [`ZoneMode::Spread`].
    pub min_cluster_size: usize,
}

/// Zone-aware routing (Envoy's): if the local zone's share of healthy
/// upstream capacity is at least its share of the gateway fleet, everything
/// stays local; otherwise `upstream share / fleet share` of it stays local
/// and the rest goes to the other zones in proportion to their residual
/// capacity (upstream share − fleet share, where positive). When every
/// gateway does this, each zone receives exactly its share of the healthy
/// capacity. Built when a cluster's view changes; picking is a few
/// arithmetic operations.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneRouting {
    mode: ZoneMode,
    local: usize,
    probabilities: Vec<f64>,
}

impl ZoneRouting {
    /// The routing decision for `input`.
    pub fn new(input: &ZoneInput<'_>) -> Self {
        let n = input.healthy_weight.len();
        let local = input.local_zone;
        let upstream = weight_shares(input.healthy_weight);
        let fleet = normalised(input.fleet_share, n);
        let usable = local < n
            && input.healthy_hosts >= input.min_cluster_size
            && input.healthy_weight[local] > 0
            && fleet.is_some();
        let Some(fleet) = fleet.filter(|_| usable) else {
            return Self::spread(input.healthy_weight, local);
        };
        let fleet_local = fleet[local];
        if upstream[local] >= fleet_local {
            let mut probabilities = vec![0.0; n];
            probabilities[local] = 1.0;
            return Self {
                mode: ZoneMode::Local,
                local,
                probabilities,
            };
        }
        Self {
            mode: ZoneMode::Spill,
            local,
            probabilities: spill(local, &upstream, &fleet),
        }
    }

    /// Balancing by weight, zones ignored.
    fn spread(healthy_weight: &[u64], local: usize) -> Self {
        let mut probabilities = weight_shares(healthy_weight);
        if probabilities.iter().all(|p| *p == 0.0) {
            // Nothing healthy: no zone is better than another.
            let n = probabilities.len() as f64;
            probabilities.iter_mut().for_each(|p| *p = 1.0 / n);
        }
        Self {
            mode: ZoneMode::Spread,
            local,
            probabilities,
        }
    }

    /// How the decision was made.
    pub fn mode(&self) -> ZoneMode {
        self.mode
    }

    /// Probability of each zone (for the admin API); sums to 1 unless there
    /// are no zones.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// Chooses a zone from 64 random bits (mixed first, so the word given to
    /// the balancer may be reused). In [`ZoneMode::Spread`] the caller should
    /// rather balance over all endpoints; this then picks by weight. Returns
    /// 0 when there are no zones.
    pub fn pick_zone(&self, random: u64) -> usize {
        if self.mode == ZoneMode::Local {
            return self.local;
        }
        sample(&self.probabilities, random).unwrap_or(0)
    }
}

/// Probabilities when the local zone (healthy, with `upstream[local] <
/// fleet[local]`) keeps what it can and spills the rest by residual capacity.
fn spill(local: usize, upstream: &[f64], fleet: &[f64]) -> Vec<f64> {
    let keep = upstream[local] / fleet[local];
    let mut room: Vec<f64> = (0..upstream.len())
        .map(|i| (upstream[i] - fleet[i]).max(0.0))
        .collect();
    room[local] = 0.0;
    if room.iter().sum::<f64>() <= 0.0 {
        // Exactly, the other zones' surpluses add up to at least the local
        // deficit, so this guards rounding only: spill by capacity, which
        // some other zone has since upstream[local] < 1.
        room.copy_from_slice(upstream);
        room[local] = 0.0;
    }
    let total: f64 = room.iter().sum();
    let mut probabilities: Vec<f64> = room.iter().map(|r| (1.0 - keep) * r / total).collect();
    probabilities[local] = keep;
    probabilities
}

/// Each entry's share of the total (all zeros when the total is 0).
pub fn weight_shares(weights: &[u64]) -> Vec<f64> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    weights
        .iter()
        .map(|&w| {
            if total == 0 {
                0.0
            } else {
                w as f64 / total as f64
            }
        })
        .collect()
}

/// `shares` scaled to sum to 1, with unusable entries as 0 and padded with
/// zeros to at least `len`; None if nothing positive is left.
fn normalised(shares: &[f64], len: usize) -> Option<Vec<f64>> {
    let mut clean: Vec<f64> = shares
        .iter()
        .map(|&s| if s.is_finite() && s > 0.0 { s } else { 0.0 })
        .collect();
    if clean.len() < len {
        clean.resize(len, 0.0);
    }
    let total: f64 = clean.iter().sum();
    (total > 0.0 && total.is_finite()).then(|| clean.iter().map(|s| s / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-9, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn two_levels_as_documented() {
        // Envoy's table with P=1 fully healthy, in fractions.
        for (p0, expected) in [
            (1.0, 1.0),
            (0.72, 1.0),
            (0.71, 0.994),
            (0.5, 0.7),
            (0.25, 0.35),
            (0.0, 0.0),
        ] {
            assert_close(
                &priority_load(&[p0, 1.0], DEFAULT_OVERPROVISIONING),
                &[expected, 1.0 - expected],
            );
        }
    }

    #[test]
    fn three_levels_and_normalized_total_health() {
        let l = |s: &[f64]| priority_load(s, DEFAULT_OVERPROVISIONING);
        assert_close(&l(&[0.25, 0.25, 1.0]), &[0.35, 0.35, 0.30]);
        // Health 0.35 + 0.35 + 0.28 = 0.98 < 1: scaled up to sum to 1.
        assert_close(
            &l(&[0.25, 0.25, 0.2]),
            &[0.35 / 0.98, 0.35 / 0.98, 0.28 / 0.98],
        );
        assert_close(&l(&[0.25, 0.25]), &[0.5, 0.5]);
        assert_close(&l(&[0.4, 0.4]), &[0.56, 0.44]);
    }

    #[test]
    fn nothing_healthy_or_nonsense_goes_to_level_zero() {
        assert_close(&priority_load(&[0.0, 0.0, 0.0], 1.4), &[1.0, 0.0, 0.0]);
        assert_close(&priority_load(&[f64::NAN, -3.0], f64::NAN), &[1.0, 0.0]);
        assert_close(&priority_load(&[0.5, 7.0], f64::INFINITY), &[1.0, 0.0]);
        assert_close(&priority_load(&[0.0, 0.5], f64::INFINITY), &[0.0, 1.0]);
        assert_close(&priority_load(&[0.5, 1.0], -1.0), &[0.5, 0.5]);
        assert!(priority_load(&[], 1.4).is_empty());
        assert_eq!(pick_level(&[], 7), 0);
    }

    #[test]
    fn failover_is_immediate_and_failback_waits() {
        let mut f = PriorityFailover::new(2, Duration::from_secs(60));
        assert_close(f.loads(), &[1.0, 0.0]);
        assert_close(f.update(0, &[1.0, 1.0], 1.4), &[1.0, 0.0]);
        assert_close(f.update(10 * S, &[0.5, 1.0], 1.4), &[0.7, 0.3]);
        assert!(!f.failback_pending());
        // Recovered at 20 s: held until 80 s.
        assert_close(f.update(20 * S, &[1.0, 1.0], 1.4), &[0.7, 0.3]);
        assert!(f.failback_pending());
        assert_eq!(f.next_change(), Some(80 * S));
        assert_close(f.update(79 * S, &[1.0, 1.0], 1.4), &[0.7, 0.3]);
        assert_close(f.update(80 * S, &[1.0, 1.0], 1.4), &[1.0, 0.0]);
        assert!(!f.failback_pending());
        assert_eq!(f.next_change(), None);
    }

    #[test]
    fn flapping_restarts_the_hold() {
        let mut f = PriorityFailover::new(2, Duration::from_secs(60));
        f.update(0, &[0.5, 1.0], 1.4);
        f.update(20 * S, &[1.0, 1.0], 1.4);
        f.update(40 * S, &[0.5, 1.0], 1.4);
        f.update(45 * S, &[1.0, 1.0], 1.4);
        assert_close(f.update(80 * S, &[1.0, 1.0], 1.4), &[0.7, 0.3]);
        assert_close(f.update(104 * S, &[1.0, 1.0], 1.4), &[0.7, 0.3]);
        assert_close(f.update(105 * S, &[1.0, 1.0], 1.4), &[1.0, 0.0]);
    }

    #[test]
    fn recovery_in_steps_is_credited_in_steps() {
        let mut f = PriorityFailover::new(2, Duration::from_secs(60));
        f.update(0, &[0.25, 1.0], 1.4);
        f.update(10 * S, &[0.5, 1.0], 1.4);
        f.update(30 * S, &[1.0, 1.0], 1.4);
        assert_close(f.update(69 * S, &[1.0, 1.0], 1.4), &[0.35, 0.65]);
        assert_close(f.update(70 * S, &[1.0, 1.0], 1.4), &[0.7, 0.3]);
        assert_close(f.update(90 * S, &[1.0, 1.0], 1.4), &[1.0, 0.0]);
    }

    #[test]
    fn zero_delay_follows_health() {
        let mut f = PriorityFailover::new(2, Duration::ZERO);
        f.update(0, &[0.5, 1.0], 1.4);
        assert_close(f.update(0, &[1.0, 1.0], 1.4), &[1.0, 0.0]);
        // A third level appears: counted at once.
        assert_close(f.update(S, &[0.0, 0.0, 1.0], 1.4), &[0.0, 0.0, 1.0]);
    }

    fn routing(local: usize, weights: &[u64], fleet: &[f64]) -> ZoneRouting {
        ZoneRouting::new(&ZoneInput {
            local_zone: local,
            healthy_weight: weights,
            healthy_hosts: 10,
            fleet_share: fleet,
            min_cluster_size: 6,
        })
    }

    #[test]
    fn local_zone_with_enough_capacity_takes_everything() {
        let z = routing(0, &[4, 3, 3], &[1.0, 1.0, 1.0]);
        assert_eq!(z.mode(), ZoneMode::Local);
        assert_close(z.probabilities(), &[1.0, 0.0, 0.0]);
        assert_eq!(z.pick_zone(12345), 0);
    }

    #[test]
    fn short_local_zone_spills_by_residual_capacity() {
        // Envoy's example: the fleet has 50% locally, the upstream 40%, so
        // 80% stays local. Zones 1 and 2 each have 5 points spare.
        let z = routing(0, &[4, 3, 3], &[0.5, 0.25, 0.25]);
        assert_eq!(z.mode(), ZoneMode::Spill);
        assert_close(z.probabilities(), &[0.8, 0.1, 0.1]);
        // Spare capacity only in zone 2.
        let z = routing(0, &[2, 3, 5], &[0.4, 0.3, 0.3]);
        assert_close(z.probabilities(), &[0.5, 0.0, 0.5]);
    }

    #[test]
    fn zone_routing_turns_off_when_it_cannot_help() {
        // Too small.
        let z = ZoneRouting::new(&ZoneInput {
            local_zone: 0,
            healthy_weight: &[1, 3],
            healthy_hosts: 4,
            fleet_share: &[0.5, 0.5],
            min_cluster_size: 6,
        });
        assert_eq!(z.mode(), ZoneMode::Spread);
        assert_close(z.probabilities(), &[0.25, 0.75]);
        // Nothing healthy locally: spread over the rest by weight.
        let z = routing(0, &[0, 6, 2], &[0.5, 0.25, 0.25]);
        assert_eq!(z.mode(), ZoneMode::Spread);
        assert_close(z.probabilities(), &[0.0, 0.75, 0.25]);
        // No usable fleet shares, or no such local zone.
        for (local, fleet) in [(0, &[0.0, f64::NAN][..]), (0, &[]), (5, &[1.0, 1.0])] {
            let z = routing(local, &[3, 3], fleet);
            assert_eq!(z.mode(), ZoneMode::Spread);
            assert_close(z.probabilities(), &[0.5, 0.5]);
        }
        // Nothing healthy anywhere, no zones at all.
        assert_close(
            routing(0, &[0, 0], &[1.0, 1.0]).probabilities(),
            &[0.5, 0.5],
        );
        let empty = routing(0, &[], &[1.0]);
        assert!(empty.probabilities().is_empty());
        assert_eq!(empty.pick_zone(99), 0);
    }

    #[test]
    fn odd_fleet_layouts() {
        // The local zone has no fleet share: whatever it has is enough.
        assert_eq!(routing(0, &[3, 3], &[0.0, 1.0]).mode(), ZoneMode::Local);
        // A single zone.
        assert_close(routing(0, &[7], &[1.0]).probabilities(), &[1.0]);
        // Fleet zones with no endpoints count in the normalisation.
        let z = routing(0, &[3, 3], &[0.5, 0.5, 1.0]);
        assert_eq!(z.mode(), ZoneMode::Local);
        let z = routing(0, &[2, 8], &[0.5, 0.1, 0.4]);
        assert_close(z.probabilities(), &[0.4, 0.6]);
        let z = routing(0, &[2, 2], &[0.6, 0.4, 0.0, 0.9]);
        assert_eq!(z.mode(), ZoneMode::Local);
        let z = routing(0, &[1, 2], &[0.8, 0.7]);
        assert_close(z.probabilities(), &[0.625, 0.375]);
    }

    /// The model for [`PriorityFailover`]: every report kept; a level counts
    /// the lowest health it reported inside the hold window and the health
    /// in effect when the window opened; a window opening before time 0
    /// covers every report.
    fn held_health(reports: &[(Nanos, f64)], now: Nanos, delay: Nanos) -> f64 {
        let counted: Vec<f64> = match now.checked_sub(delay) {
            None => reports.iter().map(|(_, h)| *h).collect(),
            Some(start) => {
                let at_start = reports.iter().rev().find(|(t, _)| *t <= start);
                reports
                    .iter()
                    .filter(|(t, _)| *t > start)
                    .chain(at_start)
                    .map(|(_, h)| *h)
                    .collect()
            }
        };
        counted.into_iter().fold(f64::INFINITY, f64::min)
    }

    proptest! {
        /// Loads are a distribution; level 0 takes everything while its
        /// overprovisioned health reaches 1.
        #[test]
        fn loads_are_a_distribution(shares in prop::collection::vec(prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0], 1..6), factor in 1.0f64..3.0) {
            let loads = priority_load(&shares, factor);
            prop_assert_eq!(loads.len(), shares.len());
            prop_assert!((loads.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            prop_assert!(loads.iter().all(|l| l.is_finite() && *l >= 0.0));
            if shares[0] * factor >= 1.0 {
                prop_assert_eq!(loads[0], 1.0);
                prop_assert!(loads[1..].iter().all(|l| *l == 0.0));
            }
            // A level never gets more than its health, unless everything is
            // scaled up because all health together is below 1.
            let health: Vec<f64> = shares.iter().map(|s| (s * factor).min(1.0)).collect();
            if health.iter().sum::<f64>() >= 1.0 {
                for (l, h) in loads.iter().zip(&health) {
                    prop_assert!(*l <= h + 1e-9);
                }
            }
            let level = pick_level(&loads, shares.len() as u64);
            prop_assert!(loads[level] > 0.0);
        }

        /// Against the model: with reports at arbitrary times, the loads are
        /// the priority load of each level's lowest health in the window.
        #[test]
        fn failover_matches_the_model(steps in prop::collection::vec((0u64..40, 0usize..5, 0usize..5), 1..60), delay_s in 0u64..60) {
            let levels = [0.0, 0.25, 0.5, 0.75, 1.0];
            let delay = delay_s * S;
            let mut f = PriorityFailover::new(2, Duration::from_secs(delay_s));
            let mut reports: [Vec<(Nanos, f64)>; 2] = [Vec::new(), Vec::new()];
            let mut now = 0;
            for (dt, a, b) in steps {
                now += dt * S;
                let shares = [levels[a], levels[b]];
                let loads = f.update(now, &shares, 1.4).to_vec();
                let mut held = [0.0; 2];
                for (i, share) in shares.iter().enumerate() {
                    reports[i].push((now, level_health(*share, 1.4)));
                    held[i] = held_health(&reports[i], now, delay);
                }
                let expected = loads_from_health(&held);
                for (l, e) in loads.iter().zip(&expected) {
                    prop_assert!((l - e).abs() < 1e-12, "{:?} vs {:?}", loads, expected);
                }
                if let Some(at) = f.next_change() {
                    prop_assert!(at > now);
                }
            }
        }

        /// Zone probabilities are a distribution, all local when the local
        /// zone suffices, and never more local than the fleet share allows.
        #[test]
        fn zone_probabilities_are_a_distribution(weights in prop::collection::vec(0u64..20, 1..6), fleet in prop::collection::vec(0.0f64..1.0, 0..7), local in 0usize..6, min_size in 0usize..30) {
            let hosts = weights.iter().sum::<u64>() as usize;
            let z = ZoneRouting::new(&ZoneInput { local_zone: local, healthy_weight: &weights, healthy_hosts: hosts, fleet_share: &fleet, min_cluster_size: min_size });
            let p = z.probabilities();
            prop_assert_eq!(p.len(), weights.len());
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
            let upstream = weight_shares(&weights);
            if let (Some(fleet), true) = (normalised(&fleet, weights.len()), local < weights.len() && hosts >= min_size && weights[local] > 0) {
                if upstream[local] >= fleet[local] {
                    prop_assert_eq!(z.mode(), ZoneMode::Local);
                    prop_assert_eq!(p[local], 1.0);
                } else {
                    prop_assert!((p[local] - upstream[local] / fleet[local]).abs() < 1e-9);
                }
            }
            prop_assert!(p[z.pick_zone(hosts as u64)] > 0.0);
        }

        /// Envoy's aim: when every zone's gateways route this way, each zone
        /// receives exactly its share of the healthy capacity.
        #[test]
        fn the_fleet_together_balances_capacity(weights in prop::collection::vec(1u64..20, 1..6), fleet in prop::collection::vec(0.01f64..1.0, 6)) {
            let n = weights.len();
            let fleet = &fleet[..n];
            let total_fleet: f64 = fleet.iter().sum();
            let mut received = vec![0.0; n];
            for gateway_zone in 0..n {
                let z = ZoneRouting::new(&ZoneInput { local_zone: gateway_zone, healthy_weight: &weights, healthy_hosts: 100, fleet_share: fleet, min_cluster_size: 1 });
                for (r, p) in received.iter_mut().zip(z.probabilities()) {
                    *r += fleet[gateway_zone] / total_fleet * p;
                }
            }
            for (r, u) in received.iter().zip(weight_shares(&weights)) {
                prop_assert!((r - u).abs() < 1e-9, "{:?}", received);
            }
        }

        /// Picks over many random words land as the probabilities say.
        #[test]
        fn picks_follow_probabilities(weights in prop::collection::vec(1u64..20, 2..5), fleet in prop::collection::vec(0.05f64..1.0, 5), seed in any::<u64>()) {
            let z = ZoneRouting::new(&ZoneInput { local_zone: 0, healthy_weight: &weights, healthy_hosts: 100, fleet_share: &fleet[..weights.len()], min_cluster_size: 1 });
            const N: u64 = 20_000;
            let mut counts = vec![0u64; weights.len()];
            for i in 0..N {
                counts[z.pick_zone(seed.wrapping_add(i))] += 1;
            }
            for (c, p) in counts.iter().zip(z.probabilities()) {
                prop_assert!((*c as f64 / N as f64 - p).abs() < 0.02, "{:?} vs {:?}", counts, z.probabilities());
            }
        }
    }
}
