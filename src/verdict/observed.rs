//! Poll mode's settle rule. Poll mode has no row images: all it knows of a pending row's history is what
//! its re-checks saw. So a pending poll entry keeps each base version it observed (a digest of the
//! compared columns, the row's utime, when it was first observed), and for every compared column since
//! when the base has shown its current value at every observation. A re-check reads both sides and bounds
//! how long ago the base superseded the version the other side shows:
//! 1. the other side shows an observed version that was later replaced: superseded no later than the
//!    first observation of a different version after it;
//! 2. the other side's utime is older than the utime of a base version first observed at `t`: superseded
//!    no later than `t` (the base held a newer version then);
//! 3. the other side differs in a column whose base value every observation since `t` showed unchanged
//!    (or the row is missing on one side, and every observation since `t` saw it so on the base):
//!    superseded before `t`.
//!
//! The earliest bound is a floor on the other side's lag. The row is reported once that floor exceeds the
//! settle window, and kept otherwise (an equal row resolves; the caller sees that without this module).
//! So a row that only lags is never reported (each bound is a time at which the base had already moved
//! past the other side's version, provided utime grows with every version of a row and a column that
//! matters to rule 3 does not change and change back between two re-checks), and a row that diverged is
//! reported about one window after a bound reaches it. What poll mode cannot tell apart is documented in
//! the README ("What poll mode cannot tell apart").
//!
//! Pure: the clock is a parameter, so every case is a unit test.

use crate::mysql::db::Row;
use crate::mysql::schema::{ticks, TablePlan};
use crate::verdict::compare::digest::{digest, Side};
use serde::{Deserialize, Serialize};

/// What a re-check saw of one side's row, reduced to what the rule keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// digest of the compared columns, on the compare core's canonical form (comparable across sides)
    pub digest: u64,
    /// per compared column, its digest (the base's are compared with earlier observations of the base)
    pub columns: Vec<u64>,
    /// the utime column in its ticks, when the table's utime is a compared column
    pub utime: Option<i64>,
}

impl Seen {
    /// One side's row (key columns first, then the compared columns in plan order).
    pub fn of(plan: &TablePlan, side: Side, row: &Row) -> Seen {
        let values = &row[plan.key.len().min(row.len())..];
        let columns =
            (0..plan.kinds.len()).map(|i| digest(&plan.kinds[i..=i], side, values.get(i..=i).unwrap_or(&[]))).collect();
        let at = plan.utime.as_ref().and_then(|u| plan.compared.iter().position(|c| *c == u.column));
        let utime = at.and_then(|i| values.get(i)).and_then(|v| ticks(&crate::key::KeyVal::from(v)));
        Seen { digest: digest(&plan.kinds, side, values), columns, utime }
    }
}

/// A re-check's reading of one mismatching key: each side's row (`None`: absent) and the compared
/// columns that differ (by the compare core; empty when a row is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub base: Option<Seen>,
    pub other: Option<Seen>,
    pub differing: Vec<usize>,
}

impl Reading {
    pub fn of(plan: &TablePlan, base: Option<&Row>, other: Option<&Row>, differing: Vec<usize>) -> Reading {
        Reading {
            base: base.map(|r| Seen::of(plan, Side::Base, r)),
            other: other.map(|r| Seen::of(plan, Side::Other, r)),
            differing,
        }
    }
}

/// A run of consecutive base observations that showed one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// `None`: the row was absent on the base
    pub digest: Option<u64>,
    pub utime: Option<i64>,
    /// when this run's first observation was made (ms)
    pub first_ms: u64,
}

/// The base's value of one compared column at the last observation, and since when every observation
/// showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub digest: u64,
    pub since_ms: u64,
}

/// Versions pruned from [`Observed::runs`] whose digests are still recognised (each replaced on the
/// base more than a window before it was pruned).
const STALE_MAX: usize = 16;

