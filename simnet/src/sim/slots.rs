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
        let blob = &mut self.blobs[bi];
        if old != to || (state == GOOD && old_state != GOOD) {
            blob.settled_from = self.now;
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
        if blob.status != Status::Certified {
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
        self.refresh_gone_at(node);
    }

    pub(super) fn refresh_gone_at(&mut self, node: u32) {
        let n = &self.nodes[ix(node)];
        let at = if n.alive {
            Millis::MAX
        } else {
            n.down_since.saturating_add(self.sc.repair.grace_ms)
        };
        if let Some(slot) = self.gone_at.get_mut(ix(node)) {
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

    /// One challenge round of blob `b`: its leader challenges the other holders and its deputy the leader, with
    /// `floe_protocol::challenge` choosing the targets from the challenger's own stream and judging the outcome
    /// (a holder passes when it is reachable, honest and its slot is good). A holder whose failures reach the
    /// threshold is gone for that challenger, and the blobs it holds are evaluated for repair.
    pub(super) fn challenge_round(&mut self, b: u32) {
        let bi = ix(b);
        if self.blobs[bi].status != Status::Certified || self.blobs[bi].lost {
            return;
        }
        let every = self.sc.repair.challenge_interval_ms;
        self.schedule(self.now.saturating_add(every), Ev::ChallengeRound(b));
        let Some(viewer) = self.blobs[bi]
            .holders
            .iter()
            .copied()
            .find(|&h| self.nodes[ix(h)].alive)
        else {
            return;
        };
        let keys: Vec<PeerKey> = self.blobs[bi]
            .holders
            .iter()
            .map(|&x| peer_key(x))
            .collect();
        let gone_in = |sim: &Self, viewer: u32| -> BTreeSet<PeerKey> {
            let lost = sim.lost_in(viewer, b);
            let gone = sim.gone_view(viewer);
            sim.blobs[bi]
                .holders
                .iter()
                .filter(|&&x| gone(x) || lost.contains(&x))
                .map(|&x| peer_key(x))
                .collect()
        };
        let gone = gone_in(self, viewer);
        let Some(leader) = repair::leader(&keys, &gone).and_then(|k| node_of(k)) else {
            return;
        };
        let mut without_leader = gone;
        without_leader.insert(peer_key(leader));
        let deputy = repair::leader(&keys, &without_leader).and_then(|k| node_of(k));
        let segments = self.blobs[bi].size.div_ceil(DEFAULT_SEGMENT_SIZE).max(1);
        let answer_bytes = self.blobs[bi].sliver_bytes.div_ceil(segments);
        for challenger in std::iter::once(leader).chain(deputy) {
            let node = &self.nodes[ix(challenger)];
            if !node.alive || node.byzantine.is_some() {
                continue;
            }
            let me = peer_key(challenger);
            let gone = gone_in(self, challenger);
            let blob = &self.blobs[bi];
            let holds_whole = blob
                .holders
                .iter()
                .zip(blob.slot.iter())
                .any(|(&h, &slot)| h == challenger && slot == GOOD);
            // As in the node, the settle time only holds back the round itself: the re-evaluation and the tally's
            // bookkeeping below run on every scan.
            let settled =
                self.now.saturating_sub(blob.settled_from) >= self.sc.repair.challenge_settle_ms;
            let role = challenge::role(&keys, &gone, &me, holds_whole);
            if role == Role::Bystander {
                continue;
            }
            // Like the node's periodic scan: a challenger that counts a holder of this blob gone by its
            // challenges (a holder list can come to name a holder it struck out before) has the blob evaluated
            // again. Holders gone by liveness have their own schedule.
            let threshold = self.sc.repair.challenge_failures;
            let by_challenges = self.tallies.get(&challenger).is_some_and(|tally| {
                self.blobs[bi]
                    .holders
                    .iter()
                    .any(|h| tally.is_failing(h, threshold))
            }) || !self.lost_in(challenger, b).is_empty();
            if by_challenges {
                self.schedule_reeval(b, self.now.saturating_add(1));
            }
            let suspects = match self.tallies.get_mut(&challenger) {
                Some(tally) => {
                    let blob = &self.blobs[bi];
                    let holder_of = |index: u16| blob.holders.get(usize::from(index)).copied();
                    tally.forget_moved(&blob.id, holder_of);
                    tally.suspects(&blob.id, holder_of)
                }
                None => std::collections::BTreeMap::new(),
            };
            if !settled {
                continue;
            }
            let seed = rand::RngExt::random::<u64>(&mut self.nodes[ix(challenger)].rng);
            for asked in challenge::round(&keys, &gone, &me, &role, segments, &suspects, seed) {
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
                let threshold = self.sc.repair.challenge_failures;
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
                if sliver_lost {
                    // A sliver lost among good ones: only this blob is affected.
                    self.s.slivers_found_lost += 1;
                    // Re-evaluated next millisecond: this one may have evaluated the blob already.
                    self.schedule_reeval(b, self.now.saturating_add(1));
                }
                if holder_failing {
                    self.s.holders_failing += 1;
                    let held = self.compact_held(holder);
                    let mut blobs: Vec<u32> =
                        held.iter().map(|&(held_blob, _)| held_blob).collect();
                    blobs.dedup();
                    self.nodes[ix(holder)].held = held;
                    let next = self.now.saturating_add(1);
                    for held_blob in blobs {
                        self.schedule_reeval(held_blob, next);
                    }
                }
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
