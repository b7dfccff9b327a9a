//! The write state machine: deliver every sliver index of an encoded blob to its holder and collect signed
//! storage receipts until they certify the blob.
//!
//! This module owns the write's decisions (whom to send what, when to retry, when the blob is certified,
//! when to give up). It does not encode, sign, verify signatures or talk to the network: the driver turns
//! [`WriteEffect`]s into messages and timers and feeds back what happened, with the current time.
//!
//! A write is certified once receipts cover ⌈2n/3⌉ sliver indexes: even if a third of those holders lie, k of
//! the slivers are held. It keeps delivering the rest afterwards and reports [`WriteEffect::Finished`] when
//! every index is stored or has run out of attempts.

use std::collections::BTreeMap;

use crate::blob_id::BlobId;
use crate::placement::{PeerKey, Placement};

/// Milliseconds on the driver's monotonic clock.
pub type Millis = u64;

/// A driver's one timer for one state machine, the rule every driver (node and simulator) follows for
/// `SetTimer` effects: the earliest time asked for wins. Machines recompute their deadlines whenever their
/// `on_timer` runs, so a call that comes early is harmless and one that comes late is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timer(Option<Millis>);

impl Timer {
    /// Asks for an `on_timer` call at `at`; returns whether that moved the deadline (set, or made earlier), so a
    /// driver knows to schedule it.
    pub fn request(&mut self, at: Millis) -> bool {
        let moved = self.0.is_none_or(|t| at < t);
        if moved {
            self.0 = Some(at);
        }
        moved
    }

    /// When `on_timer` is due, if at all.
    pub fn deadline(&self) -> Option<Millis> {
        self.0
    }

    /// The driver is calling `on_timer` now: the slot is free for whatever that call asks.
    pub fn fire(&mut self) {
        self.0 = None;
    }
}

/// How a write retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteConfig {
    /// How long to wait for a receipt before trying again.
    pub request_timeout: Millis,
    /// Attempts per sliver index, the first included.
    pub max_attempts: u32,
}

