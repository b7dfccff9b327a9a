//! Sides of a partition: while one is active each side of it keeps its own holder list of every blob, as the
//! nodes do, and once it heals the sides' lists become one by the node's reunion rule.
//!
//! Outside partitions the simulator keeps one list per blob (`sim` module docs). When a partition starts (none
//! active before), every certified blob is divided: the blob itself stays the list of the nodes outside every
//! partition's group A (side 0), and each other side (the set of groups a node is in, as a bit mask) gets a side
//! copy, a blob entry of its own with the same list, slots and ID. Each node scans, repairs and reads the version
//! of its side ([`Sim::version_for`]); a holder deletes a sliver only when its own side's list drops it, so the
//! slivers each side rebuilds are extra bytes until the sides reunite. Copies stay out of availability and
//! durability (those keep following the blob's own list, partitions ignored, as before).
//!
//! When the last partition heals, every live holder of each version compares its list with the blob's former
//! holders as the node does (`steward::Reunions` names whom to ask, `holders::reunite` decides what to adopt,
//! `holders::former_after` says who the former holders are). The node dials a former holder it is not connected
//! to at one scan and asks it at the next, so a holder asks at its second scan after healing (each node's scans
//! fall at a phase drawn from the seed) and hears the answers one round trip later. When the last live holder of
//! a losing list has adopted the winner, the blob's versions are merged into the blob: slivers the winning list
//! does not give their holder are deleted (the duplicate bytes), a listed index whose holder dropped it is handed
//! off by a peer that still has it, and the copies retire. A blob whose holders never all come to one list stays
//! divided, and the run counts it and its extra bytes.
//!
//! Not modelled: nodes that join during a partition are on side 0; overlapping partitions share the sides drawn
//! when the first one started; a holder down at healing is left out (the node catches it up when it returns);
//! lifetimes and deletions act on the blob's own list only.

use super::*;

use floe_protocol::steward::{self, Reunions};

/// About how many bytes a `MetadataResponse` takes besides its holder list (metadata of a blob of a few segments,
/// epoch, repairer, framing),
/// and per holder listed (a peer ID of an Ed25519 key, 38 bytes, and its framing).
const RECORD_BYTES: u64 = 300;
const RECORD_BYTES_PER_HOLDER: u64 = 40;
/// Bytes of an answer to a list digest request (`MetadataRequest.list_digest`): digest, epoch, repairer and
/// framing.
const DIGEST_ANSWER_BYTES: u64 = 100;
/// The side of the forged list hijacking nodes answer ([`Sim::answer_of`]): no node's.
const FORGED_SIDE: u64 = u64::MAX;

/// The metadata requests one blob's reunion cost: digest requests, and whole lists fetched (one per distinct
/// newer list per comparison or catch-up, as the node's `repair::lists` fetches them).
#[derive(Default)]
pub(super) struct Asked {
    digests: u64,
    lists: u64,
    /// Forged lists hijacking nodes answered, and holders that adopted one.
    forged_answers: u64,
    forged_adopted: u64,
}

/// What peers answered when asked for their list: each peer's key and the version (an index into the lists).
type Answered = Vec<([u8; 4], usize)>;

/// `answered` as the protocol weighs answers: each peer with the list it answered.
fn answer_views<'a>(
    answered: &'a [([u8; 4], usize)],
    lists: &'a [VersionList],
) -> Vec<(&'a [u8; 4], holders::List<'a, [u8; 4]>)> {
    answered
        .iter()
        .map(|(key, w)| (key, lists[*w].list()))
        .collect()
}

/// The distinct lists among `answered` that are newer than `held`: what a comparison or catch-up fetches whole.
fn lists_to_fetch(lists: &[VersionList], held: usize, answered: &[([u8; 4], usize)]) -> u64 {
    let held = lists[held].list();
    let newer: BTreeSet<usize> = answered
        .iter()
        .map(|&(_, w)| {
            lists
                .iter()
                .position(|l| l.list() == lists[w].list())
                .unwrap_or(w)
        })
        .filter(|&w| {
            holders::supersedes(
                lists[w].epoch,
                &lists[w].repairer,
                held.epoch,
                held.repairer,
            )
        })
        .collect();
    as_u64(newer.len())
}

