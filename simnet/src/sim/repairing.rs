//! Repair: evaluating a blob with the protocol's rules (leaders, `steward::repair_now`, claims heard by gossip),
//! and the repair driver over `floe_protocol::repair::Repair`; storage challenges.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Repair

    pub(super) fn schedule_reeval(&mut self, b: u32, at: Millis) {
        if !self.sc.repair.enabled {
            return;
        }
        let blob = &mut self.blobs[ix(b)];
        if blob.reeval_at.is_none_or(|t| at < t) {
            blob.reeval_at = Some(at);
            self.schedule(at, Ev::Reevaluate(b));
        }
    }

    /// Whether `listener` has received the announcement of `claim` by now.
    pub(super) fn heard(&self, claim: &Claim, listener: u32) -> bool {
        if claim.leader == listener {
            return true;
        }
        let gossip = &self.sc.gossip;
        let draw = rng::splitmix64(
            self.seed ^ rng::splitmix64(claim.serial ^ (u64::from(listener) << 40)),
        );
        if rng::unit_from_hash(draw) < gossip.loss {
            return false;
        }
        let delay = gossip.hop_latency_ms + rng::splitmix64(draw) % gossip.heartbeat_ms.max(1);
        self.now >= claim.at.saturating_add(delay) && !self.blocked(claim.leader, listener)
    }

    /// Decides whether blob `b` needs a repair and, if so, who starts it.
    pub(super) fn evaluate(&mut self, b: u32) {
        if !self.sc.repair.enabled {
            return;
        }
        let bi = ix(b);
        if self.blobs[bi].evaluated_at == self.now {
            return;
        }
        self.blobs[bi].evaluated_at = self.now;
        let leaders = {
            let blob = &self.blobs[bi];
            if blob.status != Status::Certified || blob.holders.is_empty() {
                return;
            }
            // Views differ under partitions, and once challenges run (each challenger counts its own failing
            // holders as gone).
            let partitioned = !self.active_partitions.is_empty() || !self.tallies.is_empty();
            let mut leaders: Vec<u32> = Vec::new();
            // Without partitions everyone shares one view, and the first live holder's view decides. With
            // partitions each side has its own view and possibly its own leader; the scan looks at the first 64
            // live holders, which in practice covers every side.
            for &h in blob
                .holders
                .iter()
                .filter(|&&h| self.nodes[ix(h)].alive)
                .take(64)
            {
                if leaders.contains(&h) {
                    continue;
                }
                // `repair::leader` takes the first holder not gone, so it only looks at the holders up to and
                // including that one: hand it that prefix (same answer, without n keys per evaluation).
                let lost = self.lost_in(h, b);
                let gone_h = self.gone_view(h);
                let gone_to_h = |x: u32| gone_h(x) || lost.contains(&x);
                let Some(end) = blob.holders.iter().position(|&x| !gone_to_h(x)) else {
                    continue;
                };
                let prefix = &blob.holders[..=end];
                let gone: BTreeSet<u32> =
                    prefix.iter().copied().filter(|&x| gone_to_h(x)).collect();
                if repair::leader(prefix, &gone) == Some(&h) {
                    leaders.push(h);
                }
                if !partitioned || leaders.len() >= 4 {
                    break;
                }
            }
            leaders
        };
        let min_lost = self.sc.repair.min_lost;
        let shards = u16::try_from(self.blobs[bi].holders.len()).unwrap_or(u16::MAX);
        for leader in leaders {
            if self.nodes[ix(leader)].byzantine.is_some() {
                self.s.repair_evaluations_blocked_by_byzantine_leader += 1;
                continue;
            }
            let lost_here = self.lost_in(leader, b);
            let blob = &self.blobs[bi];
            let (now, gone_at) = (self.now, self.gone_at.as_slice());
            // When a holder that is out of reach but still within its grace period would become gone: while one
            // is, the node's repair waits for it (`steward::repair_now`), so that holders lost together are
            // rebuilt in one repair.
            let mut pending_until: Option<Millis> = None;
            let mut pending = |at: Millis| {
                pending_until = Some(pending_until.map_or(at, |t| t.min(at)));
            };
            let lost = if self.active_partitions.is_empty()
                && lost_here.is_empty()
                && !self.tallies.contains_key(&leader)
            {
                // The common case, every view alike: only departures count. This runs for every blob a departure
                // touches, so it is the bare loop of `gone_view` without the partition and challenge tests.
                let mut lost = 0;
                for &x in blob.holders.iter().filter(|&&x| x != leader) {
                    match gone_at.get(ix(x)) {
                        Some(&at) if now >= at => lost += 1,
                        Some(&at) if at != Millis::MAX => pending(at),
                        _ => {}
                    }
                }
                lost
            } else {
                let gone = self.gone_view(leader);
                let grace = self.sc.repair.grace_ms;
                let mut lost = 0;
                for &x in blob.holders.iter().filter(|&&x| x != leader) {
                    if gone(x) || lost_here.contains(&x) {
                        lost += 1;
                    } else if let Some(&at) = gone_at.get(ix(x)).filter(|&&at| at != Millis::MAX) {
                        pending(at);
                    } else if let Some(since) = self.unreachable_since(leader, x) {
                        pending(since.saturating_add(grace));
                    }
                }
                lost
            };
            let now = self.now;
            let losses_since = &mut self.blobs[bi].losses_since;
            let losses_for = if lost == 0 {
                *losses_since = None;
                0
            } else {
                now.saturating_sub(*losses_since.get_or_insert(now))
            };
            let grace = self.sc.repair.grace_ms;
            if lost == 0
                || !steward::repair_now(
                    lost,
                    shards,
                    min_lost,
                    pending_until.is_some(),
                    losses_for,
                    grace,
                )
            {
                if lost > 0
                    && repair::repair_due(shards, lost, min_lost)
                    && let Some(at) = pending_until
                {
                    // Again when the pending holder's grace ends, or when the wait's own bound does.
                    let bound = now.saturating_add(grace.saturating_sub(losses_for));
                    self.s.repairs_waiting_for_pending += 1;
                    self.schedule_reeval(b, at.min(bound));
                }
                continue;
            }
            let blob = &self.blobs[bi];
            if blob.claims.iter().any(|c| c.leader == leader) {
                self.blobs[bi].reeval = true;
                continue;
            }
            // A claim counts only if its announcement reached this leader and its claimant is not gone in this
            // leader's view (a dead claimant's operation is dropped lazily, at its next event).
            if blob
                .claims
                .iter()
                .any(|c| !self.gone_from(leader, c.leader) && self.heard(c, leader))
            {
                self.s.repairs_suppressed_by_gossip += 1;
                self.blobs[bi].reeval = true;
                continue;
            }
            self.start_repair(b, leader);
        }
    }

    pub(super) fn start_repair(&mut self, b: u32, leader: u32) {
        self.serial += 1;
        let op = Op {
            owner: leader,
            incarnation: self.nodes[ix(leader)].incarnation,
            blob: b,
            started: self.now,
            timer: Timer::default(),
            kind: OpKind::RepairLookup,
        };
        let r = self.ops.insert(op);
        let blob = &mut self.blobs[ix(b)];
        blob.claims.push(Claim {
            leader,
            op: r,
            serial: self.serial,
            at: self.now,
        });
        // The claim is announced to the blob's holders (the topic's subscribers): count the traffic.
        for _ in 0..blob.n {
            self.count_message(GOSSIP_BYTES);
        }
        self.s.repairs_started += 1;
        self.active_repairs += 1;
        self.schedule(self.now.saturating_add(self.lookup_ms), Ev::LookupDone(r));
    }

    pub(super) fn end_claim(&mut self, b: u32, r: OpRef, retry_at: Option<Millis>) {
        let blob = &mut self.blobs[ix(b)];
        let before = blob.claims.len();
        blob.claims.retain(|c| c.op != r);
        if blob.claims.len() < before {
            self.active_repairs = self.active_repairs.saturating_sub(1);
        }
        let flagged = std::mem::take(&mut blob.reeval);
        let at = if flagged {
            Some(self.now.saturating_add(1))
        } else {
            retry_at
        };
        if let Some(at) = at {
            self.schedule_reeval(b, at);
        }
    }

    pub(super) fn begin_repair(&mut self, r: OpRef, mut op: Op) {
        let (leader, b) = (op.owner, op.blob);
        let bi = ix(b);
        let holders: Vec<u32> = self.blobs[bi].holders.to_vec();
        let lost = self.lost_in(leader, b);
        let gone_ids: BTreeSet<u32> = {
            let gone = self.gone_view(leader);
            holders
                .iter()
                .copied()
                .filter(|&h| gone(h) || lost.contains(&h))
                .collect()
        };
        if gone_ids.is_empty() {
            self.s.repairs_empty += 1;
            self.ops.release(r);
            self.end_claim(b, r, None);
            return;
        }
        let (id, kad, n, k) = {
            let blob = &self.blobs[bi];
            (blob.id, blob.kad, blob.n, blob.k)
        };
        // Planned with fixed-size keys (the bytes of `peer_key`, same order), which cost no allocation.
        let gone: BTreeSet<[u8; 4]> = gone_ids.iter().map(|g| g.to_be_bytes()).collect();
        let holder_keys: Vec<[u8; 4]> = holders.iter().map(|h| h.to_be_bytes()).collect();
        // As in the node, a peer failing this leader's challenges gets no new slivers.
        let threshold = self.sc.repair.challenge_failures;
        let failing = self.tallies.get(&leader);
        let candidates: Vec<[u8; 4]> = self
            .lookup(leader, kad, usize::from(n))
            .into_iter()
            .filter(|c| failing.is_none_or(|tally| !tally.is_failing(c, threshold)))
            .map(u32::to_be_bytes)
            .collect();
        let Some(plan) = repair::plan(&id, &holder_keys, &gone, &candidates) else {
            self.s.repairs_empty += 1;
            self.ops.release(r);
            let retry = self.now.saturating_add(self.sc.repair.grace_ms);
            self.end_claim(b, r, Some(retry));
            return;
        };
        if plan.is_empty() {
            self.s.repairs_empty += 1;
            self.ops.release(r);
            self.end_claim(b, r, None);
            return;
        }
        // As in the node, only the slivers of gone holders are rebuilt. A move off a live holder (rebalancing
        // after a join) is a hand-off: the old holder sends its sliver and nothing is decoded. Hand-offs are
        // applied at once, like holder-list adoption; their bytes are counted apart from repair bytes.
        let moved: BTreeSet<u16> = plan.moves.iter().map(|m| m.index).collect();
        let mut targets: BTreeSet<u16> = BTreeSet::new();
        for m in &plan.moves {
            if gone.contains(&m.from) {
                targets.insert(m.index);
            } else if let Some(to) = node_of(&m.to) {
                let state = self.blobs[bi]
                    .slot
                    .get(usize::from(m.index))
                    .copied()
                    .unwrap_or(MISSING);
                self.slot_change(b, m.index, to, state);
                self.s.slivers_handed_off += 1;
                self.s.handoff_bytes += self.blobs[bi].sliver_bytes;
            }
        }
        if targets.is_empty() {
            self.s.repairs_empty += 1;
            self.ops.release(r);
            self.end_claim(b, r, None);
            return;
        }
        let mut origin: Vec<(u16, u32)> = plan
            .moves
            .iter()
            .filter(|m| targets.contains(&m.index))
            .filter_map(|m| Some((m.index, node_of(&m.from)?)))
            .collect();
        origin.sort_unstable();
        let sources: Vec<(u16, PeerKey)> = holder_keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let i = u16::try_from(i).ok()?;
                (!moved.contains(&i) && !gone.contains(key)).then(|| (i, key.to_vec()))
            })
            .collect();
        let have: BTreeSet<u16> = holders
            .iter()
            .zip(self.blobs[bi].slot.iter())
            .enumerate()
            .filter_map(|(i, (&h, &state))| {
                let i = u16::try_from(i).ok()?;
                (h == leader && state == GOOD && !targets.contains(&i)).then_some(i)
            })
            .collect();
        let epoch = self.blobs[bi].epoch.saturating_add(1);
        let (machine, effects) = Repair::start(
            id,
            k,
            plan.holders.iter().map(|key| key.to_vec()).collect(),
            targets,
            sources,
            &have,
            self.rtt_fn(leader),
            self.repair_read_cfg,
            self.write_cfg,
            self.now,
        );
        // The node announces the planned list (a new epoch) as the repair starts, which restarts every holder's
        // settle time; so does the list a failed repair announces when it ends (below).
        self.blobs[bi].settled_from = self.now;
        self.s.repairs_run += 1;
        op.kind = OpKind::Repair(Box::new(RepairOp {
            machine,
            epoch,
            origin,
            valid: Vec::new(),
            have: have.into_iter().collect(),
        }));
        self.ops.put(r, op);
        self.apply_repair(r, effects);
    }

    pub(super) fn apply_repair(&mut self, r: OpRef, effects: Vec<RepairEffect>) {
        for effect in effects {
            let Some((owner, b)) = self.ops.get(r).map(|op| (op.owner, op.blob)) else {
                return;
            };
            let retry = self.now.saturating_add(self.sc.repair.grace_ms);
            match effect {
                RepairEffect::Fetch { peer, index } => {
                    let Some(to) = node_of(&peer) else { continue };
                    let msg = Msg::request(Kind::FetchReq, owner, to, b, index, r);
                    self.send(msg, 0);
                }
                RepairEffect::SetTimer(at) => self.set_timer(r, at),
                RepairEffect::Rebuild { sources, .. } => {
                    let verified = match self.ops.get(r).map(|op| &op.kind) {
                        Some(OpKind::Repair(p)) => sources.iter().all(|i| {
                            p.valid.binary_search(i).is_ok() || p.have.binary_search(i).is_ok()
                        }),
                        _ => false,
                    };
                    if !verified {
                        self.s.rebuilds_wrong += 1;
                    }
                    // Decoding and re-encoding the blob takes time at the repairer's codec throughput.
                    let bytes_per_ms = self.sc.repair.decode_mb_per_s * 1000.0;
                    let decode = self.blobs[ix(b)].size as f64 / bytes_per_ms;
                    let done = self.compute(owner, self.now as f64, decode);
                    self.schedule(rng::ceil_ms(done).max(self.now), Ev::RebuildDone(r));
                }
                RepairEffect::Send {
                    peer,
                    index,
                    attempt,
                } => {
                    let Some(to) = node_of(&peer) else { continue };
                    let epoch = match self.ops.get(r).map(|op| &op.kind) {
                        Some(OpKind::Repair(p)) => p.epoch,
                        _ => 0,
                    };
                    let msg = Msg {
                        kind: Kind::RepairStore,
                        valid: false,
                        index,
                        attempt: u16::try_from(attempt).unwrap_or(u16::MAX),
                        from: owner,
                        to,
                        blob: b,
                        epoch,
                        op: r,
                    };
                    let payload = self.blobs[ix(b)].sliver_bytes;
                    self.send(msg, payload);
                }
                RepairEffect::Finished { failed, .. } => {
                    self.s.repairs_finished += 1;
                    if failed > 0 {
                        self.blobs[ix(b)].settled_from = self.now;
                    }
                    self.ops.release(r);
                    self.end_claim(b, r, (failed > 0).then_some(retry));
                    return;
                }
                RepairEffect::Failed { .. } => {
                    self.s.repairs_failed += 1;
                    self.blobs[ix(b)].settled_from = self.now;
                    self.ops.release(r);
                    self.end_claim(b, r, Some(retry));
                    return;
                }
            }
        }
    }

    pub(super) fn rebuild_done(&mut self, r: OpRef) {
        let Some(mut op) = self.take_live(r) else {
            return;
        };
        let now = self.now;
        let effects = match &mut op.kind {
            OpKind::Repair(p) => Effects::Repair(p.machine.on_rebuilt(now)),
            _ => Effects::None,
        };
        self.ops.put(r, op);
        self.apply(r, effects);
    }
}
