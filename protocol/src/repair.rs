//! Repair: keep every sliver index of a blob on a live holder.
//!
//! This module owns repair's decisions: which sliver indexes move when holders depart or join ([`plan`]), who
//! coordinates a blob's repair ([`leader`]), which of two competing lists wins ([`supersedes`], from
//! [`crate::holders`]), and the
//! [`Repair`] state machine that rebuilds lost slivers (fetch k verified slivers from the survivors, rebuild only
//! the lost indexes, deliver them with retries). It does not detect departures, decode, verify, gossip or talk to
//! the network: the driver (the node, or the simulator) decides who is gone, turns [`RepairEffect`]s into
//! messages, and feeds back what happened with the current time.
//!
//! The holder list of a blob carries an epoch. A plan makes epoch + 1; every holder adopts the list with the
//! highest epoch (ties: the announcement from the lowest repairer wins), so competing views settle on one list.

use std::collections::BTreeSet;

use crate::blob_id::BlobId;
use crate::placement::{PeerKey, Placement, splitmix64};
use crate::read::{Reach, Read, ReadConfig, ReadEffect};
use crate::write::{Millis, Write, WriteConfig, WriteEffect};

/// One sliver index changing holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move<P = PeerKey> {
    /// The sliver index.
    pub index: u16,
    /// The holder it leaves (gone, leaving, or over its share).
    pub from: P,
    /// The holder it goes to.
    pub to: P,
}

/// What a change of membership does to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan<P = PeerKey> {
    /// The new holder of every sliver index.
    pub holders: Vec<P>,
    /// The indexes that change holder, ascending by index.
    pub moves: Vec<Move<P>>,
}

impl<P: Ord> RepairPlan<P> {
    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// The plan without the moves whose old holder `may_give` refuses: those indexes stay where they are. A
    /// list may take an index only from its maker or a holder proven gone (`holders::evidenced`), so a leader
    /// keeps the moves off gone holders and off itself, and a live holder's share stays with it.
    pub fn restricted(self, held: &[P], may_give: impl Fn(&P) -> bool) -> RepairPlan<P>
    where
        P: Clone,
    {
        let (moves, dropped): (Vec<Move<P>>, Vec<Move<P>>) =
            self.moves.into_iter().partition(|m| may_give(&m.from));
        let mut holders = self.holders;
        for m in dropped {
            if let (Some(slot), Some(was)) = (
                holders.get_mut(usize::from(m.index)),
                held.get(usize::from(m.index)),
            ) {
                *slot = was.clone();
            }
        }
        RepairPlan { holders, moves }
    }

    /// Moves whose old holder is in `gone`: these slivers must be rebuilt (or handed off by a leaving holder).
    pub fn moves_from<'a>(
        &'a self,
        gone: &'a BTreeSet<P>,
    ) -> impl Iterator<Item = &'a Move<P>> + 'a {
        self.moves.iter().filter(move |m| gone.contains(&m.from))
    }
}

/// The peer that coordinates a blob's repair: the holder of the lowest sliver index whose holder is not gone.
/// Every peer with the same holder list and the same view of departures picks the same leader.
/// Generic over the peer type so that the simulator can ask with its integer node ids.
pub fn leader<'a, P: Ord>(holders: &'a [P], gone: &BTreeSet<P>) -> Option<&'a P> {
    holders.iter().find(|h| !gone.contains(*h))
}

/// Which of two holder lists wins; the rule lives with the other holder-list rules.
pub use crate::holders::supersedes;

