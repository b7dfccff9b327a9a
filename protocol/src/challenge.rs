//! Storage challenges: who challenges the holders of a blob, what one round asks, how an answer is judged, and
//! when a holder's failures make it count as gone.
//!
//! A challenge asks a holder for one segment of its sliver index, chosen at random, with a nonce the answer
//! must echo. A holder that kept its data answers with the sliver and its proof; one that lost it cannot, and
//! after `threshold` consecutive failures its slivers are repaired elsewhere as if it had left.
//!
//! This module owns those decisions. It takes its randomness as a seed from the driver (the node draws one from
//! the OS, the simulator from the challenger's seeded RNG), so a round is a pure function of its inputs. It does
//! no I/O and keeps no clock: when to run a round is the driver's schedule.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::placement::PeerKey;
use crate::repair::leader;
use crate::wire::pb;
use crate::{BlobId, Sliver};

/// Distinct holders challenged per blob and round: a holder that lost its data is caught within a few rounds,
/// while a round's cost stays bounded for large n.
pub const HOLDERS_PER_ROUND: usize = 3;
/// Longest nonce a holder accepts.
pub const MAX_NONCE_LEN: usize = 64;
/// Length of the nonces [`round`] makes.
pub const NONCE_LEN: usize = 16;
/// How nodes before the typed `Busy` answer said they were too busy.
const LEGACY_BUSY: &str = "node busy; try again";
/// How nodes before the typed `StillReceiving` answer began it, followed by "H of S segments held".
const LEGACY_RECEIVING: &str = "still receiving this sliver: ";

/// What a node does about a blob's challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The blob's repair leader: it challenges the other live holders.
    Leader,
    /// The holder that would lead if the leader were gone: it challenges the leader only, so a leader that lost
    /// its data (and would never find out by itself) is caught.
    Deputy {
        /// The leader it challenges.
        leader: PeerKey,
    },
    /// Neither: it challenges nobody for this blob.
    Bystander,
}

/// The role of `me` for a blob whose holder list is `holders`, with `gone` out of it. Only a node holding a
/// whole sliver index of the blob (`settled`) challenges: while a large blob is still being written, the
/// segments not delivered yet would fail every challenge and send its holders to repair.
pub fn role(holders: &[PeerKey], gone: &BTreeSet<PeerKey>, me: &PeerKey, settled: bool) -> Role {
    let Some(first) = leader(holders, gone) else {
        return Role::Bystander;
    };
    if !settled {
        return Role::Bystander;
    }
    if first == me {
        return Role::Leader;
    }
    let mut without_leader = gone.clone();
    without_leader.insert(first.clone());
    if leader(holders, &without_leader) == Some(me) {
        Role::Deputy {
            leader: first.clone(),
        }
    } else {
        Role::Bystander
    }
}

/// One challenge: holder `holder` must produce segment `segment` of sliver `index`, echoing `nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The challenged holder.
    pub holder: PeerKey,
    /// The sliver index it holds by the list.
    pub index: u16,
    /// The segment asked for.
    pub segment: u64,
    /// The blob's segments: a "still receiving" answer must name this count.
    pub segments: u64,
    /// Echoed by the answer, so an answer matches its challenge.
    pub nonce: [u8; NONCE_LEN],
}

/// Why an answer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeFailure {
    /// The holder answered with an error (it does not hold the sliver, say).
    #[error("the holder refused: {0}")]
    Refused(String),
    /// The nonce is not the challenge's.
    #[error("answer to another challenge")]
    WrongNonce,
    /// No sliver in the answer.
    #[error("answer without a sliver")]
    NoSliver,
    /// The sliver is malformed on the wire.
    #[error("malformed sliver: {0}")]
    Malformed(String),
    /// A sliver of another blob, index or segment.
    #[error("answer holds another sliver")]
    OtherSliver,
    /// The sliver does not verify against the blob ID.
    #[error("sliver does not verify: {0}")]
    Invalid(String),
    /// A "still receiving" answer no honest holder gives for this segment.
    #[error("claims to be receiving the sliver with {held} of {total} segments held")]
    ImplausiblyReceiving {
        /// Segments it says it holds.
        held: u64,
        /// Segments it says the blob has.
        total: u64,
    },
}

impl Challenge {
    /// The request to send.
    pub fn request(&self, blob_id: &BlobId) -> pb::StorageChallenge {
        pb::StorageChallenge {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            segment: self.segment,
            index: u32::from(self.index),
            nonce: Bytes::copy_from_slice(&self.nonce),
        }
    }

