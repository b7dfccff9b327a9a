//! The streamed write: a blob too large to hold encoded in memory is delivered run by run, a run being a few
//! consecutive segments of every sliver index, with only a bounded window of runs prepared at once.
//!
//! This module owns the decisions of such a write: which runs the driver must prepare (encode) and may drop,
//! whom to send which run, when to retry, when the blob is certified and when to give up. It does not read,
//! encode, sign, verify or talk to the network. [`store_runs`] is the cut of a blob's segments into runs, shared
//! with every other delivery of a whole sliver index (a small blob's write, a repair, a hand-off), so one store
//! request never exceeds the wire's frame limit.
//!
//! Each holder gets its index's runs in order, one request in flight at a time; it answers each with progress
//! (segments held) and the last one with its signed receipt. A holder that runs out of attempts on any run is
//! given up for the rest of the write. The slowest live holder bounds the window: every run from the lowest one
//! a live holder still needs up to `window` runs on stays prepared, so memory stays at `window` runs whatever the
//! blob's size. The blob is certified once receipts cover ⌈2n/3⌉ indexes, as in [`crate::write`].

use std::collections::BTreeMap;
use std::ops::Range;

use crate::blob_id::BlobId;
use crate::encoding::BlobParams;
use crate::placement::{PeerKey, Placement};
use crate::write::{Millis, certificate_quorum};

/// Most sliver bytes one store request carries: runs are cut so that each index's part stays under it (a run
/// holds at least one segment, and a segment's sliver is at most half of the largest segment).
pub const MAX_RUN_BYTES: u64 = 16 << 20;
/// Most sliver bytes of one run over all n indexes, so that a streamed write's prepared window stays small
/// however large n is (one segment at least).
pub const MAX_RUN_TOTAL_BYTES: u64 = 32 << 20;

/// The runs of a blob: consecutive segment ranges whose slivers of one index add up to at most
/// [`MAX_RUN_BYTES`] and, over all indexes, to at most [`MAX_RUN_TOTAL_BYTES`] (one segment at least), covering
/// every segment in order. At the default 16 MiB segments that is one segment per run.
pub fn store_runs(params: &BlobParams) -> Vec<Range<u64>> {
    let limit = MAX_RUN_BYTES.min(MAX_RUN_TOTAL_BYTES / u64::from(params.shards().max(1)));
    cut_segments(params, 0..params.segment_count(), limit)
}

/// Cuts `segments` into consecutive ranges whose slivers of one index add up to at most `limit` bytes (one
/// segment at least): the runs of a write, and the pieces a reader asks for so that each answer fits a message.
pub fn cut_segments(params: &BlobParams, segments: Range<u64>, limit: u64) -> Vec<Range<u64>> {
    let end = segments.end.min(params.segment_count());
    let mut runs = Vec::new();
    let mut start = segments.start;
    let mut bytes = 0u64;
    for segment in segments.start..end {
        let len = params
            .sliver_len(segment)
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        if segment > start && bytes.saturating_add(len) > limit {
            runs.push(start..segment);
            start = segment;
            bytes = 0;
        }
        bytes = bytes.saturating_add(len);
    }
    if start < end {
        runs.push(start..end);
    }
    runs
}

/// How a streamed write retries and how much it keeps prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWriteConfig {
    /// How long to wait for a holder's answer to one run before trying again.
    pub request_timeout: Millis,
    /// Attempts per run and index, the first included.
    pub max_attempts: u32,
    /// Runs prepared at once (at least 1): the write's memory is about this many runs of every index.
    pub window: usize,
}

impl Default for StreamWriteConfig {
    fn default() -> Self {
        Self {
            request_timeout: 30_000,
            max_attempts: 3,
            window: 2,
        }
    }
}