/// Plans a blob's repair and rebalancing. `holders[i]` holds index i now; `gone` are peers that departed or are
/// leaving; `candidates` are the live peers of the blob's neighbourhood as the caller sees it (at most n of them
/// are used, the best-scored by the blob's placement score, as in [`Placement::new`]).
///
/// Every index held by a gone peer moves to a live peer: the least loaded, ties broken by the placement pair
/// score. Then, while one peer holds more than its share (⌈n/N⌉ of the N live peers, or 1 when N ≥ n) and
/// another holds less than ⌊n/N⌋, the most loaded gives its lowest-scored index to the least loaded: a join
/// takes its share and no more. Holders that are live stay put otherwise, so a departure moves only the
/// departed peer's slivers. Only candidates give or take slivers: a live holder the caller cannot reach now
/// (out of reach but not yet gone) keeps what it holds and is given nothing it could not receive. `None` when
/// slivers must move and no candidate can take them.
///
/// Peers are anything ordered like their bytes (`PeerKey`s in the node); the simulator plans with fixed-size
/// arrays, which compare without a call and cost no allocation.
pub fn plan<P: Ord + Clone + AsRef<[u8]>>(
    blob_id: &BlobId,
    holders: &[P],
    gone: &BTreeSet<P>,
    candidates: &[P],
) -> Option<RepairPlan<P>> {
    let n = holders.len();
    if n == 0 {
        return None;
    }
    // This runs for every blob a departure touches, so the work is kept to what the answer needs: each key is
    // looked up in `gone` once, peers are compared by their position in the key-ordered pool instead of by their
    // bytes, and peer and index scores are hashed only when a decision reads them, at most once each.
    let holder_gone: Vec<bool> = holders.iter().map(|h| gone.contains(h)).collect();
    // The live pool in key order: live holders, then the best-scored candidates up to n peers in all.
    let mut reachable: Vec<&P> = candidates.iter().filter(|c| !gone.contains(*c)).collect();
    reachable.sort_unstable();
    reachable.dedup();
    let mut pool: Vec<LivePeer<'_, P>> = holders
        .iter()
        .zip(&holder_gone)
        .filter(|&(_, &is_gone)| !is_gone)
        .map(|(peer, _)| {
            let mut live = LivePeer::new(peer, None);
            live.moves = reachable.binary_search(&peer).is_ok();
            live
        })
        .collect();
    pool.sort_unstable_by(|a, b| a.peer.cmp(b.peer));
    pool.dedup_by(|a, b| a.peer == b.peer);
    // Candidates rank by their pair score for index u16::MAX (Placement::pair_score), its index half hashed once.
    let rank_index = Placement::index_score(blob_id, u16::MAX);
    let mut extra: Vec<(u64, &P, u64)> = candidates
        .iter()
        .filter(|c| !gone.contains(*c) && pool.binary_search_by(|p| p.peer.cmp(c)).is_err())
        .map(|c| {
            let score = Placement::peer_score(blob_id, c.as_ref());
            (splitmix64(score ^ rank_index), c, score)
        })
        .collect();
    extra.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    extra.dedup_by(|a, b| a.1 == b.1);
    let room = n.saturating_sub(pool.len());
    pool.extend(
        extra
            .into_iter()
            .take(room)
            .map(|(_, peer, score)| LivePeer::new(peer, Some(score))),
    );
    pool.sort_unstable_by(|a, b| a.peer.cmp(b.peer));
    if pool.is_empty() {
        return None;
    }
    let mut live = pool;
    let mut index_scores: Vec<Option<u64>> = vec![None; n];
    // holder_at[i]: the position in `live` of index i's current holder, None for an index held by a gone peer.
    let holder_at: Vec<Option<usize>> = holders
        .iter()
        .zip(&holder_gone)
        .map(|(h, &is_gone)| {
            if is_gone {
                None
            } else {
                live.binary_search_by(|p| p.peer.cmp(h)).ok()
            }
        })
        .collect();
    let mut new_holders = holder_at.clone();
    for &at in new_holders.iter().flatten() {
        live[at].load += 1;
    }
    // Each orphaned index goes to the least loaded peer, ties broken by the highest pair score, then by key (the
    // lowest position: `live` is in key order and has no duplicates).
    for (index, slot) in new_holders.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let least = live.iter().filter(|p| p.moves).map(|p| p.load).min()?;
        let index_score = index_score_at(blob_id, &mut index_scores, index);
        let mut best: Option<(u64, usize)> = None;
        for (at, peer) in live.iter_mut().enumerate() {
            if !peer.moves || peer.load != least {
                continue;
            }
            let pair = splitmix64(peer.score(blob_id) ^ index_score);
            if best.is_none_or(|(top, _)| pair > top) {
                best = Some((pair, at));
            }
        }
        let (_, best) = best?;
        live[best].load += 1;
        *slot = Some(best);
    }
    let mut new_holders: Vec<usize> = new_holders.into_iter().collect::<Option<_>>()?;
    // Rebalance: each move lowers the sum of squared loads, so this ends; at most n moves.
    let (floor, ceil) = (n / live.len(), n.div_ceil(live.len()));
    let movers: Vec<usize> = (0..live.len()).filter(|&at| live[at].moves).collect();
    for _ in 0..n {
        // The most loaded and the least loaded peer that may move slivers, each tie going to the lowest key.
        let Some(&first) = movers.first() else {
            break;
        };
        let (mut most, mut least) = (first, first);
        for &at in &movers[1..] {
            if live[at].load > live[most].load {
                most = at;
            }
            if live[at].load < live[least].load {
                least = at;
            }
        }
        let (most_load, least_load) = (live[most].load, live[least].load);
        if !(most_load > ceil || least_load < floor) || most_load <= least_load + 1 {
            break;
        }
        // The donor gives the index that scores lowest for it and highest for the receiver (ties: the lowest).
        let (most_score, least_score) = (live[most].score(blob_id), live[least].score(blob_id));
        let mut pick: Option<(i128, usize)> = None;
        for (index, &holder) in new_holders.iter().enumerate() {
            if holder != most {
                continue;
            }
            let index_score = index_score_at(blob_id, &mut index_scores, index);
            let gain = i128::from(splitmix64(least_score ^ index_score))
                - i128::from(splitmix64(most_score ^ index_score));
            if pick.is_none_or(|(top, _)| gain > top) {
                pick = Some((gain, index));
            }
        }
        let Some((_, index)) = pick else {
            break;
        };
        new_holders[index] = least;
        live[most].load -= 1;
        live[least].load += 1;
    }
    // An index moves when its holder was gone (a gone peer is never in `live`) or its position changed.
    let moves = holders
        .iter()
        .zip(&holder_at)
        .zip(&new_holders)
        .enumerate()
        .filter(|&(_, ((_, &was), &now))| was != Some(now))
        .filter_map(|(index, ((old, _), &now))| {
            Some(Move {
                index: u16::try_from(index).ok()?,
                from: old.clone(),
                to: live[now].peer.clone(),
            })
        })
        .collect();
    let new_holders: Vec<P> = new_holders
        .into_iter()
        .map(|at| live[at].peer.clone())
        .collect();
    Some(RepairPlan {
        holders: new_holders,
        moves,
    })
}

