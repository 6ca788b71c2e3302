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
//! - it matches no version known here. If the binlog has been read (and merged into the entries) up to
//!   the time of the read (the *horizon*), it was superseded before the entry's oldest version was (or
//!   never existed on the base), so it is reported once `now - floor` exceeds the window, `floor` being
//!   when the entry's oldest version was superseded (and the entry has been pending for a window). If the
//!   reader is behind the other side's replication, the other side may show a version not read yet: the
//!   sighting is kept as a *suspect* (its digest and time) and judged once the horizon passes its time,
//!   against the versions known by then: by its lag then, or as unknown then. So a validator that falls
//!   behind the other side never mistakes the other side's newer copy for a difference.
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
    /// Sightings of the other side showing a version unknown when it was read, while the binlog was not
    /// read up to that time yet: judged once it is (at most [`SUSPECTS`], the newest).
    pub suspects: Vec<Suspect>,
    /// Which compared columns (and kinds) the versions follow (a fingerprint; 0: not known). After DDL
    /// changed them, the versions say nothing about the other side's rows and are not judged by.
    pub columns: u64,
}

/// The other side seen showing version `digest` at `at_ms`, before the binlog was read up to then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    pub digest: Option<u64>,
    pub at_ms: u64,
}

/// Suspects kept per entry: one per re-check while the reader is behind; older ones go first (a later
/// sighting of a real difference is judged as surely).
pub const SUSPECTS: usize = 16;

/// What a re-check saw, and how far the binlog has been read.
#[derive(Clone, Copy, Debug)]
pub struct Sighting {
    /// the compare core found the other side equal to the current version
    pub is_current: bool,
    /// digest of the other side's row (`None`: absent)
    pub other: Option<u64>,
    /// digest of the current version (`None`: absent)
    pub current: Option<u64>,
    /// when the re-check began, before the other side was read (lag is measured from it: never more than
    /// the other side really lagged)
    pub now: u64,
    /// when the other side's row had been read (at or after `now`): a sighting of an unknown version
    /// waits until the binlog has been read through this time
    pub seen_ms: u64,
    /// every base commit up to this time has been read and merged into the entries
    pub horizon: u64,
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
        Versions { current, since_ms, older, floor_ms, suspects: Vec::new(), columns: 0 }
    }

    /// Adds the versions of a later batch (verdicts are handed over in batch order; the later batch's
    /// latest image is the row's current version, whatever its timestamps say). The later history's first
    /// version is the earlier one's current, superseded at the later batch's first change, so joining the
    /// two keeps every version and its time.
    pub fn merge(&mut self, later: Versions) {
        if later.columns != self.columns && later.columns != 0 && self.columns != 0 {
            // DDL changed the compared columns in between: the earlier versions follow other columns.
            *self = later;
            return;
        }
        let (mut early, late) = (std::mem::replace(self, Versions::new(None, Vec::new())), later);
        early.older.extend(late.older);
        early.older.sort_by_key(|v| v.superseded_ms);
        let mut suspects = early.suspects;
        suspects.extend(late.suspects);
        suspects.sort_by_key(|s| s.at_ms);
        *self = Versions {
            current: late.current,
            since_ms: late.since_ms.max(early.since_ms),
            older: early.older,
            floor_ms: early.floor_ms.min(late.floor_ms),
            suspects,
            columns: if late.columns != 0 { late.columns } else { early.columns },
        };
    }

    /// Drops older versions superseded more than `window_ms` before `now` (or before the oldest suspect,
    /// which is judged against the versions of its own time): the other side showing one of them is
    /// reported either way (by its lag, or as unknown past the floor, which stays).
    pub fn prune(&mut self, now: u64, window_ms: u64) {
        let from = self.suspects.iter().map(|s| s.at_ms).min().unwrap_or(now).min(now);
        let horizon = from.saturating_sub(window_ms);
        self.older.retain(|v| v.superseded_ms >= horizon);
    }

    /// Whether the other side's row (`digest`) is a version the base held within this entry's window: it
    /// only lags, so the row is consistent as far as the settle rule goes.
    pub fn knows(&self, digest: Option<u64>) -> bool {
        self.older.iter().any(|v| v.digest == digest)
    }

    /// How far the other side lagged when it showed `digest` at `at`: 0 for the current version or one
    /// current then; `None` when no version known has that digest.
    fn lag_at(&self, digest: Option<u64>, current: Option<u64>, at: u64) -> Option<u64> {
        // The newest match: a value the row took twice is judged by its later supersession (least lag).
        match self.older.iter().rev().find(|v| v.digest == digest) {
            Some(v) => Some(at.saturating_sub(v.superseded_ms)),
            None if digest == current => Some(0),
            None => None,
        }
    }

    /// The rule (see the module doc); `first_seen_ms`: when the entry became pending. Suspects the
    /// horizon has passed are judged (and dropped); a sighting of an unknown version beyond the horizon
    /// becomes one.
    pub fn judge(&mut self, s: Sighting, first_seen_ms: u64, window_ms: u64) -> Judgement {
        if s.is_current {
            return Judgement::Resolved;
        }
        // Unknown past the floor, at `at`: a version the base did not hold within the window.
        let start = self.floor_ms.max(first_seen_ms);
        let too_old = |lag: Option<u64>, at: u64| match lag {
            Some(lag) => lag > window_ms,
            None => at.saturating_sub(start) > window_ms,
        };
        let mut report = false;
        let (ripe, waiting): (Vec<Suspect>, Vec<Suspect>) =
            std::mem::take(&mut self.suspects).into_iter().partition(|x| x.at_ms <= s.horizon);
        self.suspects = waiting;
        for x in ripe {
            report |= too_old(self.lag_at(x.digest, s.current, x.at_ms), x.at_ms);
        }
        if report {
            return Judgement::Report;
        }
        if let Some(v) = self.older.iter().rev().find(|v| v.digest == s.other) {
            let due = v.superseded_ms.saturating_add(window_ms + 1);
            return if s.now >= due { Judgement::Report } else { Judgement::Keep { due_ms: due } };
        }
        if s.seen_ms > s.horizon {
            // The reader may not have handed the version over yet: judged once it has.
            if self.suspects.len() >= SUSPECTS {
                self.suspects.remove(0);
            }
            self.suspects.push(Suspect { digest: s.other, at_ms: s.seen_ms });
            return Judgement::Keep { due_ms: u64::MAX };
        }
        let due = start.saturating_add(window_ms + 1);
        if s.now >= due {
            Judgement::Report
        } else {
            Judgement::Keep { due_ms: due }
        }
    }
}

