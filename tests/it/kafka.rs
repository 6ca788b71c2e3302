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

async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let res = admin
        .create_topics(&[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topic");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Reads every message of `topic` until `want` have arrived (or fails after a timeout): (key, payload).
fn consume(brokers: &str, topic: &str, want: usize) -> Vec<(String, J)> {
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