impl StreamWriteConfig {
    /// A streamed write that retries as `write` does, with the default window: the node and the simulator
    /// both take their streamed writes' settings from their writes'.
    pub fn like(write: &crate::write::WriteConfig) -> Self {
        Self {
            request_timeout: write.request_timeout,
            max_attempts: write.max_attempts,
            ..Self::default()
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamWriteEffect {
    /// Make run `run`'s slivers (of every index) ready, then call [`StreamWrite::on_prepared`]. Runs are asked
    /// for in order, each once.
    Prepare {
        /// The run, an index into [`store_runs`].
        run: usize,
    },
    /// Every run below `below` is delivered or abandoned by every holder: its slivers can be dropped.
    Release {
        /// The first run still needed.
        below: usize,
    },
    /// Send run `run` of sliver `index` to `peer`; report the answer with the same `run` and `attempt`.
    Send {
        /// The holder.
        peer: PeerKey,
        /// The sliver index.
        index: u16,
        /// The run.
        run: usize,
        /// Which attempt at this run this is, from 1.
        attempt: u32,
    },
    /// Call [`StreamWrite::on_timer`] at or after this time.
    SetTimer(Millis),
    /// Receipts now cover ⌈2n/3⌉ indexes: the blob is certified.
    Certified,
    /// The write cannot be certified any more: too many holders failed.
    Failed {
        /// Indexes with receipts.
        stored: usize,
        /// Indexes needed.
        needed: usize,
        /// Indexes given up.
        failed: usize,
    },
    /// Every index is stored or given up; nothing more will happen.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Delivering `run`; `deadline` is `None` while the run is not prepared yet.
    Sending {
        run: usize,
        attempt: u32,
        deadline: Option<Millis>,
    },
    Stored,
    GaveUp,
}

/// One blob's streamed write.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    blob_id: BlobId,
    config: StreamWriteConfig,
    placement: Placement,
    runs: usize,
    slots: Vec<Slot>,
    receipts: BTreeMap<u16, Vec<u8>>,
    /// Runs `[released, prepared)` are ready; `[prepared, requested)` are being prepared.
    released: usize,
    prepared: usize,
    requested: usize,
    certified: bool,
    done: bool,
}

impl StreamWrite {
    /// Starts a write of `blob_id`, cut into `runs` runs (see [`store_runs`]), over `placement`.
    pub fn start(
        blob_id: BlobId,
        placement: Placement,
        runs: usize,
        config: StreamWriteConfig,
    ) -> (Self, Vec<StreamWriteEffect>) {
        let slots = vec![
            Slot::Sending {
                run: 0,
                attempt: 1,
                deadline: None,
            };
            placement.len()
        ];
        let mut write = Self {
            blob_id,
            config: StreamWriteConfig {
                window: config.window.max(1),
                ..config
            },
            placement,
            runs: runs.max(1),
            slots,
            receipts: BTreeMap::new(),
            released: 0,
            prepared: 0,
            requested: 0,
            certified: false,
            done: false,
        };
        let effects = write.progress();
        (write, effects)
    }

    /// The blob.
    pub fn blob_id(&self) -> &BlobId {
        &self.blob_id
    }

    /// The placement this write follows.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Receipts collected so far, by sliver index (the driver verified their signatures).
    pub fn receipts(&self) -> &BTreeMap<u16, Vec<u8>> {
        &self.receipts
    }

    /// Whether the write is certified.
    pub fn is_certified(&self) -> bool {
        self.certified
    }

    /// Whether nothing more will happen.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Run `run` is ready. Runs must be reported in the order they were asked for; anything else is ignored.
    pub fn on_prepared(&mut self, run: usize, now: Millis) -> Vec<StreamWriteEffect> {
        if self.done || run != self.prepared || run >= self.requested {
            return Vec::new();
        }
        self.prepared += 1;
        let deadline = now.saturating_add(self.config.request_timeout);
        let mut effects = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Sending {
                run: wanted,
                attempt,
                deadline: waiting @ None,
            } = slot
                && *wanted == run
            {
                *waiting = Some(deadline);
                let index = u16::try_from(index).unwrap_or(u16::MAX);
                if let Some(peer) = self.placement.holder(index) {
                    effects.push(StreamWriteEffect::Send {
                        peer: peer.clone(),
                        index,
                        run,
                        attempt: *attempt,
                    });
                }
            }
        }
        if !effects.is_empty() {
            effects.push(StreamWriteEffect::SetTimer(deadline));
        }
        effects.extend(self.progress());
        effects
    }

    /// The holder of `index` kept run `run` (any attempt) but its index is not complete yet. After the last run
    /// that means the holder lacks earlier segments, which may be released already: the index is given up.
    pub fn on_progress(
        &mut self,
        peer: &[u8],
        index: u16,
        run: usize,
        _attempt: u32,
        now: Millis,
    ) -> Vec<StreamWriteEffect> {
        if self.done || !self.is_holder(peer, index) {
            return Vec::new();
        }
        let Some(slot) = self.slots.get_mut(usize::from(index)) else {
            return Vec::new();
        };
        match *slot {
            Slot::Sending { run: current, .. } if current == run && run + 1 < self.runs => {
                let next = run + 1;
                let ready = next < self.prepared;
                let deadline = now.saturating_add(self.config.request_timeout);
                *slot = Slot::Sending {
                    run: next,
                    attempt: 1,
                    deadline: ready.then_some(deadline),
                };
                let mut effects = Vec::new();
                if ready {
                    effects.push(StreamWriteEffect::Send {
                        peer: peer.to_vec(),
                        index,
                        run: next,
                        attempt: 1,
                    });
                    effects.push(StreamWriteEffect::SetTimer(deadline));
                }
                effects.extend(self.progress());
                effects
            }
            // The holder lacks earlier segments, which are released by now: resending the last run cannot help.
            Slot::Sending { run: current, .. } if current == run => {
                *slot = Slot::GaveUp;
                self.progress()
            }
            _ => Vec::new(),
        }
    }

    /// A valid, signed receipt from the holder of `index`: its whole index is stored. Counts whenever it comes,
    /// even after the index was given up, while the write runs.
    pub fn on_receipt(
        &mut self,
        peer: &[u8],
        index: u16,
        receipt: Vec<u8>,
    ) -> Vec<StreamWriteEffect> {
        if self.done || !self.is_holder(peer, index) {
            return Vec::new();
        }
        match self.slots.get_mut(usize::from(index)) {
            Some(slot @ (Slot::Sending { .. } | Slot::GaveUp)) => {
                *slot = Slot::Stored;
                self.receipts.insert(index, receipt);
                self.progress()
            }
            _ => Vec::new(),
        }
    }

    /// Attempt `attempt` at run `run` of `index` failed (refused, unreachable, bad answer). It is retried soon
    /// if attempts remain; the failure of an earlier attempt changes nothing.
    pub fn on_failure(
        &mut self,
        peer: &[u8],
        index: u16,
        run: usize,
        attempt: u32,
        now: Millis,
    ) -> Vec<StreamWriteEffect> {
        if self.done || !self.is_holder(peer, index) {
            return Vec::new();
        }
        let soon = now.saturating_add(self.config.request_timeout / 10);
        if let Some(Slot::Sending {
            run: current,
            attempt: current_attempt,
            deadline: Some(deadline),
        }) = self.slots.get_mut(usize::from(index))
            && *current == run
            && *current_attempt == attempt
        {
            // Retry soon rather than wait out the full timeout, but not in a tight loop.
            *deadline = (*deadline).min(soon);
        }
        let mut effects = self.on_timer(now);
        if let Some(Slot::Sending {
            deadline: Some(deadline),
            ..
        }) = self.slots.get(usize::from(index))
        {
            effects.push(StreamWriteEffect::SetTimer(*deadline));
        }
        effects
    }

    /// A timer fired: resend what timed out, give up on what ran out of attempts.
    pub fn on_timer(&mut self, now: Millis) -> Vec<StreamWriteEffect> {
        if self.done {
            return Vec::new();
        }
        let mut effects = Vec::new();
        let mut next: Option<Millis> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Slot::Sending {
                run,
                attempt,
                deadline: Some(deadline),
            } = slot
            else {
                continue;
            };
            if *deadline > now {
                next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                continue;
            }
            if *attempt >= self.config.max_attempts {
                *slot = Slot::GaveUp;
                continue;
            }
            *attempt += 1;
            *deadline = now.saturating_add(self.config.request_timeout);
            next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            if let Some(peer) = self.placement.holder(index) {
                effects.push(StreamWriteEffect::Send {
                    peer: peer.clone(),
                    index,
                    run: *run,
                    attempt: *attempt,
                });
            }
        }
        if let Some(at) = next {
            effects.push(StreamWriteEffect::SetTimer(at));
        }
        effects.extend(self.progress());
        effects
    }

