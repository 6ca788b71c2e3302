//! Table metadata from information_schema on both sides, and the column plan that the checker, the full
//! scan and the compare core share.

use crate::compare::Kind;
use crate::config::TableConfig;
use crate::db::{quote_ident, Db};
use crate::error::{Error, Result, Side};
use mysql_async::Value;

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    pub kind: Kind,
    pub collation: Option<String>,
}

/// One side's view of a table.
#[derive(Clone, Debug)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

impl TableSchema {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// What is read and compared for one table: key columns first, then the compared columns.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub name: String,
    pub key: Vec<String>,
    pub compared: Vec<String>,
    /// (base kind, other kind) of each compared column
    pub kinds: Vec<(Kind, Kind)>,
    /// Single integer key column: the event's `id` is its value and ranges can be split numerically.
    pub integer_key: bool,
    /// Poll mode's change-time column, as named on the base, and its comparison kind (Int for BIGINT
    /// milliseconds, DateTime for DATETIME/TIMESTAMP).
    pub utime: Option<(String, Kind)>,
    /// Columns on one side only (not ignored), left out of the comparison: right after DDL on the base,
    /// usually a change the other side has not replayed yet.
    pub one_sided: Vec<String>,
    /// When the schemas behind this plan were read.
    pub loaded_at: std::time::Instant,
    /// When DDL on this table was last seen in the binlog (binlog mode), while it matters.
    pub ddl_at: Option<std::time::Instant>,
}

impl TablePlan {
    pub fn select_list(&self) -> String {
        self.key.iter().chain(&self.compared).map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
    }
    pub fn key_list(&self) -> String {
        self.key.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
    }
}

/// Reads one table's columns and primary key. `Ok(None)` when the table does not exist.
pub async fn load(db: &Db, table: &str) -> Result<Option<TableSchema>> {
    let ctx = format!("reading the columns of `{table}`");
    let rows = db
        .rows(
            "SELECT COLUMN_NAME, DATA_TYPE, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            vec![db.database.clone().into(), table.into()],
            &ctx,
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut columns: Vec<Column> = rows
        .into_iter()
        .map(|r| {
            let name = text(&r[0]);
            let data_type = text(&r[1]).to_ascii_lowercase();
            let collation = match &r[2] {
                Value::NULL => None,
                v => Some(text(v)),
            };
            Column { kind: Kind::from_data_type(&data_type), name, data_type, collation }
        })
        .collect();
    // MariaDB stores JSON as LONGTEXT with an automatic `json_valid(col)` check constraint.
    if columns.iter().any(|c| c.data_type == "longtext") {
        let checks = db
            .rows(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                vec![db.database.clone().into(), table.into()],
                &ctx,
            )
            .await
            .unwrap_or_default();
        for check in checks.iter().map(|r| text(&r[0]).to_ascii_lowercase()) {
            for c in columns.iter_mut().filter(|c| c.data_type == "longtext") {
                if check.contains(&format!("json_valid(`{}`)", c.name.to_ascii_lowercase())) {
                    c.kind = Kind::Json;
                }
            }
        }
    }
    let pk = db
        .rows(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            vec![db.database.clone().into(), table.into()],
            &ctx,
        )
        .await?;
    Ok(Some(TableSchema { columns, primary_key: pk.iter().map(|r| text(&r[0])).collect() }))
}

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => crate::key::KeyVal::from(other).to_string(),
    }
}

