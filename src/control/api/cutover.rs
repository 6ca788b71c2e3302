//! The cutover gate: "is it safe to switch now?". Waits until binlog mode's validated-through position
//! has reached the position asked for (`now` = the base's position at the moment of the call), re-checks
//! every row still open in the inconsistency ledger, and answers clean (nothing open) or the open rows.

use crate::deliver::ledger::OpenRow;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mysql::position::{BinlogPos, GtidSet, MariaGtids, Validated};
use std::time::Duration;

/// How far validation must have come.
#[derive(Clone, Debug, PartialEq)]
pub enum Until {
    /// the base's binlog position at the moment of the call
    Now,
    Pos(BinlogPos),
    /// a MariaDB GTID position: every domain at or past its sequence number
    Maria(MariaGtids),
    /// a MySQL GTID set: every transaction in it
    Mysql(GtidSet),
}

impl Until {
    pub fn parse(s: &str) -> std::result::Result<Until, String> {
        let s = s.trim();
        if s.is_empty() || s == "now" {
            return Ok(Until::Now);
        }
        if let Some(g) = GtidSet::parse(s) {
            return Ok(Until::Mysql(g));
        }
        if let Some(p) = BinlogPos::parse(s) {
            return Ok(Until::Pos(p));
        }
        if let Some(g) = MariaGtids::parse(s) {
            return Ok(Until::Maria(g));
        }
        Err(format!(
            "until = \"{s}\" is not understood; use \"now\", a binlog position like \"mysql-bin.000003:4\", a MariaDB GTID position like \"0-1-100\" or a MySQL GTID set"
        ))
    }

    /// Whether validation at `v` has reached this point.
    pub fn reached_by(&self, v: &Validated) -> bool {
        match self {
            Until::Now => false,
            Until::Pos(p) => v.at.pos >= *p,
            Until::Maria(want) => {
                let Some(have) = v.at.gtid.as_deref().and_then(MariaGtids::parse) else { return false };
                want.0.iter().all(|(d, (_, seq))| have.0.get(d).is_some_and(|(_, s)| s >= seq))
            }
            Until::Mysql(want) => {
                let Some(have) = v.at.gtid.as_deref().and_then(GtidSet::parse) else { return false };
                want.0.iter().all(|(uuid, ranges)| {
                    let held = have.0.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
                    ranges.iter().all(|(a, b)| held.iter().any(|(x, y)| x <= a && b <= y))
                })
            }
        }
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Now => f.write_str("now"),
            Until::Pos(p) => write!(f, "{p}"),
            Until::Maria(g) => write!(f, "{g}"),
            Until::Mysql(g) => write!(f, "{g}"),
        }
    }
}

/// The gate's answer once validation has reached the point asked for.
#[derive(Debug)]
pub struct Answer {
    pub until: Until,
    /// Where validation stood: binlog mode's validated-through position, or (poll mode) the poll round
    /// that caught up with every table after the call.
    pub validated: Reached,
    pub open: Vec<OpenRow>,
    /// reported rows the ledger could not record (it was full): never clean while any
    pub untracked: u64,
}

impl Answer {
    pub fn clean(&self) -> bool {
        self.open.is_empty() && self.untracked == 0
    }
}

/// What validation had reached when the gate answered.
#[derive(Debug, Clone)]
pub enum Reached {
    Binlog(Validated),
    /// A poll round that started at `started_ms` (after the call) and caught up with every table.
    Poll {
        started_ms: u64,
    },
}

impl Reached {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Reached::Binlog(v) => v.to_json(),
            Reached::Poll { started_ms } => serde_json::json!({
                "position": format!("poll round of {}", crate::clock::rfc3339_ms(*started_ms)),
                "poll_round_started": crate::clock::rfc3339_ms(*started_ms),
            }),
        }
    }
}

/// Why the gate could not answer.
#[derive(Debug)]
pub enum NotReached {
    /// The timeout passed first: what it waited for and where validation is.
    Timeout {
        until: Until,
        validated: Option<Validated>,
    },
    Failed(Error),
}

/// The base's binlog position now.
async fn base_position(engine: &Engine) -> Result<BinlogPos> {
    Ok(crate::feed::binlog::current_position(&engine.base).await?.0)
}