    fn is_holder(&self, peer: &[u8], index: u16) -> bool {
        self.placement.holder(index).map(Vec::as_slice) == Some(peer)
    }

    /// Moves the window, then reports certification, failure and the end.
    fn progress(&mut self) -> Vec<StreamWriteEffect> {
        let mut effects = Vec::new();
        if self.done {
            return effects;
        }
        let low = self
            .slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Sending { run, .. } => Some(*run),
                _ => None,
            })
            .min()
            .unwrap_or(self.runs);
        if low > self.released {
            self.released = low;
            effects.push(StreamWriteEffect::Release { below: low });
        }
        let stored = self.receipts.len();
        let failed = self.slots.iter().filter(|s| **s == Slot::GaveUp).count();
        let quorum = certificate_quorum(u16::try_from(self.slots.len()).unwrap_or(u16::MAX));
        if !self.certified && stored >= quorum {
            self.certified = true;
            effects.push(StreamWriteEffect::Certified);
        }
        if !self.certified && self.slots.len().saturating_sub(failed) < quorum {
            self.done = true;
            effects.push(StreamWriteEffect::Failed {
                stored,
                needed: quorum,
                failed,
            });
            return effects;
        }
        if stored + failed >= self.slots.len() {
            self.done = true;
            effects.push(StreamWriteEffect::Finished);
            return effects;
        }
        let limit = self
            .released
            .saturating_add(self.config.window)
            .min(self.runs);
        while self.requested < limit {
            effects.push(StreamWriteEffect::Prepare {
                run: self.requested,
            });
            self.requested += 1;
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::EncodingType;
    use proptest::prelude::*;

    fn peers(count: u8) -> Vec<PeerKey> {
        (0..count).map(|i| vec![i; 4]).collect()
    }

    fn start(
        count: u8,
        shards: u16,
        runs: usize,
        window: usize,
    ) -> (StreamWrite, Vec<StreamWriteEffect>) {
        let id = BlobId([5; 32]);
        let placement = Placement::new(&id, shards, &peers(count)).expect("placement");
        let config = StreamWriteConfig {
            window,
            ..StreamWriteConfig::default()
        };
        StreamWrite::start(id, placement, runs, config)
    }

    #[test]
    fn runs_cover_every_segment_and_stay_under_the_limit() {
        let params = BlobParams::new(EncodingType::RsSimd, 4, 16 << 20, 10 << 30).expect("params");
        let runs = store_runs(&params);
        assert_eq!(runs.first().map(|r| r.start), Some(0));
        assert_eq!(runs.last().map(|r| r.end), Some(params.segment_count()));
        assert!(runs.windows(2).all(|w| w[0].end == w[1].start));
        // k = 2: 8 MiB slivers, one segment per run (32 MiB over the four indexes).
        assert_eq!(runs.len(), 640);
        let small = BlobParams::new(EncodingType::RsSimd, 4, 1 << 20, 10 << 20).expect("params");
        // 512 KiB slivers: up to 8 MiB per index, 16 segments per run.
        assert_eq!(store_runs(&small), vec![0..10]);
        let wide = BlobParams::new(EncodingType::RsSimd, 100, 1 << 20, 64 << 20).expect("params");
        // k = 34: ~30 KiB slivers, at most 320 KiB per index over 100 indexes: ten segments per run.
        assert!(
            store_runs(&wide)
                .iter()
                .all(|r| r.end - r.start == 10 || r.end == 64)
        );
        let one = BlobParams::new(EncodingType::RsSimd, 4, 1 << 20, 0).expect("params");
        assert_eq!(store_runs(&one), vec![0..1]);
        let big = BlobParams::new(EncodingType::RsSimd, 4, 64 << 20, 200 << 20).expect("params");
        assert!(store_runs(&big).iter().all(|r| r.end - r.start == 1));
    }

    #[test]
    fn a_healthy_write_goes_run_by_run_within_the_window() {
        let (mut write, mut effects) = start(4, 4, 10, 2);
        let mut now = 0;
        let mut receipts = 0;
        let mut certified = false;
        let mut finished = false;
        let mut queue: Vec<StreamWriteEffect> = Vec::new();
        loop {
            queue.append(&mut effects);
            if queue.is_empty() {
                break;
            }
            let effect = queue.remove(0);
            now += 1;
            effects = match effect {
                StreamWriteEffect::Prepare { run } => {
                    assert!(run < write.released + 2, "window of two");
                    write.on_prepared(run, now)
                }
                StreamWriteEffect::Send {
                    peer, index, run, ..
                } => {
                    if run == 9 {
                        receipts += 1;
                        write.on_receipt(&peer, index, vec![1])
                    } else {
                        write.on_progress(&peer, index, run, 1, now)
                    }
                }
                StreamWriteEffect::Certified => {
                    certified = true;
                    Vec::new()
                }
                StreamWriteEffect::Finished => {
                    finished = true;
                    Vec::new()
                }
                StreamWriteEffect::Failed { .. } => panic!("healthy write failed"),
                _ => Vec::new(),
            };
        }
        assert_eq!(receipts, 4);
        assert!(certified && finished);
    }

    #[test]
    fn a_silent_holder_is_given_up_and_the_others_go_on() {
        let (mut write, effects) = start(4, 4, 3, 1);
        assert_eq!(effects, vec![StreamWriteEffect::Prepare { run: 0 }]);
        let sends = write.on_prepared(0, 0);
        let targets: Vec<(PeerKey, u16)> = sends
            .iter()
            .filter_map(|e| match e {
                StreamWriteEffect::Send { peer, index, .. } => Some((peer.clone(), *index)),
                _ => None,
            })
            .collect();
        assert_eq!(targets.len(), 4);
        // Three answer; the fourth never does, so the window cannot move until it is given up.
        for (peer, index) in &targets[..3] {
            let effects = write.on_progress(peer, *index, 0, 1, 1);
            assert!(
                !effects
                    .iter()
                    .any(|e| matches!(e, StreamWriteEffect::Prepare { .. }))
            );
        }
        let timeout = StreamWriteConfig::default().request_timeout;
        let mut now = 0;
        let mut effects = Vec::new();
        for _ in 0..3 {
            now += timeout;
            effects = write.on_timer(now);
        }
        assert!(effects.contains(&StreamWriteEffect::Release { below: 1 }));
        assert!(effects.contains(&StreamWriteEffect::Prepare { run: 1 }));
        // The three live holders finish; three receipts of four reach the quorum of three.
        let sends = write.on_prepared(1, now);
        assert_eq!(
            sends
                .iter()
                .filter(|e| matches!(e, StreamWriteEffect::Send { .. }))
                .count(),
            3
        );
        for (peer, index) in &targets[..3] {
            write.on_progress(peer, *index, 1, 1, now);
        }
        write.on_prepared(2, now);
        let mut last = Vec::new();
        for (peer, index) in &targets[..3] {
            last.extend(write.on_receipt(peer, *index, vec![]));
        }
        assert!(last.contains(&StreamWriteEffect::Certified));
        assert!(last.contains(&StreamWriteEffect::Finished));
    }

    #[test]
    fn too_many_failures_fail_the_write() {
        let (mut write, _) = start(4, 4, 2, 2);
        let sends = write.on_prepared(0, 0);
        let mut now = 0;
        let mut failed = false;
        for effect in sends {
            if let StreamWriteEffect::Send { peer, index, .. } = effect
                && index < 2
            {
                for attempt in 1..=3 {
                    now += StreamWriteConfig::default().request_timeout;
                    let effects = write.on_failure(&peer, index, 0, attempt, now);
                    failed |= effects
                        .iter()
                        .any(|e| matches!(e, StreamWriteEffect::Failed { .. }));
                }
            }
        }
        assert!(
            failed,
            "two of four holders gone: the quorum of three is out of reach"
        );
        assert!(write.is_finished());
    }

    #[test]
    fn progress_after_the_last_run_gives_the_index_up() {
        let (mut write, _) = start(4, 4, 1, 1);
        let sends = write.on_prepared(0, 0);
        let Some(StreamWriteEffect::Send { peer, index, .. }) = sends.first().cloned() else {
            panic!("no send");
        };
        write.on_progress(&peer, index, 0, 1, 5);
        assert_eq!(write.slots[usize::from(index)], Slot::GaveUp);
        assert!(
            write
                .on_timer(1_000_000)
                .iter()
                .all(|e| !matches!(e, StreamWriteEffect::Send { index: i, .. } if *i == index))
        );
    }

    proptest! {
        /// Pieces cover the range in order, and each stays under the limit unless it is a single segment.
        #[test]
        fn cut_segments_covers_and_bounds(
            shards in 4u16..64,
            segment_size in 256u64..100_000,
            length in 0u64..2_000_000,
            from in 0u64..50,
            count in 0u64..200,
            limit in 1u64..300_000,
        ) {
            let params = BlobParams::new(EncodingType::RsSimd, shards, segment_size, length).expect("params");
            let end = (from + count).min(params.segment_count());
            let pieces = cut_segments(&params, from..from + count, limit);
            let mut next = from;
            for piece in &pieces {
                prop_assert_eq!(piece.start, next);
                prop_assert!(piece.end > piece.start);
                let bytes: u64 = piece.clone().filter_map(|s| params.sliver_len(s)).map(|l| u64::try_from(l).unwrap_or(u64::MAX)).sum();
                prop_assert!(bytes <= limit || piece.end - piece.start == 1);
                next = piece.end;
            }
            prop_assert_eq!(next.max(from), end.max(from));
        }

        /// Whatever the holders answer and in whatever order, a run is sent only once prepared and not yet
        /// released, at most `window` runs are prepared at once, each holder's runs go in order, and the write
        /// certifies exactly when receipts reach the quorum.
        #[test]
        fn the_window_and_the_order_always_hold(
            peers_count in 4u8..10,
            runs in 1usize..8,
            window in 1usize..4,
            script in proptest::collection::vec((0u8..4, any::<u16>()), 1..400),
        ) {
            let shards = u16::from(peers_count);
            let (mut write, effects) = start(peers_count, shards, runs, window);
            let mut pending: Vec<StreamWriteEffect> = effects;
            let mut in_flight: Vec<(PeerKey, u16, usize, u32)> = Vec::new();
            let mut prepared_next = 0usize;
            let mut to_prepare: Vec<usize> = Vec::new();
            let mut released = 0usize;
            let mut last_run: BTreeMap<u16, usize> = BTreeMap::new();
            let mut certified = false;
            let mut now = 0u64;
            for (action, pick) in script {
                for effect in pending.drain(..) {
                    match effect {
                        StreamWriteEffect::Prepare { run } => {
                            prop_assert_eq!(run, prepared_next + to_prepare.len());
                            prop_assert!(run < released + window);
                            to_prepare.push(run);
                        }
                        StreamWriteEffect::Release { below } => {
                            prop_assert!(below > released);
                            released = below;
                        }
                        StreamWriteEffect::Send { peer, index, run, attempt } => {
                            prop_assert!(run < prepared_next && run >= released);
                            let previous = last_run.insert(index, run).unwrap_or(0);
                            prop_assert!(run == previous || run == previous + 1);
                            in_flight.push((peer, index, run, attempt));
                        }
                        StreamWriteEffect::Certified => {
                            prop_assert!(write.receipts().len() >= certificate_quorum(shards));
                            certified = true;
                        }
                        _ => {}
                    }
                }
                now += 1_000;
                pending = match action {
                    0 if !to_prepare.is_empty() => {
                        let run = to_prepare.remove(0);
                        prepared_next = run + 1;
                        write.on_prepared(run, now)
                    }
                    1 | 2 if !in_flight.is_empty() => {
                        let (peer, index, run, attempt) = in_flight.remove(usize::from(pick) % in_flight.len());
                        if run + 1 == runs {
                            write.on_receipt(&peer, index, vec![])
                        } else {
                            write.on_progress(&peer, index, run, attempt, now)
                        }
                    }
                    3 if !in_flight.is_empty() => {
                        let (peer, index, run, attempt) = in_flight.remove(usize::from(pick) % in_flight.len());
                        write.on_failure(&peer, index, run, attempt, now)
                    }
                    _ => write.on_timer(now + u64::from(pick) * 100),
                };
            }
            prop_assert_eq!(certified || write.is_certified(), write.receipts().len() >= certificate_quorum(shards));
        }
    }
}
