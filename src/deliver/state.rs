//! The embedded state store (sled): the outbox of undelivered events, pending re-checks, and progress
//! records (full-pass ranges, checkpoints).
//!
//! Every stored value is a versioned enum (`V1`) encoded with postcard, so the format can evolve: a later
//! version adds `V2` and still reads `V1`. An event entering the outbox is flushed to disk before the call
//! returns (it is sent next). Other writes rely on sled recovering a prefix of its writes: a binlog
//! checkpoint is written after the pending entries of the changes before it, so it never reaches the disk
//! without them, and a write lost in a crash only makes work be done again.

use crate::deliver::event::Event;
use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// A pending re-check as the store files it: by table and key, as bytes. Its record type (versioned, able
/// to read its older versions) belongs to the stage that keeps pending re-checks
/// ([`crate::verdict::settle`]); the store files, swaps and returns them without knowing their fields.
pub trait PendingEntry: Sized {
    fn table(&self) -> &str;
    fn key(&self) -> &crate::key::Key;
    /// The stored bytes, always in the newest record version (compare-and-swaps compare them).
    fn to_bytes(&self) -> Vec<u8>;
    /// Reads a stored record of any version.
    fn from_bytes(bytes: &[u8]) -> Result<Self>;
    /// What a scan needs of every record, read without the rest of it.
    type Head;
    /// Reads a stored record's head (of any version).
    fn head(bytes: &[u8]) -> Result<Self::Head>;
}

/// Store layout version, kept in the `meta` tree.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
enum OutboxRecord {
    V1(Event),
}

pub struct Store {
    db: sled::Db,
    outbox: sled::Tree,
    pending: sled::Tree,
    progress: sled::Tree,
    outbox_len: AtomicUsize,
    /// reported rows still open (see `crate::deliver::ledger`), by table and key
    ledger: sled::Tree,
    ledger_len: AtomicUsize,
    /// Signalled when events enter the outbox.
    pub outbox_added: Notify,
    /// Signalled when events leave it.
    outbox_removed: Notify,
    /// Outbox records that could not be decoded, moved aside so delivery goes on.
    undecodable: sled::Tree,
    /// Set when the sink refused events for good: nothing more may enter the outbox.
    sink_refused: std::sync::OnceLock<String>,
}

/// Decodes a stored record (postcard), or a part of it that borrows from `bytes`; `what` names it in the
/// error.
pub fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|source| Error::Decode { what: what.into(), source })
}

