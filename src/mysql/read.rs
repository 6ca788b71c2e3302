//! Reads by a table's plan: keyset ranges and key batches, each side by its own names. Kept apart from
//! [`super::db`] (connections and raw queries), which knows nothing of plans.

use super::db::{push_tuple_values, quote_ident, tuple_predicate, Db, Row};
use super::schema::TablePlan;
use crate::error::{Result, Side};
use crate::key::Key;

/// Key lookups are padded to one of these sizes, so a table needs a handful of prepared statements.
const KEY_BUCKETS: &[usize] = &[1, 8, 64, 256];

impl Db {
    /// Up to `limit` rows with `lo < key <= hi` in key order (`None` bounds are open).
    pub async fn read_range(
        &self,
        plan: &TablePlan,
        lo: Option<&Key>,
        hi: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::with_capacity(limit.min(1 << 16));
        self.each_in_range(plan, lo, hi, limit, |r| rows.push(r)).await?;
        Ok(rows)
    }

    /// [`Db::read_range`] handing each row to `f` as it arrives; returns the number of rows.
    pub async fn each_in_range(
        &self,
        plan: &TablePlan,
        lo: Option<&Key>,
        hi: Option<&Key>,
        limit: usize,
        f: impl FnMut(Row),
    ) -> Result<usize> {
        let side = self.side;
        let mut sql = format!("SELECT {} FROM {}", plan.select_list(side), quote_ident(plan.table_on(side)));
        let mut params = Vec::new();
        let mut clauses = Vec::new();
        let key = plan.key_on(side);
        if let Some(lo) = lo {
            clauses.push(tuple_predicate(&key, ">", ">"));
            push_tuple_values(&mut params, &plan.key_params(lo));
        }
        if let Some(hi) = hi {
            clauses.push(tuple_predicate(&key, "<", "<="));
            push_tuple_values(&mut params, &plan.key_params(hi));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", plan.key_list(side)));
        self.each(&sql, params, &format!("reading a range of `{}`", plan.name), f).await
    }

    /// The rows with these keys (those that exist), in no particular order.
    pub async fn read_keys(&self, plan: &TablePlan, keys: &[Key]) -> Result<Vec<Row>> {
        let mut out = Vec::with_capacity(keys.len());
        let max = *KEY_BUCKETS.last().unwrap_or(&1);
        for chunk in keys.chunks(max) {
            let size = KEY_BUCKETS.iter().copied().find(|b| *b >= chunk.len()).unwrap_or(max);
            let sql = key_lookup_sql(plan, self.side, size);
            let mut params = Vec::with_capacity(size * plan.key.len());
            for i in 0..size {
                let k = &chunk[i.min(chunk.len() - 1)];
                params.extend(plan.key_params(k));
            }
            out.extend(self.rows(&sql, params, &format!("reading `{}` by key", plan.name)).await?);
        }
        Ok(out)
    }
}

/// `SELECT … WHERE key IN (?, …)` for `n` keys (a disjunction of equalities for composite keys).
fn key_lookup_sql(plan: &TablePlan, side: Side, n: usize) -> String {
    let key = plan.key_on(side);
    let pred = if key.len() == 1 {
        format!("{} IN ({})", quote_ident(&key[0]), vec!["?"; n].join(", "))
    } else {
        let one = key.iter().map(|c| format!("{} = ?", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
        vec![format!("({one})"); n].join(" OR ")
    };
    format!("SELECT {} FROM {} WHERE {pred}", plan.select_list(side), quote_ident(plan.table_on(side)))
}
