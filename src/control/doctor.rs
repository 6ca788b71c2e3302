//! Preflight checks: connectivity and TLS, privileges, binlog settings and table keys. Each check reports the
//! setting, what is expected and what was found, and for a failure how to fix it.

use crate::config::Config;
use crate::error::{Error, Side};
use crate::mysql::db::{quote_ident, Db};
use crate::mysql::schema;
use mysql_async::Value;

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// what was found (ok) or what is wrong (failure)
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check { name: name.into(), ok: true, detail: detail.into(), fix: None }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), ok: false, detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", if self.ok { "ok  " } else { "FAIL" }, self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// The binlog settings binlog mode needs on the base: (variable, expected value, fix).
const BINLOG_SETTINGS: &[(&str, &str, &str)] = &[
    ("log_bin", "ON", "start the server with log_bin (log-bin=mysql-bin in my.cnf) and restart it"),
    ("binlog_format", "ROW", "SET GLOBAL binlog_format = 'ROW' and put binlog_format=ROW in my.cnf"),
    ("binlog_row_image", "FULL", "SET GLOBAL binlog_row_image = 'FULL' and put binlog_row_image=FULL in my.cnf"),
    (
        "binlog_row_metadata",
        "FULL",
        "SET GLOBAL binlog_row_metadata = 'FULL' and put binlog_row_metadata=FULL in my.cnf",
    ),
];

async fn variable(db: &Db, name: &str) -> Option<String> {
    // `name` comes from this module's constant list, never from input.
    let rows = db.rows(&format!("SELECT @@GLOBAL.{name}"), vec![], "reading a variable").await.ok()?;
    match rows.first()?.first()? {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(switch(i128::from(*i))),
        Value::UInt(u) => Some(switch(i128::from(*u))),
        _ => None,
    }
}

/// Boolean server variables read as numbers: 1 is ON, 0 is OFF.
fn switch(n: i128) -> String {
    match n {
        1 => "ON".into(),
        0 => "OFF".into(),
        n => n.to_string(),
    }
}

/// Runs every check. `binlog` adds the base-side binlog checks that binlog mode needs.
pub async fn run(cfg: &Config, binlog: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    let base_side = cfg.base_side();
    let mut dbs: Vec<Option<Db>> = Vec::new();
    for side in [base_side, base_side.other()] {
        let role = if side == base_side { "base" } else { "other side" };
        match Db::connect(side, cfg.endpoint(side), 2).await {
            Ok(db) => {
                let version = variable(&db, "version").await.unwrap_or_default();
                checks.push(Check::ok(format!("{side} connection"), format!("{} ({role}), server {version}", db.addr)));
                checks.push(tls_check(&db).await);
                dbs.push(Some(db));
            }
            Err(e) => {
                // The connect error's hint names the setting to change (url, ssl_mode, ssl_ca, ...).
                let (detail, fix) = match &e {
                    Error::Connect { addr, source, hint, .. } => {
                        (format!("{addr}: {}", crate::error::describe(source)), hint.clone())
                    }
                    other => (other.to_string(), format!("fix {side}.url or start the server")),
                };
                checks.push(Check::fail(format!("{side} connection"), detail, fix));
                dbs.push(None);
            }
        }
    }
    if binlog {
        if let Some(base) = &dbs[0] {
            for (var, expected, fix) in BINLOG_SETTINGS {
                let actual = variable(base, var).await;
                let name = format!("{base_side} {var}");
                match actual {
                    Some(a) if a.eq_ignore_ascii_case(expected) => checks.push(Check::ok(name, a)),
                    Some(a) => checks.push(Check::fail(name, format!("is {a}, expected {expected}"), *fix)),
                    None => checks.push(Check::fail(name, format!("not available, expected {expected}"), *fix)),
                }
            }
            checks.push(replication_grant(base, base_side).await);
        }
    }
    if let (Some(base), Some(other)) = (&dbs[0], &dbs[1]) {
        for t in &cfg.tables {
            checks.push(table_check(cfg, base, other, t).await);
        }
    }
    for db in dbs.into_iter().flatten() {
        db.disconnect().await;
    }
    checks
}

