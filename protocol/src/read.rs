//! The read state machine: fetch k valid slivers of a blob's segments from its holders, nearest and fastest
//! first, hedging slow ones.
//!
//! This module owns the read's decisions: which holders to ask, in which order, how many at once, when to ask
//! one more. It does not verify or decode: the driver verifies each response against the blob ID (see
//! [`crate::decoder::VerifiedSliver`]) and reports only whether it was valid.
//!
//! Order: holders the driver reaches directly before those it reaches only through a relay (see [`Reach`]);
//! then source slivers first (so that a healthy read needs no decoding), then parity; within each, by the
//! driver's measured round-trip time, then by index. It keeps k + margin requests in flight; a request
//! unanswered after the soft timeout gets a hedge (one more request elsewhere) without being cancelled, and a
//! late answer still counts.
//!
//! Systematic grace: when the k-th valid sliver is in but a parity sliver is among them (the margin request
//! answered before a source) and a source request is still open, the read waits up to `systematic_grace` for
//! the source. All k sources mean no decoding at all, which saves the reader more time than a short wait costs.

use std::collections::{BTreeMap, BTreeSet};

use crate::placement::{PeerKey, Placement};
use crate::write::Millis;

/// How a read paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadConfig {
    /// After this long without an answer, ask one more holder (the slow request stays open).
    pub soft_timeout: Millis,
    /// After this long without an answer, count the request as failed.
    pub hard_timeout: Millis,
    /// Keep ⌈k/10⌉ requests in flight beyond k (reads, for latency); without it exactly k are asked at first
    /// (repairs, for traffic) and hedging alone covers slow holders.
    pub margin: bool,
    /// How long to wait, once k valid slivers are in, for an open request of a source sliver when a parity
    /// sliver is among the k (0: never wait). Reads pay a decode for every parity sliver they use; repairs
    /// decode anyway and set 0.
    pub systematic_grace: Millis,
}

impl Default for ReadConfig {
    fn default() -> Self {
        Self {
            soft_timeout: 500,
            hard_timeout: 10_000,
            margin: true,
            systematic_grace: DEFAULT_SYSTEMATIC_GRACE,
        }
    }
}

/// The default [`ReadConfig::systematic_grace`]: about what decoding one parity sliver of a 1 MiB blob costs a
/// loaded node (docs/performance.md, issue 3), so waiting is never much worse than decoding.
pub const DEFAULT_SYSTEMATIC_GRACE: Millis = 3;

/// Requests kept in flight beyond k: ⌈k/10⌉, at least one.
pub fn read_margin(source_shards: u16) -> usize {
    usize::from(source_shards).div_ceil(10).max(1)
}

/// How the driver reaches a holder, as reads rank holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach {
    /// The measured round-trip time, if the driver has one.
    pub rtt: Option<Millis>,
    /// Reached only through a relay (behind a NAT nobody could punch through). Such holders are asked after
    /// every directly reached one, source or parity: their answer takes two hops through a volunteer's
    /// bandwidth, where a direct parity sliver costs one decode.
    pub relayed: bool,
}

