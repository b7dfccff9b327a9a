//! Holder lists: which list a holder keeps for a blob, whatever brought it (a store request from a writer,
//! repairer or leaving holder, or a gossiped repair announcement), and the shape every list must have.
//!
//! A holder keeps one list per blob with its epoch and the peer that made it (docs/protocol.md §13). An offered
//! list first passes [`accept`] (may this sender change the list at all?), then [`supersedes`] against the list
//! held (is it newer?). Both node and simulator apply these rules; the node's store and gossip paths call
//! [`accept`] with what arrived and do what it answers. This module decides; it does not store, verify slivers or
//! know peers beyond their bytes.

/// A holder list as offered or held: the holder of each sliver index, its epoch, and the peer that made it (empty
/// for the writer's list at epoch 0).
#[derive(Debug)]
pub struct List<'a, P> {
    /// The holder of each sliver index, in index order.
    pub holders: &'a [P],
    /// 0 for the writer's list, one more for each repair or hand-off.
    pub epoch: u64,
    /// The peer that made the list.
    pub repairer: &'a [u8],
}

// By hand: derived, these would ask for `P: Copy`, and a list only borrows its peers.
impl<P> Clone for List<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for List<'_, P> {}

// By hand: epoch and repairer first, and the holders (n peers) only when those match and the two do not borrow
// the same peers. Weighing hundreds of answers against each other ([`caught_up`], [`reunite`]) compares lists
// often.
impl<P: PartialEq> PartialEq for List<'_, P> {
    fn eq(&self, other: &Self) -> bool {
        self.epoch == other.epoch
            && self.repairer == other.repairer
            && (std::ptr::eq(self.holders, other.holders) || self.holders == other.holders)
    }
}

impl<P: Eq> Eq for List<'_, P> {}

/// How an offered list arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// In a store request, beside slivers (from the writer, a repairer, or a holder handing off).
    StoreRequest,
    /// In a gossiped repair announcement.
    Announcement,
}

/// What to do with an offered list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Keep it if it [`supersedes`] the list held (or nothing is held).
    Offered,
    /// Keep its holders as a provisional list (epoch 0, no repairer), which any repaired list supersedes: a new
    /// holder receiving a hand-off from the old holder, not from the list's repairer.
    Provisional,
    /// Keep the list held; a store request's slivers are still stored (they verify on their own).
    Held,
    /// Nothing to do: an announcement about a blob this peer does not hold.
    Ignore,
    /// Keep the list held for now and ask the blob's holders ([`caught_up`]): an announcement from a holder whose
    /// epoch is more than [`MAX_EPOCH_STEP`] ahead. Taken from one peer, such a jump could freeze the blob's
    /// epochs at the largest value; a peer that really missed several announcements catches up this way.
    CatchUp,
}

/// Why a list is refused outright.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolderListError {
    /// The list does not name one holder per sliver index.
    #[error("holder list has {got} entries for {shards} slivers")]
    WrongLength {
        /// Entries in the list.
        got: usize,
        /// Sliver indexes of the blob.
        shards: u16,
    },
    /// An entry is not a peer ID.
    #[error("holder list entry {0} is not a peer ID")]
    NotAPeer(usize),
    /// An announcement whose list was made by someone other than the peer that sent it.
    #[error("announcement not sent by the repairer it names")]
    NotFromRepairer,
    /// A list made by a peer that holds no sliver in the list held: a stranger cannot rewrite where slivers live.
    #[error("holder list made by a peer that holds no sliver of the blob")]
    RepairerHoldsNothing,
    /// A repaired list takes a sliver index from a holder other than its maker without proof that the holder
    /// departed ([`evidenced`]).
    #[error("holder list takes sliver index {index} from a holder not proven gone")]
    UnprovenMove {
        /// The first such index.
        index: usize,
    },
}

