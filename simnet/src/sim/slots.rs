//! Slot bookkeeping: which node holds which sliver of which blob in which state, and the availability and
//! durability counters kept up to date as slots change.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Slot bookkeeping and availability counters

    pub(super) fn contribution(&self, node: u32, state: u8) -> (u32, u32) {
        if node == NO_NODE || state != GOOD {
            return (0, 0);
        }
        let n = &self.nodes[ix(node)];
        if n.byzantine.is_some() {
            return (0, 0);
        }
        (u32::from(n.alive), 1)
    }

    pub(super) fn slot_change(&mut self, b: u32, index: u16, to: u32, state: u8) {
        let (bi, i) = (ix(b), usize::from(index));
        let Some(&old) = self.blobs[bi].holders.get(i) else {
            return;
        };
        let old_state = self.blobs[bi].slot[i];
        let (old_live, old_durable) = self.contribution(old, old_state);
        let (new_live, new_durable) = self.contribution(to, state);
        // The capacity model: an occupied slot's bytes count on its holder.
        let bytes = self.index_bytes(b);
        // A holder on another side of a partition keeps its sliver: its own side's list still gives it.
        if old_state != MISSING
            && self.follows(old, b)
            && let Some(node) = self.nodes.get_mut(ix(old))
        {
            node.stored = node.stored.saturating_sub(bytes);
        }
        if state != MISSING
            && let Some(node) = self.nodes.get_mut(ix(to))
        {
            node.stored = node.stored.saturating_add(bytes);
        }
        let blob = &mut self.blobs[bi];
        if old != to {
            blob.list_version += 1;
        }
        blob.holders[i] = to;
        blob.slot[i] = state;
        blob.good_live = (blob.good_live + new_live).saturating_sub(old_live);
        blob.durable = (blob.durable + new_durable).saturating_sub(old_durable);
        if state != MISSING && (old != to || old_state == MISSING) {
            self.nodes[ix(to)].held.push((b, index));
        }
        self.refresh(b);
    }

    pub(super) fn refresh(&mut self, b: u32) {
        let blob = &mut self.blobs[ix(b)];
        // A side's copy stays out of the counters (`sim::sides`).
        if blob.status != Status::Certified || blob.copy_of.is_some() {
            return;
        }
        let k = u32::from(blob.k);
        let readable = blob.good_live >= k;
        if readable != blob.readable {
            blob.readable = readable;
            if readable {
                self.readable += 1;
            } else {
                self.readable -= 1;
            }
        }
        if !blob.lost && blob.durable < k {
            blob.lost = true;
            self.lost += 1;
        }
    }

    /// The node's held slots, de-duplicated and without stale entries (taken out; put it back).
    pub(super) fn compact_held(&mut self, node: u32) -> Vec<(u32, u16)> {
        let mut held = std::mem::take(&mut self.nodes[ix(node)].held);
        held.retain(|&(b, i)| self.blobs[ix(b)].holders.get(usize::from(i)) == Some(&node));
        held.sort_unstable();
        held.dedup();
        held
    }

    pub(super) fn set_alive(&mut self, node: u32, alive: bool) {
        let held = self.compact_held(node);
        let n = &mut self.nodes[ix(node)];
        if n.alive == alive {
            n.held = held;
            return;
        }
        n.alive = alive;
        let honest = n.byzantine.is_none();
        if alive {
            self.alive_count += 1;
        } else {
            self.alive_count -= 1;
        }
        if honest {
            for &(b, i) in &held {
                let blob = &mut self.blobs[ix(b)];
                if blob.slot[usize::from(i)] == GOOD {
                    if alive {
                        blob.good_live += 1;
                    } else {
                        blob.good_live = blob.good_live.saturating_sub(1);
                    }
                    self.refresh(b);
                }
            }
        }
        self.nodes[ix(node)].held = held;
        self.refresh_down_at(node);
    }

    pub(super) fn refresh_down_at(&mut self, node: u32) {
        let n = &self.nodes[ix(node)];
        let at = if n.alive { Millis::MAX } else { n.down_since };
        if let Some(slot) = self.down_at.get_mut(ix(node)) {
            *slot = at;
        }
    }

    pub(super) fn wipe(&mut self, node: u32) {
        let held = self.compact_held(node);
        for &(b, i) in &held {
            if self.blobs[ix(b)].slot[usize::from(i)] != MISSING {
                self.slot_change(b, i, node, MISSING);
            }
        }
        // Keep the entries: the node is still named as holder, and its departure must find these blobs.
        self.nodes[ix(node)].held = held;
    }

    pub(super) fn certify(&mut self, b: u32, latency: Millis) {
        let blob = &mut self.blobs[ix(b)];
        if blob.status != Status::Pending {
            return;
        }
        blob.status = Status::Certified;
        self.certified += 1;
        self.refresh(b);
        self.plan_deletion(b);
        self.write_hist.record(latency);
        self.interval.write_ms.push(latency);
        let every = self.sc.repair.challenge_interval_ms;
        if every > 0 && self.sc.repair.enabled {
            // Spread the blobs' rounds over the interval, by a hash (no draw, so other streams do not shift).
            let offset = rng::splitmix64(self.seed ^ u64::from(b).rotate_left(32)) % every;
            self.schedule(
                self.now.saturating_add(offset).saturating_add(1),
                Ev::ChallengeRound(b),
            );
        }
    }

    /// One challenge round of blob `b`, due every `challenge_interval_ms`: the blob is scanned at its live
    /// holders in list order until its deputy has been (its leader comes first), and their stewards decide
    /// whether to challenge now (settled, quiet, due) and whom ([`Sim::scan`]).
    pub(super) fn challenge_round(&mut self, b: u32) {
        let bi = ix(b);
        if self.blobs[bi].status != Status::Certified || self.blobs[bi].lost || !self.is_live(b) {
            return;
        }
        let every = self.sc.repair.challenge_interval_ms;
        self.schedule(self.now.saturating_add(every), Ev::ChallengeRound(b));
        let live: Vec<u32> = self.blobs[bi]
            .holders
            .iter()
            .copied()
            .filter(|&h| self.nodes[ix(h)].alive)
            .take(4)
            .collect();
        let mut scanned: Vec<u32> = Vec::new();
        for h in live {
            if scanned.contains(&h) {
                continue;
            }
            scanned.push(h);
            if self.scan(b, h).1 {
                break;
            }
        }
    }

    /// Sliver bytes one index of blob `b` takes on its holder: every run of a streamed blob, else its sliver.
    pub(super) fn index_bytes(&self, b: u32) -> u64 {
        let blob = &self.blobs[ix(b)];
        if blob.run_bytes.is_empty() {
            blob.sliver_bytes
        } else {
            blob.run_bytes.iter().sum()
        }
    }

    /// Whether `node` has room for `bytes` more for `purpose` (`[disk] capacity_bytes`, with the repair reserve
    /// of `room::usable`; the simulator's peers know each other's room exactly, where the node's learn it from
    /// gossip and refusals).
    pub(super) fn has_room(&self, node: u32, bytes: u64, purpose: room::Purpose) -> bool {
        let capacity = self.sc.disk.capacity_bytes;
        capacity == 0
            || self.nodes.get(ix(node)).is_some_and(|n| {
                room::usable(capacity.saturating_sub(n.stored), capacity, purpose) >= bytes
            })
    }

    /// The current epoch (`workload.epoch_ms`; 0 without lifetimes).
    pub(super) fn current_epoch(&self) -> u64 {
        match self.sc.workload.epoch_ms {
            0 => 0,
            ms => lifetime::epoch_at(self.now, ms),
        }
    }

    /// Whether blob `b` is within its lifetime now (always, without lifetimes).
    pub(super) fn is_live(&self, b: u32) -> bool {
        lifetime::is_live(self.blobs[ix(b)].end_epoch, self.current_epoch())
    }

    /// A write of blob `b` starts: with lifetimes, it is stored until `epochs` from now, and its holders drop it
    /// once that epoch and the grace epoch are over (`lifetime::is_expired`).
    pub(super) fn set_lifetime(&mut self, b: u32) {
        let ms = self.sc.workload.epoch_ms;
        if ms == 0 {
            return;
        }
        let end = self
            .current_epoch()
            .saturating_add(self.blobs[ix(b)].epochs);
        self.blobs[ix(b)].end_epoch = end;
        let drop_at = lifetime::end_of(end.saturating_add(lifetime::GRACE_EPOCHS), ms);
        self.schedule(drop_at, Ev::Expire(b));
    }

    /// Blob `b`'s lifetime and grace epoch are over: every holder drops its slivers (freeing its capacity), and
    /// a certified blob leaves availability and reads.
    pub(super) fn expire(&mut self, b: u32) {
        let bi = ix(b);
        // Out of the counts first: dropping its slivers is not a durability loss.
        if self.blobs[bi].status == Status::Certified {
            let blob = &mut self.blobs[bi];
            blob.status = Status::Expired;
            if blob.readable {
                blob.readable = false;
                self.readable -= 1;
            }
            self.certified -= 1;
            self.s.blobs_expired += 1;
        }
        for index in 0..self.blobs[bi].holders.len() {
            if self.blobs[bi].slot.get(index) != Some(&MISSING) {
                let index = u16::try_from(index).unwrap_or(u16::MAX);
                let holder = self.blobs[bi].holders[usize::from(index)];
                self.slot_change(b, index, holder, MISSING);
            }
        }
    }

    pub(super) fn fail_write(&mut self, b: u32) {
        let blob = &mut self.blobs[ix(b)];
        if blob.status == Status::Pending {
            blob.status = Status::Failed;
            self.s.writes_failed += 1;
        }
    }
}
