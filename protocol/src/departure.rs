//! Departure evidence: what a repaired holder list must carry before a peer lets it take a sliver index from a
//! holder other than the list's maker (docs/protocol.md §13, decision 0020).
//!
//! A repair leader names the holders it found gone; every other holder it asks signs a [`pb::DepartureStatement`]
//! saying which of them are gone for it too. A receiver counts a named peer as departed when holders of at least
//! k sliver indexes of its own list ([`quorum`]) signed so, or when the peer signed so about itself (it holds
//! nothing of the blob). A byzantine third of a blob's holders holds at most k − 1 indexes, so it cannot prove
//! an honest holder gone without an honest holder agreeing; a leader left with a third of the holders still has
//! k indexes' worth of signers.
//!
//! This module decides what is signed, which statements verify and which peers they prove departed. The
//! signature scheme is the driver's ([`Signatures`]); it must not hold keys, sign or ask peers.

use std::collections::{BTreeMap, BTreeSet};

use crate::blob_id::{BLOB_ID_LEN, BlobId};
use crate::encoding::{MAX_SHARDS, source_shards_for};
use crate::holders::List;
use crate::receipt::Signatures;
use crate::wire::pb;

/// Domain separation: a departure statement's signature can never be taken for a signature over anything else.
pub const DEPARTURE_CONTEXT: &[u8; 17] = b"floe departure v1";

/// BLAKE3 key-derivation context of [`peers_digest`].
const PEERS_CONTEXT: &str = "floe departed peers v1";

/// Most peers one piece of evidence names: a list cannot lose more holders than it has sliver indexes.
pub const MAX_DEPARTED: usize = MAX_SHARDS as usize;

/// Length of [`signing_bytes`] before the bitmap.
pub const SIGNING_PREFIX_LEN: usize = DEPARTURE_CONTEXT.len() + BLOB_ID_LEN + 8 + 32;

/// Why a departure statement, or the evidence around it, does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DepartureError {
    /// The evidence names more peers than a list has sliver indexes.
    #[error("departure evidence names {0} peers; at most {MAX_DEPARTED} are valid")]
    TooManyPeers(usize),
    /// The evidence names a peer twice.
    #[error("departure evidence names a peer twice")]
    DuplicatePeer,
    /// The bitmap is not one bit per named peer, rounded up to bytes.
    #[error("departure statement bitmap of {got} bytes for {want} bytes of peers")]
    BitmapLength {
        /// Bytes sent.
        got: usize,
        /// Bytes the named peers take.
        want: usize,
    },
    /// Its public key is malformed.
    #[error("departure statement with a malformed public key")]
    BadKey,
    /// The signature does not verify.
    #[error("bad departure statement signature")]
    BadSignature,
}

/// The digest of the named peers a statement signs: each peer's length (u16, little-endian) and bytes, in order.
pub fn peers_digest<B: AsRef<[u8]>>(peers: &[B]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(PEERS_CONTEXT);
    for peer in peers {
        let bytes = peer.as_ref();
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        hasher.update(&len.to_le_bytes());
        hasher.update(bytes);
    }
    *hasher.finalize().as_bytes()
}

/// The bytes a holder signs: the context, the blob ID, the epoch of the list it holds (u64, little-endian), the
/// [`peers_digest`] of the named peers, then its bitmap of which are gone for it.
pub fn signing_bytes(blob_id: &BlobId, epoch: u64, digest: &[u8; 32], gone: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNING_PREFIX_LEN + gone.len());
    bytes.extend_from_slice(DEPARTURE_CONTEXT);
    bytes.extend_from_slice(blob_id.as_bytes());
    bytes.extend_from_slice(&epoch.to_le_bytes());
    bytes.extend_from_slice(digest);
    bytes.extend_from_slice(gone);
    bytes
}

