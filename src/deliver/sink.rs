//! Event sinks (Kafka, a JSON-lines file, stdout) and the outbox drain that feeds them.

use crate::config::{SinkConfig, SinkKind};
use crate::deliver::event::Event;
use crate::deliver::state::Store;
use crate::error::{Error, Result};
use futures_util::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What one delivery attempt achieved: the ids the destination durably accepted, and why the others
/// were not (`None` when all were).
#[derive(Debug, Default)]
pub struct Delivery {
    pub acked: Vec<u64>,
    pub failure: Option<Error>,
}

impl Delivery {
    fn all(batch: &[(u64, Event)]) -> Delivery {
        Delivery { acked: batch.iter().map(|(id, _)| *id).collect(), failure: None }
    }
    fn failed(e: Error) -> Delivery {
        Delivery { acked: Vec::new(), failure: Some(e) }
    }
}

/// Where events go.
///
/// Contract: delivery is at-least-once. `deliver` returns the ids of the events the destination has
/// durably accepted (Kafka: acknowledged by all in-sync replicas; file: written and flushed to disk);
/// only those are removed from the outbox, and the rest are offered again later, so a destination may
/// see an event twice and must tolerate duplicates. The events of one row (one message key) are accepted
/// in batch order: a later one is never accepted while an earlier one is not. A failure is always
/// returned, also when part of the batch went through; [`Error::SinkRefused`] means retrying cannot help.
pub trait EventSink: Send {
    fn deliver<'a>(&'a mut self, batch: &'a [(u64, Event)]) -> impl Future<Output = Delivery> + Send + 'a;
}

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    config: ClientConfig,
}

impl KafkaSink {
    pub fn new(cfg: &SinkConfig) -> Result<KafkaSink> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &cfg.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("compression.type", "none");
        for (k, v) in &cfg.kafka {
            config.set(k, v);
        }
        let producer = Self::producer(&config)?;
        Ok(KafkaSink { producer, topic: cfg.topic.clone(), config })
    }

    fn producer(config: &ClientConfig) -> Result<FutureProducer> {
        config.create().map_err(|e| {
            Error::Config(format!("sink.kafka: cannot create the Kafka producer: {e}; check [sink.kafka] properties"))
        })
    }
}

/// The fix for a Kafka error that no retry can cure, or `None` for one worth retrying.
pub fn kafka_refusal(e: &KafkaError) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    Some(match e.rdkafka_error_code()? {
        C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed => {
            "grant the producer's principal WRITE on sink.topic (and IDEMPOTENT_WRITE on the cluster), or fix the [sink.kafka] credentials"
        }
        C::SaslAuthenticationFailed | C::Authentication => "fix the [sink.kafka] sasl.* / ssl.* credentials",
        C::UnknownTopic | C::UnknownTopicOrPartition | C::InvalidTopic => {
            "create sink.topic on the broker (it does not create topics itself) or fix sink.topic"
        }
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge | C::InvalidRecord => {
            "raise the topic's max.message.bytes (and [sink.kafka] message.max.bytes) above the event's size"
        }
        C::PolicyViolation | C::InvalidRequiredAcks => "fix the topic's configuration or the [sink.kafka] properties",
        _ => return None,
    })
}

fn kafka_error(e: &KafkaError, topic: &str) -> Error {
    match kafka_refusal(e) {
        Some(fix) => Error::SinkRefused(format!(
            "Kafka refuses events for topic `{topic}` for good: {e}; {fix}. Undelivered events stay in the state store and go out at the next start"
        )),
        None => Error::Sink(format!("Kafka delivery failed: {e}")),
    }
}

impl EventSink for KafkaSink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Delivery {
        let rendered: Vec<(u64, String, String)> =
            batch.iter().map(|(id, e)| (*id, e.message_key(), e.to_json().to_string())).collect();
        // One row's events go one after the other, and stop at its first failure, so a later event of
        // the row can never land before an earlier one that is retried; different rows go at once.
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut row_of: HashMap<&str, usize> = HashMap::new();
        for (i, (_, key, _)) in rendered.iter().enumerate() {
            let r = *row_of.entry(key.as_str()).or_insert_with(|| {
                rows.push(Vec::new());
                rows.len() - 1
            });
            rows[r].push(i);
        }
        let (producer, topic, rendered) = (&self.producer, self.topic.as_str(), &rendered);
        let sends = rows.iter().map(|row| async move {
            let mut acked = Vec::with_capacity(row.len());
            for &i in row {
                let (id, key, payload) = &rendered[i];
                let record = FutureRecord::to(topic).key(key).payload(payload);
                match producer.send(record, Duration::from_secs(10)).await {
                    Ok(_) => acked.push(*id),
                    Err((e, _)) => return (acked, Some(e)),
                }
            }
            (acked, None)
        });
        let mut delivery = Delivery::default();
        for (acked, failure) in join_all(sends).await {
            delivery.acked.extend(acked);
            if let Some(e) = failure {
                let e = kafka_error(&e, topic);
                // Of several failures, one that no retry cures is the one to act on.
                if delivery.failure.is_none() || matches!(e, Error::SinkRefused(_)) {
                    delivery.failure = Some(e);
                }
            }
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // An idempotent producer that hit a fatal error refuses all further sends: start a new one.
            tracing::warn!(?code, %reason, "Kafka producer failed fatally; recreating it");
            match Self::producer(&self.config) {
                Ok(p) => self.producer = p,
                Err(e) => delivery.failure = Some(e),
            }
        }
        delivery
    }
}

