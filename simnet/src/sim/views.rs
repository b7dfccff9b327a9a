//! What each simulated node can see: who is gone in whose view (down or cut off past the grace period, or
//! failing challenges), reachability under partitions, and Kademlia-style lookups.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Views: liveness, reachability, lookups

    pub(super) fn unreachable_since(&self, x: u32, y: u32) -> Option<Millis> {
        self.active_partitions
            .iter()
            .filter_map(|&i| self.partitions.get(i))
            .filter(|p| p.in_a(x) != p.in_a(y))
            .map(|p| p.since)
            .min()
    }

    pub(super) fn blocked(&self, from: u32, to: u32) -> bool {
        self.active_partitions
            .iter()
            .filter_map(|&i| self.partitions.get(i))
            .any(|p| {
                let (a, b) = (p.in_a(from), p.in_a(to));
                (a && !b) || (!p.one_way && !a && b)
            })
    }

    /// Whether `viewer` considers holder `x` gone (down, or cut off, for at least the grace period, or failing
    /// its challenges).
    pub(super) fn gone_from(&self, viewer: u32, x: u32) -> bool {
        self.gone_view(viewer)(x)
    }

    /// [`Sim::gone_from`] for one viewer and many holders: the viewer's challenge tally and whether any partition
    /// is active are looked up once, not once per holder (evaluations test every holder of a blob).
    pub(super) fn gone_view(&self, viewer: u32) -> impl Fn(u32) -> bool + '_ {
        let grace = self.sc.repair.grace_ms;
        let threshold = self.sc.repair.challenge_failures;
        let partitioned = !self.active_partitions.is_empty();
        let tally = self.tallies.get(&viewer);
        let (now, down_at) = (self.now, self.down_at.as_slice());
        move |x: u32| {
            x != viewer
                && (down_at
                    .get(ix(x))
                    .is_some_and(|&at| at != Millis::MAX && now.saturating_sub(at) >= grace)
                    || (partitioned
                        && self
                            .unreachable_since(viewer, x)
                            .is_some_and(|since| now.saturating_sub(since) >= grace))
                    || tally.is_some_and(|tally| tally.is_failing(&x, threshold)))
        }
    }

    /// Holders of blob `b` whose sliver failed `viewer`'s challenges `challenge_failures` times in a row: gone
    /// for this blob in `viewer`'s eyes (`challenge::Tally::lost_holders`).
    pub(super) fn lost_in(&self, viewer: u32, b: u32) -> BTreeSet<u32> {
        let Some(tally) = self.tallies.get(&viewer) else {
            return BTreeSet::new();
        };
        let blob = &self.blobs[ix(b)];
        tally.lost_holders(&blob.id, self.sc.repair.challenge_failures, |index| {
            blob.holders.get(usize::from(index)).copied()
        })
    }

    /// Whether `x` is in `viewer`'s routing table.
    pub(super) fn believes(&self, viewer: u32, x: u32) -> bool {
        let staleness = self.sc.kademlia.staleness_ms;
        let node = &self.nodes[ix(x)];
        let listed = node.alive || self.now < node.down_since.saturating_add(staleness);
        listed
            && self
                .unreachable_since(viewer, x)
                .is_none_or(|since| self.now.saturating_sub(since) < staleness)
    }

    /// The `want` peers XOR-closest to `target` that `viewer` believes alive, closest first. Searches the
    /// smallest aligned subtree of the keyspace around `target` that holds enough of them: everything inside is
    /// closer than everything outside, so the answer is exact.
    pub(super) fn lookup(&self, viewer: u32, target: u64, want: usize) -> Vec<u32> {
        let total = self.kad.len();
        if want == 0 || total == 0 {
            return Vec::new();
        }
        let ratio = total / want;
        let mut bits: u32 = if ratio <= 1 { 64 } else { 64 - ratio.ilog2() };
        let range = loop {
            let (lo, hi) = if bits >= 64 {
                (0, u64::MAX)
            } else {
                let mask = (1u64 << bits) - 1;
                (target & !mask, target | mask)
            };
            let start = self.kad.partition_point(|e| e.0 < lo);
            let end = self.kad.partition_point(|e| e.0 <= hi);
            if bits >= 64
                || (end - start >= want
                    && self.kad[start..end]
                        .iter()
                        .filter(|e| self.believes(viewer, e.1))
                        .count()
                        >= want)
            {
                break start..end;
            }
            bits += 1;
        };
        let mut found: Vec<(u64, u32)> = self.kad[range]
            .iter()
            .filter(|e| self.believes(viewer, e.1))
            .map(|&(key, id)| (key ^ target, id))
            .collect();
        if found.len() > want {
            found.select_nth_unstable(want - 1);
            found.truncate(want);
        }
        found.sort_unstable();
        found.into_iter().map(|(_, id)| id).collect()
    }

    pub(super) fn pick_live_honest(&mut self) -> Option<u32> {
        let count = self.nodes.len();
        for _ in 0..32 {
            let i = rng::below(&mut self.world, count);
            if self.nodes[i].alive && self.nodes[i].byzantine.is_none() {
                return u32::try_from(i).ok();
            }
        }
        let start = rng::below(&mut self.world, count);
        (0..count)
            .map(|j| (start + j) % count)
            .find(|&i| self.nodes[i].alive && self.nodes[i].byzantine.is_none())
            .and_then(|i| u32::try_from(i).ok())
    }
}
