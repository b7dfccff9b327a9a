//! Leading a repair: announce the new holder list, fetch k verified slivers, rebuild only the lost indexes and
//! deliver them run by run, driving `floe_protocol::repair::Repair`. The list moves only the indexes of holders its
//! departure evidence proves gone (`evidence`).

use super::*;

impl Node {
    /// Leads one repair: announces the new holder list (the claim), rebuilds the slivers of departed holders
    /// from k verified slivers, and delivers them to their new holders.
    pub(super) async fn run_repair(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        record: HolderRecord,
        plan: RepairPlan,
        gone: BTreeSet<PeerKey>,
        local: Vec<u16>,
    ) -> Result<(), RepairError> {
        let me = peer_key(&self.inner.peer_id);
        // A holder that missed a newer list (it was down) must not lead with a stale one: ask the others first.
        if let Some(newer) = self.newer_record(&blob_id, &record, &gone, &[]).await {
            let node = self.clone();
            tokio::task::spawn_blocking(move || node.inner.store.put_record(&metadata, &newer))
                .await??;
            return Ok(());
        }
        // The plan was made from the record read at the start of the scan; if a newer list arrived since (a
        // hand-off announcement, another leader's repair), the plan is stale: the next scan plans again.
        let node = self.clone();
        let current =
            tokio::task::spawn_blocking(move || node.inner.store.metadata_record(&blob_id))
                .await??
                .1;
        if current != record {
            tracing::debug!(%blob_id, "holder list changed while planning; replanning later");
            return Ok(());
        }
        // Each holder whose indexes move must be proven gone by the holders' statements (`departure`), or
        // the move waits: a live, answering holder keeps its indexes whatever one leader thinks.
        let departed: Vec<PeerKey> = plan
            .moves_from(&gone)
            .map(|m| m.from.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (departures, proven) = if departed.is_empty() {
            (None, BTreeSet::new())
        } else {
            let (evidence, proven) = self.gather_departures(blob_id, &record, &departed).await;
            (Some(evidence), proven)
        };
        let holders = holders::within_evidence(&record.holders, &plan.holders, &me, &proven);
        if holders == record.holders {
            self.inner
                .metrics
                .repairs_unproven
                .fetch_add(1, Ordering::Relaxed);
            // The others still vouch for them. A holder noted here as holding nothing (a delivery that failed, a
            // challenge it failed) may hold its slivers since (a later delivery, a hand-off after a reunion):
            // it is challenged again, and a pass clears the note, or this node would lead this repair in vain
            // for the note's ten minutes.
            let noted: Vec<PeerKey> = {
                let state = self.state();
                departed
                    .iter()
                    .filter(|p| state.held_nothing.contains_key(&(blob_id, (*p).clone())))
                    .cloned()
                    .collect()
            };
            if !noted.is_empty() {
                self.challenge_accused(blob_id, &record, noted).await;
            }
            return Err(RepairError::Unproven(departed.len()));
        }
        let targets: BTreeSet<u16> = holders
            .iter()
            .zip(&record.holders)
            .enumerate()
            .filter(|(_, (now, was))| now != was && gone.contains(*was))
            .filter_map(|(index, _)| u16::try_from(index).ok())
            .collect();
        let new_record = HolderRecord {
            holders,
            epoch: record.epoch.saturating_add(1),
            repairer: me.clone(),
            content_type: record.content_type.clone(),
            end_epoch: record.end_epoch,
            claims: record.claims.clone(),
            former: Vec::new(),
        };
        {
            let (node, metadata, new_record) = (self.clone(), metadata.clone(), new_record.clone());
            let adopted = tokio::task::spawn_blocking(move || {
                node.inner.store.put_record(&metadata, &new_record)
            })
            .await??;
            if !adopted {
                // A competing list won in the meantime: follow it and rebuild nothing.
                return Ok(());
            }
        }
        let delivery = Delivery {
            record: new_record,
            departures,
        };
        self.announce(&blob_id, &delivery, &targets).await;
        let unproven = departed.len().saturating_sub(proven.len());
        tracing::info!(%blob_id, epoch = delivery.record.epoch, rebuild = ?targets, moves = plan.moves.len(), unproven, "new holder list");
        if targets.is_empty() {
            return Ok(());
        }
        self.inner
            .metrics
            .repairs_started
            .fetch_add(1, Ordering::Relaxed);
        let (outcome, delivered) = self
            .rebuild_and_deliver(
                blob_id, &metadata, &record, &delivery, &targets, &gone, &local,
            )
            .await;
        if outcome.is_err() {
            // No list takes the indexes back (a revert would take them from live peers without evidence): their
            // new holders are noted as holding nothing of them, so the next scan finds them gone, and each, asked,
            // lets them go (or holders find it out of reach); the next repair moves them on.
            let mut state = self.state();
            for &index in targets.difference(&delivered) {
                if let Some(peer) = delivery
                    .record
                    .holders
                    .get(usize::from(index))
                    .and_then(|p| PeerId::from_bytes(p).ok())
                {
                    state
                        .held_nothing
                        .insert((blob_id, peer_key(&peer)), Instant::now());
                }
            }
        }
        outcome
    }

    /// Fetches k slivers from the live holders of `record`, rebuilds `targets`, and delivers them to their
    /// holders in `delivery` (the new list), run by run (`store_runs`): each run is fetched, rebuilt and delivered
    /// before the next, so a repair holds about k + |targets| runs of slivers whatever the blob's size. Returns
    /// the outcome and the indexes that reached their holder whole.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn rebuild_and_deliver(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        delivery: &Delivery,
        targets: &BTreeSet<u16>,
        gone: &BTreeSet<PeerKey>,
        local: &[u16],
    ) -> (Result<(), RepairError>, BTreeSet<u16>) {
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
    pub(super) async fn rebuild_and_deliver_run(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        delivery: &Delivery,
        targets: &BTreeSet<u16>,
        gone: &BTreeSet<PeerKey>,
        local: &[u16],
        run: std::ops::Range<u64>,
        last: bool,
    ) -> (Result<(), RepairError>, BTreeSet<u16>) {
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
        let reach = self.inner.net.view().await.reach_by_key();
        let (mut repair, mut effects) = Repair::start(
            blob_id,
            params.source_shards(),
            delivery.record.holders.clone(),
            targets.clone(),
            sources,
            &have,
            |peer| reach.get(peer).copied().unwrap_or_default(),
            repair_read_config(),
            self.inner.write_config,
            self.now(),
        );
        let mut driver = Driver::<RepairReport>::new(self.inner.epoch);
        let mut fetched: BTreeMap<u16, Vec<VerifiedSliver>> = BTreeMap::new();
        let mut rebuilt: BTreeMap<u16, Vec<Sliver>> = BTreeMap::new();
        let mut delivered: BTreeSet<u16> = BTreeSet::new();
        let outcome: Result<(), RepairError> = 'repair: loop {
            let mut next = Vec::new();
            for effect in effects.drain(..) {
                match effect {
                    RepairEffect::Fetch { peer, index } => {
                        let node = self.clone();
                        driver.spawn(async move {
                            let slivers = node
                                .fetch_index(&peer, &blob_id, index, &params, first, count)
                                .await;
                            RepairReport::Fetched { index, slivers }
                        });
                    }
                    RepairEffect::SetTimer(at) => driver.set_timer(at),
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
                                tracing::warn!(%blob_id, %why, "rebuild failed");
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
                        let mut request = store_request(
                            slivers.iter().map(pb::Sliver::from).collect(),
                            metadata,
                            &delivery.record,
                        );
                        request.departures = delivery.departures.clone();
                        let bytes: usize = slivers.iter().map(|s| s.data.len()).sum();
                        let node = self.clone();
                        let end = run.end;
                        let segments = params.segment_count();
                        driver.spawn(async move {
                            // Before the last run the holder answers progress; the receipt comes with the last.
                            let result = match node.send_store(&peer, blob_id, index, request).await
                            {
                                Ok(StoreAnswer::Receipt(receipt)) => Ok(receipt.signature.to_vec()),
                                Ok(StoreAnswer::Progress { segments_held, .. })
                                    if !last && segments_held >= end =>
                                {
                                    Ok(Vec::new())
                                }
                                Ok(StoreAnswer::Progress { segments_held, .. }) => {
                                    Err(SendError::Stalled {
                                        held: segments_held,
                                        segments,
                                        end,
                                    })
                                }
                                Err(why) => Err(why),
                            };
                            if result.is_ok() {
                                node.inner.metrics.repair_bytes_sent.fetch_add(
                                    u64::try_from(bytes).unwrap_or(u64::MAX),
                                    Ordering::Relaxed,
                                );
                            }
                            RepairReport::Sent {
                                peer,
                                index,
                                attempt,
                                result,
                            }
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
                            break 'repair Err(RepairError::Undelivered(failed));
                        }
                        m.repairs_done.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%blob_id, delivered, "repair done");
                        break 'repair Ok(());
                    }
                    RepairEffect::Failed { have, need } => {
                        break 'repair Err(RepairError::TooFewSlivers { have, need });
                    }
                }
            }
            if !next.is_empty() {
                effects = next;
                continue;
            }
            effects = match driver.next().await {
                Wake::Report(RepairReport::Fetched { index, slivers }) => {
                    let valid = slivers.is_some();
                    if let Some(slivers) = slivers {
                        let bytes: usize = slivers.iter().map(|s| s.sliver().data.len()).sum();
                        self.inner
                            .metrics
                            .repair_bytes_fetched
                            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
                        fetched.insert(index, slivers);
                    }
                    repair.on_fetched(index, valid, self.now())
                }
                Wake::Report(RepairReport::Sent {
                    peer,
                    index,
                    attempt,
                    result,
                }) => match result {
                    Ok(signature) => {
                        delivered.insert(index);
                        repair.on_receipt(&peer, index, signature)
                    }
                    Err(why) => {
                        tracing::debug!(%blob_id, index, attempt, %why, "delivering a rebuilt sliver failed");
                        repair.on_send_failure(&peer, index, attempt, self.now())
                    }
                },
                Wake::Timer(now) => repair.on_timer(now),
            };
        };
        (outcome, delivered)
    }

    /// The newest holder record that live holders of `current` answer alike, holding k of its indexes between
    /// them, if it supersedes `current` (`holders::caught_up`): no byzantine third of the holders can make this
    /// node adopt a list. Asks [`CATCH_UP_ASKED`] holders first (those of `first` that `current` names, then the
    /// others in key order) and, only if one of them answers a newer list, the other live holders too, in rounds
    /// of [`CATCH_UP_ROUND`] until holders of k indexes agree, so a leader whose list is current pays four
    /// metadata requests.
    pub(crate) async fn newer_record(
        &self,
        blob_id: &BlobId,
        current: &HolderRecord,
        gone: &BTreeSet<PeerKey>,
        first: &[PeerKey],
    ) -> Option<HolderRecord> {
        let me = peer_key(&self.inner.peer_id);
        let mut peers: Vec<&PeerKey> = current
            .holders
            .iter()
            .filter(|h| **h != me && !gone.contains(*h))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // A stable sort: the peers of `first` ahead, each group still in key order.
        peers.sort_by_key(|p| !first.contains(p));
        let peers: Vec<PeerKey> = peers.into_iter().cloned().collect();
        let (first, rest) = peers.split_at(peers.len().min(CATCH_UP_ASKED));
        let shards = u16::try_from(current.holders.len()).unwrap_or(0);
        let mut answers = ListAnswers::new(current);
        self.ask_lists(blob_id, shards, first, &mut answers).await;
        let agreed = |answers: &ListAnswers| {
            let agreed = holders::caught_up(&current.as_list(), &answers.lists())?;
            answers.record(&agreed).cloned()
        };
        if answers.any_newer() {
            // The others in rounds, until holders of k indexes agree, each round about as many as the indexes
            // still lacking: a holder of a large list (n = 1000, k = 334) that many holders catch up at once (a
            // side of a healed partition that could not repair) then asks about k holders, not n.
            let mut rest = rest;
            while !rest.is_empty() && agreed(&answers).is_none() {
                let size = holders::catch_up_round(&current.as_list(), &answers.lists());
                let (round, later) = rest.split_at(size.min(rest.len()));
                self.ask_lists(blob_id, shards, round, &mut answers).await;
                rest = later;
            }
        }
        agreed(&answers).map(|record| record.keeping_label_of(current).merged_with(current))
    }

    pub(super) async fn announce(
        &self,
        blob_id: &BlobId,
        delivery: &Delivery,
        targets: &BTreeSet<u16>,
    ) {
        let record = &delivery.record;
        let announcement = pb::RepairAnnouncement {
            departures: delivery.departures.clone(),
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
    pub(super) async fn rebuild(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        mut chosen: BTreeMap<u16, Vec<VerifiedSliver>>,
        sources: Vec<u16>,
        targets: Vec<u16>,
        run: std::ops::Range<u64>,
    ) -> Result<BTreeMap<u16, Vec<Sliver>>, RepairError> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let params = *metadata.params();
            for index in &sources {
                if chosen.contains_key(index) {
                    continue;
                }
                // One of ours: read and verify it from the store.
                let own = node.inner.store.read_slivers(
                    &blob_id,
                    *index,
                    run.start,
                    run.end - run.start,
                )?;
                let verified = own
                    .into_iter()
                    .map(|s| VerifiedSliver::new(s, &blob_id))
                    .collect::<Result<Vec<_>, _>>()?;
                chosen.insert(*index, verified);
            }
            let mut decoder = node.inner.decoders.take(params);
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
                let slivers = decoder.rebuild(segment, &these, &targets)?;
                node.inner
                    .metrics
                    .repair_segments_decoded
                    .fetch_add(1, Ordering::Relaxed);
                for sliver in slivers {
                    rebuilt.entry(sliver.index).or_default().push(sliver);
                }
            }
            node.inner.decoders.give(decoder);
            Ok(rebuilt)
        })
        .await?
    }
}

/// What a repair's IO tasks report to its driver.
#[derive(Debug)]
pub(super) enum RepairReport {
    /// The verified slivers of `index` for the run, or `None` if its holder had none valid.
    Fetched {
        index: u16,
        slivers: Option<Vec<VerifiedSliver>>,
    },
    /// A rebuilt run delivered to `peer` (its receipt's signature for the last run, empty before) or not.
    Sent {
        peer: PeerKey,
        index: u16,
        attempt: u32,
        result: Result<Vec<u8>, SendError>,
    },
}