/// The digest of a holder list, which a peer answers instead of the list when asked for its digest alone
/// (`MetadataRequest.list_digest`): BLAKE3 over [`LIST_DIGEST_CONTEXT`], the epoch (8 bytes, little-endian),
/// then the repairer and each holder in index order, each preceded by its length (4 bytes, little-endian), after
/// the number of holders (4 bytes, little-endian). Two lists have one digest only if holders, epoch and repairer
/// all match, so comparing answers by digest compares the lists; the asker fetches one whole list per digest
/// newer than its own and checks it against the digest. Answers then cost about 100 bytes instead of 40 per
/// holder named (docs/protocol.md §13, "List digests").
pub fn digest<P: AsRef<[u8]>>(list: &List<'_, P>) -> [u8; 32] {
    let length = |len: usize| u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    let mut hasher = blake3::Hasher::new();
    hasher.update(LIST_DIGEST_CONTEXT);
    hasher.update(&list.epoch.to_le_bytes());
    hasher.update(&length(list.repairer.len()));
    hasher.update(list.repairer);
    hasher.update(&length(list.holders.len()));
    for holder in list.holders {
        let holder = holder.as_ref();
        hasher.update(&length(holder.len()));
        hasher.update(holder);
    }
    *hasher.finalize().as_bytes()
}

/// What a list digest ([`digest`]) starts with, so it is never mistaken for another floe hash.
pub const LIST_DIGEST_CONTEXT: &[u8] = b"floe holder list digest v1";

/// Checks a list's shape: one entry per sliver index, each a peer ID by `is_peer`.
pub fn check<P: AsRef<[u8]>>(
    holders: &[P],
    shards: u16,
    is_peer: impl Fn(&[u8]) -> bool,
) -> Result<(), HolderListError> {
    if holders.len() != usize::from(shards) {
        return Err(HolderListError::WrongLength {
            got: holders.len(),
            shards,
        });
    }
    match holders.iter().position(|h| !is_peer(h.as_ref())) {
        Some(index) => Err(HolderListError::NotAPeer(index)),
        None => Ok(()),
    }
}

/// Most a repaired list offered in a store request may move the epoch on: a repair makes epoch + 1 and a revert
/// of a failed repair + 2. Without a bound one holder could jump to the largest epoch and freeze the list.
pub const MAX_EPOCH_STEP: u64 = 2;

/// Whether `offered`, arriving `via` from the authenticated peer `sender`, may replace `held` (the list this peer
/// keeps, if any). The one rule for every path:
///
/// - A repaired list (epoch > 0) counts only when it comes from the peer that made it, and that peer holds a
///   sliver in the list held: anyone can obtain a sliver, so otherwise any peer could reassign every index to
///   itself.
/// - In a store request the epoch may move on by at most [`MAX_EPOCH_STEP`]; a list that fails either test is
///   not adopted, but the slivers it came with are kept ([`Acceptance::Held`]). A peer holding no list yet keeps
///   a repaired list that did not come from its repairer as [`Acceptance::Provisional`]: a forged one gains
///   nothing there that a forged writer's list could not.
/// - An announcement that fails the test is refused; one about an unknown blob is ignored. One more than
///   [`MAX_EPOCH_STEP`] ahead of the held list is not taken from its sender alone: [`Acceptance::CatchUp`]
///   says to ask the holders and adopt what [`caught_up`] finds.
pub fn accept<P: AsRef<[u8]> + PartialEq<[u8]>>(
    offered: &List<'_, P>,
    sender: &[u8],
    held: Option<&List<'_, P>>,
    via: Via,
) -> Result<Acceptance, HolderListError> {
    let from_its_repairer = offered.repairer == sender;
    let repairer_holds = |held: &List<'_, P>| held.holders.iter().any(|h| *h == *offered.repairer);
    match via {
        Via::Announcement => {
            if !from_its_repairer {
                return Err(HolderListError::NotFromRepairer);
            }
            let Some(held) = held else {
                return Ok(Acceptance::Ignore);
            };
            if !repairer_holds(held) {
                Err(HolderListError::RepairerHoldsNothing)
            } else if offered.epoch > held.epoch.saturating_add(MAX_EPOCH_STEP) {
                Ok(Acceptance::CatchUp)
            } else {
                Ok(Acceptance::Offered)
            }
        }
        Via::StoreRequest => Ok(match held {
            _ if offered.epoch == 0 => Acceptance::Offered,
            Some(held)
                if from_its_repairer
                    && repairer_holds(held)
                    && offered.epoch <= held.epoch.saturating_add(MAX_EPOCH_STEP) =>
            {
                Acceptance::Offered
            }
            Some(_) => Acceptance::Held,
            None if from_its_repairer => Acceptance::Offered,
            None => Acceptance::Provisional,
        }),
    }
}