/// A bitmap of `len` bits, bit i set when `gone(i)`: byte i / 8, least significant bit first.
pub fn bitmap(len: usize, gone: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut bits = vec![0u8; len.div_ceil(8)];
    for (i, byte) in (0..len).map(|i| (i, i / 8)) {
        if let Some(b) = bits.get_mut(byte).filter(|_| gone(i)) {
            *b |= 1 << (i % 8);
        }
    }
    bits
}

/// Whether bit `i` of `bits` is set.
pub fn is_set(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Checks the peers a piece of evidence names: at most [`MAX_DEPARTED`], each once.
pub fn check_peers<B: AsRef<[u8]>>(peers: &[B]) -> Result<(), DepartureError> {
    if peers.len() > MAX_DEPARTED {
        return Err(DepartureError::TooManyPeers(peers.len()));
    }
    let distinct: BTreeSet<&[u8]> = peers.iter().map(AsRef::as_ref).collect();
    if distinct.len() != peers.len() {
        return Err(DepartureError::DuplicatePeer);
    }
    Ok(())
}

/// A statement that verified: who signed it, over which list epoch, and its bitmap over the named peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<P> {
    /// The signer.
    pub signer: P,
    /// The epoch of the list the signer held.
    pub epoch: u64,
    /// Which named peers are gone for the signer ([`is_set`]).
    pub gone: Vec<u8>,
}

/// Checks one statement about `peer_count` named peers (whose [`peers_digest`] is `digest`) of `blob_id`, and
/// says who signed it.
pub fn check<S: Signatures>(
    signatures: &S,
    blob_id: &BlobId,
    digest: &[u8; 32],
    peer_count: usize,
    statement: &pb::DepartureStatement,
) -> Result<Statement<S::Peer>, DepartureError> {
    let want = peer_count.div_ceil(8);
    if statement.gone.len() != want {
        return Err(DepartureError::BitmapLength {
            got: statement.gone.len(),
            want,
        });
    }
    let signer = signatures
        .signer(&statement.signer_public_key)
        .ok_or(DepartureError::BadKey)?;
    let signed = signing_bytes(blob_id, statement.epoch, digest, &statement.gone);
    if !signatures.verifies(&statement.signer_public_key, &signed, &statement.signature) {
        return Err(DepartureError::BadSignature);
    }
    Ok(Statement {
        signer,
        epoch: statement.epoch,
        gone: statement.gone.to_vec(),
    })
}

/// The weight of signers that proves a peer departed from a list of `shards` sliver indexes: k, the indexes any
/// k of which rebuild the blob. Fewer than k indexes can be all byzantine; k cannot.
pub fn quorum(shards: usize) -> usize {
    usize::from(source_shards_for(
        u16::try_from(shards).unwrap_or(MAX_SHARDS),
    ))
}

/// Which of `peers` the `statements` prove departed, judged against `held`, the list this peer keeps, for a list
/// of epoch `offered_epoch`. A statement counts when it was signed over a list no older than `held` and older
/// than the offered one (so a statement from before a peer came back cannot be replayed once a list names it
/// again), once per signer. A peer is departed when it signed so about itself, or when signers holding at least
/// [`quorum`] indexes of `held` (other than the peer) did, and in either case the judging peer does not reach it
/// now (`reached`): a holder that answers this peer is live for it, whatever others sign, so even statements
/// from k indexes' worth of byzantine holders cannot take an index from a holder its fellow holders reach.
pub fn proven<P: Ord + Clone>(
    held: &List<'_, P>,
    offered_epoch: u64,
    peers: &[P],
    statements: &[Statement<P>],
    reached: impl Fn(&P) -> bool,
) -> BTreeSet<P> {
    let mut weight: BTreeMap<&P, usize> = BTreeMap::new();
    for holder in held.holders {
        *weight.entry(holder).or_default() += 1;
    }
    let mut counted: BTreeSet<&P> = BTreeSet::new();
    let fresh = statements
        .iter()
        .filter(|s| s.epoch >= held.epoch && s.epoch < offered_epoch && counted.insert(&s.signer));
    let mut support = vec![0usize; peers.len()];
    let mut released = vec![false; peers.len()];
    for statement in fresh {
        let signer_weight = weight.get(&statement.signer).copied().unwrap_or(0);
        for (i, peer) in peers.iter().enumerate() {
            if !is_set(&statement.gone, i) {
                continue;
            }
            if *peer == statement.signer {
                released[i] = true;
            } else if let Some(s) = support.get_mut(i) {
                *s = s.saturating_add(signer_weight);
            }
        }
    }
    let need = quorum(held.holders.len());
    peers
        .iter()
        .enumerate()
        .filter(|&(i, _)| {
            released.get(i) == Some(&true) || support.get(i).is_some_and(|&s| s >= need)
        })
        .filter(|(_, peer)| !reached(peer))
        .map(|(_, peer)| peer.clone())
        .collect()
}

