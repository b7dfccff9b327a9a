//! One scan's decisions for each blob held here, with the state they need between scans: the [`Steward`].
//!
//! A driver scans every `scan_interval` ([`Steward::poll_timeout`]): it opens the scan with
//! [`Steward::begin_scan`], forgets the blobs it no longer holds ([`Steward::retain`]), tells the steward what
//! it knows of each blob it holds ([`BlobAtScan`]: the holder
//! list, the indexes held whole, whether a repair of it runs here, which holders challenges found failing), and
//! acts on the [`BlobDuties`] it gets back: hand-offs, a repair to start, a challenge round to run. The steward
//! decides who is gone (grace counted from when the driver knows a holder went out of reach, else from the first
//! scan that missed it), who leads and deputises, when
//! a blob has settled, when a lead repair is due (the lazy threshold, waiting at most one grace period for
//! holders still within theirs), and when and how often to challenge. Time is an input; the driver keeps the
//! clock, the store, the network and the challenge tally.
//!
//! A driver may also scan a blob on events instead of every interval (the simulator scans a blob when one of
//! its holders departs, at its challenge rounds, and at [`BlobDuties::recheck_at`]): the steward's answers
//! depend only on its inputs and `now`, so a scan skipped while nothing changed decides nothing differently.

use std::collections::{BTreeMap, BTreeSet};

use crate::blob_id::BlobId;
use crate::encoding::source_shards_for;
use crate::repair::{self, RepairPlan};
use crate::write::Millis;

use super::{
    HolderView, Liveness, Losses, OutOfReach, Reunions, Settling, hand_off_indexes, repair_now,
};

/// Blobs a node challenges as their leader per scan by default, so a scan's cost stays bounded.
pub const DEFAULT_CHALLENGES_PER_SCAN: usize = 16;

/// The settings a steward decides by (the node's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StewardConfig {
    /// How often a scan runs.
    pub scan_interval: Millis,
    /// How long a holder is out of reach before its slivers move.
    pub grace: Millis,
    /// How long a blob's list and this node's sliver must stay unchanged before its holders are challenged.
    pub settle: Millis,
    /// The lazy-repair threshold: repair once this many sliver indexes are lost (1 = eager).
    pub min_lost: u16,
    /// How often each blob's holders are challenged; 0 = never.
    pub challenge_interval: Millis,
    /// Blobs this node challenges as their leader per scan, so a scan's cost stays bounded.
    pub challenges_per_scan: usize,
}

/// What the driver knows of one blob held here when it scans it.
#[derive(Debug, Clone, Copy)]
pub struct BlobAtScan<'a, P> {
    /// The blob.
    pub blob_id: BlobId,
    /// Its holder list, by sliver index.
    pub holders: &'a [P],
    /// A fingerprint of the list (epoch and holders): a new list restarts the settle time.
    pub fingerprint: u64,
    /// The sliver indexes held here whole.
    pub held_whole: &'a [u16],
    /// A repair of this blob led by this node is running: it rebuilds from the slivers held here, so they are
    /// not handed off, and no second repair starts.
    pub rebuilding: bool,
    /// A repair of this blob ran or was announced lately: its new holders may still be receiving, so nobody is
    /// challenged yet.
    pub recently_repaired: bool,
    /// Holders gone whatever their connection: failing their challenges, holding a lost sliver of this blob,
    /// announced as leaving, or not a peer at all.
    pub failing: &'a BTreeSet<P>,
    /// Peers earlier lists of the blob named and this one does not, with the indexes each held then
    /// (`holders::former_after`), most recent first: asked for their list once reachable ([`super::Reunions`]).
    pub former: &'a [crate::holders::FormerHolder<P>],
    /// This node's network holds more of the blob's indexes than the per-network cap allows, as the driver
    /// sees the networks (`diversity::crowded`): this holder moves its own indexes over its share.
    pub crowded: bool,
}

/// What a scan decided for one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDuties<P> {
    /// Holders that count as gone.
    pub gone: BTreeSet<P>,
    /// Holders reported gone for the first time (for the driver's log).
    pub newly_gone: Vec<P>,
    /// Sliver indexes held here to hand off to their listed holder.
    pub hand_off: Vec<u16>,
    /// This node leads the blob in its own view (the first of its holders not gone).
    pub leads: bool,
    /// This node is the blob's deputy in its own view (the first of its holders not gone after the leader).
    pub deputises: bool,
    /// Former holders to ask for their list of the blob now (`holders::reunite`); the driver reports with
    /// [`Steward::handle_compared`].
    pub compare: Vec<P>,
    /// Holders this scan reaches again after they were gone, when they hold k of the blob's indexes or more
    /// between them: enough to have rebuilt the blob and made a list without this peer (the other side of a
    /// healed partition that repaired while this side could not). The driver asks the holders for their list,
    /// these first, and adopts what holders of k indexes agree on (`holders::caught_up`). Empty otherwise: fewer
    /// could not have repaired, and could not make a catch-up adopt anything either.
    pub catch_up: Vec<P>,
    /// What else to do.
    pub duty: Duty<P>,
    /// This node leads and a repair of losses is due, but waits for holders still within their grace period.
    pub repair_waits: bool,
    /// When a scan of this blob may next decide differently with nothing else changed: a holder still within
    /// its grace period becomes gone, a repair waiting for such holders stops waiting, a repair that failed may
    /// be tried again, or (a grace period on) a due repair that found no live peer looks again. `None` when only
    /// new input (a departure, a list, a verdict) can change the answer. A driver scanning every interval may
    /// ignore it; one scanning on events scans again then.
    pub recheck_at: Option<Millis>,
}

/// The one further thing a scan asks of this node for a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty<P> {
    /// Nothing.
    Nothing,
    /// Lead this repair: announce the plan's list, rebuild the lost indexes, deliver them.
    Repair(RepairPlan<P>),
    /// Challenge the other live holders, as the blob's leader.
    ChallengeAsLeader,
    /// Challenge the leader, as its deputy.
    ChallengeAsDeputy {
        /// The leader to challenge.
        leader: P,
    },
}

/// The per-node stewardship state machine (see the module documentation).
#[derive(Debug, Clone)]
pub struct Steward<P> {
    config: StewardConfig,
    liveness: Liveness<P>,
    settling: Settling,
    losses: Losses,
    reunions: Reunions<P>,
    last_challenged: BTreeMap<BlobId, Millis>,
    /// Blobs whose last repair led here failed: how many times in a row, and when the next may start.
    failed_repairs: BTreeMap<BlobId, (u32, Millis)>,
    /// When this node last moved its own indexes of each blob as a holder that does not lead it.
    own_moves: BTreeMap<BlobId, Millis>,
    next_scan: Millis,
    challenges_left: usize,
}