/// A divided blob: the versions its sides keep while a partition runs.
pub(super) struct Division {
    /// The blob's holders when the partition began: a side's former holders are those its list no longer names.
    fork_holders: Box<[u32]>,
    /// (side, blob entry) of each version: the blob itself for side 0, then its side copies.
    versions: Vec<(u64, u32)>,
    /// The version every live holder ends with, once the partition healed and they all do.
    winner: Option<usize>,
}

/// One version of a divided blob as its holders' lists see it.
struct VersionList {
    side: u64,
    holders: Vec<[u8; 4]>,
    epoch: u64,
    repairer: Vec<u8>,
}

impl VersionList {
    fn list(&self) -> holders::List<'_, [u8; 4]> {
        holders::List {
            holders: &self.holders,
            epoch: self.epoch,
            repairer: &self.repairer,
        }
    }
}

impl Sim {
    /// The side `node` is on: bit i set when it is in group A of partition i (0 outside every partition).
    pub(super) fn side_of(&self, node: u32) -> u64 {
        self.node_side.get(ix(node)).copied().unwrap_or(0)
    }

    /// The entry of blob `b` that `node` keeps: its side's copy while the blob is divided, else `b`.
    pub(super) fn version_for(&self, b: u32, node: u32) -> u32 {
        let Some(division) = self.divisions.get(&b) else {
            return b;
        };
        let side = self.side_of(node);
        division
            .versions
            .iter()
            .find(|v| v.0 == side)
            .map_or(b, |v| v.1)
    }

    /// The side whose list entry `b` is while its blob is divided; `None` when it is not divided.
    pub(super) fn version_side(&self, b: u32) -> Option<u64> {
        let blob = self.blobs.get(ix(b))?;
        match blob.copy_of {
            Some(_) => (blob.status == Status::Certified).then_some(blob.side),
            None => self.divisions.contains_key(&b).then_some(0),
        }
    }

    /// Whether `node` keeps the list of entry `b` (its side's version, or `b` is not divided).
    pub(super) fn follows(&self, node: u32, b: u32) -> bool {
        self.version_side(b)
            .is_none_or(|side| self.side_of(node) == side)
    }

    /// Divides every certified blob between the sides of the partitions active now; nothing when blobs are
    /// divided already (an overlapping partition shares the sides drawn then).
    pub(super) fn divide(&mut self) {
        if !self.divisions.is_empty() {
            return;
        }
        let mut sides: Vec<u64> = Vec::with_capacity(self.nodes.len());
        for node in 0..self.nodes.len() {
            let node = u32::try_from(node).unwrap_or(u32::MAX);
            let mut side = 0u64;
            for &i in &self.active_partitions {
                if i < 64 && self.partitions.get(i).is_some_and(|p| p.in_a(node)) {
                    side |= 1 << i;
                }
            }
            sides.push(side);
        }
        let others: BTreeSet<u64> = sides.iter().copied().filter(|&s| s != 0).collect();
        self.node_side = sides;
        self.divided_at = self.now;
        if others.is_empty() {
            return;
        }
        for b in 0..self.originals {
            if self.blobs[b].status != Status::Certified {
                continue;
            }
            let b = u32::try_from(b).unwrap_or(u32::MAX);
            let mut versions = vec![(0, b)];
            for &side in &others {
                let copy = self.side_copy(b, side);
                let c = u32::try_from(self.blobs.len()).unwrap_or(u32::MAX);
                for (i, (&h, &state)) in copy.holders.iter().zip(copy.slot.iter()).enumerate() {
                    if state != MISSING && h != NO_NODE {
                        let i = u16::try_from(i).unwrap_or(u16::MAX);
                        self.nodes[ix(h)].held.push((c, i));
                    }
                }
                self.blobs.push(copy);
                versions.push((side, c));
            }
            let fork_holders = self.blobs[ix(b)].holders.clone();
            self.divisions.insert(
                b,
                Division {
                    fork_holders,
                    versions,
                    winner: None,
                },
            );
        }
    }

