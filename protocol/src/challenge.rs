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

    /// Judges an answer: the nonce echoed, the sliver asked for, valid against the blob ID.
    pub fn judge(
        &self,
        blob_id: &BlobId,
        answer: &pb::ChallengeAnswer,
    ) -> Result<(), ChallengeFailure> {
        if answer.nonce.as_ref() != self.nonce {
            return Err(ChallengeFailure::WrongNonce);
        }
        let message = answer.sliver.clone().ok_or(ChallengeFailure::NoSliver)?;
        let (id, sliver) = <(BlobId, Sliver)>::try_from(message)
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
/// a random segment with a fresh nonce. `seed` must be unpredictable to the holders (the node draws it from the
/// OS); the same inputs give the same round.
pub fn round(
    holders: &[PeerKey],
    gone: &BTreeSet<PeerKey>,
    me: &PeerKey,
    role: &Role,
    segments: u64,
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
        let len = u64::try_from(targets.len()).unwrap_or(u64::MAX);
        let pick = usize::try_from(stream.below(len)).unwrap_or(0);
        let (index, holder) = targets.swap_remove(pick.min(targets.len() - 1));
        let segment = stream.below(segments.max(1));
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&stream.next().to_le_bytes());
        nonce[8..].copy_from_slice(&stream.next().to_le_bytes());
        round.push(Challenge {
            holder: holder.clone(),
            index,
            segment,
            nonce,
        });
    }
    round
}

/// Consecutive failed challenges per holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally<P: Ord> {
    failures: BTreeMap<P, u32>,
}

impl<P: Ord> Default for Tally<P> {
    fn default() -> Self {
        Self {
            failures: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone> Tally<P> {
    /// A passed challenge clears the holder's record.
    pub fn passed(&mut self, holder: &P) {
        self.failures.remove(holder);
    }

    /// A failed challenge; returns the holder's consecutive failures.
    pub fn failed(&mut self, holder: &P) -> u32 {
        let failures = self.failures.entry(holder.clone()).or_insert(0);
        *failures = failures.saturating_add(1);
        *failures
    }

    /// Whether the holder failed at least `threshold` challenges in a row, and so counts as gone.
    pub fn is_failing(&self, holder: &P, threshold: u32) -> bool {
        self.failures.get(holder).is_some_and(|&n| n >= threshold)
    }

    /// Holders with at least one failure since their last pass, and how many.
    pub fn failures(&self) -> &BTreeMap<P, u32> {
        &self.failures
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
        for seed in 0..50 {
            let round = round(&holders, &none, &holders[1], &deputy, 4, seed);
            assert_eq!(round.len(), 1);
            assert_eq!(
                (round[0].holder.clone(), round[0].index),
                (holders[0].clone(), 0)
            );
            assert!(
                super::round(&holders, &none, &holders[2], &Role::Bystander, 4, seed).is_empty()
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
            nonce: [7; NONCE_LEN],
        };
        let answer = |segment: u64, index: u16, nonce: &[u8]| pb::ChallengeAnswer {
            nonce: Bytes::copy_from_slice(nonce),
            sliver: Some((&encoded.sliver(segment, index).unwrap()).into()),
        };
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 2, &[7; NONCE_LEN])),
            Ok(())
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 2, &[8; NONCE_LEN])),
            Err(ChallengeFailure::WrongNonce)
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(0, 2, &[7; NONCE_LEN])),
            Err(ChallengeFailure::OtherSliver)
        );
        assert_eq!(
            challenge.judge(&blob_id, &answer(1, 3, &[7; NONCE_LEN])),
            Err(ChallengeFailure::OtherSliver)
        );
        let mut rotted = answer(1, 2, &[7; NONCE_LEN]);
        if let Some(sliver) = rotted.sliver.as_mut() {
            let mut data = sliver.data.to_vec();
            data[0] ^= 1;
            sliver.data = data.into();
        }
        assert!(matches!(
            challenge.judge(&blob_id, &rotted),
            Err(ChallengeFailure::Invalid(_))
        ));
        let empty = pb::ChallengeAnswer {
            nonce: Bytes::copy_from_slice(&[7; NONCE_LEN]),
            sliver: None,
        };
        assert_eq!(
            challenge.judge(&blob_id, &empty),
            Err(ChallengeFailure::NoSliver)
        );
        // The request carries what the answer is judged against.
        let request = challenge.request(&blob_id);
        assert_eq!((request.index, request.segment), (2, 1));
        assert_eq!(request.nonce.as_ref(), &[7; NONCE_LEN]);
    }

    #[test]
    fn failures_count_in_a_row_and_a_pass_clears_them() {
        let mut tally = Tally::default();
        let (a, b) = ("a", "b");
        assert_eq!(tally.failed(&a), 1);
        assert_eq!(tally.failed(&a), 2);
        assert!(!tally.is_failing(&a, 3));
        assert_eq!(tally.failed(&a), 3);
        assert!(tally.is_failing(&a, 3) && !tally.is_failing(&b, 3));
        tally.passed(&a);
        assert!(!tally.is_failing(&a, 1));
        assert!(tally.failures().is_empty());
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
            let round = round(&holders, &gone, &me, &Role::Leader, segments, seed);
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
            prop_assert_eq!(&round, &super::round(&holders, &gone, &me, &Role::Leader, segments, seed));
        }
    }
}