/// How many answers must carry the same list before a peer adopts it from answers: two, so that no single peer
/// can make a peer take a list it made up, or one so far ahead that the blob's epochs would freeze. Both ways of
/// adopting from answers ([`caught_up`], [`reunite`]) also ask that the answering peers stand for k sliver
/// indexes between them.
pub const CATCH_UP_QUORUM: usize = 2;

/// Holders a peer asks first for their list when it catches up with a blob's ([`caught_up`]): four. If none of
/// them holds a newer list there is nothing to catch up with; if one does, the other live holders are asked
/// too, since a catch-up needs holders of k indexes to agree.
pub const CATCH_UP_ASKED: usize = 4;

/// Peers asked per round after the first four, until the answers decide: holders in a catch-up ([`caught_up`])
/// and former holders in a reunion ([`reunite`]). A large list (n = 1000, k = 334) then costs about k answers
/// rather than n.
pub const CATCH_UP_ROUND: usize = 64;

/// The list a peer catching up adopts from `answers`, each the peer that answered and the list it holds (the
/// caller asks holders of `held`): the newest, by [`supersedes`], that supersedes `held` and that holders of
/// `held` answer identically (holders, epoch and repairer), at least [`CATCH_UP_QUORUM`] of them, holding at
/// least k of `held`'s sliver indexes between them (k = ⌊(n − 1)/3⌋ + 1, the weight that proves a departure in
/// [`crate::departure::quorum`]). A byzantine third of `held` holds at most k − 1 indexes, so at least one
/// supporter is honest and adopted the list itself with its evidence. Each peer's first answer counts; answers
/// from peers `held` does not name count for nothing. `None` when no newer list has that support.
pub fn caught_up<'a, P: Ord>(
    held: &List<'_, P>,
    answers: &[(&'a P, List<'a, P>)],
) -> Option<List<'a, P>> {
    let indexes = indexes_by_holder(held);
    newest_supported(held, answers, |peer| indexes.get(peer).map(Vec::as_slice)).adopt
}

/// How many more holders a catch-up that [`caught_up`] did not decide should ask in its next round: the
/// indexes the best supported newer list in `answers` still lacks (each holder stands for one index at least),
/// at least one and at most [`CATCH_UP_ROUND`]. Asking about as many as are missing, not a whole round, keeps a
/// catch-up near k answers when holders hold one index each.
pub fn catch_up_round<P: Ord>(held: &List<'_, P>, answers: &[(&P, List<'_, P>)]) -> usize {
    let indexes = indexes_by_holder(held);
    let support = newest_supported(held, answers, |peer| indexes.get(peer).map(Vec::as_slice));
    support.shortfall.clamp(1, CATCH_UP_ROUND)
}

/// Each holder of `held` with the sliver indexes it holds there.
fn indexes_by_holder<'h, P: Ord>(
    held: &List<'h, P>,
) -> std::collections::BTreeMap<&'h P, Vec<u16>> {
    let mut indexes: std::collections::BTreeMap<&P, Vec<u16>> = std::collections::BTreeMap::new();
    for (index, holder) in held.holders.iter().enumerate() {
        if let Ok(index) = u16::try_from(index) {
            indexes.entry(holder).or_default().push(index);
        }
    }
    indexes
}

/// How many sliver indexes the peers answering a list of `shards` entries must stand for between them: k.
pub(crate) fn support_needed(shards: usize) -> usize {
    usize::from(crate::encoding::source_shards_for(
        u16::try_from(shards).unwrap_or(crate::encoding::MAX_SHARDS),
    ))
}

/// What answers come to ([`newest_supported`]).
pub(crate) struct Support<'a, P> {
    /// The newest list that supersedes the one held and has the support to be adopted.
    pub(crate) adopt: Option<List<'a, P>>,
    /// Sliver indexes the best supported newer list still lacks (one when it lacks only a second supporter);
    /// 0 when a list is adopted or no answer is newer.
    pub(crate) shortfall: usize,
}

