//! Placement: which peer holds which sliver index of a blob.
//!
//! This module owns the rule (docs/protocol.md §9). Given a blob ID, n and the blob's neighbourhood (the peers a
//! Kademlia lookup returned as closest to the blob ID, or every peer in a small swarm), it assigns each sliver
//! index a holder by balanced rendezvous hashing. It does no lookups itself and keeps no state: the same inputs
//! give the same assignment on every node and in the simulator.
//!
//! Rule:
//! 1. peers are de-duplicated; each gets a blob score `blake3(ctx_peer, blob_id ‖ peer)`; if there are more
//!    than n, only the n best-scored are used;
//! 2. with N peers, every peer may hold ⌊n/N⌋ slivers and the `n mod N` best-scored peers one more;
//! 3. each (index, peer) pair has a score mixing the peer's blob score with the index's
//!    (`blake3(ctx_index, blob_id ‖ i)`) through splitmix64; each index keeps its 64 best pairs; all kept pairs,
//!    best first (ties: lower index, then better-ranked peer), are taken greedily while the index is unassigned and
//!    the peer has room; an index left over takes the best-scored peer with room, in index order.
//!
//! Holders are distinct when N ≥ n, and hold ⌊n/N⌋ or ⌈n/N⌉ slivers otherwise. A join or leave changes the
//! holder of the leaving or joining peer's slivers and, through capacity, of a few others; `moves` measures it.

use std::sync::LazyLock;

use crate::blob_id::BlobId;

pub(crate) const PEER_CONTEXT: &str = "floe 2026-11 placement peer v1";
pub(crate) const INDEX_CONTEXT: &str = "floe 2026-11 placement index v1";
/// Candidate peers per sliver index in the greedy matching.
const CANDIDATES: usize = 64;

/// A (pair score, sliver index, peer rank) candidate pair, ordered so that the greatest is the one the greedy
/// matching takes first: highest score, then lowest index, then lowest rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair((u64, usize, usize));

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0, other.0);
        a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A peer as placement sees it: opaque bytes (the libp2p peer ID's bytes), ordered bytewise.
pub type PeerKey = Vec<u8>;

/// The placement contexts' derived-key hashers, made once: cloning one skips re-deriving the key from the context
/// string on every score (the output is the same as `Hasher::new_derive_key(context)`).
static PEER_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(PEER_CONTEXT));
static INDEX_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(INDEX_CONTEXT));

