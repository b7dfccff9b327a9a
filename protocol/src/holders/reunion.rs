//! Former holders and reunions: whom a peer keeps as a blob's former holders when its list changes
//! ([`former_after`]), and what comparing its list with theirs comes to once they are reachable again
//! ([`reunite`]), so that the two sides of a healed partition, each with a list made without the other, end
//! with one (docs/protocol.md §13, "Reunions"). Whom to ask and when is `steward::Reunions`'s; this module only
//! decides, from lists and answers the caller brings.

use std::collections::{BTreeMap, BTreeSet};

use super::{List, newest_supported, supersedes};

/// A peer an earlier list of a blob named and a later one dropped, with the sliver indexes it held in the list
/// that dropped it: what its word weighs in a reunion ([`reunite`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormerHolder<P> {
    /// The peer.
    pub peer: P,
    /// The sliver indexes it held in the last list of this peer's that named it, ascending.
    pub indexes: Vec<u16>,
}

/// Most sliver indexes a blob's former holders stand for in all, per sliver index of its list: two. The newest
/// drop covers at most the list's n indexes; older ones are kept while room is left, so a record stays within
/// a few lists' size whatever churn it has seen.
pub const FORMER_INDEXES_PER_SLIVER: usize = 2;

/// The former holders a peer keeps for a blob once its list `held` (whose former holders were `former`) gives
/// way to `next`: the peers `held` names and `next` does not, each with the indexes it held in `held`, then the
/// earlier former holders `next` does not name, each once, most recent first, while they stand for at most
/// [`FORMER_INDEXES_PER_SLIVER`] · n indexes in all. A holder that a list dropped while it was out of reach (the
/// other side of a partition) may hold a list of its own for the blob: it is asked once it is reachable again
/// ([`reunite`]). Only the peer's own lists feed this, never a peer's say. `next_maker`, the peer that made
/// `next`, is never kept: a holder that gave its own indexes away (handing off, leaving) was not cut off from
/// anyone, and keeping it would let a byzantine holder become a former holder of every peer at will, by
/// handing off, and then have its say in their reunions.
pub fn former_after<P: Ord + Clone>(
    held: &[P],
    former: &[FormerHolder<P>],
    next: &[P],
    next_maker: &P,
) -> Vec<FormerHolder<P>> {
    let mut named: BTreeSet<&P> = next.iter().collect();
    named.insert(next_maker);
    let mut dropped: Vec<FormerHolder<P>> = Vec::new();
    let mut at: BTreeMap<&P, usize> = BTreeMap::new();
    for (index, peer) in held.iter().enumerate() {
        let Ok(index) = u16::try_from(index) else {
            break;
        };
        if named.contains(peer) {
            continue;
        }
        let slot = *at.entry(peer).or_insert_with(|| {
            dropped.push(FormerHolder {
                peer: peer.clone(),
                indexes: Vec::new(),
            });
            dropped.len() - 1
        });
        if let Some(entry) = dropped.get_mut(slot) {
            entry.indexes.push(index);
        }
    }
    let budget = FORMER_INDEXES_PER_SLIVER.saturating_mul(held.len().max(next.len()));
    let mut kept: BTreeSet<P> = BTreeSet::new();
    let mut used = 0usize;
    let mut out = Vec::new();
    let earlier = former.iter().filter(|f| !named.contains(&f.peer));
    for entry in dropped.into_iter().chain(earlier.cloned()) {
        if kept.contains(&entry.peer) {
            continue;
        }
        used = used.saturating_add(entry.indexes.len());
        if used > budget {
            break;
        }
        kept.insert(entry.peer.clone());
        out.push(entry);
    }
    out
}

