//! A round trip through the real broker: `braid generate` produces, a plain consumer reads back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::support::{braid, kafka_brokers, run, stderr, unique_topic};

const COUNT: usize = 3_000;
const PARTITIONS: i32 = 3;

#[test]
fn generated_events_arrive_in_kafka_exactly_as_the_generator_prints_them() {
    let topic = unique_topic("roundtrip");
    let common = [
        "--count",
        "3000",
        "--seed",
        "7",
        "--rate",
        "0",
        "--malformed-fraction",
        "0.05",
    ];
    let produced = run(braid()
        .args(["generate", "--topic", &topic, "--partitions", "3"])
        .args(common));
    assert!(produced.status.success(), "{}", stderr(&produced));
    let printed = run(braid().args(["generate", "--stdout"]).args(common));
    assert!(printed.status.success(), "{}", stderr(&printed));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("{topic}.reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut consumed: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut total = 0;
    let mut keys_by_partition: HashMap<String, i32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while total < COUNT {
        assert!(
            Instant::now() < deadline,
            "only {total} of {COUNT} messages arrived"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let previous = keys_by_partition.insert(key.clone(), message.partition());
        assert!(
            previous.is_none_or(|p| p == message.partition()),
            "key {key} went to two partitions"
        );
        *consumed
            .entry(message.payload().unwrap().to_vec())
            .or_default() += 1;
        total += 1;
    }
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "more than {COUNT} messages arrived"
    );

    let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
    for line in printed
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        *expected.entry(line.to_vec()).or_default() += 1;
    }
    assert_eq!(
        consumed, expected,
        "the broker holds exactly the printed records"
    );
    assert_eq!(
        keys_by_partition
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        PARTITIONS as usize
    );
}