/// A live peer while a repair is planned.
struct LivePeer<'a, P> {
    peer: &'a P,
    /// Sliver indexes it holds in the plan so far.
    load: usize,
    /// Its placement score for the blob ([`Placement::peer_score`]), once something needed it.
    score: Option<u64>,
    /// Among the candidates (reachable now): it may take slivers, and give them up in a rebalance.
    moves: bool,
}

impl<'a, P: AsRef<[u8]>> LivePeer<'a, P> {
    fn new(peer: &'a P, score: Option<u64>) -> Self {
        LivePeer {
            peer,
            load: 0,
            score,
            moves: true,
        }
    }

    fn score(&mut self, blob_id: &BlobId) -> u64 {
        *self
            .score
            .get_or_insert_with(|| Placement::peer_score(blob_id, self.peer.as_ref()))
    }
}

/// Index `index`'s placement score for the blob ([`Placement::index_score`]), hashed the first time it is needed.
fn index_score_at(blob_id: &BlobId, scores: &mut [Option<u64>], index: usize) -> u64 {
    let hash = || Placement::index_score(blob_id, u16::try_from(index).unwrap_or(u16::MAX));
    match scores.get_mut(index) {
        Some(slot) => *slot.get_or_insert_with(hash),
        None => hash(),
    }
}

/// Whether a blob whose `lost` sliver indexes (of `n`) sit on gone holders is repaired now. `min_lost` is the
/// lazy-repair threshold: 1 repairs every loss at once (the default); more waits until that many indexes are
/// lost and rebuilds them in one pass, one read of k slivers for all of them. The threshold is capped at half the
/// losses the blob tolerates (n − k), so however lazy the setting, a repair starts while half that margin is left.
pub fn repair_due(n: u16, lost: usize, min_lost: u16) -> bool {
    let tolerance = n.saturating_sub(crate::encoding::source_shards_for(n));
    let cap = (tolerance / 2).max(1);
    lost >= usize::from(min_lost.clamp(1, cap))
}

/// How a repair fetches: exactly k slivers at first (no margin, so traffic stays at the blob size), a hedge
/// after 2 s, a request counted failed after 15 s. Repairs are not latency-critical; their bytes are the cost.
pub fn repair_read_config() -> ReadConfig {
    ReadConfig {
        soft_timeout: 2_000,
        hard_timeout: 15_000,
        margin: false,
        systematic_grace: 0,
    }
}

/// What the driver must do for a [`Repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairEffect {
    /// Ask `peer` for sliver `index` (every segment); report with [`Repair::on_fetched`].
    Fetch {
        /// A surviving holder.
        peer: PeerKey,
        /// The sliver index.
        index: u16,
    },
    /// Call [`Repair::on_timer`] at or after this time.
    SetTimer(Millis),
    /// Decode from the verified slivers `sources` (k of them), re-encode, and keep only the slivers `targets`;
    /// then call [`Repair::on_rebuilt`] (or [`Repair::on_rebuild_failed`] when the blob proved inconsistent).
    Rebuild {
        /// Verified indexes to decode from, ascending.
        sources: Vec<u16>,
        /// Indexes to rebuild, ascending.
        targets: Vec<u16>,
    },
    /// Send rebuilt sliver `index` to its new holder; report the receipt or failure with this attempt.
    Send {
        /// The new holder.
        peer: PeerKey,
        /// The sliver index.
        index: u16,
        /// Which attempt, from 1.
        attempt: u32,
    },
    /// Every rebuilt sliver is stored or out of attempts; nothing more will happen.
    Finished {
        /// Slivers stored by their new holders.
        delivered: usize,
        /// Slivers whose delivery ran out of attempts.
        failed: usize,
    },
    /// Fewer than k valid slivers could be fetched; nothing was rebuilt.
    Failed {
        /// Valid slivers found.
        have: usize,
        /// k.
        need: usize,
    },
}