impl<P: Ord + Clone + AsRef<[u8]>> Steward<P> {
    /// A steward whose first scan is due at `now`.
    pub fn new(config: StewardConfig, now: Millis) -> Self {
        Self {
            config,
            liveness: Liveness::default(),
            settling: Settling::default(),
            losses: Losses::default(),
            reunions: Reunions::default(),
            last_challenged: BTreeMap::new(),
            failed_repairs: BTreeMap::new(),
            own_moves: BTreeMap::new(),
            next_scan: now,
            challenges_left: config.challenges_per_scan,
        }
    }

    /// The settings.
    pub fn config(&self) -> &StewardConfig {
        &self.config
    }

    /// When the next scan is due.
    pub fn poll_timeout(&self) -> Millis {
        self.next_scan
    }

    /// Opens a scan at `now`: the next one is due a scan interval later (whatever becomes of this one), the
    /// per-scan challenge budget starts again, and peers the last scan did not look at are forgotten.
    pub fn begin_scan(&mut self, now: Millis) {
        self.next_scan = now.saturating_add(self.config.scan_interval.max(1));
        self.challenges_left = self.config.challenges_per_scan;
        self.liveness.begin_scan();
    }

    /// Forgets what is kept about blobs no longer held (`held` says no).
    pub fn retain(&mut self, mut held: impl FnMut(&BlobId) -> bool) {
        self.settling.retain(&mut held);
        self.losses.retain(&mut held);
        self.reunions.retain(&mut held);
        self.last_challenged.retain(|blob_id, _| held(blob_id));
        self.failed_repairs.retain(|blob_id, _| held(blob_id));
        self.own_moves.retain(|blob_id, _| held(blob_id));
    }

    /// Scans one blob at `now` for `me`: who is gone (`out_of_reach` says who is not reachable, and since
    /// when: [`super::out_of_reach_now`] for a driver that only knows who is connected now), what to hand off,
    /// and whether to lead a repair (planned over `candidates`, the live peers of the blob's neighbourhood,
    /// asked for only when this node leads) or run a challenge round.
    pub fn scan_blob(
        &mut self,
        now: Millis,
        me: &P,
        blob: &BlobAtScan<'_, P>,
        out_of_reach: impl Fn(&P) -> OutOfReach,
        candidates: impl FnOnce(&BTreeSet<P>) -> Vec<P>,
    ) -> BlobDuties<P> {
        let config = self.config;
        let view = self.liveness.gone_holders(
            blob.holders,
            me,
            now,
            config.grace,
            &out_of_reach,
            blob.failing,
        );
        let compare =
            self.reunions
                .due(now, blob.blob_id, blob.former, &out_of_reach, config.grace);
        // While the list is compared with former holders it may be about to change: nothing else is done.
        let comparing = !compare.is_empty() || self.reunions.comparing(&blob.blob_id, now);
        let hand_off: Vec<u16> = if comparing {
            Vec::new()
        } else {
            hand_off_indexes(
                blob.holders,
                blob.held_whole,
                me,
                &view.gone,
                blob.rebuilding,
            )
            .collect()
        };
        // Settling matters only to challenges: with them off nothing is kept.
        let settled = config.challenge_interval > 0
            && self.settling.settled(
                blob.blob_id,
                blob.fingerprint,
                !blob.held_whole.is_empty(),
                now,
                config.settle,
            );
        let leader = repair::leader(blob.holders, &view.gone);
        let leads = leader == Some(me);
        let mut deputises = false;
        let mut recheck_at = view.pending_until;
        let mut repair_waits = false;
        let duty = match leader {
            None => Duty::Nothing,
            Some(_) if comparing => Duty::Nothing,
            Some(leader) if leader != me => {
                // The first holder after the leader not gone (`repair::leader` without the leader), found
                // without copying the gone set: most scans are of blobs this node does not lead.
                let deputy = blob
                    .holders
                    .iter()
                    .find(|h| *h != leader && !view.gone.contains(*h))
                    == Some(me);
                deputises = deputy;
                if let Some(plan) = self.own_rebalance(now, me, blob, &view, candidates) {
                    Duty::Repair(plan)
                } else if deputy && settled && quiet(blob) && self.challenge_due(blob.blob_id, now)
                {
                    Duty::ChallengeAsDeputy {
                        leader: leader.clone(),
                    }
                } else {
                    Duty::Nothing
                }
            }
            Some(_) => {
                let lead = self.lead(now, me, blob, &view, settled, candidates);
                repair_waits = lead.waits;
                recheck_at = earliest(recheck_at, lead.recheck_at);
                lead.duty
            }
        };
        let k = usize::from(source_shards_for(
            u16::try_from(blob.holders.len()).unwrap_or(u16::MAX),
        ));
        let catch_up = if view.back_indexes >= k {
            view.back
        } else {
            Vec::new()
        };
        BlobDuties {
            gone: view.gone,
            newly_gone: view.newly_gone,
            hand_off,
            leads,
            deputises,
            compare,
            catch_up,
            duty,
            repair_waits,
            recheck_at,
        }
    }

    /// The leader's duty: repair when one is due now, else challenge when the blob has settled.
    fn lead(
        &mut self,
        now: Millis,
        me: &P,
        blob: &BlobAtScan<'_, P>,
        view: &HolderView<P>,
        settled: bool,
        candidates: impl FnOnce(&BTreeSet<P>) -> Vec<P>,
    ) -> Lead<P> {
        let config = self.config;
        let (gone, lost, pending) = (&view.gone, view.lost, view.pending_until.is_some());
        let losses_for = self.losses.observe(blob.blob_id, lost, now);
        let shards = u16::try_from(blob.holders.len()).unwrap_or(u16::MAX);
        let now_due = repair_now(
            lost,
            shards,
            config.min_lost,
            pending,
            losses_for,
            config.grace,
        );
        let waits = !now_due && lost > 0 && repair::repair_due(shards, lost, config.min_lost);
        // Waiting for pending holders lasts one grace period from the first loss at most.
        let mut recheck_at =
            waits.then(|| now.saturating_add(config.grace.saturating_sub(losses_for)));
        let retry_at = self.retry_wait(&blob.blob_id, now);
        if now_due && !blob.rebuilding {
            recheck_at = earliest(recheck_at, retry_at);
        }
        // With nothing lost the leader only rebalances its own share: not while the other side of a healed
        // partition may still be adopting this list (as a crowded holder waits, `own_rebalance`).
        let rebalance_waits = lost == 0
            && self
                .reunions
                .compared_within(&blob.blob_id, now, config.grace);
        // A rebuild decodes k slivers of the holders not gone: with fewer (this side of a cut holds less than k
        // indexes) every attempt would fail after fetching what there is. A holder back starts a new scan.
        let rebuildable =
            usize::from(shards).saturating_sub(lost) >= usize::from(source_shards_for(shards));
        if !blob.rebuilding && now_due && retry_at.is_none() && !rebalance_waits && rebuildable {
            let planned = repair::plan(&blob.blob_id, blob.holders, gone, &candidates(gone));
            // Only moves a list can carry evidence for (`holders::evidenced`): off gone holders, whose departure
            // the holders' statements prove, and off this node. A live holder's share stays with it.
            let planned = planned
                .map(|p| p.restricted(blob.holders, |from| from == me || gone.contains(from)));
            match planned {
                Some(plan) if !plan.is_empty() => {
                    return Lead {
                        duty: Duty::Repair(plan),
                        recheck_at: None,
                        waits,
                    };
                }
                Some(_) => {}
                // No live peer to move the slivers to: peers may join meanwhile, which is no input to a scan.
                None => recheck_at = Some(now.saturating_add(config.grace.max(1))),
            }
        }
        // A blob whose list just changed is not challenged: its new holders may still be receiving.
        if self.challenges_left > 0
            && settled
            && quiet(blob)
            && self.challenge_due(blob.blob_id, now)
        {
            self.challenges_left -= 1;
            return Lead {
                duty: Duty::ChallengeAsLeader,
                recheck_at,
                waits,
            };
        }
        Lead {
            duty: Duty::Nothing,
            recheck_at,
            waits,
        }
    }

