//! Where binlog mode starts: the checkpoint if there is one, else `binlog.start` (`now`, `earliest`,
//! `file:pos`, a MariaDB GTID position, or a time), and the checks that the position is still on the server.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mysql::db::Db;
use crate::mysql::position::{BinlogPos, Checkpoint, CheckpointRecord, GtidSet, MariaGtids};
use mysql_async::Value;

/// A resolved start: the position to request, the GTID state there (MariaDB), and the time before which
/// changes are skipped (starting at a time).
#[derive(Debug, Clone)]
pub struct Start {
    pub pos: BinlogPos,
    pub gtids: Option<MariaGtids>,
    /// The MySQL executed GTID set there (MySQL).
    pub mysql_gtids: Option<GtidSet>,
    /// Start by GTID (MariaDB `@slave_connect_state`, MySQL COM_BINLOG_DUMP_GTID) instead of file and offset.
    pub by_gtid: bool,
    /// Unix seconds: changes of transactions before this are not checked.
    pub skip_before: Option<u32>,
    pub mariadb: bool,
}

/// A start requested by the user (config or API), before resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPoint {
    Now,
    Earliest,
    Pos(BinlogPos),
    Gtid(MariaGtids),
    /// A MySQL GTID set: start after every transaction in it.
    GtidSet(GtidSet),
    /// milliseconds since the epoch
    Time(u64),
}