impl From<Option<Millis>> for Reach {
    /// A directly reached holder with this measured RTT.
    fn from(rtt: Option<Millis>) -> Self {
        Self {
            rtt,
            relayed: false,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEffect {
    /// Ask `peer` for sliver `index` of the segments being read.
    Send {
        /// The holder.
        peer: PeerKey,
        /// The sliver index.
        index: u16,
    },
    /// Call [`Read::on_timer`] at or after this time.
    SetTimer(Millis),
    /// k valid sliver indexes are in: rebuild from these (ascending).
    Ready(Vec<u16>),
    /// Every holder was tried; fewer than k valid slivers came back.
    Failed {
        /// Valid indexes received.
        have: usize,
        /// k.
        need: usize,
    },
}

#[derive(Debug, Clone)]
struct InFlight {
    sent: Millis,
    hedged: bool,
}

/// One read of some segments of a blob.
#[derive(Debug, Clone)]
pub struct Read {
    k: usize,
    config: ReadConfig,
    candidates: Vec<(u16, PeerKey)>,
    next: usize,
    in_flight: BTreeMap<u16, InFlight>,
    valid: BTreeSet<u16>,
    source_shards: u16,
    /// When k valid slivers were first in while the read waited for a source (systematic grace).
    complete_at: Option<Millis>,
    done: bool,
}

impl Read {
    /// Starts a read over `placement` needing `source_shards` valid slivers. `reach` says how the driver
    /// reaches a peer: a [`Reach`], or just its measured round-trip time if it has one.
    pub fn start<R: Into<Reach>>(
        placement: &Placement,
        source_shards: u16,
        reach: impl Fn(&[u8]) -> R,
        config: ReadConfig,
        now: Millis,
    ) -> (Self, Vec<ReadEffect>) {
        let candidates: Vec<(u16, PeerKey)> = (0..placement.len())
            .filter_map(|i| u16::try_from(i).ok())
            .filter_map(|i| placement.holder(i).map(|p| (i, p.clone())))
            .collect();
        Self::start_from(
            candidates,
            &BTreeSet::new(),
            source_shards,
            reach,
            config,
            now,
        )
    }

    /// Starts a read over explicit `(index, holder)` candidates, with the indexes in `have` already valid (a
    /// repairer's own slivers). Direct holders first, then systematic indexes, then by measured RTT.
    pub fn start_from<R: Into<Reach>>(
        candidates: Vec<(u16, PeerKey)>,
        have: &BTreeSet<u16>,
        source_shards: u16,
        reach: impl Fn(&[u8]) -> R,
        config: ReadConfig,
        now: Millis,
    ) -> (Self, Vec<ReadEffect>) {
        let k = usize::from(source_shards);
        let mut candidates: Vec<(bool, bool, Millis, u16, PeerKey)> = candidates
            .into_iter()
            .filter(|(i, _)| !have.contains(i))
            .map(|(i, peer)| {
                let Reach { rtt, relayed } = reach(&peer).into();
                (
                    relayed,
                    i >= source_shards,
                    rtt.unwrap_or(Millis::MAX),
                    i,
                    peer,
                )
            })
            .collect();
        candidates.sort();
        let mut read = Self {
            k,
            config,
            candidates: candidates
                .into_iter()
                .map(|(_, _, _, i, p)| (i, p))
                .collect(),
            next: 0,
            in_flight: BTreeMap::new(),
            valid: have.clone(),
            source_shards,
            complete_at: None,
            done: false,
        };
        let mut effects = Vec::new();
        let margin = if config.margin {
            read_margin(source_shards)
        } else {
            0
        };
        let wanted = (k + margin).saturating_sub(have.len());
        for _ in 0..wanted {
            read.launch(now, &mut effects);
        }
        effects.extend(read.settle(now));
        (read, effects)
    }

    fn launch(&mut self, now: Millis, effects: &mut Vec<ReadEffect>) -> bool {
        while let Some((index, peer)) = self.candidates.get(self.next) {
            self.next += 1;
            if self.valid.contains(index) || self.in_flight.contains_key(index) {
                continue;
            }
            self.in_flight.insert(
                *index,
                InFlight {
                    sent: now,
                    hedged: false,
                },
            );
            effects.push(ReadEffect::Send {
                peer: peer.clone(),
                index: *index,
            });
            return true;
        }
        false
    }

    /// Valid indexes so far.
    pub fn valid(&self) -> &BTreeSet<u16> {
        &self.valid
    }

    /// Whether the read is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The answer for `index` arrived: `valid` says whether every sliver in it verified. A late answer to a
    /// request already counted as failed still counts.
    pub fn on_response(&mut self, index: u16, valid: bool, now: Millis) -> Vec<ReadEffect> {
        if self.done {
            return Vec::new();
        }
        let was_in_flight = self.in_flight.remove(&index).is_some();
        let mut effects = Vec::new();
        if valid {
            if self.candidates.iter().any(|(i, _)| *i == index) {
                self.valid.insert(index);
            }
        } else if was_in_flight && self.valid.len() < self.k {
            self.launch(now, &mut effects);
        }
        effects.extend(self.settle(now));
        effects
    }

    /// A timer fired: hedge slow requests, fail requests past the hard timeout.
    pub fn on_timer(&mut self, now: Millis) -> Vec<ReadEffect> {
        if self.done {
            return Vec::new();
        }
        if self.valid.len() >= self.k {
            // Only the systematic grace is running: no request needs a hedge any more.
            return self.settle(now);
        }
        let mut effects = Vec::new();
        let expired: Vec<u16> = self
            .in_flight
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.sent) >= self.config.hard_timeout)
            .map(|(i, _)| *i)
            .collect();
        for index in expired {
            self.in_flight.remove(&index);
            self.launch(now, &mut effects);
        }
        let slow: Vec<u16> = self
            .in_flight
            .iter()
            .filter(|(_, r)| !r.hedged && now.saturating_sub(r.sent) >= self.config.soft_timeout)
            .map(|(i, _)| *i)
            .collect();
        for index in slow {
            if let Some(request) = self.in_flight.get_mut(&index) {
                request.hedged = true;
            }
            self.launch(now, &mut effects);
        }
        effects.extend(self.settle(now));
        effects
    }

    /// Whether to hold back `Ready` for a source sliver still on its way (see the module doc).
    fn wait_for_source(&mut self, now: Millis) -> Option<Millis> {
        if self.config.systematic_grace == 0 {
            return None;
        }
        let sources = self.valid.range(..self.source_shards).count();
        let source_open = self.in_flight.range(..self.source_shards).next().is_some();
        if sources >= self.k || !source_open {
            return None;
        }
        let complete_at = *self.complete_at.get_or_insert(now);
        // Never longer than a hedge would wait: the grace is a short wait for an answer already on its way.
        let grace = self.config.systematic_grace.min(self.config.soft_timeout);
        let until = complete_at.saturating_add(grace);
        (now < until).then_some(until)
    }

    fn settle(&mut self, now: Millis) -> Vec<ReadEffect> {
        if self.valid.len() >= self.k {
            if let Some(until) = self.wait_for_source(now) {
                return vec![ReadEffect::SetTimer(until)];
            }
            self.done = true;
            // The smallest indexes: sources first, so the rebuild decodes as little as it can.
            return vec![ReadEffect::Ready(
                self.valid.iter().copied().take(self.k).collect(),
            )];
        }
        if self.in_flight.is_empty() && self.next >= self.candidates.len() {
            self.done = true;
            return vec![ReadEffect::Failed {
                have: self.valid.len(),
                need: self.k,
            }];
        }
        let next = self
            .in_flight
            .values()
            .map(|r| {
                if r.hedged {
                    r.sent.saturating_add(self.config.hard_timeout)
                } else {
                    r.sent.saturating_add(self.config.soft_timeout)
                }
            })
            .min();
        next.map(ReadEffect::SetTimer).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob_id::BlobId;

    fn placement(peers: u8, shards: u16) -> Placement {
        let peers: Vec<PeerKey> = (0..peers).map(|i| vec![i; 4]).collect();
        Placement::new(&BlobId([5; 32]), shards, &peers).unwrap()
    }

    fn sends(effects: &[ReadEffect]) -> Vec<u16> {
        effects
            .iter()
            .filter_map(|e| match e {
                ReadEffect::Send { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_healthy_read_asks_the_sources_first_and_few_others() {
        let p = placement(12, 12);
        let (mut read, effects) = Read::start(&p, 4, |_| Some(1), ReadConfig::default(), 0);
        let sent = sends(&effects);
        assert_eq!(sent.len(), 4 + read_margin(4));
        assert_eq!(&sent[..4], &[0, 1, 2, 3]);
        let mut ready = None;
        for index in 0..4 {
            for effect in read.on_response(index, true, 10) {
                if let ReadEffect::Ready(indexes) = effect {
                    ready = Some(indexes);
                }
            }
        }
        assert_eq!(ready, Some(vec![0, 1, 2, 3]));
        assert!(
            read.on_response(5, true, 11).is_empty(),
            "done reads ignore late answers"
        );
    }

    #[test]
    fn nearer_holders_are_asked_first() {
        let p = placement(12, 12);
        let far_source = p.holder(0).unwrap().clone();
        let (_, effects) = Read::start(
            &p,
            4,
            |peer| {
                Some(if peer == far_source.as_slice() {
                    900
                } else {
                    5
                })
            },
            ReadConfig::default(),
            0,
        );
        let sent = sends(&effects);
        assert_eq!(&sent[..3], &[1, 2, 3]);
        assert_eq!(sent[3], 0, "still a source before any parity");
    }

    #[test]
    fn holders_behind_relays_are_asked_after_every_direct_one() {
        let p = placement(12, 12);
        // Sources 0 and 2 sit behind relays: the read takes two parity slivers from direct holders first.
        let relayed: Vec<PeerKey> = [0, 2]
            .iter()
            .map(|&i| p.holder(i).unwrap().clone())
            .collect();
        let reach = |peer: &[u8]| Reach {
            rtt: Some(1),
            relayed: relayed.iter().any(|r| r.as_slice() == peer),
        };
        let (mut read, effects) = Read::start(&p, 4, reach, ReadConfig::default(), 0);
        assert_eq!(sends(&effects), vec![1, 3, 4, 5, 6]);
        // They are still asked once the direct holders run out.
        let mut later = Vec::new();
        for index in [1, 3, 4, 5, 6, 7, 8, 9, 10, 11] {
            later.extend(sends(&read.on_response(index, false, 1)));
        }
        assert_eq!(later, vec![7, 8, 9, 10, 11, 0, 2]);
    }

    #[test]
    fn failures_and_slow_holders_bring_in_others() {
        let p = placement(12, 12);
        let config = ReadConfig::default();
        let (mut read, effects) = Read::start(&p, 4, |_| None, config, 0);
        assert_eq!(sends(&effects).len(), 5);
        // Two answers are invalid: each brings one more request.
        assert_eq!(sends(&read.on_response(0, false, 1)).len(), 1);
        assert_eq!(sends(&read.on_response(1, false, 1)).len(), 1);
        // Nobody else answers: at the soft timeout every request gets a hedge.
        let hedges = sends(&read.on_timer(config.soft_timeout + 1));
        assert_eq!(hedges.len(), 5);
        // A late answer from a hedged request still counts.
        read.on_response(2, true, config.soft_timeout + 2);
        assert!(read.valid().contains(&2));
    }

    #[test]
    fn fails_once_every_holder_was_tried() {
        let p = placement(4, 4);
        let (mut read, _) = Read::start(&p, 2, |_| None, ReadConfig::default(), 0);
        let mut last = Vec::new();
        for index in 0..4 {
            last = read.on_response(index, false, 1);
        }
        assert_eq!(last, vec![ReadEffect::Failed { have: 0, need: 2 }]);
    }

    fn ready(effects: &[ReadEffect]) -> Option<Vec<u16>> {
        effects.iter().find_map(|e| match e {
            ReadEffect::Ready(indexes) => Some(indexes.clone()),
            _ => None,
        })
    }

    /// k = 4 over 12 holders: sources 0..4 and the margin request (index 4, parity) go out at once.
    fn started(grace: Millis) -> Read {
        let config = ReadConfig {
            systematic_grace: grace,
            ..ReadConfig::default()
        };
        let (read, effects) = Read::start(&placement(12, 12), 4, |_| Some(1), config, 0);
        assert_eq!(sends(&effects), vec![0, 1, 2, 3, 4]);
        read
    }

    #[test]
    fn a_parity_sliver_first_waits_for_the_last_source() {
        let mut read = started(3);
        for index in [0, 1, 4] {
            assert!(ready(&read.on_response(index, true, 10)).is_none());
        }
        // k valid with one parity, source 3 still open: wait up to the grace.
        assert!(ready(&read.on_response(2, true, 10)).is_none());
        assert_eq!(read.on_timer(11), vec![ReadEffect::SetTimer(13)]);
        assert_eq!(
            ready(&read.on_response(3, true, 12)),
            Some(vec![0, 1, 2, 3])
        );
        assert!(read.is_done());
    }

    #[test]
    fn the_grace_ends_with_the_parity_sliver() {
        let mut read = started(3);
        for index in [0, 1, 4] {
            read.on_response(index, true, 10);
        }
        assert_eq!(
            read.on_response(2, true, 20),
            vec![ReadEffect::SetTimer(23)]
        );
        assert!(ready(&read.on_timer(22)).is_none());
        assert_eq!(ready(&read.on_timer(23)), Some(vec![0, 1, 2, 4]));
        // A source failing during the grace asks nobody else: k valid slivers are in.
        let mut read = started(3);
        for index in [0, 1, 4, 2] {
            read.on_response(index, true, 10);
        }
        let effects = read.on_response(3, false, 11);
        assert!(sends(&effects).is_empty());
        assert_eq!(ready(&effects), Some(vec![0, 1, 2, 4]));
    }

    #[test]
    fn no_grace_without_an_open_source_or_when_off() {
        let mut read = started(0);
        for index in [0, 1, 4] {
            read.on_response(index, true, 10);
        }
        assert_eq!(
            ready(&read.on_response(2, true, 10)),
            Some(vec![0, 1, 2, 4])
        );
        // Source 3 failed and its replacement (index 5) is parity: nothing to wait for.
        let mut read = started(3);
        assert_eq!(sends(&read.on_response(3, false, 5)), vec![5]);
        for index in [0, 1, 4] {
            read.on_response(index, true, 10);
        }
        assert_eq!(
            ready(&read.on_response(2, true, 10)),
            Some(vec![0, 1, 2, 4])
        );
    }

    #[test]
    fn nothing_is_hedged_while_the_grace_runs() {
        let mut read = started(3);
        for index in [0, 1, 4] {
            read.on_response(index, true, 10);
        }
        assert_eq!(
            read.on_response(2, true, 499),
            vec![ReadEffect::SetTimer(502)]
        );
        // Source 3 has been open past the soft timeout: no hedge, k valid slivers are in.
        assert_eq!(read.on_timer(501), vec![ReadEffect::SetTimer(502)]);
        assert_eq!(ready(&read.on_timer(502)), Some(vec![0, 1, 2, 4]));
    }

    #[test]
    fn a_source_failing_in_the_grace_ends_it_only_when_no_other_source_is_open() {
        let mut read = started(3);
        // Everything is slow: each request gets a hedge (indexes 5 to 9, all parity).
        assert_eq!(sends(&read.on_timer(500)), vec![5, 6, 7, 8, 9]);
        for index in [0, 1, 5] {
            assert!(ready(&read.on_response(index, true, 510)).is_none());
        }
        // k valid with two parity slivers, sources 2 and 3 open.
        assert_eq!(
            read.on_response(6, true, 510),
            vec![ReadEffect::SetTimer(513)]
        );
        // Source 2 fails: 3 is still open, so the grace goes on; then 3 fails too and it ends at once.
        assert_eq!(
            read.on_response(2, false, 511),
            vec![ReadEffect::SetTimer(513)]
        );
        assert_eq!(
            ready(&read.on_response(3, false, 512)),
            Some(vec![0, 1, 5, 6])
        );
    }
}