/// Builds the plan for one table from both sides' schemas. Fails with the fix when the key is unusable.
pub fn plan(
    cfg: &TableConfig,
    base_side: Side,
    base: &TableSchema,
    other: &TableSchema,
) -> Result<(TablePlan, Vec<String>)> {
    let t = &cfg.name;
    let other_side = base_side.other();
    let mut warnings = Vec::new();
    let key: Vec<String> = match &cfg.key {
        Some(k) => k.clone(),
        None => {
            if base.primary_key.is_empty() {
                return Err(Error::schema(t, format!(
                    "has no primary key on the {base_side} side; add key = [\"col\", ...] naming unique columns to its [[table]]"
                )));
            }
            if !same_names(&base.primary_key, &other.primary_key) {
                return Err(Error::schema(t, format!(
                    "primary keys differ between sides: {base_side} ({}) vs {other_side} ({}); set key = [...] in its [[table]]",
                    base.primary_key.join(", "),
                    other.primary_key.join(", ")
                )));
            }
            base.primary_key.clone()
        }
    };
    let mut key_names = Vec::with_capacity(key.len());
    for k in &key {
        let (Some(bc), Some(oc)) = (base.column(k), other.column(k)) else {
            return Err(Error::schema(
                t,
                format!("key column `{k}` does not exist on both sides; fix key = [...] in its [[table]]"),
            ));
        };
        if bc.collation.is_some() && bc.collation != oc.collation {
            warnings.push(format!(
                "table `{t}`: key column `{k}` has collation {} on the {base_side} side and {} on the {other_side} side; \
                 ranges may not line up, so full mode can report false differences",
                bc.collation.as_deref().unwrap_or("none"),
                oc.collation.as_deref().unwrap_or("none")
            ));
        }
        key_names.push(bc.name.clone());
    }
    for ig in &cfg.ignore {
        if base.column(ig).is_none() && other.column(ig).is_none() {
            warnings.push(format!("table `{t}`: ignore lists `{ig}`, which exists on neither side"));
        }
    }
    let is_key = |name: &str| key_names.iter().any(|k| k.eq_ignore_ascii_case(name));
    let is_ignored = |name: &str| cfg.ignore.iter().any(|c| c.eq_ignore_ascii_case(name));
    let mut compared = Vec::new();
    let mut kinds = Vec::new();
    let mut one_sided = Vec::new();
    for c in &base.columns {
        if is_key(&c.name) || is_ignored(&c.name) {
            continue;
        }
        match other.column(&c.name) {
            Some(o) => {
                compared.push(c.name.clone());
                kinds.push((c.kind, o.kind));
            }
            None => one_sided.push(format!("{} (only on {base_side})", c.name)),
        }
    }
    for c in &other.columns {
        if base.column(&c.name).is_none() && !is_ignored(&c.name) {
            one_sided.push(format!("{} (only on {other_side})", c.name));
        }
    }
    if !one_sided.is_empty() {
        warnings.push(format!(
            "table `{t}`: columns left out of the comparison because they exist on one side only: {}; \
             add them to ignore = [...] to silence this",
            one_sided.join(", ")
        ));
    }
    let integer_key = key_names.len() == 1 && base.column(&key_names[0]).is_some_and(|c| c.kind == Kind::Int);
    let utime = match &cfg.utime {
        None => None,
        Some(u) => match base.column(u) {
            Some(c) if matches!(c.kind, Kind::Int | Kind::DateTime) => Some((c.name.clone(), c.kind)),
            Some(c) => {
                return Err(Error::schema(
                    t,
                    format!(
                        "utime column `{u}` is {}; poll mode needs BIGINT milliseconds, DATETIME or TIMESTAMP",
                        c.data_type
                    ),
                ))
            }
            None => {
                return Err(Error::schema(
                    t,
                    format!("utime column `{u}` does not exist on the {base_side} side; fix utime in its [[table]]"),
                ))
            }
        },
    };
    let plan = TablePlan {
        name: t.clone(),
        key: key_names,
        compared,
        kinds,
        integer_key,
        utime,
        one_sided: one_sided.iter().map(|c| c.split(' ').next().unwrap_or(c).to_string()).collect(),
        loaded_at: std::time::Instant::now(),
        ddl_at: None,
    };
    Ok((plan, warnings))
}