pub(crate) fn score64(context: &str, blob_id: &BlobId, tail: &[u8]) -> u64 {
    let mut hasher = match context {
        PEER_CONTEXT => PEER_HASHER.clone(),
        INDEX_CONTEXT => INDEX_HASHER.clone(),
        other => blake3::Hasher::new_derive_key(other),
    };
    hasher.update(blob_id.as_bytes());
    hasher.update(tail);
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The greedy matching of sliver indexes to scored peers (`peer_scores` by rank, best first): every index's
/// CANDIDATES best-scored peers, as (pair score, index, rank) pairs, are taken in score order while the peer has
/// `room` left. Returns each index's rank, `None` for an index whose candidates all filled up.
///
/// Each index's row is produced lazily, a few best pairs at a time (the next batch is the best of the pairs below
/// the last one handed out, recomputed from the scores), and the rows' heads merge in one max-heap, so pairs come
/// out in the order sorting them all would give. An index that got its holder drops the rest of its row (those
/// pairs would be skipped anyway), so most rows cost one pass over the peers instead of a selection and a heap.
fn candidate_matching(
    index_scores: &[u64],
    peer_scores: &[u64],
    room: &mut [usize],
) -> Vec<Option<usize>> {
    let mut rows: Vec<Row> = index_scores
        .iter()
        .enumerate()
        .map(|(index, &index_score)| Row::new(index, index_score))
        .collect();
    let mut heads: std::collections::BinaryHeap<Pair> = rows
        .iter_mut()
        .filter_map(|row| row.next(peer_scores))
        .collect();
    let mut holder_rank: Vec<Option<usize>> = vec![None; index_scores.len()];
    while let Some(Pair((_, index, rank))) = heads.pop() {
        let (Some(slot), Some(left)) = (holder_rank.get_mut(index), room.get_mut(rank)) else {
            continue;
        };
        if slot.is_none() && *left > 0 {
            *slot = Some(rank);
            *left -= 1;
        } else if let Some(next) = rows.get_mut(index).and_then(|row| row.next(peer_scores)) {
            heads.push(next);
        }
    }
    holder_rank
}

/// One sliver index's candidate pairs, handed out best first, at most CANDIDATES of them.
///
/// Within a row the index is fixed, so a pair's place in the order is its key `score ‖ !rank` (higher score
/// first, then lower rank), one integer comparison.
struct Row {
    index: usize,
    index_score: u64,
    /// The keys of the next pairs, ascending: the best is last.
    batch: Vec<u128>,
    /// The key of the last pair handed out; every later one ranks below it.
    last: Option<u128>,
    handed_out: usize,
}

impl Row {
    /// Pairs kept per later pass over the peers. The first pass keeps only the best: most indexes get their
    /// holder from it.
    const BATCH: usize = 8;

    fn new(index: usize, index_score: u64) -> Self {
        Row {
            index,
            index_score,
            batch: Vec::new(),
            last: None,
            handed_out: 0,
        }
    }

    fn key(index_score: u64, peer_score: u64, rank: usize) -> u128 {
        let rank = u64::try_from(rank).unwrap_or(u64::MAX);
        (u128::from(splitmix64(peer_score ^ index_score)) << 64) | u128::from(!rank)
    }

    fn next(&mut self, peer_scores: &[u64]) -> Option<Pair> {
        if self.handed_out >= CANDIDATES {
            return None;
        }
        if self.batch.is_empty() {
            self.refill(peer_scores);
        }
        let key = self.batch.pop()?;
        self.handed_out += 1;
        self.last = Some(key);
        let score = u64::try_from(key >> 64).unwrap_or(0);
        let rank = u64::try_from(key & u128::from(u64::MAX)).unwrap_or(u64::MAX);
        Some(Pair((
            score,
            self.index,
            usize::try_from(!rank).unwrap_or(usize::MAX),
        )))
    }

    /// The best pair (first pass) or the BATCH best pairs below the last one handed out, ascending.
    fn refill(&mut self, peer_scores: &[u64]) {
        let index_score = self.index_score;
        let keys = peer_scores
            .iter()
            .enumerate()
            .map(move |(rank, &peer_score)| Self::key(index_score, peer_score, rank));
        let Some(last) = self.last else {
            self.batch.extend(keys.max());
            return;
        };
        let mut batch = std::mem::take(&mut self.batch);
        for key in keys.filter(|&key| key < last) {
            if batch.len() < Self::BATCH {
                batch.push(key);
                if batch.len() == Self::BATCH {
                    batch.sort_unstable();
                }
            } else if batch.first().is_some_and(|&worst| key > worst) {
                // Replace the worst and sift it up to keep the batch ascending.
                batch[0] = key;
                for at in 1..batch.len() {
                    if batch[at] < batch[at - 1] {
                        batch.swap(at, at - 1);
                    } else {
                        break;
                    }
                }
            }
        }
        if batch.len() < Self::BATCH {
            batch.sort_unstable();
        }
        self.batch = batch;
    }
}

/// The holders of a blob's sliver indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The peers used, sorted bytewise.
    peers: Vec<PeerKey>,
    /// For each sliver index, the position of its holder in `peers`.
    holder_of: Vec<usize>,
}