/// What a pending poll entry has observed of the base.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// base versions in observation order, consecutive observations of one version folded into one run;
    /// runs replaced more than a window ago are pruned but the newest of them (see [`Observed::prune`])
    pub runs: Vec<Run>,
    /// digests of pruned runs with when each was replaced (oldest first, at most [`STALE_MAX`])
    pub stale: Vec<(Option<u64>, u64)>,
    /// per compared column: what the base held and since when (empty while the base row is absent)
    pub held: Vec<Held>,
    /// whether the base row was present at the last observation, and since when it has been so
    pub presence: Option<(bool, u64)>,
    /// how many later mismatches were submitted for the key (each changes the stored entry, so a
    /// re-check that read the entry before cannot remove it: see settle's compare-and-swap)
    pub submits: u32,
}

/// What a re-check decides for a mismatching pending poll entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// No bound shows a lag beyond the window (yet).
    Keep,
    /// The other side's version was superseded on the base at least `lag_ms` ago, more than the window.
    Report { lag_ms: u64 },
}

impl Observed {
    /// The entry after a later mismatch of its key was submitted: the same window and observations.
    pub fn resubmitted(&self) -> Observed {
        Observed { submits: self.submits.wrapping_add(1), ..self.clone() }
    }

    /// Records what a re-check at `now_ms` saw of the base, then judges the other side's row.
    pub fn judge(&mut self, r: &Reading, now_ms: u64, window_ms: u64) -> Judgement {
        self.observe(r.base.as_ref(), now_ms);
        let floor = [self.by_version(r), self.by_utime(r), self.by_held_columns(r)].into_iter().flatten().min();
        self.prune(now_ms, window_ms);
        match floor {
            Some(t) if now_ms.saturating_sub(t) > window_ms => Judgement::Report { lag_ms: now_ms - t },
            _ => Judgement::Keep,
        }
    }

    fn observe(&mut self, base: Option<&Seen>, now_ms: u64) {
        let digest = base.map(|s| s.digest);
        if self.runs.last().is_none_or(|r| r.digest != digest) {
            self.runs.push(Run { digest, utime: base.and_then(|s| s.utime), first_ms: now_ms });
        }
        let present = base.is_some();
        if self.presence.is_none_or(|(p, _)| p != present) {
            self.presence = Some((present, now_ms));
            self.held.clear();
        }
        let Some(seen) = base else { return };
        if self.held.len() != seen.columns.len() {
            // First observation of the row (or the table's columns changed): every column starts now.
            self.held = seen.columns.iter().map(|d| Held { digest: *d, since_ms: now_ms }).collect();
        }
        for (h, d) in self.held.iter_mut().zip(&seen.columns) {
            if h.digest != *d {
                *h = Held { digest: *d, since_ms: now_ms };
            }
        }
    }

    /// Rule 1: the other side shows an observed version that was later replaced. A version observed
    /// more than once counts from its last run; one that is also the current version gives no bound.
    fn by_version(&self, r: &Reading) -> Option<u64> {
        let shown = r.other.as_ref().map(|s| s.digest);
        let (current, earlier) = self.runs.split_last()?;
        if current.digest == shown {
            return None;
        }
        let run = earlier.iter().rposition(|v| v.digest == shown);
        match run {
            Some(i) => self.runs.get(i + 1).map(|next| next.first_ms),
            None => self.stale.iter().rev().find(|(d, _)| *d == shown).map(|(_, replaced)| *replaced),
        }
    }

    /// Rule 2: the other side's utime is older than that of a base version observed at `t`.
    fn by_utime(&self, r: &Reading) -> Option<u64> {
        let shown = r.other.as_ref()?.utime?;
        self.runs.iter().find(|v| v.utime.is_some_and(|u| u > shown)).map(|v| v.first_ms)
    }

    /// Rule 3: the other side differs in a column the base held unchanged since `t`, or the row's
    /// presence differs and the base has shown its own since `t`.
    fn by_held_columns(&self, r: &Reading) -> Option<u64> {
        match (&r.base, &r.other) {
            (Some(_), Some(_)) => r.differing.iter().filter_map(|i| self.held.get(*i)).map(|h| h.since_ms).min(),
            (None, None) => None,
            _ => self.presence.map(|(_, since)| since),
        }
    }

