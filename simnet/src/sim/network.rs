//! The simulated network (latency, bandwidth queues, loss, partitions) and the holders' answers to stores and
//! reads.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // The network

    pub(super) fn count_message(&mut self, bytes: u64) {
        self.s.messages += 1;
        self.s.bytes += bytes;
        self.interval.messages += 1;
        self.interval.bytes += bytes;
    }

    pub(super) fn send(&mut self, m: Msg, payload: u64) {
        self.send_at(m, payload, self.now as f64);
    }

    /// Runs `ms` of work on `node`'s core once it is free and not before `ready`; returns when it is done.
    pub(super) fn compute(&mut self, node: u32, ready: f64, ms: f64) -> f64 {
        let n = &mut self.nodes[ix(node)];
        let done = n.cpu_free.max(ready) + ms;
        n.cpu_free = done;
        done
    }

    /// The fixed cost of handling one message, ms.
    pub(super) fn message_ms(&self) -> f64 {
        self.sc.cpu.message_us / 1000.0
    }

    /// Verifying `bytes` of slivers, ms.
    pub(super) fn verify_ms(&self, bytes: u64) -> f64 {
        bytes as f64 / (self.sc.cpu.verify_mb_per_s * 1000.0)
    }

    /// Moving `bytes` of payload through one end of the transport, ms.
    pub(super) fn transfer_ms(&self, bytes: u64) -> f64 {
        let rate = self.sc.cpu.transfer_mb_per_s;
        if rate > 0.0 {
            bytes as f64 / (rate * 1000.0)
        } else {
            0.0
        }
    }

    /// What a holder spends on a store request carrying `bytes` of slivers: handling it, taking the bytes off
    /// the transport (nothing for its own delivery to itself) and verifying them.
    pub(super) fn receive_ms(&self, m: &Msg, bytes: u64) -> f64 {
        let transfer = if m.from == m.to {
            0.0
        } else {
            self.transfer_ms(bytes)
        };
        self.message_ms() + transfer + self.verify_ms(bytes)
    }

    /// Sends `m` once its sender's work on it is done at `ready` (fractional ms, not before now).
    pub(super) fn send_at(&mut self, m: Msg, payload: u64, ready: f64) {
        let bytes = payload.saturating_add(self.sc.network.message_overhead_bytes);
        let ready = if payload > 0 && m.from != m.to {
            let work = self.transfer_ms(payload);
            self.compute(m.from, ready, work)
        } else {
            ready
        };
        self.count_message(bytes);
        if matches!(m.kind, Kind::FetchResp | Kind::RepairStore) {
            self.s.repair_bytes += bytes;
        }
        if m.from == m.to {
            self.schedule(rng::ceil_ms(ready).max(self.now), Ev::Msg(m));
            return;
        }
        let blocked = self.blocked(m.from, m.to);
        let net = &self.sc.network;
        let (jitter_ms, loss, duplicate, reorder, reorder_ms) = (
            net.jitter_ms,
            net.loss,
            net.duplicate,
            net.reorder,
            net.reorder_ms,
        );
        let rtt = self
            .regions
            .rtt_ms(self.nodes[ix(m.from)].region, self.nodes[ix(m.to)].region);
        let size = bytes as f64;
        let sender = &mut self.nodes[ix(m.from)];
        let start = sender.up_free.max(ready);
        let up_end = start + size / sender.up_rate;
        sender.up_free = up_end;
        let jitter = rng::unit(&mut sender.rng) * jitter_ms;
        let lost = rng::chance(&mut sender.rng, loss) || blocked;
        let extra = if rng::chance(&mut sender.rng, reorder) {
            rng::unit(&mut sender.rng) * reorder_ms
        } else {
            0.0
        };
        let twice = rng::chance(&mut sender.rng, duplicate);
        if lost {
            return;
        }
        let latency = rtt / 2.0 + jitter + extra;
        let receiver = &mut self.nodes[ix(m.to)];
        let down_start = (start + latency).max(receiver.down_free);
        let down_end = (down_start + size / receiver.down_rate).max(up_end + latency);
        receiver.down_free = down_end;
        self.schedule(rng::ceil_ms(down_end), Ev::Msg(m));
        if twice {
            self.schedule(rng::ceil_ms(down_end + jitter_ms.max(1.0)), Ev::Msg(m));
        }
    }

    /// A request reached a crashed node: the sender learns it failed one round trip after sending.
    pub(super) fn bounce(&mut self, m: Msg) {
        let kind = match m.kind {
            Kind::StoreReq => Kind::StoreNack,
            Kind::RepairStore => Kind::RepairNack,
            Kind::ReadReq => Kind::ReadResp,
            Kind::FetchReq => Kind::FetchResp,
            _ => return,
        };
        let rtt = self
            .regions
            .rtt_ms(self.nodes[ix(m.from)].region, self.nodes[ix(m.to)].region);
        let reply = Msg {
            kind,
            valid: false,
            from: m.to,
            to: m.from,
            ..m
        };
        self.schedule(
            self.now.saturating_add(rng::ceil_ms(rtt / 2.0)),
            Ev::Msg(reply),
        );
    }

    pub(super) fn message(&mut self, m: Msg) {
        let to_alive = self.nodes[ix(m.to)].alive;
        match m.kind {
            Kind::StoreReq | Kind::ReadReq | Kind::FetchReq | Kind::RepairStore => {
                if !to_alive {
                    if self.sc.network.dead_peer_fails_fast {
                        self.bounce(m);
                    }
                    return;
                }
                match m.kind {
                    Kind::StoreReq => self.serve_store(m),
                    Kind::RepairStore => self.serve_repair_store(m),
                    _ => self.serve_sliver(m),
                }
            }
            _ => {
                if to_alive {
                    self.response(m);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Holders answering

    pub(super) fn serve_store(&mut self, m: Msg) {
        let (b, i) = (ix(m.blob), usize::from(m.index));
        // A run of a streamed write before the last: kept, and answered with progress. The index counts as
        // stored (and receipted) with its last run. Runs arrive in order (the writer sends them so); the
        // simulator does not track which earlier runs a holder kept.
        let runs = self.blobs[b].run_bytes.len();
        let run = usize::try_from(m.epoch).unwrap_or(usize::MAX);
        if runs > 0 && run.saturating_add(1) < runs {
            let bytes = self.blobs[b].run_bytes.get(run).copied().unwrap_or(0);
            let progress = Msg {
                kind: Kind::StoreProgress,
                valid: true,
                from: m.to,
                to: m.from,
                ..m
            };
            let work = self.receive_ms(&m, bytes);
            let done = self.compute(m.to, self.now as f64, work);
            self.send_at(progress, 0, done);
            return;
        }
        let holder = self.blobs[b].holders.get(i).copied();
        let deleted = self.refuses_deleted(m.blob);
        if deleted
            || (holder == Some(m.to)
                && self.blobs[b].slot[i] != GOOD
                && !self.has_room(m.to, self.index_bytes(m.blob), room::Purpose::Write))
        {
            // Over its capacity: refused, as the node answers `Room` (the writer counts a failed holder); or
            // the blob was deleted and the holder's tombstone refuses it.
            if !deleted {
                self.s.stores_refused_full += 1;
            }
            let nack = Msg {
                kind: Kind::StoreNack,
                valid: false,
                from: m.to,
                to: m.from,
                ..m
            };
            self.send(nack, 0);
            return;
        }
        if holder == Some(m.to) && self.blobs[b].slot[i] != GOOD {
            let lost_write = self.sc.disk.lost_write;
            if rng::chance(&mut self.nodes[ix(m.to)].rng, lost_write) {
                self.s.lost_writes += 1;
                self.nodes[ix(m.to)].held.push((m.blob, m.index));
            } else {
                self.slot_change(m.blob, m.index, m.to, GOOD);
            }
        }
        let ack = Msg {
            kind: Kind::StoreAck,
            valid: true,
            from: m.to,
            to: m.from,
            ..m
        };
        // The holder takes the sliver (or the last run of it) off the transport and verifies it before it
        // answers.
        let bytes = if runs > 0 {
            self.blobs[b].run_bytes.get(run).copied().unwrap_or(0)
        } else {
            self.blobs[b].sliver_bytes
        };
        let work = self.receive_ms(&m, bytes);
        let done = self.compute(m.to, self.now as f64, work);
        self.send_at(ack, 0, done);
    }

    pub(super) fn serve_sliver(&mut self, m: Msg) {
        let kind = if m.kind == Kind::ReadReq {
            Kind::ReadResp
        } else {
            Kind::FetchResp
        };
        let blob = &self.blobs[ix(m.blob)];
        let i = usize::from(m.index);
        let (valid, payload) = match self.nodes[ix(m.to)].byzantine {
            Some(Behaviour::Withhold | Behaviour::Hijack) => return,
            Some(Behaviour::Corrupt) => (false, blob.sliver_bytes),
            None => {
                let state = if blob.holders.get(i) == Some(&m.to) {
                    blob.slot[i]
                } else {
                    MISSING
                };
                // An honest holder re-verifies before answering: rot is reported as not found.
                if state == GOOD {
                    (true, blob.sliver_bytes)
                } else {
                    (false, 0)
                }
            }
        };
        let reply = Msg {
            kind,
            valid,
            from: m.to,
            to: m.from,
            ..m
        };
        // The store re-verifies what it reads before the holder answers.
        let work = self.message_ms() + self.verify_ms(payload);
        let done = self.compute(m.to, self.now as f64, work);
        self.send_at(reply, payload, done);
    }

    pub(super) fn serve_repair_store(&mut self, m: Msg) {
        let (b, i) = (ix(m.blob), usize::from(m.index));
        // The node's rule for a list offered in a store request (`holders::accept`), then the newer list wins
        // (`holders::supersedes`); the repair's own list again (a later index of the same repair) is kept.
        let (epoch, repairer) = (self.blobs[b].epoch, self.blobs[b].repairer);
        let held_repairer = if repairer == NO_NODE {
            Vec::new()
        } else {
            peer_key(repairer)
        };
        let held_holders: Vec<[u8; 4]> = self.blobs[b]
            .holders
            .iter()
            .map(|h| h.to_be_bytes())
            .collect();
        let sender = peer_key(m.from);
        let held = holders::List {
            holders: &held_holders,
            epoch: u64::from(epoch),
            repairer: &held_repairer,
        };
        // The simulator's messages carry no list: only the epoch and the repairer are judged.
        let offered = holders::List {
            holders: &[],
            epoch: u64::from(m.epoch),
            repairer: &sender,
        };
        let accept =
            match holders::accept(&offered, &sender, Some(&held), holders::Via::StoreRequest) {
                Ok(holders::Acceptance::Offered) => {
                    (m.epoch == epoch && m.from == repairer)
                        || holders::supersedes(offered.epoch, &sender, held.epoch, &held_repairer)
                }
                _ => false,
            };
        let mut reply = Msg {
            kind: Kind::RepairAck,
            valid: true,
            from: m.to,
            to: m.from,
            ..m
        };
        if self.refuses_deleted(m.blob) {
            reply.kind = Kind::RepairNack;
            reply.valid = false;
            self.send(reply, 0);
            return;
        }
        // A side's copy merged into its blob: the holder adopted the reunited list.
        if !accept || self.blobs[b].status == Status::Reunited {
            self.s.superseded_deliveries += 1;
            reply.kind = Kind::RepairNack;
            reply.valid = false;
            self.send(reply, 0);
            return;
        }
        let new_here = self.blobs[b].holders.get(i) != Some(&m.to) || self.blobs[b].slot[i] != GOOD;
        if new_here && !self.has_room(m.to, self.index_bytes(m.blob), room::Purpose::Repair) {
            self.s.stores_refused_full += 1;
            reply.kind = Kind::RepairNack;
            reply.valid = false;
            self.send(reply, 0);
            return;
        }
        if (self.blobs[b].epoch, self.blobs[b].repairer) != (m.epoch, m.from) {
            self.blobs[b].list_version += 1;
        }
        self.blobs[b].epoch = m.epoch;
        self.blobs[b].repairer = m.from;
        let holder = self.blobs[b].holders.get(i).copied().unwrap_or(NO_NODE);
        // Not a duplicated message or a retry of a delivery that already landed.
        if holder != m.to || self.blobs[b].slot[i] != GOOD {
            let origin = self.ops.get(m.op).and_then(|op| match &op.kind {
                OpKind::Repair(p) => p
                    .origin
                    .binary_search_by_key(&m.index, |o| o.0)
                    .ok()
                    .map(|at| p.origin[at].1),
                _ => None,
            });
            if origin.is_some_and(|o| holder != o && holder != m.to) {
                self.s.duplicate_rebuilds += 1;
            }
            let lost_write = self.sc.disk.lost_write;
            if rng::chance(&mut self.nodes[ix(m.to)].rng, lost_write) {
                self.s.lost_writes += 1;
                self.slot_change(m.blob, m.index, m.to, MISSING);
                self.nodes[ix(m.to)].held.push((m.blob, m.index));
            } else {
                self.slot_change(m.blob, m.index, m.to, GOOD);
            }
            self.s.slivers_rebuilt += 1;
        }
        // The new holder takes the rebuilt sliver off the transport and verifies it before it answers.
        let bytes = self.blobs[b].sliver_bytes;
        let work = self.receive_ms(&m, bytes);
        let done = self.compute(m.to, self.now as f64, work);
        self.send_at(reply, 0, done);
    }
}