impl Placement {
    /// Places n slivers of `blob_id` on `peers`; `None` when there are no peers.
    pub fn new(blob_id: &BlobId, shards: u16, peers: &[PeerKey]) -> Option<Self> {
        let mut scored: Vec<(u64, &PeerKey)> = peers
            .iter()
            .map(|peer| (score64(PEER_CONTEXT, blob_id, peer), peer))
            .collect();
        // Best score first; bytes break ties so the order is total.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        let n = usize::from(shards);
        scored.truncate(n);
        if scored.is_empty() || n == 0 {
            return None;
        }
        let count = scored.len();
        let (base, extra) = (n / count, n % count);
        // Capacity per scored position: the `extra` best get one more.
        let mut room: Vec<usize> = (0..count)
            .map(|rank| base + usize::from(rank < extra))
            .collect();
        // Each index's best-scored peers, as (score, index, rank); all of them, best first, are taken greedily.
        // Greedy over pairs in score order is a stable matching, so a membership change displaces only pairs that
        // scored below the ones it touches. At most CANDIDATES pairs per index take part; producing them scans
        // the index's N pairs once for the best and again for each later batch (candidate_matching).
        let pair_score = |index_score: u64, rank: usize| splitmix64(scored[rank].0 ^ index_score);
        let index_scores: Vec<u64> = (0..shards)
            .map(|index| score64(INDEX_CONTEXT, blob_id, &index.to_le_bytes()))
            .collect();
        let peer_scores: Vec<u64> = scored.iter().map(|(score, _)| *score).collect();
        let mut holder_rank = candidate_matching(&index_scores, &peer_scores, &mut room);
        // An index whose candidates all filled up takes the best-scored peer with room left, in index order.
        for (index, slot) in holder_rank.iter_mut().enumerate() {
            if slot.is_none() {
                let index_score = index_scores[index];
                let best = (0..count).filter(|&rank| room[rank] > 0).max_by(|&a, &b| {
                    pair_score(index_score, a)
                        .cmp(&pair_score(index_score, b))
                        .then(b.cmp(&a))
                })?;
                room[best] -= 1;
                *slot = Some(best);
            }
        }
        let holder_rank: Vec<usize> = holder_rank.into_iter().collect::<Option<_>>()?;
        let mut peers: Vec<PeerKey> = scored.iter().map(|(_, p)| (*p).clone()).collect();
        peers.sort();
        let holder_of = holder_rank
            .into_iter()
            .map(|rank| peers.binary_search(scored[rank].1).unwrap_or(0))
            .collect();
        Some(Self { peers, holder_of })
    }

    /// A placement recorded elsewhere (the writer's, carried with the metadata): `holders[i]` holds index i.
    /// `None` when the list is empty.
    pub fn from_holders(holders: Vec<PeerKey>) -> Option<Self> {
        if holders.is_empty() {
            return None;
        }
        let mut peers = holders.clone();
        peers.sort();
        peers.dedup();
        let holder_of = holders
            .iter()
            .map(|h| peers.binary_search(h).unwrap_or(0))
            .collect();
        Some(Self { peers, holder_of })
    }

    /// The holder of every sliver index, in index order.
    pub fn holder_list(&self) -> Vec<PeerKey> {
        self.holder_of
            .iter()
            .filter_map(|&p| self.peers.get(p).cloned())
            .collect()
    }

    /// The holder of sliver `index`.
    pub fn holder(&self, index: u16) -> Option<&PeerKey> {
        self.holder_of
            .get(usize::from(index))
            .and_then(|&p| self.peers.get(p))
    }

    /// The sliver indexes `peer` holds, ascending.
    pub fn indexes_of(&self, peer: &[u8]) -> Vec<u16> {
        let Ok(position) = self.peers.binary_search_by(|p| p.as_slice().cmp(peer)) else {
            return Vec::new();
        };
        self.holder_of
            .iter()
            .enumerate()
            .filter(|(_, holder)| **holder == position)
            .filter_map(|(index, _)| u16::try_from(index).ok())
            .collect()
    }

    /// The peers that hold at least one sliver, sorted.
    pub fn holders(&self) -> Vec<&PeerKey> {
        let mut used: Vec<usize> = self.holder_of.clone();
        used.sort_unstable();
        used.dedup();
        used.into_iter().filter_map(|p| self.peers.get(p)).collect()
    }

    /// The score that ranks `peer` for sliver `index` of `blob_id`, higher first: the pair score the rule above
    /// uses, also used by repair to pick new holders.
    pub fn pair_score(blob_id: &BlobId, peer: &[u8], index: u16) -> u64 {
        splitmix64(Self::peer_score(blob_id, peer) ^ Self::index_score(blob_id, index))
    }

    /// The peer half of [`Self::pair_score`]: `pair_score = splitmix64(peer_score ^ index_score)`, so a caller
    /// scoring many pairs hashes each peer and each index once.
    pub fn peer_score(blob_id: &BlobId, peer: &[u8]) -> u64 {
        score64(PEER_CONTEXT, blob_id, peer)
    }

