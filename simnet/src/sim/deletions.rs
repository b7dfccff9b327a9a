//! Deletion in the simulator (`workload.delete_fraction`): a certified blob's writer releases its claim with its
//! token (`floe_protocol::deletion`: the blob's claims decide that it is deleted), the live holders drop their
//! slivers at once (the deleter's requests and gossip reach them), and a holder that was down drops its slivers
//! one scan interval after it returns, told by a live predecessor's tombstone (`deletion::pass_on_to`). Stores
//! and repair deliveries of a deleted blob are refused, as the holders' tombstones refuse them.
//!
//! Simplifications: a holder cut off by a partition is treated like a live one (the node's gossip would reach
//! it when the partition heals, and its predecessors' scans too); which blobs are deleted, and when, is drawn
//! from a hash of the seed and the blob, so scenarios without deletions replay as before.

use floe_protocol::deletion::{self, Claims, Standing, Token};

use super::*;

impl Sim {
    /// The deletion token of blob `b`'s writer: a hash of the seed and the blob (no draw).
    fn token_of(&self, b: u32) -> Token {
        let mut hasher = blake3::Hasher::new_derive_key("floe-simnet 2026-12 deletion token v1");
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(&b.to_le_bytes());
        Token(*hasher.finalize().as_bytes())
    }

    /// At certification: whether blob `b`'s writer will delete it, and when (a hash, not a draw).
    pub(super) fn plan_deletion(&mut self, b: u32) {
        let w = &self.sc.workload;
        if w.delete_fraction <= 0.0 {
            return;
        }
        let roll = rng::splitmix64(self.seed ^ 0xde1e_7e00 ^ u64::from(b).rotate_left(17));
        // The top 53 bits as a uniform fraction.
        let uniform = (roll >> 11) as f64 / (1u64 << 53) as f64;
        if uniform >= w.delete_fraction {
            return;
        }
        let span = w
            .delete_after_max_ms
            .saturating_sub(w.delete_after_min_ms)
            .saturating_add(1);
        let delay = w
            .delete_after_min_ms
            .saturating_add(rng::splitmix64(roll) % span);
        let id = self.blobs[ix(b)].id;
        let claim = deletion::claim_of(&id, &self.token_of(b));
        self.blobs[ix(b)].deletion = Some(Box::new(Claims::deletable(claim)));
        self.schedule(self.now.saturating_add(delay), Ev::Delete(b));
    }

    /// Blob `b`'s writer deletes it: its claim is released, and with no claim left the blob is deleted; its
    /// live holders drop their slivers, and the ones that are down are told when they return.
    pub(super) fn delete(&mut self, b: u32) {
        let bi = ix(b);
        if self.blobs[bi].status != Status::Certified {
            return; // expired or never certified: nothing to delete
        }
        let (id, token, epoch) = (self.blobs[bi].id, self.token_of(b), self.current_epoch());
        let Some(claims) = self.blobs[bi].deletion.as_mut() else {
            return;
        };
        if claims.release(&id, token).is_err() || claims.standing(epoch) != Standing::Deleted {
            return;
        }
        let blob = &mut self.blobs[bi];
        blob.status = Status::Deleted;
        blob.deleted_at = self.now;
        if blob.readable {
            blob.readable = false;
            self.readable -= 1;
        }
        self.certified -= 1;
        self.s.blobs_deleted += 1;
        // Out of the counts first, as for an expiry: dropping its slivers is not a durability loss.
        let holders: Vec<u32> = self.blobs[bi].holders.to_vec();
        let mut missed: Vec<u32> = Vec::new();
        for (index, &holder) in holders.iter().enumerate() {
            if self.blobs[bi].slot.get(index) == Some(&MISSING) {
                continue;
            }
            if self.nodes[ix(holder)].alive {
                let index = u16::try_from(index).unwrap_or(u16::MAX);
                self.slot_change(b, index, holder, MISSING);
                self.s.deleted_slivers_dropped += 1;
            } else if !missed.contains(&holder) {
                missed.push(holder);
            }
        }
        // The deleter's requests and gossip: one message per holder, and the gossip to the topic.
        for _ in 0..holders.len() {
            self.count_message(GOSSIP_BYTES);
        }
        for holder in missed {
            self.s.deletion_holders_missed += 1;
            self.pending_deletions.entry(holder).or_default().push(b);
        }
    }

    /// `node` is back: each deleted blob it still holds slivers of is passed on to it by a live predecessor's
    /// tombstone at that holder's next scan, if one of the blob's other holders is up to do it.
    pub(super) fn pass_deletions_on(&mut self, node: u32) {
        let Some(blobs) = self.pending_deletions.remove(&node) else {
            return;
        };
        let mut still: Vec<u32> = Vec::new();
        for b in blobs {
            let holders = &self.blobs[ix(b)].holders;
            let told = holders.iter().any(|&h| {
                h != node
                    && self.nodes[ix(h)].alive
                    && deletion::pass_on_to(holders, &h, |p| self.nodes[ix(*p)].alive)
                        .contains(&node)
            });
            if told {
                let at = self.now.saturating_add(self.sc.workload.scan_interval_ms);
                self.schedule(at, Ev::DeletionReaches { blob: b, node });
            } else {
                still.push(b);
            }
        }
        if !still.is_empty() {
            self.pending_deletions.insert(node, still);
        }
    }

    /// A tombstone's pass-on reaches `node`: it drops its slivers of deleted blob `b` (if it is up still).
    pub(super) fn deletion_reaches(&mut self, b: u32, node: u32) {
        if !self.nodes[ix(node)].alive {
            self.pending_deletions.entry(node).or_default().push(b);
            return;
        }
        self.count_message(GOSSIP_BYTES);
        let holders: Vec<u32> = self.blobs[ix(b)].holders.to_vec();
        for (index, &holder) in holders.iter().enumerate() {
            if holder == node && self.blobs[ix(b)].slot.get(index) != Some(&MISSING) {
                let index = u16::try_from(index).unwrap_or(u16::MAX);
                self.slot_change(b, index, node, MISSING);
                self.s.deleted_slivers_dropped += 1;
            }
        }
        let took = self.now.saturating_sub(self.blobs[ix(b)].deleted_at);
        self.s.deletion_convergence_ms_max = self.s.deletion_convergence_ms_max.max(took);
    }

    /// Whether blob `b` is deleted: a delivery of it is refused (the holder's tombstone refuses it).
    pub(super) fn refuses_deleted(&mut self, b: u32) -> bool {
        let deleted = self.blobs[ix(b)].status == Status::Deleted;
        if deleted {
            self.s.stores_refused_deleted += 1;
        }
        deleted
    }

    /// Slivers of deleted blobs still held at the end (by holders down, or gone for good).
    pub(super) fn deleted_slivers_left(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|blob| blob.status == Status::Deleted)
            .map(|blob| as_u64(blob.slot.iter().filter(|&&s| s != MISSING).count()))
            .sum()
    }
}
