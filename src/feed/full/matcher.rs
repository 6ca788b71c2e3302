//! Pairs the other side's rows of a range with the base's rows of the same range by exact key.

use crate::deliver::event::Mismatch;
use crate::key::Key;
use crate::mysql::db::Row;
use crate::mysql::schema::TablePlan;
use crate::verdict::check::{row_identity, row_key, verdict};
use mysql_async::Value;
use std::collections::HashMap;

/// How many base rows past the next unmatched one an other-side row's key is looked for. A base row the
/// other side lacks is passed over this way; an other-side row the base lacks costs this many key
/// comparisons. Once more other-side rows than this are out of step, the rest of the chunk is matched
/// through the map alone.
const LOOKAHEAD: usize = 8;

/// Matches the other side's rows of a range against the base's rows of the same range by exact key:
/// other-side rows without a base row are `base_missing`, base rows left unmatched `target_missing`,
/// pairs go through the compare core.
///
/// Both sides arrive in key order, so nearly every other-side row pairs with the next base row, found by
/// comparing the key values in place: no hashing, no key bytes built per row. Only rows out of step (a
/// row one side lacks, or keys whose values differ in type but not in canonical form) go through a map by
/// canonical key, so the matching stays exact whatever order the rows arrive in. At most `LOOKAHEAD + 1`
/// other-side rows wait for the end of the chunk: past that, or once no base row is left to walk, every
/// other-side row is judged where it arrives.
pub(super) struct Matcher {
    /// this chunk's base rows in key order; those before `next` are matched or passed over (taken)
    base: Vec<Row>,
    next: usize,
    /// base rows passed over, not matched yet, by canonical key
    passed: HashMap<Vec<u8>, Row>,
    /// other-side rows that matched no base row where they arrived
    unplaced: Vec<Row>,
    found: Vec<(Key, Mismatch)>,
    rows: u64,
}

impl Matcher {
    pub(super) fn new(base_rows: Vec<Row>) -> Matcher {
        let rows = base_rows.len() as u64;
        Matcher { base: base_rows, next: 0, passed: HashMap::new(), unplaced: Vec::new(), found: Vec::new(), rows }
    }

    pub(super) fn other_rows(&mut self, plan: &TablePlan, page: &[Row]) {
        for r in page {
            self.other_row(plan, r);
        }
    }

    pub(super) fn other_row(&mut self, plan: &TablePlan, r: &Row) {
        let k = plan.key.len();
        let end = (self.next + LOOKAHEAD).min(self.base.len());
        if let Some(j) = (self.next..end).find(|&j| same_key(&self.base[j], r, k)) {
            for i in self.next..j {
                let b = std::mem::take(&mut self.base[i]);
                self.passed.insert(row_identity(plan, &b), b);
            }
            self.next = j + 1;
            let b = std::mem::take(&mut self.base[j]);
            self.judge(plan, Some(&b), Some(r));
            return;
        }
        match self.passed.remove(&row_identity(plan, r)) {
            Some(b) => self.judge(plan, Some(&b), Some(r)),
            // Every base row is matched or in the map: none can match this row any more.
            None if self.next == self.base.len() => self.judge_alone(plan, r),
            None => {
                self.unplaced.push(r.clone());
                if self.unplaced.len() > LOOKAHEAD {
                    self.give_up_lookahead(plan);
                }
            }
        }
    }

    /// The other side is out of step by more than the look-ahead (a long run of base rows it lacks, or of
    /// rows the base lacks): the rest of the base goes into the map once, the waiting rows are judged, and
    /// every later row is a map lookup judged where it arrives.
    fn give_up_lookahead(&mut self, plan: &TablePlan) {
        for b in self.base.drain(self.next..) {
            self.passed.insert(row_identity(plan, &b), b);
        }
        self.next = self.base.len();
        for r in std::mem::take(&mut self.unplaced) {
            match self.passed.remove(&row_identity(plan, &r)) {
                Some(b) => self.judge(plan, Some(&b), Some(&r)),
                None => self.judge_alone(plan, &r),
            }
        }
    }

    /// An other-side row no base row matches.
    fn judge_alone(&mut self, plan: &TablePlan, r: &Row) {
        self.rows += 1;
        self.judge(plan, None, Some(r));
    }

    fn judge(&mut self, plan: &TablePlan, b: Option<&Row>, o: Option<&Row>) {
        if let Some(m) = verdict(plan, b, o) {
            let row = o.or(b).unwrap_or_else(|| unreachable!("a pair has a row"));
            self.found.push((row_key(plan, row), m));
        }
    }

    /// The mismatches found, and the rows compared (each key once).
    pub(super) fn finish(mut self, plan: &TablePlan) -> (Vec<(Key, Mismatch)>, u64) {
        self.give_up_lookahead(plan);
        for (_, b) in std::mem::take(&mut self.passed) {
            self.judge(plan, Some(&b), None);
        }
        (self.found, self.rows)
    }
}

