//! Validation on a second thread. The polling thread copies each message into a chunk and hands
//! full chunks to one validating thread; validated chunks come back in the order they were
//! handed over and the loop buffers them (records folded, refusals dead-lettered) on its own
//! thread, where the layer's buffer lives. Before anything that needs the buffer to hold every
//! message read — a commit, the end of a partition, a revoke — the loop waits for every chunk
//! in flight ([`Validator::settle`]); after a seek or a fence it drops them
//! ([`Validator::discard`]). JSON validation was a third of the polling thread's time
//! (docs/benchmarks.md, "Round three").

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use schemas::position::{Offset, Partition};
use schemas::{EventSchema, Record, Rejection};

use crate::layer::{Buffered, Received};

/// Messages per chunk: large enough that handing a chunk over costs nothing per message, small
/// enough that the validating thread starts soon.
const CHUNK_MESSAGES: usize = 1024;

/// A chunk is handed over once its keys and payloads hold this many bytes, whatever its count.
/// Payloads over `schema.max_record_bytes` never enter a chunk (the loop refuses them itself),
/// so a chunk holds at most this plus one message and its key.
const CHUNK_BYTES: usize = 4 << 20;

/// Chunks handed over and not yet buffered, at most: bounds the memory held between the threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// One message of a chunk: its position and where its key and payload lie in the chunk's bytes.
#[derive(Debug, Clone)]
struct Message {
    partition: Partition,
    offset: Offset,
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

/// Messages copied out of librdkafka's buffers, with what validation made of each. A chunk
/// goes back and forth between the threads and keeps its records, whose allocations the next
/// messages reuse ([`EventSchema::validate_into`]): memory allocated on one thread and freed on
/// the other cost more than validation itself.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    messages: Vec<Message>,
    /// One per message (more, kept from larger rounds): the valid records.
    records: Vec<Record>,
    /// One per message: `Ok` when its record is valid.
    outcomes: Vec<Result<(), Rejection>>,
}

impl Chunk {
    fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
        self.outcomes.clear();
    }

    fn validate(&mut self, schema: &EventSchema) {
        self.outcomes.clear();
        if self.records.len() < self.messages.len() {
            self.records
                .resize_with(self.messages.len(), Record::default);
        }
        for (message, record) in self.messages.iter().zip(&mut self.records) {
            let outcome = schema.validate_into(&self.bytes[message.payload.clone()], record);
            self.outcomes.push(outcome);
        }
    }

    /// Each message with its validation outcome, in the order read.
    pub fn validated(&self) -> impl Iterator<Item = (Received<'_>, Result<&Record, &Rejection>)> {
        self.messages
            .iter()
            .zip(&self.records)
            .zip(&self.outcomes)
            .map(|((message, record), outcome)| {
                let received = Received {
                    partition: message.partition,
                    offset: message.offset,
                    key: message.key.clone().map(|range| &self.bytes[range]),
                    payload: &self.bytes[message.payload.clone()],
                };
                (received, outcome.as_ref().map(|()| record))
            })
    }
}

/// The validating thread and the chunks on their way.
pub struct Validator {
    to_worker: Option<SyncSender<Chunk>>,
    from_worker: Receiver<Chunk>,
    worker: Option<JoinHandle<()>>,
    filling: Chunk,
    spare: Vec<Chunk>,
    in_flight: usize,
    /// Messages and input bytes read and not yet buffered (in chunks filling or in flight).
    pending: Buffered,
}

impl Validator {
    /// Starts the validating thread for `schema`.
    pub fn start(schema: EventSchema) -> std::io::Result<Self> {
        let (to_worker, jobs) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let (done, from_worker) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("validate".into())
            .spawn(move || {
                for mut chunk in jobs {
                    chunk.validate(&schema);
                    if done.send(chunk).is_err() {
                        return; // the loop is gone
                    }
                }
            })?;
        Ok(Self {
            to_worker: Some(to_worker),
            from_worker,
            worker: Some(worker),
            filling: Chunk::default(),
            spare: Vec::new(),
            in_flight: 0,
            pending: Buffered::default(),
        })
    }

    /// Messages and bytes read but not yet buffered.
    pub fn pending(&self) -> Buffered {
        self.pending
    }

