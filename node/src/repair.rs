//! The repair driver: notices departed holders, runs the protocol core's repair plan and [`Repair`] state
//! machine for the blobs this node leads, hands slivers off when they are no longer ours (or when the node
//! leaves), adopts newer holder lists from gossip, and challenges holders to prove they still hold their slivers.
//!
//! Decisions (who is gone after the grace period, who leads, where slivers go, which announcement wins) come from
//! `floe_protocol::repair`; this module only gathers the inputs (peer view, store, challenge results) and maps
//! effects to requests, gossip, disk and timers. It must not decide placement itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use libp2p::PeerId;
use tokio::sync::mpsc;

use floe_protocol::challenge::{self, Challenge, Role};
use floe_protocol::content_type;
use floe_protocol::decoder::{SegmentDecoder, VerifiedSliver};
use floe_protocol::holders::{self, Acceptance, Via};
use floe_protocol::placement::PeerKey;
use floe_protocol::repair::{self as plan_rules, Repair, RepairEffect, RepairPlan};
use floe_protocol::steward;
use floe_protocol::stream_write::store_runs;
use floe_protocol::wire::{self, pb};
use floe_protocol::write::{Millis, Timer};
use floe_protocol::{BlobId, BlobMetadata, Sliver};

use crate::net::{Gossip, MAX_GOSSIP_LEN, PeerView};
use crate::service::{
    IndexSource, Node, StoreAnswer, check_holders, hash_threads, store_request, timer_fires,
};
use crate::steward_state::RepairState;
use crate::store::HolderRecord;

/// How long a blob shows "repair in progress" after an announcement or a repair of it.
const RECENT_REPAIR: std::time::Duration = std::time::Duration::from_secs(30);
/// Blobs challenged per scan at most, so a node with many blobs spreads its challenges out.
const CHALLENGES_PER_SCAN: usize = 16;
/// How long a peer that announced its departure stays out of new holder lists.
const DEPARTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Hand-offs run at once.
const HANDOFF_CONCURRENCY: usize = 8;

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

