//! Whether the loop has read everything the brokers hold: the signal for an early commit.
//!
//! A partition that sent messages is at its end once librdkafka reports its end (a fetch
//! that brought nothing new), or once the last message read is the last one below the high
//! watermark that the client's latest fetch response carried. The second comes with the
//! response that delivered the messages; the first only with the next response, which the
//! broker sends when more data arrives: at live rates every response carries new data for
//! most partitions, and the ends alone would rarely all line up.

use std::ffi::CString;

use rdkafka::bindings;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaRespErr;
use schemas::position::{Offset, Partition};

/// Which partitions sent messages since they were last at their end, and the offset of the
/// last message each sent.
#[derive(Default)]
pub struct Reading {
    last_read: Vec<Option<Offset>>,
    count: usize,
}

impl Reading {
    /// A message at `offset` of `partition` was read.
    pub fn message_from(&mut self, partition: Partition, offset: Offset) {
        let Ok(i) = usize::try_from(partition) else {
            return;
        };
        if i >= self.last_read.len() {
            self.last_read.resize(i + 1, None);
        }
        if self.last_read[i].replace(offset).is_none() {
            self.count += 1;
        }
    }

    /// librdkafka reported the end of `partition`.
    pub fn end_of(&mut self, partition: Partition) {
        if let Some(last) = usize::try_from(partition)
            .ok()
            .and_then(|i| self.last_read.get_mut(i))
            && last.take().is_some()
        {
            self.count -= 1;
        }
    }

    /// Whether every partition that sent a message is at its end: reported so, or its last
    /// message read lies just below `high_watermark` (as the client last saw it). Partitions
    /// no longer assigned (revoked before their end) are forgotten.
    pub fn at_every_end(
        &mut self,
        is_assigned: impl Fn(Partition) -> bool,
        high_watermark: impl Fn(Partition) -> Option<Offset>,
    ) -> bool {
        if self.count > 0 {
            for (i, last) in self.last_read.iter_mut().enumerate() {
                let Some(offset) = *last else { continue };
                let Ok(partition) = Partition::try_from(i) else {
                    continue;
                };
                if !is_assigned(partition)
                    || high_watermark(partition).is_some_and(|high| offset + 1 >= high)
                {
                    *last = None;
                    self.count -= 1;
                }
            }
        }
        self.count == 0
    }
}

/// The high watermark of `topic`'s `partition` as the client's latest fetch response carried
/// it: librdkafka keeps it per partition, and reading it sends no request. `None` before the
/// first response, or for a partition the client does not know.
pub fn cached_high_watermark<C: ClientContext>(
    client: &Client<C>,
    topic: &CString,
    partition: Partition,
) -> Option<Offset> {
    let mut low: i64 = -1;
    let mut high: i64 = -1;
    // SAFETY: `client.native_ptr()` is a live client for as long as `client` is borrowed;
    // `topic` is NUL-terminated and outlives the call; librdkafka only writes the two integers
    // it is given, under the partition's lock, and keeps no pointer past the call.
    #[allow(unsafe_code)]
    let code = unsafe {
        bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::Reading;

    const UNKNOWN: fn(i32) -> Option<i64> = |_| None;

    #[test]
    fn caught_up_once_every_partition_that_sent_reached_its_end() {
        let mut reading = Reading::default();
        let all = |_| true;
        assert!(reading.at_every_end(all, UNKNOWN), "nothing read yet");
        reading.message_from(0, 10);
        reading.message_from(2, 20);
        reading.message_from(2, 21);
        assert!(!reading.at_every_end(all, UNKNOWN));
        reading.end_of(0);
        assert!(
            !reading.at_every_end(all, UNKNOWN),
            "partition 2 is still short of its end"
        );
        reading.end_of(2);
        reading.end_of(2);
        assert!(reading.at_every_end(all, UNKNOWN));
        reading.message_from(1, 5);
        assert!(!reading.at_every_end(all, UNKNOWN));
        assert!(
            reading.at_every_end(|p| p != 1, UNKNOWN),
            "revoked before its end: forgotten"
        );
    }

    #[test]
    fn the_last_message_below_the_high_watermark_is_the_end() {
        let mut reading = Reading::default();
        let all = |_| true;
        reading.message_from(0, 41);
        reading.message_from(1, 7);
        let high = |p| Some(if p == 0 { 42 } else { 9 });
        assert!(
            !reading.at_every_end(all, high),
            "partition 1 holds offset 8 still unread"
        );
        reading.message_from(1, 8);
        assert!(reading.at_every_end(all, high));
        reading.message_from(3, 1);
        assert!(
            !reading.at_every_end(all, |p| if p == 3 { None } else { high(p) }),
            "no response seen for partition 3 yet: wait for its end"
        );
        reading.end_of(3);
        assert!(reading.at_every_end(all, UNKNOWN));
    }
}