    /// Side `side`'s copy of blob `b`: the same list, slots and ID, no claims.
    fn side_copy(&self, b: u32, side: u64) -> Blob {
        let blob = &self.blobs[ix(b)];
        Blob {
            id: blob.id,
            kad: blob.kad,
            size: blob.size,
            sliver_bytes: blob.sliver_bytes,
            run_bytes: blob.run_bytes.clone(),
            n: blob.n,
            k: blob.k,
            status: Status::Certified,
            // Copies stay out of the availability and durability counters.
            readable: false,
            lost: false,
            good_live: blob.good_live,
            durable: blob.durable,
            epoch: blob.epoch,
            repairer: blob.repairer,
            holders: blob.holders.clone(),
            slot: blob.slot.clone(),
            claims: Vec::new(),
            reeval: false,
            reeval_at: None,
            list_version: blob.list_version,
            evaluated_at: Millis::MAX,
            epochs: blob.epochs,
            end_epoch: blob.end_epoch,
            deletion: None,
            deleted_at: 0,
            copy_of: Some(b),
            side,
        }
    }

    /// The last partition healed: every divided blob's holders compare lists with its former holders, and the
    /// blob is merged once they all hold one list.
    pub(super) fn plan_reunions(&mut self) {
        let divided: Vec<u32> = self.divisions.keys().copied().collect();
        for b in divided {
            self.s.blobs_divided += 1;
            let mut asked = Asked::default();
            let reunited = self.reunion_time(b, &mut asked);
            self.s.reunion_requests += asked.digests + asked.lists;
            self.s.reunion_forged_answers += asked.forged_answers;
            self.s.reunion_forged_adopted += asked.forged_adopted;
            // Each digest answer is about 100 bytes; each list fetched a record naming the blob's n holders.
            let n = u64::from(self.blobs[ix(b)].n);
            self.s.reunion_answer_bytes += asked.digests * DIGEST_ANSWER_BYTES
                + asked.lists * (RECORD_BYTES + n * RECORD_BYTES_PER_HOLDER);
            if let Some((at, winner)) = reunited {
                if let Some(division) = self.divisions.get_mut(&b) {
                    division.winner = Some(winner);
                }
                self.schedule(at.max(self.now.saturating_add(1)), Ev::Reunite(b));
            }
        }
    }

    /// Each version's list, in the order of `division.versions`, then the list hijacking byzantine nodes answer
    /// in catch-ups and reunions when the scenario has them: every index on one of them (or on no node), at an
    /// epoch beyond every real one, so only the weight rule keeps it out.
    fn version_lists(&self, division: &Division) -> Vec<VersionList> {
        let mut lists: Vec<VersionList> = division
            .versions
            .iter()
            .map(|&(side, v)| {
                let blob = &self.blobs[ix(v)];
                VersionList {
                    side,
                    holders: blob.holders.iter().map(|h| h.to_be_bytes()).collect(),
                    epoch: u64::from(blob.epoch),
                    repairer: if blob.repairer == NO_NODE {
                        Vec::new()
                    } else {
                        peer_key(blob.repairer)
                    },
                }
            })
            .collect();
        if self.sc.byzantine.as_ref().map(|b| b.behaviour) == Some(Behaviour::Hijack) {
            let forger = self
                .nodes
                .iter()
                .position(|n| n.byzantine == Some(Behaviour::Hijack))
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(NO_NODE);
            let epoch = lists.iter().map(|l| l.epoch).max().unwrap_or(0);
            lists.push(VersionList {
                side: FORGED_SIDE,
                holders: vec![forger.to_be_bytes(); division.fork_holders.len()],
                epoch: epoch.saturating_add(1000),
                repairer: peer_key(forger),
            });
        }
        lists
    }

