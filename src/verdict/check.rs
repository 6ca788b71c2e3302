//! Key batches → verdicts: reads the same keys on both sides and runs the compare core.
//! Every mode's re-checks, and the binlog and poll feeds, go through here.

use crate::deliver::event::{EventType, Mismatch};
use crate::error::Result;
use crate::key::Key;
use crate::mysql::db::{Db, Row};
use crate::mysql::schema::TablePlan;
use crate::verdict::compare::{compare_rows, Outcome};
use crate::verdict::observed::Reading;
use std::collections::HashMap;

impl Mismatch {
    /// The mismatch an outcome describes, or `None` when the rows are equal.
    pub fn from_outcome(plan: &TablePlan, o: Outcome) -> Option<Mismatch> {
        match o {
            Outcome::Equal => None,
            Outcome::TargetMissing => Some(Mismatch { kind: EventType::TargetMissing, columns: vec![] }),
            Outcome::BaseMissing => Some(Mismatch { kind: EventType::BaseMissing, columns: vec![] }),
            Outcome::Neq(idx) => Some(Mismatch {
                kind: EventType::Neq,
                columns: idx.into_iter().filter_map(|i| plan.compared.get(i).cloned()).collect(),
            }),
        }
    }
}

/// The key of a row as read (key columns come first).
pub fn row_key(plan: &TablePlan, row: &Row) -> Key {
    Key::from_values(&row[..plan.key.len().min(row.len())])
}

/// The canonical bytes of a row's key, without building a [`Key`].
pub fn row_identity(plan: &TablePlan, row: &Row) -> Vec<u8> {
    crate::key::canonical_of(&row[..plan.key.len().min(row.len())])
}

/// Compares one row pair (either may be absent).
pub fn verdict(plan: &TablePlan, base: Option<&Row>, other: Option<&Row>) -> Option<Mismatch> {
    let k = plan.key.len();
    // A row shorter than its key (malformed) has no columns to compare rather than a panic.
    let o =
        compare_rows(&plan.kinds, base.map(|r| r.get(k..).unwrap_or(&[])), other.map(|r| r.get(k..).unwrap_or(&[])));
    Mismatch::from_outcome(plan, o)
}

/// Reads `keys` on both sides and returns the mismatching ones.
pub async fn check_keys(base: &Db, other: &Db, plan: &TablePlan, keys: &[Key]) -> Result<Vec<(Key, Mismatch)>> {
    let rows = read_both(base, other, plan, keys).await?;
    Ok(rows.into_iter().filter_map(|(key, b, o)| verdict(plan, b.as_ref(), o.as_ref()).map(|m| (key, m))).collect())
}

/// Like [`check_keys`], with what each mismatching key's rows looked like (poll mode's settle rule,
/// [`crate::verdict::observed`]).
pub async fn observe_keys(
    base: &Db,
    other: &Db,
    plan: &TablePlan,
    keys: &[Key],
) -> Result<Vec<(Key, Mismatch, Reading)>> {
    let k = plan.key.len();
    let mut out = Vec::new();
    for (key, b, o) in read_both(base, other, plan, keys).await? {
        let outcome = compare_rows(&plan.kinds, b.as_ref().map(|r| &r[k..]), o.as_ref().map(|r| &r[k..]));
        let differing = match &outcome {
            Outcome::Neq(idx) => idx.clone(),
            _ => Vec::new(),
        };
        if let Some(m) = Mismatch::from_outcome(plan, outcome) {
            out.push((key, m, Reading::of(plan, b.as_ref(), o.as_ref(), differing)));
        }
    }
    Ok(out)
}

/// Reads `keys` on both sides: each distinct key with its row on the base and on the other side.
async fn read_both(
    base: &Db,
    other: &Db,
    plan: &TablePlan,
    keys: &[Key],
) -> Result<Vec<(Key, Option<Row>, Option<Row>)>> {
    let (b, o) = tokio::join!(base.read_keys(plan, keys), other.read_keys(plan, keys));
    let index =
        |rows: Vec<Row>| -> HashMap<Vec<u8>, Row> { rows.into_iter().map(|r| (row_identity(plan, &r), r)).collect() };
    let (mut b, mut o) = (index(b?), index(o?));
    let mut out = Vec::with_capacity(keys.len());
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        let c = key.canonical();
        if !seen.insert(c.clone()) {
            continue;
        }
        let (rb, ro) = (b.remove(&c), o.remove(&c));
        out.push((key.clone(), rb, ro));
    }
    Ok(out)
}