    /// Judges an answer: the nonce echoed, the sliver asked for, valid against the blob ID; or, instead of the
    /// sliver, a "still receiving" statement an honest holder can make (see [`Verdict`]).
    pub fn judge(&self, blob_id: &BlobId, answer: &pb::ChallengeAnswer) -> Verdict {
        if answer.nonce.as_ref() != self.nonce {
            return Verdict::Failed(ChallengeFailure::WrongNonce);
        }
        match (&answer.sliver, &answer.receiving) {
            (Some(sliver), _) => match self.check_sliver(blob_id, sliver) {
                Ok(()) => Verdict::Passed,
                Err(failure) => Verdict::Failed(failure),
            },
            (None, Some(receiving)) => {
                let (held, total) = (receiving.segments_held, receiving.segment_count);
                // Some first segments of the blob's own count held, not all, and not the one asked for: anything
                // else is a claim no honest holder makes, so a segment the holder says it holds must be produced.
                if total == self.segments
                    && held > 0
                    && held < total
                    && (held..total).contains(&self.segment)
                {
                    Verdict::NoVerdict(NoVerdict::StillReceiving { held, total })
                } else {
                    Verdict::Failed(ChallengeFailure::ImplausiblyReceiving { held, total })
                }
            }
            (None, None) => Verdict::Failed(ChallengeFailure::NoSliver),
        }
    }

    /// Judges whatever the holder answered: a challenge answer ([`Challenge::judge`]), "busy" (no verdict), a
    /// refusal, an empty answer or anything else (a failure). `None` is no answer at all: unreachable is the
    /// liveness check's business, not a failed proof.
    pub fn judge_response(&self, blob_id: &BlobId, response: Option<&pb::Response>) -> Verdict {
        let Some(response) = response else {
            return Verdict::NoVerdict(NoVerdict::Unreachable);
        };
        match &response.kind {
            Some(pb::response::Kind::Challenge(answer)) => self.judge(blob_id, answer),
            Some(pb::response::Kind::Busy(_)) => Verdict::NoVerdict(NoVerdict::Busy),
            Some(pb::response::Kind::Error(why)) => match self.legacy(blob_id, why) {
                Some(verdict) => verdict,
                None => Verdict::Failed(ChallengeFailure::Refused(bounded(why))),
            },
            Some(_) => Verdict::Failed(ChallengeFailure::Refused("unexpected answer".into())),
            None => Verdict::Failed(ChallengeFailure::Refused("empty answer".into())),
        }
    }

    /// The answers of nodes from before the typed ones (`Busy`, `StillReceiving`), which gave both as text:
    /// judged as their typed forms, so that a swarm can be upgraded node by node (docs/operators.md,
    /// "Upgrades"). A text that is neither, or a claim no honest holder makes, is a refusal.
    fn legacy(&self, blob_id: &BlobId, text: &str) -> Option<Verdict> {
        if text == LEGACY_BUSY {
            return Some(Verdict::NoVerdict(NoVerdict::Busy));
        }
        let rest = text
            .strip_prefix(LEGACY_RECEIVING)?
            .strip_suffix(" segments held")?;
        let (held, total) = rest.split_once(" of ")?;
        let answer = still_receiving_answer(
            Bytes::copy_from_slice(&self.nonce),
            held.parse().ok()?,
            total.parse().ok()?,
        );
        match self.judge(blob_id, &answer) {
            Verdict::Failed(_) => None,
            verdict => Some(verdict),
        }
    }

    fn check_sliver(&self, blob_id: &BlobId, message: &pb::Sliver) -> Result<(), ChallengeFailure> {
        let (id, sliver) = <(BlobId, Sliver)>::try_from(message.clone())
            .map_err(|e| ChallengeFailure::Malformed(e.to_string()))?;
        if id != *blob_id || sliver.index != self.index || sliver.segment != self.segment {
            return Err(ChallengeFailure::OtherSliver);
        }
        sliver
            .verify(blob_id)
            .map(|_| ())
            .map_err(|e| ChallengeFailure::Invalid(e.to_string()))
    }
}

/// A peer's refusal text as logs keep it: at most 200 bytes, cut on a character boundary.
fn bounded(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What one challenge shows about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It produced the segment asked for, valid against the blob ID.
    Passed,
    /// It could not, or answered something no honest holder would.
    Failed(ChallengeFailure),
    /// Nothing either way.
    NoVerdict(NoVerdict),
}

/// Why a challenge proved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoVerdict {
    /// No answer (the holder is unreachable or slow): liveness decides about it.
    Unreachable,
    /// Its queue of inbound requests was full.
    Busy,
    /// It holds the first `held` of `total` segments of the index and the one asked for is still on its way.
    StillReceiving {
        /// Segments held from the first, without a gap.
        held: u64,
        /// Segments of the blob.
        total: u64,
    },
}

/// Whether a holder answers a challenge for `segment` with "still receiving" rather than the sliver: it holds
/// the first `held` of the blob's `total` segments of the index, not the one asked for, and its part is
/// `growing` (see `steward::Partials::still_growing`). A part that stopped growing was abandoned and is answered
/// as not held, so challenges find the loss.
pub fn answers_still_receiving(held: u64, total: u64, segment: u64, growing: bool) -> bool {
    held > 0 && held < total && segment >= held && growing
}