/// Which of `statements` to send on so that the evidence still proves every peer of `peers` it proves against
/// `held`: each signer's first statement, largest weight first, while it adds support to a peer still short of
/// [`quorum`], plus every statement of a peer about itself. Keeps announcements small: k indexes' worth of
/// signers, not n.
pub fn enough<P: Ord + Clone>(
    held: &List<'_, P>,
    offered_epoch: u64,
    peers: &[P],
    statements: &[Statement<P>],
) -> Vec<usize> {
    let mut weight: BTreeMap<&P, usize> = BTreeMap::new();
    for holder in held.holders {
        *weight.entry(holder).or_default() += 1;
    }
    let need = quorum(held.holders.len());
    let mut seen: BTreeSet<&P> = BTreeSet::new();
    let mut order: Vec<(usize, usize)> = statements
        .iter()
        .enumerate()
        .filter(|(_, s)| s.epoch >= held.epoch && s.epoch < offered_epoch && seen.insert(&s.signer))
        .map(|(at, s)| (at, weight.get(&s.signer).copied().unwrap_or(0)))
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut support = vec![0usize; peers.len()];
    let mut keep = Vec::new();
    for (at, signer_weight) in order {
        let Some(statement) = statements.get(at) else {
            continue;
        };
        let mut useful = false;
        for (i, peer) in peers.iter().enumerate() {
            if !is_set(&statement.gone, i) {
                continue;
            }
            if *peer == statement.signer {
                useful = true;
            } else if let Some(s) = support
                .get_mut(i)
                .filter(|s| **s < need && signer_weight > 0)
            {
                *s = s.saturating_add(signer_weight);
                useful = true;
            }
        }
        if useful {
            keep.push(at);
        }
    }
    keep.sort_unstable();
    keep
}