/// What the file sink needs from its file. The seam lets a unit test fail a write half-way.
pub trait AppendFile: Send {
    /// Appends all of `buf` and syncs it to disk.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()>;
    /// Cuts the file back to `len` bytes (appends continue from there).
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl AppendFile for std::fs::File {
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.write_all(buf)?;
        self.sync_data()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)?;
        self.sync_data()
    }
}

/// JSON lines appended to a file, flushed and synced before acknowledging. The file only ever holds
/// complete lines: a write that fails half-way is cut back to the last complete line before the retry,
/// and a torn last line left by a crash is cut off at open.
pub struct FileSink<F: AppendFile = std::fs::File> {
    file: F,
    /// The file's length after its last complete line.
    whole: u64,
    /// A failed write may have left a partial line that could not be cut off yet.
    torn: bool,
}

impl FileSink {
    pub fn new(path: &std::path::Path) -> Result<FileSink> {
        let bad = |e: std::io::Error| {
            Error::Config(format!("sink.path: cannot open {} for appending: {e}; fix sink.path", path.display()))
        };
        let file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path).map_err(bad)?;
        let len = file.metadata().map_err(bad)?.len();
        let whole = last_line_end(&file, len).map_err(bad)?;
        let mut sink = FileSink::with_file(file, whole);
        if whole < len {
            tracing::warn!(path = %path.display(), bytes = len - whole, "the events file ends in a torn line (an earlier crash); cut it off");
            sink.torn = true;
        }
        Ok(sink)
    }
}

/// The offset just after the last `\n` in the first `len` bytes of `file` (0 if none).
fn last_line_end(file: &std::fs::File, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl<F: AppendFile> FileSink<F> {
    /// A sink on `file`, whose first `whole` bytes are complete lines.
    pub fn with_file(file: F, whole: u64) -> FileSink<F> {
        FileSink { file, whole, torn: false }
    }
}

fn lines(batch: &[(u64, Event)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 200);
    for (_, e) in batch {
        out.extend(e.to_json().to_string().into_bytes());
        out.push(b'\n');
    }
    out
}

impl<F: AppendFile> EventSink for FileSink<F> {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Delivery {
        if self.torn {
            if let Err(e) = self.file.truncate(self.whole) {
                return Delivery::failed(Error::Sink(format!("cutting a torn line off the events file: {e}")));
            }
            self.torn = false;
        }
        let buf = lines(batch);
        match self.file.append(&buf) {
            Ok(()) => {
                self.whole += buf.len() as u64;
                Delivery::all(batch)
            }
            Err(e) => {
                // Part of a line may be in the file now: cut it off at once, or before the next write.
                self.torn = self.file.truncate(self.whole).is_err();
                Delivery::failed(Error::Sink(format!("writing the events file: {e}")))
            }
        }
    }
}

pub struct StdoutSink;

impl EventSink for StdoutSink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Delivery {
        let buf = lines(batch);
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf).and_then(|_| out.flush()) {
            Ok(()) => Delivery::all(batch),
            Err(e) => Delivery::failed(Error::Sink(format!("writing to stdout: {e}"))),
        }
    }
}

/// The configured sink.
pub enum AnySink {
    Kafka(Box<KafkaSink>),
    File(FileSink),
    Stdout(StdoutSink),
}

impl AnySink {
    pub fn from_config(cfg: &SinkConfig) -> Result<AnySink> {
        Ok(match cfg.kind {
            SinkKind::Kafka => AnySink::Kafka(Box::new(KafkaSink::new(cfg)?)),
            SinkKind::File => AnySink::File(FileSink::new(&cfg.path)?),
            SinkKind::Stdout => AnySink::Stdout(StdoutSink),
        })
    }
}

