//! Binlog mode's settle rule: a pending row keeps the versions the base went through, so a re-check tells
//! lag from inconsistency by *which* version the other side shows, not by how long the row has differed.
//!
//! The binlog hands every version of a changed row over in its row images. A pending entry keeps the
//! current version in full (the compare core names the differing columns from it) and each older one as
//! a 64-bit digest of its compared columns (see [`crate::verdict::compare::digest`]) with the time it
//! stopped being current on the base. At a re-check at `now`, reading only the other side:
//! - the other side equals the current version: resolved;
//! - it matches an older version `v`: it lags by `now - superseded(v)`; kept while that is at most the
//!   window, reported once it is more;
//! - it matches no version known here: it was superseded before the entry's oldest version was (or never
//!   existed on the base), so it is reported once `now - floor` exceeds the window, `floor` being when the
//!   entry's oldest version was superseded. The entry must also have been pending for a window in wall-clock
//!   time, so a reader that trails the other side's replication gets a window to hand the newer versions
//!   over before the other side's newer copy counts as unknown.
//!
//! A later change of a pending key adds its versions ([`Versions::merge`]): it never restarts the window
//! and never loses the entry. Pure (the clock is a parameter), so every case is unit-tested.

use crate::key::KeyVal;
use serde::{Deserialize, Serialize};

/// One earlier version of a row on the base: the digest of its compared columns (`None`: the row was
/// absent), and when it stopped being current (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub digest: Option<u64>,
    pub superseded_ms: u64,
}

/// The versions of one row the base went through while its entry is pending.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versions {
    /// The current version's compared columns in plan order; `None`: the row is absent on the base.
    pub current: Option<Vec<KeyVal>>,
    /// Since when `current` is current (ms): the older versions' newest supersession time.
    pub since_ms: u64,
    /// Older versions, oldest first, pruned to those superseded within the window.
    pub older: Vec<Version>,
    /// When the oldest version this entry ever knew was superseded (pruning never moves it).
    pub floor_ms: u64,
}

/// What a re-check decides for a pending row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The other side shows the current version.
    Resolved,
    /// Lag within the window (or an unknown version not yet a window old): look again by `due_ms`, when
    /// the verdict would change if the other side stayed as it is.
    Keep { due_ms: u64 },
    /// The other side shows a version superseded longer than the window ago, or none the base held within it.
    Report,
}

impl Versions {
    /// A row's history as one batch saw it: `older` oldest first (the first is the version current before
    /// the batch's first change of the row), `current` the latest.
    pub fn new(current: Option<Vec<KeyVal>>, older: Vec<Version>) -> Versions {
        let since_ms = older.iter().map(|v| v.superseded_ms).max().unwrap_or(0);
        let floor_ms = older.iter().map(|v| v.superseded_ms).min().unwrap_or(since_ms);
        Versions { current, since_ms, older, floor_ms }
    }

    /// Adds the versions of a later (or, when batches are judged out of order, an earlier) batch. The
    /// later history's first version is the earlier one's current, superseded at the later batch's
    /// first change, so joining the two in time order keeps every version and its time.
    pub fn merge(&mut self, other: Versions) {
        let mine = std::mem::replace(self, Versions::new(None, Vec::new()));
        let (mut early, late) = if other.since_ms >= mine.since_ms { (mine, other) } else { (other, mine) };
        early.older.extend(late.older);
        early.older.sort_by_key(|v| v.superseded_ms);
        *self = Versions {
            current: late.current,
            since_ms: late.since_ms.max(early.since_ms),
            older: early.older,
            floor_ms: early.floor_ms.min(late.floor_ms),
        };
    }

    /// Drops older versions superseded more than `window_ms` before `now`: the other side showing one of
    /// them is reported either way (by its lag, or as unknown past the floor, which stays).
    pub fn prune(&mut self, now: u64, window_ms: u64) {
        let horizon = now.saturating_sub(window_ms);
        self.older.retain(|v| v.superseded_ms >= horizon);
    }

