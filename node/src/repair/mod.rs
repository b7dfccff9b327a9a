//! The repair driver: notices departed holders, runs the protocol core's repair plan and [`Repair`] state
//! machine for the blobs this node leads, hands slivers off when they are no longer ours (or when the node
//! leaves), adopts newer holder lists from gossip, and challenges holders to prove they still hold their slivers.
//!
//! Decisions (who is gone after the grace period, who leads, where slivers go, which list wins) come from
//! `floe_protocol::{steward, repair, holders}`; this module only gathers the inputs (peer view, store, challenge results) and maps
//! effects to requests, gossip, disk and timers. It must not decide placement itself.
//!
//! Files: this one has the shared views (who is gone, failing, excluded; what is held); `scan` runs the periodic
//! scan and applies gossip, `lead` leads a repair, `handoff` hands slivers off, `challenges` runs storage
//! challenges, `reunion` compares lists with former holders, `lists` asks peers for their lists by digest (for
//! catch-ups and reunions). Each adds methods to `Node` and uses only this file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use libp2p::PeerId;
use tokio::sync::mpsc;

use floe_protocol::challenge::{self, Challenge, Recorded, Role, Verdict};
use floe_protocol::decoder::VerifiedSliver;
use floe_protocol::holders::{self, Acceptance, CATCH_UP_ASKED, Via};
use floe_protocol::lifetime;
use floe_protocol::placement::PeerKey;
use floe_protocol::repair::{
    Repair, RepairEffect, RepairPlan, plan as plan_repair, repair_read_config,
};
use floe_protocol::steward;
use floe_protocol::stream_write::store_runs;
use floe_protocol::wire::{self, pb};
use floe_protocol::write::Millis;
use floe_protocol::{BlobId, BlobMetadata, Sliver};

mod challenges;
mod deletions;
mod errors;
mod evidence;
mod handoff;
mod lead;
mod lists;
mod reunion;
mod scan;

use crate::drive::{Driver, Wake};
use crate::net::{Gossip, MAX_GOSSIP_LEN};
use crate::service::{
    IndexSource, Node, SendError, StoreAnswer, check_holders, network_in, repair_candidates_in,
    store_request,
};
use crate::steward_state::RepairState;
use crate::store::HolderRecord;
pub use errors::{AnnouncementError, RepairError};
use evidence::Delivery;
pub(crate) use evidence::proven_departures;
use lists::ListAnswers;

/// How long a blob shows "repair in progress" after an announcement or a repair of it.
const RECENT_REPAIR: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a peer that announced its departure stays out of new holder lists.
const DEPARTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Hand-offs run at once.
const HANDOFF_CONCURRENCY: usize = 8;
/// Metadata requests of one catch-up or reunion in flight at once.
const CATCH_UP_CONCURRENCY: usize = 16;
/// At most one catch-up per blob in this long: an announcement far ahead costs its receivers metadata queries,
/// and a holder sending them in a loop must not turn every other holder into a query storm.
const CATCH_UP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A duration on the protocol's millisecond clock.
fn millis(duration: std::time::Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// A short fingerprint of a holder list, so a change of list (another repair, a competing list at the same
/// epoch) restarts the blob's settle time without keeping a copy of every list.
fn holders_fingerprint(record: &HolderRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    // In memory only, so the std hasher (fixed keys) is enough.
    let mut hasher = std::hash::DefaultHasher::new();
    record.epoch.hash(&mut hasher);
    record.holders.hash(&mut hasher);
    hasher.finish()
}

/// The holder list as the challenge tally reads it: index → peer.
fn holder_at(holders: &[PeerKey]) -> impl Fn(u16) -> Option<PeerId> + '_ {
    |index| {
        holders
            .get(usize::from(index))
            .and_then(|h| PeerId::from_bytes(h).ok())
    }
}

/// The sliver indexes of one blob held here.
#[derive(Debug, Default)]
struct Held {
    /// Indexes with every segment.
    whole: Vec<u16>,
    /// Indexes with only their first segments, and how many.
    partial: Vec<(u16, u64)>,
}

/// What a graceful leave did.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandoffReport {
    /// Blobs with slivers here.
    pub blobs: usize,
    /// Slivers handed to their next holder.
    pub handed_off: usize,
    /// Slivers that could not be handed off (left to repair).
    pub failed: usize,
    /// Sliver bytes handed off (the slivers' data, without proofs or framing).
    pub bytes: u64,
}

/// A blob's health as this node sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairView {
    /// Whether a repair of the blob ran or was announced in the last 30 s.
    pub in_progress: bool,
}

fn peer_key(peer: &PeerId) -> PeerKey {
    peer.to_bytes()
}

impl Node {
    fn state(&self) -> std::sync::MutexGuard<'_, RepairState> {
        self.inner
            .repair_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a repair of `blob_id` is under way, as far as this node knows.
    pub fn repair_view(&self, blob_id: &BlobId) -> RepairView {
        let state = self.state();
        RepairView {
            in_progress: state.running.contains(blob_id)
                || state
                    .recent
                    .get(blob_id)
                    .is_some_and(|t| t.elapsed() < RECENT_REPAIR),
        }
    }