#[derive(Debug, Clone)]
enum Phase {
    Fetching(Read),
    Rebuilding,
    Delivering(Write),
    Over,
}

/// One blob's rebuild of lost slivers, run by the blob's repair [`leader`].
#[derive(Debug, Clone)]
pub struct Repair {
    blob_id: BlobId,
    holders: Vec<PeerKey>,
    targets: BTreeSet<u16>,
    write_config: WriteConfig,
    phase: Phase,
}

impl Repair {
    /// Starts rebuilding `targets` (indexes whose holder is gone) of a blob with `source_shards` = k. `holders`
    /// is the new holder list (the plan's); `sources` are the surviving `(index, holder)` pairs to fetch from;
    /// `have` are indexes the repairer holds itself. `reach` orders the sources as in a read.
    #[allow(clippy::too_many_arguments)]
    pub fn start<R: Into<Reach>>(
        blob_id: BlobId,
        source_shards: u16,
        holders: Vec<PeerKey>,
        targets: BTreeSet<u16>,
        sources: Vec<(u16, PeerKey)>,
        have: &BTreeSet<u16>,
        reach: impl Fn(&[u8]) -> R,
        read_config: ReadConfig,
        write_config: WriteConfig,
        now: Millis,
    ) -> (Self, Vec<RepairEffect>) {
        let sources: Vec<(u16, PeerKey)> = sources
            .into_iter()
            .filter(|(i, _)| !targets.contains(i))
            .collect();
        let (read, effects) =
            Read::start_from(sources, have, source_shards, reach, read_config, now);
        let mut repair = Self {
            blob_id,
            holders,
            targets,
            write_config,
            phase: Phase::Fetching(read),
        };
        let effects = repair.map_read(effects);
        (repair, effects)
    }

    /// The indexes being rebuilt.
    pub fn targets(&self) -> &BTreeSet<u16> {
        &self.targets
    }

    /// The blob.
    pub fn blob_id(&self) -> &BlobId {
        &self.blob_id
    }

