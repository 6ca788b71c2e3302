//! How a pending re-check is stored: a versioned record (postcard), older versions read and upgraded.
//! The store ([`crate::deliver::state`]) files the bytes by table and key; this says what they hold.

use super::{Head, Pending};
use crate::deliver::state::{decode, encode, PendingEntry};
use crate::error::Result;
use crate::key::Key;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
enum PendingRecord {
    V1(PendingV1),
    /// adds binlog mode's versions (`Pending::versions`) and poll mode's observations (`Pending::observed`)
    V2(Pending),
}

/// A pending re-check as format V1 stored it (before binlog and poll modes kept the row's versions).
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Clone))]
struct PendingV1 {
    table: String,
    key: crate::key::Key,
    mode: crate::deliver::event::Mode,
    first_seen_ms: u64,
    deadline_ms: u64,
    next_check_ms: u64,
    last: crate::deliver::event::Mismatch,
}

/// The same record, borrowed, for encoding without a copy (the V1 variant is never written: it keeps
/// V2's index).
#[derive(Serialize)]
enum PendingRecordRef<'a> {
    #[allow(dead_code)]
    V1(&'a PendingV1),
    V2(&'a Pending),
}

/// The fields every record version starts with (postcard reads them and leaves the rest unread).
#[derive(Deserialize)]
struct Leading<'a> {
    #[allow(dead_code)]
    table: &'a str,
    #[allow(dead_code)]
    key: Key,
    mode: crate::deliver::event::Mode,
    first_seen_ms: u64,
    #[allow(dead_code)]
    deadline_ms: u64,
    next_check_ms: u64,
}

#[derive(Deserialize)]
enum LeadingRecord<'a> {
    #[serde(borrow)]
    V1(Leading<'a>),
    #[serde(borrow)]
    V2(Leading<'a>),
}

impl PendingRecord {
    fn into_pending(self) -> Pending {
        match self {
            PendingRecord::V2(p) => p,
            PendingRecord::V1(p) => Pending {
                table: p.table,
                key: p.key,
                mode: p.mode,
                first_seen_ms: p.first_seen_ms,
                deadline_ms: p.deadline_ms,
                next_check_ms: p.next_check_ms,
                last: p.last,
                versions: None,
                observed: None,
            },
        }
    }
}

impl PendingEntry for Pending {
    fn table(&self) -> &str {
        &self.table
    }
    fn key(&self) -> &Key {
        &self.key
    }
    fn to_bytes(&self) -> Vec<u8> {
        encode(&PendingRecordRef::V2(self))
    }
    fn from_bytes(bytes: &[u8]) -> Result<Pending> {
        Ok(decode::<PendingRecord>("a pending re-check", bytes)?.into_pending())
    }
    type Head = Head;
    fn head(bytes: &[u8]) -> Result<Head> {
        let (LeadingRecord::V1(l) | LeadingRecord::V2(l)) = decode("a pending re-check", bytes)?;
        Ok(Head { mode: l.mode, first_seen_ms: l.first_seen_ms, next_check_ms: l.next_check_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::event::{EventType, Mode};
    use crate::deliver::state::Store;
    use crate::key::KeyVal;

    /// A record as format V1 (an earlier release) wrote it.
    struct StoredV1(PendingV1);

    impl PendingEntry for StoredV1 {
        fn table(&self) -> &str {
            &self.0.table
        }
        fn key(&self) -> &Key {
            &self.0.key
        }
        fn to_bytes(&self) -> Vec<u8> {
            encode(&PendingRecord::V1(self.0.clone()))
        }
        fn from_bytes(_: &[u8]) -> Result<StoredV1> {
            unreachable!("only written")
        }
        type Head = ();
        fn head(_: &[u8]) -> Result<()> {
            unreachable!("only written")
        }
    }

    /// The borrowed encoding is the record's, and its head reads back from either record version.
    #[test]
    fn heads_read_from_every_record_version_and_the_borrowed_encoding_is_the_records() {
        let v1 = PendingV1 {
            table: "t".into(),
            key: Key(vec![KeyVal::Bytes(b"k".to_vec()), KeyVal::Int(-3)]),
            mode: Mode::Poll,
            first_seen_ms: 11,
            deadline_ms: 22,
            next_check_ms: 33,
            last: crate::deliver::event::Mismatch { kind: EventType::Neq, columns: vec!["v".into()] },
        };
        let want = Head { mode: Mode::Poll, first_seen_ms: 11, next_check_ms: 33 };
        assert_eq!(Pending::head(&encode(&PendingRecord::V1(v1.clone()))).unwrap(), want);
        let mut p = PendingRecord::V1(v1).into_pending();
        p.mode = Mode::Binlog;
        p.versions = Some(crate::verdict::versions::Versions::new(Some(vec![KeyVal::Int(1)]), vec![]));
        let bytes = p.to_bytes();
        assert_eq!(bytes, encode(&PendingRecord::V2(p.clone())));
        assert_eq!(Pending::head(&bytes).unwrap(), Head { mode: Mode::Binlog, ..want });
        assert!(Pending::head(&bytes[..3]).is_err(), "a torn record is an error, not a panic");
    }

    /// A pending record of format V1 (an earlier release) reads back, and the compare-and-swap removal
    /// still finds it after the upgrade at open.
    #[tokio::test]
    async fn v1_pending_records_are_read_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = PendingV1 {
            table: "t".into(),
            key: Key(vec![KeyVal::Int(7)]),
            mode: Mode::Binlog,
            first_seen_ms: 1,
            deadline_ms: 2,
            next_check_ms: 3,
            last: crate::deliver::event::Mismatch { kind: EventType::Neq, columns: vec!["v".into()] },
        };
        {
            let s = Store::open(dir.path()).unwrap();
            s.pending_put(&[StoredV1(v1)]).await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        s.pending_upgrade::<Pending>().unwrap();
        let all: Vec<Pending> = s.pending_all().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].versions.is_none());
        assert!(all[0].observed.is_none());
        assert_eq!(all[0].last.columns, vec!["v".to_string()]);
        assert_eq!(s.pending_remove_if_unchanged(&all).unwrap(), 1);
        assert!(s.pending_is_empty());
    }
}
