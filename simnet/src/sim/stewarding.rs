//! Scans: each simulated node keeps a `floe_protocol::steward::Steward`, the state machine the node's periodic
//! scan drives, and it decides what a blob needs (who is gone, who leads, whether a repair is due, whether to
//! challenge). This file tells a steward what its node knows and acts on the duties it returns; it decides
//! nothing itself.
//!
//! The node scans every blob it holds every scan interval; the simulator scans a blob only on events: when a
//! holder's grace period may have ended (departure and partition checks), at its challenge rounds, when a
//! repair of it ends, and at the steward's own `recheck_at`. The steward's answers depend only on its inputs and
//! the time, so the scans skipped in between would decide nothing new (proptest
//! `scanning_on_events_and_at_recheck_times_decides_like_scanning_always` in the protocol crate). One thing
//! differs from the node (docs/simnet.md, "Stewardship"): the simulator tells the steward when a holder went out
//! of reach (its departure or the partition's start), where the node counts from its first scan after, at most
//! one scan interval later. A scan here covers one blob; a node begins a new scan once per scan interval.

use super::*;

use floe_protocol::steward::{
    BlobAtScan, DEFAULT_CHALLENGES_PER_SCAN, Duty, Steward, StewardConfig,
};

/// How often the node scans by default (`--repair-interval`); the simulator scans on events instead, so this
/// only fills the steward's setting.
pub(super) const SCAN_INTERVAL_MS: Millis = 10_000;

/// A simulated peer as the protocol's generic rules see it (steward, repair plans): node `id`'s 4 big-endian
/// bytes, [`peer_key`] without the allocation, ordered as those bytes are by one integer comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SimPeer([u8; 4]);

impl SimPeer {
    pub(super) fn of(node: u32) -> Self {
        Self(node.to_be_bytes())
    }

    pub(super) fn node(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
}

impl Ord for SimPeer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.node().cmp(&other.node())
    }
}

impl PartialOrd for SimPeer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<[u8]> for SimPeer {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == *other
    }
}