    /// Drops runs replaced more than a window ago, except the newest of them: with utime growing per
    /// version it has the largest utime of them all, so rule 2 decides as it would with all of them.
    /// Their digests stay recognisable in `stale` (rule 1: replaced more than a window ago).
    fn prune(&mut self, now_ms: u64, window_ms: u64) {
        let cutoff = now_ms.saturating_sub(window_ms);
        // Run i was replaced when run i + 1 was first observed.
        let old = self.runs.windows(2).take_while(|w| w[1].first_ms < cutoff).count();
        if old < 2 {
            return;
        }
        let gone: Vec<Run> = self.runs.drain(..old - 1).collect();
        let replaced = gone.iter().skip(1).map(|r| r.first_ms).chain(self.runs.first().map(|r| r.first_ms));
        self.stale.extend(gone.iter().map(|r| r.digest).zip(replaced));
        let extra = self.stale.len().saturating_sub(STALE_MAX);
        self.stale.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 1000;

    /// A row seen on one side: the whole-row digest `d`, column digests, utime.
    fn row(d: u64, cols: &[u64], utime: i64) -> Option<Seen> {
        Some(Seen { digest: d, columns: cols.to_vec(), utime: Some(utime) })
    }

    fn reading(base: Option<Seen>, other: Option<Seen>, differing: &[usize]) -> Reading {
        Reading { base, other, differing: differing.to_vec() }
    }

    /// A hot row (columns v, utime; version n has digest n, v = n, utime = n * 10) whose other side
    /// shows version `lagging(n)` at the re-check where the base shows version n.
    fn hot_run(o: &mut Observed, checks: &[(u64, u64, u64)]) -> Vec<Judgement> {
        checks
            .iter()
            .map(|(now, base, other)| {
                let b = row(*base, &[*base, *base * 10], (*base * 10) as i64);
                let t = row(*other, &[*other, *other * 10], (*other * 10) as i64);
                o.judge(&reading(b, t, &[0, 1]), *now, W)
            })
            .collect()
    }

    #[test]
    fn a_hot_row_that_lags_less_than_the_window_is_kept_however_long_it_stays_hot() {
        // Re-checks every 250 ms for 20 s; the base moves 25 versions between re-checks (every 10 ms),
        // the other side trails by 300 ms (30 versions), so it shows versions never observed.
        let mut o = Observed::default();
        let checks: Vec<(u64, u64, u64)> = (1..=80).map(|i| (i * 250, i * 25 + 100, i * 25 + 70)).collect();
        assert!(hot_run(&mut o, &checks).iter().all(|j| *j == Judgement::Keep));
        assert!(o.runs.len() <= 7 && o.stale.len() <= STALE_MAX, "pruned: {o:?}");
    }

    #[test]
    fn a_lagging_other_side_showing_an_observed_version_is_kept_until_it_trails_by_a_window() {
        let mut o = Observed::default();
        // The other side shows version 1 throughout; the base moved to 2 at the check of 1000.
        let j = hot_run(&mut o, &[(500, 1, 0), (1000, 2, 1), (1800, 3, 1), (2000, 3, 1), (2001, 3, 1)]);
        assert_eq!(j[..4], [Judgement::Keep; 4]);
        assert_eq!(j[4], Judgement::Report { lag_ms: 1001 }, "version 1 was replaced by 1000");
    }

    #[test]
    fn a_hot_row_whose_other_copy_stopped_is_reported_about_a_window_after_a_newer_utime_was_seen() {
        let mut o = Observed::default();
        // The other copy freezes at version 40 (utime 400); the base keeps moving.
        let checks = [(250, 50, 20), (500, 75, 40), (750, 100, 40), (1000, 125, 40), (1250, 150, 40), (1500, 175, 40)];
        let j = hot_run(&mut o, &checks);
        // Utime 500 > 400 was first observed at 250: reported once more than a window has passed since.
        assert_eq!(j[..5], [Judgement::Keep; 5], "a lag of exactly the window is kept");
        assert_eq!(j[5], Judgement::Report { lag_ms: 1250 });
    }

    #[test]
    fn a_column_the_base_held_through_every_observation_cannot_differ_by_lag() {
        let mut o = Observed::default();
        // Columns: v (hot), note (never written); the other side trails by a little and differs in note.
        let mut js = Vec::new();
        for i in 0..6u64 {
            let (now, b, t) = (i * 250 + 100, 10 * i + 10, 10 * i + 5);
            let base = row(b, &[b, 7], b as i64);
            let other = row(b + 10_000, &[t, 8], t as i64);
            js.push(o.judge(&reading(base, other, &[0, 1]), now, W));
        }
        // note held since the first observation (100): reported at the first re-check past 1100.
        assert_eq!(js[..5], [Judgement::Keep; 5]);
        assert_eq!(js[5], Judgement::Report { lag_ms: 1250 });
    }

    #[test]
    fn a_column_that_changed_restarts_only_its_own_hold() {
        let mut o = Observed::default();
        let b1 = row(1, &[1, 7], 10);
        let b2 = row(2, &[2, 9], 20);
        // The other side shows a newer utime than any observed (no bound from it) and differs in column 1.
        let other = || row(3, &[2, 8], 30);
        assert_eq!(o.judge(&reading(b1, other(), &[0, 1]), 0, W), Judgement::Keep);
        assert_eq!(o.judge(&reading(b2.clone(), other(), &[1]), 500, W), Judgement::Keep);
        assert_eq!(o.judge(&reading(b2.clone(), other(), &[1]), 1500, W), Judgement::Keep, "column 1 held since 500");
        assert_eq!(o.judge(&reading(b2, other(), &[1]), 1501, W), Judgement::Report { lag_ms: 1001 });
    }

    #[test]
    fn a_row_missing_on_one_side_is_bounded_by_how_long_the_base_showed_it_so() {
        let mut o = Observed::default();
        let b = || row(1, &[1], 10);
        assert_eq!(o.judge(&reading(b(), None, &[]), 100, W), Judgement::Keep);
        assert_eq!(o.judge(&reading(b(), None, &[]), 1100, W), Judgement::Keep);
        assert_eq!(o.judge(&reading(b(), None, &[]), 1101, W), Judgement::Report { lag_ms: 1001 });
        // Deleted on the base, still present on the other side: from the first observation of the absence.
        let mut o = Observed::default();
        assert_eq!(o.judge(&reading(b(), b(), &[]), 0, W), Judgement::Keep);
        assert_eq!(o.judge(&reading(None, b(), &[]), 300, W), Judgement::Keep, "the delete may lag");
        assert_eq!(o.judge(&reading(None, b(), &[]), 1301, W), Judgement::Report { lag_ms: 1001 });
    }

    #[test]
    fn a_version_seen_again_counts_from_its_last_run_and_the_current_one_gives_no_bound() {
        let mut o = Observed::default();
        let b = |d: u64| Some(Seen { digest: d, columns: vec![d], utime: None });
        // Base: 1, 2, 1 (the same values again), 2; the other side shows 1 at the end.
        for (now, d) in [(0, 1), (100, 2), (200, 1), (300, 2)] {
            o.judge(&reading(b(d), b(9), &[]), now, W);
        }
        assert_eq!(o.judge(&reading(b(2), b(1), &[]), 1300, W), Judgement::Keep, "1 was last replaced at 300");
        assert_eq!(o.judge(&reading(b(2), b(1), &[]), 1301, W), Judgement::Report { lag_ms: 1001 });
        // Showing the current version's digest (a collision or a float rounding): no bound from rule 1.
        let mut o = Observed::default();
        o.judge(&reading(b(1), b(5), &[]), 0, W);
        assert_eq!(o.judge(&reading(b(2), b(2), &[]), 5000, W), Judgement::Keep);
    }

    #[test]
    fn pruned_versions_are_still_recognised_as_replaced_long_ago() {
        let mut o = Observed::default();
        let b = |d: u64| Some(Seen { digest: d, columns: vec![d], utime: None });
        for i in 0..20u64 {
            o.judge(&reading(b(i), b(1000), &[]), i * 250, W);
        }
        assert!(o.runs.len() < 8 && !o.stale.is_empty(), "{o:?}");
        // Version 2 was replaced at 750 and has been pruned from the runs.
        assert!(o.runs.iter().all(|r| r.digest != Some(2)));
        assert_eq!(o.judge(&reading(b(20), b(2), &[]), 5000, W), Judgement::Report { lag_ms: 4250 });
    }

    /// A simulated row: version k is written at `k * step` ms (utime = its time); the other side shows the
    /// newest version at least `lag` old, frozen from `stop_at` on if set; its `note` column differs
    /// from `note_at` on if set. Re-checks run every `interval` plus a jitter; an equal row resolves (its
    /// entry goes, the next mismatch starts a fresh one). Returns the times at which the row was reported.
    struct Sim {
        step: u64,
        lag: u64,
        interval: u64,
        jitter: Vec<u64>,
        stop_at: Option<u64>,
        note_at: Option<u64>,
    }

    impl Sim {
        fn seen(k: u64, step: u64, note: u64) -> Option<Seen> {
            Some(Seen { digest: k * 10 + note, columns: vec![k, note, k], utime: Some((k * step) as i64) })
        }

        fn reports(&self, until: u64) -> Vec<u64> {
            let (mut o, mut out) = (Observed::default(), Vec::new());
            let mut now = 0;
            for i in 0.. {
                now += self.interval + self.jitter[i % self.jitter.len()];
                if now > until {
                    break;
                }
                let kb = now / self.step;
                let shown_at = self.stop_at.map_or(now, |s| s.min(now)).saturating_sub(self.lag);
                let ko = shown_at / self.step;
                let note = if self.note_at.is_some_and(|d| now >= d) { 8 } else { 7 };
                let differing: Vec<usize> = [(0, kb != ko), (1, note != 7), (2, kb != ko)]
                    .into_iter()
                    .filter_map(|(i, d)| d.then_some(i))
                    .collect();
                if differing.is_empty() {
                    o = Observed::default();
                    continue;
                }
                let r = reading(Sim::seen(kb, self.step, 7), Sim::seen(ko, self.step, note), &differing);
                if let Judgement::Report { .. } = o.judge(&r, now, W) {
                    out.push(now);
                    o = Observed::default();
                }
            }
            out
        }
    }

    proptest::proptest! {
        /// Promise 1: a row written every `step` ms whose other side trails by less than the window is
        /// never reported, whatever the re-check times.
        #[test]
        fn a_row_that_only_lags_is_never_reported(
            step in 1u64..80, lag in 0u64..1000, interval in 50u64..300,
            jitter in proptest::collection::vec(0u64..60, 1..8),
        ) {
            let sim = Sim { step, lag, interval, jitter, stop_at: None, note_at: None };
            proptest::prop_assert_eq!(sim.reports(20_000), Vec::<u64>::new());
        }

        /// Promise 2: a hot row whose other copy stops, or differs in a column the writes never touch, is
        /// reported within a window and two re-check intervals (plus one write) of the divergence.
        #[test]
        fn a_diverged_hot_row_is_reported_within_about_a_window(
            step in 1u64..80, lag in 0u64..1000, interval in 50u64..300,
            jitter in proptest::collection::vec(0u64..60, 1..8), stop in proptest::bool::ANY,
        ) {
            let d = 5000;
            let late = W + 2 * (interval + 60) + step;
            let sim = Sim {
                step, lag, interval, jitter,
                stop_at: stop.then_some(d),
                note_at: (!stop).then_some(d),
            };
            let reports = sim.reports(d + late + 1000);
            proptest::prop_assert!(reports.iter().all(|t| *t >= d), "nothing before the divergence: {:?}", reports);
            proptest::prop_assert!(reports.first().is_some_and(|t| *t <= d + late), "reported late or never: {:?}", reports);
        }
    }

    #[test]
    fn a_resubmitted_entry_keeps_its_observations_and_changes_its_bytes() {
        let mut o = Observed::default();
        o.judge(&reading(row(1, &[1], 1), None, &[]), 100, W);
        let again = o.resubmitted();
        assert_eq!(again.runs, o.runs);
        assert_eq!(again.presence, o.presence);
        assert_ne!(postcard::to_allocvec(&again).unwrap(), postcard::to_allocvec(&o).unwrap());
    }
}
