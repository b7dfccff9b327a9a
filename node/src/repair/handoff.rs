//! Hand-off: slivers held here that a holder list gives to another live peer are sent to it without decoding,
//! after a new list and when this node leaves.

use super::*;

impl Node {
    pub(super) fn spawn_hand_off(
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
                tracing::debug!(%blob_id, index, %why, "hand-off failed; will retry");
            }
            node.state().handing_off.remove(&(blob_id, index));
        });
    }

    /// Sends our sliver `index` to its holder in `record`, then deletes our copy.
    pub(super) async fn hand_off(
        &self,
        blob_id: BlobId,
        index: u16,
        metadata: &BlobMetadata,
        record: &HolderRecord,
    ) -> Result<u64, RepairError> {
        let holder = record
            .holders
            .get(usize::from(index))
            .ok_or(RepairError::NotListed(index))?
            .clone();
        if holder == peer_key(&self.inner.peer_id) {
            return Ok(0);
        }
        let bytes: u64 = (0..metadata.params().segment_count())
            .filter_map(|s| metadata.params().sliver_len(s))
            .map(|len| u64::try_from(len).unwrap_or(u64::MAX))
            .sum();
        let receipt = self
            .send_index(&holder, index, metadata, record, &IndexSource::Store)
            .await?;
        if receipt.listed_elsewhere {
            // Its list gives the index to someone else (maybe to us): our copy stays until the lists agree.
            self.inner
                .metrics
                .handoffs_kept
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%blob_id, index, "the receiver's list gives the sliver to another peer; keeping ours");
            return Err(RepairError::ListedElsewhere(index));
        }
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.inner.store.remove_sliver(&blob_id, index))
            .await??;
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
            let candidates = repair_candidates_in(
                &view,
                &self.inner.peer_id,
                &blob_id,
                &record.holders,
                &gone,
                |p| {
                    view.connected_peers.contains(p)
                        && self.has_room(
                            p,
                            metadata.params().index_bytes(),
                            floe_protocol::room::Purpose::Repair,
                        )
                },
                self.inner.repair.newcomer_age,
            );
            let Some(plan) = plan_repair(&blob_id, &record.holders, &gone, &candidates) else {
                report.failed += local.len();
                continue;
            };
            // A leaving holder gives away its own indexes only: others keep theirs (`holders::evidenced`).
            let holders =
                holders::within_evidence(&record.holders, &plan.holders, &me, &BTreeSet::new());
            let new_record = HolderRecord {
                holders,
                epoch: record.epoch.saturating_add(1),
                repairer: me.clone(),
                content_type: record.content_type.clone(),
                end_epoch: record.end_epoch,
                claims: record.claims.clone(),
                former: Vec::new(),
            };
            let delivery = Delivery {
                record: new_record.clone(),
                departures: None,
            };
            self.announce(&blob_id, &delivery, &BTreeSet::new()).await;
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
                    tracing::warn!(%why, "a hand-off failed");
                    report.failed += 1;
                }
                Err(_) => report.failed += 1,
            }
        }
        report
    }
}
