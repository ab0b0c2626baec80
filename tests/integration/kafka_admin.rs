//! Kafka admin operations the tests use to stage retention and topic changes.

use std::collections::BTreeMap;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

fn admin() -> AdminClient<DefaultClientContext> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", crate::support::kafka_brokers())
        .create()
        .expect("a Kafka admin client")
}

/// Deletes the records of each partition below the given offset, as retention would.
pub async fn delete_records_below(topic: &str, below: &BTreeMap<i32, i64>) {
    let mut deleted = rdkafka::TopicPartitionList::new();
    for (&partition, &offset) in below {
        deleted
            .add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
            .unwrap();
    }
    admin()
        .delete_records(&deleted, &AdminOptions::new())
        .await
        .expect("delete records");
}

/// Grows `topic` to `total` partitions (the new ones are empty).
pub async fn grow_partitions(topic: &str, total: usize) {
    let results = admin()
        .create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new())
        .await
        .expect("create partitions");
    for result in results {
        result.expect("the topic grows");
    }
}

/// Creates `topic` with `partitions` partitions and the given topic configs.
pub async fn create_topic_with(topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut new = rdkafka::admin::NewTopic::new(
        topic,
        partitions,
        rdkafka::admin::TopicReplication::Fixed(1),
    );
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let results = admin()
        .create_topics(&[new], &AdminOptions::new())
        .await
        .expect("create topic");
    for result in results {
        result.expect("the topic is created");
    }
}
