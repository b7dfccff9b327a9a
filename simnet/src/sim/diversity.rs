//! Networks in the simulator: which network each node sits in, the per-network cap on a blob's neighbourhood
//! (`floe_protocol::diversity`, the rule the node applies to the /24s it reaches peers on), and the attacker of
//! `[sybil]`, who grinds peer IDs next to blob IDs from a few networks.
//!
//! Networks here are plain numbers: honest node i sits in network i (or i mod `networks.count`), the attacker's
//! networks count down from `u32::MAX`. When every node has a network of its own the cap never binds, so
//! lookups skip it and such runs replay exactly as before the cap existed.

use super::*;
use floe_protocol::diversity as rule;

/// The attacker's first network; its others count down from here, far from any honest one.
const SYBIL_NETWORK_BASE: u32 = u32::MAX;

/// How the per-network cap applies in this run.
#[derive(Debug, Default)]
pub(super) struct Networks {
    /// Lookups spread over networks: the cap is on, and some network holds more than one node.
    pub(super) active: bool,
    /// The attacker's nodes, all made at the start.
    pub(super) sybil_nodes: usize,
    /// The attacker's networks (A).
    pub(super) sybil_networks: usize,
}

impl Sim {
    /// The network of honest node `id`.
    pub(super) fn honest_network(&self, id: u32) -> u32 {
        match self.sc.networks.count {
            0 => id,
            count => id % count,
        }
    }

    /// S: the networks among the peers known. Departed honest nodes still count, as routing tables keep them a
    /// while; the cap only has to be about right.
    pub(super) fn network_total(&self) -> usize {
        let honest = self.nodes.len().saturating_sub(self.networks.sybil_nodes);
        let honest_networks = match self.sc.networks.count {
            0 => honest,
            count => honest.min(usize::try_from(count).unwrap_or(usize::MAX)),
        };
        honest_networks.saturating_add(self.networks.sybil_networks)
    }

    /// The peers of `viewer`'s lookup around `target`, closest first, spread over networks for an n-sliver blob
    /// (`diversity::spread`): looked up wider until `within_cap` of them fit the cap, or the keyspace is
    /// exhausted. Without the cap, the `n` closest.
    pub(super) fn spread_lookup(
        &self,
        viewer: u32,
        target: u64,
        n: u16,
        within_cap: usize,
    ) -> Vec<u32> {
        if !self.networks.active {
            return self.lookup(viewer, target, within_cap.max(usize::from(n)));
        }
        let cap = rule::cap(n, self.network_total());
        let network = |id: &u32| Some(self.nodes[ix(*id)].network);
        let mut want = within_cap.max(usize::from(n));
        loop {
            let mut found = self.lookup(viewer, target, want);
            let exhausted = found.len() < want || want >= self.kad.len();
            let mut per_network: BTreeMap<u32, usize> = BTreeMap::new();
            let fit = found
                .iter()
                .filter(|&&id| {
                    let count = per_network.entry(self.nodes[ix(id)].network).or_insert(0);
                    *count += 1;
                    *count <= cap
                })
                .count();
            if fit >= within_cap || exhausted {
                rule::spread(&mut found, network, cap, &BTreeMap::new());
                return found;
            }
            want = want.saturating_mul(2);
        }
    }

    /// A repair's candidates with the cap on (or newcomers held back): the live holders of `b` that `usable`
    /// accepts, and the peers that take the gone holders' indexes (`diversity::repair_candidates`: spread over
    /// networks, peers younger than `repair.newcomer_age_ms` last), from a lookup wide enough for both.
    pub(super) fn spread_repair_candidates(
        &self,
        viewer: u32,
        b: u32,
        gone: impl Fn(u32) -> bool,
        usable: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        let blob = &self.blobs[ix(b)];
        let n = blob.n;
        let cap = rule::cap(n, self.network_total());
        let mut kept: Vec<u32> = blob.holders.iter().copied().filter(|&h| !gone(h)).collect();
        // Wide enough for the kept holders and as many newcomers as there are indexes to place.
        let room = usize::from(n).saturating_sub(kept.len());
        let live: Vec<u32> = self
            .spread_lookup(viewer, blob.kad, n, usize::from(n).saturating_add(room))
            .into_iter()
            .filter(|&c| !gone(c) && usable(c))
            .collect();
        let network = |id: &u32| Some(self.nodes[ix(*id)].network);
        let age = self.sc.repair.newcomer_age_ms;
        let known_for = |id: &u32| Some(self.now.saturating_sub(self.nodes[ix(*id)].joined_at));
        let mut newcomers = rule::repair_candidates(n, &kept, &live, network, cap, known_for, age);
        newcomers.sort_unstable();
        kept.sort_unstable();
        live.into_iter()
            .filter(|c| kept.binary_search(c).is_ok() || newcomers.binary_search(c).is_ok())
            .collect()
    }

    /// Makes the `[sybil]` attacker's nodes (before any write) and decides whether lookups spread.
    pub(super) fn add_sybils(&mut self) {
        if let Some(sybil) = self.sc.sybil.clone() {
            let targets = sybil
                .target_blobs
                .unwrap_or(self.sc.workload.blobs)
                .min(self.sc.workload.blobs);
            let mut entries: Vec<(u64, u32)> = Vec::new();
            for b in 0..targets {
                let blob = &self.blobs[ix(b)];
                let (kad, n) = (blob.kad, u32::from(blob.n));
                let per_network = n.div_ceil(sybil.networks);
                // Ground IDs: XOR distances 1, 2, 3, … from the blob, closer than any honest peer.
                let mut offset = 1u64;
                for net in 0..sybil.networks {
                    for _ in 0..per_network {
                        let id = self.push_node(SYBIL_NETWORK_BASE - net);
                        self.nodes[ix(id)].byzantine = Some(sybil.behaviour);
                        entries.push((kad ^ offset, id));
                        offset += 1;
                    }
                }
            }
            self.networks.sybil_nodes = entries.len();
            self.networks.sybil_networks = usize::try_from(sybil.networks).unwrap_or(usize::MAX);
            self.kad.extend(entries);
            self.kad.sort_unstable();
        }
        self.networks.active = self.sc.networks.cap
            && (self.sc.networks.count > 0 || self.networks.sybil_networks > 0);
    }
}
