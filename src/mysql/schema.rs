//! Table metadata from information_schema on both sides, and the column plan that the checker, the full
//! scan and the compare core share.

use crate::config::TableConfig;
use crate::error::{Error, Result, Side};
use crate::mysql::db::{quote_ident, Db};
use crate::mysql::digest::{row_digest_sql, Dialect, DigestColumn};
use crate::mysql::kind::Kind;
use mysql_async::Value;

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    /// The full type (`decimal(10,2)`, `varchar(40)`): equal types on both sides print equal values alike.
    pub column_type: String,
    pub kind: Kind,
    pub collation: Option<String>,
    /// The column may hold NULL.
    pub nullable: bool,
    /// Fractional digits of a DATETIME, TIMESTAMP or TIME column.
    pub precision: Option<u32>,
}

/// One side's view of a table.
#[derive(Clone, Debug)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// The columns of every unique index (the primary key included).
    pub unique_keys: Vec<Vec<String>>,
}

impl TableSchema {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// What is read and compared for one table: key columns first, then the compared columns.
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// The table's name on the base side (events name it so).
    pub name: String,
    /// Its `[[table]] name` (the [source] side's name), by which `--tables` and the API select it.
    pub config_name: String,
    /// Which side is the base.
    pub base_side: Side,
    /// The table's name on the other side.
    pub other_table: String,
    /// Columns the other side names differently: base-side name → other-side name.
    pub other_names: std::collections::BTreeMap<String, String>,
    pub key: Vec<String>,
    pub compared: Vec<String>,
    /// (base kind, other kind) of each compared column
    pub kinds: Vec<(Kind, Kind)>,
    /// Single integer key column: the event's `id` is its value and ranges can be split numerically.
    pub integer_key: bool,
    /// Columns on one side only (not ignored), left out of the comparison: right after DDL on the base,
    /// usually a change the other side has not replayed yet.
    pub one_sided: Vec<String>,
    /// When the schemas behind this plan were read.
    pub loaded_at: std::time::Instant,
    /// When DDL on this table was last seen in the binlog (binlog mode), while it matters.
    pub ddl_at: Option<std::time::Instant>,
    /// Both servers order the key alike (same type family and collation on every key column), so a range
    /// bounded by base keys holds the same rows on both sides. When false (a migration that changed a key's
    /// collation or charset), full mode reads the other side by exact key instead of by range.
    pub ordered_alike: bool,
    /// Poll mode's change-time column on the base.
    pub utime: Option<Utime>,
    /// Which key columns are BIT on the base: their values (bytes, as read) are bound as integers,
    /// because a BIT column compared with a string parameter reads the string as a number in text.
    pub key_bit: Vec<bool>,
    /// The per-row digest of full mode's summary strategy (see `summary`), when every key and compared
    /// column has the same type and collation on both sides; else the table streams rows.
    pub digest: Option<String>,
    /// The same digest as the other side names the columns (they differ under a `columns` mapping).
    pub other_digest: Option<String>,
}

/// Poll mode's change-time column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utime {
    /// as named on the base
    pub column: String,
    /// Int for BIGINT milliseconds, DateTime for DATETIME/TIMESTAMP
    pub kind: Kind,
    /// The smallest step the column records, in its ticks (milliseconds for BIGINT, microseconds for
    /// DATETIME/TIMESTAMP): rows written within one step share a utime.
    pub step: i64,
}

/// A utime as a number of its column's ticks (milliseconds for BIGINT, microseconds since 0000-01-01 for
/// DATETIME/TIMESTAMP), for poll mode's overlap arithmetic and its settle rule. `None` for a value of another
/// shape.
pub fn ticks(v: &crate::key::KeyVal) -> Option<i64> {
    use crate::key::KeyVal;
    match v {
        KeyVal::Int(i) => Some(*i),
        KeyVal::UInt(u) => i64::try_from(*u).ok(),
        KeyVal::Date(y, mo, d, h, mi, s, us) => {
            let days = crate::calendar::days_from_civil(i64::from(*y), i64::from(*mo), i64::from(*d));
            let secs = days * 86_400 + i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s);
            Some(secs * 1_000_000 + i64::from(*us))
        }
        _ => None,
    }
}