/// Whether a "still receiving" challenge answer (`net::RECEIVING`, then ": H of S segments held") is one an
/// honest holder gives for `segment`: it holds some first segments (H > 0), not all (H < S), and not the one
/// asked for (H ≤ segment). Anything else is a refusal, counted as a failure.
fn receiving_is_plausible(answer: &str, segment: u64) -> bool {
    let Some(rest) = answer
        .strip_prefix(crate::net::RECEIVING)
        .and_then(|r| r.strip_prefix(": "))
        .and_then(|r| r.strip_suffix(" segments held"))
    else {
        return false;
    };
    let Some((held, total)) = rest.split_once(" of ") else {
        return false;
    };
    match (held.parse::<u64>(), total.parse::<u64>()) {
        (Ok(held), Ok(total)) => held > 0 && held < total && segment >= held,
        _ => false,
    }
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

    /// Peers out of placement: out of reach for the grace period (counted from when this node first found them
    /// unconnected and dialled them, so a peer it never talked to is not gone at once), failing their
    /// challenges, or announced as leaving.
    /// Also says whether some other holder is out of reach but still within its grace period: the repair then
    /// waits for it (at most one grace period), so that holders lost together are rebuilt in one repair — one
    /// blob's worth of traffic instead of one per departure.
    fn gone_holders(&self, view: &PeerView, holders: &[PeerKey]) -> (BTreeSet<PeerKey>, bool) {
        let me = peer_key(&self.inner.peer_id);
        // Failing peers are gone, and so is an entry that is not a peer ID at all.
        let mut failing = self.failing_peers();
        failing.extend(
            holders
                .iter()
                .filter(|h| PeerId::from_bytes(h).is_err())
                .cloned(),
        );
        let connected = |holder: &PeerKey| {
            PeerId::from_bytes(holder).is_ok_and(|peer| view.connected_peers.contains(&peer))
        };
        let (now, grace) = (self.now(), millis(self.inner.repair.grace));
        let view = self
            .state()
            .liveness
            .gone_holders(holders, &me, now, grace, connected, &failing);
        for holder in &view.newly_gone {
            if let Ok(peer) = PeerId::from_bytes(holder) {
                tracing::info!(%peer, grace = ?self.inner.repair.grace, "holder out of reach past the grace period; its slivers move");
            }
        }
        (view.gone, view.pending)
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

    /// Applies gossiped repair announcements until the network stops.
    pub async fn listen_gossip(self, mut gossip: mpsc::Receiver<Gossip>) {
        while let Some(message) = gossip.recv().await {
            let source = message.source;
            if let Err(why) = self.on_announcement(message).await {
                self.inner
                    .metrics
                    .announcements_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%source, why, "refused a repair announcement");
            }
        }
    }

    async fn on_announcement(&self, gossip: Gossip) -> Result<(), String> {
        let announcement: pb::RepairAnnouncement =
            wire::decode_body(&gossip.data, MAX_GOSSIP_LEN, "RepairAnnouncement")
                .map_err(|e| e.to_string())?;
        let blob_id = BlobId::from_slice(&announcement.blob_id).map_err(|e| e.to_string())?;
        let leaving = !announcement.holders.contains(&announcement.repairer);
        let repairer = announcement.repairer.to_vec();
        let source = gossip.source.to_bytes();
        let node = self.clone();
        let adopted = tokio::task::spawn_blocking(move || {
            let held = node.inner.store.metadata_record(&blob_id).ok();
            let record = HolderRecord {
                holders: announcement.holders.iter().map(|h| h.to_vec()).collect(),
                epoch: announcement.epoch,
                repairer: announcement.repairer.to_vec(),
                // Announcements carry no label: the blob's stays.
                content_type: held
                    .as_ref()
                    .map(|(_, current)| current.content_type.clone())
                    .unwrap_or_default(),
            };
            let acceptance = holders::accept(
                &record.as_list(),
                &source,
                held.as_ref().map(|(_, current)| current.as_list()).as_ref(),
                Via::Announcement,
            )
            .map_err(|e| e.to_string())?;
            let Some((metadata, _)) = held.filter(|_| acceptance == Acceptance::Offered) else {
                return Ok(None); // not a blob we hold: nothing to update, nothing to remember
            };
            check_holders(&record.holders, metadata.params().shards())
                .map_err(|e| e.to_string())?;
            node.inner
                .store
                .put_record(&metadata, &record)
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some(adopted) = adopted else {
            return Ok(());
        };
        let mut state = self.state();
        state.recent.insert(blob_id, Instant::now());
        if leaving {
            // It is shutting down: never place a sliver on it while its connection winds down.
            state.departed.insert(repairer, Instant::now());
        }
        drop(state);
        if adopted {
            self.inner
                .metrics
                .holder_lists_adopted
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%blob_id, source = %gossip.source, "adopted a new holder list");
        }
        Ok(())
    }

    /// Checks the blobs held here every interval: repairs what this node leads, hands off what is no longer
    /// ours, challenges holders. Runs until the node stops.
    pub async fn repair_loop(self) {
        let mut tick = tokio::time::interval(self.inner.repair.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.state().leaving {
                return;
            }
            self.scan().await;
        }
    }

    async fn scan(&self) {
        {
            let mut state = self.state();
            state.recent.retain(|_, at| at.elapsed() < RECENT_REPAIR);
            state.departed.retain(|_, at| at.elapsed() < DEPARTED_FOR);
        }
        let view = self.inner.net.view().await;
        let me = peer_key(&self.inner.peer_id);
        let node = self.clone();
        let Ok(blobs) = tokio::task::spawn_blocking(move || node.inner.store.blobs()).await else {
            return;
        };
        // Per-sliver challenge counts matter only for blobs still held here.
        {
            let held: BTreeSet<&BlobId> = blobs.iter().collect();
            let mut state = self.state();
            state
                .challenge_failures
                .retain_slivers(|blob_id, _, _| held.contains(blob_id));
            state.settling.retain(|blob_id| held.contains(blob_id));
        }
        let mut challenges = 0;
        let mut to_dial: BTreeSet<PeerId> = BTreeSet::new();
        let mut partial: BTreeMap<(BlobId, u16), u64> = BTreeMap::new();
        for blob_id in blobs {
            let Some((metadata, record, held)) = self.held(blob_id).await else {
                continue;
            };
            partial.extend(
                held.partial
                    .iter()
                    .map(|&(index, count)| ((blob_id, index), count)),
            );
            let local = held.whole;
            if record.holders.is_empty() {
                continue;
            }
            let (mut gone, pending) = self.gone_holders(&view, &record.holders);
            // A holder whose sliver of this blob failed its challenges lost it: gone for this blob. Counts of
            // slivers that moved since are dropped first.
            self.state()
                .challenge_failures
                .forget_moved(&blob_id, holder_at(&record.holders));
            gone.extend(self.lost_holders(&blob_id, &record.holders));
            for holder in &record.holders {
                if let Ok(peer) = PeerId::from_bytes(holder)
                    && peer != self.inner.peer_id
                    && !view.connected_peers.contains(&peer)
                {
                    to_dial.insert(peer);
                }
            }
            // Hand-off duty: slivers held here that the current list gives to a live peer (not while this node
            // rebuilds the blob from them).
            let rebuilding = self.state().running.contains(&blob_id);
            for index in steward::hand_off_indexes(&record.holders, &local, &me, &gone, rebuilding)
            {
                self.spawn_hand_off(blob_id, index, metadata.clone(), record.clone());
            }
            let Some(leader) = plan_rules::leader(&record.holders, &gone).cloned() else {
                continue;
            };
            // Only a node holding a whole index of the blob challenges (see `challenge::role`); once this node's
            // index is whole the others are at most a window of runs behind.
            let role = challenge::role(&record.holders, &gone, &me, !local.is_empty());
            let settled = self.state().settling.settled(
                blob_id,
                holders_fingerprint(&record),
                !local.is_empty(),
                self.now(),
                millis(self.inner.repair.challenge_settle),
            );
            if leader != me {
                if matches!(role, Role::Deputy { .. })
                    && settled
                    && !self.repair_view(&blob_id).in_progress
                    && self.due_for_challenge(&blob_id)
                {
                    let node = self.clone();
                    tokio::spawn(async move { node.challenge(blob_id, record, gone, role).await });
                }
                continue;
            }
            // Leader duty: repair and rebalance, then challenge.
            let excluded = self.excluded_peers();
            let candidates: Vec<PeerKey> = self
                .neighbourhood(&blob_id)
                .await
                .into_iter()
                .filter(|p| *p == self.inner.peer_id || view.connected_peers.contains(p))
                .map(|p| peer_key(&p))
                .filter(|p| !gone.contains(p) && !excluded.contains(p))
                .collect();
            let lost = record.holders.iter().filter(|h| gone.contains(*h)).count();
            let shards = u16::try_from(record.holders.len()).unwrap_or(u16::MAX);
            if let Some(plan) = plan_rules::plan(&blob_id, &record.holders, &gone, &candidates)
                && !plan.is_empty()
                && steward::repair_now(lost, shards, self.inner.repair.min_lost, pending)
            {
                let start = {
                    let mut state = self.state();
                    let room = state.running.len() < self.inner.repair.max_concurrent;
                    room && state.running.insert(blob_id)
                };
                if start {
                    let node = self.clone();
                    let gone = gone.clone();
                    let (metadata, record, local) =
                        (metadata.clone(), record.clone(), local.clone());
                    tokio::spawn(async move {
                        let outcome = node
                            .run_repair(blob_id, metadata, record, plan, gone, local)
                            .await;
                        if let Err(why) = outcome {
                            node.inner
                                .metrics
                                .repairs_failed
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%blob_id, why, "repair failed; will retry");
                        }
                        let mut state = node.state();
                        state.running.remove(&blob_id);
                        state.recent.insert(blob_id, Instant::now());
                    });
                }
                continue;
            }
            // A blob whose holder list just changed is not challenged: its new holders may still be receiving.
            if challenges < CHALLENGES_PER_SCAN
                && role == Role::Leader
                && settled
                && !self.repair_view(&blob_id).in_progress
                && self.due_for_challenge(&blob_id)
            {
                challenges += 1;
                let node = self.clone();
                tokio::spawn(async move { node.challenge(blob_id, record, gone, role).await });
            }
        }
        // Holders we are not connected to are dialled, so an idle holder is not mistaken for a departed one.
        for peer in to_dial.into_iter().take(64) {
            self.inner.net.dial(peer).await;
        }
        self.reclaim_stalled_partials(&partial).await;
    }

    /// Deletes the partial sliver indexes that have not grown for `partial_ttl`: what a write, repair or
    /// hand-off that stopped midway left behind. No receipt covers them, and a later repair sends the index
    /// again from its first run.
    async fn reclaim_stalled_partials(&self, seen: &BTreeMap<(BlobId, u16), u64>) {
        let ttl = self.inner.repair.partial_ttl;
        // Parts are tracked even with reclaiming off (TTL 0): challenges need to know which ones stopped growing.
        let now = self.now();
        let stalled = self.state().partial.stalled(
            seen,
            now,
            if ttl.is_zero() {
                Millis::MAX
            } else {
                millis(ttl)
            },
        );
        if ttl.is_zero() {
            return; // reclaiming is off
        }
        for (blob_id, index) in stalled {
            let node = self.clone();
            let segments = seen.get(&(blob_id, index)).copied().unwrap_or(0);
            // Deleted only if it still holds what the scan saw, checked in the deleting commit: a run stored
            // meanwhile (a delivery that resumed) keeps it.
            let removed = tokio::task::spawn_blocking(move || {
                node.inner.store.remove_partial(&blob_id, index, segments)
            })
            .await;
            match removed {
                Ok(Ok(deleted)) => {
                    self.state().partial.forget(&blob_id, index);
                    if deleted {
                        self.inner
                            .metrics
                            .partial_indexes_reclaimed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%blob_id, index, segments, ?ttl, "deleted part of a sliver index that stopped growing");
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(%blob_id, index, %error, "could not delete a stalled partial index");
                }
                Err(error) => {
                    tracing::warn!(%blob_id, index, %error, "could not delete a stalled partial index");
                }
            }
        }
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

    fn due_for_challenge(&self, blob_id: &BlobId) -> bool {
        let mut state = self.state();
        let due = state
            .last_challenged
            .get(blob_id)
            .is_none_or(|t| t.elapsed() >= self.inner.repair.challenge_interval);
        if due {
            state.last_challenged.insert(*blob_id, Instant::now());
        }
        due
    }

    /// Leads one repair: announces the new holder list (the claim), rebuilds the slivers of departed holders
    /// from k verified slivers, and delivers them to their new holders.
    async fn run_repair(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        record: HolderRecord,
        plan: RepairPlan,
        gone: BTreeSet<PeerKey>,
        local: Vec<u16>,
    ) -> Result<(), String> {
        let me = peer_key(&self.inner.peer_id);
        // A holder that missed a newer list (it was down) must not lead with a stale one: ask the others first.
        if let Some(newer) = self.newer_record(&blob_id, &record, &gone).await {
            let node = self.clone();
            tokio::task::spawn_blocking(move || node.inner.store.put_record(&metadata, &newer))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        // The plan was made from the record read at the start of the scan; if a newer list arrived since (a
        // hand-off announcement, another leader's repair), the plan is stale: the next scan plans again.
        let node = self.clone();
        let current =
            tokio::task::spawn_blocking(move || node.inner.store.metadata_record(&blob_id))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .1;
        if current != record {
            tracing::debug!(%blob_id, "holder list changed while planning; replanning later");
            return Ok(());
        }
        let targets: BTreeSet<u16> = plan.moves_from(&gone).map(|m| m.index).collect();
        let new_record = HolderRecord {
            holders: plan.holders.clone(),
            epoch: record.epoch.saturating_add(1),
            repairer: me.clone(),
            content_type: record.content_type.clone(),
        };
        {
            let (node, metadata, new_record) = (self.clone(), metadata.clone(), new_record.clone());
            let adopted = tokio::task::spawn_blocking(move || {
                node.inner.store.put_record(&metadata, &new_record)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            if !adopted {
                // A competing list won in the meantime: follow it and rebuild nothing.
                return Ok(());
            }
        }
        self.announce(&blob_id, &new_record, &targets).await;
        tracing::info!(%blob_id, epoch = new_record.epoch, rebuild = ?targets, moves = plan.moves.len(), "new holder list");
        if targets.is_empty() {
            return Ok(());
        }
        self.inner
            .metrics
            .repairs_started
            .fetch_add(1, Ordering::Relaxed);
        let (outcome, delivered) = self
            .rebuild_and_deliver(
                blob_id,
                &metadata,
                &record,
                &new_record,
                &targets,
                &gone,
                &local,
            )
            .await;
        if outcome.is_err() {
            // Indexes that did not reach their new holder go back to their departed holder in a newer list, so
            // the list never names a holder that lacks its sliver and the next scan repairs them again.
            let mut holders = new_record.holders.clone();
            for index in targets.iter().filter(|i| !delivered.contains(i)) {
                if let (Some(slot), Some(old)) = (
                    holders.get_mut(usize::from(*index)),
                    record.holders.get(usize::from(*index)),
                ) {
                    slot.clone_from(old);
                }
            }
            let reverted = HolderRecord {
                holders,
                epoch: new_record.epoch.saturating_add(1),
                repairer: me,
                content_type: new_record.content_type.clone(),
            };
            self.announce(&blob_id, &reverted, &BTreeSet::new()).await;
            let node = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                node.inner.store.put_record(&metadata, &reverted)
            })
            .await;
        }
        outcome
    }

    /// Fetches k slivers from the live holders of `record`, rebuilds `targets`, and delivers them to their
    /// holders in `delivery` (the new list), run by run (`store_runs`): each run is fetched, rebuilt and delivered
    /// before the next, so a repair holds about k + |targets| runs of slivers whatever the blob's size. Returns
    /// the outcome and the indexes that reached their holder whole.
    #[allow(clippy::too_many_arguments)]
    async fn rebuild_and_deliver(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        delivery: &HolderRecord,
        targets: &BTreeSet<u16>,
        gone: &BTreeSet<PeerKey>,
        local: &[u16],
    ) -> (Result<(), String>, BTreeSet<u16>) {
        let runs = store_runs(metadata.params());
        let count = runs.len();
        for (at, run) in runs.into_iter().enumerate() {
            let last = at + 1 == count;
            let (outcome, delivered) = self
                .rebuild_and_deliver_run(
                    blob_id, metadata, record, delivery, targets, gone, local, run, last,
                )
                .await;
            if outcome.is_err() || last {
                // Before the last run no index is whole at its new holder yet.
                return (outcome, if last { delivered } else { BTreeSet::new() });
            }
        }
        (Ok(()), BTreeSet::new())
    }

    /// One run of [`Self::rebuild_and_deliver`]: segments `run` of every target.
    #[allow(clippy::too_many_arguments)]
    async fn rebuild_and_deliver_run(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        delivery: &HolderRecord,
        targets: &BTreeSet<u16>,
        gone: &BTreeSet<PeerKey>,
        local: &[u16],
        run: std::ops::Range<u64>,
        last: bool,
    ) -> (Result<(), String>, BTreeSet<u16>) {
        let me = peer_key(&self.inner.peer_id);
        let params = *metadata.params();
        let (first, count) = (run.start, run.end - run.start);
        let sources: Vec<(u16, PeerKey)> = record
            .holders
            .iter()
            .enumerate()
            .filter(|(_, h)| !gone.contains(*h) && **h != me)
            .filter_map(|(i, h)| Some((u16::try_from(i).ok()?, h.clone())))
            .collect();
        let have: BTreeSet<u16> = local
            .iter()
            .copied()
            .filter(|i| !targets.contains(i))
            .collect();
        let view = self.inner.net.view().await;
        let rtt: BTreeMap<Vec<u8>, u64> = view
            .rtt_ms
            .iter()
            .map(|(p, ms)| (p.to_bytes(), *ms))
            .collect();
        let (mut repair, mut effects) = Repair::start(
            blob_id,
            params.source_shards(),
            delivery.holders.clone(),
            targets.clone(),
            sources,
            &have,
            |peer| rtt.get(peer).copied(),
            plan_rules::repair_read_config(),
            self.inner.write_config,
            self.now(),
        );
        let (fetched_tx, mut fetched_rx) = mpsc::unbounded_channel();
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
        let mut fetched: BTreeMap<u16, Vec<VerifiedSliver>> = BTreeMap::new();
        let mut rebuilt: BTreeMap<u16, Vec<Sliver>> = BTreeMap::new();
        let mut delivered: BTreeSet<u16> = BTreeSet::new();
        let mut timer = Timer::default();
        let outcome: Result<(), String> = 'repair: loop {
            let mut next = Vec::new();
            for effect in effects.drain(..) {
                match effect {
                    RepairEffect::Fetch { peer, index } => {
                        let (node, tx) = (self.clone(), fetched_tx.clone());
                        tokio::spawn(async move {
                            let slivers = node
                                .fetch_index(&peer, &blob_id, index, &params, first, count)
                                .await;
                            let _ = tx.send((index, slivers));
                        });
                    }
                    RepairEffect::SetTimer(at) => {
                        timer.request(at);
                    }
                    RepairEffect::Rebuild { sources, targets } => {
                        let chosen: BTreeMap<u16, Vec<VerifiedSliver>> = sources
                            .iter()
                            .filter_map(|i| fetched.remove(i).map(|s| (*i, s)))
                            .collect();
                        fetched.clear();
                        match self
                            .rebuild(
                                blob_id,
                                metadata.clone(),
                                chosen,
                                sources,
                                targets,
                                run.clone(),
                            )
                            .await
                        {
                            Ok(slivers) => {
                                rebuilt = slivers;
                                next.extend(repair.on_rebuilt(self.now()));
                            }
                            Err(why) => {
                                tracing::warn!(%blob_id, why, "rebuild failed");
                                next.extend(
                                    repair
                                        .on_rebuild_failed(0, usize::from(params.source_shards())),
                                );
                            }
                        }
                    }
                    RepairEffect::Send {
                        peer,
                        index,
                        attempt,
                    } => {
                        let Some(slivers) = rebuilt.get(&index) else {
                            continue;
                        };
                        let request = store_request(
                            slivers.iter().map(pb::Sliver::from).collect(),
                            metadata,
                            delivery,
                        );
                        let bytes: usize = slivers.iter().map(|s| s.data.len()).sum();
                        let (node, tx) = (self.clone(), sent_tx.clone());
                        let end = run.end;
                        tokio::spawn(async move {
                            // Before the last run the holder answers progress; the receipt comes with the last.
                            let result = match node.send_store(&peer, blob_id, index, request).await
                            {
                                Ok(StoreAnswer::Receipt(receipt)) => Ok(receipt.signature.to_vec()),
                                Ok(StoreAnswer::Progress { segments_held, .. })
                                    if !last && segments_held >= end =>
                                {
                                    Ok(Vec::new())
                                }
                                Ok(StoreAnswer::Progress { segments_held, .. }) => Err(format!(
                                    "the new holder keeps {segments_held} segments after a run up to {end}"
                                )),
                                Err(why) => Err(why),
                            };
                            if result.is_ok() {
                                node.inner.metrics.repair_bytes_sent.fetch_add(
                                    u64::try_from(bytes).unwrap_or(u64::MAX),
                                    Ordering::Relaxed,
                                );
                            }
                            let _ = tx.send((peer, index, attempt, result));
                        });
                    }
                    RepairEffect::Finished { failed, .. } if failed == 0 && !last => {
                        break 'repair Ok(());
                    }
                    RepairEffect::Finished { delivered, failed } => {
                        let m = &self.inner.metrics;
                        // Only the last run completes an index at its new holder.
                        if last {
                            m.slivers_rebuilt.fetch_add(
                                u64::try_from(delivered).unwrap_or(u64::MAX),
                                Ordering::Relaxed,
                            );
                        }
                        if failed > 0 {
                            break 'repair Err(format!(
                                "{failed} rebuilt slivers could not be delivered"
                            ));
                        }
                        m.repairs_done.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%blob_id, delivered, "repair done");
                        break 'repair Ok(());
                    }
                    RepairEffect::Failed { have, need } => {
                        break 'repair Err(format!(
                            "only {have} of the {need} slivers needed could be fetched"
                        ));
                    }
                }
            }
            if !next.is_empty() {
                effects = next;
                continue;
            }
            tokio::select! {
                Some((index, slivers)) = fetched_rx.recv() => {
                    let valid = slivers.is_some();
                    if let Some(slivers) = slivers {
                        let bytes: usize = slivers.iter().map(|s| s.sliver().data.len()).sum();
                        self.inner.metrics.repair_bytes_fetched.fetch_add(
                            u64::try_from(bytes).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        fetched.insert(index, slivers);
                    }
                    effects = repair.on_fetched(index, valid, self.now());
                }
                Some((peer, index, attempt, result)) = sent_rx.recv() => {
                    effects = match result {
                        Ok(signature) => {
                            delivered.insert(index);
                            repair.on_receipt(&peer, index, signature)
                        }
                        Err(why) => {
                            tracing::debug!(%blob_id, index, attempt, why, "delivering a rebuilt sliver failed");
                            repair.on_send_failure(&peer, index, attempt, self.now())
                        }
                    };
                }
                _ = timer_fires(self.inner.epoch, timer.deadline()) => {
                    timer.fire();
                    effects = repair.on_timer(self.now());
                }
            }
        };
        (outcome, delivered)
    }

    /// The newest holder record among the live holders', if it supersedes `current`.
    async fn newer_record(
        &self,
        blob_id: &BlobId,
        current: &HolderRecord,
        gone: &BTreeSet<PeerKey>,
    ) -> Option<HolderRecord> {
        let me = peer_key(&self.inner.peer_id);
        let mut best: Option<HolderRecord> = None;
        let peers: BTreeSet<&PeerKey> = current
            .holders
            .iter()
            .filter(|h| **h != me && !gone.contains(*h))
            .collect();
        for holder in peers.into_iter().take(3) {
            let Ok(peer) = PeerId::from_bytes(holder) else {
                continue;
            };
            let Some(answer) = self.ask_metadata(peer, blob_id).await else {
                continue;
            };
            let record = HolderRecord {
                holders: answer.holders.iter().map(|h| h.to_vec()).collect(),
                epoch: answer.holders_epoch,
                repairer: answer.holders_repairer.to_vec(),
                content_type: content_type::or_none(&answer.content_type).to_owned(),
            }
            .keeping_label_of(current);
            let shards = current.holders.len();
            if record.holders.len() == shards
                && check_holders(&record.holders, u16::try_from(shards).unwrap_or(0)).is_ok()
                && record.supersedes(best.as_ref().unwrap_or(current))
            {
                best = Some(record);
            }
        }
        best
    }

    async fn announce(&self, blob_id: &BlobId, record: &HolderRecord, targets: &BTreeSet<u16>) {
        let announcement = pb::RepairAnnouncement {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            indexes: targets.iter().map(|&i| u32::from(i)).collect(),
            repairer: Bytes::from(record.repairer.clone()),
            epoch: record.epoch,
            holders: record
                .holders
                .iter()
                .map(|h| Bytes::from(h.clone()))
                .collect(),
        };
        self.inner
            .net
            .publish(prost::Message::encode_to_vec(&announcement))
            .await;
        self.state().recent.insert(*blob_id, Instant::now());
    }

    /// Decodes each segment from the chosen slivers (plus our own) and keeps the target slivers.
    async fn rebuild(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        mut chosen: BTreeMap<u16, Vec<VerifiedSliver>>,
        sources: Vec<u16>,
        targets: Vec<u16>,
        run: std::ops::Range<u64>,
    ) -> Result<BTreeMap<u16, Vec<Sliver>>, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let params = *metadata.params();
            for index in &sources {
                if chosen.contains_key(index) {
                    continue;
                }
                // One of ours: read and verify it from the store.
                let own = node
                    .inner
                    .store
                    .read_slivers(&blob_id, *index, run.start, run.end - run.start)
                    .map_err(|e| e.to_string())?;
                let verified = own
                    .into_iter()
                    .map(|s| VerifiedSliver::new(s, &blob_id).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                chosen.insert(*index, verified);
            }
            let mut decoder = SegmentDecoder::new(params).with_hash_threads(hash_threads());
            let mut rebuilt: BTreeMap<u16, Vec<Sliver>> = BTreeMap::new();
            for segment in run.clone() {
                let these: Vec<VerifiedSliver> = chosen
                    .values()
                    .filter_map(|set| {
                        // Slivers come in segment order from the run's start; fall back to a search.
                        usize::try_from(segment - run.start)
                            .ok()
                            .and_then(|at| set.get(at))
                            .filter(|s| s.sliver().segment == segment)
                            .or_else(|| set.iter().find(|s| s.sliver().segment == segment))
                            .cloned()
                    })
                    .collect();
                let slivers = decoder
                    .rebuild(segment, &these, &targets)
                    .map_err(|e| e.to_string())?;
                node.inner
                    .metrics
                    .repair_segments_decoded
                    .fetch_add(1, Ordering::Relaxed);
                for sliver in slivers {
                    rebuilt.entry(sliver.index).or_default().push(sliver);
                }
            }
            Ok(rebuilt)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn spawn_hand_off(
        &self,
        blob_id: BlobId,
        index: u16,
        metadata: BlobMetadata,
        record: HolderRecord,
    ) {
        if !self.state().handing_off.insert((blob_id, index)) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(why) = node.hand_off(blob_id, index, &metadata, &record).await {
                tracing::debug!(%blob_id, index, why, "hand-off failed; will retry");
            }
            node.state().handing_off.remove(&(blob_id, index));
        });
    }

    /// Sends our sliver `index` to its holder in `record`, then deletes our copy.
    async fn hand_off(
        &self,
        blob_id: BlobId,
        index: u16,
        metadata: &BlobMetadata,
        record: &HolderRecord,
    ) -> Result<u64, String> {
        let holder = record
            .holders
            .get(usize::from(index))
            .ok_or("index out of the holder list")?
            .clone();
        if holder == peer_key(&self.inner.peer_id) {
            return Ok(0);
        }
        let bytes: u64 = (0..metadata.params().segment_count())
            .filter_map(|s| metadata.params().sliver_len(s))
            .map(|len| u64::try_from(len).unwrap_or(u64::MAX))
            .sum();
        self.send_index(&holder, index, metadata, record, &IndexSource::Store)
            .await?;
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.inner.store.remove_sliver(&blob_id, index))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let m = &self.inner.metrics;
        m.slivers_handed_off.fetch_add(1, Ordering::Relaxed);
        m.handoff_bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        tracing::info!(%blob_id, index, to = ?PeerId::from_bytes(&holder).ok(), "handed a sliver off");
        Ok(bytes)
    }

    /// A planned departure: for every blob with slivers here, announce a holder list without this node and hand
    /// each sliver to its new holder. No decode happens anywhere.
    pub async fn hand_off_all(&self) -> HandoffReport {
        self.state().leaving = true;
        // Repairs under way announced lists that name holders still waiting for their slivers: let them finish
        // (for up to half the hand-off time) rather than leave such lists behind.
        let deadline = Instant::now() + self.inner.repair.handoff_timeout / 2;
        while !self.state().running.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut report = HandoffReport::default();
        let view = self.inner.net.view().await;
        let me = peer_key(&self.inner.peer_id);
        let node = self.clone();
        let Ok(blobs) = tokio::task::spawn_blocking(move || node.inner.store.blobs()).await else {
            return report;
        };
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(HANDOFF_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for blob_id in blobs {
            let Some((metadata, record, held)) = self.held(blob_id).await else {
                continue;
            };
            let local = held.whole;
            if local.is_empty() || record.holders.is_empty() {
                continue;
            }
            report.blobs += 1;
            // Only this node leaves in this plan: other holders' slivers stay where they are (a departed one is
            // for the repair leader to rebuild).
            let gone: BTreeSet<PeerKey> = [me.clone()].into_iter().collect();
            let candidates: Vec<PeerKey> = self
                .neighbourhood(&blob_id)
                .await
                .into_iter()
                .filter(|p| view.connected_peers.contains(p))
                .map(|p| peer_key(&p))
                .collect();
            let Some(plan) = plan_rules::plan(&blob_id, &record.holders, &gone, &candidates) else {
                report.failed += local.len();
                continue;
            };
            let new_record = HolderRecord {
                holders: plan.holders,
                epoch: record.epoch.saturating_add(1),
                repairer: me.clone(),
                content_type: record.content_type.clone(),
            };
            self.announce(&blob_id, &new_record, &BTreeSet::new()).await;
            let node = self.clone();
            let (meta, rec) = (metadata.clone(), new_record.clone());
            let _ =
                tokio::task::spawn_blocking(move || node.inner.store.put_record(&meta, &rec)).await;
            for index in local {
                let (node, metadata, record) = (self.clone(), metadata.clone(), new_record.clone());
                let semaphore = semaphore.clone();
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    node.hand_off(blob_id, index, &metadata, &record).await
                });
            }
        }
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(bytes)) => {
                    report.handed_off += 1;
                    report.bytes = report.bytes.saturating_add(bytes);
                }
                Ok(Err(why)) => {
                    tracing::warn!(why, "a hand-off failed");
                    report.failed += 1;
                }
                Err(_) => report.failed += 1,
            }
        }
        report
    }

    /// Runs one round of challenges (`challenge::round`) for a blob, as `role`, and counts each outcome for its
    /// holder.
    async fn challenge(
        &self,
        blob_id: BlobId,
        record: HolderRecord,
        gone: BTreeSet<PeerKey>,
        role: Role,
    ) {
        let me = peer_key(&self.inner.peer_id);
        let node = self.clone();
        let Ok(Ok((metadata, _))) =
            tokio::task::spawn_blocking(move || node.inner.store.metadata(&blob_id)).await
        else {
            return;
        };
        let segments = metadata.params().segment_count();
        let suspects = self
            .state()
            .challenge_failures
            .suspects(&blob_id, holder_at(&record.holders));
        let round = challenge::round(
            &record.holders,
            &gone,
            &me,
            &role,
            segments,
            &suspects,
            rand::random(),
        );
        for challenge in round {
            let Ok(peer) = PeerId::from_bytes(&challenge.holder) else {
                continue;
            };
            self.challenge_one(blob_id, &challenge, peer).await;
        }
    }

    async fn challenge_one(&self, blob_id: BlobId, challenge: &Challenge, peer: PeerId) {
        let request = pb::Request {
            kind: Some(pb::request::Kind::Challenge(challenge.request(&blob_id))),
        };
        let verdict = match self.inner.net.request(peer, request).await {
            // Unreachable is the liveness check's business, not a failed proof.
            Err(why) => {
                tracing::debug!(%peer, why, "challenge not delivered");
                return;
            }
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Challenge(answer)),
            }) => challenge.judge(&blob_id, &answer),
            // A holder too busy to answer proved nothing either way.
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) if why == crate::net::BUSY => {
                tracing::debug!(%peer, "challenged holder busy");
                return;
            }
            // Still receiving the sliver (a repair or hand-off under way): it proves nothing yet, if the answer is
            // one an honest holder can give — some first segments held, the one asked for not among them.
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) if receiving_is_plausible(&why, challenge.segment) => {
                tracing::debug!(%peer, why, "challenged holder still receiving the sliver");
                return;
            }
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) => Err(challenge::ChallengeFailure::Refused(why)),
            Ok(_) => Err(challenge::ChallengeFailure::Refused(
                "unexpected answer".into(),
            )),
        };
        let m = &self.inner.metrics;
        let mut state = self.state();
        match verdict {
            Ok(()) => {
                m.challenges_passed.fetch_add(1, Ordering::Relaxed);
                state
                    .challenge_failures
                    .passed(&peer, &blob_id, challenge.index);
            }
            Err(why) => {
                m.challenges_failed.fetch_add(1, Ordering::Relaxed);
                let (failures, sliver_failures) = state.challenge_failures.failed(
                    &peer,
                    &blob_id,
                    challenge.index,
                    challenge.segment,
                );
                tracing::warn!(%peer, %blob_id, index = challenge.index, segment = challenge.segment, %why, failures, sliver_failures, "holder failed a storage challenge");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_still_receiving_answers_are_no_verdict() {
        let answer = crate::net::receiving_answer;
        assert!(receiving_is_plausible(&answer(1, 2), 1));
        assert!(receiving_is_plausible(&answer(3, 10), 9));
        // The segment asked for is one it says it holds: it must produce it.
        assert!(!receiving_is_plausible(&answer(3, 10), 2));
        // Nothing held, or everything: not a delivery under way.
        assert!(!receiving_is_plausible(&answer(0, 10), 5));
        assert!(!receiving_is_plausible(&answer(10, 10), 10));
        // Malformed.
        assert!(!receiving_is_plausible(crate::net::RECEIVING, 5));
        assert!(!receiving_is_plausible(
            "still receiving this sliver: x of 2 segments held",
            5
        ));
        assert!(!receiving_is_plausible("node busy; try again", 5));
    }

    #[test]
    fn holder_list_fingerprints_change_with_the_list() {
        let record = HolderRecord {
            holders: vec![vec![1, 2], vec![3]],
            epoch: 4,
            repairer: vec![1, 2],
            content_type: String::new(),
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