    /// A rebalance of this holder's own indexes, when it is not the leader. A list may take a live holder's
    /// index only when that holder makes it (`holders::evidenced`), so the leader moves only its own share, and
    /// a holder whose network is crowded (more of the blob's indexes than the per-network cap: a side of a
    /// healed partition that rebuilt the other side's indexes) moves its own: a holder of two indexes or more
    /// plans when nobody is gone or pending (the leader's repair comes first), and moves its own indexes over
    /// its share when no holder before it in the list has indexes the plan moves, at most once per grace
    /// period, and not within a grace period after it compared the blob's list with former holders (the other
    /// side of a healed partition is adopting the list meanwhile). So holders move one after another in list
    /// order and their lists do not supersede each other's; and two holders whose views differ (one finds a peer
    /// failing, the other gives it an index) cannot pass an index back and forth faster than that. Without a crowded network a live holder keeps its share (the
    /// newcomer rule's spreading over a growing swarm is the leader's alone), and a holder of one index does
    /// not plan (a plan costs a neighbourhood lookup per blob and scan).
    fn own_rebalance(
        &mut self,
        now: Millis,
        me: &P,
        blob: &BlobAtScan<'_, P>,
        view: &HolderView<P>,
        candidates: impl FnOnce(&BTreeSet<P>) -> Vec<P>,
    ) -> Option<RepairPlan<P>> {
        let held = blob.holders.iter().filter(|h| *h == me).count();
        let moved_lately = self
            .own_moves
            .get(&blob.blob_id)
            .is_some_and(|&at| now < at.saturating_add(self.config.grace));
        if !blob.crowded
            || held < 2
            || moved_lately
            || !view.gone.is_empty()
            || view.pending_until.is_some()
            || blob.rebuilding
            || self.retry_wait(&blob.blob_id, now).is_some()
            || self
                .reunions
                .compared_within(&blob.blob_id, now, self.config.grace)
        {
            return None;
        }
        let plan = repair::plan(
            &blob.blob_id,
            blob.holders,
            &view.gone,
            &candidates(&view.gone),
        )?;
        let first_giver = plan
            .moves
            .iter()
            .filter_map(|m| blob.holders.iter().position(|h| *h == m.from))
            .min()?;
        if blob.holders.get(first_giver) != Some(me) {
            return None;
        }
        let own = plan.restricted(blob.holders, |from| from == me);
        if own.is_empty() {
            return None;
        }
        self.own_moves.insert(blob.blob_id, now);
        Some(own)
    }

    /// Whether the blob's challenge interval has passed since its last round; if so, a round starts now.
    fn challenge_due(&mut self, blob_id: BlobId, now: Millis) -> bool {
        let interval = self.config.challenge_interval;
        if interval == 0 {
            return false;
        }
        let due = self
            .last_challenged
            .get(&blob_id)
            .is_none_or(|&at| now.saturating_sub(at) >= interval);
        if due {
            self.last_challenged.insert(blob_id, now);
        }
        due
    }

    /// Tells the steward how a repair of `blob_id` this node led ended at `now`. After a failure (sources out of
    /// reach, deliveries refused) the next attempt waits a scan interval, doubling with each failure in a row
    /// up to a grace period, so a repair that cannot succeed yet does not fetch k slivers every scan; a success
    /// clears the count.
    pub fn handle_repair_ended(&mut self, blob_id: BlobId, now: Millis, succeeded: bool) {
        if succeeded {
            self.failed_repairs.remove(&blob_id);
            return;
        }
        let failures = self
            .failed_repairs
            .get(&blob_id)
            .map_or(1, |&(failures, _)| failures.saturating_add(1));
        let wait = self
            .config
            .scan_interval
            .max(1)
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(self.config.grace.max(self.config.scan_interval).max(1));
        self.failed_repairs
            .insert(blob_id, (failures, now.saturating_add(wait)));
    }

    /// Tells the steward that the repair its last scan of `blob_id` asked for did not start (the driver runs
    /// as many at once as it can, or heard of another list first): a move of this holder's own indexes is not
    /// held back a grace period for it.
    pub fn handle_repair_not_started(&mut self, blob_id: BlobId) {
        self.own_moves.remove(&blob_id);
    }

    /// When a repair of `blob_id` may start again after failing, if it is still waiting at `now`.
    fn retry_wait(&self, blob_id: &BlobId, now: Millis) -> Option<Millis> {
        self.failed_repairs
            .get(blob_id)
            .map(|&(_, at)| at)
            .filter(|&at| now < at)
    }

    /// Tells the steward how a comparison of `blob_id`'s list with its former holders ([`BlobDuties::compare`])
    /// ended at `now`: see [`Reunions::handle_compared`].
    pub fn handle_compared(
        &mut self,
        now: Millis,
        blob_id: BlobId,
        settled: impl IntoIterator<Item = P>,
        unsettled: bool,
    ) {
        let grace = self.config.grace;
        self.reunions
            .handle_compared(now, blob_id, settled, unsettled, grace);
    }

    /// Whether `peer` has been out of reach for the grace period at `now`, as this node's scans found it: what
    /// it signs when a repair leader asks (`departure::attest`).
    pub fn out_of_reach_past_grace(&self, peer: &P, now: Millis) -> bool {
        self.liveness
            .missing_since(peer)
            .is_some_and(|since| now.saturating_sub(since) >= self.config.grace)
    }

    /// Asks `blob_id`'s former holders again at its next scan ([`Reunions::reopen`]).
    pub fn reopen_reunion(&mut self, blob_id: BlobId) {
        self.reunions.reopen(blob_id);
    }