impl EventSink for AnySink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Delivery {
        match self {
            AnySink::Kafka(s) => s.deliver(batch).await,
            AnySink::File(s) => s.deliver(batch).await,
            AnySink::Stdout(s) => s.deliver(batch).await,
        }
    }
}

/// Sends outbox events, oldest first, until `shutdown` turns true; removes each once acknowledged.
/// Failures back off (the shared retry policy) and retry; nothing is dropped.
pub async fn drain<S: EventSink>(store: Arc<Store>, mut sink: S, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = crate::retry::Backoff::new(crate::retry::Policy::QUERY);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let added = store.outbox_added.notified();
        let batch = match store.outbox_peek(500) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = added => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let delivery = tokio::select! {
            d = sink.deliver(&batch) => d,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = store.outbox_ack(&delivery.acked).await {
            tracing::error!(error = %e, "cannot remove delivered events from the outbox");
        }
        match delivery.failure {
            None => backoff.reset(),
            Some(Error::SinkRefused(why)) => {
                // Retrying cannot help: stop delivering, and make validation stop with the fix rather
                // than fill the outbox forever.
                tracing::error!(error = %why, undelivered = store.outbox_len(), "the sink refuses events; delivery stops");
                store.refuse_sink(why);
                return;
            }
            Some(e) => {
                tracing::warn!(error = %e, delivered = delivery.acked.len(), undelivered = store.outbox_len(), "event delivery failed; events stay in the outbox and are retried");
                if !backoff.wait(&mut shutdown).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::event::{EventType, Mode};
    use crate::key::{Key, KeyVal};

    fn ev(i: i64) -> (u64, Event) {
        let e = Event {
            kind: EventType::Neq,
            direction: "SRC".into(),
            table: "t".into(),
            key_columns: vec!["id".into()],
            key: Key(vec![KeyVal::Int(i)]),
            mode: Mode::Full,
            columns: vec!["v".into()],
            detected_at_ms: 1,
        };
        (i as u64, e)
    }

    /// A file in memory whose next append writes only `budget` bytes and then fails, as a full disk does.
    struct Flaky {
        data: Vec<u8>,
        budget: Option<usize>,
    }

    impl AppendFile for Flaky {
        fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
            match self.budget.take() {
                Some(n) if n < buf.len() => {
                    self.data.extend_from_slice(&buf[..n]);
                    Err(std::io::Error::other("no space left on device"))
                }
                _ => {
                    self.data.extend_from_slice(buf);
                    Ok(())
                }
            }
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    fn parsed_lines(data: &[u8]) -> Vec<i64> {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "the file ends in a torn line: {text:?}");
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_failed_write_never_leaves_a_torn_line() {
        let mut sink = FileSink::with_file(Flaky { data: Vec::new(), budget: None }, 0);
        let d = sink.deliver(&[ev(1), ev(2)]).await;
        assert_eq!(d.acked, vec![1, 2]);
        sink.file.budget = Some(30);
        let d = sink.deliver(&[ev(3), ev(4)]).await;
        assert!(d.acked.is_empty() && d.failure.is_some(), "{d:?}");
        assert_eq!(parsed_lines(&sink.file.data), vec![1, 2], "cut back to the last complete line");
        let d = sink.deliver(&[ev(3), ev(4)]).await;
        assert_eq!(d.acked, vec![3, 4]);
        assert_eq!(parsed_lines(&sink.file.data), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_torn_last_line_from_a_crash_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let first = lines(&[ev(1)]);
        let mut text = first.clone();
        text.extend_from_slice(br#"{"id":2,"ty"#);
        std::fs::write(&path, &text).unwrap();
        let mut sink = FileSink::new(&path).unwrap();
        assert_eq!(sink.deliver(&[ev(3)]).await.acked, vec![3]);
        assert_eq!(parsed_lines(&std::fs::read(&path).unwrap()), vec![1, 3]);
        // A file of complete lines is left alone.
        drop(sink);
        let mut sink = FileSink::new(&path).unwrap();
        assert_eq!(sink.deliver(&[ev(4)]).await.acked, vec![4]);
        assert_eq!(parsed_lines(&std::fs::read(&path).unwrap()), vec![1, 3, 4]);
    }

    #[test]
    fn kafka_errors_no_retry_cures_are_refusals() {
        let refused = |c| kafka_refusal(&KafkaError::MessageProduction(c));
        assert!(refused(RDKafkaErrorCode::MessageSizeTooLarge).is_some_and(|f| f.contains("max.message.bytes")));
        assert!(refused(RDKafkaErrorCode::TopicAuthorizationFailed).is_some_and(|f| f.contains("WRITE")));
        assert!(refused(RDKafkaErrorCode::UnknownTopicOrPartition).is_some_and(|f| f.contains("create sink.topic")));
        assert!(refused(RDKafkaErrorCode::MessageTimedOut).is_none());
        assert!(refused(RDKafkaErrorCode::BrokerTransportFailure).is_none());
        assert!(refused(RDKafkaErrorCode::NotEnoughReplicas).is_none());
    }

    /// One scripted answer to a delivery.
    type Answer = Box<dyn Fn(&[(u64, Event)]) -> Delivery + Send>;

    /// A sink that answers from a script, one answer per delivery, and records what it was offered.
    struct Scripted {
        answers: std::collections::VecDeque<Answer>,
        offered: Arc<std::sync::Mutex<Vec<Vec<i64>>>>,
    }

    impl EventSink for Scripted {
        fn deliver<'a>(&'a mut self, batch: &'a [(u64, Event)]) -> impl Future<Output = Delivery> + Send + 'a {
            let ids = batch.iter().map(|(_, e)| key_id(e)).collect();
            self.offered.lock().unwrap().push(ids);
            let answer = self.answers.pop_front().unwrap_or_else(|| Box::new(|b: &[(u64, Event)]| Delivery::all(b)));
            std::future::ready(answer(batch))
        }
    }

    fn key_id(e: &Event) -> i64 {
        match e.key.0[0] {
            KeyVal::Int(i) => i,
            _ => -1,
        }
    }

    async fn outbox_with(n: i64) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let events: Vec<Event> = (1..=n).map(|i| ev(i).1).collect();
        store.outbox_push(&events, 100).await.unwrap();
        (dir, store)
    }

    /// A transient failure after part of a batch went through: only the acknowledged event leaves the
    /// outbox, the rest are offered again after the policy's backoff (virtual time), in order, and the
    /// outbox ends empty.
    #[tokio::test(start_paused = true)]
    async fn the_drain_removes_only_acknowledged_events_and_retries_the_rest_after_a_backoff() {
        let (_dir, store) = outbox_with(3).await;
        let offered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first: Answer = Box::new(|b: &[(u64, Event)]| Delivery {
            acked: vec![b[0].0],
            failure: Some(Error::Sink("broker transport failure".into())),
        });
        let sink = Scripted { answers: vec![first].into(), offered: offered.clone() };
        let (tx, rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        let drain = tokio::spawn(drain(store.clone(), sink, rx));
        assert_eq!(store.outbox_wait_empty(Duration::from_secs(60)).await, 0, "every event is delivered");
        assert!(started.elapsed() >= crate::retry::Policy::QUERY.min / 2, "the retry waited for the backoff");
        tx.send(true).unwrap();
        drain.await.unwrap();
        assert_eq!(*offered.lock().unwrap(), vec![vec![1, 2, 3], vec![2, 3]]);
        store.sink_refused().unwrap();
    }

    /// A refusal no retry cures stops the drain by itself, keeps every event in the outbox, and makes
    /// the store refuse further work with the sink's reason.
    #[tokio::test(start_paused = true)]
    async fn a_refusing_sink_stops_the_drain_and_keeps_the_events() {
        let (_dir, store) = outbox_with(2).await;
        let offered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse: Answer =
            Box::new(|_: &[(u64, Event)]| Delivery::failed(Error::SinkRefused("create sink.topic".into())));
        let sink = Scripted { answers: vec![refuse].into(), offered: offered.clone() };
        let (_tx, rx) = watch::channel(false);
        drain(store.clone(), sink, rx).await;
        assert_eq!(store.outbox_len(), 2);
        assert!(matches!(store.sink_refused(), Err(Error::SinkRefused(why)) if why.contains("sink.topic")));
        assert_eq!(offered.lock().unwrap().len(), 1, "no retry after a refusal");
    }

    /// Shutdown while the drain waits out a backoff ends it at once, events kept.
    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_backoff_wait() {
        let (_dir, store) = outbox_with(1).await;
        let fail = || -> Answer { Box::new(|_: &[(u64, Event)]| Delivery::failed(Error::Sink("broker down".into()))) };
        let answers = (0..1000).map(|_| fail()).collect();
        let offered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Scripted { answers, offered: offered.clone() };
        let (tx, rx) = watch::channel(false);
        let drain = tokio::spawn(drain(store.clone(), sink, rx));
        // Wait (virtual time) until it has failed a few times, so it sits in a backoff.
        while offered.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_millis(1), drain).await.expect("the drain stops at once").unwrap();
        assert_eq!(store.outbox_len(), 1);
    }
}
