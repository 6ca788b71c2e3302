//! Binlog positions: a file with a numeric suffix and an offset, plus the GTID position where the server
//! has one. Positions order by the file's numeric suffix, not by its name as a string
//! (`mysql-bin.999999` < `mysql-bin.1000000`), and print as `file:pos`.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
}

impl BinlogPos {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogPos { file: file.into(), pos }
    }

    /// The numeric suffix of the file name (`mysql-bin.000042` → 42); 0 when there is none.
    pub fn suffix(&self) -> u64 {
        self.file.rsplit_once('.').and_then(|(_, s)| s.parse().ok()).unwrap_or(0)
    }

    /// Parses `file:pos`.
    pub fn parse(s: &str) -> Option<BinlogPos> {
        let (file, pos) = s.rsplit_once(':')?;
        let pos = pos.trim().parse().ok()?;
        let file = file.trim();
        (!file.is_empty()).then(|| BinlogPos::new(file, pos))
    }
}

impl Ord for BinlogPos {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.suffix(), self.pos, &self.file).cmp(&(other.suffix(), other.pos, &other.file))
    }
}

impl PartialOrd for BinlogPos {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// Where binlog mode resumes: the position after the last transaction whose keys are all checked,
/// pending, or reported; with the GTID position at that point when the server uses GTIDs
/// (MariaDB `domain-server-seq` list, MySQL GTID set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub pos: BinlogPos,
    pub gtid: Option<String>,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pos)?;
        if let Some(g) = &self.gtid {
            write!(f, " (gtid {g})")?;
        }
        Ok(())
    }
}

/// Where validation has caught up: every change up to this position has a final verdict (checked
/// equal, reported, or resolved; nothing pending), and the base committed it at `commit_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    pub at: Checkpoint,
    /// the base's commit time of the last transaction up to there (ms since the epoch; 0 = unknown)
    pub commit_ms: u64,
}

impl Validated {
    /// As `/status` and the cutover gate show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "position": self.at.pos.to_string(),
            "gtid": self.at.gtid,
            "commit_time": (self.commit_ms > 0).then(|| crate::clock::rfc3339_ms(self.commit_ms)),
        })
    }

    /// [`Validated::to_json`], or `null` before there is a validated-through position.
    pub fn json_of(v: &Option<Validated>) -> serde_json::Value {
        v.as_ref().map_or(serde_json::Value::Null, Validated::to_json)
    }
}

/// The stored form: versioned so the format can evolve.
#[derive(Serialize, Deserialize)]
pub enum CheckpointRecord {
    V1(Checkpoint),
}

/// MariaDB GTID state: the last sequence number per (domain, server) replication domain, printed as
/// `domain-server-seq` joined by commas (the form `@slave_connect_state` takes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MariaGtids(pub std::collections::BTreeMap<u32, (u32, u64)>);

impl MariaGtids {
    pub fn parse(s: &str) -> Option<MariaGtids> {
        let mut m = std::collections::BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let d = it.next()?.parse().ok()?;
            let srv = it.next()?.parse().ok()?;
            let seq = it.next()?.parse().ok()?;
            if it.next().is_some() {
                return None;
            }
            m.insert(d, (srv, seq));
        }
        (!m.is_empty()).then_some(MariaGtids(m))
    }

    pub fn update(&mut self, domain: u32, server: u32, seq: u64) {
        self.0.insert(domain, (server, seq));
    }
}

impl fmt::Display for MariaGtids {
    // Written in place, not joined: every transaction's checkpoint carries this text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (s, n))) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{d}-{s}-{n}")?;
        }
        Ok(())
    }
}

/// A MySQL executed GTID set: per source UUID, the transaction numbers seen, as merged half-open
/// intervals `[start, end)`. Prints and parses as MySQL does (`uuid:1-5:7,uuid2:1-3`, inclusive ranges).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidSet(pub std::collections::BTreeMap<[u8; 16], Vec<(u64, u64)>>);

impl GtidSet {
    /// Parses MySQL's text form; `None` when it is not a GTID set.
    pub fn parse(s: &str) -> Option<GtidSet> {
        let mut set = GtidSet::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = parse_uuid(it.next()?)?;
            let mut any = false;
            for range in it {
                let (a, b) = match range.split_once('-') {
                    Some((a, b)) => (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?),
                    None => {
                        let a = range.trim().parse::<u64>().ok()?;
                        (a, a)
                    }
                };
                if a == 0 || b < a {
                    return None;
                }
                set.add_range(uuid, a, b + 1);
                any = true;
            }
            if !any {
                return None;
            }
        }
        (!set.0.is_empty()).then_some(set)
    }

    /// Adds one transaction.
    pub fn add(&mut self, uuid: [u8; 16], gno: u64) {
        self.add_range(uuid, gno, gno + 1);
    }

    /// Adds `[start, end)`, merging with what touches it.
    pub fn add_range(&mut self, uuid: [u8; 16], start: u64, end: u64) {
        if start >= end {
            return;
        }
        let v = self.0.entry(uuid).or_default();
        v.push((start, end));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for &(a, b) in v.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *v = merged;
    }

    /// Adds every transaction of `other`.
    pub fn union(&mut self, other: &GtidSet) {
        for (uuid, ranges) in &other.0 {
            for &(a, b) in ranges {
                self.add_range(*uuid, a, b);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.trim().len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A UUID in MySQL's text form (`3e11fa47-71ca-11e1-9e33-c80aa9429562`).
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl fmt::Display for GtidSet {
    // Written in place, not joined: every transaction's checkpoint carries this text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (u, ranges)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}", format_uuid(u))?;
            for &(a, b) in ranges {
                if b == a + 1 {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{}", b - 1)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_numeric_suffix_then_offset() {
        let a = BinlogPos::new("mysql-bin.999999", 900);
        let b = BinlogPos::new("mysql-bin.1000000", 4);
        assert!(a < b, "file names must not compare as strings");
        assert!(BinlogPos::new("mysql-bin.000002", 4) < BinlogPos::new("mysql-bin.000002", 5));
        assert_eq!(b.to_string(), "mysql-bin.1000000:4");
        assert_eq!(BinlogPos::parse("mysql-bin.000003:120"), Some(BinlogPos::new("mysql-bin.000003", 120)));
        assert_eq!(BinlogPos::parse("nope"), None);
        assert_eq!(BinlogPos::parse(":4"), None);
    }

    #[test]
    fn mysql_gtid_sets_parse_merge_and_print() {
        let mut g =
            GtidSet::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7, 97c7af02-4c50-11ec-acd8-681842034964:3")
                .unwrap();
        assert_eq!(g.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,97c7af02-4c50-11ec-acd8-681842034964:3");
        let u = parse_uuid("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        g.add(u, 6);
        assert_eq!(g.0[&u], vec![(1, 8)], "6 joins 1-5 and 7");
        g.add(u, 9);
        assert!(g.to_string().starts_with("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7:9,"));
        assert!(GtidSet::parse("0-1-100").is_none(), "a MariaDB GTID is not a MySQL set");
        assert!(GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562").is_none(), "a UUID needs intervals");
        assert!(GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:5-2").is_none());
        assert!(GtidSet::parse("mysql-bin.000003:4").is_none());
    }

    #[test]
    fn maria_gtids_round_trip() {
        let mut g = MariaGtids::parse("0-1-100,2-5-7").unwrap();
        g.update(0, 1, 101);
        assert_eq!(g.to_string(), "0-1-101,2-5-7");
        assert!(MariaGtids::parse("0-1").is_none());
        assert!(MariaGtids::parse("x-1-2").is_none());
    }
}