fn same_names(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// Loads both sides' schemas and plans every configured table.
pub async fn plan_all(cfg: &crate::config::Config, base: &Db, other: &Db) -> Result<Vec<TablePlan>> {
    let mut plans = Vec::with_capacity(cfg.tables.len());
    for t in &cfg.tables {
        let bs = load(base, &t.name).await?;
        let os = load(other, &t.name).await?;
        let (bs, os) = match (bs, os) {
            (Some(b), Some(o)) => (b, o),
            (b, _) => {
                let (side, db) = if b.is_none() { (base.side, base) } else { (other.side, other) };
                return Err(Error::schema(
                    &t.name,
                    format!(
                        "does not exist in database `{}` on the {side} side; create it or fix the [[table]] name",
                        db.database
                    ),
                ));
            }
        };
        let (plan, warnings) = plan(t, base.side, &bs, &os)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        plans.push(plan);
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, dt: &str) -> Column {
        Column { name: name.into(), data_type: dt.into(), kind: Kind::from_data_type(dt), collation: None }
    }

    fn table(name: &str) -> TableConfig {
        TableConfig { name: name.into(), key: None, utime: None, ignore: vec![] }
    }

    #[test]
    fn plan_skips_one_sided_and_ignored_columns() {
        let base = TableSchema {
            columns: vec![col("id", "int"), col("a", "varchar"), col("b", "json"), col("x", "int")],
            primary_key: vec!["id".into()],
        };
        let other = TableSchema {
            columns: vec![col("id", "bigint"), col("a", "varchar"), col("b", "longtext"), col("y", "int")],
            primary_key: vec!["id".into()],
        };
        let mut t = table("t");
        t.ignore = vec!["a".into()];
        let (p, w) = plan(&t, Side::Source, &base, &other).unwrap();
        assert_eq!(p.compared, vec!["b"]);
        assert_eq!(p.kinds, vec![(Kind::Json, Kind::Bytes)]);
        assert!(p.integer_key);
        assert!(w[0].contains("x (only on source)") && w[0].contains("y (only on target)"), "{w:?}");
    }

    #[test]
    fn missing_or_different_keys_are_definite_errors() {
        let nokey = TableSchema { columns: vec![col("a", "int")], primary_key: vec![] };
        let e = plan(&table("t"), Side::Source, &nokey, &nokey).unwrap_err().to_string();
        assert!(e.contains("no primary key") && e.contains("key = ["), "{e}");
        let k1 = TableSchema { columns: vec![col("a", "int"), col("b", "int")], primary_key: vec!["a".into()] };
        let k2 =
            TableSchema { columns: vec![col("a", "int"), col("b", "int")], primary_key: vec!["a".into(), "b".into()] };
        let e = plan(&table("t"), Side::Target, &k1, &k2).unwrap_err().to_string();
        assert!(e.contains("differ between sides") && e.contains("target (a)"), "{e}");
        let mut t = table("t");
        t.key = Some(vec!["zz".into()]);
        assert!(plan(&t, Side::Source, &k1, &k2).unwrap_err().to_string().contains("`zz`"));
    }
}

/// The current plan of every configured table, shared by all stages. A table's plan is replaced when
/// its schema changes (DDL seen in the binlog); readers take a snapshot `Arc` per batch.
#[derive(Default)]
pub struct PlanSet {
    plans: std::sync::RwLock<Vec<std::sync::Arc<TablePlan>>>,
}

impl PlanSet {
    pub fn new(plans: Vec<TablePlan>) -> PlanSet {
        PlanSet { plans: std::sync::RwLock::new(plans.into_iter().map(std::sync::Arc::new).collect()) }
    }

    pub fn get(&self, table: &str) -> Option<std::sync::Arc<TablePlan>> {
        self.plans.read().unwrap_or_else(|e| e.into_inner()).iter().find(|p| p.name == table).cloned()
    }

    pub fn all(&self) -> Vec<std::sync::Arc<TablePlan>> {
        self.plans.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, plan: TablePlan) {
        let mut plans = self.plans.write().unwrap_or_else(|e| e.into_inner());
        match plans.iter_mut().find(|p| p.name == plan.name) {
            Some(slot) => *slot = std::sync::Arc::new(plan),
            None => plans.push(std::sync::Arc::new(plan)),
        }
    }
}

/// Re-reads one table's schema on both sides and replaces its plan (after DDL).
pub async fn refresh(cfg: &crate::config::Config, plans: &PlanSet, base: &Db, other: &Db, table: &str) -> Result<()> {
    for w in refresh_quietly(cfg, plans, base, other, table, None).await? {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// Re-reads a table's schemas on both sides and replaces its plan; returns the plan's warnings for the
/// caller to log. `ddl_at` marks DDL just seen on the base (else the old plan's mark is kept).
pub async fn refresh_quietly(
    cfg: &crate::config::Config,
    plans: &PlanSet,
    base: &Db,
    other: &Db,
    table: &str,
    ddl_at: Option<std::time::Instant>,
) -> Result<Vec<String>> {
    let Some(tc) = cfg.tables.iter().find(|t| t.name == table) else { return Ok(vec![]) };
    let (Some(bs), Some(os)) = (load(base, table).await?, load(other, table).await?) else {
        return Err(Error::schema(table, "disappeared from a side after DDL; recreate it or remove its [[table]]"));
    };
    let (mut plan, warnings) = plan(tc, base.side, &bs, &os)?;
    plan.ddl_at = ddl_at.or_else(|| plans.get(table).and_then(|p| p.ddl_at));
    plans.replace(plan);
    Ok(warnings)
}