/// Whether a list refused from its repairer (it holds no sliver in the held list) still says the comparison
/// with the blob's former holders must run again: its repairer is one of them and its list supersedes the one
/// held. The other side of a healed partition may have moved on since its holders last answered; the list is
/// not taken from this one peer, the former holders are asked again ([`reunite`]).
pub fn reopens_reunion<P: PartialEq<[u8]>>(
    offered: &List<'_, P>,
    held: &List<'_, P>,
    former: &[FormerHolder<P>],
) -> bool {
    former.iter().any(|f| f.peer == *offered.repairer)
        && !held.holders.iter().any(|h| *h == *offered.repairer)
        && supersedes(offered.epoch, offered.repairer, held.epoch, held.repairer)
}

/// What comparing the held list with the lists former holders answered comes to ([`reunite`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Reunion<'a, P> {
    /// The list to adopt: the newest that supersedes the one held and that former holders standing for k
    /// indexes answer identically, two of them at least.
    pub adopt: Option<List<'a, P>>,
    /// Some answer is newer than the list held afterwards but has not the support to be adopted: ask more
    /// former holders, or again later (the other holders of that list may not be reachable yet).
    pub unsettled: bool,
    /// How many more former holders to ask in the next round when nothing is adopted: the indexes the best
    /// supported newer list still lacks (each former holder stands for one at least), at least one and at most
    /// [`super::CATCH_UP_ROUND`].
    pub next_round: usize,
}

/// Compares the held list with `answers`, each a former holder (reachable again) and the list it holds for the
/// blob. The two sides of a partition each made lists without the other; once it heals, each side's holders ask
/// the other's, and every peer adopts the same winner: the list [`supersedes`] orders first among those that
/// former holders standing for k sliver indexes answer identically, [`super::CATCH_UP_QUORUM`] of them at least. A
/// former holder stands for the indexes it held when this peer's list dropped it (`former`); answers from
/// other peers stand for nothing, and each peer's first answer counts.
///
/// Why k: a side that repaired held k indexes of the list before the cut (no rebuild starts below k), and the
/// other side's list dropped exactly those holders, so their answers stand for k. A byzantine third holds at
/// most k − 1 indexes of any one list, so former holders that were all byzantine when dropped do not reach k in
/// one drop: agreeing on a forged list, they cannot make a peer take it.
pub fn reunite<'a, P: Ord>(
    held: &List<'_, P>,
    former: &[FormerHolder<P>],
    answers: &[(&'a P, List<'a, P>)],
) -> Reunion<'a, P> {
    let indexes: BTreeMap<&P, &[u16]> = former
        .iter()
        .map(|f| (&f.peer, f.indexes.as_slice()))
        .collect();
    let support = newest_supported(held, answers, |peer| indexes.get(peer).copied());
    let now_held = support.adopt.as_ref().unwrap_or(held);
    let unsettled = answers
        .iter()
        .any(|(_, a)| supersedes(a.epoch, a.repairer, now_held.epoch, now_held.repairer));
    Reunion {
        adopt: support.adopt,
        unsettled,
        next_round: support.shortfall.clamp(1, super::CATCH_UP_ROUND),
    }
}

#[cfg(test)]
mod tests {
    use super::super::CATCH_UP_QUORUM;
    use super::super::tests::{Owned, Peer, list, peers, view};
    use super::*;
    use proptest::prelude::*;

    /// The former holders a list `held` leaves when replaced by one naming none of them, made by peer 255.
    fn dropped_from(held: &[Peer]) -> Vec<FormerHolder<Peer>> {
        former_after(held, &[], &[], &vec![255])
    }