/// The newest list in `answers` that supersedes `held` and that at least [`CATCH_UP_QUORUM`] distinct peers
/// answer identically, peers whose sliver indexes (`indexes_of`; `None`: the peer stands for nothing) cover at
/// least k distinct indexes of `held`'s length between them. Each peer's first answer counts.
pub(crate) fn newest_supported<'a, 'i, P: Ord>(
    held: &List<'_, P>,
    answers: &[(&'a P, List<'a, P>)],
    indexes_of: impl Fn(&P) -> Option<&'i [u16]>,
) -> Support<'a, P> {
    let need = support_needed(held.holders.len());
    let newer_than = |list: &List<'_, P>, other: &List<'_, P>| {
        supersedes(list.epoch, list.repairer, other.epoch, other.repairer)
    };
    // Each distinct newer list with its supporters' indexes, in the order answers first carry it.
    let mut seen = std::collections::BTreeSet::new();
    let mut candidates: Vec<(List<'a, P>, usize, std::collections::BTreeSet<u16>)> = Vec::new();
    for (from, list) in answers {
        if !seen.insert(*from) || !newer_than(list, held) {
            continue;
        }
        let Some(indexes) = indexes_of(from) else {
            continue;
        };
        let at = match candidates.iter().position(|(c, _, _)| c == list) {
            Some(at) => at,
            None => {
                candidates.push((*list, 0, std::collections::BTreeSet::new()));
                candidates.len() - 1
            }
        };
        if let Some((_, supporters, covered)) = candidates.get_mut(at) {
            *supporters += 1;
            // Only indexes the list has: a damaged former-holder entry cannot weigh more than the list.
            let shards = held.holders.len();
            covered.extend(indexes.iter().copied().filter(|&i| usize::from(i) < shards));
        }
    }
    let mut best: Option<List<'a, P>> = None;
    let mut shortfall = 0usize;
    for (candidate, supporters, covered) in &candidates {
        let lacking = need
            .saturating_sub(covered.len())
            .max(usize::from(*supporters < CATCH_UP_QUORUM));
        if lacking > 0 {
            shortfall = if shortfall == 0 {
                lacking
            } else {
                shortfall.min(lacking)
            };
        } else if best.as_ref().is_none_or(|b| newer_than(candidate, b)) {
            best = Some(*candidate);
        }
    }
    Support {
        adopt: best,
        shortfall: if best.is_some() { 0 } else { shortfall },
    }
}

mod reunion;
pub use reunion::{
    FORMER_INDEXES_PER_SLIVER, FormerHolder, Reunion, former_after, reopens_reunion, reunite,
};

/// Whether a list (`epoch`, made by `repairer`) replaces the one held (`current_epoch`, `current_repairer`): a
/// higher epoch wins, and at equal epochs the lower repairer's bytes win, so any two peers that have seen the
/// same lists keep the same one.
pub fn supersedes(
    epoch: u64,
    repairer: &[u8],
    current_epoch: u64,
    current_repairer: &[u8],
) -> bool {
    epoch > current_epoch || (epoch == current_epoch && repairer < current_repairer)
}

/// Whether `offered` may take the sliver indexes it takes from `held`'s holders: each index that changes holder
/// was held by the list's maker (a holder gives away its own slivers, handing off or leaving) or by a peer in
/// `proven`, the peers the list's departure evidence proves gone against `held` ([`crate::departure::proven`]).
/// A live, answering holder therefore keeps its indexes unless holders of k indexes, one of them at least
/// honest, found it gone: a byzantine third of the holders cannot take an index from an honest one. Lists of
/// another length are refused as [`HolderListError::WrongLength`].
pub fn evidenced<P: Ord + PartialEq<[u8]>>(
    held: &List<'_, P>,
    offered: &List<'_, P>,
    proven: &std::collections::BTreeSet<P>,
) -> Result<(), HolderListError> {
    if held.holders.len() != offered.holders.len() {
        return Err(HolderListError::WrongLength {
            got: offered.holders.len(),
            shards: u16::try_from(held.holders.len()).unwrap_or(u16::MAX),
        });
    }
    let unproven = held
        .holders
        .iter()
        .zip(offered.holders)
        .position(|(was, now)| was != now && *was != *offered.repairer && !proven.contains(was));
    match unproven {
        Some(index) => Err(HolderListError::UnprovenMove { index }),
        None => Ok(()),
    }
}

