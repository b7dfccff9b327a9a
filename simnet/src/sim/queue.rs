//! The event queue and the trace hash: events pop in (time, sequence number) order, the same order one heap
//! over every event would give, and every processed event is hashed into the run's trace. Knows nothing of
//! what an event means.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use floe_protocol::write::Millis;

use super::Ev;

/// The run's trace hash: BLAKE3 (derive-key mode) over every event's record, in order. Records are hashed in
/// 64 KiB batches: BLAKE3 hashes whole chunks in parallel lanes, so a batch costs far less than one 41-byte
/// update per event, and the hash is the same either way (it depends only on the bytes, not on how they were fed).
pub(super) struct TraceHash {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

impl TraceHash {
    const BATCH: usize = 64 * 1024;

    pub(super) fn new() -> Self {
        Self {
            hasher: blake3::Hasher::new_derive_key("floe-simnet 2026-11 trace v1"),
            pending: Vec::with_capacity(Self::BATCH),
        }
    }

    pub(super) fn update(&mut self, record: &[u8]) {
        self.pending.extend_from_slice(record);
        if self.pending.len() >= Self::BATCH {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
    }

    pub(super) fn finalize(&mut self) -> String {
        self.hasher.update(&self.pending);
        self.pending.clear();
        self.hasher.finalize().to_hex().to_string()
    }
}

/// The event queue: pops events in (time, sequence number) order. Events due before `horizon` sit in a small
/// heap; later ones wait in buckets of `BUCKET_MS` and enter the heap a bucket at a time. The heap thus holds
/// only the near future (messages in flight, timers), not every departure and retry scheduled hours ahead, and
/// popping stays cheap. The order is exactly that of one heap over everything: every event in the heap is due
/// before every event in a bucket.
#[derive(Default)]
pub(super) struct EventQueue {
    near: BinaryHeap<Queued>,
    far: BTreeMap<Millis, Vec<Queued>>,
    /// Events due before this are in `near`; the others in `far`.
    horizon: Millis,
}

impl EventQueue {
    const BUCKET_MS: Millis = 10_000;

    pub(super) fn push(&mut self, queued: Queued) {
        if queued.at < self.horizon {
            self.near.push(queued);
        } else {
            self.far
                .entry(queued.at / Self::BUCKET_MS)
                .or_default()
                .push(queued);
        }
    }

    pub(super) fn pop(&mut self) -> Option<Queued> {
        loop {
            if let Some(queued) = self.near.pop() {
                return Some(queued);
            }
            let (bucket, events) = self.far.pop_first()?;
            self.horizon = bucket.saturating_add(1).saturating_mul(Self::BUCKET_MS);
            self.near.extend(events);
        }
    }
}

/// One scheduled event.
pub(super) struct Queued {
    pub(super) at: Millis,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so that the max-heap pops the earliest (time, sequence number) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn the_bucketed_event_queue_pops_in_the_order_of_one_heap() {
        let mut queue = EventQueue::default();
        let mut heap = BinaryHeap::new();
        let (mut now, mut seq, mut x) = (0u64, 0u64, 7u64);
        for step in 0..200_000u64 {
            x = rng::splitmix64(x);
            // Mostly pushes early on, then mostly pops; delays from 0 ms to hours, many equal times.
            if x % 3 != 0 || step < 1000 {
                seq += 1;
                let delay = match x % 5 {
                    0 => 0,
                    1 => (x >> 8) % 50,
                    2 => (x >> 8) % 20_000,
                    3 => (x >> 8) % 3_600_000,
                    _ => 10_000 * ((x >> 8) % 4),
                };
                let at = now + delay;
                queue.push(Queued {
                    at,
                    seq,
                    ev: Ev::Reevaluate(0),
                });
                heap.push(Queued {
                    at,
                    seq,
                    ev: Ev::Reevaluate(0),
                });
            } else {
                let (a, b) = (queue.pop(), heap.pop());
                assert_eq!(
                    a.as_ref().map(|q| (q.at, q.seq)),
                    b.as_ref().map(|q| (q.at, q.seq))
                );
                if let Some(q) = a {
                    now = q.at;
                }
            }
        }
        while let Some(b) = heap.pop() {
            let a = queue.pop().unwrap();
            assert_eq!((a.at, a.seq), (b.at, b.seq));
        }
        assert!(queue.pop().is_none());
    }

    #[test]
    fn batched_trace_hash_equals_hashing_each_record() {
        // Batching is only a speed-up: the hash must be BLAKE3 over the records as if fed one by one.
        for records in [0usize, 1, 1598, 1599, 1600, 5000] {
            let mut batched = TraceHash::new();
            let mut plain = blake3::Hasher::new_derive_key("floe-simnet 2026-11 trace v1");
            for i in 0..records {
                let record = [u8::try_from(i % 251).unwrap(); 41];
                batched.update(&record);
                plain.update(&record);
            }
            assert_eq!(
                batched.finalize(),
                plain.finalize().to_hex().to_string(),
                "{records} records"
            );
        }
    }

    #[test]
    fn the_queue_pops_in_time_then_schedule_order() {
        let mut heap = BinaryHeap::new();
        for (at, seq) in [(5, 1), (3, 2), (5, 0), (3, 3)] {
            heap.push(Queued {
                at,
                seq,
                ev: Ev::Sample,
            });
        }
        let order: Vec<(u64, u64)> =
            std::iter::from_fn(|| heap.pop().map(|q| (q.at, q.seq))).collect();
        assert_eq!(order, vec![(3, 2), (3, 3), (5, 0), (5, 1)]);
    }
}
