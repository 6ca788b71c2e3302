//! Events on a real Kafka-protocol broker, read back with a real consumer; and delivery after the broker
//! was down.

use crate::harness::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value as J};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;

pub async fn create_topic(brokers: &str, topic: &str) {
    create_topic_with(brokers, topic, &[]).await
}

/// Creates a topic with topic-level configuration (`max.message.bytes`, ...).
async fn create_topic_with(brokers: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let mut new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res = admin.create_topics(&[new], &AdminOptions::new()).await.expect("create topic");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Reads every message of `topic` until `want` have arrived (or fails after a timeout): (key, payload).
pub fn consume(brokers: &str, topic: &str, want: usize) -> Vec<(String, J)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("it-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while out.len() < want && Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let payload: J = serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON payload");
            out.push((key, payload));
        }
    }
    out
}

fn kafka_config(brokers: &str, topic: &str, extra: &str) -> String {
    format!("[check]\nsettle = \"100ms\"\ndrain_timeout = \"5s\"\n[sink]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{extra}[[table]]\nname = \"t\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_a_kafka_topic_keyed_by_row() {
    let brokers = env_var("BVT_BROKERS");
    let p = Pair::new("kafka").await;
    let topic = format!("events-{}", p.db);
    create_topic(&brokers, &topic).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_50").await;
    p.exec(Side::Target, "DELETE FROM t WHERE id = 7").await;
    p.exec(Side::Target, "UPDATE t SET v = 0 WHERE id = 8").await;
    p.exec(Side::Target, "INSERT INTO t VALUES (99, 99)").await;
    p.config("", &kafka_config(&brokers, &topic, ""));
    let out = p.run(&["full"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let got = consume(&brokers, &topic, 3);
    let payloads: Vec<J> = got.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(
        kinds_and_keys(&payloads),
        expect(&[("target_missing", json!({"id": 7})), ("neq", json!({"id": 8})), ("base_missing", json!({"id": 99}))])
    );
    for (key, payload) in &got {
        assert_eq!(key, &format!("t:{}", payload["key"]), "message key is table + key");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_wait_in_the_outbox_while_the_broker_is_down() {
    let port = "19094";
    let brokers = format!("127.0.0.1:{port}");
    let name = format!("broker-restart-{}", std::process::id());
    testenv(&["start-broker", &name, port]);
    let p = Pair::new("kdown").await;
    let topic = format!("events-{}", p.db);
    create_topic(&brokers, &topic).await;
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.both("INSERT INTO t SELECT seq, seq FROM seq_1_to_20").await;
    p.exec(Side::Target, "DELETE FROM t WHERE id IN (3, 4)").await;

    testenv(&["stop-broker", &name]);
    p.config("", &kafka_config(&brokers, &topic, "[sink.kafka]\n\"message.timeout.ms\" = \"2000\"\n"));
    let out = p.run(&["full"]);
    assert_eq!(out.status.code(), Some(1), "validation goes on while the broker is down: {}", text(&out));
    assert!(text(&out).contains("2 events are not yet delivered"), "{}", text(&out));

    // The broker is back; the data is repaired; the next start sends what waited first.
    testenv(&["start-broker", &name, port]);
    p.exec(Side::Target, "INSERT INTO t VALUES (3, 3), (4, 4)").await;
    let out = p.run(&["full"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got: Vec<J> = consume(&brokers, &topic, 2).into_iter().map(|(_, p)| p).collect();
    testenv(&["destroy", &name]);
    assert_eq!(
        kinds_and_keys(&got),
        expect(&[("target_missing", json!({"id": 3})), ("target_missing", json!({"id": 4}))])
    );
}

/// The number of messages in `topic` (sum of high watermarks over its partitions).
fn message_count(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    (0..PARTITIONS).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1).sum()
}

fn event(id: i64, columns: Vec<String>) -> binlog_validator::deliver::event::Event {
    binlog_validator::deliver::event::Event {
        kind: binlog_validator::deliver::event::EventType::Neq,
        direction: "SRC".into(),
        table: "t".into(),
        key_columns: vec!["id".into()],
        key: binlog_validator::key::Key(vec![binlog_validator::key::KeyVal::Int(id)]),
        mode: binlog_validator::deliver::event::Mode::Full,
        columns,
        detected_at_ms: 1,
    }
}

/// One row's first event fails (too large), its second would fit: the second must not overtake the
/// first, another row's event goes through, and the failure is returned, not dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_partly_failed_batch_keeps_each_rows_order_and_returns_the_error() {
    use binlog_validator::deliver::sink::{EventSink, KafkaSink};
    let brokers = env_var("BVT_BROKERS");
    let topic = format!("events-partial-{}", std::process::id());
    create_topic(&brokers, &topic).await;
    let cfg = binlog_validator::config::SinkConfig {
        kind: binlog_validator::config::SinkKind::Kafka,
        brokers: brokers.clone(),
        topic: topic.clone(),
        kafka: [("message.max.bytes".to_string(), "1000".to_string())].into_iter().collect(),
        ..Default::default()
    };
    let mut sink = KafkaSink::new(&cfg).unwrap();
    let batch =
        vec![(1, event(1, vec!["x".repeat(2000)])), (2, event(1, vec!["v".into()])), (3, event(2, vec!["v".into()]))];
    let d = sink.deliver(&batch).await;
    assert_eq!(d.acked, vec![3], "row 1's second event must wait for its first: {d:?}");
    let failure = d.failure.expect("the failure is returned").to_string();
    assert!(failure.contains("max.message.bytes") && failure.contains(&topic), "{failure}");
    assert_eq!(message_count(&brokers, &topic), 1);
}

/// An event the broker can never accept (larger than the topic's max.message.bytes) stops `full` with
/// exit 2 and the fix, instead of leaving it to fill the outbox forever (the event stays in the outbox
/// for the next start).
#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_broker_refuses_stops_the_run_with_the_fix() {
    let brokers = env_var("BVT_BROKERS");
    let p = Pair::new("krefuse").await;
    let topic = format!("events-{}", p.db);
    create_topic_with(&brokers, &topic, &[("max.message.bytes", "1000")]).await;
    p.both("CREATE TABLE t (k VARCHAR(700) PRIMARY KEY, v INT)").await;
    p.exec(Side::Source, &format!("INSERT INTO t VALUES ('{}', 1)", "k".repeat(700))).await;
    p.config("", &kafka_config(&brokers, &topic, ""));
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["Kafka refuses events", &topic, "max.message.bytes"]);
    assert_eq!(message_count(&brokers, &topic), 0);
}

/// A topic that does not exist, on a broker that does not create topics on demand (here the producer
/// asks it not to), stops `full` with exit 2 and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_topic_stops_the_run_with_the_fix() {
    let brokers = env_var("BVT_BROKERS");
    let p = Pair::new("kunknown").await;
    let topic = format!("never-created-{}", p.db);
    p.both("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    p.exec(Side::Source, "INSERT INTO t VALUES (1, 1)").await;
    let kafka =
        "[sink.kafka]\n\"allow.auto.create.topics\" = \"false\"\n\"topic.metadata.propagation.max.ms\" = \"500\"\n";
    p.config("", &kafka_config(&brokers, &topic, kafka));
    let out = p.run(&["full"]);
    assert_clean_failure(&out, &["Kafka refuses events", &topic, "create sink.topic"]);
}