/// What a holder asked by a repair leader signs about `asked`, the peers the leader found gone: the bitmap of a
/// [`pb::DepartureStatement`] over its own list `held`. Itself only when it `holds_nothing` of the indexes its
/// list gives it (a peer that lost its slivers lets them go); another peer only when `held` names it and it is
/// `gone` for this holder (out of reach past the grace period, failing, or leaving, as the driver knows). A
/// holder never speaks for peers its list does not name: its word weighs by its own list.
pub fn attest<P: PartialEq>(
    held: &[P],
    me: &P,
    asked: &[P],
    holds_nothing: bool,
    gone: impl Fn(&P) -> bool,
) -> Vec<u8> {
    bitmap(asked.len(), |i| {
        asked.get(i).is_some_and(|peer| {
            if peer == me {
                holds_nothing
            } else {
                held.contains(peer) && gone(peer)
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::toy::{Toy, toy_sign};
    use bytes::Bytes;

    fn id() -> BlobId {
        BlobId::from_slice(&[5; 32]).unwrap()
    }

    fn signed(signer: u8, epoch: u64, peers: &[[u8; 1]], gone: &[bool]) -> pb::DepartureStatement {
        let bits = bitmap(peers.len(), |i| gone[i]);
        let digest = peers_digest(peers);
        pb::DepartureStatement {
            epoch,
            signature: Bytes::from(toy_sign(
                signer,
                &signing_bytes(&id(), epoch, &digest, &bits),
            )),
            gone: Bytes::from(bits),
            signer_public_key: Bytes::from(vec![signer]),
        }
    }

    fn statement(signer: u8, epoch: u64, gone: &[bool]) -> Statement<u8> {
        Statement {
            signer,
            epoch,
            gone: bitmap(gone.len(), |i| gone[i]),
        }
    }

    #[test]
    fn bitmaps_are_least_significant_bit_first() {
        let bits = bitmap(10, |i| i == 0 || i == 9);
        assert_eq!(bits, vec![0b0000_0001, 0b0000_0010]);
        assert!(is_set(&bits, 9) && !is_set(&bits, 8) && !is_set(&bits, 80));
        assert!(bitmap(0, |_| true).is_empty());
    }

    #[test]
    fn statements_verify_only_as_signed() {
        let peers = [[7], [8]];
        let digest = peers_digest(&peers);
        let good = signed(1, 4, &peers, &[true, false]);
        let got = check(&Toy, &id(), &digest, 2, &good).unwrap();
        assert_eq!((got.signer, got.epoch), (1, 4));
        assert!(is_set(&got.gone, 0) && !is_set(&got.gone, 1));
        // Another set of peers, another epoch, another bitmap, another signer's key: none verifies.
        let other = peers_digest(&[[7], [9]]);
        assert_eq!(
            check(&Toy, &id(), &other, 2, &good),
            Err(DepartureError::BadSignature)
        );
        let mut later = good.clone();
        later.epoch = 5;
        assert_eq!(
            check(&Toy, &id(), &digest, 2, &later),
            Err(DepartureError::BadSignature)
        );
        let mut flipped = good.clone();
        flipped.gone = Bytes::from(vec![0b11]);
        assert_eq!(
            check(&Toy, &id(), &digest, 2, &flipped),
            Err(DepartureError::BadSignature)
        );
        let mut stolen = good.clone();
        stolen.signer_public_key = Bytes::from(vec![2]);
        assert_eq!(
            check(&Toy, &id(), &digest, 2, &stolen),
            Err(DepartureError::BadSignature)
        );
        assert_eq!(
            check(&Toy, &id(), &digest, 9, &good),
            Err(DepartureError::BitmapLength { got: 1, want: 2 })
        );
        let mut keyless = good;
        keyless.signer_public_key = Bytes::new();
        assert_eq!(
            check(&Toy, &id(), &digest, 2, &keyless),
            Err(DepartureError::BadKey)
        );
    }

    #[test]
    fn holders_sign_only_for_listed_peers_and_for_themselves_when_empty() {
        let held = [1u8, 2, 3];
        let asked = [2u8, 3, 4, 1];
        let gone = |p: &u8| *p != 3;
        let bits = attest(&held, &1, &asked, false, gone);
        // 2: listed and gone; 3: listed, reachable; 4: not listed; 1: me, holding my slivers.
        assert_eq!(
            (0..4).map(|i| is_set(&bits, i)).collect::<Vec<_>>(),
            [true, false, false, false]
        );
        assert!(is_set(&attest(&held, &1, &asked, true, gone), 3));
    }

    #[test]
    fn named_peers_are_few_and_distinct() {
        assert_eq!(check_peers(&[[1], [2]]), Ok(()));
        assert_eq!(check_peers(&[[1], [1]]), Err(DepartureError::DuplicatePeer));
        let many = vec![[0u8]; MAX_DEPARTED + 1];
        assert_eq!(
            check_peers(&many),
            Err(DepartureError::TooManyPeers(MAX_DEPARTED + 1))
        );
    }

    #[test]
    fn k_indexes_of_signers_prove_a_departure() {
        // Seven indexes, k = 3. Peer 9 holds two of them, so it and one more signer are enough.
        let holders = [1u8, 2, 3, 9, 9, 6, 7];
        let held = List {
            holders: &holders,
            epoch: 4,
            repairer: &[],
        };
        let peers = [6u8, 7];
        let two = [
            statement(1, 4, &[true, false]),
            statement(2, 4, &[true, false]),
        ];
        assert!(proven(&held, 5, &peers, &two, |_| false).is_empty());
        let three = [
            statement(1, 4, &[true, false]),
            statement(2, 4, &[true, false]),
            statement(3, 4, &[true, false]),
        ];
        assert_eq!(
            proven(&held, 5, &peers, &three, |_| false),
            BTreeSet::from([6])
        );
        // Whatever the statements, a peer the judge reaches now is not gone for it.
        assert!(proven(&held, 5, &peers, &three, |p| *p == 6).is_empty());
        let heavy = [
            statement(9, 4, &[true, true]),
            statement(1, 4, &[true, false]),
        ];
        assert_eq!(
            proven(&held, 5, &peers, &heavy, |_| false),
            BTreeSet::from([6])
        );
        // One signer counts once, however many statements it sends; a stranger weighs nothing.
        let repeated = [
            statement(1, 4, &[true, false]),
            statement(1, 4, &[true, false]),
            statement(1, 4, &[true, false]),
            statement(5, 4, &[true, false]),
        ];
        assert!(proven(&held, 5, &peers, &repeated, |_| false).is_empty());
        // A peer's word about itself is enough: it holds nothing of the blob.
        let released = [statement(7, 4, &[false, true])];
        assert_eq!(
            proven(&held, 5, &peers, &released, |_| false),
            BTreeSet::from([7])
        );
    }

    #[test]
    fn statements_over_older_or_offered_lists_do_not_count() {
        let holders = [1u8, 2, 3, 4];
        let held = List {
            holders: &holders,
            epoch: 4,
            repairer: &[],
        };
        let peers = [4u8];
        let at = |epoch| [statement(1, epoch, &[true]), statement(2, epoch, &[true])];
        assert!(proven(&held, 5, &peers, &at(3), |_| false).is_empty());
        assert!(proven(&held, 5, &peers, &at(5), |_| false).is_empty());
        assert_eq!(
            proven(&held, 5, &peers, &at(4), |_| false),
            BTreeSet::from([4])
        );
        // A peer one list behind still checks evidence signed over the list it has not seen.
        assert_eq!(
            proven(&held, 6, &peers, &at(5), |_| false),
            BTreeSet::from([4])
        );
    }

    #[test]
    fn enough_keeps_what_proves_and_drops_the_rest() {
        let holders = [1u8, 2, 3, 4, 5, 6, 7];
        let held = List {
            holders: &holders,
            epoch: 0,
            repairer: &[],
        };
        let peers = [6u8, 7];
        let all: Vec<Statement<u8>> = (1..=5)
            .map(|s| statement(s, 0, &[true, true]))
            .chain([statement(7, 0, &[false, true])])
            .collect();
        let kept = enough(&held, 1, &peers, &all);
        let kept_statements: Vec<Statement<u8>> = kept.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(
            proven(&held, 1, &peers, &kept_statements, |_| false),
            proven(&held, 1, &peers, &all, |_| false)
        );
        assert!(kept.len() <= 4, "kept {kept:?}");
    }

    use crate::holders::{evidenced, within_evidence};
    use proptest::prelude::*;

    type Peer = Vec<u8>;

    /// Splits `indexes` sliver indexes among `peers` peers (named 0..peers, some holding several, as in a swarm
    /// smaller than n) by `picks`.
    fn holders_from(picks: &[u8], peers: u8) -> Vec<Peer> {
        picks.iter().map(|p| vec![p % peers]).collect()
    }

    fn weight(holders: &[Peer], of: &BTreeSet<Peer>) -> usize {
        holders.iter().filter(|h| of.contains(*h)).count()
    }

    proptest! {
        /// A byzantine third of the holders (peers holding at most k - 1 of the indexes, the repairer among
        /// them) signs whatever it likes and announces any list: every list that passes `evidenced` leaves each
        /// index of an honest holder where it was, so at least n - (k - 1) >= k slivers stay with honest holders.
        #[test]
        fn a_byzantine_third_cannot_take_an_honest_index(
            picks in proptest::collection::vec(any::<u8>(), 4..60),
            peer_count in 2u8..40,
            order in proptest::collection::vec(any::<u8>(), 40),
            forged in proptest::collection::vec((any::<bool>(), 0u8..80), 60),
            claims in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 80), 40),
            repairer_pick in any::<u8>(),
        ) {
            let holders = holders_from(&picks, peer_count);
            let n = holders.len();
            let k = quorum(n);
            // The byzantine peers: taken in a random order while they hold at most k - 1 indexes.
            let mut byzantine: BTreeSet<Peer> = BTreeSet::new();
            for &o in &order {
                let peer = vec![o % peer_count];
                let mut with = byzantine.clone();
                with.insert(peer);
                if weight(&holders, &with) < k {
                    byzantine = with;
                }
            }
            prop_assume!(!byzantine.is_empty());
            let members: Vec<&Peer> = byzantine.iter().collect();
            let repairer = members[usize::from(repairer_pick) % members.len()].clone();
            let held = List { holders: &holders, epoch: 7, repairer: &[] };
            // Any list: each index kept or given to any peer, ground Sybils (40..80) included.
            let offered_holders: Vec<Peer> = holders
                .iter()
                .zip(&forged)
                .map(|(h, &(moved, to))| if moved { vec![to] } else { h.clone() })
                .collect();
            let offered = List { holders: &offered_holders, epoch: 8, repairer: &repairer };
            // The evidence names every peer; each byzantine peer signs its own bitmap (honest holders, who
            // reach everyone, sign nothing).
            let named: Vec<Peer> = (0u8..80).map(|p| vec![p]).collect();
            let statements: Vec<Statement<Peer>> = members
                .iter()
                .zip(&claims)
                .map(|(signer, claim)| Statement {
                    signer: (*signer).clone(),
                    epoch: 7,
                    gone: bitmap(named.len(), |i| claim[i]),
                })
                .collect();
            let proven = proven(&held, 8, &named, &statements, |_| false);
            prop_assert!(proven.iter().all(|p| byzantine.contains(p)), "proved an honest peer gone: {proven:?}");
            if evidenced(&held, &offered, &proven).is_ok() {
                for (was, now) in holders.iter().zip(&offered_holders) {
                    if !byzantine.contains(was) {
                        prop_assert_eq!(was, now);
                    }
                }
                let honest_kept = holders
                    .iter()
                    .zip(&offered_holders)
                    .filter(|(was, now)| was == now && !byzantine.contains(*was))
                    .count();
                prop_assert!(honest_kept >= k);
            }
        }

        /// However many holders sign (a byzantine majority of the signatures included), a holder the judging
        /// peer reaches is never proven gone, so no list takes an index from it unless its maker held it.
        #[test]
        fn no_statements_take_an_index_from_a_holder_the_judge_reaches(
            picks in proptest::collection::vec(any::<u8>(), 4..60),
            peer_count in 2u8..40,
            reach in proptest::collection::vec(any::<bool>(), 40),
            claims in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 40), 40),
            forged in proptest::collection::vec((any::<bool>(), 0u8..80), 60),
        ) {
            let holders = holders_from(&picks, peer_count);
            let held = List { holders: &holders, epoch: 3, repairer: &[] };
            let named: Vec<Peer> = (0..peer_count).map(|p| vec![p]).collect();
            let statements: Vec<Statement<Peer>> = named
                .iter()
                .zip(&claims)
                .map(|(signer, claim)| Statement {
                    signer: signer.clone(),
                    epoch: 3,
                    gone: bitmap(named.len(), |i| claim[i]),
                })
                .collect();
            let reached = |p: &Peer| reach[usize::from(p[0]) % reach.len()];
            let proven = proven(&held, 4, &named, &statements, reached);
            prop_assert!(proven.iter().all(|p| !reached(p)));
            let repairer = vec![255u8];
            let offered_holders: Vec<Peer> = holders
                .iter()
                .zip(&forged)
                .map(|(h, &(moved, to))| if moved { vec![to] } else { h.clone() })
                .collect();
            let offered = List { holders: &offered_holders, epoch: 4, repairer: &repairer };
            if evidenced(&held, &offered, &proven).is_ok() {
                for (was, now) in holders.iter().zip(&offered_holders) {
                    if reached(was) {
                        prop_assert_eq!(was, now);
                    }
                }
            }
        }

        /// An honest leader left with any set of holders of at least k indexes (so up to two thirds gone) gets
        /// the departure of every gone holder proven by the survivors' statements, and its plan passes whole:
        /// every index of a gone holder moves to a live peer.
        #[test]
        fn an_honest_leader_still_repairs_when_two_thirds_are_gone(
            picks in proptest::collection::vec(any::<u8>(), 4..60),
            peer_count in 2u8..40,
            gone_mask in proptest::collection::vec(any::<bool>(), 40),
            newcomers in 0u8..20,
        ) {
            let holders = holders_from(&picks, peer_count);
            let n = holders.len();
            let k = quorum(n);
            let gone: BTreeSet<Peer> = (0..peer_count)
                .filter(|&p| gone_mask[usize::from(p)])
                .map(|p| vec![p])
                .filter(|p| holders.contains(p))
                .collect();
            let live: BTreeSet<Peer> = holders.iter().filter(|h| !gone.contains(*h)).cloned().collect();
            prop_assume!(!gone.is_empty() && weight(&holders, &live) >= k);
            let leader = holders.iter().find(|h| live.contains(*h)).cloned().unwrap();
            let candidates: Vec<Peer> = live
                .iter()
                .cloned()
                .chain((0..newcomers).map(|c| vec![100 + c]))
                .collect();
            let blob_id = BlobId::from_slice(&[3; 32]).unwrap();
            let plan = crate::repair::plan(&blob_id, &holders, &gone, &candidates).unwrap();
            let named: Vec<Peer> = gone.iter().cloned().collect();
            let statements: Vec<Statement<Peer>> = live
                .iter()
                .map(|signer| Statement { signer: signer.clone(), epoch: 2, gone: bitmap(named.len(), |_| true) })
                .collect();
            let held = List { holders: &holders, epoch: 2, repairer: &[] };
            let proven = proven(&held, 3, &named, &statements, |_| false);
            prop_assert_eq!(&proven, &gone);
            let kept = enough(&held, 3, &named, &statements);
            let sent: Vec<Statement<Peer>> = kept.iter().map(|&i| statements[i].clone()).collect();
            prop_assert_eq!(super::proven(&held, 3, &named, &sent, |_| false), gone.clone());
            let announced = within_evidence(&holders, &plan.holders, &leader, &proven);
            // Moves off live holders (rebalancing) are the only ones the evidence may undo.
            for ((was, planned), now) in holders.iter().zip(&plan.holders).zip(&announced) {
                if gone.contains(was) {
                    prop_assert_eq!(planned, now);
                    prop_assert!(!gone.contains(now));
                }
            }
            let offered = List { holders: &announced, epoch: 3, repairer: &leader };
            prop_assert_eq!(evidenced(&held, &offered, &proven), Ok(()));
        }
    }
}