impl AsRef<[u8]> for SimPeer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The steward settings a scenario implies (the node's flags of the same names).
pub(super) fn steward_config(sc: &Scenario) -> StewardConfig {
    StewardConfig {
        scan_interval: SCAN_INTERVAL_MS,
        grace: sc.repair.grace_ms,
        settle: sc.repair.challenge_settle_ms,
        min_lost: sc.repair.min_lost,
        challenge_interval: sc.repair.challenge_interval_ms,
        challenges_per_scan: DEFAULT_CHALLENGES_PER_SCAN,
    }
}

/// A fingerprint of blob `blob`'s holder list: its version, which every change of holder, epoch or repairer
/// moves on. A new list restarts the settle time.
pub(super) fn list_fingerprint(blob: &Blob) -> u64 {
    blob.list_version
}

impl Sim {
    /// A fresh steward, as a node that just started has.
    pub(super) fn new_steward(&self) -> Steward<SimPeer> {
        Steward::new(self.steward_cfg, self.now)
    }

    /// Since when `viewer` has found `x` out of reach, as far as the simulator knows: since `x` went down, or
    /// since a partition cut them apart; `None` while it is reachable.
    pub(super) fn out_of_reach_since(&self, viewer: u32, x: u32) -> Option<Millis> {
        if x == viewer {
            return None;
        }
        let down = self
            .down_at
            .get(ix(x))
            .copied()
            .filter(|&at| at != Millis::MAX);
        if self.active_partitions.is_empty() {
            return down;
        }
        match (down, self.unreachable_since(viewer, x)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Holders of blob `b` that `viewer`'s challenges found failing or holding a lost sliver: gone whatever
    /// their connection. First the tally forgets failures of slivers that have moved since.
    fn failing_for(&mut self, viewer: u32, b: u32) -> BTreeSet<SimPeer> {
        let threshold = self.sc.repair.challenge_failures;
        let blob = &self.blobs[ix(b)];
        let Some(tally) = self.tallies.get_mut(&viewer) else {
            return BTreeSet::new();
        };
        let holder_of = |index: u16| blob.holders.get(usize::from(index)).copied();
        tally.forget_moved(&blob.id, holder_of);
        let lost = self.lost_in(viewer, b);
        let tally = self.tallies.get(&viewer);
        blob.holders
            .iter()
            .filter(|&&h| lost.contains(&h) || tally.is_some_and(|t| t.is_failing(&h, threshold)))
            .map(|&h| SimPeer::of(h))
            .collect()
    }

    /// One scan of blob `b` by `node`, which must be up: tells the node's steward what the node knows (the
    /// blob's list, which of its slivers it holds, who is out of reach and since when, whom its challenges
    /// found failing, whether a repair of it runs) and does what the steward answers. Returns the duties'
    /// roles: (`node` leads, `node` deputises).
    pub(super) fn scan(&mut self, b: u32, node: u32) -> (bool, bool) {
        let bi = ix(b);
        let failing = self.failing_for(node, b);
        let me = SimPeer::of(node);
        let (keys, held_whole, fingerprint, rebuilding, recently_repaired) = {
            let blob = &self.blobs[bi];
            let mut keys = std::mem::take(&mut self.scratch_peers);
            keys.clear();
            keys.extend(blob.holders.iter().map(|&h| SimPeer::of(h)));
            // Stored whole, rotted or not: the node's store does not know until it reads.
            let held_whole: Vec<u16> = (0u16..)
                .zip(blob.holders.iter().zip(blob.slot.iter()))
                .filter(|(_, (h, slot))| **h == node && **slot != MISSING)
                .map(|(i, _)| i)
                .collect();
            let rebuilding = blob.claims.iter().any(|c| c.leader == node);
            (
                keys,
                held_whole,
                list_fingerprint(blob),
                rebuilding,
                !blob.claims.is_empty(),
            )
        };
        // As the node judges it (`diversity::crowded`), where the cap is on and only for a holder of two indexes
        // or more; the simulator's one list per blob makes it rare (a network's repairs while another is down).
        let crowded = self.networks.active
            && self.blobs[bi]
                .holders
                .iter()
                .filter(|&&h| h == node)
                .count()
                >= 2
            && floe_protocol::diversity::crowded(
                &self.blobs[bi].holders,
                &node,
                |id: &u32| Some(self.nodes[ix(*id)].network),
                floe_protocol::diversity::cap(self.blobs[bi].n, self.network_total()),
            );
        let at_scan = BlobAtScan {
            blob_id: self.blobs[bi].id,
            holders: &keys,
            fingerprint,
            held_whole: &held_whole,
            rebuilding,
            recently_repaired,
            failing: &failing,
            former: &[],
            crowded,
        };
        let placeholder = Steward::new(self.steward_cfg, 0);
        let mut steward = std::mem::replace(&mut self.stewards[ix(node)], placeholder);
        let duties = {
            let sim = &*self;
            let out_of_reach = |peer: &SimPeer| sim.out_of_reach_since(node, peer.node());
            // The peers of the blob's neighbourhood that `node` can reach now, as the node takes its connected
            // ones; a peer failing its challenges gets no new slivers.
            let candidates = |gone: &BTreeSet<SimPeer>| -> Vec<SimPeer> {
                let blob = &sim.blobs[bi];
                let threshold = sim.sc.repair.challenge_failures;
                let tally = sim.tallies.get(&node);
                // A peer without room for one index keeps what it holds and is given nothing.
                let needed = sim.index_bytes(b);
                if sim.networks.active || sim.sc.repair.newcomer_age_ms > 0 {
                    let usable = |c: u32| {
                        sim.out_of_reach_since(node, c).is_none()
                            && tally.is_none_or(|t| !t.is_failing(&c, threshold))
                            && sim.has_room(c, needed, room::Purpose::Repair)
                    };
                    let gone = |c: u32| gone.contains(&SimPeer::of(c));
                    return sim
                        .spread_repair_candidates(node, b, gone, usable)
                        .into_iter()
                        .map(SimPeer::of)
                        .collect();
                }
                sim.lookup(node, blob.kad, usize::from(blob.n))
                    .into_iter()
                    .filter(|&c| sim.out_of_reach_since(node, c).is_none())
                    .filter(|c| tally.is_none_or(|t| !t.is_failing(c, threshold)))
                    .filter(|&c| sim.has_room(c, needed, room::Purpose::Repair))
                    .map(SimPeer::of)
                    .collect()
            };
            // A new scan every scan interval, as the node's: the per-scan challenge budget and the forgetting
            // of peers no longer missed run on the node's clock.
            if steward.poll_timeout() <= sim.now {
                steward.begin_scan(sim.now);
            }
            steward.scan_blob(sim.now, &me, &at_scan, out_of_reach, candidates)
        };
        self.stewards[ix(node)] = steward;
        self.scratch_peers = keys;
        if duties.repair_waits {
            self.s.repairs_waiting_for_pending += 1;
        }
        if let Some(at) = duties.recheck_at {
            self.schedule_reeval(b, at);
        }
        let roles = (duties.leads, duties.deputises);
        let byzantine = self.nodes[ix(node)].byzantine.is_some();
        match duties.duty {
            Duty::Nothing => {
                // A repair of this node's runs: look again when it ends.
                if rebuilding && duties.leads && !duties.gone.is_empty() {
                    self.blobs[bi].reeval = true;
                }
            }
            Duty::Repair(_) if byzantine => {
                self.s.repair_evaluations_blocked_by_byzantine_leader += 1;
            }
            Duty::Repair(plan) => self.claim_repair(b, node, plan, duties.gone),
            // A byzantine node's challenges are not modelled: it only ever answers them wrongly.
            Duty::ChallengeAsLeader | Duty::ChallengeAsDeputy { .. } if byzantine => {}
            Duty::ChallengeAsLeader => self.challenge(b, node, &Role::Leader, &duties.gone),
            Duty::ChallengeAsDeputy { leader } => {
                let role = Role::Deputy {
                    leader: leader.as_ref().to_vec(),
                };
                self.challenge(b, node, &role, &duties.gone);
            }
        }
        if self.nodes[ix(node)].byzantine == Some(Behaviour::Hijack) {
            self.hijack(b, node);
        }
        roles
    }

    /// A repair the steward of `leader` asks for: started unless the leader has heard another live holder's
    /// announcement of one (the gossiped list would have replaced the list it scanned).
    fn claim_repair(
        &mut self,
        b: u32,
        leader: u32,
        plan: RepairPlan<SimPeer>,
        gone: BTreeSet<SimPeer>,
    ) {
        let heard = self.blobs[ix(b)]
            .claims
            .iter()
            .any(|c| !self.gone_from(leader, c.leader) && self.heard(c, leader));
        if heard {
            self.s.repairs_suppressed_by_gossip += 1;
            self.blobs[ix(b)].reeval = true;
            self.stewards[ix(leader)].handle_repair_not_started(self.blobs[ix(b)].id);
            return;
        }
        let fingerprint = list_fingerprint(&self.blobs[ix(b)]);
        self.start_repair(
            b,
            leader,
            PlannedRepair {
                plan,
                gone,
                fingerprint,
            },
        );
    }

    /// A challenge round of blob `b` by `challenger` in `role`: `floe_protocol::challenge` chooses the targets
    /// from the challenger's own stream and judges each answer (a holder passes when it is reachable, honest
    /// and its slot is good); its tally says when a sliver is lost or a holder failing, and the blobs that
    /// touches are scanned again.
    fn challenge(&mut self, b: u32, challenger: u32, role: &Role, gone: &BTreeSet<SimPeer>) {
        let bi = ix(b);
        let keys: Vec<PeerKey> = self.blobs[bi]
            .holders
            .iter()
            .map(|&x| peer_key(x))
            .collect();
        let gone: BTreeSet<PeerKey> = gone.iter().map(|g| g.as_ref().to_vec()).collect();
        let segments = self.blobs[bi].size.div_ceil(DEFAULT_SEGMENT_SIZE).max(1);
        let answer_bytes = self.blobs[bi].sliver_bytes.div_ceil(segments);
        let suspects = match self.tallies.get(&challenger) {
            Some(tally) => {
                let blob = &self.blobs[bi];
                tally.suspects(&blob.id, |index: u16| {
                    blob.holders.get(usize::from(index)).copied()
                })
            }
            None => BTreeMap::new(),
        };
        let me = peer_key(challenger);
        let seed = rand::RngExt::random::<u64>(&mut self.nodes[ix(challenger)].rng);
        let threshold = self.sc.repair.challenge_failures;
        for asked in challenge::round(&keys, &gone, &me, role, segments, &suspects, seed) {
            let Some(holder) = node_of(&asked.holder) else {
                continue;
            };
            self.count_message(GOSSIP_BYTES);
            // Unreachable is the liveness check's business, not a failed proof.
            if !self.nodes[ix(holder)].alive
                || self.blocked(challenger, holder)
                || self.blocked(holder, challenger)
            {
                continue;
            }
            self.count_message(answer_bytes);
            // What the holder can answer: the segment, if its slot is good and it is honest. The simulator
            // delivers a sliver whole, so no holder is ever "still receiving".
            let verdict = match self.blobs[bi].slot.get(usize::from(asked.index)) {
                _ if self.nodes[ix(holder)].byzantine.is_some() => {
                    Verdict::Failed(ChallengeFailure::Invalid("byzantine".into()))
                }
                Some(&GOOD) => Verdict::Passed,
                Some(&CORRUPT) => Verdict::Failed(ChallengeFailure::Invalid("corrupt".into())),
                _ => Verdict::Failed(ChallengeFailure::NoSliver),
            };
            let blob_id = self.blobs[bi].id;
            let tally = self.tallies.entry(challenger).or_default();
            let (sliver_lost, holder_failing) =
                match tally.record(&holder, &blob_id, &asked, &verdict, threshold) {
                    Recorded::Passed => {
                        self.s.challenges_passed += 1;
                        continue;
                    }
                    Recorded::NoVerdict => continue,
                    Recorded::Failed {
                        sliver_lost,
                        holder_failing,
                        ..
                    } => (sliver_lost, holder_failing),
                };
            self.s.challenges_failed += 1;
            let next = self.now.saturating_add(1);
            if sliver_lost {
                // A sliver lost among good ones: only this blob is affected.
                self.s.slivers_found_lost += 1;
                self.schedule_reeval(b, next);
            }
            if holder_failing {
                self.s.holders_failing += 1;
                let held = self.compact_held(holder);
                let mut blobs: Vec<u32> = held.iter().map(|&(held_blob, _)| held_blob).collect();
                blobs.dedup();
                self.nodes[ix(holder)].held = held;
                for held_blob in blobs {
                    self.schedule_reeval(held_blob, next);
                }
            }
        }
    }
}