    /// The rule (see the module doc). `is_current`: the compare core found the other side equal to the
    /// current version; `other`: the digest of the other side's row (`None`: absent); `first_seen_ms`:
    /// when the entry became pending.
    pub fn judge(
        &self,
        is_current: bool,
        other: Option<u64>,
        first_seen_ms: u64,
        now: u64,
        window_ms: u64,
    ) -> Judgement {
        if is_current {
            return Judgement::Resolved;
        }
        // The newest match: a value the row took twice is judged by its later supersession (least lag).
        if let Some(v) = self.older.iter().rev().find(|v| v.digest == other) {
            let due = v.superseded_ms + window_ms + 1;
            return if now >= due { Judgement::Report } else { Judgement::Keep { due_ms: due } };
        }
        let due = self.floor_ms.max(first_seen_ms) + window_ms + 1;
        if now >= due {
            Judgement::Report
        } else {
            Judgement::Keep { due_ms: due }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 1_000;

    fn v(digest: u64, at: u64) -> Version {
        Version { digest: Some(digest), superseded_ms: at }
    }

    fn cur(x: i64) -> Option<Vec<KeyVal>> {
        Some(vec![KeyVal::Int(x)])
    }

    /// A row updated every 10 ms from t=0: version n is current from 10n to 10(n+1). A batch of the
    /// versions from `from` to `to`.
    fn hot(from: u64, to: u64) -> Versions {
        Versions::new(cur(to as i64), (from..to).map(|n| v(n, 10 * (n + 1))).collect())
    }

    /// Simulates re-checks every 250 ms for `until` ms while the other side shows what `shows(now)` says
    /// (the version number, or u64::MAX for one the base never held); new versions arrive every 100 ms.
    /// Returns when the row was first reported.
    fn run(until: u64, shows: impl Fn(u64) -> u64) -> Option<u64> {
        let mut entry = hot(0, 10);
        let first_seen = 100;
        let mut known = 10;
        let mut now = 100;
        while now <= until {
            let newest = now / 10;
            if newest >= known + 10 {
                entry.merge(hot(known, newest));
                known = newest;
            }
            let target = shows(now);
            let is_current = target == known;
            match entry.judge(is_current, Some(target), first_seen, now, WINDOW) {
                Judgement::Report => return Some(now),
                Judgement::Resolved | Judgement::Keep { .. } => {}
            }
            entry.prune(now, WINDOW);
            now += 250;
        }
        None
    }

    #[test]
    fn a_hot_row_that_only_lags_is_never_reported() {
        // The other side replays 300 ms late: it shows the version current at now - 300.
        assert_eq!(run(20_000, |now| now.saturating_sub(300) / 10), None);
        // Lag just under the window, too.
        assert_eq!(run(20_000, |now| (now.saturating_sub(990)) / 10), None);
    }

    #[test]
    fn a_target_that_stopped_is_reported_once_its_version_is_superseded_longer_than_the_window() {
        // Replays 300 ms late until t=5000, then stops: it shows version 470 for good, superseded at 4710.
        let at = run(20_000, |now| if now < 5_000 { now.saturating_sub(300) / 10 } else { 470 }).expect("reported");
        assert!(at > 4_710 + WINDOW, "not before its version is a window old: {at}");
        assert!(at <= 4_710 + WINDOW + 250, "within one re-check of that: {at}");
    }

    #[test]
    fn an_unknown_version_is_reported_after_the_window() {
        // A column the writes never touch differs: no version of the base matches, ever.
        let at = run(20_000, |_| u64::MAX).expect("reported");
        assert!(at > 100 + WINDOW && at <= 100 + WINDOW + 250, "{at}");
        // Directly: unknown, the oldest version superseded at 10 and first seen at 100.
        let e = hot(0, 10);
        assert_eq!(e.judge(false, Some(999), 100, 1_100, WINDOW), Judgement::Keep { due_ms: 1_101 });
        assert_eq!(e.judge(false, Some(999), 100, 1_101, WINDOW), Judgement::Report);
        // Absent on the other side, and the row existed all along: unknown too.
        assert_eq!(e.judge(false, None, 100, 1_101, WINDOW), Judgement::Report);
    }

    #[test]
    fn an_insert_not_yet_replayed_is_lag() {
        // Inserted at 50 (before: absent); the other side has no row yet.
        let e = Versions::new(cur(1), vec![Version { digest: None, superseded_ms: 50 }]);
        assert_eq!(e.judge(false, None, 60, 900, WINDOW), Judgement::Keep { due_ms: 1_051 });
        assert_eq!(e.judge(false, None, 60, 1_051, WINDOW), Judgement::Report);
        assert_eq!(e.judge(true, Some(7), 60, 5_000, WINDOW), Judgement::Resolved);
    }

    #[test]
    fn a_later_change_adds_versions_and_never_restarts_the_window() {
        let mut e = hot(0, 10);
        let floor = e.floor_ms;
        // Changes keep coming; the other side shows a value the base never held.
        for step in 1..50 {
            e.merge(hot(10 * step, 10 * (step + 1)));
            e.prune(10 * 10 * (step + 1), WINDOW);
            assert_eq!(e.floor_ms, floor, "the window is not restarted");
        }
        assert_eq!(format!("{:?}", e.current), format!("{:?}", cur(500)));
        assert_eq!(e.judge(false, Some(u64::MAX), 100, 5_000, WINDOW), Judgement::Report);
        // The versions of the window are all there, in order.
        assert_eq!(e.older.first().map(|v| v.digest), Some(Some(399)));
        assert!(e.older.windows(2).all(|w| w[0].superseded_ms <= w[1].superseded_ms));
    }

    #[test]
    fn batches_merged_out_of_order_keep_the_later_current() {
        let mut e = hot(10, 20);
        e.merge(hot(0, 10));
        assert_eq!(format!("{:?}", e.current), format!("{:?}", cur(20)));
        assert_eq!(e.older.len(), 20);
        assert_eq!(e.floor_ms, 10);
        assert_eq!(e.since_ms, 200);
    }
}