    /// The index half of [`Self::pair_score`].
    pub fn index_score(blob_id: &BlobId, index: u16) -> u64 {
        score64(INDEX_CONTEXT, blob_id, &index.to_le_bytes())
    }

    /// Number of sliver indexes.
    pub fn len(&self) -> usize {
        self.holder_of.len()
    }

    /// Whether there are no sliver indexes (never, for a placement that was built).
    pub fn is_empty(&self) -> bool {
        self.holder_of.is_empty()
    }

    /// How many sliver indexes have a different holder in `other`.
    pub fn moves(&self, other: &Placement) -> usize {
        (0..self.len())
            .filter(|&i| {
                let i = u16::try_from(i).unwrap_or(u16::MAX);
                self.holder(i) != other.holder(i)
            })
            .count()
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peers(count: usize, salt: u8) -> Vec<PeerKey> {
        (0..count)
            .map(|i| vec![salt, (i >> 8) as u8, i as u8, 7])
            .collect()
    }

    /// The greedy matching as first written (all pairs sorted, then taken in order): the reference the merged
    /// [`candidate_matching`] must match exactly.
    fn reference_holder_ranks(
        index_scores: &[u64],
        peer_scores: &[u64],
        room: &mut [usize],
    ) -> Vec<Option<usize>> {
        let order = |a: &(u64, u16, usize), b: &(u64, u16, usize)| {
            b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        };
        let count = peer_scores.len();
        let mut pairs = Vec::new();
        for (index, &index_score) in index_scores.iter().enumerate() {
            let mut row: Vec<(u64, u16, usize)> = (0..count)
                .map(|rank| {
                    (
                        splitmix64(peer_scores[rank] ^ index_score),
                        index as u16,
                        rank,
                    )
                })
                .collect();
            if row.len() > CANDIDATES {
                row.select_nth_unstable_by(CANDIDATES - 1, order);
                row.truncate(CANDIDATES);
            }
            pairs.extend_from_slice(&row);
        }
        pairs.sort_unstable_by(order);
        let mut holder_rank = vec![None; index_scores.len()];
        for (_, index, rank) in pairs {
            let slot = &mut holder_rank[usize::from(index)];
            if slot.is_none() && room[rank] > 0 {
                *slot = Some(rank);
                room[rank] -= 1;
            }
        }
        holder_rank
    }

    #[test]
    fn scores_are_blake3_derived_keys_of_the_documented_contexts() {
        // The cached hashers must give exactly what protocol.md specifies: BLAKE3 in derive-key mode.
        let id = BlobId([42; 32]);
        let expect = |context: &str, tail: &[u8]| {
            let mut hasher = blake3::Hasher::new_derive_key(context);
            hasher.update(id.as_bytes());
            hasher.update(tail);
            u64::from_le_bytes(hasher.finalize().as_bytes()[..8].try_into().unwrap())
        };
        let peer = b"some peer".to_vec();
        assert_eq!(
            Placement::peer_score(&id, &peer),
            expect(PEER_CONTEXT, &peer)
        );
        assert_eq!(
            Placement::index_score(&id, 7),
            expect(INDEX_CONTEXT, &7u16.to_le_bytes())
        );
        assert_eq!(
            Placement::pair_score(&id, &peer, 7),
            splitmix64(expect(PEER_CONTEXT, &peer) ^ expect(INDEX_CONTEXT, &7u16.to_le_bytes()))
        );
        assert_eq!(score64("other", &id, b"x"), expect("other", b"x"));
    }

    proptest! {
        #[test]
        fn placements_match_the_reference_matching_exactly(
            index_scores in proptest::collection::vec(any::<u64>(), 1..300),
            peer_scores in proptest::collection::vec(any::<u64>(), 1..200),
            tied in any::<bool>(),
        ) {
            // Any scores, and with `tied` only four distinct values each, so that equal pair scores are common.
            let fold = |scores: Vec<u64>| if tied { scores.into_iter().map(|s| s % 4).collect() } else { scores };
            let (index_scores, peer_scores): (Vec<u64>, Vec<u64>) = (fold(index_scores), fold(peer_scores));
            let n = index_scores.len();
            let count = peer_scores.len().min(n);
            let peer_scores = &peer_scores[..count];
            let (base, extra) = (n / count, n % count);
            let room: Vec<usize> = (0..count).map(|rank| base + usize::from(rank < extra)).collect();
            let (mut merged_room, mut sorted_room) = (room.clone(), room);
            prop_assert_eq!(
                candidate_matching(&index_scores, peer_scores, &mut merged_room),
                reference_holder_ranks(&index_scores, peer_scores, &mut sorted_room)
            );
            prop_assert_eq!(merged_room, sorted_room);
        }

        #[test]
        fn balance_rule_holds(blob in any::<[u8; 32]>(), shards in 4u16..200, count in 1usize..300) {
            let peers = peers(count, 1);
            let placement = Placement::new(&BlobId(blob), shards, &peers).unwrap();
            let n = usize::from(shards);
            let used = count.min(n);
            let mut loads: Vec<usize> = placement.holders().iter().map(|p| placement.indexes_of(p).len()).collect();
            loads.sort_unstable();
            prop_assert_eq!(loads.iter().sum::<usize>(), n);
            prop_assert_eq!(loads.len(), used);
            prop_assert!(loads.iter().all(|&l| l == n / used || l == n.div_ceil(used)));
            if count >= n {
                prop_assert!(loads.iter().all(|&l| l == 1), "distinct holders");
            }
        }

        #[test]
        fn placement_is_a_function_of_the_peer_set(blob in any::<[u8; 32]>(), shards in 4u16..100, count in 1usize..100) {
            let peers = peers(count, 2);
            let mut shuffled = peers.clone();
            shuffled.reverse();
            shuffled.extend(peers.iter().take(3).cloned());
            prop_assert_eq!(Placement::new(&BlobId(blob), shards, &peers), Placement::new(&BlobId(blob), shards, &shuffled));
        }
    }

    #[test]
    fn a_recorded_placement_round_trips() {
        let placement = Placement::new(&BlobId([9; 32]), 10, &peers(4, 3)).unwrap();
        let again = Placement::from_holders(placement.holder_list()).unwrap();
        assert_eq!(again, placement);
        assert!(Placement::from_holders(Vec::new()).is_none());
    }

    /// Moves on one leave or one join against the ideal (the slivers the leaving peer held, or the joining
    /// peer's fair share). Prints the averages; asserts a loose bound so a regression to "reshuffle
    /// everything" fails. Run with `--nocapture` to see the figures.
    #[test]
    fn joins_and_leaves_move_few_slivers() {
        for (shards, count) in [
            (12u16, 12usize),
            (12, 20),
            (100, 100),
            (100, 30),
            (300, 300),
        ] {
            let (mut moved, mut ideal) = (0usize, 0usize);
            let trials = if shards >= 300 { 10u8 } else { 40 };
            for t in 0..trials {
                let id = BlobId([t; 32]);
                let before_peers = peers(count, 5);
                let before = Placement::new(&id, shards, &before_peers).unwrap();
                // Leave: the peer holding sliver 0 goes.
                let gone = before.holder(0).unwrap().clone();
                let after_peers: Vec<PeerKey> = before_peers
                    .iter()
                    .filter(|p| **p != gone)
                    .cloned()
                    .collect();
                let after = Placement::new(&id, shards, &after_peers).unwrap();
                moved += before.moves(&after);
                ideal += before.indexes_of(&gone).len();
                // Join: one new peer arrives.
                let mut joined = before_peers.clone();
                joined.push(vec![9, 9, 9, 9]);
                let after = Placement::new(&id, shards, &joined).unwrap();
                moved += before.moves(&after);
                ideal += after.indexes_of(&[9, 9, 9, 9]).len();
            }
            let ratio = moved as f64 / ideal.max(1) as f64;
            println!(
                "n={shards} peers={count}: {moved} moves for an ideal of {ideal} ({ratio:.2}x)"
            );
            assert!(moved >= ideal);
            assert!(
                ratio < 0.5 * f64::from(shards),
                "placement reshuffles: {ratio:.1}x the ideal"
            );
        }
    }

    #[test]
    fn no_peers_no_placement() {
        assert!(Placement::new(&BlobId([0; 32]), 12, &[]).is_none());
    }
}