    /// The list peer `a` answers when asked for it: its side's, or the forged one if it hijacks and the
    /// scenario has one (the last of `lists`).
    fn answer_of(&self, a: u32, lists: &[VersionList]) -> usize {
        let forged = lists.len().saturating_sub(1);
        if self.nodes[ix(a)].byzantine == Some(Behaviour::Hijack)
            && lists.get(forged).is_some_and(|l| l.side == FORGED_SIDE)
        {
            return forged;
        }
        let side = self.side_of(a);
        lists.iter().position(|l| l.side == side).unwrap_or(0)
    }

    /// When every live holder of blob `b`'s versions holds one list, by the node's reunion and catch-up rules,
    /// and which version's list that is; `None` when some never does within the run. Each holder is asked by
    /// the lists the other sides held when the partition healed.
    fn reunion_time(&self, b: u32, asked: &mut Asked) -> Option<(Millis, usize)> {
        let division = self.divisions.get(&b)?;
        let lists = self.version_lists(division);
        let fork: Vec<[u8; 4]> = division
            .fork_holders
            .iter()
            .map(|h| h.to_be_bytes())
            .collect();
        let mut last = self.now;
        let mut ends: BTreeSet<usize> = BTreeSet::new();
        for (v, version) in lists.iter().enumerate().take(division.versions.len()) {
            let maker = version
                .repairer
                .get(..4)
                .and_then(|k| <[u8; 4]>::try_from(k).ok());
            let former = holders::former_after(
                &fork,
                &[],
                &version.holders,
                &maker.unwrap_or(NO_NODE.to_be_bytes()),
            );
            let mut followers: Vec<u32> = self.blobs[ix(division.versions[v].1)]
                .holders
                .iter()
                .copied()
                .filter(|&h| {
                    h != NO_NODE
                        && self.nodes[ix(h)].alive
                        && self.nodes[ix(h)].byzantine != Some(Behaviour::Hijack)
                        && self.side_of(h) == version.side
                })
                .collect();
            followers.sort_unstable();
            followers.dedup();
            for h in followers {
                let (at, end) = self.holder_reunion(b, h, v, &lists, &former, asked)?;
                last = last.max(at);
                // Versions whose lists are alike (a side that never moved on from the same list) are one list.
                let same = lists
                    .iter()
                    .position(|l| l.list() == lists[end].list())
                    .unwrap_or(end);
                ends.insert(same);
            }
        }
        match ends.len() {
            0 => Some((last, 0)),
            1 => ends.first().map(|&end| (last, end)),
            _ => None,
        }
    }