    /// Copies a message into the chunk being filled; a full chunk is handed over, after the
    /// oldest chunk in flight is given back to `buffer` when too many are.
    pub fn push(&mut self, message: &Received<'_>, mut buffer: impl FnMut(&Chunk)) {
        let chunk = &mut self.filling;
        let key = message.key.map(|key| {
            let start = chunk.bytes.len();
            chunk.bytes.extend_from_slice(key);
            start..chunk.bytes.len()
        });
        let start = chunk.bytes.len();
        chunk.bytes.extend_from_slice(message.payload);
        chunk.messages.push(Message {
            partition: message.partition,
            offset: message.offset,
            key,
            payload: start..chunk.bytes.len(),
        });
        self.pending.records += 1;
        self.pending.bytes += message.payload.len() as u64;
        if chunk.messages.len() >= CHUNK_MESSAGES || chunk.bytes.len() >= CHUNK_BYTES {
            if self.in_flight >= CHUNKS_IN_FLIGHT {
                self.wait_one(&mut buffer);
            }
            self.hand_over();
        }
    }

    /// Hands the chunk being filled over, if it holds anything (the loop calls this when a
    /// poll returned nothing, so that no message waits for a chunk to fill).
    pub fn hand_over(&mut self) {
        if self.filling.messages.is_empty() {
            return;
        }
        let next = self.spare.pop().unwrap_or_default();
        let chunk = std::mem::replace(&mut self.filling, next);
        let sent = self.to_worker.as_ref().map(|to| to.send(chunk));
        assert!(
            matches!(sent, Some(Ok(()))),
            "the validating thread stopped: it only stops when dropped, or by a panic in validation"
        );
        self.in_flight += 1;
    }

    /// Gives the chunks the validating thread has finished to `buffer`, without waiting.
    pub fn ready(&mut self, mut buffer: impl FnMut(&Chunk)) {
        while self.in_flight > 0 {
            match self.from_worker.try_recv() {
                Ok(chunk) => self.done(chunk, &mut buffer),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => panic!(
                    "the validating thread stopped: it only stops when dropped, or by a panic in validation"
                ),
            }
        }
    }

    fn wait_one(&mut self, buffer: &mut impl FnMut(&Chunk)) {
        let chunk = self
            .from_worker
            .recv()
            .expect("the validating thread stopped: it only stops when dropped, or by a panic in validation");
        self.done(chunk, buffer);
    }

    fn done(&mut self, mut chunk: Chunk, buffer: &mut impl FnMut(&Chunk)) {
        self.in_flight -= 1;
        buffer(&chunk);
        no_longer_pending(&mut self.pending, &chunk);
        chunk.clear();
        // A chunk that once held a huge key keeps no more than a full chunk's room.
        chunk.bytes.shrink_to(CHUNK_BYTES);
        self.spare.push(chunk);
    }

    /// Gives every message read so far to `buffer`, in order, waiting for the chunks in flight.
    pub fn settle(&mut self, mut buffer: impl FnMut(&Chunk)) {
        self.hand_over();
        while self.in_flight > 0 {
            self.wait_one(&mut buffer);
        }
    }