    /// Holders currently counted missing (for metrics).
    pub fn missing(&self) -> usize {
        self.liveness.missing()
    }
}

/// What the leader's part of a scan decided.
struct Lead<P> {
    duty: Duty<P>,
    /// When to scan again with nothing else changed (see [`BlobDuties::recheck_at`]).
    recheck_at: Option<Millis>,
    /// A repair of losses is due but waits for holders within their grace period.
    waits: bool,
}

/// The earlier of two optional times.
fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Whether no repair of the blob runs or ran lately, so its holders may be challenged.
fn quiet<P>(blob: &BlobAtScan<'_, P>) -> bool {
    !blob.rebuilding && !blob.recently_repaired
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steward::out_of_reach_now;
    use proptest::prelude::*;

    type Peer = Vec<u8>;

    fn peer(i: u8) -> Peer {
        vec![i; 4]
    }

    /// `peers` as former holders, each of the index of its place.
    fn former_of(peers: &[Peer]) -> Vec<crate::holders::FormerHolder<Peer>> {
        (0u16..)
            .zip(peers)
            .map(|(index, peer)| crate::holders::FormerHolder {
                peer: peer.clone(),
                indexes: vec![index],
            })
            .collect()
    }

    fn config() -> StewardConfig {
        StewardConfig {
            scan_interval: 10,
            grace: 100,
            settle: 50,
            min_lost: 1,
            challenge_interval: 200,
            challenges_per_scan: 1,
        }
    }

    /// Six holders 0..6, one index each; this node holds its own index whole.
    struct World {
        holders: Vec<Peer>,
        blob_id: BlobId,
        none: BTreeSet<Peer>,
    }

    impl World {
        fn new() -> Self {
            Self {
                holders: (0..6).map(peer).collect(),
                blob_id: BlobId::from_slice(&[9; 32]).unwrap(),
                none: BTreeSet::new(),
            }
        }

        /// One scan of the blob by `steward` for `me`, holding `held` whole and rebuilding nothing.
        fn scan(
            &self,
            steward: &mut Steward<Peer>,
            now: Millis,
            me: &Peer,
            held: &[u16],
            connected: impl Fn(&Peer) -> bool,
        ) -> BlobDuties<Peer> {
            steward.begin_scan(now);
            steward.scan_blob(
                now,
                me,
                &self.blob(held, false),
                out_of_reach_now(now, connected),
                candidates(&self.holders),
            )
        }

        fn blob<'a>(&'a self, held: &'a [u16], rebuilding: bool) -> BlobAtScan<'a, Peer> {
            BlobAtScan {
                blob_id: self.blob_id,
                holders: &self.holders,
                fingerprint: 1,
                held_whole: held,
                rebuilding,
                recently_repaired: false,
                failing: &self.none,
                former: &[],
                crowded: false,
            }
        }
    }

    /// The live peers of an n-peer neighbourhood: the holders not gone, and as many spares (10, 11, …).
    fn candidates(holders: &[Peer]) -> impl FnOnce(&BTreeSet<Peer>) -> Vec<Peer> + '_ {
        move |gone: &BTreeSet<Peer>| {
            let spares = (10u8..).take(gone.len()).map(peer);
            holders
                .iter()
                .filter(|h| !gone.contains(*h))
                .cloned()
                .chain(spares)
                .collect()
        }
    }

    #[test]
    fn former_holders_back_in_reach_are_asked_before_anything_else_is_done() {
        let world = World::new();
        let me = peer(1);
        let mut steward = Steward::new(config(), 0);
        let former = former_of(&[peer(20), peer(21)]);
        // This node holds index 0 too, which the list gives to peer 0: a hand-off, unless a comparison runs.
        let scan = |steward: &mut Steward<Peer>, now, away: Option<Peer>| {
            steward.begin_scan(now);
            let blob = BlobAtScan {
                former: &former,
                ..world.blob(&[0, 1], false)
            };
            steward.scan_blob(
                now,
                &me,
                &blob,
                out_of_reach_now(now, |p: &Peer| Some(p) != away.as_ref()),
                candidates(&world.holders),
            )
        };
        // Across the cut: only the reachable one is asked, and the hand-off waits for the answer.
        let duties = scan(&mut steward, 0, Some(peer(20)));
        assert_eq!(duties.compare, vec![peer(21)]);
        assert!(duties.hand_off.is_empty());
        assert!(scan(&mut steward, 5, Some(peer(20))).hand_off.is_empty());
        steward.handle_compared(6, world.blob_id, [peer(21)], false);
        let duties = scan(&mut steward, 10, Some(peer(20)));
        assert!(duties.compare.is_empty());
        assert_eq!(duties.hand_off, vec![0]);
        // Back: asked once, and nothing else is done until it answered.
        let duties = scan(&mut steward, 20, None);
        assert_eq!(duties.compare, vec![peer(20)]);
        assert!(duties.hand_off.is_empty());
        steward.handle_compared(21, world.blob_id, [peer(20)], false);
        let duties = scan(&mut steward, 30, None);
        assert!(duties.compare.is_empty());
        assert_eq!(duties.hand_off, vec![0]);
    }

    #[test]
    fn a_leader_with_fewer_than_k_indexes_in_reach_does_not_try_a_rebuild() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        // n = 6, k = 2. Only this node in reach: one index, nothing can be decoded.
        let alone = |p: &Peer| *p == peer(0);
        world.scan(&mut steward, 0, &me, &[0], alone);
        let duties = world.scan(&mut steward, 100, &me, &[0], alone);
        assert_eq!(duties.gone.len(), 5);
        assert!(!matches!(duties.duty, Duty::Repair(_)), "{:?}", duties.duty);
        // Holder 1 back: two indexes, k; the four gone are rebuilt.
        let two = |p: &Peer| *p == peer(0) || *p == peer(1);
        let duties = world.scan(&mut steward, 110, &me, &[0], two);
        let Duty::Repair(plan) = duties.duty else {
            panic!("k indexes in reach: {:?}", duties.duty);
        };
        assert_eq!(plan.moves.len(), 4);
    }

    #[test]
    fn holders_of_k_indexes_back_from_gone_start_one_catch_up() {
        let world = World::new();
        let me = peer(1);
        let held = [1u16];
        // n = 6, k = 2. Holders 3, 4 and 5 (three indexes) out of reach from t = 0, gone at the grace period.
        let mut steward = Steward::new(config(), 0);
        let cut = |p: &Peer| ![peer(3), peer(4), peer(5)].contains(p);
        for now in [0, 50, 100, 150] {
            let duties = world.scan(&mut steward, now, &me, &held, cut);
            assert!(duties.catch_up.is_empty(), "at {now}");
        }
        // Reached again: they could have rebuilt the blob without this side; the scan says ask them, once.
        let duties = world.scan(&mut steward, 160, &me, &held, |_| true);
        assert_eq!(duties.catch_up, vec![peer(3), peer(4), peer(5)]);
        assert!(
            world
                .scan(&mut steward, 170, &me, &held, |_| true)
                .catch_up
                .is_empty()
        );
        // One holder of one index (fewer than k) back from gone: it could not have repaired.
        let mut steward = Steward::new(config(), 0);
        let one = |p: &Peer| *p != peer(5);
        for now in [0, 100, 150] {
            world.scan(&mut steward, now, &me, &held, one);
        }
        assert!(
            world
                .scan(&mut steward, 160, &me, &held, |_| true)
                .catch_up
                .is_empty()
        );
        // Back within the grace period: never gone, nothing could have moved without this side.
        let mut steward = Steward::new(config(), 0);
        for now in [0, 50] {
            world.scan(&mut steward, now, &me, &held, cut);
        }
        assert!(
            world
                .scan(&mut steward, 60, &me, &held, |_| true)
                .catch_up
                .is_empty()
        );
    }

    #[test]
    fn the_deputy_takes_over_when_the_leader_is_gone_for_the_grace_period() {
        let world = World::new();
        let me = peer(1);
        let mut steward = Steward::new(config(), 0);
        let held = [1u16];
        let leader_down = |p: &Peer| *p != peer(0);
        // The leader (holder 0) is missed from t = 0: within its grace period, this node is its deputy and does
        // not repair.
        for now in [0, 50, 99] {
            let duties = world.scan(&mut steward, now, &me, &held, leader_down);
            assert!(duties.gone.is_empty());
            assert!(
                !matches!(duties.duty, Duty::Repair(_)),
                "at {now}: {:?}",
                duties.duty
            );
        }
        // At t = grace it is gone: this node leads and moves index 0 to a live peer outside the list.
        let duties = world.scan(&mut steward, 100, &me, &held, leader_down);
        assert_eq!(duties.gone, BTreeSet::from([peer(0)]));
        assert_eq!(duties.newly_gone, vec![peer(0)]);
        let Duty::Repair(plan) = duties.duty else {
            panic!("the new leader repairs: {:?}", duties.duty);
        };
        assert_ne!(plan.holders[0], peer(0));
        assert_eq!(&plan.holders[1..], &world.holders[1..]);
        // The old leader back before the repair started: it leads again, and the gone list empties.
        let duties = world.scan(&mut steward, 110, &me, &held, |_| true);
        assert!(duties.gone.is_empty());
        assert!(!matches!(duties.duty, Duty::Repair(_)));
    }

    #[test]
    fn a_leader_waits_for_a_holder_still_within_its_grace_period_but_not_longer_than_one_more() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        let held = [0u16];
        let down_2 = |p: &Peer| *p != peer(2);
        let down_2_3 = |p: &Peer| *p != peer(2) && *p != peer(3);
        let mut scan = |now, connected: &dyn Fn(&Peer) -> bool| {
            world.scan(&mut steward, now, &me, &held, connected).duty
        };
        assert_eq!(scan(0, &down_2), Duty::Nothing);
        // Holder 3 goes missing at 60, while 2 is still within its grace: at 100 holder 2 is gone but 3 is
        // pending, so the repair waits to rebuild both at once.
        assert!(!matches!(scan(60, &down_2_3), Duty::Repair(_)));
        assert!(!matches!(scan(100, &down_2_3), Duty::Repair(_)));
        // At 160 holder 3 is gone too: one repair moves both.
        let Duty::Repair(plan) = scan(160, &down_2_3) else {
            panic!("both gone: repair");
        };
        assert_eq!(plan.moves.len(), 2);
    }

    #[test]
    fn a_scan_says_when_its_answer_may_change_without_new_input() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        let held = [0u16];
        let down_2 = |p: &Peer| *p != peer(2);
        let down_2_3 = |p: &Peer| *p != peer(2) && *p != peer(3);
        let duties = world.scan(&mut steward, 0, &me, &held, down_2);
        assert!(duties.leads);
        assert_eq!(duties.recheck_at, Some(100), "holder 2's grace ends");
        world.scan(&mut steward, 60, &me, &held, down_2_3);
        // At 100 holder 2 is gone and 3 pending: the repair waits until 3's grace ends at 160 (before the
        // wait's own bound at 200).
        let duties = world.scan(&mut steward, 100, &me, &held, down_2_3);
        assert_eq!(duties.duty, Duty::Nothing);
        assert!(duties.repair_waits);
        assert_eq!(duties.recheck_at, Some(160));
        let duties = world.scan(&mut steward, 160, &me, &held, down_2_3);
        assert!(matches!(duties.duty, Duty::Repair(_)));
        assert_eq!(duties.recheck_at, None);
        // The deputy does not lead, and rechecks when the leader's grace ends.
        let mut deputy = Steward::new(config(), 0);
        let duties = world.scan(&mut deputy, 5, &peer(1), &[1], |p: &Peer| *p != peer(0));
        assert!(!duties.leads && duties.deputises);
        assert_eq!(duties.recheck_at, Some(105));
        let duties = world.scan(&mut deputy, 105, &peer(1), &[1], |p: &Peer| *p != peer(0));
        assert!(duties.leads && matches!(duties.duty, Duty::Repair(_)));
    }

    #[test]
    fn a_failed_repair_is_retried_after_a_scan_interval_doubling_up_to_the_grace_period() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        let held = [0u16];
        let down_3 = |p: &Peer| *p != peer(3);
        world.scan(&mut steward, 0, &me, &held, down_3);
        let repairs = |steward: &mut Steward<Peer>, now| {
            let duties = world.scan(steward, now, &me, &held, down_3);
            (matches!(duties.duty, Duty::Repair(_)), duties.recheck_at)
        };
        assert!(repairs(&mut steward, 100).0, "gone at 100");
        // Scan interval 10, grace 100: waits of 10, 20, 40, 80, then 100 at most.
        let mut now = 100;
        for wait in [10, 20, 40, 80, 100, 100] {
            steward.handle_repair_ended(world.blob_id, now, false);
            assert_eq!(
                repairs(&mut steward, now + wait - 1),
                (false, Some(now + wait))
            );
            assert!(repairs(&mut steward, now + wait).0);
            now += wait;
        }
        // A success clears the count: the next failure waits one interval again.
        steward.handle_repair_ended(world.blob_id, now, true);
        steward.handle_repair_ended(world.blob_id, now, false);
        assert_eq!(repairs(&mut steward, now + 9), (false, Some(now + 10)));
    }

    #[test]
    fn holders_that_keep_going_missing_hold_a_loss_for_one_grace_period_at_most() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        let held = [0u16];
        // Holder 1 is missed from 0 and gone at 100; from then on another holder is always newly missing.
        let mut scan = |now: Millis, missing: &[u8]| {
            let connected = |p: &Peer| !missing.iter().any(|&m| *p == peer(m));
            world.scan(&mut steward, now, &me, &held, connected).duty
        };
        assert_eq!(scan(0, &[1]), Duty::Nothing);
        assert!(!matches!(scan(100, &[1, 2]), Duty::Repair(_)), "2 pending");
        assert!(!matches!(scan(150, &[1, 3]), Duty::Repair(_)), "3 pending");
        // The first loss was seen at 100: at 200 the wait ends although holder 4 is pending now.
        assert!(matches!(scan(200, &[1, 4]), Duty::Repair(_)));
    }

    #[test]
    fn challenges_wait_for_the_settle_time_their_interval_and_the_scan_budget() {
        let world = World::new();
        let me = peer(0);
        let mut steward = Steward::new(config(), 0);
        let held = [0u16];
        let other = BlobId::from_slice(&[8; 32]).unwrap();
        let up = |_: &Peer| true;
        let scan = |steward: &mut Steward<Peer>, now, blob_id, rebuilding| {
            let blob = BlobAtScan {
                blob_id,
                ..world.blob(&held, rebuilding)
            };
            steward
                .scan_blob(
                    now,
                    &me,
                    &blob,
                    out_of_reach_now(now, up),
                    candidates(&world.holders),
                )
                .duty
        };
        steward.begin_scan(0);
        assert_eq!(
            scan(&mut steward, 0, world.blob_id, false),
            Duty::Nothing,
            "settling"
        );
        assert_eq!(
            scan(&mut steward, 0, other, false),
            Duty::Nothing,
            "settling"
        );
        steward.begin_scan(50);
        // Settled at 50; a repair running holds the round back.
        assert_eq!(scan(&mut steward, 50, world.blob_id, true), Duty::Nothing);
        assert_eq!(
            scan(&mut steward, 50, world.blob_id, false),
            Duty::ChallengeAsLeader
        );
        // One blob per scan: the other, settled too, waits for the next scan.
        assert_eq!(scan(&mut steward, 50, other, false), Duty::Nothing);
        steward.begin_scan(60);
        assert_eq!(
            scan(&mut steward, 60, other, false),
            Duty::ChallengeAsLeader
        );
        // The first blob again only after its interval.
        assert_eq!(scan(&mut steward, 60, world.blob_id, false), Duty::Nothing);
        steward.begin_scan(250);
        assert_eq!(
            scan(&mut steward, 250, world.blob_id, false),
            Duty::ChallengeAsLeader
        );
        // A new holder list restarts the settle time.
        steward.begin_scan(500);
        let changed = BlobAtScan {
            fingerprint: 2,
            ..world.blob(&held, false)
        };
        let duty = steward
            .scan_blob(
                500,
                &me,
                &changed,
                out_of_reach_now(500, up),
                candidates(&world.holders),
            )
            .duty;
        assert_eq!(duty, Duty::Nothing);
        assert_eq!(steward.poll_timeout(), 510);
    }

    #[test]
    fn the_deputy_challenges_the_leader_and_a_bystander_nobody() {
        let world = World::new();
        let mut deputy = Steward::new(config(), 0);
        let mut bystander = Steward::new(config(), 0);
        let up = |_: &Peer| true;
        for now in [0, 60] {
            let d = world.scan(&mut deputy, now, &peer(1), &[1], up).duty;
            let b = world.scan(&mut bystander, now, &peer(2), &[2], up).duty;
            assert_eq!(b, Duty::Nothing);
            if now == 60 {
                assert_eq!(d, Duty::ChallengeAsDeputy { leader: peer(0) });
            }
        }
        // A node without a whole index of the blob never challenges.
        let mut writing = Steward::new(config(), 0);
        for now in [0, 60, 300] {
            let duty = world.scan(&mut writing, now, &peer(1), &[], up).duty;
            assert_eq!(duty, Duty::Nothing);
        }
    }

    #[test]
    fn hand_offs_wait_while_this_node_rebuilds_from_its_slivers() {
        let world = World::new();
        let me = peer(7);
        let mut steward = Steward::new(config(), 0);
        // This node holds indexes 2 and 3 whole, which the list gives to holders 2 and 3.
        let held = [2u16, 3];
        let duties = world.scan(&mut steward, 0, &me, &held, |_| true);
        assert_eq!(duties.hand_off, vec![2, 3]);
        let duties = steward.scan_blob(
            10,
            &me,
            &world.blob(&held, true),
            |_: &Peer| None,
            candidates(&world.holders),
        );
        assert!(duties.hand_off.is_empty());
        // Not to a gone holder: holder 3 is missed from 100 and gone at 200.
        let down_3 = |p: &Peer| *p != peer(3);
        world.scan(&mut steward, 100, &me, &held, down_3);
        let duties = world.scan(&mut steward, 200, &me, &held, down_3);
        assert_eq!(duties.hand_off, vec![2]);
    }

    /// One scan at `now` by peer `me` of the blob [9; 32] listed as `holders` (it holds whole what the list gives
    /// it), with `former` holders, `crowded` as given, `up` saying who is reachable, and peers 0..6 and 10..16 as
    /// the repair candidates: the rebalance tests' world.
    fn scan_rebalance(
        steward: &mut Steward<Peer>,
        now: Millis,
        me: u8,
        holders: &[Peer],
        former: &[Peer],
        crowded: bool,
        up: &dyn Fn(&Peer) -> bool,
    ) -> Duty<Peer> {
        let me = peer(me);
        let held: Vec<u16> = (0u16..)
            .zip(holders)
            .filter(|(_, h)| **h == me)
            .map(|(i, _)| i)
            .collect();
        let none = BTreeSet::new();
        let former = former_of(former);
        let blob = BlobAtScan {
            blob_id: BlobId::from_slice(&[9; 32]).unwrap(),
            holders,
            fingerprint: 1,
            held_whole: &held,
            rebuilding: false,
            recently_repaired: false,
            failing: &none,
            former: &former,
            crowded,
        };
        steward.begin_scan(now);
        let pool: Vec<Peer> = (0..6).chain(10..16).map(peer).collect();
        steward
            .scan_blob(
                now,
                &me,
                &blob,
                out_of_reach_now(now, up),
                move |_: &BTreeSet<Peer>| pool,
            )
            .duty
    }

    /// Twelve indexes on six holders, two each (a side of a healed partition that rebuilt the other side's
    /// indexes), and six spares 10..16 to take them: each holder moves its own second index, one after another
    /// in list order, and a holder after the first mover waits for it.
    #[test]
    fn holders_over_their_share_move_their_own_indexes_one_after_another() {
        let scan =
            |steward: &mut Steward<Peer>, holders: &[Peer], me: u8, up: &dyn Fn(&Peer) -> bool| {
                scan_rebalance(steward, 0, me, holders, &[], true, up)
            };
        let mut holders: Vec<Peer> = (0..12).map(|i| peer(i % 6)).collect();
        for mover in 0..6u8 {
            // Every holder after the mover waits; the mover moves exactly its own second index.
            for later in mover + 1..6 {
                let duty = scan(&mut Steward::new(config(), 0), &holders, later, &|_| true);
                assert_eq!(
                    duty,
                    Duty::Nothing,
                    "holder {later} waits for holder {mover}"
                );
            }
            let Duty::Repair(plan) =
                scan(&mut Steward::new(config(), 0), &holders, mover, &|_| true)
            else {
                panic!("holder {mover} moves its own index");
            };
            assert_eq!(plan.moves.len(), 1, "{plan:?}");
            let moved = &plan.moves[0];
            assert_eq!(moved.from, peer(mover));
            assert!(!holders.contains(&moved.to), "to a spare: {moved:?}");
            for (i, (now, was)) in plan.holders.iter().zip(&holders).enumerate() {
                assert!(
                    now == was || i == usize::from(moved.index),
                    "index {i} moved: {plan:?}"
                );
            }
            holders = plan.holders;
        }
        // Balanced: nobody plans any more.
        for me in 0..6u8 {
            assert_eq!(
                scan(&mut Steward::new(config(), 0), &holders, me, &|_| true),
                Duty::Nothing
            );
        }
        // A holder within its grace period holds every rebalance back (the leader's repair comes first).
        let two_each: Vec<Peer> = (0..12).map(|i| peer(i % 6)).collect();
        let duty = scan(&mut Steward::new(config(), 0), &two_each, 1, &|p: &Peer| {
            *p != peer(0)
        });
        assert_eq!(duty, Duty::Nothing);
    }

    /// The same twelve indexes on six holders: without a crowded network a holder that does not lead keeps its
    /// share, and a holder moves its own at most once per grace period (views that differ cannot make it pass
    /// an index back and forth every scan).
    #[test]
    fn holders_move_their_own_only_from_a_crowded_network_and_once_per_grace_period() {
        let blob_id = BlobId::from_slice(&[9; 32]).unwrap();
        // Holder 0 (the leader) has moved its own already; holder 1 is next.
        let mut holders: Vec<Peer> = (0..12).map(|i| peer(i % 6)).collect();
        holders[6] = peer(10);
        let settled_former = [peer(20)];
        let scan_with =
            |steward: &mut Steward<Peer>, now: Millis, crowded: bool, former: &[Peer]| {
                scan_rebalance(steward, now, 1, &holders, former, crowded, &|_| true)
            };
        let scan = |steward: &mut Steward<Peer>, now: Millis, crowded: bool| {
            scan_with(steward, now, crowded, &[])
        };
        let mut steward = Steward::new(config(), 0);
        assert_eq!(scan(&mut steward, 0, false), Duty::Nothing);
        assert!(matches!(scan(&mut steward, 10, true), Duty::Repair(_)));
        // Its list did not take (another superseded it, say): not again within the grace period.
        assert!(!matches!(scan(&mut steward, 20, true), Duty::Repair(_)));
        assert!(!matches!(scan(&mut steward, 109, true), Duty::Repair(_)));
        assert!(matches!(scan(&mut steward, 110, true), Duty::Repair(_)));
        // A comparison with a former holder ended at 300 (it answered an older list): the other side may be
        // adopting this list until 400.
        let mut steward = Steward::new(config(), 0);
        steward.handle_compared(300, blob_id, settled_former.clone(), false);
        let scan =
            |steward: &mut Steward<Peer>, now| scan_with(steward, now, true, &settled_former);
        assert!(!matches!(scan(&mut steward, 310), Duty::Repair(_)));
        assert!(!matches!(scan(&mut steward, 399), Duty::Repair(_)));
        assert!(matches!(scan(&mut steward, 400), Duty::Repair(_)));
    }

    /// The leader's own rebalance (nothing lost) waits a grace period after a comparison with former holders too.
    #[test]
    fn a_leader_rebalances_its_own_share_only_a_grace_period_after_a_comparison() {
        let blob_id = BlobId::from_slice(&[9; 32]).unwrap();
        let holders: Vec<Peer> = (0..12).map(|i| peer(i % 6)).collect();
        let former = [peer(20)];
        let scan = |steward: &mut Steward<Peer>, now: Millis| {
            scan_rebalance(steward, now, 0, &holders, &former, false, &|_| true)
        };
        let mut steward = Steward::new(config(), 0);
        steward.handle_compared(300, blob_id, former.clone(), false);
        assert!(!matches!(scan(&mut steward, 310), Duty::Repair(_)));
        assert!(!matches!(scan(&mut steward, 399), Duty::Repair(_)));
        let Duty::Repair(plan) = scan(&mut steward, 400) else {
            panic!("the leader moves its own second index");
        };
        assert_eq!(plan.moves.len(), 1);
        assert_eq!(plan.moves[0].from, peer(0));
    }

    #[test]
    fn a_challenge_interval_of_zero_never_challenges() {
        let world = World::new();
        let mut steward = Steward::new(
            StewardConfig {
                challenge_interval: 0,
                ..config()
            },
            0,
        );
        for now in (0..1000).step_by(50) {
            steward.begin_scan(now);
            let duty = world.scan(&mut steward, now, &peer(0), &[0], |_| true).duty;
            assert_eq!(duty, Duty::Nothing);
        }
    }

    proptest! {
        /// Holders cut off and reached again start a catch-up at the first scan that reaches them, and only
        /// then, exactly when a scan found them gone (out of reach past the grace period) and they hold k of the
        /// list's indexes or more; the holders named are the returning ones, in list order, each once.
        #[test]
        fn a_catch_up_starts_once_when_holders_of_k_indexes_return_from_gone(
            picks in proptest::collection::vec(0u8..8, 4..24),
            cut_mask in proptest::collection::vec(any::<bool>(), 8),
            me_pick in 0u8..8,
            cut_for in 0u64..400,
        ) {
            let holders: Vec<Peer> = picks.iter().map(|&p| peer(p)).collect();
            let me = peer(me_pick);
            let cut: BTreeSet<Peer> = (0u8..8)
                .filter(|&p| cut_mask[usize::from(p)] && p != me_pick)
                .map(peer)
                .collect();
            let config = config();
            let mut steward = Steward::new(config, 0);
            let none = BTreeSet::new();
            let blob = BlobAtScan {
                blob_id: BlobId::from_slice(&[9; 32]).unwrap(),
                holders: &holders,
                fingerprint: 1,
                held_whole: &[],
                rebuilding: false,
                recently_repaired: false,
                failing: &none,
                former: &[],
                crowded: false,
            };
            let k = usize::from(source_shards_for(u16::try_from(holders.len()).unwrap()));
            let cut_indexes = holders.iter().filter(|h| cut.contains(*h)).count();
            let mut expected: Vec<Peer> = Vec::new();
            for h in &holders {
                if cut.contains(h) && !expected.contains(h) {
                    expected.push(h.clone());
                }
            }
            // Some scan (every 10 ms) ran at or after the grace period while they were cut.
            let found_gone = cut_for > config.grace;
            if !(found_gone && cut_indexes >= k) {
                expected.clear();
            }
            let mut first_back = true;
            for now in (0..cut_for + 3 * config.scan_interval).step_by(10) {
                steward.begin_scan(now);
                let cut_now = now < cut_for;
                let duties = steward.scan_blob(
                    now,
                    &me,
                    &blob,
                    out_of_reach_now(now, |p: &Peer| !(cut_now && cut.contains(p))),
                    |_: &BTreeSet<Peer>| Vec::new(),
                );
                if cut_now || !first_back {
                    prop_assert!(duties.catch_up.is_empty(), "at {}: {:?}", now, duties.catch_up);
                } else {
                    prop_assert_eq!(&duties.catch_up, &expected, "first scan back, at {}", now);
                    first_back = false;
                }
            }
        }

        /// A leader's plan, restricted to what a list can carry evidence for, moves the indexes of gone holders
        /// and of the leader as planned and leaves every other live holder's where it was (no rebalancing of
        /// another holder's share: `holders::evidenced` would refuse it).
        #[test]
        fn a_restricted_plan_moves_only_gone_holders_and_the_leaders_own(
            picks in proptest::collection::vec(0u8..6, 4..30),
            gone_mask in proptest::collection::vec(any::<bool>(), 6),
            newcomers in 0u8..6,
            me_pick in 0u8..6,
        ) {
            let holders: Vec<Peer> = picks.iter().map(|&p| peer(p)).collect();
            let me = peer(me_pick);
            let gone: BTreeSet<Peer> = (0u8..6)
                .filter(|&p| gone_mask[usize::from(p)] && p != me_pick)
                .map(peer)
                .collect();
            let candidates: Vec<Peer> = (0u8..6)
                .map(peer)
                .filter(|p| !gone.contains(p))
                .chain((0..newcomers).map(|c| peer(100 + c)))
                .collect();
            let blob_id = BlobId::from_slice(&[9; 32]).unwrap();
            if let Some(plan) = repair::plan(&blob_id, &holders, &gone, &candidates) {
                let restricted =
                    plan.clone().restricted(&holders, |from| *from == me || gone.contains(from));
                for (i, was) in holders.iter().enumerate() {
                    let expected = if *was == me || gone.contains(was) {
                        &plan.holders[i]
                    } else {
                        was
                    };
                    prop_assert_eq!(&restricted.holders[i], expected);
                }
                let moved: Vec<u16> = restricted.moves.iter().map(|m| m.index).collect();
                let changed: Vec<u16> = (0..holders.len())
                    .filter(|&i| restricted.holders[i] != holders[i])
                    .map(|i| u16::try_from(i).unwrap())
                    .collect();
                prop_assert_eq!(moved, changed);
            }
        }

        /// A driver that scans a blob only when a holder leaves or returns and at `recheck_at` (the simulator)
        /// starts the same repair at the same time as one that scans every millisecond (the node, finely).
        #[test]
        fn scanning_on_events_and_at_recheck_times_decides_like_scanning_always(
            outages in proptest::collection::vec(proptest::option::of((0u64..300, 1u64..300)), 5),
            min_lost in 1u16..3,
        ) {
            let world = World::new();
            let me = peer(0);
            let config = StewardConfig { challenge_interval: 0, min_lost, ..config() };
            // Holder i + 1 is out of reach from `down` for `length` ms.
            let out_of_reach = |now: Millis| {
                let outages = outages.clone();
                move |p: &Peer| {
                    let i = usize::from(p[0]).checked_sub(1)?;
                    let (down, length) = (*outages.get(i)?)?;
                    (down <= now && now < down + length).then_some(down)
                }
            };
            let first_repair = |times: &mut dyn FnMut(&BlobDuties<Peer>, Millis) -> Option<Millis>| {
                let mut steward = Steward::new(config, 0);
                let mut now = 0;
                loop {
                    steward.begin_scan(now);
                    let duties = steward.scan_blob(
                        now, &me, &world.blob(&[0], false), out_of_reach(now), candidates(&world.holders),
                    );
                    if let Duty::Repair(plan) = duties.duty {
                        return Some((now, plan));
                    }
                    now = times(&duties, now)?;
                }
            };
            let always = first_repair(&mut |_, now| (now < 700).then_some(now + 1));
            let mut events: BTreeSet<Millis> = outages
                .iter()
                .flatten()
                .flat_map(|&(down, length)| [down, down + length])
                .collect();
            let on_events = first_repair(&mut |duties, now| {
                if let Some(at) = duties.recheck_at {
                    events.insert(at);
                }
                events.range(now + 1..).next().copied().filter(|&t| t <= 700)
            });
            prop_assert_eq!(always, on_events);
        }

        /// Whatever the connection pattern, a holder is gone exactly when this node has missed it on every scan
        /// for at least the grace period, and only the blob's leader ever gets a repair to run.
        #[test]
        fn only_the_leader_repairs_and_only_holders_missed_for_the_grace_period_are_gone(
            pattern in proptest::collection::vec(any::<u8>(), 1..30),
            me in 0u8..6,
        ) {
            let world = World::new();
            let me = peer(me);
            let mut steward = Steward::new(config(), 0);
            let mut missed_since: BTreeMap<Peer, Millis> = BTreeMap::new();
            for (step, mask) in (0u64..).zip(&pattern) {
                let now = step * 30;
                let up = |p: &Peer| p[0] >= 6 || mask >> p[0] & 1 == 1;
                for h in &world.holders {
                    if up(h) { missed_since.remove(h); } else { missed_since.entry(h.clone()).or_insert(now); }
                }
                let held = [u16::from(me[0])];
                let duties = world.scan(&mut steward, now, &me, &held, up);
                let expected: BTreeSet<Peer> = missed_since
                    .iter()
                    .filter(|(p, since)| **p != me && now - **since >= 100)
                    .map(|(p, _)| p.clone())
                    .collect();
                prop_assert_eq!(&duties.gone, &expected);
                let leader = repair::leader(&world.holders, &duties.gone);
                prop_assert_eq!(duties.leads, leader == Some(&me));
                let mut without_leader = duties.gone.clone();
                without_leader.extend(leader.cloned());
                let deputy = leader.is_some() && repair::leader(&world.holders, &without_leader) == Some(&me);
                prop_assert_eq!(duties.deputises, deputy && !duties.leads);
                if matches!(duties.duty, Duty::Repair(_)) {
                    prop_assert_eq!(repair::leader(&world.holders, &duties.gone), Some(&me));
                }
            }
        }
    }
}