    /// Holder `h` of version `v` of blob `b` comparing its list with the former holders `former`, scan after
    /// scan: when it holds its last list, and which version that is. `None` when it adopted a forged list.
    fn holder_reunion(
        &self,
        b: u32,
        h: u32,
        v: usize,
        lists: &[VersionList],
        former: &[holders::FormerHolder<[u8; 4]>],
        cost: &mut Asked,
    ) -> Option<(Millis, usize)> {
        let id = self.blobs[ix(b)].id;
        let grace = self.sc.repair.grace_ms;
        let interval = stewarding::SCAN_INTERVAL_MS;
        let phase =
            rng::splitmix64(self.seed ^ rng::splitmix64(u64::from(h) ^ (1 << 40))) % interval;
        let mut reunions: Reunions<[u8; 4]> = Reunions::default();
        let mut held = v;
        // The first scan after healing dials the former holders; the next asks them.
        let mut scan = self.now.saturating_add(phase).saturating_add(interval);
        let mut last_change = self.now;
        if let Some((w, at)) = self.catch_up(h, held, lists, scan, cost) {
            held = w;
            last_change = at;
        }
        // After an unsettled comparison no other starts before this time (`Reunions::handle_compared`).
        let mut retry_at: Option<Millis> = None;
        while scan <= self.sc.duration_ms {
            let alive = |p: &[u8; 4]| {
                let node = u32::from_be_bytes(*p);
                self.nodes.get(ix(node)).is_some_and(|n| n.alive)
            };
            let asked = reunions.due(scan, id, former, |p| (!alive(p)).then_some(scan), grace);
            if asked.is_empty() {
                match retry_at {
                    Some(until) if scan < until => {
                        while scan < until {
                            scan = scan.saturating_add(interval);
                        }
                        continue;
                    }
                    // Every reachable former holder answered the list held, or older: nothing more to adopt.
                    _ => return Some((last_change, held)),
                }
            }
            // As the node: the first `REUNION_ASKED`, then rounds while a newer list lacks the support.
            let asked: Vec<u32> = asked.iter().map(|p| u32::from_be_bytes(*p)).collect();
            let mut rest = &asked[..];
            let mut size = steward::REUNION_ASKED;
            let mut answered: Answered = Vec::new();
            let mut at = scan;
            let mut outcome_adopt: Option<usize> = None;
            let mut unsettled = false;
            let mut n_asked = 0usize;
            while !rest.is_empty() {
                let (round, later) = rest.split_at(size.min(rest.len()));
                rest = later;
                cost.digests += as_u64(round.len());
                n_asked = n_asked.saturating_add(round.len());
                answered.extend(
                    round
                        .iter()
                        .copied()
                        .filter(|&a| self.nodes[ix(a)].alive)
                        .map(|a| (a.to_be_bytes(), self.answer_of(a, lists))),
                );
                let round_trip = round
                    .iter()
                    .map(|&a| {
                        let (x, y) = (self.nodes[ix(h)].region, self.nodes[ix(a)].region);
                        rng::ceil_ms(self.regions.rtt_ms(x, y))
                    })
                    .max()
                    .unwrap_or(0);
                at = at.saturating_add(round_trip);
                let outcome =
                    holders::reunite(&lists[held].list(), former, &answer_views(&answered, lists));
                outcome_adopt = outcome
                    .adopt
                    .and_then(|adopted| lists.iter().position(|l| l.list() == adopted));
                unsettled = outcome.unsettled;
                size = outcome.next_round;
                if outcome_adopt.is_some() || !unsettled {
                    break;
                }
            }
            cost.lists += lists_to_fetch(lists, held, &answered);
            cost.forged_answers += as_u64(
                answered
                    .iter()
                    .filter(|&&(_, w)| lists[w].side == FORGED_SIDE)
                    .count(),
            );
            if outcome_adopt.is_some_and(|w| lists[w].side == FORGED_SIDE) {
                cost.forged_adopted += 1;
                return None;
            }
            if let Some(w) = outcome_adopt {
                held = w;
                last_change = at;
            }
            let now_held = lists[held].list();
            let settled: Vec<[u8; 4]> = answered
                .iter()
                .filter(|&&(_, w)| {
                    !holders::supersedes(
                        lists[w].epoch,
                        &lists[w].repairer,
                        now_held.epoch,
                        now_held.repairer,
                    )
                })
                .map(|&(key, _)| key)
                .collect();
            let unsettled = unsettled || answered.len() < n_asked;
            reunions.handle_compared(at, id, settled, unsettled, grace);
            retry_at = unsettled.then(|| at.saturating_add(grace.max(1)));
            scan = scan.saturating_add(interval);
            while scan < at {
                scan = scan.saturating_add(interval);
            }
        }
        // Still comparing at the end of the run (some answer stays newer and unsupported, as a hijacker's forged
        // list does): it holds what it last adopted. Whether all holders agree is the caller's to judge.
        Some((last_change, held))
    }