    /// Whether nothing more will happen.
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    fn map_read(&mut self, effects: Vec<ReadEffect>) -> Vec<RepairEffect> {
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                ReadEffect::Send { peer, index } => out.push(RepairEffect::Fetch { peer, index }),
                ReadEffect::SetTimer(at) => out.push(RepairEffect::SetTimer(at)),
                ReadEffect::Ready(sources) => {
                    self.phase = Phase::Rebuilding;
                    out.push(RepairEffect::Rebuild {
                        sources,
                        targets: self.targets.iter().copied().collect(),
                    });
                }
                ReadEffect::Failed { have, need } => {
                    self.phase = Phase::Over;
                    out.push(RepairEffect::Failed { have, need });
                }
            }
        }
        out
    }

    fn map_write(&mut self, effects: Vec<WriteEffect>) -> Vec<RepairEffect> {
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                WriteEffect::Send {
                    peer,
                    index,
                    attempt,
                } => out.push(RepairEffect::Send {
                    peer,
                    index,
                    attempt,
                }),
                WriteEffect::SetTimer(at) => out.push(RepairEffect::SetTimer(at)),
                WriteEffect::Finished => {
                    if let Phase::Delivering(write) = &self.phase {
                        let delivered = write.receipts().len();
                        let failed = self.targets.len().saturating_sub(delivered);
                        out.push(RepairEffect::Finished { delivered, failed });
                    }
                    self.phase = Phase::Over;
                }
                WriteEffect::Certified | WriteEffect::Failed { .. } => {}
            }
        }
        out
    }

    /// The answer for sliver `index` arrived; `valid` says whether it verified against the blob ID.
    pub fn on_fetched(&mut self, index: u16, valid: bool, now: Millis) -> Vec<RepairEffect> {
        match &mut self.phase {
            Phase::Fetching(read) => {
                let effects = read.on_response(index, valid, now);
                self.map_read(effects)
            }
            _ => Vec::new(),
        }
    }

    /// The driver rebuilt the target slivers: deliver them.
    pub fn on_rebuilt(&mut self, now: Millis) -> Vec<RepairEffect> {
        if !matches!(self.phase, Phase::Rebuilding) {
            return Vec::new();
        }
        let Some(placement) = Placement::from_holders(self.holders.clone()) else {
            self.phase = Phase::Over;
            return vec![RepairEffect::Finished {
                delivered: 0,
                failed: self.targets.len(),
            }];
        };
        let (write, effects) = Write::deliver(
            self.blob_id,
            placement,
            &self.targets,
            self.write_config,
            now,
        );
        self.phase = Phase::Delivering(write);
        self.map_write(effects)
    }

    /// The slivers could not be rebuilt (the blob is inconsistent, or a fetched sliver went missing).
    pub fn on_rebuild_failed(&mut self, have: usize, need: usize) -> Vec<RepairEffect> {
        self.phase = Phase::Over;
        vec![RepairEffect::Failed { have, need }]
    }

    /// A valid receipt for a delivered sliver.
    pub fn on_receipt(&mut self, peer: &[u8], index: u16, receipt: Vec<u8>) -> Vec<RepairEffect> {
        match &mut self.phase {
            Phase::Delivering(write) => {
                let effects = write.on_receipt(peer, index, receipt);
                self.map_write(effects)
            }
            _ => Vec::new(),
        }
    }

    /// Delivering `index` failed on `attempt`.
    pub fn on_send_failure(
        &mut self,
        peer: &[u8],
        index: u16,
        attempt: u32,
        now: Millis,
    ) -> Vec<RepairEffect> {
        match &mut self.phase {
            Phase::Delivering(write) => {
                let effects = write.on_failure(peer, index, attempt, now);
                self.map_write(effects)
            }
            _ => Vec::new(),
        }
    }

    /// A timer fired.
    pub fn on_timer(&mut self, now: Millis) -> Vec<RepairEffect> {
        match &mut self.phase {
            Phase::Fetching(read) => {
                let effects = read.on_timer(now);
                self.map_read(effects)
            }
            Phase::Delivering(write) => {
                let effects = write.on_timer(now);
                self.map_write(effects)
            }
            Phase::Rebuilding | Phase::Over => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {

    /// The plan as first written (scores recomputed in every comparison): the reference the faster [`plan`]
    /// must match exactly.
    fn reference_plan(
        blob_id: &BlobId,
        holders: &[PeerKey],
        gone: &BTreeSet<PeerKey>,
        candidates: &[PeerKey],
    ) -> Option<RepairPlan> {
        let n = holders.len();
        if n == 0 {
            return None;
        }
        // The live pool: live holders, then the best-scored candidates up to n peers in all.
        let mut pool: BTreeSet<PeerKey> = holders
            .iter()
            .filter(|h| !gone.contains(*h))
            .cloned()
            .collect();
        let placement_rank = |peer: &PeerKey| Placement::pair_score(blob_id, peer, u16::MAX);
        let mut extra: Vec<&PeerKey> = candidates
            .iter()
            .filter(|c| !gone.contains(*c) && !pool.contains(*c))
            .collect();
        extra.sort_by(|a, b| placement_rank(b).cmp(&placement_rank(a)).then(a.cmp(b)));
        extra.dedup();
        for peer in extra {
            if pool.len() >= n {
                break;
            }
            pool.insert(peer.clone());
        }
        if pool.is_empty() {
            return None;
        }
        let mut load: BTreeMap<PeerKey, usize> = pool.iter().map(|p| (p.clone(), 0)).collect();
        // Only candidates give or take slivers.
        let movers: BTreeSet<PeerKey> = candidates
            .iter()
            .filter(|c| !gone.contains(*c))
            .cloned()
            .collect();
        let mut new_holders: Vec<Option<PeerKey>> = holders
            .iter()
            .map(|h| (!gone.contains(h)).then(|| h.clone()))
            .collect();
        for holder in new_holders.iter().flatten() {
            if let Some(count) = load.get_mut(holder) {
                *count += 1;
            }
        }
        let score = |peer: &PeerKey, index: usize| {
            Placement::pair_score(blob_id, peer, u16::try_from(index).unwrap_or(u16::MAX))
        };
        for (index, slot) in new_holders.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let best = load
                .iter()
                .filter(|(p, _)| movers.contains(*p))
                .min_by(|(pa, la), (pb, lb)| {
                    la.cmp(lb)
                        .then_with(|| score(pb, index).cmp(&score(pa, index)))
                        .then_with(|| pa.cmp(pb))
                })
                .map(|(p, _)| p.clone())?;
            if let Some(count) = load.get_mut(&best) {
                *count += 1;
            }
            *slot = Some(best);
        }
        let mut new_holders: Vec<PeerKey> = new_holders.into_iter().collect::<Option<_>>()?;
        // Rebalance: each move lowers the sum of squared loads, so this ends; at most n moves.
        let live = load.len();
        let (floor, ceil) = (n / live, n.div_ceil(live));
        for _ in 0..n {
            let most = load
                .iter()
                .filter(|(p, _)| movers.contains(*p))
                .max_by(|(pa, la), (pb, lb)| la.cmp(lb).then_with(|| pb.cmp(pa)))
                .map(|(p, l)| (p.clone(), *l));
            let least = load
                .iter()
                .filter(|(p, _)| movers.contains(*p))
                .min_by(|(pa, la), (pb, lb)| la.cmp(lb).then_with(|| pa.cmp(pb)))
                .map(|(p, l)| (p.clone(), *l));
            let (Some((most, most_load)), Some((least, least_load))) = (most, least) else {
                break;
            };
            if !(most_load > ceil || least_load < floor) || most_load <= least_load + 1 {
                break;
            }
            // The donor gives the index that scores lowest for it and highest for the receiver.
            let Some(index) = (0..n).filter(|&i| new_holders[i] == most).max_by(|&a, &b| {
                let gain = |i| i128::from(score(&least, i)) - i128::from(score(&most, i));
                gain(a).cmp(&gain(b)).then(b.cmp(&a))
            }) else {
                break;
            };
            new_holders[index] = least.clone();
            if let Some(count) = load.get_mut(&most) {
                *count -= 1;
            }
            if let Some(count) = load.get_mut(&least) {
                *count += 1;
            }
        }
        let moves = holders
            .iter()
            .zip(&new_holders)
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .filter_map(|(index, (old, new))| {
                Some(Move {
                    index: u16::try_from(index).ok()?,
                    from: old.clone(),
                    to: new.clone(),
                })
            })
            .collect();
        Some(RepairPlan {
            holders: new_holders,
            moves,
        })
    }

    #[test]
    fn lazy_repair_waits_for_its_threshold_but_never_past_half_the_margin() {
        // n = 12, k = 4: 8 losses tolerated, so a threshold caps at 4.
        assert!(repair_due(12, 1, 1));
        assert!(!repair_due(12, 0, 1));
        assert!(!repair_due(12, 2, 3));
        assert!(repair_due(12, 3, 3));
        assert!(!repair_due(12, 3, 100));
        assert!(repair_due(12, 4, 100));
        // 0 means eager, like 1.
        assert!(repair_due(12, 1, 0));
        // n = 1000, k = 334: a threshold of 100 holds; 400 caps at 333.
        assert!(!repair_due(1000, 99, 100) && repair_due(1000, 100, 100));
        assert!(repair_due(1000, 333, 400));
        // The smallest blobs still repair their first loss.
        assert!(repair_due(4, 1, 50));
    }

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn peers(range: std::ops::Range<u8>) -> Vec<PeerKey> {
        range.map(|i| vec![i; 4]).collect()
    }

    fn loads(holders: &[PeerKey]) -> BTreeMap<PeerKey, usize> {
        let mut load = BTreeMap::new();
        for h in holders {
            *load.entry(h.clone()).or_insert(0) += 1;
        }
        load
    }

    #[test]
    fn a_departure_moves_only_the_departed_peers_slivers_to_fresh_peers() {
        let id = BlobId([7; 32]);
        let holders = Placement::new(&id, 12, &peers(0..12))
            .unwrap()
            .holder_list();
        let gone: BTreeSet<PeerKey> = peers(0..4).into_iter().collect();
        let candidates = peers(4..16);
        let plan = plan(&id, &holders, &gone, &candidates).unwrap();
        assert_eq!(plan.moves.len(), 4, "one move per lost sliver");
        for m in &plan.moves {
            assert!(gone.contains(&m.from));
            assert!(
                peers(12..16).contains(&m.to),
                "lost slivers go to idle peers"
            );
        }
        let load = loads(&plan.holders);
        assert!(load.values().all(|&l| l == 1), "distinct holders: {load:?}");
    }

    #[test]
    fn a_holder_out_of_reach_keeps_its_slivers_and_is_given_none() {
        let id = BlobId([5; 32]);
        let holders = Placement::new(&id, 12, &peers(0..12))
            .unwrap()
            .holder_list();
        let gone: BTreeSet<PeerKey> = peers(0..4).into_iter().collect();
        // Holders 10 and 11 are live (within their grace period) but out of reach: not candidates.
        let unreachable = peers(10..12);
        let candidates: Vec<PeerKey> = peers(4..10).into_iter().chain(peers(12..14)).collect();
        let plan = plan(&id, &holders, &gone, &candidates).unwrap();
        assert_eq!(plan.moves.len(), 4, "only the gone peers' slivers move");
        for m in &plan.moves {
            assert!(gone.contains(&m.from));
            assert!(!unreachable.contains(&m.to), "{m:?}");
        }
        for (old, new) in holders.iter().zip(&plan.holders) {
            if unreachable.contains(old) {
                assert_eq!(old, new, "an unreachable holder keeps its index");
            }
        }
        // Nobody to take the slivers: no plan.
        assert_eq!(super::plan(&id, &holders, &gone, &[]), None);
    }

    #[test]
    fn a_small_swarm_shares_lost_slivers_evenly() {
        let id = BlobId([9; 32]);
        let holders = Placement::new(&id, 12, &peers(0..12))
            .unwrap()
            .holder_list();
        let gone: BTreeSet<PeerKey> = peers(0..4).into_iter().collect();
        let plan = plan(&id, &holders, &gone, &peers(4..12)).unwrap();
        assert_eq!(plan.moves.len(), 4);
        let load = loads(&plan.holders);
        assert_eq!(load.len(), 8);
        assert!(load.values().all(|&l| (1..=2).contains(&l)), "{load:?}");
    }

    #[test]
    fn a_join_takes_its_share_from_the_most_loaded() {
        let id = BlobId([1; 32]);
        let holders = Placement::new(&id, 12, &peers(0..6)).unwrap().holder_list();
        let plan = plan(&id, &holders, &BTreeSet::new(), &peers(0..12)).unwrap();
        assert_eq!(plan.moves.len(), 6, "each joiner takes one sliver");
        assert!(loads(&plan.holders).values().all(|&l| l == 1));
        let nothing = super::plan(&id, &plan.holders, &BTreeSet::new(), &peers(0..12)).unwrap();
        assert!(nothing.is_empty(), "a balanced blob stays put");
    }

    #[test]
    fn the_leader_is_the_lowest_live_index_and_announcements_order_totally() {
        let holders = peers(0..4);
        let gone: BTreeSet<PeerKey> = [vec![0u8; 4]].into_iter().collect();
        assert_eq!(leader(&holders, &gone), Some(&vec![1u8; 4]));
        assert!(supersedes(3, b"b", 2, b"a"));
        assert!(supersedes(2, b"a", 2, b"b"));
        assert!(!supersedes(2, b"b", 2, b"a"));
        assert!(!supersedes(2, b"a", 2, b"a"));
    }

    #[test]
    fn repair_fetches_k_rebuilds_the_targets_and_delivers_them() {
        let id = BlobId([5; 32]);
        let old = peers(0..12);
        let gone: BTreeSet<PeerKey> = peers(0..4).into_iter().collect();
        let plan = plan(&id, &old, &gone, &peers(4..16)).unwrap();
        let targets: BTreeSet<u16> = plan.moves.iter().map(|m| m.index).collect();
        let sources: Vec<(u16, PeerKey)> = (4u16..12)
            .map(|i| (i, old[usize::from(i)].clone()))
            .collect();
        let have: BTreeSet<u16> = [4].into_iter().collect();
        let (mut repair, effects) = Repair::start(
            id,
            4,
            plan.holders.clone(),
            targets.clone(),
            sources,
            &have,
            |_| None,
            ReadConfig::default(),
            WriteConfig::default(),
            0,
        );
        let fetches: Vec<u16> = effects
            .iter()
            .filter_map(|e| match e {
                RepairEffect::Fetch { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(fetches.len(), 4, "k - 1 plus the margin: {fetches:?}");
        let (_, no_margin) = Repair::start(
            id,
            4,
            plan.holders.clone(),
            targets.clone(),
            (4u16..12)
                .map(|i| (i, old[usize::from(i)].clone()))
                .collect(),
            &have,
            |_| None,
            repair_read_config(),
            WriteConfig::default(),
            0,
        );
        let fetched = no_margin
            .iter()
            .filter(|e| matches!(e, RepairEffect::Fetch { .. }))
            .count();
        assert_eq!(
            fetched, 3,
            "a repair asks for exactly k - 1 besides its own"
        );
        assert!(!fetches.contains(&4), "its own sliver is not fetched");
        let mut rebuild = None;
        for index in fetches {
            for e in repair.on_fetched(index, true, 5) {
                if let RepairEffect::Rebuild { sources, targets } = e {
                    rebuild = Some((sources, targets));
                }
            }
        }
        let (sources, rebuilt) = rebuild.expect("rebuilds after k valid slivers");
        assert_eq!(sources.len(), 4);
        assert_eq!(rebuilt, targets.iter().copied().collect::<Vec<_>>());
        let sends: Vec<(PeerKey, u16)> = repair
            .on_rebuilt(10)
            .into_iter()
            .filter_map(|e| match e {
                RepairEffect::Send { peer, index, .. } => Some((peer, index)),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), targets.len());
        let mut finished = None;
        for (peer, index) in sends {
            assert_eq!(plan.holders[usize::from(index)], peer);
            for e in repair.on_receipt(&peer, index, vec![1]) {
                if let RepairEffect::Finished { delivered, failed } = e {
                    finished = Some((delivered, failed));
                }
            }
        }
        assert_eq!(finished, Some((targets.len(), 0)));
        assert!(repair.is_over());
    }

    #[test]
    fn repair_fails_cleanly_without_k_sources() {
        let id = BlobId([6; 32]);
        let sources: Vec<(u16, PeerKey)> = vec![(1, vec![1; 4]), (2, vec![2; 4])];
        let (mut repair, _) = Repair::start(
            id,
            4,
            peers(0..12),
            [0].into_iter().collect(),
            sources,
            &BTreeSet::new(),
            |_| None,
            ReadConfig::default(),
            WriteConfig::default(),
            0,
        );
        repair.on_fetched(1, true, 1);
        let effects = repair.on_fetched(2, false, 2);
        assert!(
            effects.contains(&RepairEffect::Failed { have: 1, need: 4 }),
            "{effects:?}"
        );
        assert!(repair.is_over());
    }

    proptest! {
        #[test]
        fn plans_move_only_what_they_must_and_keep_the_balance(
            seed in any::<u8>(), shards in 4u16..40, peer_count in 1u8..30, gone_count in 0u8..20,
            joiners in 0u8..10,
        ) {
            let id = BlobId([seed; 32]);
            let all = peers(0..peer_count);
            let holders = Placement::new(&id, shards, &all).unwrap().holder_list();
            let gone: BTreeSet<PeerKey> = peers(0..gone_count.min(peer_count)).into_iter().collect();
            let candidates = peers(0..peer_count.saturating_add(joiners));
            match plan(&id, &holders, &gone, &candidates) {
                None => prop_assert!(candidates.iter().all(|c| gone.contains(c))),
                Some(plan) => {
                    prop_assert_eq!(plan.holders.len(), holders.len());
                    prop_assert!(plan.holders.iter().all(|h| !gone.contains(h)));
                    let load = loads(&plan.holders);
                    let live = candidates.iter().filter(|c| !gone.contains(*c)).count().min(usize::from(shards));
                    let (floor, ceil) = (usize::from(shards) / live, usize::from(shards).div_ceil(live));
                    prop_assert!(load.values().all(|&l| l <= ceil), "{:?}", load);
                    prop_assert!(load.len() == live || load.values().all(|&l| l >= floor));
                    // Every departed peer's index moves; the rest move only to rebalance.
                    for (index, old) in holders.iter().enumerate() {
                        if gone.contains(old) {
                            prop_assert!(plan.moves.iter().any(|m| usize::from(m.index) == index));
                        }
                    }
                    let again = super::plan(&id, &plan.holders, &gone, &candidates).unwrap();
                    prop_assert!(again.is_empty(), "a plan is stable: {:?}", again.moves);
                }
            }
        }

        #[test]
        fn plans_match_the_reference_rule_exactly(
            seed in any::<[u8; 32]>(), shards in 1u16..60, holder_picks in proptest::collection::vec(0u8..40, 60),
            gone_picks in proptest::collection::btree_set(0u8..40, 0..30),
            candidate_picks in proptest::collection::vec(0u8..60, 0..70),
        ) {
            // Any holder list (repeats, strangers), any gone set, any candidates (duplicates, gone ones).
            let id = BlobId(seed);
            // Keys whose order is decided past the first byte (eight peers share each first byte).
            let key = |p: u8| vec![p / 8, p.wrapping_mul(37), p, 7];
            let holders: Vec<PeerKey> = holder_picks[..usize::from(shards)].iter().map(|&p| key(p)).collect();
            let gone: BTreeSet<PeerKey> = gone_picks.iter().map(|&p| key(p)).collect();
            let candidates: Vec<PeerKey> = candidate_picks.iter().map(|&p| key(p)).collect();
            let planned = plan(&id, &holders, &gone, &candidates);
            prop_assert_eq!(&planned, &reference_plan(&id, &holders, &gone, &candidates));
            // Fixed-size keys with the same bytes (how the simulator plans) give the same plan.
            let array = |key: &PeerKey| -> [u8; 4] { [key[0], key[1], key[2], key[3]] };
            let planned_arrays = plan(
                &id,
                &holders.iter().map(array).collect::<Vec<_>>(),
                &gone.iter().map(array).collect(),
                &candidates.iter().map(array).collect::<Vec<_>>(),
            )
            .map(|p| RepairPlan {
                holders: p.holders.iter().map(|k| k.to_vec()).collect(),
                moves: p
                    .moves
                    .iter()
                    .map(|m| Move { index: m.index, from: m.from.to_vec(), to: m.to.to_vec() })
                    .collect(),
            });
            prop_assert_eq!(planned, planned_arrays);
        }
    }
}