    /// Drops every message read and not yet buffered (after a seek, a fence or a revoke: they
    /// are read again from the stored positions).
    pub fn discard(&mut self) {
        no_longer_pending(&mut self.pending, &self.filling);
        self.filling.clear();
        while self.in_flight > 0 {
            self.wait_one(&mut |_: &Chunk| {});
        }
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        self.to_worker = None; // ends the validating thread's loop
        while self.in_flight > 0 && self.from_worker.recv().is_ok() {
            self.in_flight -= 1;
        }
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Books a chunk's messages as buffered or dropped.
fn no_longer_pending(pending: &mut Buffered, chunk: &Chunk) {
    pending.records -= chunk.messages.len() as u64;
    pending.bytes -= chunk
        .messages
        .iter()
        .map(|m| m.payload.len() as u64)
        .sum::<u64>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> EventSchema {
        schemas::BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
            .unwrap()
            .schema
    }

    /// Message `i`: valid unless `i` is a multiple of 7 (then hostile: NUL, not JSON, empty).
    fn payload(i: i64) -> Vec<u8> {
        match i % 21 {
            0 => br#"{"event_id":"x\u0000","ts":"2026-01-01T00:00:00Z"}"#.to_vec(),
            7 => b"not json".to_vec(),
            14 => Vec::new(),
            _ => format!(
                r#"{{"event_id":"e{i}","ts":"2026-01-01T00:00:05Z","event_type":"page_view","user_id":"u","page":"/p{i}","country":"US","device":"mobile","duration_ms":{i}}}"#
            )
            .into_bytes(),
        }
    }

    type Seen = Vec<(
        Partition,
        Offset,
        Option<Vec<u8>>,
        Vec<u8>,
        Result<Record, Rejection>,
    )>;

    fn collect(seen: &mut Seen) -> impl FnMut(&Chunk) + '_ {
        |chunk: &Chunk| {
            for (received, outcome) in chunk.validated() {
                seen.push((
                    received.partition,
                    received.offset,
                    received.key.map(<[u8]>::to_vec),
                    received.payload.to_vec(),
                    outcome.cloned().map_err(Rejection::clone),
                ));
            }
        }
    }

    #[test]
    fn every_message_comes_back_once_in_order_with_the_validators_outcome() {
        let schema = schema();
        let mut validator = Validator::start(schema.clone()).unwrap();
        let mut seen = Seen::new();
        let count = (CHUNK_MESSAGES * (CHUNKS_IN_FLIGHT + 3) + 17) as i64;
        for i in 0..count {
            let (partition, payload) = ((i % 3) as Partition, payload(i));
            let key = format!("k{i}").into_bytes();
            let message = Received {
                partition,
                offset: i,
                key: (i % 2 == 0).then_some(&key[..]),
                payload: &payload,
            };
            validator.push(&message, collect(&mut seen));
            if i % 1000 == 0 {
                validator.ready(collect(&mut seen));
            }
        }
        assert!(validator.pending().records > 0, "some still on their way");
        validator.settle(collect(&mut seen));
        assert_eq!(validator.pending(), Buffered::default());
        assert_eq!(seen.len(), count as usize);
        for (i, (partition, offset, key, bytes, outcome)) in seen.into_iter().enumerate() {
            let i = i as i64;
            assert_eq!((partition, offset), ((i % 3) as Partition, i));
            assert_eq!(key, (i % 2 == 0).then(|| format!("k{i}").into_bytes()));
            assert_eq!(bytes, payload(i));
            assert_eq!(outcome, schema.validate(&payload(i)), "message {i}");
        }
    }

    #[test]
    fn discarded_messages_never_come_back() {
        let mut validator = Validator::start(schema()).unwrap();
        let mut seen = Seen::new();
        for i in 0..(CHUNK_MESSAGES as i64 * 2 + 5) {
            let payload = payload(i);
            let message = Received {
                partition: 0,
                offset: i,
                key: None,
                payload: &payload,
            };
            validator.push(&message, collect(&mut seen));
        }
        validator.discard();
        assert_eq!(validator.pending(), Buffered::default());
        validator.settle(collect(&mut seen));
        assert!(seen.is_empty(), "{} came back", seen.len());
        // And it goes on validating after a discard.
        let payload = payload(1);
        validator.push(
            &Received {
                partition: 0,
                offset: 99,
                key: None,
                payload: &payload,
            },
            collect(&mut seen),
        );
        validator.settle(collect(&mut seen));
        assert_eq!(seen.len(), 1);
        assert!(seen[0].4.is_ok());
    }

    #[test]
    fn a_chunk_of_large_messages_is_handed_over_by_its_bytes() {
        let mut validator = Validator::start(schema()).unwrap();
        let mut seen = Seen::new();
        let key = vec![b'k'; 1 << 20];
        let payload = payload(1);
        for offset in 0..5 {
            let message = Received {
                partition: 0,
                offset,
                key: Some(&key),
                payload: &payload,
            };
            validator.push(&message, collect(&mut seen));
        }
        // The first four filled a chunk's bytes and went to the validating thread; the fifth
        // waits in the next chunk.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while seen.len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} came back",
                seen.len()
            );
            validator.ready(collect(&mut seen));
            std::thread::yield_now();
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(validator.pending().records, 1);
        validator.settle(collect(&mut seen));
        assert_eq!(seen.len(), 5);
        assert!(
            seen.iter()
                .all(|s| s.2.as_deref() == Some(&key[..]) && s.4.is_ok())
        );
    }
}