    fn answered<'a>(answers: &'a [(Peer, Owned)]) -> Vec<(&'a Peer, List<'a, Peer>)> {
        answers.iter().map(|(from, l)| (from, view(l))).collect()
    }

    #[test]
    fn former_holders_are_the_dropped_ones_most_recent_first() {
        let entry = |peer: u8, indexes: &[u16]| FormerHolder {
            peer: vec![peer],
            indexes: indexes.to_vec(),
        };
        // Holders 3 and 4 dropped; 9 was dropped earlier; 1 came back, so it is no longer former.
        let after = former_after(
            &peers(&[1, 2, 3, 4]),
            &[entry(9, &[0]), entry(1, &[1])],
            &peers(&[1, 2, 5, 6]),
            &vec![1],
        );
        assert_eq!(after, vec![entry(3, &[2]), entry(4, &[3]), entry(9, &[0])]);
        // A peer holding two indexes is kept once, with both.
        let after = former_after(&peers(&[3, 2, 3]), &[], &peers(&[2, 2, 2]), &vec![2]);
        assert_eq!(after, vec![entry(3, &[0, 2])]);
        // A holder that gave its own indexes away is not a former holder, nor does it stay one; a peer dropped
        // again keeps only its newest indexes.
        let after = former_after(
            &peers(&[3, 4, 2]),
            &[entry(7, &[1]), entry(4, &[0]), entry(3, &[2])],
            &peers(&[2, 2, 2]),
            &vec![4],
        );
        assert_eq!(after, vec![entry(3, &[0]), entry(7, &[1])]);
        // Bounded by twice the list's length in indexes, the newest kept.
        let many: Vec<Peer> = (0..100u8).map(|n| vec![n]).collect();
        let old: Vec<FormerHolder<Peer>> = (100..250u8).map(|n| entry(n, &[0])).collect();
        let after = former_after(&many, &old, &peers(&[0; 100]), &vec![0]);
        assert_eq!(after.len(), 200);
        assert_eq!(after.first(), Some(&entry(1, &[1])));
        assert_eq!(after.last(), Some(&entry(200, &[0])));
    }

    #[test]
    fn a_partition_heals_to_the_list_both_sides_order_first() {
        // n = 4, k = 2. Both sides of a cut repaired the same epoch-4 list without the other side.
        let before = peers(&[1, 2, 3, 4]);
        let side_a = list(&peers(&[1, 1, 2, 2]), 5, &[1]);
        let side_b = list(&peers(&[3, 3, 4, 4]), 5, &[3]);
        let (former_a, former_b) = (
            former_after(&before, &[], &side_a.0, &vec![1]),
            former_after(&before, &[], &side_b.0, &vec![3]),
        );
        let from_b = [(vec![3], side_b.clone()), (vec![4], side_b.clone())];
        let from_a = [(vec![1], side_a.clone()), (vec![2], side_a.clone())];
        let at_a = reunite(&view(&side_a), &former_a, &answered(&from_b));
        let at_b = reunite(&view(&side_b), &former_b, &answered(&from_a));
        // Equal epochs: the lower repairer wins, on both sides.
        assert_eq!(at_a.adopt, None);
        assert!(!at_a.unsettled);
        assert_eq!(at_b.adopt, Some(view(&side_a)));
        assert!(!at_b.unsettled);
        // A later list of the winning side, announced by a former holder, reopens the comparison at the
        // loser's peers; an older one, or one from a peer never a holder, does not.
        let later_b = list(&peers(&[3, 3, 4, 4]), 6, &[3]);
        assert!(reopens_reunion(&view(&later_b), &view(&side_a), &former_a));
        assert!(!reopens_reunion(&view(&side_b), &view(&later_b), &former_a));
        assert!(!reopens_reunion(
            &view(&later_b),
            &view(&side_a),
            &dropped_from(&peers(&[4]))
        ));
        // One former holder answering alone, or the same one twice: nothing adopted yet, ask more.
        for lone in [&from_a[..1], &[from_a[0].clone(), from_a[0].clone()][..]] {
            let alone = reunite(&view(&side_b), &former_b, &answered(lone));
            assert_eq!(alone.adopt, None);
            assert!(alone.unsettled);
        }
    }

    #[test]
    fn former_holders_must_stand_for_k_indexes() {
        // n = 7, k = 3. Peers 1 to 7 held one index each; 1, 2 and 3 were dropped (the other side of a cut).
        let before = peers(&[1, 2, 3, 4, 5, 6, 7]);
        let held = list(&peers(&[8, 8, 8, 4, 5, 6, 7]), 5, &[4]);
        let former = former_after(&before, &[], &held.0, &vec![4]);
        let theirs = list(&peers(&[1, 2, 3, 9, 9, 9, 9]), 5, &[1]);
        let answers = |from: &[u8]| -> Vec<(Peer, Owned)> {
            from.iter().map(|&p| (vec![p], theirs.clone())).collect()
        };
        // Two former holders of one index each stand for two: not enough.
        let two = answers(&[1, 2]);
        let outcome = reunite(&view(&held), &former, &answered(&two));
        assert_eq!((outcome.adopt, outcome.unsettled), (None, true));
        // One index lacking: the next round asks one more.
        assert_eq!(outcome.next_round, 1);
        let one = answers(&[1]);
        assert_eq!(
            reunite(&view(&held), &former, &answered(&one)).next_round,
            2
        );
        let three = answers(&[1, 2, 3]);
        assert_eq!(
            reunite(&view(&held), &former, &answered(&three)).adopt,
            Some(view(&theirs))
        );
        // Indexes beyond the list (a damaged record) stand for nothing: peer 1 claiming 50 and 60 besides its 0
        // still leaves two supporters one index short.
        let mut damaged = former.clone();
        damaged[0].indexes.extend([50, 60]);
        assert_eq!(reunite(&view(&held), &damaged, &answered(&two)).adopt, None);
        // Peers never dropped from this peer's lists stand for nothing, however many of them answer.
        let strangers = answers(&[1, 2, 9, 10, 11]);
        assert_eq!(
            reunite(&view(&held), &former, &answered(&strangers)).adopt,
            None
        );
    }

    proptest! {
        /// Former holders never include a peer of the new list, never repeat, stay within their budget, and
        /// keep every dropped holder of the replaced list with exactly the indexes it held there.
        #[test]
        fn former_holders_stay_few_and_apart_from_the_list(
            held in proptest::collection::vec(0u8..64, 0..40),
            former in proptest::collection::vec((0u8..64, proptest::collection::vec(0u16..40, 1..4)), 0..40),
            next in proptest::collection::vec(0u8..64, 0..40),
            maker in 0u8..64,
        ) {
            let former: Vec<FormerHolder<Peer>> = former
                .into_iter()
                .map(|(peer, indexes)| FormerHolder { peer: vec![peer], indexes })
                .collect();
            let (held, next, maker) = (peers(&held), peers(&next), vec![maker]);
            let after = former_after(&held, &former, &next, &maker);
            let budget = FORMER_INDEXES_PER_SLIVER * held.len().max(next.len());
            prop_assert!(after.iter().map(|f| f.indexes.len()).sum::<usize>() <= budget);
            prop_assert!(after.iter().all(|f| !next.contains(&f.peer) && f.peer != maker));
            let distinct: BTreeSet<&Peer> = after.iter().map(|f| &f.peer).collect();
            prop_assert_eq!(distinct.len(), after.len());
            for (index, peer) in held.iter().enumerate() {
                if !next.contains(peer) && *peer != maker {
                    let entry = after.iter().find(|f| f.peer == *peer);
                    prop_assert!(entry.is_some_and(|f| f.indexes.contains(&u16::try_from(index).unwrap())));
                }
            }
            for entry in &after {
                let in_held: Vec<u16> = held
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p == entry.peer)
                    .map(|(i, _)| u16::try_from(i).unwrap())
                    .collect();
                if !in_held.is_empty() {
                    prop_assert_eq!(&entry.indexes, &in_held);
                }
            }
        }

        /// After a partition each side holds its own list (any epochs, any repairers) and asks its former holders,
        /// the other side: whatever the lists, both sides end with the same one, the one `supersedes` orders
        /// first, and a forged list answered by one former holder among them is never the one adopted.
        #[test]
        fn both_sides_of_a_partition_end_with_one_list(
            epoch_a in 0u64..6, epoch_b in 0u64..6,
            repairer_a in 0u8..3, repairer_b in 3u8..6,
            forged_epoch in 0u64..u64::MAX,
            liar in 0usize..3,
        ) {
            // n = 6, k = 2: peers 0..3 on side A, 3..6 on side B, one index each before the cut.
            let before = peers(&[0, 1, 2, 3, 4, 5]);
            let side_a = list(&peers(&[0, 1, 2, 0, 1, 2]), epoch_a + 1, &[repairer_a]);
            let side_b = list(&peers(&[3, 4, 5, 3, 4, 5]), epoch_b + 1, &[repairer_b]);
            let forged = list(&peers(&[9; 6]), forged_epoch, &[9]);
            let asked = |side: &[u8], truth: &Owned| -> Vec<(Peer, Owned)> {
                side.iter()
                    .enumerate()
                    .map(|(i, &p)| (vec![p], if i == liar { forged.clone() } else { truth.clone() }))
                    .collect()
            };
            let (from_b, from_a) = (asked(&[3, 4, 5], &side_b), asked(&[0, 1, 2], &side_a));
            let former_a = former_after(&before, &[], &side_a.0, &side_a.2);
            let former_b = former_after(&before, &[], &side_b.0, &side_b.2);
            let at_a = reunite(&view(&side_a), &former_a, &answered(&from_b));
            let at_b = reunite(&view(&side_b), &former_b, &answered(&from_a));
            let end_a = at_a.adopt.unwrap_or(view(&side_a));
            let end_b = at_b.adopt.unwrap_or(view(&side_b));
            prop_assert!(end_a == end_b);
            prop_assert!(end_a != view(&forged));
        }

        /// Former holders that were a byzantine third of the list that dropped them (at most k − 1 of its
        /// indexes), answering any lists they like, however often, never make a reunion adopt a list no honest
        /// former holder answered; honest former holders standing for k indexes, two at least, have theirs
        /// adopted.
        #[test]
        fn a_byzantine_third_of_former_holders_cannot_decide_a_reunion(
            shards in 4usize..16,
            byzantine_seed in proptest::collection::vec(any::<bool>(), 16),
            answering in proptest::collection::vec(any::<bool>(), 16),
            forged in proptest::collection::vec((0u8..3, any::<u64>(), 0u8..64), 16),
            order in any::<u64>(),
        ) {
            let names: Vec<u8> = (1..=u8::try_from(shards).unwrap()).collect();
            let k = usize::from(crate::encoding::source_shards_for(u16::try_from(shards).unwrap()));
            let mut byzantine = BTreeSet::new();
            for (i, &b) in byzantine_seed.iter().take(shards).enumerate() {
                if b && byzantine.len() < k - 1 {
                    byzantine.insert(names[i]);
                }
            }
            // This peer's side repaired every index onto peer 200; every earlier holder is a former one.
            let held = list(&peers(&vec![200; shards]), 5, &[200]);
            let former = dropped_from(&peers(&names));
            let truth = list(&peers(&names), 5, &[names[0]]);
            let forgeries: Vec<Owned> = forged
                .iter()
                .map(|&(shape, epoch, repairer)| list(&peers(&vec![100 + shape; shards]), epoch, &[repairer]))
                .collect();
            let mut answers: Vec<(Peer, Owned)> = Vec::new();
            for (i, &name) in names.iter().enumerate() {
                if byzantine.contains(&name) {
                    answers.push((vec![name], forgeries[i].clone()));
                    answers.push((vec![name], forgeries[(i + 1) % 16].clone()));
                } else if answering[i] {
                    answers.push((vec![name], truth.clone()));
                }
            }
            let len = answers.len().max(1);
            answers.rotate_left(usize::try_from(order % u64::try_from(len).unwrap()).unwrap());
            let outcome = reunite(&view(&held), &former, &answered(&answers));
            let honest = names
                .iter()
                .enumerate()
                .filter(|(i, name)| !byzantine.contains(*name) && answering[*i])
                .count();
            match outcome.adopt {
                Some(l) => prop_assert!(l == view(&truth), "adopted {:?}", l),
                None => prop_assert!(honest < k.max(CATCH_UP_QUORUM)),
            }
        }
    }
}