/// Which compared columns and kinds a table's plan has (see [`Versions::columns`]): stable across
/// processes and releases (xxh3).
pub fn columns_of(plan: &crate::mysql::schema::TablePlan) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::default();
    for (c, k) in plan.compared.iter().zip(&plan.kinds) {
        h.write(c.as_bytes());
        h.write(format!("{k:?}").as_bytes());
        h.write_u8(0);
    }
    h.finish().max(1)
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

    /// What a re-check sees: the other side's version number (`None`: absent), the current one's.
    fn sight(other: Option<u64>, current: u64, now: u64, horizon: u64) -> Sighting {
        Sighting { is_current: other == Some(current), other, current: Some(current), now, seen_ms: now, horizon }
    }

    /// Simulates re-checks every 250 ms for `until` ms while the other side shows what `shows(now)` says
    /// (the version number, or u64::MAX for one the base never held); the reader hands new versions over
    /// every 100 ms, `behind` ms after their commit. Returns when the row was first reported.
    fn run(until: u64, behind: u64, shows: impl Fn(u64) -> u64) -> Option<u64> {
        let mut entry = hot(0, 10);
        let first_seen = 100;
        let mut known = 10;
        let mut now = 100 + behind;
        while now <= until {
            let horizon = now - behind;
            let newest = horizon / 10;
            if newest >= known + 10 {
                entry.merge(hot(known, newest));
                known = newest;
            }
            match entry.judge(sight(Some(shows(now)), known, now, horizon), first_seen, WINDOW) {
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
        assert_eq!(run(20_000, 0, |now| now.saturating_sub(300) / 10), None);
        // Lag just under the window, too.
        assert_eq!(run(20_000, 0, |now| (now.saturating_sub(990)) / 10), None);
    }

    #[test]
    fn a_validator_behind_the_other_side_does_not_take_its_newer_copy_for_a_difference() {
        // The reader hands versions over 500 ms after their commit; the other side is only 300 ms late.
        assert_eq!(run(20_000, 500, |now| now.saturating_sub(300) / 10), None);
        // A real difference is still found, once the reader has caught up with the sighting.
        let at = run(20_000, 500, |_| u64::MAX).expect("reported");
        assert!(at <= 100 + WINDOW + 500 + 2 * 250, "{at}");
    }

    #[test]
    fn a_target_that_stopped_is_reported_once_its_version_is_superseded_longer_than_the_window() {
        // Replays 300 ms late until t=5000, then stops: it shows version 470 for good, superseded at 4710.
        let at = run(20_000, 0, |now| if now < 5_000 { now.saturating_sub(300) / 10 } else { 470 }).expect("reported");
        assert!(at > 4_710 + WINDOW, "not before its version is a window old: {at}");
        assert!(at <= 4_710 + WINDOW + 250, "within one re-check of that: {at}");
    }

    #[test]
    fn an_unknown_version_is_reported_after_the_window() {
        // A column the writes never touch differs: no version of the base matches, ever.
        let at = run(20_000, 0, |_| u64::MAX).expect("reported");
        assert!(at > 100 + WINDOW && at <= 100 + WINDOW + 250, "{at}");
        // Directly: unknown, the oldest version superseded at 10 and first seen at 100.
        let mut e = hot(0, 10);
        assert_eq!(e.judge(sight(Some(999), 10, 1_100, 1_100), 100, WINDOW), Judgement::Keep { due_ms: 1_101 });
        assert_eq!(e.judge(sight(Some(999), 10, 1_101, 1_101), 100, WINDOW), Judgement::Report);
        // Absent on the other side, and the row existed all along: unknown too.
        assert_eq!(e.judge(sight(None, 10, 1_101, 1_101), 100, WINDOW), Judgement::Report);
        // Beyond the horizon it waits as a suspect, and is reported once the horizon passes it.
        assert_eq!(e.judge(sight(Some(999), 10, 1_200, 1_150), 100, WINDOW), Judgement::Keep { due_ms: u64::MAX });
        assert_eq!(e.suspects, vec![Suspect { digest: Some(999), at_ms: 1_200 }]);
        assert_eq!(e.judge(sight(Some(5), 10, 1_300, 1_250), 100, WINDOW), Judgement::Report);
        // A suspect that turns out to be a version read since is judged by its lag then.
        let mut e = hot(0, 10);
        assert!(matches!(e.judge(sight(Some(12), 10, 300, 200), 100, WINDOW), Judgement::Keep { .. }));
        e.merge(hot(10, 20));
        assert!(matches!(e.judge(sight(Some(15), 20, 400, 400), 100, WINDOW), Judgement::Keep { .. }));
        assert!(e.suspects.is_empty());
    }

    #[test]
    fn an_insert_not_yet_replayed_is_lag() {
        // Inserted at 50 (before: absent); the other side has no row yet.
        let mut e = Versions::new(cur(1), vec![Version { digest: None, superseded_ms: 50 }]);
        let absent =
            |now| Sighting { is_current: false, other: None, current: Some(1), now, seen_ms: now, horizon: now };
        assert_eq!(e.judge(absent(900), 60, WINDOW), Judgement::Keep { due_ms: 1_051 });
        assert_eq!(e.judge(absent(1_051), 60, WINDOW), Judgement::Report);
        assert_eq!(e.judge(Sighting { is_current: true, ..absent(5_000) }, 60, WINDOW), Judgement::Resolved);
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
        assert_eq!(e.judge(sight(Some(u64::MAX), 500, 5_000, 5_000), 100, WINDOW), Judgement::Report);
        // The versions of the window are all there, in order.
        assert_eq!(e.older.first().map(|v| v.digest), Some(Some(399)));
        assert!(e.older.windows(2).all(|w| w[0].superseded_ms <= w[1].superseded_ms));
    }

    #[test]
    fn the_batch_handed_over_later_is_current_whatever_its_clock_says() {
        // Verdicts are handed over in batch order; a wall clock stepped back must not make an earlier
        // batch's image current.
        let mut e = hot(10, 20);
        e.merge(hot(0, 10));
        assert_eq!(format!("{:?}", e.current), format!("{:?}", cur(10)));
        assert_eq!(e.older.len(), 20, "no version is lost");
        assert_eq!(e.floor_ms, 10);
    }

    #[test]
    fn versions_of_other_columns_are_replaced_not_mixed() {
        let mut e = Versions { columns: 7, ..hot(0, 10) };
        e.merge(Versions { columns: 8, ..hot(20, 22) });
        assert_eq!((e.columns, e.older.len(), e.floor_ms), (8, 2, 210), "only the new columns' versions");
        let mut same = Versions { columns: 8, ..hot(0, 10) };
        same.merge(Versions { columns: 8, ..hot(10, 12) });
        assert_eq!(same.older.len(), 12);
    }
}