/// The "still receiving" answer to the challenge with `nonce`.
pub fn still_receiving_answer(nonce: Bytes, held: u64, total: u64) -> pb::ChallengeAnswer {
    pb::ChallengeAnswer {
        nonce,
        sliver: None,
        receiving: Some(pb::StillReceiving {
            segments_held: held,
            segment_count: total,
        }),
    }
}

/// splitmix64: a small, well-mixed stream from one seed, enough to pick holders, segments and nonces.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0), without modulo bias worth speaking of for bounds this small.
    fn below(&mut self, bound: u64) -> u64 {
        let wide = u128::from(self.next()) * u128::from(bound);
        u64::try_from(wide >> 64).unwrap_or(0)
    }
}

/// One round of challenges for a blob of `segments` segments, by a node of `role`: up to
/// [`HOLDERS_PER_ROUND`] distinct live holders other than `me` (the leader alone for a deputy), each asked for
/// a random segment with a fresh nonce. The slivers in `suspects` (index → the segment that failed, from
/// [`Tally::suspects`]) are asked first and for that same segment, so a lost sliver (or a lost part of one) is
/// confirmed in a few rounds rather than whenever the draw comes back to it; the rest are drawn at random.
/// Targets are distinct sliver indexes (a holder of several may be asked for more than one). `seed` must be unpredictable to the holders (the node
/// draws it from the OS); the same inputs give the same round.
pub fn round(
    holders: &[PeerKey],
    gone: &BTreeSet<PeerKey>,
    me: &PeerKey,
    role: &Role,
    segments: u64,
    suspects: &BTreeMap<u16, u64>,
    seed: u64,
) -> Vec<Challenge> {
    let mut targets: Vec<(u16, &PeerKey)> = holders
        .iter()
        .enumerate()
        .filter_map(|(i, h)| u16::try_from(i).ok().map(|i| (i, h)))
        .filter(|(_, h)| *h != me && !gone.contains(*h))
        .filter(|(_, h)| match role {
            Role::Leader => true,
            Role::Deputy { leader } => *h == leader,
            Role::Bystander => false,
        })
        .collect();
    let mut stream = Stream(seed);
    let mut round = Vec::new();
    while round.len() < HOLDERS_PER_ROUND && !targets.is_empty() {
        let pick = match targets.iter().position(|(i, _)| suspects.contains_key(i)) {
            Some(suspect) => suspect,
            None => {
                let len = u64::try_from(targets.len()).unwrap_or(u64::MAX);
                usize::try_from(stream.below(len)).unwrap_or(0)
            }
        };
        // `remove`, not `swap_remove`: the suspects ahead keep their index order.
        let (index, holder) = targets.remove(pick.min(targets.len() - 1));
        let segment = match suspects.get(&index) {
            Some(&segment) if segment < segments => segment,
            _ => stream.below(segments.max(1)),
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&stream.next().to_le_bytes());
        nonce[8..].copy_from_slice(&stream.next().to_le_bytes());
        round.push(Challenge {
            holder: holder.clone(),
            index,
            segment,
            segments: segments.max(1),
            nonce,
        });
    }
    round
}

/// What [`Tally::record`] made of one verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A pass: the holder's and the sliver's counts start again.
    Passed,
    /// A failure.
    Failed {
        /// The holder's failures in a row.
        failures: u32,
        /// The sliver's failures in a row.
        sliver_failures: u32,
        /// The sliver just became lost (its holder is not failing as a whole): its blob needs evaluating.
        sliver_lost: bool,
        /// The holder just became failing: it counts as gone for every blob, which all need evaluating.
        holder_failing: bool,
    },
    /// Nothing counted.
    NoVerdict,
}

/// Consecutive failed challenges, counted two ways by one challenger:
/// - per holder: a holder that failed `threshold` challenges in a row lost its data wholesale, and counts as
///   gone for every blob (no new slivers, its slivers rebuilt elsewhere);
/// - per sliver (blob, index): a sliver that failed `threshold` challenges in a row is lost even if its holder
///   passes others (a rotted or unwritten sliver among good ones); its holder counts as gone for that blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<P: Ord> {
    failures: BTreeMap<P, u32>,
    /// (blob, index) → (the holder that failed, failures in a row, the segment it failed last).
    slivers: BTreeMap<(BlobId, u16), (P, u32, u64)>,
}