#[cfg(test)]
impl TablePlan {
    /// A plan for unit tests: table `t`, integer key `id`, integer columns `compared`, the same names on
    /// both sides.
    pub fn for_test(compared: &[&str]) -> TablePlan {
        TablePlan {
            name: "t".into(),
            config_name: "t".into(),
            base_side: crate::error::Side::Source,
            other_table: "t".into(),
            other_names: Default::default(),
            key: vec!["id".into()],
            compared: compared.iter().map(|c| c.to_string()).collect(),
            kinds: compared.iter().map(|_| (Kind::Int, Kind::Int)).collect(),
            integer_key: true,
            ordered_alike: true,
            utime: None,
            key_bit: vec![false],
            one_sided: vec![],
            loaded_at: std::time::Instant::now(),
            ddl_at: None,
            digest: None,
            other_digest: None,
        }
    }
}

impl TablePlan {
    /// A column (named as the base side names it) as `side` names it.
    pub fn column_on(&self, side: Side, base_name: &str) -> String {
        if side == self.base_side {
            return base_name.to_string();
        }
        self.other_names.get(base_name).cloned().unwrap_or_else(|| base_name.to_string())
    }

    /// The summary strategy's row digest as `side` names the columns (`None`: the table streams rows).
    pub fn digest_on(&self, side: Side) -> Option<&str> {
        if side == self.base_side {
            self.digest.as_deref()
        } else {
            self.other_digest.as_deref()
        }
    }

    /// The table's name on `side`.
    pub fn table_on(&self, side: Side) -> &str {
        if side == self.base_side {
            &self.name
        } else {
            &self.other_table
        }
    }

    /// The key columns as `side` names them.
    pub fn key_on(&self, side: Side) -> Vec<String> {
        self.key.iter().map(|c| self.column_on(side, c)).collect()
    }

