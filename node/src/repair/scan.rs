//! The scan: every interval, each blob held here is checked with `floe_protocol::steward`'s rules (who is gone,
//! what to hand off, whether to repair or challenge), and gossiped repair announcements are applied.

use super::*;

/// What an announcement led to.
enum Heard {
    /// Not a blob held here, or a list not taken.
    Nothing,
    /// The list was offered; whether it is now the one held.
    Adopted(bool),
    /// The list is too far ahead to take from its sender alone: catch up with the holders.
    FarAhead(Box<(BlobMetadata, HolderRecord)>),
    /// A newer list from a former holder: compare with the former holders again.
    Reopen,
    /// A list that takes indexes without evidence: refused, and the holders are asked what they hold.
    Unproven(Box<(BlobMetadata, HolderRecord)>, holders::HolderListError),
}

/// A live blob this close to its end epoch counts as expiring soon (`floe_blobs_expiring_soon`, and
/// `blobsExpiringSoon` in the node's status).
pub const EXPIRY_WARNING_EPOCHS: u64 = 2;

impl Node {
    /// Deletes this node's slivers of a blob whose lifetime is over (its record stays, saying so, so a late
    /// store or announcement cannot bring the blob back to life).
    async fn drop_expired(&self, blob_id: BlobId, end_epoch: u64, indexes: &[u16]) {
        if indexes.is_empty() {
            return;
        }
        let (node, indexes) = (self.clone(), indexes.to_vec());
        let dropped = tokio::task::spawn_blocking(move || {
            indexes
                .iter()
                .filter(|&&index| node.inner.store.remove_sliver(&blob_id, index).is_ok())
                .count()
        })
        .await
        .unwrap_or(0);
        self.inner.metrics.expired_slivers_dropped.fetch_add(
            u64::try_from(dropped).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(%blob_id, end_epoch, dropped, "dropped the slivers of an expired blob");
    }

    /// Whether a blob held here has ended (deleted, or past its end epoch); drops its slivers if they are due:
    /// a deleted blob's at once (a release that arrived while a store was running may have left some), an
    /// expired one's once the grace epoch is over (`lifetime::is_expired`).
    async fn drop_if_ended(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        held: &Held,
        epoch: u64,
    ) -> bool {
        let holds_any = !held.whole.is_empty() || !held.partial.is_empty();
        if record.is_deleted(epoch) {
            if holds_any {
                let (node, metadata) = (self.clone(), metadata.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    node.drop_deleted_slivers(&blob_id, &metadata)
                })
                .await;
            }
            return true;
        }
        let served_until = record.served_until();
        if lifetime::is_live(served_until, epoch) {
            return false;
        }
        if holds_any && lifetime::is_expired(served_until, epoch) {
            let indexes: Vec<u16> = held
                .whole
                .iter()
                .copied()
                .chain(held.partial.iter().map(|&(index, _)| index))
                .collect();
            self.drop_expired(blob_id, served_until, &indexes).await;
        }
        true
    }

    /// At an epoch boundary, between scans: drops the slivers of blobs whose grace epoch just ended (and of any
    /// deleted one), so the disk follows the epochs rather than the scan interval. Nothing else of a scan runs.
    async fn drop_ended(&self) {
        let node = self.clone();
        let Ok(blobs) = tokio::task::spawn_blocking(move || node.inner.store.blobs()).await else {
            return;
        };
        let epoch = self.current_epoch();
        for blob_id in blobs {
            if let Some((metadata, record, held)) = self.held(blob_id).await {
                self.drop_if_ended(blob_id, &metadata, &record, &held, epoch)
                    .await;
            }
        }
    }

