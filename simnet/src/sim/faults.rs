//! Faults: crashes, restarts, departures, churn arrivals, partitions, regional outages and bit rot.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Faults

    pub(super) fn crash(&mut self, node: u32, wipe: bool, permanent: bool) {
        let Some(n) = self.nodes.get_mut(ix(node)) else {
            return;
        };
        if n.departed {
            return;
        }
        if permanent {
            n.departed = true;
            self.kad_departed += 1;
        }
        if !n.alive {
            // Already down (another fault): a permanent departure still loses the disk.
            if wipe {
                self.wipe(node);
            }
            return;
        }
        self.set_alive(node, false);
        // Its steward is process memory: liveness, losses, settling and challenge times start again.
        let steward = self.new_steward();
        self.stewards[ix(node)] = steward;
        let n = &mut self.nodes[ix(node)];
        n.down_since = self.now;
        n.incarnation = n.incarnation.wrapping_add(1);
        let incarnation = n.incarnation;
        self.refresh_down_at(node);
        self.s.crashes += 1;
        if wipe {
            self.wipe(node);
        }
        if self.sc.repair.enabled {
            let at = self.now.saturating_add(self.sc.repair.grace_ms);
            self.schedule(at, Ev::DepartureCheck { node, incarnation });
        }
    }

    pub(super) fn restart(&mut self, node: u32) {
        let Some(n) = self.nodes.get(ix(node)) else {
            return;
        };
        if n.alive || n.departed {
            return;
        }
        self.set_alive(node, true);
        let now = self.now as f64;
        let n = &mut self.nodes[ix(node)];
        n.up_free = n.up_free.max(now);
        n.down_free = n.down_free.max(now);
        n.cpu_free = n.cpu_free.max(now);
        // The node's checked-segment cache is memory: a restart forgets it.
        let forgotten: Vec<(u32, u32)> = self
            .checked
            .range((node, 0)..=(node, u32::MAX))
            .copied()
            .collect();
        for key in forgotten {
            self.checked.remove(&key);
        }
        self.pass_deletions_on(node);
    }

    pub(super) fn departure_check(&mut self, node: u32, incarnation: u32) {
        let n = &self.nodes[ix(node)];
        if n.alive || n.incarnation != incarnation {
            return;
        }
        let held = self.compact_held(node);
        let mut blobs: Vec<u32> = held.iter().map(|&(b, _)| b).collect();
        blobs.dedup();
        self.nodes[ix(node)].held = held;
        for b in blobs {
            self.evaluate(b);
        }
    }

    pub(super) fn crash_fault(&mut self, i: usize) {
        let Some(fault) = self.sc.crash.get(i).cloned() else {
            return;
        };
        let victims: Vec<u32> = if fault.nodes.is_empty() {
            let alive: Vec<u32> = (0..self.nodes.len())
                .filter(|&n| self.nodes[n].alive)
                .filter_map(|n| u32::try_from(n).ok())
                .collect();
            let count = fraction_of(fault.fraction.unwrap_or(0.0), alive.len());
            self.choose(alive, count)
        } else {
            fault
                .nodes
                .iter()
                .copied()
                .filter(|&n| self.nodes.get(ix(n)).is_some_and(|x| x.alive))
                .collect()
        };
        for node in victims {
            self.crash(node, fault.wipe, false);
            if let Some(at) = fault.restart_at_ms {
                self.schedule(at, Ev::Restart(node));
            }
        }
    }

    pub(super) fn churn_arrival(&mut self) {
        let Some(churn) = self.sc.churn.clone() else {
            return;
        };
        let id = self.add_node();
        if let Some(byz) = self.sc.byzantine.clone()
            && rng::chance(&mut self.world, byz.fraction)
        {
            self.nodes[ix(id)].byzantine = Some(byz.behaviour);
        }
        let node = &mut self.nodes[ix(id)];
        let session = rng::weibull(&mut node.rng, churn.session_shape, churn.session_scale_ms);
        self.schedule(
            self.now.saturating_add(rng::ceil_ms(session)),
            Ev::ChurnDeparture(id),
        );
        let gap = rng::exponential(&mut self.world, 3_600_000.0 / churn.arrivals_per_hour);
        self.schedule(
            self.now.saturating_add(rng::ceil_ms(gap).max(1)),
            Ev::ChurnArrival,
        );
        // Departed peers past the staleness window never come back into any view: drop them from the keyspace
        // once they outnumber the live ones.
        if self.kad_departed > 64 && as_u64(self.kad_departed) > self.alive_count {
            let staleness = self.sc.kademlia.staleness_ms;
            let now = self.now;
            let nodes = &self.nodes;
            self.kad.retain(|&(_, id)| {
                let n = &nodes[ix(id)];
                !n.departed || now < n.down_since.saturating_add(staleness)
            });
            self.kad_departed = self.kad.iter().filter(|e| nodes[ix(e.1)].departed).count();
        }
    }

    pub(super) fn partition_start(&mut self, i: usize) {
        let Some(fault) = self.sc.partition.get(i).cloned() else {
            return;
        };
        let count = self.nodes.len();
        let mut in_a = vec![false; count];
        if let Some(fraction) = fault.fraction {
            let all: Vec<u32> = (0..count).filter_map(|n| u32::try_from(n).ok()).collect();
            let chosen = self.choose(all, fraction_of(fraction, count));
            for n in chosen {
                in_a[ix(n)] = true;
            }
        } else {
            let regions: Vec<u8> = fault
                .regions
                .iter()
                .filter_map(|name| self.regions.index(name))
                .collect();
            for (flag, node) in in_a.iter_mut().zip(&self.nodes) {
                *flag = regions.contains(&node.region);
            }
        }
        self.partitions[i] = PartitionState {
            active: true,
            since: self.now,
            one_way: fault.one_way,
            in_a,
        };
        if !self.active_partitions.contains(&i) {
            self.active_partitions.push(i);
        }
        self.divide();
        if self.sc.repair.enabled {
            let at = self.now.saturating_add(self.sc.repair.grace_ms);
            self.schedule(at, Ev::PartitionCheck(u16::try_from(i).unwrap_or(u16::MAX)));
        }
    }

    pub(super) fn outage_start(&mut self, i: usize) {
        let Some(region) = self
            .sc
            .outage
            .get(i)
            .and_then(|o| self.regions.index(&o.region))
        else {
            return;
        };
        let victims: Vec<u32> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].alive && self.nodes[n].region == region)
            .filter_map(|n| u32::try_from(n).ok())
            .collect();
        for &node in &victims {
            self.crash(node, false, false);
        }
        self.outage_down[i] = victims;
    }

    /// One bit-rot event at the maximum rate (every slot of every blob); thinned to slots holding a good sliver,
    /// so each stored sliver rots at the configured rate.
    pub(super) fn bitrot(&mut self) {
        let gap = rng::exponential(&mut self.world, self.bitrot_mean_ms);
        self.schedule(
            self.now.saturating_add(rng::ceil_ms(gap).max(1)),
            Ev::BitRot,
        );
        let b = rng::below(&mut self.world, self.originals);
        let slots = self.blobs.get(b).map_or(0, |blob| blob.slot.len());
        let i = rng::below(&mut self.world, usize::from(self.sc.shards()));
        if i < slots && self.blobs[b].slot[i] == GOOD {
            let holder = self.blobs[b].holders[i];
            let (b, i) = (
                u32::try_from(b).unwrap_or(u32::MAX),
                u16::try_from(i).unwrap_or(0),
            );
            self.slot_change(b, i, holder, CORRUPT);
            self.s.bitrot_events += 1;
        }
    }
}