/// The list a repair by `repairer` may announce when its plan (`planned`, from `held`) meets the evidence it
/// gathered: each move off a holder neither `repairer` nor in `proven` is undone, so the holder keeps the index
/// until it is proven gone. The result passes [`evidenced`].
pub fn within_evidence<P: Ord + Clone>(
    held: &[P],
    planned: &[P],
    repairer: &P,
    proven: &std::collections::BTreeSet<P>,
) -> Vec<P> {
    held.iter()
        .zip(planned)
        .map(|(was, now)| {
            if was == now || was == repairer || proven.contains(was) {
                now.clone()
            } else {
                was.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) type Peer = Vec<u8>;
    /// A list owned by a test: holders, epoch, repairer.
    pub(super) type Owned = (Vec<Peer>, u64, Vec<u8>);

    pub(super) fn list(holders: &[Peer], epoch: u64, repairer: &[u8]) -> Owned {
        (holders.to_vec(), epoch, repairer.to_vec())
    }

    pub(super) fn view(l: &Owned) -> List<'_, Peer> {
        List {
            holders: &l.0,
            epoch: l.1,
            repairer: &l.2,
        }
    }

    pub(super) fn peers(names: &[u8]) -> Vec<Peer> {
        names.iter().map(|n| vec![*n]).collect()
    }

    #[test]
    fn lists_name_one_peer_per_index() {
        let ok = peers(&[1, 2, 3]);
        assert_eq!(check(&ok, 3, |p| p.len() == 1), Ok(()));
        assert_eq!(
            check(&ok, 4, |p| p.len() == 1),
            Err(HolderListError::WrongLength { got: 3, shards: 4 })
        );
        let bad = vec![vec![1], vec![], vec![3]];
        assert_eq!(
            check(&bad, 3, |p| p.len() == 1),
            Err(HolderListError::NotAPeer(1))
        );
    }

    #[test]
    fn list_digests_differ_with_holders_epoch_or_repairer() {
        let base = list(&peers(&[1, 2, 3]), 4, &[1]);
        let d = digest(&view(&base));
        assert_eq!(d, digest(&view(&base.clone())));
        for other in [
            list(&peers(&[1, 3, 2]), 4, &[1]),
            list(&peers(&[1, 2, 3]), 5, &[1]),
            list(&peers(&[1, 2, 3]), 4, &[2]),
            list(&peers(&[1, 2]), 4, &[1]),
            // Lengths are part of it: moving a byte between repairer and holders changes the digest.
            list(&[vec![1, 2], vec![2], vec![3]], 4, &[]),
        ] {
            assert_ne!(d, digest(&view(&other)), "{other:?}");
        }
    }

    #[test]
    fn store_requests_follow_the_rule() {
        let held = list(&peers(&[1, 2, 3]), 4, &[1]);
        let held = Some(view(&held));
        let by = |holders: &[u8], epoch, repairer: &[u8]| list(&peers(holders), epoch, repairer);
        let cases = [
            // The writer's list (epoch 0) from anyone: up to `supersedes`.
            (by(&[1, 2, 3], 0, &[]), &[9][..], held, Acceptance::Offered),
            // A repair by a holder, sent by it, one epoch on.
            (by(&[2, 2, 3], 5, &[2]), &[2], held, Acceptance::Offered),
            // Two on (a revert), still fine; three on, not.
            (by(&[2, 2, 3], 6, &[2]), &[2], held, Acceptance::Offered),
            (by(&[2, 2, 3], 7, &[2]), &[2], held, Acceptance::Held),
            // Relayed by someone else (a hand-off), or made by a stranger.
            (by(&[2, 2, 3], 5, &[2]), &[3], held, Acceptance::Held),
            (by(&[9, 9, 9], 5, &[9]), &[9], held, Acceptance::Held),
            // No list held yet: from its repairer as offered, else provisional.
            (by(&[2, 2, 3], 5, &[2]), &[2], None, Acceptance::Offered),
            (by(&[2, 2, 3], 5, &[2]), &[3], None, Acceptance::Provisional),
        ];
        for (offered, sender, held, expected) in cases {
            assert_eq!(
                accept(&view(&offered), sender, held.as_ref(), Via::StoreRequest),
                Ok(expected),
                "{offered:?} from {sender:?}"
            );
        }
    }

    #[test]
    fn catching_up_needs_holders_of_k_indexes_to_agree() {
        // n = 7, k = 3: peer 1 holds three indexes, peers 2 to 5 one each.
        let held = list(&peers(&[1, 1, 1, 2, 3, 4, 5]), 4, &[1]);
        let truth = list(&peers(&[1, 1, 1, 2, 3, 4, 6]), 5, &[5]);
        let forged = list(&peers(&[9, 9, 9, 9, 9, 9, 9]), u64::MAX, &[9]);
        let (p1, p2, p3, p4, p9) = (vec![1], vec![2], vec![3], vec![4], vec![9]);
        let adopt = |answers: &[(&Peer, &Owned)]| {
            let views: Vec<(&Peer, List<'_, Peer>)> =
                answers.iter().map(|(p, l)| (*p, view(l))).collect();
            caught_up(&view(&held), &views).map(|l| l.epoch)
        };
        // Two holders of one index each: two answers, but only two indexes' worth; one more is asked.
        assert_eq!(adopt(&[(&p2, &truth), (&p3, &truth)]), None);
        let views = [(&p2, view(&truth)), (&p3, view(&truth))];
        assert_eq!(catch_up_round(&view(&held), &views), 1);
        // A lone holder of three indexes lacks only a second supporter.
        assert_eq!(catch_up_round(&view(&held), &[(&p1, view(&truth))]), 1);
        assert_eq!(catch_up_round(&view(&held), &[(&p4, view(&truth))]), 2);
        assert_eq!(
            adopt(&[(&p2, &truth), (&p3, &truth), (&p4, &truth)]),
            Some(5)
        );
        // A holder of three indexes alone is one answer: not enough, however many indexes it holds.
        assert_eq!(adopt(&[(&p1, &truth), (&p1, &truth)]), None);
        assert_eq!(adopt(&[(&p1, &truth), (&p2, &truth)]), Some(5));
        // Of two lists with the support, the newer; one without it, however new, is passed over.
        let newer = list(&peers(&[1, 1, 1, 2, 3, 6, 6]), 6, &[5]);
        let (p5, p6) = (vec![5], vec![6]);
        assert_eq!(
            adopt(&[
                (&p2, &truth),
                (&p1, &newer),
                (&p3, &truth),
                (&p5, &newer),
                (&p4, &truth),
                (&p9, &forged),
                (&p6, &forged)
            ]),
            Some(6)
        );
        // Answers from peers the held list does not name weigh nothing; a peer's first answer is the one counted.
        assert_eq!(
            adopt(&[
                (&p9, &forged),
                (&p9, &forged),
                (&p2, &forged),
                (&p3, &forged)
            ]),
            None
        );
        assert_eq!(
            adopt(&[(&p2, &held), (&p2, &truth), (&p3, &truth), (&p4, &truth)]),
            None
        );
    }

    #[test]
    fn announcements_follow_the_rule() {
        let held = list(&peers(&[1, 2, 3]), 4, &[1]);
        let offered = list(&peers(&[2, 2, 3]), 5, &[2]);
        let accept_from = |sender: &[u8], held: Option<&List<'_, Peer>>| {
            accept(&view(&offered), sender, held, Via::Announcement)
        };
        assert_eq!(
            accept_from(&[2], Some(&view(&held))),
            Ok(Acceptance::Offered)
        );
        assert_eq!(
            accept_from(&[3], Some(&view(&held))),
            Err(HolderListError::NotFromRepairer)
        );
        assert_eq!(accept_from(&[2], None), Ok(Acceptance::Ignore));
        // More than two epochs ahead: not from one peer alone.
        let far = list(&peers(&[2, 2, 3]), 7, &[2]);
        assert_eq!(
            accept(&view(&far), &[2], Some(&view(&held)), Via::Announcement),
            Ok(Acceptance::CatchUp)
        );
        let near = list(&peers(&[2, 2, 3]), 6, &[2]);
        assert_eq!(
            accept(&view(&near), &[2], Some(&view(&held)), Via::Announcement),
            Ok(Acceptance::Offered)
        );
        let stranger = list(&peers(&[9, 9, 9]), 9, &[9]);
        assert_eq!(
            accept(
                &view(&stranger),
                &[9],
                Some(&view(&held)),
                Via::Announcement
            ),
            Err(HolderListError::RepairerHoldsNothing)
        );
    }

    proptest! {
        /// Whatever arrives, by either path, a peer that holds no sliver in the held list never gets its own
        /// repaired list adopted, and a store request never moves the epoch on by more than the bound.
        #[test]
        fn strangers_never_rewrite_a_held_list(
            held_names in proptest::collection::vec(0u8..8, 1..12),
            offered_names in proptest::collection::vec(0u8..16, 1..12),
            held_epoch in 0u64..1000,
            epoch in 0u64..1010,
            repairer in 0u8..16,
            sender in 0u8..16,
            announcement: bool,
        ) {
            let held = list(&peers(&held_names), held_epoch, &[0]);
            let offered = list(&peers(&offered_names), epoch, &[repairer]);
            let via = if announcement { Via::Announcement } else { Via::StoreRequest };
            let verdict = accept(&view(&offered), &[sender], Some(&view(&held)), via);
            if verdict == Ok(Acceptance::Offered) && epoch > 0 {
                prop_assert!(held_names.contains(&repairer));
                prop_assert_eq!(repairer, sender);
                prop_assert!(epoch <= held_epoch + MAX_EPOCH_STEP);
            }
        }

        /// A byzantine third of the held list's holders (at most k − 1 of its indexes) answering any lists they
        /// like never makes a catch-up adopt one no honest holder holds, and the truth is adopted whenever honest
        /// holders of k indexes or more answer it (two of them at least).
        #[test]
        fn a_byzantine_third_cannot_decide_a_catch_up(
            shards in 4usize..16,
            byzantine_seed in proptest::collection::vec(any::<bool>(), 16),
            current in proptest::collection::vec(any::<bool>(), 16),
            forged in proptest::collection::vec((0u8..4, any::<u64>(), 0u8..64), 16),
            order in any::<u64>(),
        ) {
            // One holder per index, peers 1..=shards; the byzantine ones hold at most k − 1 indexes.
            let names: Vec<u8> = (1..=u8::try_from(shards).unwrap()).collect();
            let k = usize::from(crate::encoding::source_shards_for(u16::try_from(shards).unwrap()));
            let mut byzantine = std::collections::BTreeSet::new();
            for (i, &b) in byzantine_seed.iter().take(shards).enumerate() {
                if b && byzantine.len() < k - 1 {
                    byzantine.insert(names[i]);
                }
            }
            let held = list(&peers(&names), 4, &[names[0]]);
            let mut truth_names = names.clone();
            truth_names[0] = 200;
            let truth = list(&peers(&truth_names), 6, &[names[1]]);
            // Forged lists: a few shapes each, so byzantine answers can agree with each other.
            let forgeries: Vec<Owned> = forged
                .iter()
                .map(|&(shape, epoch, repairer)| list(&peers(&vec![100 + shape; shards]), epoch, &[repairer]))
                .collect();
            let mut answers: Vec<(Peer, Owned)> = names
                .iter()
                .enumerate()
                .map(|(i, &name)| {
                    let answer = if byzantine.contains(&name) {
                        forgeries[i].clone()
                    } else if current[i] {
                        truth.clone()
                    } else {
                        held.clone()
                    };
                    (vec![name], answer)
                })
                .collect();
            // Byzantine peers also answer a second time, and the order of answers varies.
            let repeats: Vec<_> = answers
                .iter()
                .filter(|(from, _)| byzantine.contains(&from[0]))
                .map(|(from, _)| (from.clone(), forgeries[usize::from(from[0]) % 16].clone()))
                .collect();
            answers.extend(repeats);
            let len = answers.len();
            answers.rotate_left(usize::try_from(order % u64::try_from(len).unwrap()).unwrap());
            let views: Vec<(&Peer, List<'_, Peer>)> = answers.iter().map(|(from, l)| (from, view(l))).collect();
            let adopted = caught_up(&view(&held), &views);
            let honest_truth = names
                .iter()
                .enumerate()
                .filter(|(i, name)| !byzantine.contains(*name) && current[*i])
                .count();
            match adopted {
                Some(l) => prop_assert!(l == view(&truth), "adopted {:?}", l),
                None => prop_assert!(honest_truth < k.max(CATCH_UP_QUORUM)),
            }
        }

        /// `supersedes` is a strict order: never both ways, never a list over itself, and transitive.
        #[test]
        fn supersedes_is_a_strict_order(
            a in (0u64..4, proptest::collection::vec(0u8..3, 0..3)),
            b in (0u64..4, proptest::collection::vec(0u8..3, 0..3)),
            c in (0u64..4, proptest::collection::vec(0u8..3, 0..3)),
        ) {
            let s = |x: &(u64, Vec<u8>), y: &(u64, Vec<u8>)| supersedes(x.0, &x.1, y.0, &y.1);
            prop_assert!(!s(&a, &a));
            prop_assert!(!(s(&a, &b) && s(&b, &a)));
            if s(&a, &b) && s(&b, &c) {
                prop_assert!(s(&a, &c));
            }
        }
    }
}