/// Encodes a record for storing (postcard).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding owned, well-formed values into a Vec cannot fail.
    postcard::to_allocvec(v).unwrap_or_default()
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let db = sled::Config::new().path(dir).open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                Error::Config(format!(
                    "state directory {} is in use by another binlog-validator; stop it or set state.dir to another directory",
                    dir.display()
                ))
            }
            e => Error::state(format!("opening {}", dir.display()), e),
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| Error::state(format!("opening tree {name}"), e));
        let meta = tree("meta")?;
        match meta.get("format").map_err(|e| Error::state("reading the format", e))? {
            Some(v) => {
                let found: u32 = decode("the store format", &v)?;
                if found > FORMAT {
                    return Err(Error::Config(format!(
                        "state directory {} was written by a newer binlog-validator (format {found}); use that version or a fresh state.dir",
                        dir.display()
                    )));
                }
            }
            None => {
                meta.insert("format", encode(&FORMAT)).map_err(|e| Error::state("writing the format", e))?;
            }
        }
        let outbox = tree("outbox")?;
        let undecodable = tree("outbox_undecodable")?;
        let ledger = tree("ledger")?;
        let pending = tree("pending")?;
        let store = Store {
            outbox_len: AtomicUsize::new(outbox.len()),
            ledger_len: AtomicUsize::new(ledger.len()),
            ledger,
            outbox,
            pending,
            progress: tree("progress")?,
            db,
            outbox_added: Notify::new(),
            outbox_removed: Notify::new(),
            undecodable,
            sink_refused: std::sync::OnceLock::new(),
        };
        Ok(store)
    }

    /// Writes everything so far to disk. Not sled's `flush_async`: concurrent calls to it deadlock in
    /// release builds of sled 0.34 (spacejam/sled#1308, unfixed in any release); the blocking flush on
    /// tokio's blocking pool does not.
    pub async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| Error::Internal(format!("the state store flush task failed: {e}")))?
            .map_err(|e| Error::state("flushing", e))?;
        Ok(())
    }

    // ---- outbox -------------------------------------------------------------------------------------

    pub fn outbox_len(&self) -> usize {
        self.outbox_len.load(Ordering::Relaxed)
    }

    /// Records that the sink refuses events for good (the drain stopped), and wakes everyone waiting on
    /// the outbox so they can stop too.
    pub fn refuse_sink(&self, why: String) {
        let _ = self.sink_refused.set(why);
        self.outbox_removed.notify_waiters();
    }

    /// Why the sink refuses events for good, once it does.
    pub fn sink_refused(&self) -> Result<()> {
        match self.sink_refused.get() {
            Some(why) => Err(Error::SinkRefused(why.clone())),
            None => Ok(()),
        }
    }

    /// Stores events durably. Waits while the outbox holds `max` or more events: validation pauses
    /// rather than dropping anything. Fails once the sink refuses events for good.
    pub async fn outbox_push(&self, events: &[Event], max: usize) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        loop {
            let removed = self.outbox_removed.notified();
            self.sink_refused()?;
            if self.outbox_len() < max {
                break;
            }
            tracing::warn!(outbox = self.outbox_len(), "outbox full; validation waits for the sink");
            removed.await;
        }
        // Count the events before the drain can see them: counted after, a fast drain could subtract
        // them first and the count would wrap around, which other pushes read as a full outbox forever.
        self.outbox_len.fetch_add(events.len(), Ordering::Relaxed);
        // One insert each, not a sled batch (which writes a log buffer to disk twice on its own): the
        // flush below makes them all durable before any is announced to the drain.
        for (i, e) in events.iter().enumerate() {
            let stored = self
                .db
                .generate_id()
                .and_then(|id| self.outbox.insert(id.to_be_bytes(), encode(&OutboxRecord::V1(e.clone()))))
                .map_err(|e| Error::state("storing events", e));
            if let Err(e) = stored {
                self.outbox_len.fetch_sub(events.len() - i, Ordering::Relaxed);
                return Err(e);
            }
        }
        self.flush().await?;
        self.outbox_added.notify_one();
        Ok(())
    }

    /// Waits until the outbox is empty or `timeout` passes; returns what is left.
    pub async fn outbox_wait_empty(&self, timeout: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let removed = self.outbox_removed.notified();
            if self.outbox_len() == 0 || tokio::time::timeout_at(deadline, removed).await.is_err() {
                return self.outbox_len();
            }
        }
    }

    /// The oldest `n` undelivered events with their ids. A record that cannot be decoded (damaged, or
    /// from an incompatible version) is moved to the `outbox_undecodable` tree with a warning, so it
    /// cannot stall delivery of the others.
    pub fn outbox_peek(&self, n: usize) -> Result<Vec<(u64, Event)>> {
        let mut out = Vec::with_capacity(n);
        for item in self.outbox.iter() {
            if out.len() >= n {
                break;
            }
            let (k, v) = item.map_err(|e| Error::state("reading the outbox", e))?;
            let id = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            match decode::<OutboxRecord>("an outbox event", &v) {
                Ok(OutboxRecord::V1(e)) => out.push((id, e)),
                Err(e) => self.move_aside(&k, &v, &e)?,
            }
        }
        Ok(out)
    }

    fn move_aside(&self, k: &[u8], v: &[u8], why: &Error) -> Result<()> {
        self.undecodable.insert(k, v).map_err(|e| Error::state("moving an undecodable event aside", e))?;
        if self.outbox.remove(k).map_err(|e| Error::state("moving an undecodable event aside", e))?.is_some() {
            self.outbox_len.fetch_sub(1, Ordering::Relaxed);
            self.outbox_removed.notify_waiters();
        }
        tracing::warn!(
            error = %why,
            undecodable = self.undecodable.len(),
            "an outbox record cannot be decoded; moved to the state store's `outbox_undecodable` tree, delivery goes on"
        );
        Ok(())
    }

    /// Records moved aside by [`Store::outbox_peek`].
    pub fn outbox_undecodable_len(&self) -> usize {
        self.undecodable.len()
    }

    /// Removes events the sink acknowledged.
    pub async fn outbox_ack(&self, ids: &[u64]) -> Result<()> {
        let mut removed = 0;
        for id in ids {
            if self
                .outbox
                .remove(id.to_be_bytes())
                .map_err(|e| Error::state("removing a delivered event", e))?
                .is_some()
            {
                removed += 1;
            }
        }
        self.outbox_len.fetch_sub(removed, Ordering::Relaxed);
        self.outbox_removed.notify_waiters();
        Ok(())
    }

    // ---- pending re-checks --------------------------------------------------------------------------

    pub fn pending_key(table: &str, key: &crate::key::Key) -> Vec<u8> {
        let mut k = table.as_bytes().to_vec();
        k.push(0);
        k.extend(key.canonical());
        k
    }

    /// Stores (or replaces) pending re-checks durably.
    pub async fn pending_put<P: PendingEntry>(&self, items: &[P]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.pending_put_lazy(items)?;
        self.flush().await
    }

    /// Stores (or replaces) pending re-checks without waiting for the disk: for a caller whose next
    /// durable write (a checkpoint, an event) must not outlive them. sled recovers a prefix of its
    /// writes, so whenever that later write is on disk, these are too.
    pub fn pending_put_lazy<P: PendingEntry>(&self, items: &[P]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        // One insert each, not a sled batch: entries stand alone (none needs another to be stored with it),
        // and sled writes a log buffer to disk for every batch (twice), waking its I/O threads each time.
        for p in items {
            self.pending
                .insert(Self::pending_key(p.table(), p.key()), p.to_bytes())
                .map_err(|e| Error::state("storing pending re-checks", e))?;
        }
        Ok(())
    }

    /// The pending re-check of one key, if any.
    pub fn pending_get<P: PendingEntry>(&self, table: &str, key: &crate::key::Key) -> Result<Option<P>> {
        match self.pending.get(Self::pending_key(table, key)).map_err(|e| Error::state("reading a re-check", e))? {
            Some(v) => Ok(Some(P::from_bytes(&v)?)),
            None => Ok(None),
        }
    }

    /// Every pending record's head (cheaper to read than the whole record), and in whole the records
    /// whose head `want` picks.
    pub fn pending_scan<P: PendingEntry>(
        &self,
        mut want: impl FnMut(&P::Head) -> bool,
    ) -> Result<(Vec<P::Head>, Vec<P>)> {
        let (mut heads, mut whole) = (Vec::new(), Vec::new());
        for item in self.pending.iter() {
            let (_, v) = item.map_err(|e| Error::state("reading pending re-checks", e))?;
            let head = P::head(&v)?;
            if want(&head) {
                whole.push(P::from_bytes(&v)?);
            }
            heads.push(head);
        }
        Ok((heads, whole))
    }

    /// Every pending re-check (for tests: the settle stage reads them through [`Self::pending_scan`]).
    #[cfg(test)]
    pub fn pending_all<P: PendingEntry>(&self) -> Result<Vec<P>> {
        Ok(self.pending_scan::<P>(|_| true)?.1)
    }

    /// Rewrites every pending record not in its type's newest version (once, before the first
    /// compare-and-swap: those compare the newest encoding).
    pub fn pending_upgrade<P: PendingEntry>(&self) -> Result<()> {
        for item in self.pending.iter() {
            let (k, v) = item.map_err(|e| Error::state("reading pending re-checks", e))?;
            let newest = P::from_bytes(&v)?.to_bytes();
            if *v != *newest {
                self.pending.insert(k, newest).map_err(|e| Error::state("upgrading a pending re-check", e))?;
            }
        }
        Ok(())
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no re-check is pending (cheap, unlike counting them).
    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes each re-check only if the stored entry is still exactly `p` as it was read: one submitted
    /// for the same key since (a new mismatch) stays. Returns how many were removed.
    pub fn pending_remove_if_unchanged<P: PendingEntry>(&self, items: &[P]) -> Result<usize> {
        let mut removed = 0;
        for p in items {
            let swapped = self
                .pending
                .compare_and_swap(Self::pending_key(p.table(), p.key()), Some(p.to_bytes()), None::<Vec<u8>>)
                .map_err(|e| Error::state("removing a re-check", e))?;
            removed += usize::from(swapped.is_ok());
        }
        Ok(removed)
    }

    /// Replaces each `(old, new)` re-check, only where the stored entry is still `old`; where a newer
    /// entry was submitted for the key in between, that one stays. Durably when `durable`; else sled
    /// writes it within its flush interval, and a crash before that leaves `old`, durable already.
    pub async fn pending_replace_if_unchanged<P: PendingEntry>(&self, items: &[(P, P)], durable: bool) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        for (old, new) in items {
            self.pending
                .compare_and_swap(Self::pending_key(old.table(), old.key()), Some(old.to_bytes()), Some(new.to_bytes()))
                .map_err(|e| Error::state("updating a re-check", e))?
                .ok();
        }
        if durable {
            self.flush().await?;
        }
        Ok(())
    }

    // ---- ledger rows (their record type belongs to `crate::deliver::ledger`) ----------------------------------

    /// Stores (or replaces) ledger rows. Not flushed: the caller's next flush (the outbox push that
    /// reports the same rows) makes them durable together.
    pub fn ledger_put<T: Serialize>(&self, rows: &[(Vec<u8>, T)]) -> Result<()> {
        for (id, row) in rows {
            let old = self.ledger.insert(id, encode(row)).map_err(|e| Error::state("storing a ledger row", e))?;
            if old.is_none() {
                self.ledger_len.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub fn ledger_get<T: DeserializeOwned>(&self, id: &[u8]) -> Result<Option<T>> {
        match self.ledger.get(id).map_err(|e| Error::state("reading the ledger", e))? {
            Some(v) => Ok(Some(decode("a ledger row", &v)?)),
            None => Ok(None),
        }
    }

    /// Removes a ledger row only if it is still `expected` (a report that re-opened the row meanwhile
    /// stays); whether it was removed.
    pub fn ledger_remove_if<T: Serialize>(&self, id: &[u8], expected: &T) -> Result<bool> {
        let swapped = self
            .ledger
            .compare_and_swap(id, Some(encode(expected)), None::<&[u8]>)
            .map_err(|e| Error::state("closing a ledger row", e))?;
        let removed = swapped.is_ok();
        if removed {
            self.ledger_len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Up to `n` ledger rows after the id `after` (from the start when `None`), in id order, with ids.
    pub fn ledger_page<T: DeserializeOwned>(&self, after: Option<&[u8]>, n: usize) -> Result<Vec<(Vec<u8>, T)>> {
        let range = match after {
            Some(a) => self.ledger.range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.ledger.iter(),
        };
        let mut out = Vec::new();
        for item in range.take(n) {
            let (k, v) = item.map_err(|e| Error::state("reading the ledger", e))?;
            out.push((k.to_vec(), decode("a ledger row", &v)?));
        }
        Ok(out)
    }

    /// Every ledger row, in id order.
    pub fn ledger_all<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.ledger.iter() {
            let (_, v) = item.map_err(|e| Error::state("reading the ledger", e))?;
            out.push(decode("a ledger row", &v)?);
        }
        Ok(out)
    }

    pub fn ledger_len(&self) -> usize {
        self.ledger_len.load(Ordering::Relaxed)
    }

    // ---- progress records ---------------------------------------------------------------------------

    /// A progress record; its type is a versioned enum of the caller's.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.progress.get(name).map_err(|e| Error::state(format!("reading {name}"), e))? {
            Some(v) => Ok(Some(decode(name, &v)?)),
            None => Ok(None),
        }
    }

    /// Writes a progress record durably.
    pub async fn put<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.progress.insert(name, encode(value)).map_err(|e| Error::state(format!("writing {name}"), e))?;
        self.flush().await
    }

    /// Writes a progress record without waiting for the disk: for progress that is only an optimisation
    /// (a lost record means work is redone, never skipped), such as full-pass chunks. sled flushes it
    /// within its flush interval.
    pub fn put_lazy<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.progress.insert(name, encode(value)).map_err(|e| Error::state(format!("writing {name}"), e))?;
        Ok(())
    }

    /// Every progress record whose name starts with `prefix`, with its name, in name order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for item in self.progress.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| Error::state(format!("scanning {prefix}"), e))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            out.push((name.clone(), decode(&name, &v)?));
        }
        Ok(out)
    }

    /// Removes one progress record (lazily: sled writes it within its flush interval).
    pub fn remove(&self, name: &str) -> Result<()> {
        self.progress.remove(name).map_err(|e| Error::state(format!("removing {name}"), e))?;
        Ok(())
    }

    /// Removes every progress record whose name starts with `prefix`.
    pub async fn clear(&self, prefix: &str) -> Result<()> {
        for item in self.progress.scan_prefix(prefix) {
            let (k, _) = item.map_err(|e| Error::state("scanning progress", e))?;
            self.progress.remove(k).map_err(|e| Error::state("clearing progress", e))?;
        }
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::event::{EventType, Mode};
    use crate::key::{Key, KeyVal};

    fn ev(i: i64) -> Event {
        Event {
            kind: EventType::TargetMissing,
            direction: "SRC".into(),
            table: "t".into(),
            key_columns: vec!["id".into()],
            key: Key(vec![KeyVal::Int(i)]),
            mode: Mode::Full,
            columns: vec![],
            detected_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn outbox_survives_reopen_in_order_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.outbox_push(&[ev(1), ev(2), ev(3)], 10).await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.outbox_len(), 3);
        let got = s.outbox_peek(10).unwrap();
        assert_eq!(got.iter().map(|(_, e)| e.key.clone()).collect::<Vec<_>>(), vec![ev(1).key, ev(2).key, ev(3).key]);
        s.outbox_ack(&[got[0].0, got[1].0]).await.unwrap();
        assert_eq!(s.outbox_peek(10).unwrap().len(), 1);
        assert_eq!(s.outbox_len(), 1);
    }

    #[tokio::test]
    async fn a_full_outbox_blocks_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        s.outbox_push(&[ev(1)], 1).await.unwrap();
        let s2 = s.clone();
        let blocked = tokio::spawn(async move { s2.outbox_push(&[ev(2)], 1).await });
        let mut blocked = blocked;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut blocked).await.is_err(),
            "push into a full outbox must wait"
        );
        let id = s.outbox_peek(1).unwrap()[0].0;
        s.outbox_ack(&[id]).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), blocked).await.unwrap().unwrap().unwrap();
        assert_eq!(s.outbox_peek(5).unwrap()[0].1.key, ev(2).key);
    }

    /// Many tasks flushing at once must all finish (sled 0.34's own flush_async deadlocks here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_complete() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.outbox_push(&[ev(i)], 1000).await })
            })
            .collect();
        let all = futures_util::future::join_all(tasks);
        let done = tokio::time::timeout(std::time::Duration::from_secs(30), all).await.expect("flushes deadlocked");
        assert!(done.into_iter().all(|r| r.unwrap().is_ok()));
        assert_eq!(s.outbox_len(), 64);
    }

    #[tokio::test]
    async fn an_undecodable_outbox_record_is_moved_aside_and_delivery_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.outbox_push(&[ev(1)], 10).await.unwrap();
        // A damaged record between two good ones (the length counts it, as it would after a reopen).
        let id = s.db.generate_id().unwrap();
        s.outbox.insert(id.to_be_bytes(), vec![0xff, 0xff, 0xff]).unwrap();
        s.outbox_len.fetch_add(1, Ordering::Relaxed);
        s.outbox_push(&[ev(3)], 10).await.unwrap();
        let got = s.outbox_peek(10).unwrap();
        assert_eq!(got.iter().map(|(_, e)| e.key.clone()).collect::<Vec<_>>(), vec![ev(1).key, ev(3).key]);
        assert_eq!(s.outbox_len(), 2);
        assert_eq!(s.outbox_undecodable_len(), 1);
        assert_eq!(s.undecodable.get(id.to_be_bytes()).unwrap().unwrap().as_ref(), &[0xff, 0xff, 0xff]);
    }

    #[tokio::test]
    async fn a_refusing_sink_stops_pushes_and_wakes_blocked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        s.outbox_push(&[ev(1)], 1).await.unwrap();
        let s2 = s.clone();
        let blocked = tokio::spawn(async move { s2.outbox_push(&[ev(2)], 1).await });
        // Parked on the full outbox or not yet started, the push must fail either way (its `notified`
        // is registered before it checks, so the wake-up cannot be missed).
        s.refuse_sink("too large".into());
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), blocked).await.unwrap().unwrap();
        assert!(matches!(r, Err(Error::SinkRefused(ref m)) if m == "too large"), "{r:?}");
        assert!(s.outbox_push(&[ev(3)], 10).await.is_err());
    }

    #[tokio::test]
    async fn progress_records_round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put("full/a", &(1u32, "x".to_string())).await.unwrap();
        s.put("full/b", &(2u32, "y".to_string())).await.unwrap();
        assert_eq!(s.get::<(u32, String)>("full/a").unwrap(), Some((1, "x".into())));
        s.put("fuller", &(3u32, "z".to_string())).await.unwrap();
        let listed: Vec<String> = s.scan::<(u32, String)>("full/").unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(listed, ["full/a", "full/b"]);
        s.remove("full/a").unwrap();
        assert_eq!(s.get::<(u32, String)>("full/a").unwrap(), None);
        s.clear("full/").await.unwrap();
        assert_eq!(s.get::<(u32, String)>("full/b").unwrap(), None);
        assert!(s.get::<(u32, String)>("fuller").unwrap().is_some(), "clear keeps other prefixes");
    }
}
