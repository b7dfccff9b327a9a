//! Operations: the plumbing every simulated write, read and repair shares (timers, responses, effects), and the
//! write and read drivers over the protocol core's `Write` and `Read`.

use super::*;

/// Holder lists a read tries before it fails, as the node's reader does (`service::read::get_inner`).
const READ_LISTS: u8 = 3;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Operations: common plumbing

    /// Takes an operation out if it exists and its owner is still the incarnation that started it; otherwise
    /// abandons it (the owner crashed) and returns `None`.
    pub(super) fn take_live(&mut self, r: OpRef) -> Option<Op> {
        let op = self.ops.take(r)?;
        let owner = &self.nodes[ix(op.owner)];
        if owner.alive && owner.incarnation == op.incarnation {
            return Some(op);
        }
        self.abandon(r, op);
        None
    }

    pub(super) fn abandon(&mut self, r: OpRef, op: Op) {
        self.ops.release(r);
        let retry = self.now.saturating_add(self.sc.repair.grace_ms);
        match op.kind {
            OpKind::WriteLookup | OpKind::Write(_) | OpKind::StreamWrite(_) => {
                if self.blobs[ix(op.blob)].status == Status::Certified {
                    self.schedule_reeval(op.blob, retry);
                }
                self.fail_write(op.blob);
            }
            OpKind::ReadLookup | OpKind::Read(_) => self.s.reads_abandoned += 1,
            OpKind::RepairLookup | OpKind::Repair(_) => {
                self.s.repairs_abandoned += 1;
                self.end_claim(op.blob, r, Some(retry));
            }
        }
    }

    pub(super) fn set_timer(&mut self, r: OpRef, at: Millis) {
        let at = at.max(self.now);
        let Some(op) = self.ops.get_mut(r) else {
            return;
        };
        // The drivers' one timer rule (`write::Timer`): the earliest request wins.
        if op.timer.request(at) {
            self.schedule(at, Ev::Timer(r));
        }
    }

    pub(super) fn timer(&mut self, r: OpRef) {
        let Some(mut op) = self.take_live(r) else {
            return;
        };
        if op.timer.deadline() != Some(self.now) {
            self.ops.put(r, op);
            return;
        }
        op.timer.fire();
        let now = self.now;
        let effects = match &mut op.kind {
            OpKind::Write(w) => Effects::Write(w.on_timer(now)),
            OpKind::StreamWrite(w) => Effects::StreamWrite(w.on_timer(now)),
            OpKind::Read(x) => Effects::Read(x.machine.on_timer(now)),
            OpKind::Repair(p) => Effects::Repair(p.machine.on_timer(now)),
            _ => Effects::None,
        };
        self.ops.put(r, op);
        self.apply(r, effects);
    }

    pub(super) fn response(&mut self, m: Msg) {
        let Some(mut op) = self.take_live(m.op) else {
            return;
        };
        let now = self.now;
        // The receiver handles the answer on its core: a valid sliver is verified against the blob ID. The state
        // machine hears of it on arrival; the work delays what the node does next (a read's answer, say).
        let carries_sliver = m.valid && matches!(m.kind, Kind::ReadResp | Kind::FetchResp);
        let sliver_bytes = if carries_sliver {
            self.blobs[ix(m.blob)].sliver_bytes
        } else {
            0
        };
        let transfer = if m.from == m.to {
            0.0
        } else {
            self.transfer_ms(sliver_bytes)
        };
        let work = self.message_ms() + transfer + self.verify_ms(sliver_bytes);
        self.compute(m.to, now as f64, work);
        let peer = peer_key(m.from);
        let attempt = u32::from(m.attempt);
        let effects = match (&mut op.kind, m.kind) {
            (OpKind::Write(w), Kind::StoreAck) => {
                Effects::Write(w.on_receipt(&peer, m.index, Vec::new()))
            }
            (OpKind::Write(w), Kind::StoreNack) => {
                Effects::Write(w.on_failure(&peer, m.index, attempt, now))
            }
            (OpKind::StreamWrite(w), Kind::StoreAck) => {
                Effects::StreamWrite(w.on_receipt(&peer, m.index, Vec::new()))
            }
            (OpKind::StreamWrite(w), Kind::StoreProgress) => {
                let run = usize::try_from(m.epoch).unwrap_or(usize::MAX);
                Effects::StreamWrite(w.on_progress(&peer, m.index, run, attempt, now))
            }
            (OpKind::StreamWrite(w), Kind::StoreNack) => {
                let run = usize::try_from(m.epoch).unwrap_or(usize::MAX);
                Effects::StreamWrite(w.on_failure(&peer, m.index, run, attempt, now))
            }
            (OpKind::Read(x), Kind::ReadResp) => {
                if m.valid {
                    insert_sorted(&mut x.valid, m.index);
                }
                Effects::Read(x.machine.on_response(m.index, m.valid, now))
            }
            (OpKind::Repair(p), Kind::FetchResp) => {
                if m.valid {
                    insert_sorted(&mut p.valid, m.index);
                }
                Effects::Repair(p.machine.on_fetched(m.index, m.valid, now))
            }
            (OpKind::Repair(p), Kind::RepairAck) => {
                Effects::Repair(p.machine.on_receipt(&peer, m.index, Vec::new()))
            }
            (OpKind::Repair(p), Kind::RepairNack) => {
                Effects::Repair(p.machine.on_send_failure(&peer, m.index, attempt, now))
            }
            _ => Effects::None,
        };
        self.ops.put(m.op, op);
        self.apply(m.op, effects);
    }

    pub(super) fn apply(&mut self, r: OpRef, effects: Effects) {
        match effects {
            Effects::None => {}
            Effects::Write(e) => self.apply_write(r, e),
            Effects::StreamWrite(e) => self.apply_stream_write(r, e),
            Effects::Read(e) => self.apply_read(r, e),
            Effects::Repair(e) => self.apply_repair(r, e),
        }
    }

    pub(super) fn rtt_fn(&self, from: u32) -> impl Fn(&[u8]) -> Option<Millis> + '_ {
        let region = self.nodes[ix(from)].region;
        move |peer: &[u8]| {
            node_of(peer)
                .and_then(|p| self.nodes.get(ix(p)))
                .map(|n| rng::ceil_ms(self.regions.rtt_ms(region, n.region)))
        }
    }

    pub(super) fn lookup_done(&mut self, r: OpRef) {
        let Some(op) = self.take_live(r) else {
            return;
        };
        match op.kind {
            OpKind::WriteLookup => self.begin_write(r, op),
            OpKind::ReadLookup => self.begin_read(r, op),
            OpKind::RepairLookup => self.begin_repair(r, op),
            _ => self.ops.put(r, op),
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Writes

    /// Starts an operation of `owner`'s on blob `b` with its Kademlia lookup (`kind` says which), done after
    /// the lookup's latency.
    pub(super) fn start_lookup(&mut self, owner: u32, b: u32, kind: OpKind) {
        let op = Op {
            owner,
            incarnation: self.nodes[ix(owner)].incarnation,
            blob: b,
            started: self.now,
            timer: Timer::default(),
            kind,
        };
        let r = self.ops.insert(op);
        self.schedule(self.now.saturating_add(self.lookup_ms), Ev::LookupDone(r));
    }

    pub(super) fn write_start(&mut self, b: u32) {
        let Some(writer) = self.pick_live_honest() else {
            self.fail_write(b);
            return;
        };
        self.set_lifetime(b);
        self.start_lookup(writer, b, OpKind::WriteLookup);
    }

    pub(super) fn begin_write(&mut self, r: OpRef, mut op: Op) {
        let b = ix(op.blob);
        let (id, kad, n) = (self.blobs[b].id, self.blobs[b].kad, self.blobs[b].n);
        let needed = self.index_bytes(op.blob);
        let ordered = self.spread_lookup(op.owner, kad, n, usize::from(n));
        // Without a capacity every peer has room and this takes the first n, as before.
        let keys: Vec<PeerKey> = match room::holders_with_room(&ordered, n, |&p| {
            self.has_room(p, needed, room::Purpose::Write)
        }) {
            Ok(holders) => holders.into_iter().map(peer_key).collect(),
            Err(_) => {
                self.s.writes_refused_no_room += 1;
                self.ops.release(r);
                self.fail_write(op.blob);
                return;
            }
        };
        let Some(placement) = Placement::new(&id, n, &keys) else {
            self.ops.release(r);
            self.fail_write(op.blob);
            return;
        };
        let holders: Vec<u32> = placement
            .holder_list()
            .iter()
            .filter_map(|k| node_of(k))
            .collect();
        if holders.len() != usize::from(n) {
            self.ops.release(r);
            self.fail_write(op.blob);
            return;
        }
        // A write of a blob that was written before (a failed one retried) starts from empty slots.
        for index in 0..self.blobs[b].holders.len() {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            if self.blobs[b].slot.get(usize::from(index)) != Some(&MISSING) {
                let holder = self.blobs[b].holders[usize::from(index)];
                self.slot_change(op.blob, index, holder, MISSING);
            }
        }
        self.blobs[b].holders = holders.into_boxed_slice();
        self.blobs[b].list_version += 1;
        self.blobs[b].slot = vec![MISSING; usize::from(n)].into_boxed_slice();
        let runs = self.blobs[b].run_bytes.len();
        if runs > 0 {
            // Over one segment: the node's gateway spools it and writes it run by run.
            self.s.writes_streamed += 1;
            let config = StreamWriteConfig::like(&self.write_cfg);
            let (machine, effects) = StreamWrite::start(id, placement, runs, config);
            op.kind = OpKind::StreamWrite(Box::new(machine));
            self.ops.put(r, op);
            self.apply_stream_write(r, effects);
            return;
        }
        let (machine, effects) = Write::start(id, placement, self.write_cfg, self.now);
        op.kind = OpKind::Write(Box::new(machine));
        self.ops.put(r, op);
        self.apply_write(r, effects);
    }

    /// A write or streamed write is over: `finished` (every index stored or given up) or failed.
    fn write_ended(&mut self, r: OpRef, b: u32, finished: bool) {
        self.ops.release(r);
        if !finished {
            self.fail_write(b);
        } else if self.blobs[ix(b)].status == Status::Certified {
            // Holders that left while the write ran are noticed once their grace is over.
            self.schedule_reeval(b, self.now.saturating_add(self.sc.repair.grace_ms));
        }
    }

    /// Maps a streamed write's effects to messages. A run is prepared at once (the simulator does not charge a
    /// writer's encoding yet) and its slivers are sizes, so `Release` frees nothing.
    pub(super) fn apply_stream_write(&mut self, r: OpRef, effects: Vec<StreamWriteEffect>) {
        let mut queue: std::collections::VecDeque<StreamWriteEffect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let Some((owner, b, started)) =
                self.ops.get(r).map(|op| (op.owner, op.blob, op.started))
            else {
                return;
            };
            match effect {
                StreamWriteEffect::Prepare { run } => {
                    let now = self.now;
                    if let Some(Op {
                        kind: OpKind::StreamWrite(w),
                        ..
                    }) = self.ops.get_mut(r)
                    {
                        queue.extend(w.on_prepared(run, now));
                    }
                }
                StreamWriteEffect::Release { .. } => {}
                StreamWriteEffect::Send {
                    peer,
                    index,
                    run,
                    attempt,
                } => {
                    let Some(to) = node_of(&peer) else { continue };
                    let payload = self.blobs[ix(b)].run_bytes.get(run).copied().unwrap_or(0);
                    let msg = Msg {
                        attempt: u16::try_from(attempt).unwrap_or(u16::MAX),
                        epoch: u32::try_from(run).unwrap_or(u32::MAX),
                        ..Msg::request(Kind::StoreReq, owner, to, b, index, r)
                    };
                    self.s.stream_runs_sent += 1;
                    self.send(msg, payload);
                }
                StreamWriteEffect::SetTimer(at) => self.set_timer(r, at),
                StreamWriteEffect::Certified => self.certify(b, self.now - started),
                StreamWriteEffect::Failed { .. } => return self.write_ended(r, b, false),
                StreamWriteEffect::Finished => return self.write_ended(r, b, true),
            }
        }
    }

    pub(super) fn apply_write(&mut self, r: OpRef, effects: Vec<WriteEffect>) {
        for effect in effects {
            let Some((owner, b, started)) =
                self.ops.get(r).map(|op| (op.owner, op.blob, op.started))
            else {
                return;
            };
            match effect {
                WriteEffect::Send {
                    peer,
                    index,
                    attempt,
                } => {
                    let Some(to) = node_of(&peer) else { continue };
                    let msg = Msg {
                        attempt: u16::try_from(attempt).unwrap_or(u16::MAX),
                        ..Msg::request(Kind::StoreReq, owner, to, b, index, r)
                    };
                    let payload = self.blobs[ix(b)].sliver_bytes;
                    self.send(msg, payload);
                }
                WriteEffect::SetTimer(at) => self.set_timer(r, at),
                WriteEffect::Certified => self.certify(b, self.now - started),
                WriteEffect::Failed { .. } => return self.write_ended(r, b, false),
                WriteEffect::Finished => return self.write_ended(r, b, true),
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Reads

    pub(super) fn read_arrival(&mut self) {
        let mean = 1000.0 / self.sc.workload.read_rate_per_s;
        let gap = rng::ceil_ms(rng::exponential(&mut self.world, mean));
        self.schedule(self.now.saturating_add(gap.max(1)), Ev::ReadArrival);
        if self.certified == 0 {
            return;
        }
        let mut pick = None;
        for _ in 0..16 {
            let b = rng::below(&mut self.world, self.originals);
            // Reads go to blobs within their lifetime: past it, the node answers "expired".
            if self.blobs[b].status == Status::Certified
                && u32::try_from(b).is_ok_and(|b| self.is_live(b))
            {
                pick = u32::try_from(b).ok();
                break;
            }
        }
        let Some(b) = pick else { return };
        let Some(reader) = self.pick_live_honest() else {
            return;
        };
        // During a partition the reader follows its side's list.
        let b = self.version_for(b, reader);
        self.s.reads_started += 1;
        self.start_lookup(reader, b, OpKind::ReadLookup);
    }

    /// Whether `reader` reaches k good slivers of entry `b` on live, honest holders its list names, as things
    /// are now: a read that fails while this holds from its start to its end failed for something other than a
    /// cut or lost slivers.
    fn k_in_reach(&self, reader: u32, b: u32) -> bool {
        let blob = &self.blobs[ix(b)];
        let reached = blob
            .holders
            .iter()
            .zip(blob.slot.iter())
            .filter(|&(&h, &state)| {
                state == GOOD
                    && self.contribution(h, state).0 == 1
                    && !self.blocked(reader, h)
                    && !self.blocked(h, reader)
            })
            .count();
        reached >= usize::from(blob.k)
    }

    pub(super) fn begin_read(&mut self, r: OpRef, op: Op) {
        self.begin_read_with(r, op, None);
    }

    /// Starts a read with the blob's list as it is now; `retry` is (reached k at the first start, lists tried
    /// before) for a read trying another list.
    fn begin_read_with(&mut self, r: OpRef, mut op: Op, retry: Option<(bool, u8)>) {
        let blob = &self.blobs[ix(op.blob)];
        let list_version = blob.list_version;
        let keys: Vec<PeerKey> = blob.holders.iter().map(|&h| peer_key(h)).collect();
        let k = blob.k;
        let Some(placement) = Placement::from_holders(keys) else {
            self.ops.release(r);
            self.s.reads_failed += 1;
            self.interval.reads_failed += 1;
            return;
        };
        let (machine, effects) = Read::start(
            &placement,
            k,
            self.rtt_fn(op.owner),
            self.read_cfg,
            self.now,
        );
        let (in_reach, lists_tried) = match retry {
            Some((in_reach, tried)) => (in_reach, tried.saturating_add(1)),
            None => (self.k_in_reach(op.owner, op.blob), 1),
        };
        op.kind = OpKind::Read(Box::new(ReadOp {
            machine,
            valid: Vec::new(),
            in_reach,
            list_version,
            lists_tried,
        }));
        self.ops.put(r, op);
        self.apply_read(r, effects);
    }

    pub(super) fn apply_read(&mut self, r: OpRef, effects: Vec<ReadEffect>) {
        for effect in effects {
            let Some((owner, b, started)) =
                self.ops.get(r).map(|op| (op.owner, op.blob, op.started))
            else {
                return;
            };
            match effect {
                ReadEffect::Send { peer, index } => {
                    let Some(to) = node_of(&peer) else { continue };
                    let msg = Msg::request(Kind::ReadReq, owner, to, b, index, r);
                    self.send(msg, 0);
                }
                ReadEffect::SetTimer(at) => self.set_timer(r, at),
                ReadEffect::Ready(indexes) => {
                    // Every index the read rebuilds from must be one the driver reported valid.
                    let verified = match self.ops.get(r).map(|op| &op.kind) {
                        Some(OpKind::Read(x)) => {
                            indexes.iter().all(|i| x.valid.binary_search(i).is_ok())
                        }
                        _ => false,
                    };
                    if !verified || indexes.len() != usize::from(self.blobs[ix(b)].k) {
                        self.s.reads_wrong += 1;
                    }
                    // The reader's last work: its first read of the blob runs the consistency check, then the
                    // answer goes out (the gateway's HTTP exchange).
                    let first = self.checked.insert((owner, b));
                    let check_ms = if first {
                        self.blobs[ix(b)].size as f64 / (self.sc.cpu.check_mb_per_s * 1000.0)
                    } else {
                        0.0
                    };
                    let work = check_ms + self.sc.cpu.read_us / 1000.0;
                    let done = self.compute(owner, self.now as f64, work);
                    let latency = rng::ceil_ms(done).max(self.now) - started;
                    self.s.reads_ok += 1;
                    self.interval.reads_ok += 1;
                    self.interval.read_ms.push(latency);
                    self.read_hist.record(latency);
                    self.ops.release(r);
                    return;
                }
                ReadEffect::Failed { .. } => {
                    let (began_in_reach, list_version, lists_tried) =
                        match self.ops.get(r).map(|op| &op.kind) {
                            Some(OpKind::Read(x)) => (x.in_reach, x.list_version, x.lists_tried),
                            _ => (false, 0, READ_LISTS),
                        };
                    // As the node's reader (`service::read::get_inner`): a read that fails with one holder
                    // list tries again with the list held now, if it changed meanwhile (a repair, or a reunion
                    // whose losing holders deleted their slivers mid-read), up to three lists.
                    if lists_tried < READ_LISTS && self.blobs[ix(b)].list_version != list_version {
                        if let Some(op) = self.ops.take(r) {
                            self.begin_read_with(r, op, Some((began_in_reach, lists_tried)));
                        }
                        return;
                    }
                    self.s.reads_failed += 1;
                    self.interval.reads_failed += 1;
                    if began_in_reach && self.k_in_reach(owner, b) {
                        self.s.reads_failed_in_reach += 1;
                    }
                    self.ops.release(r);
                    return;
                }
            }
        }
    }
}
