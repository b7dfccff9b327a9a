//! Repair: where a blob is scanned for a repair (the stewards decide, `stewarding`), claims heard by gossip, and
//! the repair driver over `floe_protocol::repair::Repair`.

use super::*;
use stewarding::SimPeer;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Repair

    pub(super) fn schedule_reeval(&mut self, b: u32, at: Millis) {
        if !self.sc.repair.enabled {
            return;
        }
        let blob = &mut self.blobs[ix(b)];
        // One pending re-evaluation a blob, the earliest; one due now is being (or has been) done, so a later
        // one replaces it rather than being lost with it.
        if blob.reeval_at.is_none_or(|t| at < t || t <= self.now) {
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

    /// Scans blob `b` where a repair of it may start: at the first live holder, which leads in every view
    /// alike; with partitions or challenges (views differ) at the live holders in list order until four lead
    /// in their own view, which in practice covers every side. The stewards decide ([`Sim::scan`]).
    pub(super) fn evaluate(&mut self, b: u32) {
        if !self.sc.repair.enabled {
            return;
        }
        let bi = ix(b);
        if self.blobs[bi].evaluated_at == self.now {
            return;
        }
        self.blobs[bi].evaluated_at = self.now;
        // Past its end epoch a blob is neither repaired nor challenged (the node's scan skips it).
        if !self.is_live(b) {
            return;
        }
        let blob = &self.blobs[bi];
        if blob.status != Status::Certified || blob.holders.is_empty() {
            return;
        }
        let views_differ = !self.active_partitions.is_empty() || !self.tallies.is_empty();
        let live: Vec<u32> = blob
            .holders
            .iter()
            .copied()
            .filter(|&h| self.nodes[ix(h)].alive && self.follows(h, b))
            .take(if views_differ { 64 } else { 1 })
            .collect();
        let mut scanned: Vec<u32> = Vec::new();
        let mut leaders = 0;
        for h in live {
            if scanned.contains(&h) {
                continue;
            }
            scanned.push(h);
            if self.scan(b, h).0 {
                leaders += 1;
                if leaders >= 4 {
                    break;
                }
            }
        }
    }

    pub(super) fn start_repair(&mut self, b: u32, leader: u32, planned: PlannedRepair) {
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
            planned: Some(Box::new(planned)),
        });
        // The claim is announced to the blob's holders (the topic's subscribers): count the traffic.
        for _ in 0..blob.n {
            self.count_message(GOSSIP_BYTES);
        }
        self.s.repairs_started += 1;
        if !self.is_live(b) {
            self.s.repairs_of_ended_blobs += 1;
        }
        if self.blobs[ix(b)].status == Status::Deleted {
            self.s.repairs_of_deleted_blobs += 1;
        }
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
        // With challenges on, a repair that ended is scanned again at once: its holders' settle time starts
        // with the new list, as the node's next scan would find.
        let challenges = self.sc.repair.challenge_interval_ms > 0;
        let at = if flagged || (challenges && retry_at.is_none()) {
            Some(self.now.saturating_add(1))
        } else {
            retry_at
        };
        if let Some(at) = at {
            self.schedule_reeval(b, at);
        }
    }

    /// Starts the repair a steward planned, once the leader's lookup is done: unless the blob's list changed
    /// meanwhile (the plan was made on the old one; the blob is scanned again at once).
    pub(super) fn begin_repair(&mut self, r: OpRef, mut op: Op) {
        let (leader, b) = (op.owner, op.blob);
        let bi = ix(b);
        let holders: Vec<u32> = self.blobs[bi].holders.to_vec();
        let planned = self.blobs[bi]
            .claims
            .iter_mut()
            .find(|c| c.op == r)
            .and_then(|c| c.planned.take());
        let list = stewarding::list_fingerprint(&self.blobs[bi]);
        let Some(planned) = planned.filter(|p| p.fingerprint == list) else {
            self.s.repairs_empty += 1;
            self.ops.release(r);
            self.blobs[bi].reeval = true;
            self.end_claim(b, r, None);
            return;
        };
        let (id, k) = (self.blobs[bi].id, self.blobs[bi].k);
        let PlannedRepair { plan, gone, .. } = *planned;
        let holder_keys: Vec<SimPeer> = holders.iter().map(|&h| SimPeer::of(h)).collect();
        // As in the node, only the slivers of gone holders are rebuilt. A move off a live holder (rebalancing
        // after a join) is a hand-off: the old holder sends its sliver and nothing is decoded. Hand-offs are
        // applied at once, like holder-list adoption; their bytes are counted apart from repair bytes.
        let moved: BTreeSet<u16> = plan.moves.iter().map(|m| m.index).collect();
        let targets: BTreeSet<u16> = plan.moves_from(&gone).map(|m| m.index).collect();
        for m in plan.moves.iter().filter(|m| !targets.contains(&m.index)) {
            if let Some(to) = node_of(m.to.as_ref()) {
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
            .filter_map(|m| Some((m.index, node_of(m.from.as_ref())?)))
            .collect();
        origin.sort_unstable();
        let sources: Vec<(u16, PeerKey)> = holder_keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let i = u16::try_from(i).ok()?;
                (!moved.contains(&i) && !gone.contains(key)).then(|| (i, key.as_ref().to_vec()))
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
            plan.holders
                .iter()
                .map(|key| key.as_ref().to_vec())
                .collect(),
            targets,
            sources,
            &have,
            self.rtt_fn(leader),
            self.repair_read_cfg,
            self.write_cfg,
            self.now,
        );
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
                    self.repair_ended(r, owner, b, failed == 0);
                    return;
                }
                RepairEffect::Failed { .. } => {
                    self.s.repairs_failed += 1;
                    self.repair_ended(r, owner, b, false);
                    return;
                }
            }
        }
    }

    /// A repair `owner` led ended: its steward hears how (a failed one waits before the next attempt), and the
    /// blob is scanned again next millisecond after a failure, where the steward says when to try again
    /// (`recheck_at`).
    fn repair_ended(&mut self, r: OpRef, owner: u32, b: u32, succeeded: bool) {
        let (now, blob_id) = (self.now, self.blobs[ix(b)].id);
        if let Some(steward) = self.stewards.get_mut(ix(owner)) {
            steward.handle_repair_ended(blob_id, now, succeeded);
        }
        self.ops.release(r);
        self.end_claim(b, r, (!succeeded).then(|| now.saturating_add(1)));
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