impl Default for WriteConfig {
    fn default() -> Self {
        Self {
            request_timeout: 10_000,
            max_attempts: 3,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteEffect {
    /// Send sliver `index` (all its segments, with proofs, and the metadata) to `peer`. Report the outcome
    /// with the same `attempt`, so that a late answer to an earlier attempt is told apart.
    Send {
        /// The holder.
        peer: PeerKey,
        /// The sliver index.
        index: u16,
        /// Which attempt this is, from 1.
        attempt: u32,
    },
    /// Call [`Write::on_timer`] at or after this time.
    SetTimer(Millis),
    /// Receipts now cover ⌈2n/3⌉ indexes: the blob is certified. The receipts are the ones fed so far.
    Certified,
    /// The write cannot be certified any more: too many holders failed.
    Failed {
        /// Indexes with receipts.
        stored: usize,
        /// Indexes needed.
        needed: usize,
        /// Indexes that ran out of attempts.
        failed: usize,
    },
    /// Every index is stored or out of attempts; nothing more will happen.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// Not part of this delivery (a repair or hand-off moves only some indexes).
    Skipped,
    InFlight {
        attempt: u32,
        deadline: Millis,
    },
    Stored,
    GaveUp,
}

/// One blob's write.
#[derive(Debug, Clone)]
pub struct Write {
    blob_id: BlobId,
    config: WriteConfig,
    placement: Placement,
    slots: Vec<Slot>,
    receipts: BTreeMap<u16, Vec<u8>>,
    certified: bool,
    done: bool,
    /// A delivery of some indexes: it needs all of them and never gives up early.
    delivery: bool,
}

/// Receipts needed to certify a blob of n slivers: ⌈2n/3⌉.
pub fn certificate_quorum(shards: u16) -> usize {
    (2 * usize::from(shards)).div_ceil(3)
}

impl Write {
    /// Starts a write of `blob_id` over `placement`, returning the first effects.
    pub fn start(
        blob_id: BlobId,
        placement: Placement,
        config: WriteConfig,
        now: Millis,
    ) -> (Self, Vec<WriteEffect>) {
        let count = placement.len();
        let mut write = Self {
            blob_id,
            config,
            placement,
            slots: Vec::with_capacity(count),
            receipts: BTreeMap::new(),
            certified: false,
            done: false,
            delivery: false,
        };
        let mut effects = Vec::with_capacity(count + 1);
        for index in 0..count {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            write.slots.push(Slot::InFlight {
                attempt: 1,
                deadline: now.saturating_add(config.request_timeout),
            });
            if let Some(peer) = write.placement.holder(index) {
                effects.push(WriteEffect::Send {
                    peer: peer.clone(),
                    index,
                    attempt: 1,
                });
            }
        }
        effects.push(WriteEffect::SetTimer(
            now.saturating_add(config.request_timeout),
        ));
        (write, effects)
    }

    /// Starts delivering only `indexes` of `placement` (a repair's rebuilt slivers, a hand-off). It sends each to
    /// its holder with the same retries as a write, reports [`WriteEffect::Certified`] once every one of them is
    /// stored, and [`WriteEffect::Finished`] when each is stored or out of attempts; it never reports `Failed`.
    pub fn deliver(
        blob_id: BlobId,
        placement: Placement,
        indexes: &std::collections::BTreeSet<u16>,
        config: WriteConfig,
        now: Millis,
    ) -> (Self, Vec<WriteEffect>) {
        let count = placement.len();
        let deadline = now.saturating_add(config.request_timeout);
        let mut effects = Vec::new();
        let mut slots = Vec::with_capacity(count);
        for index in (0..count).filter_map(|i| u16::try_from(i).ok()) {
            match placement.holder(index) {
                Some(peer) if indexes.contains(&index) => {
                    slots.push(Slot::InFlight {
                        attempt: 1,
                        deadline,
                    });
                    effects.push(WriteEffect::Send {
                        peer: peer.clone(),
                        index,
                        attempt: 1,
                    });
                }
                _ => slots.push(Slot::Skipped),
            }
        }
        let mut write = Self {
            blob_id,
            config,
            placement,
            slots,
            receipts: BTreeMap::new(),
            certified: false,
            done: false,
            delivery: true,
        };
        effects.push(WriteEffect::SetTimer(deadline));
        effects.extend(write.progress());
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

    /// Indexes this write is responsible for.
    fn scope(&self) -> usize {
        self.slots.iter().filter(|s| **s != Slot::Skipped).count()
    }

    fn quorum(&self) -> usize {
        if self.delivery {
            self.scope()
        } else {
            certificate_quorum(u16::try_from(self.slots.len()).unwrap_or(u16::MAX))
        }
    }

    /// A valid, signed receipt from the holder of `index`, for any attempt. Receipts from any other peer are
    /// ignored. A receipt that arrives after the index was given up still counts: the sliver is stored.
    pub fn on_receipt(&mut self, peer: &[u8], index: u16, receipt: Vec<u8>) -> Vec<WriteEffect> {
        if self.done {
            return Vec::new();
        }
        let holder = self.placement.holder(index).map(Vec::as_slice);
        let slot = self.slots.get_mut(usize::from(index));
        match (slot, holder) {
            (Some(slot @ (Slot::InFlight { .. } | Slot::GaveUp)), Some(holder))
                if holder == peer =>
            {
                *slot = Slot::Stored;
                self.receipts.insert(index, receipt);
            }
            _ => return Vec::new(),
        }
        self.progress()
    }

    /// Attempt `attempt` at sending `index` failed (refused, unreachable, bad receipt). Retries at the next
    /// timer if attempts remain. The failure of an earlier attempt than the current one changes nothing.
    pub fn on_failure(
        &mut self,
        peer: &[u8],
        index: u16,
        attempt: u32,
        now: Millis,
    ) -> Vec<WriteEffect> {
        let holder_matches = self.placement.holder(index).map(Vec::as_slice) == Some(peer);
        if let (
            Some(Slot::InFlight {
                deadline,
                attempt: current,
            }),
            true,
        ) = (self.slots.get_mut(usize::from(index)), holder_matches)
            && *current == attempt
        {
            // Retry soon rather than wait out the full timeout, but not in a tight loop.
            *deadline = (*deadline).min(now.saturating_add(self.config.request_timeout / 10));
        }
        let mut effects = self.on_timer(now);
        if let Some(Slot::InFlight { deadline, .. }) = self.slots.get(usize::from(index)) {
            effects.push(WriteEffect::SetTimer(*deadline));
        }
        effects
    }

    /// A timer fired: resend what timed out, give up on what ran out of attempts.
    pub fn on_timer(&mut self, now: Millis) -> Vec<WriteEffect> {
        let mut effects = Vec::new();
        let mut next: Option<Millis> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::InFlight { attempt, deadline } = slot {
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
                    effects.push(WriteEffect::Send {
                        peer: peer.clone(),
                        index,
                        attempt: *attempt,
                    });
                }
            }
        }
        if let Some(at) = next {
            effects.push(WriteEffect::SetTimer(at));
        }
        effects.extend(self.progress());
        effects
    }

    fn progress(&mut self) -> Vec<WriteEffect> {
        let mut effects = Vec::new();
        if self.done {
            return effects;
        }
        let stored = self.receipts.len();
        let failed = self.slots.iter().filter(|s| **s == Slot::GaveUp).count();
        let quorum = self.quorum();
        let scope = self.scope();
        if !self.certified && stored >= quorum {
            self.certified = true;
            effects.push(WriteEffect::Certified);
        }
        if !self.delivery && !self.certified && scope - failed < quorum {
            self.done = true;
            effects.push(WriteEffect::Failed {
                stored,
                needed: quorum,
                failed,
            });
            return effects;
        }
        if stored + failed >= scope {
            self.done = true;
            effects.push(WriteEffect::Finished);
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(count: u8) -> Vec<PeerKey> {
        (0..count).map(|i| vec![i; 4]).collect()
    }

    fn start(count: u8, shards: u16) -> (Write, Vec<WriteEffect>) {
        let id = BlobId([3; 32]);
        let placement = Placement::new(&id, shards, &peers(count)).unwrap();
        Write::start(id, placement, WriteConfig::default(), 0)
    }

    fn sends(effects: &[WriteEffect]) -> Vec<(PeerKey, u16)> {
        effects
            .iter()
            .filter_map(|e| match e {
                WriteEffect::Send { peer, index, .. } => Some((peer.clone(), *index)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn certifies_at_two_thirds_and_finishes_when_all_are_stored() {
        let (mut write, effects) = start(12, 12);
        let sent = sends(&effects);
        assert_eq!(sent.len(), 12, "one request per sliver index");
        let mut certified_at = None;
        for (i, (peer, index)) in sent.iter().enumerate() {
            let effects = write.on_receipt(peer, *index, vec![1]);
            if effects.contains(&WriteEffect::Certified) {
                certified_at = Some(i + 1);
            }
            if i + 1 == 12 {
                assert!(effects.contains(&WriteEffect::Finished));
            }
        }
        assert_eq!(certified_at, Some(8));
    }

    #[test]
    fn receipts_from_the_wrong_peer_or_twice_count_nothing() {
        let (mut write, effects) = start(12, 12);
        let sent = sends(&effects);
        let (peer, index) = &sent[0];
        let other = &sent[1].0;
        assert!(write.on_receipt(other, *index, vec![]).is_empty());
        write.on_receipt(peer, *index, vec![]);
        assert!(write.on_receipt(peer, *index, vec![]).is_empty());
        assert_eq!(write.receipts().len(), 1);
    }

    #[test]
    fn retries_then_fails_when_too_many_holders_are_gone() {
        let (mut write, effects) = start(12, 12);
        let sent = sends(&effects);
        // Five holders answer; seven never do.
        for (peer, index) in &sent[..5] {
            write.on_receipt(peer, *index, vec![]);
        }
        let mut now = 0;
        let mut resent = 0;
        let mut failed = None;
        for _ in 0..10 {
            now += WriteConfig::default().request_timeout;
            let effects = write.on_timer(now);
            resent += sends(&effects).len();
            if let Some(f) = effects
                .iter()
                .find(|e| matches!(e, WriteEffect::Failed { .. }))
            {
                failed = Some(f.clone());
                break;
            }
        }
        assert_eq!(resent, 7 * 2, "two retries for each silent holder");
        assert_eq!(
            failed,
            Some(WriteEffect::Failed {
                stored: 5,
                needed: 8,
                failed: 7
            })
        );
        assert!(write.is_finished());
    }

    #[test]
    fn a_quick_failure_retries_before_the_timeout() {
        let (mut write, effects) = start(4, 4);
        let (peer, index) = sends(&effects)[0].clone();
        let effects = write.on_failure(&peer, index, 1, 5);
        let retry_at = effects
            .iter()
            .filter_map(|e| match e {
                WriteEffect::SetTimer(at) => Some(*at),
                _ => None,
            })
            .min()
            .unwrap();
        assert!(retry_at < WriteConfig::default().request_timeout);
        assert_eq!(sends(&write.on_timer(retry_at)), vec![(peer, index)]);
    }

    #[test]
    fn late_answers_to_earlier_attempts_are_told_apart() {
        let (mut write, effects) = start(4, 4);
        let (peer, index) = sends(&effects)[0].clone();
        let timeout = WriteConfig::default().request_timeout;
        // Attempt 1 times out; attempt 2 goes out.
        assert_eq!(sends(&write.on_timer(timeout)).len(), 4);
        // Attempt 1's failure arrives late: it must not hurry attempt 2.
        let effects = write.on_failure(&peer, index, 1, timeout + 1);
        assert!(sends(&effects).is_empty());
        assert!(sends(&write.on_timer(timeout + timeout / 10 + 2)).is_empty());
    }

    #[test]
    fn a_receipt_after_giving_up_still_counts_while_the_write_runs() {
        let (mut write, effects) = start(12, 12);
        let sent = sends(&effects);
        for (peer, index) in &sent[2..] {
            write.on_receipt(peer, *index, vec![]);
        }
        assert!(write.is_certified());
        // Index B fails fast three times and is given up; index A is still waiting on its first attempt.
        let (b_peer, b) = sent[1].clone();
        let mut now = 1;
        for attempt in 1..=3 {
            let effects = write.on_failure(&b_peer, b, attempt, now);
            now = effects
                .iter()
                .filter_map(|e| match e {
                    WriteEffect::SetTimer(at) => Some(*at),
                    _ => None,
                })
                .min()
                .unwrap();
            write.on_timer(now);
        }
        assert!(!write.is_finished(), "index A is still in flight");
        write.on_receipt(&b_peer, b, vec![7]);
        assert!(write.receipts().contains_key(&b));
    }

    #[test]
    fn quorum_is_two_thirds_rounded_up() {
        assert_eq!(certificate_quorum(4), 3);
        assert_eq!(certificate_quorum(12), 8);
        assert_eq!(certificate_quorum(100), 67);
        assert_eq!(certificate_quorum(1000), 667);
    }
}