impl<P: Ord> Default for Tally<P> {
    fn default() -> Self {
        Self {
            failures: BTreeMap::new(),
            slivers: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone> Tally<P> {
    /// `holder` answered for sliver `index` of `blob_id`: both its counts start again.
    pub fn passed(&mut self, holder: &P, blob_id: &BlobId, index: u16) {
        self.failures.remove(holder);
        self.slivers.remove(&(*blob_id, index));
    }

    /// `holder` failed for `segment` of sliver `index` of `blob_id`; returns its consecutive failures and the
    /// sliver's (a sliver that changed holder starts again). The holder's count grows only with a sliver that
    /// had not failed yet: asking a suspect again (as [`round`] does) confirms that one sliver is lost, and must
    /// not make a holder with one bad sliver look as if it had lost everything.
    pub fn failed(&mut self, holder: &P, blob_id: &BlobId, index: u16, segment: u64) -> (u32, u32) {
        let sliver = self
            .slivers
            .entry((*blob_id, index))
            .or_insert_with(|| (holder.clone(), 0, segment));
        if sliver.0 != *holder {
            *sliver = (holder.clone(), 0, segment);
        }
        let repeat = sliver.1 > 0;
        sliver.1 = sliver.1.saturating_add(1);
        sliver.2 = segment;
        let sliver_failures = sliver.1;
        let failures = match self.failures.get_mut(holder) {
            Some(failures) if repeat => *failures,
            Some(failures) => {
                *failures = failures.saturating_add(1);
                *failures
            }
            // A repeat after a pass elsewhere cleared the holder's count: it stays clear.
            None if repeat => 0,
            None => {
                self.failures.insert(holder.clone(), 1);
                1
            }
        };
        (failures, sliver_failures)
    }

    /// Counts one challenge's `verdict` for `holder` and says what changed, with `threshold` failures in a row
    /// making a sliver lost or a holder failing. Both drivers act on the answer alone.
    pub fn record(
        &mut self,
        holder: &P,
        blob_id: &BlobId,
        challenge: &Challenge,
        verdict: &Verdict,
        threshold: u32,
    ) -> Recorded {
        match verdict {
            Verdict::Passed => {
                self.passed(holder, blob_id, challenge.index);
                Recorded::Passed
            }
            Verdict::NoVerdict(_) => Recorded::NoVerdict,
            Verdict::Failed(_) => {
                let (failures, sliver_failures) =
                    self.failed(holder, blob_id, challenge.index, challenge.segment);
                Recorded::Failed {
                    failures,
                    sliver_failures,
                    // Exactly at the threshold, so each is reported once.
                    sliver_lost: sliver_failures == threshold && failures < threshold,
                    holder_failing: failures == threshold,
                }
            }
        }
    }

    /// Whether the holder failed at least `threshold` challenges in a row, and so counts as gone.
    pub fn is_failing(&self, holder: &P, threshold: u32) -> bool {
        self.failures.get(holder).is_some_and(|&n| n >= threshold)
    }

    /// Holders with at least one failure since their last pass, and how many.
    pub fn failures(&self) -> &BTreeMap<P, u32> {
        &self.failures
    }

    /// The slivers of `blob_id` that failed since they last passed, with the segment that failed (to ask first
    /// next round), if `holder_of` (the current holder list) still gives them to the holder that failed.
    pub fn suspects(
        &self,
        blob_id: &BlobId,
        holder_of: impl Fn(u16) -> Option<P>,
    ) -> BTreeMap<u16, u64> {
        let low = (*blob_id, 0u16);
        let high = (*blob_id, u16::MAX);
        self.slivers
            .range(low..=high)
            .filter(|((_, index), (holder, _, _))| holder_of(*index).as_ref() == Some(holder))
            .map(|((_, index), (_, _, segment))| (*index, *segment))
            .collect()
    }

    /// Forgets the counts of `blob_id`'s slivers that `holder_of` (the current holder list) no longer gives to
    /// the holder that failed: a sliver that moved starts clean if it ever comes back.
    pub fn forget_moved(&mut self, blob_id: &BlobId, holder_of: impl Fn(u16) -> Option<P>) {
        let low = (*blob_id, 0u16);
        let high = (*blob_id, u16::MAX);
        let moved: Vec<(BlobId, u16)> = self
            .slivers
            .range(low..=high)
            .filter(|((_, index), (holder, _, _))| holder_of(*index).as_ref() != Some(holder))
            .map(|(key, _)| *key)
            .collect();
        for key in moved {
            self.slivers.remove(&key);
        }
    }

    /// The holders of `blob_id` that lost a sliver: it failed `threshold` challenges in a row, and
    /// `holder_of` (the current holder list) still gives it to them. They count as gone for this blob.
    pub fn lost_holders(
        &self,
        blob_id: &BlobId,
        threshold: u32,
        holder_of: impl Fn(u16) -> Option<P>,
    ) -> BTreeSet<P> {
        self.slivers_of(blob_id, &holder_of)
            .filter(|(_, _, failures)| *failures >= threshold)
            .map(|(_, holder, _)| holder.clone())
            .collect()
    }

    fn slivers_of<'a, F: Fn(u16) -> Option<P>>(
        &'a self,
        blob_id: &BlobId,
        holder_of: &'a F,
    ) -> impl Iterator<Item = (u16, &'a P, u32)> + 'a {
        let low = (*blob_id, 0u16);
        let high = (*blob_id, u16::MAX);
        self.slivers
            .range(low..=high)
            .filter(move |((_, index), (holder, _, _))| holder_of(*index).as_ref() == Some(holder))
            .map(|((_, index), (holder, failures, _))| (*index, holder, *failures))
    }

    /// Forgets the per-sliver counts `keep` rejects (a blob no longer held here, say), so the tally stays as
    /// small as the failures that matter.
    pub fn retain_slivers(&mut self, mut keep: impl FnMut(&BlobId, u16, &P) -> bool) {
        self.slivers
            .retain(|(blob_id, index), (holder, _, _)| keep(blob_id, *index, holder));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::encoder::EncodedBlob;
    use crate::encoding::{BlobParams, EncodingType};
    use proptest::prelude::*;

    fn peers(n: u8) -> Vec<PeerKey> {
        (0..n).map(|i| vec![i; 4]).collect()
    }

    #[test]
    fn the_leader_challenges_the_others_and_its_deputy_challenges_the_leader() {
        let holders = peers(6);
        let none = BTreeSet::new();
        assert_eq!(role(&holders, &none, &holders[0], true), Role::Leader);
        assert_eq!(
            role(&holders, &none, &holders[1], true),
            Role::Deputy {
                leader: holders[0].clone()
            }
        );
        assert_eq!(role(&holders, &none, &holders[2], true), Role::Bystander);
        assert_eq!(role(&holders, &none, &holders[0], false), Role::Bystander);
        // The leader gone: the next live holder leads, and the one after it deputises.
        let gone: BTreeSet<PeerKey> = [holders[0].clone()].into_iter().collect();
        assert_eq!(role(&holders, &gone, &holders[1], true), Role::Leader);
        assert_eq!(
            role(&holders, &gone, &holders[2], true),
            Role::Deputy {
                leader: holders[1].clone()
            }
        );
        let all: BTreeSet<PeerKey> = holders.iter().cloned().collect();
        assert_eq!(role(&holders, &all, &holders[0], true), Role::Bystander);
    }

    #[test]
    fn a_deputy_round_asks_only_the_leader_and_a_bystander_asks_nobody() {
        let holders = peers(6);
        let none = BTreeSet::new();
        let deputy = Role::Deputy {
            leader: holders[0].clone(),
        };
        let no = BTreeMap::new();
        for seed in 0..50 {
            let round = round(&holders, &none, &holders[1], &deputy, 4, &no, seed);
            assert_eq!(round.len(), 1);
            assert_eq!(
                (round[0].holder.clone(), round[0].index),
                (holders[0].clone(), 0)
            );
            assert!(
                super::round(&holders, &none, &holders[2], &Role::Bystander, 4, &no, seed)
                    .is_empty()
            );
        }
    }

    #[test]
    fn answers_are_judged_by_nonce_sliver_and_proof() {
        let params = BlobParams::new(EncodingType::RsSimd, 4, 1024, 3000).unwrap();
        let encoded = EncodedBlob::encode(params, &[9u8; 3000]).unwrap();
        let blob_id = encoded.metadata.blob_id();
        let challenge = Challenge {
            holder: vec![1; 4],
            index: 2,
            segment: 1,
            segments: 3,
            nonce: [7; NONCE_LEN],
        };
        let answer = |segment: u64, index: u16, nonce: &[u8]| pb::ChallengeAnswer {
            nonce: Bytes::copy_from_slice(nonce),
            sliver: Some((&encoded.sliver(segment, index).unwrap()).into()),
            receiving: None,
        };
        let failed = |failure| Verdict::Failed(failure);
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 2, &[7; NONCE_LEN])),
            Verdict::Passed
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 2, &[8; NONCE_LEN])),
            failed(ChallengeFailure::WrongNonce)
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(0, 2, &[7; NONCE_LEN])),
            failed(ChallengeFailure::OtherSliver)
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 3, &[7; NONCE_LEN])),
            failed(ChallengeFailure::OtherSliver)
        );
        let mut rotted = answer(1, 2, &[7; NONCE_LEN]);
        if let Some(sliver) = rotted.sliver.as_mut() {
            let mut data = sliver.data.to_vec();
            data[0] ^= 1;
            sliver.data = data.into();
        }
        assert!(matches!(
            challenge.judge(&blob_id, &rotted),
            Verdict::Failed(ChallengeFailure::Invalid(_))
        ));
        let empty = pb::ChallengeAnswer {
            nonce: Bytes::copy_from_slice(&[7; NONCE_LEN]),
            sliver: None,
            receiving: None,
        };
        assert_eq!(
            challenge.judge(&blob_id, &empty),
            failed(ChallengeFailure::NoSliver)
        );
        // The request carries what the answer is judged against.
        let request = challenge.request(&blob_id);
        assert_eq!((request.index, request.segment), (2, 1));
        assert_eq!(request.nonce.as_ref(), &[7; NONCE_LEN]);
    }

    /// A challenge for `segment` of sliver 2 of a blob of `segments` segments.
    fn challenge_of(segment: u64, segments: u64) -> Challenge {
        Challenge {
            holder: vec![1; 4],
            index: 2,
            segment,
            segments,
            nonce: [7; NONCE_LEN],
        }
    }

    #[test]
    fn only_a_plausible_still_receiving_answer_is_no_verdict() {
        let blob_id = BlobId::from_slice(&[3; 32]).unwrap();
        let nonce = || Bytes::copy_from_slice(&[7; NONCE_LEN]);
        let judge = |segment: u64, held: u64, total: u64| {
            challenge_of(segment, total)
                .judge(&blob_id, &still_receiving_answer(nonce(), held, total))
        };
        let no_verdict =
            |held, total| Verdict::NoVerdict(NoVerdict::StillReceiving { held, total });
        assert_eq!(judge(1, 1, 2), no_verdict(1, 2));
        assert_eq!(judge(9, 3, 10), no_verdict(3, 10));
        // A segment it says it holds must be produced.
        assert!(matches!(
            judge(2, 3, 10),
            Verdict::Failed(ChallengeFailure::ImplausiblyReceiving { .. })
        ));
        // Nothing held, everything held, or a segment beyond the blob it names.
        assert!(matches!(judge(5, 0, 10), Verdict::Failed(_)));
        assert!(matches!(judge(10, 10, 10), Verdict::Failed(_)));
        assert!(matches!(judge(12, 3, 10), Verdict::Failed(_)));
        // A count other than the blob's own would excuse segments that do not exist.
        assert!(matches!(
            challenge_of(5, 10).judge(&blob_id, &still_receiving_answer(nonce(), 3, u64::MAX)),
            Verdict::Failed(ChallengeFailure::ImplausiblyReceiving { .. })
        ));
        // The nonce is checked first, as for a sliver.
        let mut wrong = still_receiving_answer(Bytes::copy_from_slice(&[8; NONCE_LEN]), 1, 2);
        assert_eq!(
            challenge_of(1, 2).judge(&blob_id, &wrong),
            Verdict::Failed(ChallengeFailure::WrongNonce)
        );
        wrong.nonce = nonce();
        assert_eq!(challenge_of(1, 2).judge(&blob_id, &wrong), no_verdict(1, 2));
    }

    #[test]
    fn busy_and_no_answer_prove_nothing_and_a_refusal_or_an_empty_answer_fails() {
        let blob_id = BlobId::from_slice(&[3; 32]).unwrap();
        let challenge = challenge_of(4, 10);
        let answer = |kind: Option<pb::response::Kind>| pb::Response { kind };
        let judge = |kind: Option<pb::response::Kind>| {
            challenge.judge_response(&blob_id, Some(&answer(kind)))
        };
        assert_eq!(
            challenge.judge_response(&blob_id, None),
            Verdict::NoVerdict(NoVerdict::Unreachable)
        );
        assert_eq!(
            judge(Some(pb::response::Kind::Busy(pb::Busy {}))),
            Verdict::NoVerdict(NoVerdict::Busy)
        );
        // An answer with nothing in it (or a kind this node does not know) is no excuse.
        assert!(matches!(
            judge(None),
            Verdict::Failed(ChallengeFailure::Refused(_))
        ));
        assert!(matches!(
            judge(Some(pb::response::Kind::Error("sliver not held".into()))),
            Verdict::Failed(ChallengeFailure::Refused(_))
        ));
        let long = "x".repeat(10_000);
        let Verdict::Failed(ChallengeFailure::Refused(kept)) =
            judge(Some(pb::response::Kind::Error(long)))
        else {
            panic!("a refusal fails");
        };
        assert_eq!(kept.len(), 200);
        let other = pb::response::Kind::Progress(pb::StoreProgress::default());
        assert!(matches!(judge(Some(other)), Verdict::Failed(_)));
    }

    #[test]
    fn the_text_answers_of_older_nodes_are_judged_as_their_typed_forms() {
        let blob_id = BlobId::from_slice(&[3; 32]).unwrap();
        let text = |challenge: &Challenge, text: &str| {
            let response = pb::Response {
                kind: Some(pb::response::Kind::Error(text.into())),
            };
            challenge.judge_response(&blob_id, Some(&response))
        };
        let challenge = challenge_of(4, 10);
        assert_eq!(
            text(&challenge, "node busy; try again"),
            Verdict::NoVerdict(NoVerdict::Busy)
        );
        assert_eq!(
            text(
                &challenge,
                "still receiving this sliver: 3 of 10 segments held"
            ),
            Verdict::NoVerdict(NoVerdict::StillReceiving { held: 3, total: 10 })
        );
        // The same rules as the typed answer: a held segment, the wrong count, or a garbled text fails.
        for refused in [
            "still receiving this sliver: 5 of 10 segments held",
            "still receiving this sliver: 3 of 99 segments held",
            "still receiving this sliver: x of 10 segments held",
            "still receiving this sliver",
            "node busy",
        ] {
            assert!(
                matches!(
                    text(&challenge, refused),
                    Verdict::Failed(ChallengeFailure::Refused(_))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_holder_says_still_receiving_only_for_segments_not_there_while_its_part_grows() {
        assert!(answers_still_receiving(3, 10, 3, true));
        assert!(answers_still_receiving(3, 10, 9, true));
        assert!(!answers_still_receiving(3, 10, 2, true), "held: produce it");
        assert!(
            !answers_still_receiving(3, 10, 5, false),
            "abandoned: not held"
        );
        assert!(!answers_still_receiving(0, 10, 5, true), "nothing held");
        assert!(!answers_still_receiving(10, 10, 5, true), "whole");
    }

    #[test]
    fn recording_reports_a_lost_sliver_and_a_failing_holder_once() {
        let mut tally = Tally::default();
        let blob = BlobId::from_slice(&[1; 32]).unwrap();
        let failed = Verdict::Failed(ChallengeFailure::NoSliver);
        let on = |index: u16| Challenge {
            holder: vec![1; 4],
            index,
            segment: 0,
            segments: 1,
            nonce: [0; NONCE_LEN],
        };
        let record = |tally: &mut Tally<&str>, index, verdict: &Verdict| {
            tally.record(&"a", &blob, &on(index), verdict, 3)
        };
        assert_eq!(
            record(&mut tally, 0, &Verdict::NoVerdict(NoVerdict::Busy)),
            Recorded::NoVerdict
        );
        // Sliver 0 three times: lost, while the holder has one failure.
        let mut lost = Vec::new();
        for _ in 0..4 {
            if let Recorded::Failed { sliver_lost, .. } = record(&mut tally, 0, &failed) {
                lost.push(sliver_lost);
            }
        }
        assert_eq!(lost, [false, false, true, false]);
        // Two more slivers: the holder's third different failure makes it failing, once.
        assert!(matches!(
            record(&mut tally, 1, &failed),
            Recorded::Failed {
                failures: 2,
                holder_failing: false,
                ..
            }
        ));
        assert!(matches!(
            record(&mut tally, 2, &failed),
            Recorded::Failed {
                failures: 3,
                holder_failing: true,
                sliver_lost: false,
                ..
            }
        ));
        assert!(matches!(
            record(&mut tally, 3, &failed),
            Recorded::Failed {
                failures: 4,
                holder_failing: false,
                ..
            }
        ));
        assert_eq!(record(&mut tally, 3, &Verdict::Passed), Recorded::Passed);
        assert!(!tally.is_failing(&"a", 3));
    }

    #[test]
    fn failures_count_in_a_row_and_a_pass_clears_them() {
        let mut tally = Tally::default();
        let blob = BlobId::from_slice(&[1; 32]).unwrap();
        let (a, b) = ("a", "b");
        assert_eq!(tally.failed(&a, &blob, 0, 5), (1, 1));
        assert_eq!(tally.failed(&a, &blob, 1, 0), (2, 1));
        assert!(!tally.is_failing(&a, 3));
        // Sliver 0 again: the sliver's count grows, the holder's does not.
        assert_eq!(tally.failed(&a, &blob, 0, 5), (2, 2));
        assert_eq!(tally.failed(&a, &blob, 2, 1), (3, 1));
        assert!(tally.is_failing(&a, 3) && !tally.is_failing(&b, 3));
        tally.passed(&a, &blob, 1);
        assert!(!tally.is_failing(&a, 1));
        assert!(tally.failures().is_empty());
        // The pass was for sliver 1: slivers 0 and 2 are still suspect, each with the segment that failed.
        let holder_of = |index: u16| (index < 4).then_some("a");
        assert_eq!(
            tally.suspects(&blob, holder_of),
            [(0, 5), (2, 1)].into_iter().collect()
        );
        // A repeat failure after that pass: the holder's count stays clear (and it is not listed with 0).
        assert_eq!(tally.failed(&a, &blob, 0, 5), (0, 3));
        assert!(tally.failures().is_empty());
    }

    #[test]
    fn a_sliver_lost_among_good_ones_is_found_although_its_holder_passes() {
        let mut tally = Tally::default();
        let (blob, other) = (
            BlobId::from_slice(&[1; 32]).unwrap(),
            BlobId::from_slice(&[2; 32]).unwrap(),
        );
        let list = |index: u16| match index {
            3 => Some("rotted"),
            _ => Some("fine"),
        };
        for _ in 0..3 {
            tally.failed(&"rotted", &blob, 3, 0);
            // The same holder keeps passing for another blob's sliver: it never strikes out as a peer.
            tally.passed(&"rotted", &other, 0);
        }
        assert!(!tally.is_failing(&"rotted", 3));
        assert_eq!(
            tally.lost_holders(&blob, 3, list),
            ["rotted"].into_iter().collect()
        );
        assert!(tally.lost_holders(&other, 3, list).is_empty());
        // Once the list gives index 3 to someone else (the repair moved it), the old count no longer applies.
        let moved = |index: u16| match index {
            3 => Some("new"),
            _ => Some("fine"),
        };
        assert!(tally.lost_holders(&blob, 3, moved).is_empty());
        assert!(tally.suspects(&blob, moved).is_empty());
        // Forgotten once moved: if the sliver comes back to its old holder, its count starts clean.
        tally.forget_moved(&blob, moved);
        assert!(tally.lost_holders(&blob, 3, list).is_empty());
        // A failure by the new holder starts the sliver's count again.
        assert_eq!(tally.failed(&"new", &blob, 3, 0), (1, 1));
        tally.retain_slivers(|b, _, _| *b != blob);
        assert!(tally.suspects(&blob, |_| Some("new")).is_empty());
    }

    #[test]
    fn suspects_are_asked_first_for_the_segment_that_failed() {
        let holders = peers(30);
        let none = BTreeSet::new();
        let suspects: BTreeMap<u16, u64> = [(7, 40), (21, 3)].into_iter().collect();
        for seed in 0..50 {
            let round = round(
                &holders,
                &none,
                &holders[0],
                &Role::Leader,
                64,
                &suspects,
                seed,
            );
            assert_eq!(round.len(), HOLDERS_PER_ROUND);
            assert_eq!((round[0].index, round[0].segment), (7, 40));
            assert_eq!((round[1].index, round[1].segment), (21, 3));
            assert!(!suspects.contains_key(&round[2].index));
        }
    }

    proptest! {
        #[test]
        fn a_leader_round_asks_distinct_live_others_for_segments_in_range(
            n in 1u8..40,
            gone_mask in any::<u64>(),
            me in 0u8..40,
            segments in 0u64..1000,
            seed in any::<u64>(),
        ) {
            let holders = peers(n);
            let me = vec![me; 4];
            let gone: BTreeSet<PeerKey> = holders
                .iter()
                .enumerate()
                .filter(|(i, _)| gone_mask >> i & 1 == 1)
                .map(|(_, h)| h.clone())
                .collect();
            let no = BTreeMap::new();
            let round = round(&holders, &gone, &me, &Role::Leader, segments, &no, seed);
            let eligible = holders.iter().filter(|h| **h != me && !gone.contains(*h)).count();
            prop_assert_eq!(round.len(), eligible.min(HOLDERS_PER_ROUND));
            let distinct: BTreeSet<u16> = round.iter().map(|c| c.index).collect();
            prop_assert_eq!(distinct.len(), round.len());
            for challenge in &round {
                prop_assert_eq!(&holders[usize::from(challenge.index)], &challenge.holder);
                prop_assert!(challenge.holder != me && !gone.contains(&challenge.holder));
                prop_assert!(challenge.segment < segments.max(1));
            }
            // Deterministic in its inputs.
            prop_assert_eq!(&round, &super::round(&holders, &gone, &me, &Role::Leader, segments, &no, seed));
        }

        /// The holder's rule and the challenger's agree: an honest holder's "still receiving" is never counted
        /// against it, and no such answer excuses a segment the answer itself says is held.
        #[test]
        fn still_receiving_excuses_exactly_the_segments_not_yet_held(
            held in 0u64..64,
            total in 1u64..64,
            segment in 0u64..64,
            growing in any::<bool>(),
        ) {
            prop_assume!(segment < total);
            let blob_id = BlobId::from_slice(&[5; 32]).unwrap();
            let challenge = challenge_of(segment, total);
            let answer = still_receiving_answer(Bytes::copy_from_slice(&challenge.nonce), held, total);
            let verdict = challenge.judge(&blob_id, &answer);
            if answers_still_receiving(held, total, segment, growing) {
                prop_assert_eq!(&verdict, & Verdict::NoVerdict(NoVerdict::StillReceiving { held, total }));
            }
            if segment < held || held == 0 || held >= total {
                prop_assert!(matches!(verdict, Verdict::Failed(_)));
            }
        }
    }
}