    /// The catch-up holder `h` of version `v` starts at its scan at `scan` when holders of k indexes of its list
    /// are back after they were gone (`steward::BlobDuties::catch_up`): it asks the holders, those back first
    /// ([`holders::CATCH_UP_ASKED`] at first, the others too if one answers a newer list), and adopts what holders
    /// of k indexes agree on (`holders::caught_up`). The version adopted and when; `None` when nothing is.
    fn catch_up(
        &self,
        h: u32,
        v: usize,
        lists: &[VersionList],
        scan: Millis,
        cost: &mut Asked,
    ) -> Option<(usize, Millis)> {
        // Shorter than the grace period, the cut made nobody gone.
        if self.healed_at.saturating_sub(self.divided_at) < self.sc.repair.grace_ms {
            return None;
        }
        let side = self.side_of(h);
        let held = lists[v].list();
        let listed: Vec<u32> = held
            .holders
            .iter()
            .map(|p| u32::from_be_bytes(*p))
            .collect();
        let back =
            |x: u32| x != NO_NODE && x != h && self.side_of(x) != side && self.nodes[ix(x)].alive;
        let k = usize::from(floe_protocol::encoding::source_shards_for(
            u16::try_from(listed.len()).unwrap_or(u16::MAX),
        ));
        if listed.iter().filter(|&&x| back(x)).count() < k {
            return None;
        }
        let mut peers: Vec<u32> = listed
            .iter()
            .copied()
            .filter(|&x| x != h && x != NO_NODE)
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers.sort_by_key(|&x| !back(x));
        let answer = |x: u32| -> Option<([u8; 4], usize)> {
            self.nodes[ix(x)]
                .alive
                .then(|| (x.to_be_bytes(), self.answer_of(x, lists)))
        };
        let round_trip = |asked: &[u32]| {
            asked
                .iter()
                .map(|&x| {
                    rng::ceil_ms(
                        self.regions
                            .rtt_ms(self.nodes[ix(h)].region, self.nodes[ix(x)].region),
                    )
                })
                .max()
                .unwrap_or(0)
        };
        let (first, rest) = peers.split_at(peers.len().min(holders::CATCH_UP_ASKED));
        let mut answered: Answered = first.iter().filter_map(|&x| answer(x)).collect();
        cost.digests += as_u64(first.len());
        let mut at = scan.saturating_add(round_trip(first));
        let newer = |w: usize| {
            holders::supersedes(
                lists[w].epoch,
                &lists[w].repairer,
                held.epoch,
                held.repairer,
            )
        };
        let agreed = |answered: &[([u8; 4], usize)]| {
            let adopted = holders::caught_up(&held, &answer_views(answered, lists))?;
            lists.iter().position(|l| l.list() == adopted)
        };
        // As the node: the others in rounds, until holders of k indexes agree.
        if answered.iter().any(|&(_, w)| newer(w)) {
            let mut rest = rest;
            while !rest.is_empty() && agreed(&answered).is_none() {
                let size = holders::catch_up_round(&held, &answer_views(&answered, lists));
                let (round, later) = rest.split_at(size.min(rest.len()));
                rest = later;
                answered.extend(round.iter().filter_map(|&x| answer(x)));
                cost.digests += as_u64(round.len());
                at = at.saturating_add(round_trip(round));
            }
        }
        cost.lists += lists_to_fetch(lists, v, &answered);
        cost.forged_answers += as_u64(
            answered
                .iter()
                .filter(|&&(_, w)| lists[w].side == FORGED_SIDE)
                .count(),
        );
        let adopted = agreed(&answered)?;
        if lists[adopted].side == FORGED_SIDE {
            cost.forged_adopted += 1;
            return None;
        }
        Some((adopted, at))
    }

