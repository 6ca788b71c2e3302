//! Event sinks (Kafka, a JSON-lines file, stdout) and the outbox drain that feeds them.

use crate::config::{SinkConfig, SinkKind};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::state::Store;
use futures_util::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where events go.
///
/// Contract: delivery is at-least-once. `deliver` returns the ids of the events the destination has
/// durably accepted (Kafka: acknowledged by all in-sync replicas; file: written and flushed to disk);
/// only those are removed from the outbox, and the rest are offered again later, so a destination may
/// see an event twice and must tolerate duplicates. Implementations keep the order of the batch.
pub trait EventSink: Send {
    fn deliver<'a>(&'a mut self, batch: &'a [(u64, Event)]) -> impl Future<Output = Result<Vec<u64>>> + Send + 'a;
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

impl EventSink for KafkaSink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Result<Vec<u64>> {
        let rendered: Vec<(u64, String, String)> =
            batch.iter().map(|(id, e)| (*id, e.message_key(), e.to_json().to_string())).collect();
        let sends = rendered.iter().map(|(id, key, payload)| {
            let record = FutureRecord::to(&self.topic).key(key).payload(payload);
            let fut = self.producer.send(record, Duration::from_secs(10));
            async move { (*id, fut.await) }
        });
        let results = join_all(sends).await;
        let mut acked = Vec::with_capacity(results.len());
        let mut failure = None;
        for (id, r) in results {
            match r {
                Ok(_) => acked.push(id),
                Err((e, _)) => failure = Some(e),
            }
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // An idempotent producer that hit a fatal error refuses all further sends: start a new one.
            tracing::warn!(?code, %reason, "Kafka producer failed fatally; recreating it");
            self.producer = Self::producer(&self.config)?;
        }
        match failure {
            Some(e) if acked.is_empty() => Err(Error::Sink(format!("Kafka delivery failed: {e}"))),
            _ => Ok(acked),
        }
    }
}

/// JSON lines appended to a file, flushed and synced before acknowledging.
pub struct FileSink {
    file: std::fs::File,
}

impl FileSink {
    pub fn new(path: &std::path::Path) -> Result<FileSink> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
            Error::Config(format!("sink.path: cannot open {} for appending: {e}; fix sink.path", path.display()))
        })?;
        Ok(FileSink { file })
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

impl EventSink for FileSink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Result<Vec<u64>> {
        let buf = lines(batch);
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::Sink(format!("writing the events file: {e}")))?;
        Ok(batch.iter().map(|(id, _)| *id).collect())
    }
}

pub struct StdoutSink;

impl EventSink for StdoutSink {
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Result<Vec<u64>> {
        let buf = lines(batch);
        let mut out = std::io::stdout().lock();
        out.write_all(&buf).and_then(|_| out.flush()).map_err(|e| Error::Sink(format!("writing to stdout: {e}")))?;
        Ok(batch.iter().map(|(id, _)| *id).collect())
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
    async fn deliver(&mut self, batch: &[(u64, Event)]) -> Result<Vec<u64>> {
        match self {
            AnySink::Kafka(s) => s.deliver(batch).await,
            AnySink::File(s) => s.deliver(batch).await,
            AnySink::Stdout(s) => s.deliver(batch).await,
        }
    }
}

/// Sends outbox events, oldest first, until `shutdown` turns true; removes each once acknowledged.
/// Failures back off (up to 5 s) and retry; nothing is dropped.
pub async fn drain<S: EventSink>(store: Arc<Store>, mut sink: S, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
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
        let result = tokio::select! {
            r = sink.deliver(&batch) => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(acked) => {
                if let Err(e) = store.outbox_ack(&acked).await {
                    tracing::error!(error = %e, "cannot remove delivered events from the outbox");
                }
                backoff = Duration::from_millis(100);
                if acked.len() < batch.len() {
                    tokio::time::sleep(backoff).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, undelivered = store.outbox_len(), "event delivery failed; events stay in the outbox and are retried");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