    /// Key columns, then compared columns, quoted, as `side` names them.
    pub fn select_list(&self, side: Side) -> String {
        self.key
            .iter()
            .chain(&self.compared)
            .map(|c| quote_ident(&self.column_on(side, c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn key_list(&self, side: Side) -> String {
        self.key.iter().map(|c| quote_ident(&self.column_on(side, c))).collect::<Vec<_>>().join(", ")
    }

    /// A key's values as statement parameters (see `key_bit`).
    pub fn key_params(&self, key: &crate::key::Key) -> Vec<Value> {
        key.params()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Bytes(b) if self.key_bit.get(i).copied().unwrap_or(false) && b.len() <= 8 => {
                    Value::UInt(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
                }
                v => v,
            })
            .collect()
    }
}

/// Reads one table's columns and primary key. `Ok(None)` when the table does not exist.
pub async fn load(db: &Db, table: &str) -> Result<Option<TableSchema>> {
    let ctx = format!("reading the columns of `{table}`");
    let rows = db
        .rows(
            "SELECT COLUMN_NAME, DATA_TYPE, COLLATION_NAME, IS_NULLABLE, DATETIME_PRECISION, COLUMN_TYPE \
             FROM information_schema.COLUMNS \
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
            let nullable = text(&r[3]).eq_ignore_ascii_case("YES");
            let precision = match &r[4] {
                Value::NULL => None,
                v => text(v).parse().ok(),
            };
            let column_type = r.get(5).map(text).unwrap_or_default().to_ascii_lowercase();
            Column {
                kind: Kind::from_data_type(&data_type),
                name,
                data_type,
                column_type,
                collation,
                nullable,
                precision,
            }
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
    let unique = db
        .rows(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            vec![db.database.clone().into(), table.into()],
            &ctx,
        )
        .await?;
    let mut primary_key = Vec::new();
    let mut unique_keys: Vec<(String, Vec<String>)> = Vec::new();
    for r in &unique {
        let (index, column) = (text(&r[0]), text(&r[1]));
        if index == "PRIMARY" {
            primary_key.push(column.clone());
        }
        match unique_keys.last_mut() {
            Some((name, cols)) if *name == index => cols.push(column),
            _ => unique_keys.push((index, vec![column])),
        }
    }
    let unique_keys = unique_keys.into_iter().map(|(_, cols)| cols).collect();
    Ok(Some(TableSchema { columns, primary_key, unique_keys }))
}

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => crate::key::KeyVal::from(other).to_string(),
    }
}

/// Builds the plan for one table from both sides' schemas, with the summary digest in the dialect both
/// servers share. Fails with the fix when the key is unusable.
pub fn plan(
    cfg: &TableConfig,
    base_side: Side,
    base: &TableSchema,
    other: &TableSchema,
) -> Result<(TablePlan, Vec<String>)> {
    plan_with(cfg, base_side, base, other, Dialect::Common)
}

/// [`plan`] with the summary digest in `dialect` (what both servers run: [`Dialect::of`] their versions).
pub fn plan_with(
    cfg: &TableConfig,
    base_side: Side,
    base: &TableSchema,
    other: &TableSchema,
    dialect: Dialect,
) -> Result<(TablePlan, Vec<String>)> {
    let t = &cfg.name;
    let other_side = base_side.other();
    let mut warnings = Vec::new();
    // Everything below works in the base side's column names: the other side's schema is renamed into
    // them, and the [[table]]'s names (the source side's) are too.
    let to_base = |c: &String| cfg.column_on(base_side, c);
    let (other, other_names) = rename_into_base(cfg, base_side, other);
    let other = &other;
    let key_cfg: Option<Vec<String>> = cfg.key.as_ref().map(|k| k.iter().map(to_base).collect());
    let ignore: Vec<String> = cfg.ignore.iter().map(to_base).collect();
    let utime_cfg: Option<String> = cfg.utime.as_ref().map(to_base);
    let key: Vec<String> = match &key_cfg {
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
    let mut ordered_alike = true;
    for k in &key {
        let (Some(bc), Some(oc)) = (base.column(k), other.column(k)) else {
            return Err(Error::schema(
                t,
                format!("key column `{k}` does not exist on both sides; fix key = [...] in its [[table]]"),
            ));
        };
        if order_class(bc) != order_class(oc) {
            ordered_alike = false;
            warnings.push(format!(
                "table `{t}`: key column `{k}` is {} {} on the {base_side} side and {} {} on the {other_side} side, so the \
                 servers order keys differently; full mode reads the {other_side} side by exact key and walks it separately \
                 for rows the {base_side} side lacks (exact, about twice the reads)",
                bc.data_type,
                bc.collation.as_deref().unwrap_or("binary"),
                oc.data_type,
                oc.collation.as_deref().unwrap_or("binary")
            ));
        }
        key_names.push(bc.name.clone());
    }
    if key_cfg.is_some() {
        // A configured key must name one row per value on both sides: `col = NULL` never matches, a
        // NULL bound ends a keyset walk early, and a duplicate key compares an arbitrary row.
        for (side, schema) in [(base_side, base), (other_side, other)] {
            if let Some(c) = key_names.iter().filter_map(|k| schema.column(k)).find(|c| c.nullable) {
                return Err(Error::schema(
                    t,
                    format!(
                        "key column `{}` may hold NULL on the {side} side; make it NOT NULL there or set key = [...] to columns that are",
                        c.name
                    ),
                ));
            }
            let covered = schema
                .unique_keys
                .iter()
                .any(|u| !u.is_empty() && u.iter().all(|c| key_names.iter().any(|k| k.eq_ignore_ascii_case(c))));
            if !covered {
                return Err(Error::schema(
                    t,
                    format!(
                        "key = [{}] is not unique on the {side} side (no primary key or unique index lies within its columns); \
                         add a UNIQUE index on them there or set key = [...] to columns one covers",
                        key_names.join(", ")
                    ),
                ));
            }
        }
    }
    for ig in &ignore {
        if base.column(ig).is_none() && other.column(ig).is_none() {
            warnings.push(format!("table `{t}`: ignore lists `{ig}`, which exists on neither side"));
        }
    }
    let is_key = |name: &str| key_names.iter().any(|k| k.eq_ignore_ascii_case(name));
    let is_ignored = |name: &str| ignore.iter().any(|c| c.eq_ignore_ascii_case(name));
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
    // Summaries need each value to print the same bytes on both sides: the same type and collation.
    let mut digest_cols = Vec::new();
    for name in key_names.iter().chain(&compared) {
        match (base.column(name), other.column(name)) {
            (Some(b), Some(o)) if b.column_type == o.column_type && b.collation == o.collation && b.kind == o.kind => {
                digest_cols.push(DigestColumn { name: name.as_str(), kind: b.kind, nullable: b.nullable || o.nullable })
            }
            _ => break,
        }
    }
    let summarisable = ordered_alike && digest_cols.len() == key_names.len() + compared.len();
    let digest = summarisable.then(|| row_digest_sql(dialect, &digest_cols));
    let other_names_of: Vec<String> =
        digest_cols.iter().map(|c| other_names.get(c.name).cloned().unwrap_or_else(|| c.name.to_string())).collect();
    let other_cols: Vec<DigestColumn> =
        digest_cols.iter().zip(&other_names_of).map(|(c, name)| DigestColumn { name, ..*c }).collect();
    let other_digest = summarisable.then(|| row_digest_sql(dialect, &other_cols));
    let integer_key = key_names.len() == 1 && base.column(&key_names[0]).is_some_and(|c| c.kind == Kind::Int);
    let utime = match &utime_cfg {
        None => None,
        Some(u) => match base.column(u) {
            Some(c) if matches!(c.kind, Kind::Int | Kind::DateTime) => {
                let step = match c.kind {
                    Kind::DateTime => 10i64.pow(6 - c.precision.unwrap_or(0).min(6)),
                    _ => 1,
                };
                Some(Utime { column: c.name.clone(), kind: c.kind, step })
            }
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
    let key_bit = key_names.iter().map(|k: &String| base.column(k).is_some_and(|c| c.data_type == "bit")).collect();
    let plan = TablePlan {
        name: cfg.table_on(base_side).to_string(),
        config_name: t.clone(),
        base_side,
        other_table: cfg.table_on(other_side).to_string(),
        other_names,
        key_bit,
        key: key_names,
        compared,
        kinds,
        integer_key,
        ordered_alike,
        utime,
        one_sided: one_sided.iter().map(|c| c.split(' ').next().unwrap_or(c).to_string()).collect(),
        loaded_at: std::time::Instant::now(),
        ddl_at: None,
        digest,
        other_digest,
    };
    Ok((plan, warnings))
}

/// The other side's schema with its columns renamed into the base side's names (by the [[table]]'s
/// `columns` map), and the renames made (base name → other-side name, as the other side spells it).
fn rename_into_base(
    cfg: &TableConfig,
    base_side: Side,
    other: &TableSchema,
) -> (TableSchema, std::collections::BTreeMap<String, String>) {
    let other_side = base_side.other();
    let mut renames = std::collections::BTreeMap::new();
    let mut rename = |name: &str| -> String {
        let base = cfg.column_on(base_side, &cfg.source_column(other_side, name));
        if !base.eq_ignore_ascii_case(name) {
            renames.insert(base.clone(), name.to_string());
        }
        base
    };
    let columns = other.columns.iter().map(|c| Column { name: rename(&c.name), ..c.clone() }).collect();
    let primary_key = other.primary_key.iter().map(|c| rename(c)).collect();
    let unique_keys = other.unique_keys.iter().map(|u| u.iter().map(|c| rename(c)).collect()).collect();
    (TableSchema { columns, primary_key, unique_keys }, renames)
}

/// How a server orders a key column's values: numbers numerically, temporal values in time, strings by
/// their collation (binary strings, ENUM, SET and BIT by their own rules). Equal classes order alike.
fn order_class(c: &Column) -> String {
    match c.kind {
        Kind::Int | Kind::Decimal | Kind::Float | Kind::Double => "number".into(),
        Kind::DateTime => "datetime".into(),
        Kind::Time => "time".into(),
        Kind::Json | Kind::Bytes => match c.data_type.as_str() {
            t @ ("enum" | "set" | "bit") => t.into(),
            _ => match &c.collation {
                Some(coll) => format!("text {}", coll.to_ascii_lowercase()),
                None => "binary".into(),
            },
        },
    }
}

fn same_names(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// The digest dialect both servers run ([`Dialect::of`] their versions), unless the environment variable
/// `BV_DIGEST_DIALECT=common` forces the common one: a troubleshooting switch that rules the MariaDB-only
/// functions out when summaries disagree where rows do not, and lets a test run both dialects on MariaDB.
fn dialect(base: &Db, other: &Db) -> Result<Dialect> {
    let dialect = match std::env::var("BV_DIGEST_DIALECT").ok().as_deref() {
        None | Some("") => Dialect::of(&[&base.version, &other.version]),
        Some("common") => Dialect::Common,
        Some(v) => {
            return Err(Error::Config(format!(
                "BV_DIGEST_DIALECT={v:?} is not a digest dialect: set it to `common` or leave it unset"
            )))
        }
    };
    tracing::debug!(?dialect, "summary digest dialect");
    Ok(dialect)
}

/// Loads both sides' schemas and plans every configured table.
pub async fn plan_all(cfg: &crate::config::Config, base: &Db, other: &Db) -> Result<Vec<TablePlan>> {
    let mut plans = Vec::with_capacity(cfg.tables.len());
    for t in &cfg.tables {
        let bs = load(base, t.table_on(base.side)).await?;
        let os = load(other, t.table_on(other.side)).await?;
        let (bs, os) = match (bs, os) {
            (Some(b), Some(o)) => (b, o),
            (b, _) => {
                let (side, db) = if b.is_none() { (base.side, base) } else { (other.side, other) };
                return Err(Error::schema(
                    t.table_on(side),
                    format!(
                        "does not exist in database `{}` on the {side} side; create it or fix the [[table]] name{}",
                        db.database,
                        if side == Side::Target { " (or its target_name)" } else { "" }
                    ),
                ));
            }
        };
        let (plan, warnings) = plan_with(t, base.side, &bs, &os, dialect(base, other)?)?;
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
        Column {
            name: name.into(),
            data_type: dt.into(),
            column_type: dt.into(),
            kind: Kind::from_data_type(dt),
            collation: None,
            nullable: false,
            precision: None,
        }
    }

    fn table(name: &str) -> TableConfig {
        TableConfig {
            name: name.into(),
            key: None,
            utime: None,
            ignore: vec![],
            target_name: None,
            columns: Default::default(),
        }
    }

    #[test]
    fn plan_skips_one_sided_and_ignored_columns() {
        let base = TableSchema {
            columns: vec![col("id", "int"), col("a", "varchar"), col("b", "json"), col("x", "int")],
            primary_key: vec!["id".into()],
            unique_keys: vec![vec!["id".into()]],
        };
        let other = TableSchema {
            columns: vec![col("id", "bigint"), col("a", "varchar"), col("b", "longtext"), col("y", "int")],
            primary_key: vec!["id".into()],
            unique_keys: vec![vec!["id".into()]],
        };
        let mut t = table("t");
        t.ignore = vec!["a".into()];
        let (p, w) = plan(&t, Side::Source, &base, &other).unwrap();
        assert_eq!(p.compared, vec!["b"]);
        assert_eq!(p.kinds, vec![(Kind::Json, Kind::Bytes)]);
        assert!(p.integer_key);
        assert!(p.ordered_alike, "INT and BIGINT order alike");
        assert!(w[0].contains("x (only on source)") && w[0].contains("y (only on target)"), "{w:?}");
    }

    #[test]
    fn renamed_tables_and_columns_are_planned_in_the_base_sides_names() {
        let source = TableSchema {
            columns: vec![col("id", "int"), col("email", "varchar"), col("nick", "varchar")],
            primary_key: vec!["id".into()],
            unique_keys: vec![vec!["id".into()]],
        };
        let target = TableSchema {
            columns: vec![col("id", "int"), col("mail", "varchar"), col("nick", "varchar")],
            primary_key: vec!["id".into()],
            unique_keys: vec![vec!["id".into()]],
        };
        let mut t = table("users");
        t.target_name = Some("users_v2".into());
        t.columns.insert("email".into(), "mail".into());
        t.ignore = vec!["nick".into()];
        let (p, w) = plan(&t, Side::Source, &source, &target).unwrap();
        assert!(w.is_empty(), "renamed columns are not one-sided: {w:?}");
        assert_eq!((p.name.as_str(), p.other_table.as_str()), ("users", "users_v2"));
        assert_eq!(p.compared, vec!["email"]);
        assert_eq!(p.select_list(Side::Target), "`id`, `mail`");
        assert_eq!(p.select_list(Side::Source), "`id`, `email`");
        // Writes flipped: the target is the base; events and plans use its names.
        let (p, _) = plan(&t, Side::Target, &target, &source).unwrap();
        assert_eq!((p.name.as_str(), p.other_table.as_str(), p.config_name.as_str()), ("users_v2", "users", "users"));
        assert_eq!(p.compared, vec!["mail"]);
        assert_eq!(p.column_on(Side::Source, "mail"), "email");
    }

    #[test]
    fn missing_or_different_keys_are_definite_errors() {
        let nokey = TableSchema { columns: vec![col("a", "int")], primary_key: vec![], unique_keys: vec![] };
        let e = plan(&table("t"), Side::Source, &nokey, &nokey).unwrap_err().to_string();
        assert!(e.contains("no primary key") && e.contains("key = ["), "{e}");
        let k1 = TableSchema {
            columns: vec![col("a", "int"), col("b", "int")],
            primary_key: vec!["a".into()],
            unique_keys: vec![vec!["a".into()]],
        };
        let k2 = TableSchema {
            columns: vec![col("a", "int"), col("b", "int")],
            primary_key: vec!["a".into(), "b".into()],
            unique_keys: vec![vec!["a".into(), "b".into()]],
        };
        let e = plan(&table("t"), Side::Target, &k1, &k2).unwrap_err().to_string();
        assert!(e.contains("differ between sides") && e.contains("target (a)"), "{e}");
        let mut t = table("t");
        t.key = Some(vec!["zz".into()]);
        assert!(plan(&t, Side::Source, &k1, &k2).unwrap_err().to_string().contains("`zz`"));
    }

    #[test]
    fn a_configured_key_must_be_not_null_and_unique_on_both_sides() {
        let with = |nullable: bool, unique: Vec<Vec<String>>| TableSchema {
            columns: vec![col("id", "int"), Column { nullable, ..col("email", "varchar") }, col("v", "int")],
            primary_key: vec!["id".into()],
            unique_keys: unique,
        };
        let pk = vec![vec!["id".to_string()]];
        let uq = vec![vec!["id".to_string()], vec!["email".to_string()]];
        let mut t = table("t");
        t.key = Some(vec!["email".into()]);
        assert!(plan(&t, Side::Source, &with(false, uq.clone()), &with(false, uq.clone())).is_ok());
        let e = plan(&t, Side::Source, &with(false, uq.clone()), &with(true, uq.clone())).unwrap_err().to_string();
        assert!(e.contains("`email` may hold NULL on the target side") && e.contains("NOT NULL"), "{e}");
        let e = plan(&t, Side::Source, &with(false, pk.clone()), &with(false, uq.clone())).unwrap_err().to_string();
        assert!(e.contains("not unique on the source side") && e.contains("UNIQUE index"), "{e}");
        // Another collation on one side: exact, but not by shared ranges.
        let coll = |c: &str| TableSchema {
            columns: vec![Column { collation: Some(c.into()), ..col("email", "varchar") }],
            primary_key: vec!["email".into()],
            unique_keys: vec![vec!["email".into()]],
        };
        let (p, w) = plan(&table("t"), Side::Source, &coll("utf8mb4_general_ci"), &coll("utf8mb4_bin")).unwrap();
        assert!(!p.ordered_alike && w[0].contains("utf8mb4_bin on the target side"), "{w:?}");
        assert!(plan(&table("t"), Side::Source, &coll("utf8mb4_bin"), &coll("utf8mb4_bin")).unwrap().0.ordered_alike);
        // A key wider than a unique index is unique too.
        t.key = Some(vec!["email".into(), "v".into()]);
        assert!(plan(&t, Side::Source, &with(false, uq.clone()), &with(false, uq)).is_ok());
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

    /// A table's plan by its base-side name or its `[[table]] name`.
    pub fn get(&self, table: &str) -> Option<std::sync::Arc<TablePlan>> {
        let plans = self.plans.read().unwrap_or_else(|e| e.into_inner());
        plans.iter().find(|p| p.name == table).or_else(|| plans.iter().find(|p| p.config_name == table)).cloned()
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
    let Some(tc) = cfg.tables.iter().find(|t| t.name == table || t.table_on(base.side) == table) else {
        return Ok(vec![]);
    };
    let (Some(bs), Some(os)) = (load(base, tc.table_on(base.side)).await?, load(other, tc.table_on(other.side)).await?)
    else {
        return Err(Error::schema(table, "disappeared from a side after DDL; recreate it or remove its [[table]]"));
    };
    let (mut plan, warnings) = plan_with(tc, base.side, &bs, &os, dialect(base, other)?)?;
    plan.ddl_at = ddl_at.or_else(|| plans.get(table).and_then(|p| p.ddl_at));
    plans.replace(plan);
    Ok(warnings)
}