/// Whether the side's connections are encrypted, the TLS version the server reports for this session,
/// and what was verified about the server.
async fn tls_check(db: &Db) -> Check {
    let name = format!("{} tls", db.side);
    let version = match db.rows("SHOW SESSION STATUS LIKE 'Ssl_version'", vec![], "reading Ssl_version").await {
        Ok(rows) => match rows.first().and_then(|r| r.get(1)) {
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        },
        Err(e) => return Check::fail(name, e.to_string(), "let the user run SHOW SESSION STATUS"),
    };
    if db.link.encrypted() && version.is_empty() {
        // mysql_async prefers a local server's Unix socket, which it does not encrypt.
        return Check::ok(
            name,
            format!(
                "not encrypted: connected through the local server's Unix socket (ssl_mode = {}); set {}.ssl_mode = \"required\" or stricter to keep TLS",
                db.link.tls.mode, db.side
            ),
        );
    }
    Check::ok(name, db.link.describe(&version))
}

async fn replication_grant(base: &Db, side: Side) -> Check {
    let name = format!("{side} replication privileges");
    match base.rows("SHOW GRANTS", vec![], "reading grants").await {
        Ok(rows) => {
            let grants: String = rows
                .iter()
                .filter_map(|r| match r.first() {
                    Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).to_uppercase()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            if grants.contains("ALL PRIVILEGES ON *.*") || grants.contains("REPLICATION SLAVE") {
                Check::ok(name, "REPLICATION SLAVE granted")
            } else {
                Check::fail(
                    name,
                    "the user lacks REPLICATION SLAVE",
                    "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the validator's user",
                )
            }
        }
        Err(e) => Check::fail(name, e.to_string(), "let the user run SHOW GRANTS"),
    }
}

async fn table_check(cfg: &Config, base: &Db, other: &Db, t: &crate::config::TableConfig) -> Check {
    let name = format!("table {}", t.name);
    let (bs, os) =
        match (schema::load(base, t.table_on(base.side)).await, schema::load(other, t.table_on(other.side)).await) {
            (Ok(Some(b)), Ok(Some(o))) => (b, o),
            (Ok(None), _) => {
                return Check::fail(
                    name,
                    format!("missing on the {} side", base.side),
                    "create it or fix the [[table]] name",
                )
            }
            (_, Ok(None)) => {
                return Check::fail(
                    name,
                    format!("missing on the {} side (as `{}`)", other.side, t.table_on(other.side)),
                    "create it or fix the [[table]] name (target_name for the target side's)",
                )
            }
            (Err(e), _) | (_, Err(e)) => {
                return Check::fail(name, e.to_string(), "grant SELECT on information_schema and the table")
            }
        };
    let plan = match schema::plan(t, cfg.base_side(), &bs, &os) {
        Ok((p, _)) => p,
        Err(e) => return Check::fail(name, e.to_string(), "see the message"),
    };
    for db in [base, other] {
        let sql = format!("SELECT {} FROM {} LIMIT 0", plan.select_list(db.side), quote_ident(plan.table_on(db.side)));
        if let Err(e) = db.rows(&sql, vec![], "reading the table").await {
            return Check::fail(name, e.to_string(), format!("GRANT SELECT ON the table TO the {} user", db.side));
        }
    }
    let mut mapping = String::new();
    if plan.other_table != plan.name {
        mapping.push_str(&format!("; {} side `{}` = {} side `{}`", base.side, plan.name, other.side, plan.other_table));
    }
    if !plan.other_names.is_empty() {
        let cols: Vec<String> = plan.other_names.iter().map(|(b, o)| format!("{b} = {o}")).collect();
        mapping.push_str(&format!("; columns ({} = {}): {}", base.side, other.side, cols.join(", ")));
    }
    Check::ok(name, format!("key ({}), {} compared columns{mapping}", plan.key.join(", "), plan.compared.len()))
}
