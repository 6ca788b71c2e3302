//! Connection pools and the reads every mode shares: keyset ranges and batches of keys.
//!
//! SQL is built only from quoted identifiers and `?` placeholders; values always travel as bound
//! parameters of prepared statements, which also gives typed values (binary protocol) to the compare core.
//! Ranges use the expanded form of the tuple predicate (`a > ? OR (a = ? AND b > ?)`) because MySQL uses
//! the key's index for it, which it does not reliably do for `(a, b) > (?, ?)`.

use crate::config::Endpoint;
use crate::error::{Error, Result, Side};
use crate::key::Key;
use crate::mysql::tls::{Connector, Link};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Value};

/// One row as read: the key columns first, then the compared columns, in plan order.
pub type Row = Vec<Value>;

pub struct Db {
    pub side: Side,
    pub database: String,
    pub addr: String,
    /// How the connections are secured (what doctor reports).
    pub link: Link,
    /// The server's `VERSION()` (which digest functions it has).
    pub version: String,
    pool: Pool,
    /// Statements run and rows read through this pool (the load a mode puts on a server).
    pub queries: std::sync::atomic::AtomicU64,
    pub rows_read: std::sync::atomic::AtomicU64,
}

impl Db {
    /// Opens a pool of at most `max_conns` connections with the side's TLS settings and checks that the
    /// server answers.
    pub async fn connect(side: Side, ep: &Endpoint, max_conns: usize) -> Result<Db> {
        let connector = Connector::new(side, ep)?;
        let constraints = PoolConstraints::new(0, max_conns.max(1)).unwrap_or_default();
        let tune = |opts: OptsBuilder| {
            opts
                // TIMESTAMP values must be read in one zone on both sides, or equal instants compare unequal.
                .init(vec!["SET time_zone = '+00:00'"])
                .stmt_cache_size(256)
                .max_allowed_packet(Some(1 << 30))
                // Idle connections stay open (a minute), so a query reuses one with its prepared
                // statements instead of connecting anew: with the default (0) every connection went back
                // closed, and each check paid a connect, a handshake and a prepare on both servers. No
                // reset on return: it would drop the prepared statements and the time zone set above
                // (`init` runs at connect only), and these connections keep no other session state.
                .pool_opts(
                    PoolOpts::default()
                        .with_constraints(constraints)
                        .with_inactive_connection_ttl(std::time::Duration::from_secs(60))
                        .with_reset_connection(false),
                )
        };
        let (pool, link) = connector
            .establish(|opts| async move {
                let pool = Pool::new(tune(opts));
                match pool.get_conn().await {
                    Ok(conn) => {
                        drop(conn);
                        Ok(pool)
                    }
                    Err(e) => {
                        let _ = pool.disconnect().await;
                        Err(e)
                    }
                }
            })
            .await?;
        let mut db = Db {
            side,
            database: connector.database().to_string(),
            addr: connector.addr.clone(),
            link,
            version: String::new(),
            pool,
            queries: Default::default(),
            rows_read: Default::default(),
        };
        let version = db.rows("SELECT VERSION()", vec![], "reading the server version").await?;
        if let Some(Value::Bytes(v)) = version.first().and_then(|r| r.first()) {
            db.version = String::from_utf8_lossy(v).into_owned();
        }
        Ok(db)
    }

    pub async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(|e| Error::db(self.side, "getting a connection", e))
    }

    /// Runs a prepared statement and returns its rows as value vectors.
    pub async fn rows(&self, sql: &str, params: Vec<Value>, context: &str) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        self.each(sql, params, context, |r| rows.push(r)).await?;
        Ok(rows)
    }

    /// Runs a prepared statement and hands each row to `f` as it arrives, without collecting them: full
    /// mode matches a streamed page row by row, so a page never sits in memory twice. Returns the number
    /// of rows.
    pub async fn each(&self, sql: &str, params: Vec<Value>, context: &str, mut f: impl FnMut(Row)) -> Result<usize> {
        let mut conn = self.conn().await?;
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let err = |e| Error::db(self.side, context.to_string(), e);
        let mut n = 0;
        conn.exec_iter(sql, params)
            .await
            .map_err(err)?
            .for_each_and_drop(|r| {
                n += 1;
                f(r.unwrap())
            })
            .await
            .map_err(err)?;
        self.queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.rows_read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        // What each query on a side was for (`BV_LOG=binlog_validator::mysql::db=debug`): how the load a
        // mode puts on the base is traced to its purpose.
        tracing::debug!(side = %self.side, context, rows = n, "query");
        Ok(n)
    }

    pub async fn disconnect(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// `(a, b, c) OP (?, ?, ?)` expanded: `a OP1 ? OR (a = ? AND b OP1 ?) OR (a = ? AND b = ? AND c OP_LAST ?)`,
/// where `op` is used on every prefix and `op_last` on the full tuple (`>`/`>` or `<`/`<=`).
pub fn tuple_predicate(cols: &[String], op: &str, op_last: &str) -> String {
    let mut terms = Vec::with_capacity(cols.len());
    for i in 0..cols.len() {
        let mut parts: Vec<String> = cols[..i].iter().map(|c| format!("{} = ?", quote_ident(c))).collect();
        let o = if i + 1 == cols.len() { op_last } else { op };
        parts.push(format!("{} {o} ?", quote_ident(&cols[i])));
        terms.push(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" AND ")) });
    }
    terms.join(" OR ")
}

/// Parameters in the order [`tuple_predicate`] consumes them.
pub fn push_tuple_params(params: &mut Vec<Value>, key: &Key) {
    push_tuple_values(params, &key.params().collect::<Vec<_>>());
}

/// [`push_tuple_params`] for a key's values already bound ([`TablePlan::key_params`]).
pub fn push_tuple_values(params: &mut Vec<Value>, vals: &[Value]) {
    for i in 0..vals.len() {
        params.extend(vals[..=i].iter().cloned());
    }
}

/// Quotes an identifier with backticks, doubling any backtick inside it.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanded_tuple_predicate() {
        let cols = vec!["a".to_string(), "b`x".to_string()];
        assert_eq!(tuple_predicate(&cols, ">", ">"), "`a` > ? OR (`a` = ? AND `b``x` > ?)");
        assert_eq!(tuple_predicate(&cols[..1], "<", "<="), "`a` <= ?");
        let mut p = Vec::new();
        push_tuple_params(&mut p, &Key(vec![crate::key::KeyVal::Int(1), crate::key::KeyVal::Int(2)]));
        assert_eq!(p, vec![Value::Int(1), Value::Int(1), Value::Int(2)]);
    }
}