    /// Consecutive failed challenges per peer, for status.
    pub fn challenge_failures(&self) -> BTreeMap<PeerId, u32> {
        self.state().challenge_failures.failures().clone()
    }

    /// Peers that failed their last challenges: gone for placement, and their slivers are rebuilt.
    fn failing_peers(&self) -> BTreeSet<PeerKey> {
        let threshold = self.inner.repair.challenge_failures;
        let state = self.state();
        state
            .challenge_failures
            .failures()
            .keys()
            .filter(|p| state.challenge_failures.is_failing(p, threshold))
            .map(peer_key)
            .collect()
    }

    /// Peers that receive no new slivers: failing ones, and ones that announced their departure (still
    /// handing off, so not gone: their slivers are on the way to their next holders, not lost).
    fn excluded_peers(&self) -> BTreeSet<PeerKey> {
        let mut excluded = self.failing_peers();
        excluded.extend(
            self.state()
                .departed
                .iter()
                .filter(|(_, at)| at.elapsed() < DEPARTED_FOR)
                .map(|(p, _)| p.clone()),
        );
        excluded
    }

    /// Holders of a blob gone whatever their connection: failing their challenges, holding a sliver of this
    /// blob that failed its challenges (`lost_holders`), or not a peer ID at all.
    pub(crate) fn failing_holders(
        &self,
        blob_id: &BlobId,
        holders: &[PeerKey],
    ) -> BTreeSet<PeerKey> {
        let mut failing = self.failing_peers();
        failing.extend(
            holders
                .iter()
                .filter(|h| PeerId::from_bytes(h).is_err())
                .cloned(),
        );
        // Counts of slivers that moved since they failed are dropped first.
        self.state()
            .challenge_failures
            .forget_moved(blob_id, holder_at(holders));
        failing.extend(self.lost_holders(blob_id, holders));
        // Holders found holding nothing of the blob: new holders a repair led here could not deliver to, and
        // holders that failed a challenge a repair leader's statement request made.
        let mut state = self.state();
        state
            .held_nothing
            .retain(|_, at| at.elapsed() < DEPARTED_FOR);
        failing.extend(
            state
                .held_nothing
                .keys()
                .filter(|(id, peer)| id == blob_id && holders.contains(peer))
                .map(|(_, peer)| peer.clone()),
        );
        failing
    }

    /// A blob's metadata, holder record, the sliver indexes held here whole (every segment; a write that
    /// stopped midway leaves a part that does not count) and the partial ones with the segments they hold;
    /// `None` without a readable record.
    async fn held(&self, blob_id: BlobId) -> Option<(BlobMetadata, HolderRecord, Held)> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = &node.inner.store;
            let (metadata, record) = store.metadata_record(&blob_id).ok()?;
            let segments = metadata.params().segment_count();
            let mut held = Held::default();
            for index in store.indexes(&blob_id) {
                match store.segments_held(&blob_id, index) {
                    count if count >= segments => held.whole.push(index),
                    count => held.partial.push((index, count)),
                }
            }
            Some((metadata, record, held))
        })
        .await
        .ok()
        .flatten()
    }

    /// Whether the partial index `(blob_id, index)`, holding its first `held` segments, may still be on its way:
    /// not yet seen by a scan, grown since the last one, or grown within the challenge settle time. A part that
    /// stopped growing longer ago than that was abandoned, and challenges must be able to find the loss.
    pub(crate) fn partial_still_growing(&self, blob_id: &BlobId, index: u16, held: u64) -> bool {
        let (now, settle) = (self.now(), millis(self.inner.repair.challenge_settle));
        self.state()
            .partial
            .still_growing(blob_id, index, held, now, settle)
    }

    /// Holders of `blob_id` whose sliver failed this node's challenges `challenge_failures` times in a row.
    fn lost_holders(&self, blob_id: &BlobId, holders: &[PeerKey]) -> BTreeSet<PeerKey> {
        let threshold = self.inner.repair.challenge_failures;
        self.state()
            .challenge_failures
            .lost_holders(blob_id, threshold, holder_at(holders))
            .iter()
            .map(peer_key)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn holder_list_fingerprints_change_with_the_list() {
        let record = HolderRecord {
            holders: vec![vec![1, 2], vec![3]],
            epoch: 4,
            repairer: vec![1, 2],
            content_type: String::new(),
            end_epoch: floe_protocol::lifetime::FOREVER,
            claims: Default::default(),
            former: Vec::new(),
        };
        let same = record.clone();
        let mut moved = record.clone();
        moved.holders.swap(0, 1);
        let mut newer = record.clone();
        newer.epoch = 5;
        assert_eq!(holders_fingerprint(&record), holders_fingerprint(&same));
        assert_ne!(holders_fingerprint(&record), holders_fingerprint(&moved));
        assert_ne!(holders_fingerprint(&record), holders_fingerprint(&newer));
    }
}
