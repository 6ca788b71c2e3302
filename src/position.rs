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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect();
        f.write_str(&parts.join(","))
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
    fn maria_gtids_round_trip() {
        let mut g = MariaGtids::parse("0-1-100,2-5-7").unwrap();
        g.update(0, 1, 101);
        assert_eq!(g.to_string(), "0-1-101,2-5-7");
        assert!(MariaGtids::parse("0-1").is_none());
        assert!(MariaGtids::parse("x-1-2").is_none());
    }
}