/// Waits (at most `timeout`) until every change up to `until` has a final verdict, then answers from
/// the ledger after re-checking its open rows once. In poll mode (`poll`), only `now` can be asked: it
/// waits for a poll round that started after the call and caught up with every table (every table's
/// cursor at or past the base's newest utime then), with no poll-mode mismatch still in its settle window
/// from that round.
pub async fn gate(
    engine: &Engine,
    until: Until,
    timeout: Duration,
    poll: bool,
) -> std::result::Result<Answer, NotReached> {
    if poll {
        return poll_gate(engine, until, timeout).await;
    }
    let until = match until {
        Until::Now => Until::Pos(base_position(engine).await.map_err(NotReached::Failed)?),
        u => u,
    };
    let mut rx = engine.validated.subscribe();
    // The watch's guard is not held across an await: the value is cloned inside.
    let wait = async { rx.wait_for(|v| v.as_ref().is_some_and(|v| until.reached_by(v))).await.map(|v| v.clone()) };
    let reached = tokio::time::timeout(timeout, wait).await;
    let validated = match reached {
        Ok(Ok(v)) => v,
        _ => {
            let validated = engine.validated.borrow().clone();
            return Err(NotReached::Timeout { until, validated });
        }
    };
    let Some(validated) = validated else {
        return Err(NotReached::Timeout { until, validated: None });
    };
    answer(engine, until, Reached::Binlog(validated)).await
}

/// The gate's answer once validation has reached `until`: every open ledger row is re-checked once (rows
/// fixed since their report, with no change on the base since, close here), then what stays open.
async fn answer(engine: &Engine, until: Until, validated: Reached) -> std::result::Result<Answer, NotReached> {
    engine.settle.recheck_open_rows().await.map_err(NotReached::Failed)?;
    let ledger = engine.settle.ledger();
    let open = ledger.open_rows().map_err(NotReached::Failed)?;
    let untracked = ledger.untracked().map_err(NotReached::Failed)?;
    Ok(Answer { until, validated, open, untracked })
}

async fn poll_gate(engine: &Engine, until: Until, timeout: Duration) -> std::result::Result<Answer, NotReached> {
    if until != Until::Now {
        return Err(NotReached::Failed(Error::Config(
            "poll mode has no binlog positions: ask for until = \"now\"".into(),
        )));
    }
    let called = crate::clock::now_ms();
    let mut rx = engine.poll_rounds.subscribe();
    let settled = |r: &Option<(u64, u64)>| {
        r.is_some_and(|(started, finished)| {
            started > called
                && engine
                    .settle
                    .oldest_pending(crate::deliver::event::Mode::Poll)
                    .is_none_or(|oldest| oldest > finished)
        })
    };
    let wait = async { rx.wait_for(settled).await.map(|r| r.map(|(s, _)| s)) };
    let started_ms = match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(Some(s))) => s,
        _ => return Err(NotReached::Timeout { until, validated: None }),
    };
    answer(engine, until, Reached::Poll { started_ms }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::position::Checkpoint;

    fn at(file: &str, pos: u64, gtid: Option<&str>) -> Validated {
        Validated { at: Checkpoint { pos: BinlogPos::new(file, pos), gtid: gtid.map(String::from) }, commit_ms: 0 }
    }

    #[test]
    fn positions_gtids_and_sets_are_reached_in_order() {
        let v = at("mysql-bin.000003", 500, Some("0-1-100,1-2-7"));
        assert!(Until::parse("mysql-bin.000003:500").unwrap().reached_by(&v));
        assert!(!Until::parse("mysql-bin.000003:501").unwrap().reached_by(&v));
        assert!(Until::parse("mysql-bin.000002:9999").unwrap().reached_by(&v));
        assert!(Until::parse("0-1-100").unwrap().reached_by(&v));
        assert!(!Until::parse("0-1-101").unwrap().reached_by(&v));
        assert!(!Until::parse("2-1-1").unwrap().reached_by(&v), "a domain validation has not seen");
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let m = at("binlog.000001", 4, Some(&format!("{u}:1-10")));
        assert!(Until::parse(&format!("{u}:3-7")).unwrap().reached_by(&m));
        assert!(!Until::parse(&format!("{u}:9-11")).unwrap().reached_by(&m));
        assert_eq!(Until::parse("now").unwrap(), Until::Now);
        assert!(Until::parse("soon").unwrap_err().contains("now"));
    }
}