    /// Applies gossiped repair announcements and notes peers' room until the network stops.
    pub async fn listen_gossip(self, mut gossip: mpsc::Receiver<Gossip>) {
        while let Some(message) = gossip.recv().await {
            let source = message.source;
            if message.topic == crate::net::Topic::Room {
                if let Err(why) = self.on_room_gossip(source, &message.data) {
                    tracing::debug!(%source, %why, "refused a room announcement");
                }
                continue;
            }
            if message.topic == crate::net::Topic::Delete {
                if let Err(why) = self.on_deletion_gossip(&message.data).await {
                    tracing::debug!(%source, %why, "refused a gossiped deletion");
                }
                continue;
            }
            if let Err(why) = self.on_announcement(message).await {
                self.inner
                    .metrics
                    .announcements_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%source, %why, "refused a repair announcement");
            }
        }
    }

    pub(super) async fn on_announcement(&self, gossip: Gossip) -> Result<(), AnnouncementError> {
        let announcement: pb::RepairAnnouncement =
            wire::decode_body(&gossip.data, MAX_GOSSIP_LEN, "RepairAnnouncement")?;
        let blob_id = BlobId::from_slice(&announcement.blob_id)?;
        let leaving = !announcement.holders.contains(&announcement.repairer);
        let repairer = announcement.repairer.to_vec();
        let source = gossip.source.to_bytes();
        // A holder this node reaches now is live for it, whatever the evidence says (`departure::proven`).
        let connected = self.inner.net.view().await.connected_peers;
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
                // Nor an end epoch: the blob's stays (the store keeps the later of two).
                end_epoch: held
                    .as_ref()
                    .map_or(floe_protocol::lifetime::FOREVER, |(_, current)| {
                        current.end_epoch
                    }),
                // Nor claims: the blob's stay.
                claims: held
                    .as_ref()
                    .map(|(_, current)| current.claims.clone())
                    .unwrap_or_default(),
                // The store keeps this node's own former holders.
                former: Vec::new(),
            };
            let acceptance = match holders::accept(
                &record.as_list(),
                &source,
                held.as_ref().map(|(_, current)| current.as_list()).as_ref(),
                Via::Announcement,
            ) {
                // From a former holder, newer than ours: not taken from it alone, but the former holders are
                // asked again (the other side of a healed partition moved on since they answered).
                Err(holders::HolderListError::RepairerHoldsNothing)
                    if held.as_ref().is_some_and(|(_, current)| {
                        holders::reopens_reunion(
                            &record.as_list(),
                            &current.as_list(),
                            &current.former,
                        )
                    }) =>
                {
                    return Ok(Heard::Reopen);
                }
                other => other?,
            };
            let Some((metadata, current)) = held else {
                return Ok(Heard::Nothing); // not a blob we hold: nothing to update, nothing to remember
            };
            check_holders(&record.holders, metadata.params().shards())?;
            match acceptance {
                Acceptance::Offered => {
                    let reached = node.reached_holders(&blob_id, &current.holders, &connected);
                    let proven = proven_departures(
                        &blob_id,
                        announcement.departures.as_ref(),
                        &current,
                        record.epoch,
                        &reached,
                    );
                    if let Err(why) =
                        holders::evidenced(&current.as_list(), &record.as_list(), &proven)
                    {
                        node.inner
                            .metrics
                            .lists_unproven
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(Heard::Unproven(Box::new((metadata, current)), why));
                    }
                    Ok::<_, AnnouncementError>(Heard::Adopted(
                        node.inner.store.put_record(&metadata, &record)?,
                    ))
                }
                Acceptance::CatchUp => Ok(Heard::FarAhead(Box::new((metadata, current)))),
                _ => Ok(Heard::Nothing),
            }
        })
        .await??;
        let adopted = match adopted {
            Heard::Nothing => return Ok(()),
            Heard::FarAhead(found) => {
                let (metadata, current) = *found;
                tracing::info!(%blob_id, source = %gossip.source, epoch = current.epoch, "announcement far ahead of our list");
                self.catch_up(blob_id, metadata, current, vec![peer_key(&gossip.source)]);
                return Ok(());
            }
            Heard::Unproven(found, why) => {
                // Not taken from its maker: but the holders may have moved on to it with evidence this node
                // did not see (it was on the other side of a cut, or judged with another view). Ask them.
                self.inner
                    .metrics
                    .announcements_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%blob_id, source = %gossip.source, %why, "refused a holder list without evidence; asking the holders");
                let (metadata, current) = *found;
                self.catch_up(blob_id, metadata, current, vec![peer_key(&gossip.source)]);
                return Ok(());
            }
            Heard::Reopen => {
                self.state().steward.reopen_reunion(blob_id);
                tracing::debug!(%blob_id, source = %gossip.source, "newer list from a former holder; asking the former holders again");
                return Ok(());
            }
            Heard::Adopted(adopted) => adopted,
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

    /// Asks the blob's holders for their record, `first` first, after an announcement more than two epochs ahead
    /// (or refused for want of evidence; `first` is its sender), or when holders of k indexes are back after
    /// they were gone (`first`; the steward's `catch_up`), and adopts what holders of k indexes agree on
    /// (`holders::caught_up`), at most once per blob every [`CATCH_UP_EVERY`].
    fn catch_up(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        current: HolderRecord,
        first: Vec<PeerKey>,
    ) {
        {
            let mut state = self.state();
            let now = Instant::now();
            if state
                .caught_up
                .get(&blob_id)
                .is_some_and(|at| now.duration_since(*at) < CATCH_UP_EVERY)
            {
                return;
            }
            state.caught_up.insert(blob_id, now);
            state
                .caught_up
                .retain(|_, at| now.duration_since(*at) < CATCH_UP_EVERY);
        }
        tracing::info!(%blob_id, epoch = current.epoch, "asking the holders for a newer list");
        let node = self.clone();
        tokio::spawn(async move {
            let Some(newer) = node
                .newer_record(&blob_id, &current, &BTreeSet::new(), &first)
                .await
            else {
                tracing::info!(%blob_id, "no newer list that holders of k indexes agree on; keeping ours");
                return;
            };
            let (store_node, epoch) = (node.clone(), newer.epoch);
            let adopted = tokio::task::spawn_blocking(move || {
                store_node.inner.store.put_record(&metadata, &newer)
            })
            .await;
            if let Ok(Ok(true)) = adopted {
                node.inner
                    .metrics
                    .holder_lists_adopted
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%blob_id, epoch, "caught up with the list holders of k indexes agree on");
            }
        });
    }

    /// Checks the blobs held here every interval: repairs what this node leads, hands off what is no longer
    /// ours, challenges holders. Runs until the node stops.
    pub async fn repair_loop(self) {
        loop {
            let due = self.state().steward.poll_timeout();
            // Expired slivers go when their grace epoch ends, not up to a scan interval later.
            let boundary = self.now().saturating_add(
                Millis::try_from(self.until_next_epoch().as_millis()).unwrap_or(Millis::MAX),
            );
            let at = due.min(boundary);
            crate::drive::sleep_until(self.inner.epoch, Some(at)).await;
            if self.state().leaving {
                return;
            }
            if at < due {
                self.drop_ended().await;
                continue;
            }
            self.scan().await;
            self.announce_room().await;
            self.pass_on_names().await;
        }
    }

    /// One scan: asks the steward what each blob held here needs (`steward::Steward::scan_blob`) and does it:
    /// hand-offs, a repair to lead, a challenge round; dials holders it is not connected to.
    pub(super) async fn scan(&self) {
        {
            let mut state = self.state();
            state.steward.begin_scan(self.now());
            state.recent.retain(|_, at| at.elapsed() < RECENT_REPAIR);
            state.departed.retain(|_, at| at.elapsed() < DEPARTED_FOR);
        }
        let view = self.inner.net.view().await;
        let me = peer_key(&self.inner.peer_id);
        // The networks known, which the per-network cap a crowded blob is judged by counts (as a write's).
        let network = network_in(&view, &self.inner.peer_id);
        let networks = floe_protocol::diversity::count_networks(
            view.peers
                .iter()
                .chain(std::iter::once(&self.inner.peer_id))
                .map(&network),
        );
        let node = self.clone();
        let Ok(blobs) = tokio::task::spawn_blocking(move || node.inner.store.blobs()).await else {
            return;
        };
        // What is kept per blob matters only for blobs still held here.
        {
            let held: BTreeSet<&BlobId> = blobs.iter().collect();
            let mut state = self.state();
            state
                .challenge_failures
                .retain_slivers(|blob_id, _, _| held.contains(blob_id));
            state.steward.retain(|blob_id| held.contains(blob_id));
            state
                .deletion_acks
                .retain(|blob_id, _| held.contains(blob_id));
        }
        let connected = |holder: &PeerKey| {
            PeerId::from_bytes(holder).is_ok_and(|peer| view.connected_peers.contains(&peer))
        };
        let excluded = self.excluded_peers();
        let mut to_dial: BTreeSet<PeerId> = BTreeSet::new();
        let mut former_to_dial: BTreeSet<PeerId> = BTreeSet::new();
        let mut partial: BTreeMap<(BlobId, u16), u64> = BTreeMap::new();
        let epoch = self.current_epoch();
        let mut expiring = 0usize;
        for blob_id in blobs {
            let Some((metadata, record, held)) = self.held(blob_id).await else {
                continue;
            };
            // A deleted blob, or one past its end epoch, is neither repaired, handed off nor challenged.
            if self
                .drop_if_ended(blob_id, &metadata, &record, &held, epoch)
                .await
            {
                if record.is_deleted(epoch) {
                    self.pass_on_deletion(blob_id, &record, connected);
                }
                continue;
            }
            let served_until = record.served_until();
            if lifetime::expires_within(served_until, epoch, EXPIRY_WARNING_EPOCHS) {
                expiring += 1;
            }
            partial.extend(
                held.partial
                    .iter()
                    .map(|&(index, count)| ((blob_id, index), count)),
            );
            let local = held.whole;
            if record.holders.is_empty() {
                continue;
            }
            let unconnected = |holder: &PeerKey| {
                PeerId::from_bytes(holder).ok().filter(|peer| {
                    *peer != self.inner.peer_id && !view.connected_peers.contains(peer)
                })
            };
            to_dial.extend(record.holders.iter().filter_map(unconnected));
            // Former holders too (the other side of a healed partition holds lists to compare), after holders.
            former_to_dial.extend(
                record
                    .former
                    .iter()
                    .map(|f| &f.peer)
                    .filter_map(unconnected),
            );
            let failing = self.failing_holders(&blob_id, &record.holders);
            let rebuilding = self.state().running.contains(&blob_id);
            let recently_repaired = self.repair_view(&blob_id).in_progress;
            let blob = steward::BlobAtScan {
                blob_id,
                holders: &record.holders,
                fingerprint: holders_fingerprint(&record),
                held_whole: &local,
                rebuilding,
                recently_repaired,
                failing: &failing,
                former: &record.former,
                // Judged only where it matters (a holder of two indexes or more), as it parses every holder.
                crowded: record.holders.iter().filter(|h| **h == me).count() >= 2
                    && floe_protocol::diversity::crowded(
                        &record.holders,
                        &me,
                        |key: &PeerKey| PeerId::from_bytes(key).ok().and_then(|p| network(&p)),
                        floe_protocol::diversity::cap(
                            u16::try_from(record.holders.len()).unwrap_or(u16::MAX),
                            networks,
                        ),
                    ),
            };
            // The live peers of the blob's neighbourhood, as this node sees it, for a repair plan; a peer known to
            // lack room for one of its sliver indexes keeps what it holds and is given nothing.
            let needed = metadata.params().index_bytes();
            let candidates = |gone: &BTreeSet<PeerKey>| -> Vec<PeerKey> {
                let usable = |p: &PeerId| {
                    (*p == self.inner.peer_id || view.connected_peers.contains(p))
                        && !excluded.contains(&peer_key(p))
                        && self.has_room(p, needed, floe_protocol::room::Purpose::Repair)
                };
                repair_candidates_in(
                    &view,
                    &self.inner.peer_id,
                    &blob_id,
                    &record.holders,
                    gone,
                    usable,
                    self.inner.repair.newcomer_age,
                )
            };
            let now = self.now();
            let out_of_reach = steward::out_of_reach_now(now, connected);
            let duties = self
                .state()
                .steward
                .scan_blob(now, &me, &blob, out_of_reach, candidates);
            for holder in &duties.newly_gone {
                if let Ok(peer) = PeerId::from_bytes(holder) {
                    tracing::info!(%peer, grace = ?self.inner.repair.grace, "holder out of reach past the grace period; its slivers move");
                }
            }
            for &index in &duties.hand_off {
                self.spawn_hand_off(blob_id, index, metadata.clone(), record.clone());
            }
            if !duties.compare.is_empty() {
                self.spawn_reunion(blob_id, metadata.clone(), record.clone(), duties.compare);
            }
            if !duties.catch_up.is_empty() {
                tracing::info!(%blob_id, back = duties.catch_up.len(), "holders of k indexes back after they were gone");
                self.catch_up(blob_id, metadata.clone(), record.clone(), duties.catch_up);
            }
            let gone = duties.gone;
            let leads = duties.leads;
            match duties.duty {
                steward::Duty::Nothing => {}
                steward::Duty::Repair(plan) => {
                    let start = {
                        let mut state = self.state();
                        let room = state.running.len() < self.inner.repair.max_concurrent;
                        let start = room && state.running.insert(blob_id);
                        if !start {
                            state.steward.handle_repair_not_started(blob_id);
                        }
                        start
                    };
                    // `leads` false: a holder of a crowded network moving its own indexes.
                    tracing::debug!(%blob_id, leads, moves = plan.moves.len(), start, "a repair is due");
                    if start {
                        let node = self.clone();
                        tokio::spawn(async move {
                            let outcome = node
                                .run_repair(blob_id, metadata, record, plan, gone, local)
                                .await;
                            let succeeded = outcome.is_ok();
                            if let Err(why) = outcome {
                                node.inner
                                    .metrics
                                    .repairs_failed
                                    .fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%blob_id, %why, "repair failed; will retry");
                            }
                            let now = node.now();
                            let mut state = node.state();
                            state.steward.handle_repair_ended(blob_id, now, succeeded);
                            state.running.remove(&blob_id);
                            state.recent.insert(blob_id, Instant::now());
                        });
                    }
                }
                steward::Duty::ChallengeAsLeader => {
                    let node = self.clone();
                    tokio::spawn(async move {
                        node.challenge(blob_id, record, gone, Role::Leader).await
                    });
                }
                steward::Duty::ChallengeAsDeputy { leader } => {
                    let node = self.clone();
                    let role = Role::Deputy { leader };
                    tokio::spawn(async move { node.challenge(blob_id, record, gone, role).await });
                }
            }
        }
        self.inner.metrics.blobs_expiring_soon.store(
            u64::try_from(expiring).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // Holders we are not connected to are dialled, so an idle holder is not mistaken for a departed one.
        let former_to_dial = former_to_dial
            .difference(&to_dial)
            .copied()
            .collect::<Vec<_>>();
        for peer in to_dial.into_iter().chain(former_to_dial).take(64) {
            self.inner.net.dial(peer).await;
        }
        self.reclaim_stalled_partials(&partial).await;
    }

    /// Deletes the partial sliver indexes that have not grown for `partial_ttl`: what a write, repair or
    /// hand-off that stopped midway left behind. No receipt covers them, and a later repair sends the index
    /// again from its first run.
    pub(super) async fn reclaim_stalled_partials(&self, seen: &BTreeMap<(BlobId, u16), u64>) {
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
}