impl StartPoint {
    /// Parses `binlog.start`.
    pub fn parse(s: &str) -> Result<StartPoint> {
        let s = s.trim();
        let bad = || {
            Error::Config(format!(
                "binlog.start = \"{s}\" is not understood; use \"now\", \"earliest\", \"mysql-bin.000003:4\", a MariaDB GTID position like \"0-1-100\", a MySQL GTID set like \"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77\", an RFC 3339 time or milliseconds since the epoch"
            ))
        };
        Ok(match s {
            "now" | "" => StartPoint::Now,
            "earliest" => StartPoint::Earliest,
            _ if s.bytes().all(|c| c.is_ascii_digit()) => StartPoint::Time(s.parse().map_err(|_| bad())?),
            _ => {
                if let Ok(t) = humantime::parse_rfc3339_weak(s) {
                    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?.as_millis() as u64;
                    StartPoint::Time(ms)
                } else if let Some(g) = GtidSet::parse(s) {
                    // Before file:pos: `uuid:5` would otherwise read as a file named by a UUID.
                    StartPoint::GtidSet(g)
                } else if let Some(p) = BinlogPos::parse(s) {
                    StartPoint::Pos(p)
                } else if let Some(g) = MariaGtids::parse(s) {
                    StartPoint::Gtid(g)
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

/// The binary logs on the server, oldest first.
pub async fn binary_logs(db: &Db) -> Result<Vec<String>> {
    let rows = db.rows("SHOW BINARY LOGS", vec![], "listing binary logs").await.map_err(|e| match e {
        Error::Db { source: mysql_async::Error::Server(s), .. } if s.code == 1381 => Error::Binlog(
            "binary logging is off on the base; start it with log_bin and binlog_format=ROW (see `doctor`)".into(),
        ),
        e => e,
    })?;
    Ok(rows.iter().filter_map(|r| r.first()).map(text).collect())
}

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => crate::key::KeyVal::from(other).to_string(),
    }
}

/// The base's binlog position now (`SHOW MASTER STATUS`, or `SHOW BINARY LOG STATUS` on MySQL 8.4+,
/// which dropped the old name), with MySQL's executed GTID set when the server reports one.
pub async fn current_position(db: &Db) -> Result<(BinlogPos, Option<GtidSet>)> {
    let rows = match db.rows("SHOW MASTER STATUS", vec![], "reading the binlog position").await {
        Err(Error::Db { source: mysql_async::Error::Server(s), .. }) if s.code == 1064 => {
            db.rows("SHOW BINARY LOG STATUS", vec![], "reading the binlog position").await?
        }
        other => other?,
    };
    let row =
        rows.first().ok_or_else(|| Error::Binlog("the base reports no binlog position; is log_bin on?".into()))?;
    let file = row.first().map(text).unwrap_or_default();
    let pos = row.get(1).map(text).unwrap_or_default();
    let pos: u64 = pos.parse().map_err(|_| {
        Error::Binlog(format!("the base reports binlog position `{file}:{pos}`, which is not a number"))
    })?;
    // MySQL: Executed_Gtid_Set, the fifth column, is the set at that position.
    let gtids = row.get(4).map(text).and_then(|g| GtidSet::parse(&g.replace('\n', "")));
    Ok((BinlogPos::new(file, pos), gtids))
}

async fn is_mariadb(db: &Db) -> Result<bool> {
    let rows = db.rows("SELECT VERSION()", vec![], "reading the server version").await?;
    Ok(rows.first().and_then(|r| r.first()).map(text).is_some_and(|v| v.contains("MariaDB")))
}

/// The GTID position at a file position (MariaDB's BINLOG_GTID_POS).
async fn gtid_at(db: &Db, pos: &BinlogPos) -> Option<MariaGtids> {
    let rows = db
        .rows(
            "SELECT BINLOG_GTID_POS(?, ?)",
            vec![pos.file.clone().into(), pos.pos.into()],
            "reading the GTID position",
        )
        .await
        .ok()?;
    rows.first().and_then(|r| r.first()).map(text).and_then(|s| MariaGtids::parse(&s))
}

/// Resolves where to start: checkpoint, else `override_start`, else `binlog.start`.
pub async fn resolve_start(engine: &Engine, override_start: Option<StartPoint>) -> Result<Start> {
    let db = &engine.base;
    let mariadb = is_mariadb(db).await?;
    let logs = binary_logs(db).await?;
    let Some(first) = logs.first().cloned() else {
        return Err(Error::Binlog("the base lists no binary logs; is log_bin on?".into()));
    };
    let mut start = Start {
        pos: BinlogPos::new(first, 4),
        gtids: None,
        mysql_gtids: None,
        by_gtid: false,
        skip_before: None,
        mariadb,
    };
    if let Some(Checkpoint { pos, gtid }) = saved_checkpoint(engine)? {
        ensure_present(&logs, &pos)?;
        start.gtids = gtid.as_deref().and_then(MariaGtids::parse);
        start.mysql_gtids = gtid.as_deref().and_then(GtidSet::parse);
        start.pos = pos;
        return Ok(start);
    }
    let point = match override_start {
        Some(p) => p,
        None => StartPoint::parse(&engine.cfg.binlog.start)?,
    };
    match point {
        StartPoint::Earliest => {}
        StartPoint::Now => {
            let (pos, gtids) = current_position(db).await?;
            start.pos = pos;
            if !mariadb {
                start.mysql_gtids = gtids;
            }
        }
        StartPoint::Pos(p) => {
            ensure_present(&logs, &p)?;
            start.pos = p;
        }
        StartPoint::Gtid(g) => {
            if !mariadb {
                return Err(Error::Config(
                    "binlog.start as a GTID position is supported on MariaDB; on MySQL give file:pos".into(),
                ));
            }
            start.gtids = Some(g);
            start.by_gtid = true;
            return Ok(start);
        }
        StartPoint::GtidSet(g) => {
            if mariadb {
                return Err(Error::Config(
                    "binlog.start is a MySQL GTID set, but the base is MariaDB; give a MariaDB GTID position like \"0-1-100\" or file:pos".into(),
                ));
            }
            start.mysql_gtids = Some(g);
            start.by_gtid = true;
            return Ok(start);
        }
        StartPoint::Time(ms) => start.skip_before = Some((ms / 1000) as u32),
    }
    if mariadb && start.gtids.is_none() {
        start.gtids = gtid_at(db, &start.pos).await;
    }
    Ok(start)
}

fn ensure_present(logs: &[String], pos: &BinlogPos) -> Result<()> {
    if logs.iter().any(|l| l == &pos.file) {
        return Ok(());
    }
    let oldest = logs.first().cloned().unwrap_or_default();
    if pos.suffix() < BinlogPos::new(oldest.clone(), 4).suffix() {
        Err(Error::BinlogGone {
            file: pos.file.clone(),
            detail: format!("the oldest binary log on the server is {oldest}"),
        })
    } else {
        Err(Error::Binlog(format!(
            "binlog file {} is not on the server (it has {}); fix binlog.start or the state directory",
            pos.file,
            logs.join(", ")
        )))
    }
}

/// State-store name of the binlog checkpoint.
pub const CHECKPOINT: &str = "binlog/checkpoint";

/// The saved checkpoint, if any.
pub fn saved_checkpoint(engine: &Engine) -> Result<Option<Checkpoint>> {
    Ok(engine.store.get::<CheckpointRecord>(CHECKPOINT)?.map(|CheckpointRecord::V1(c)| c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_start_form() {
        assert_eq!(StartPoint::parse("now").unwrap(), StartPoint::Now);
        assert_eq!(StartPoint::parse("earliest").unwrap(), StartPoint::Earliest);
        assert_eq!(
            StartPoint::parse("mysql-bin.000003:4").unwrap(),
            StartPoint::Pos(BinlogPos::new("mysql-bin.000003", 4))
        );
        assert_eq!(StartPoint::parse("1763719200123").unwrap(), StartPoint::Time(1_763_719_200_123));
        assert_eq!(StartPoint::parse("2026-11-21T10:00:00Z").unwrap(), StartPoint::Time(1_795_255_200_000));
        assert!(matches!(StartPoint::parse("0-1-100").unwrap(), StartPoint::Gtid(_)));
        assert!(matches!(
            StartPoint::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77").unwrap(),
            StartPoint::GtidSet(_)
        ));
        assert!(matches!(StartPoint::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:5").unwrap(), StartPoint::GtidSet(_)));
        let e = StartPoint::parse("yesterday").unwrap_err().to_string();
        assert!(e.contains("binlog.start") && e.contains("earliest"), "{e}");
    }
}