/// The same first `k` values (the key), bit for bit (so that exactly the keys with the same canonical
/// bytes pair here). A row shorter than its key (a malformed network row) is never the same key.
fn same_key(a: &[Value], b: &[Value], k: usize) -> bool {
    match (a.get(..k), b.get(..k)) {
        (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Value::Float(p), Value::Float(q)) => p.to_bits() == q.to_bits(),
            (Value::Double(p), Value::Double(q)) => p.to_bits() == q.to_bits(),
            _ => x == y,
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::event::EventType;
    use crate::key::KeyVal;

    fn row(id: i64, v: i64) -> Row {
        vec![Value::Int(id), Value::Int(v)]
    }

    fn found(m: Matcher, plan: &TablePlan) -> (Vec<(i64, EventType)>, u64) {
        let (found, rows) = m.finish(plan);
        let mut f: Vec<(i64, EventType)> =
            found.into_iter().map(|(k, m)| (if let KeyVal::Int(i) = k.0[0] { i } else { -1 }, m.kind)).collect();
        f.sort_by_key(|(i, _)| *i);
        (f, rows)
    }

    /// A range's two sides matched by exact key, the other side arriving in pages in any order: every
    /// type found once, equal rows silent, each key counted once.
    #[test]
    fn the_matcher_finds_every_type_once_across_pages() {
        let plan = TablePlan::for_test(&["v"]);
        let mut m = Matcher::new(vec![row(1, 1), row(2, 2), row(3, 3), row(4, 4)]);
        m.other_rows(&plan, &[row(4, 4), row(5, 5)]);
        m.other_rows(&plan, &[row(2, 0), row(1, 1)]);
        let (f, rows) = found(m, &plan);
        assert_eq!(f, vec![(2, EventType::Neq), (3, EventType::TargetMissing), (5, EventType::BaseMissing)]);
        assert_eq!(rows, 5, "four base rows and one other-side row without a base row");
    }

    /// Rows out of step with the base's (runs of missing rows longer than the look-ahead on either side,
    /// a key read as UInt on one side and Int on the other) are still paired by exact key.
    #[test]
    fn the_matcher_pairs_rows_out_of_step_by_exact_key() {
        let plan = TablePlan::for_test(&["v"]);
        let base: Vec<Row> = (1..=40).map(|i| row(i, i)).collect();
        let mut m = Matcher::new(base);
        // 2..=20 missing on the other side (longer than LOOKAHEAD), 21 as UInt, 100..=119 extra, 30 changed.
        let mut other: Vec<Row> = vec![row(1, 1), vec![Value::UInt(21), Value::Int(21)]];
        other.extend((22..=40).map(|i| row(i, if i == 30 { 0 } else { i })));
        other.extend((100..120).map(|i| row(i, i)));
        m.other_rows(&plan, &other);
        let (f, rows) = found(m, &plan);
        let mut expected: Vec<(i64, EventType)> = (2..=20).map(|i| (i, EventType::TargetMissing)).collect();
        expected.push((30, EventType::Neq));
        expected.extend((100..120).map(|i| (i, EventType::BaseMissing)));
        assert_eq!(f, expected);
        assert_eq!(rows, 60, "forty base rows and twenty other-side rows without a base row");
    }

    /// After a run of base rows the other side lacks, longer than the look-ahead, the matcher stops
    /// looking ahead: later rows are map lookups judged where they arrive, so no more than the
    /// look-ahead's worth of other-side rows ever waits for the end of the chunk.
    #[test]
    fn a_long_run_of_missing_rows_does_not_leave_later_rows_waiting() {
        let plan = TablePlan::for_test(&["v"]);
        let mut m = Matcher::new((1..=60).map(|i| row(i, i)).collect());
        // 2..=21 missing on the other side (20 rows), 50 changed.
        let other: Vec<Row> = std::iter::once(1).chain(22..=60).map(|i| row(i, if i == 50 { 0 } else { i })).collect();
        for r in &other {
            m.other_row(&plan, r);
            assert!(m.unplaced.len() <= LOOKAHEAD, "{} rows waiting after key {:?}", m.unplaced.len(), r[0]);
        }
        let (f, rows) = found(m, &plan);
        let mut expected: Vec<(i64, EventType)> = (2..=21).map(|i| (i, EventType::TargetMissing)).collect();
        expected.push((50, EventType::Neq));
        assert_eq!(f, expected);
        assert_eq!(rows, 60);
    }

    /// Other-side rows past the base's last key (the open last chunk) can match no base row: each is
    /// judged base_missing where it arrives, none is kept.
    #[test]
    fn rows_past_the_last_base_row_are_judged_at_once() {
        let plan = TablePlan::for_test(&["v"]);
        let mut m = Matcher::new((1..=10).map(|i| row(i, i)).collect());
        for i in 1..=1000 {
            m.other_row(&plan, &row(i, i));
            assert!(m.unplaced.is_empty(), "key {i} kept waiting");
        }
        assert_eq!(m.found.len(), 990, "judged as they arrived, before the end of the chunk");
        let (f, rows) = found(m, &plan);
        assert_eq!(f, (11..=1000).map(|i| (i, EventType::BaseMissing)).collect::<Vec<_>>());
        assert_eq!(rows, 1000);
    }

    /// A row shorter than its key (malformed, from the network) pairs with nothing and panics nowhere.
    #[test]
    fn a_row_shorter_than_its_key_is_no_match_and_no_panic() {
        let plan = TablePlan::for_test(&["v"]);
        assert!(!same_key(&row(1, 1), &[], 1));
        assert!(!same_key(&[], &[], 1));
        let mut m = Matcher::new(vec![row(1, 1), row(2, 2)]);
        m.other_rows(&plan, &[vec![], row(2, 2)]);
        let (found, rows) = m.finish(&plan);
        let kinds: Vec<EventType> = found.iter().map(|(_, m)| m.kind).collect();
        assert_eq!(kinds, vec![EventType::BaseMissing, EventType::TargetMissing]);
        assert_eq!(rows, 3);
    }
}
