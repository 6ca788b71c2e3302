//! A settle pass: re-reads the entries that are due, judges them (binlog entries by their versions,
//! [`super::versioned`]; poll entries by what their looks observed; the others by their deadline), and
//! stores what it decided: reports into the outbox first, then the entries out of pending.

use super::{heads, oldest_marks, Concluded, Pending, Settle};
use crate::clock::now_ms;
use crate::deliver::event::{Event, Mismatch};
use crate::error::Result;
use crate::key::Key;
use crate::mysql::schema::TablePlan;
use crate::verdict::observed::{Judgement, Reading};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

impl Settle {
    /// One pass: re-checks every pending entry that is due. Returns when the next entry falls due.
    pub(super) async fn pass(&self) -> Result<Option<u64>> {
        // Before the entries: every version up to it is in them (binlog entries are judged against it).
        let horizon = self.binlog_horizon.load(Relaxed);
        let now = now_ms();
        // Only the due entries are read in whole (a hot row's entry holds many versions).
        let (all, due) = self.store.pending_scan::<Pending>(|h| h.next_check_ms <= now)?;
        let mut next = all.iter().map(|h| h.next_check_ms).filter(|t| *t > now).min();
        let mut by_table: HashMap<String, Vec<Pending>> = HashMap::new();
        for p in due {
            by_table.entry(p.table.clone()).or_default().push(p);
        }
        for (table, items) in by_table {
            let Some(plan) = self.plans.get(&table) else {
                tracing::warn!(table = %table, "pending re-check for a table no longer configured; dropped");
                self.store.pending_remove_if_unchanged(&items)?;
                continue;
            };
            for chunk in items.chunks(self.batch_size) {
                if let Some(n) = self.recheck(&plan, chunk, horizon).await? {
                    next = Some(next.map_or(n, |m| m.min(n)));
                }
            }
        }
        let _mark = self.mark.lock().await;
        let left = heads(&self.store)?;
        for (slot, mark) in self.oldest.iter().zip(oldest_marks(&left)) {
            slot.store(mark, Relaxed);
        }
        self.stats.pending.store(left.len() as i64, Relaxed);
        Ok(next)
    }

    /// Re-checks entries; reports those whose window ended, drops those that resolved. Returns when the
    /// earliest entry kept falls due.
    pub(super) async fn recheck(&self, plan: &TablePlan, items: &[Pending], horizon: u64) -> Result<Option<u64>> {
        // Versions made under other compared columns (DDL since) cannot judge the other side's rows:
        // such entries are judged on both sides, as entries without images are.
        let columns = crate::verdict::versions::columns_of(plan);
        let (versioned, items): (Vec<Pending>, Vec<Pending>) = items
            .iter()
            .cloned()
            .partition(|p| p.versions.as_ref().is_some_and(|v| matches!(v.columns, 0) || v.columns == columns));
        let mut next = None;
        if !versioned.is_empty() {
            next = self.recheck_versions(plan, &versioned, horizon).await?;
        }
        if items.is_empty() {
            return Ok(next);
        }
        let keys: Vec<Key> = items.iter().map(|p| p.key.clone()).collect();
        // Poll entries need what the rows looked like (observed.rs); the others only the mismatches.
        let found = if items.iter().any(|p| p.observed.is_some()) {
            self.recheck.observe(plan, &keys).await?
        } else {
            self.recheck.check(plan, &keys).await?.into_iter().map(|(k, m)| (k, m, None)).collect()
        };
        let still: HashMap<Vec<u8>, (Mismatch, Option<Reading>)> =
            found.into_iter().map(|(k, m, r)| (k.canonical(), (m, r))).collect();
        let now = now_ms();
        let Concluded { mut resolved, mut report, mut reported, mut keep } = Concluded::default();
        for p in &items {
            match still.get(&p.key.canonical()) {
                None => resolved.push(p.clone()),
                // ---- poll mode's rule (observed.rs): judged by the versions observed, not the deadline.
                Some((m, Some(reading))) if p.observed.is_some() => {
                    let mut seen = p.observed.clone().unwrap_or_default();
                    match seen.judge(reading, now, self.window.as_millis() as u64) {
                        Judgement::Report { .. } => {
                            report.push(Pending { last: m.clone(), ..p.clone() });
                            reported.push(p.clone());
                        }
                        Judgement::Keep => keep.push((
                            p.clone(),
                            Pending {
                                last: m.clone(),
                                next_check_ms: now + self.interval.as_millis() as u64,
                                observed: Some(seen),
                                ..p.clone()
                            },
                        )),
                    }
                }
                // ---- end of poll mode's rule
                Some((m, _)) if now >= p.deadline_ms => {
                    report.push(Pending { last: m.clone(), ..p.clone() });
                    reported.push(p.clone());
                }
                Some((m, _)) => keep.push((
                    p.clone(),
                    Pending {
                        last: m.clone(),
                        next_check_ms: (now + self.interval.as_millis() as u64).min(p.deadline_ms),
                        ..p.clone()
                    },
                )),
            }
        }
        let kept = self.conclude(plan, now, Concluded { report, reported, resolved, keep }).await?;
        Ok(earliest(next, kept))
    }

    /// Stores what a re-check decided. Into the outbox first, then out of pending: a crash in between
    /// reports twice, never zero times. Each entry leaves (or changes) only if it is still the one read: a
    /// mismatch submitted for the same key meanwhile is newer than these reads and must not vanish
    /// unreported. Returns when the earliest entry kept falls due.
    pub(super) async fn conclude(&self, plan: &TablePlan, now: u64, c: Concluded) -> Result<Option<u64>> {
        self.report(&plan.key, &c.report, now).await?;
        self.store.pending_remove_if_unchanged(&c.reported)?;
        let gone = self.store.pending_remove_if_unchanged(&c.resolved)?;
        self.stats.resolved.fetch_add(gone as u64, Relaxed);
        // A row reported earlier that is equal now closes in the ledger.
        let equal: Vec<Key> = c.resolved.iter().map(|p| p.key.clone()).collect();
        self.ledger.close_equal(&plan.name, &equal, &[]).await?;
        // A binlog entry kept changes only when it is looked at next and what it keeps of its versions
        // (pruned, suspects): losing that in a crash re-checks the durable entry as it was, sooner and
        // with more versions, so it is not flushed here. The others' observations are kept durably.
        let durable = c.keep.iter().any(|(_, p)| p.versions.is_none());
        self.store.pending_replace_if_unchanged(&c.keep, durable).await?;
        Ok(c.keep.iter().map(|(_, p)| p.next_check_ms).min())
    }

    /// Turns mismatches into events, stored durably in the outbox.
    pub(super) async fn report(&self, key_columns: &[String], items: &[Pending], now: u64) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = items
            .iter()
            .map(|p| Event {
                kind: p.last.kind,
                direction: self.direction.to_string(),
                table: p.table.clone(),
                key_columns: key_columns.to_vec(),
                key: p.key.clone(),
                mode: p.mode,
                columns: p.last.columns.clone(),
                detected_at_ms: now,
            })
            .collect();
        // The ledger rows go into the store with the events (the outbox push flushes both).
        self.ledger.open(&events)?;
        self.store.outbox_push(&events, self.outbox_max).await?;
        for e in &events {
            self.stats.reported(&e.table, e.mode, e.kind);
            tracing::info!(table = %e.table, kind = e.kind.as_str(), "inconsistency reported");
        }
        Ok(())
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