    /// Every live holder of blob `b` holds one list now: the versions merge into the blob. Each holder deletes
    /// the slivers that list does not give it; a listed holder that no longer has its index gets it handed off
    /// by a peer that does; the side copies retire.
    pub(super) fn reunite(&mut self, b: u32) {
        let Some(division) = self.divisions.remove(&b) else {
            return;
        };
        let Some(&(_, winner)) = division.winner.and_then(|w| division.versions.get(w)) else {
            return;
        };
        let bytes = self.index_bytes(b);
        // What each side's holders have on disk: the slots of their own side's version.
        let mut on_disk: BTreeMap<(u32, u16), u8> = BTreeMap::new();
        for &(side, v) in &division.versions {
            let blob = &self.blobs[ix(v)];
            for (i, (&h, &state)) in blob.holders.iter().zip(blob.slot.iter()).enumerate() {
                if h != NO_NODE && state != MISSING && self.side_of(h) == side {
                    on_disk.insert((h, u16::try_from(i).unwrap_or(u16::MAX)), state);
                }
            }
        }
        let holders_now = self.blobs[ix(winner)].holders.clone();
        let mut slots = self.blobs[ix(winner)].slot.clone();
        for (i, (&h, state)) in holders_now.iter().zip(slots.iter_mut()).enumerate() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            if *state == MISSING || h == NO_NODE {
                continue;
            }
            if let Some(&held) = on_disk.get(&(h, i)) {
                *state = held;
                continue;
            }
            if on_disk.iter().any(|(&(_, j), &s)| j == i && s == GOOD) {
                self.s.slivers_handed_off += 1;
                self.s.handoff_bytes += self.blobs[ix(b)].sliver_bytes;
                self.nodes[ix(h)].stored = self.nodes[ix(h)].stored.saturating_add(bytes);
                *state = GOOD;
            } else {
                *state = MISSING;
            }
        }
        for &(h, i) in on_disk.keys() {
            if holders_now.get(usize::from(i)) != Some(&h) {
                self.nodes[ix(h)].stored = self.nodes[ix(h)].stored.saturating_sub(bytes);
                self.s.reunion_slivers_deleted += 1;
                self.s.reunion_bytes_deleted += bytes;
            }
        }
        let (epoch, repairer) = (
            self.blobs[ix(winner)].epoch,
            self.blobs[ix(winner)].repairer,
        );
        let version = division
            .versions
            .iter()
            .map(|&(_, v)| self.blobs[ix(v)].list_version)
            .max()
            .unwrap_or(0);
        let (mut live, mut durable) = (0, 0);
        for (&h, &state) in holders_now.iter().zip(slots.iter()) {
            let (l, d) = self.contribution(h, state);
            live += l;
            durable += d;
        }
        for (i, (&h, &state)) in holders_now.iter().zip(slots.iter()).enumerate() {
            if h != NO_NODE && state != MISSING {
                self.nodes[ix(h)]
                    .held
                    .push((b, u16::try_from(i).unwrap_or(u16::MAX)));
            }
        }
        let blob = &mut self.blobs[ix(b)];
        blob.holders = holders_now;
        blob.slot = slots;
        blob.epoch = epoch;
        blob.repairer = repairer;
        blob.list_version = version.saturating_add(1);
        blob.good_live = live;
        blob.durable = durable;
        for &(_, v) in division.versions.iter().skip(1) {
            self.blobs[ix(v)].status = Status::Reunited;
        }
        self.s.blobs_reunited += 1;
        let took = self.now.saturating_sub(self.healed_at);
        self.s.reunion_ms_max = self.s.reunion_ms_max.max(took);
        self.refresh(b);
        if self.divisions.is_empty() {
            self.node_side.clear();
        }
        // The reunited list is scanned as the node's next scan would: it may be over the per-network cap.
        self.schedule_reeval(b, self.now.saturating_add(1));
    }

    /// Blobs still divided at the end of the run and the sliver bytes their holders keep beyond the list that
    /// would win: both must be 0 once a partition has healed long enough before the end.
    pub(super) fn divided_at_end(&self) -> (u64, u64) {
        let mut extra = 0;
        for (&b, division) in &self.divisions {
            let bytes = self.index_bytes(b);
            let mut on_disk: BTreeSet<(u32, usize)> = BTreeSet::new();
            for &(side, v) in &division.versions {
                let blob = &self.blobs[ix(v)];
                for (i, (&h, &state)) in blob.holders.iter().zip(blob.slot.iter()).enumerate() {
                    if h != NO_NODE && state != MISSING && self.side_of(h) == side {
                        on_disk.insert((h, i));
                    }
                }
            }
            let n = usize::from(self.blobs[ix(b)].n);
            extra += as_u64(on_disk.len().saturating_sub(n)) * bytes;
        }
        (as_u64(self.divisions.len()), extra)
    }
}
