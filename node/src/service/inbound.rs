//! Answering peers: store requests (verified, stored, acknowledged with a signed receipt), reads, storage
//! challenges and metadata queries, with a cap on requests handled at once.

use super::*;
use floe_protocol::deletion::{self, Claims};
use floe_protocol::room;

/// The note a holder puts in its receipt when `me` is not among the first `shards` of `neighbourhood` (its view of
/// the peers, ordered by distance to the blob ID).
fn outside_note(
    me: &PeerId,
    neighbourhood: &[PeerId],
    shards: usize,
    blob_id: &BlobId,
) -> Option<String> {
    if neighbourhood.iter().take(shards).any(|p| p == me) {
        return None;
    }
    Some(format!(
        "not a holder of {blob_id} by my view: {} peers known, I am not among the {shards} closest",
        neighbourhood.len()
    ))
}

pub(super) fn error_response(text: impl Into<String>) -> pb::Response {
    pb::Response {
        kind: Some(pb::response::Kind::Error(text.into())),
    }
}

impl Node {
    /// Answers peers' requests until the network stops.
    pub async fn serve(self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(Inbound {
            peer,
            request,
            channel,
        }) = inbound.recv().await
        {
            // Waiting here lets the network's queue fill, and then it answers "busy" itself.
            let Ok(permit) = self.inner.inbound_permits.clone().acquire_owned().await else {
                return;
            };
            let node = self.clone();
            tokio::spawn(async move {
                let response = node.handle(peer, request).await;
                node.inner.net.respond(channel, response).await;
                drop(permit);
            });
        }
    }

    async fn handle(&self, peer: PeerId, request: pb::Request) -> pb::Response {
        let request = match request.kind {
            // A read forwarded to this node itself is an ordinary read.
            Some(pb::request::Kind::Read(mut read))
                if !read.forward_to.is_empty()
                    && read.forward_to == self.inner.peer_id.to_bytes() =>
            {
                read.forward_to = Bytes::new();
                pb::Request {
                    kind: Some(pb::request::Kind::Read(read)),
                }
            }
            Some(pb::request::Kind::Read(read)) if !read.forward_to.is_empty() => {
                return self.forward_read(peer, read).await;
            }
            Some(pb::request::Kind::Attest(attest)) => {
                return self.handle_attest(peer, attest).await;
            }
            kind => pb::Request { kind },
        };
        let started = Instant::now();
        let outside = match &request.kind {
            Some(pb::request::Kind::Store(store)) => self.outside_own_view(store).await,
            _ => None,
        };
        // For a repaired list: the peers this node reaches now, which no departure evidence proves gone here
        // unless they fail for the blob (`Node::reached_holders`).
        let connected = match &request.kind {
            Some(pb::request::Kind::Store(store)) if store.holders_epoch > 0 => {
                self.inner.net.view().await.connected_peers
            }
            _ => BTreeSet::new(),
        };
        let name_outside = match &request.kind {
            Some(pb::request::Kind::PutName(record)) => self.name_outside_view(record).await,
            _ => None,
        };
        let viewed_at = started.elapsed();
        let node = self.clone();
        let result = tokio::task::spawn_blocking(move || match request.kind {
            Some(pb::request::Kind::Store(store)) => {
                let blocking_at = started.elapsed();
                let mut response = node.handle_store(store, &peer, &connected);
                tracing::debug!(
                    view_us = viewed_at.as_micros(),
                    queue_us = blocking_at.saturating_sub(viewed_at).as_micros(),
                    store_us = started.elapsed().saturating_sub(blocking_at).as_micros(),
                    "store request handled"
                );
                if let (Some(note), Some(pb::response::Kind::Receipt(receipt))) =
                    (outside, response.kind.as_mut())
                {
                    node.inner
                        .metrics
                        .stored_outside_own_view
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, note, "stored a sliver of a blob whose neighbourhood, by this node's view, excludes it");
                    receipt.note = note;
                }
                response
            }
            Some(pb::request::Kind::Read(read)) => node.handle_read(read),
            Some(pb::request::Kind::Metadata(meta)) => node.handle_metadata(meta),
            Some(pb::request::Kind::Challenge(challenge)) => node.handle_challenge(challenge),
            Some(pb::request::Kind::Delete(delete)) => node.handle_delete(delete),
            Some(pb::request::Kind::PutName(record)) => match name_outside {
                Some(note) => error_response(note),
                None => node.handle_put_name(record),
            },
            Some(pb::request::Kind::GetName(get)) => node.handle_get_name(get),
            // Answered above, before the blocking pool.
            Some(pb::request::Kind::Attest(_)) => error_response("internal error"),
            None => error_response("empty request"),
        })
        .await;
        result.unwrap_or_else(|error| {
            tracing::error!(%peer, %error, "request handler failed");
            error_response("internal error")
        })
    }

    /// Whether this node, by its own view of the swarm, is outside the neighbourhood (the n peers closest to the
    /// blob ID) of the blob a store request is for; if so, a note saying so for the receipt. The sliver is still
    /// stored: the writer's view decided, and views differ while the swarm changes.
    async fn outside_own_view(&self, request: &pb::StoreRequest) -> Option<String> {
        let metadata = BlobMetadata::try_from(request.metadata.as_ref()?).ok()?;
        let blob_id = metadata.blob_id();
        let shards = metadata.params().shards();
        let neighbourhood = self.neighbourhood(&blob_id, shards).await;
        outside_note(
            &self.inner.peer_id,
            &neighbourhood,
            usize::from(shards),
            &blob_id,
        )
    }

    fn handle_store(
        &self,
        request: pb::StoreRequest,
        sender: &PeerId,
        connected: &BTreeSet<PeerId>,
    ) -> pb::Response {
        match self.store_locally(request, sender, connected) {
            Ok(StoreAnswer::Receipt(receipt)) => {
                self.inner
                    .metrics
                    .slivers_received
                    .fetch_add(1, Ordering::Relaxed);
                pb::Response {
                    kind: Some(pb::response::Kind::Receipt(receipt)),
                }
            }
            Ok(StoreAnswer::Progress {
                blob_id,
                index,
                segments_held,
            }) => pb::Response {
                kind: Some(pb::response::Kind::Progress(pb::StoreProgress {
                    blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
                    index: u32::from(index),
                    segments_held,
                })),
            },
            Err(StoreRefusal::Full { held, capacity }) => {
                self.inner
                    .metrics
                    .stores_refused_full
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(held, capacity, %sender, "refused a store request: no room");
                pb::Response {
                    kind: Some(pb::response::Kind::Full(pb::Room {
                        free_bytes: capacity.saturating_sub(held),
                        capacity_bytes: capacity,
                    })),
                }
            }
            Err(why) => {
                self.inner
                    .metrics
                    .invalid_slivers_received
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%why, "refused a store request");
                error_response(why.to_string())
            }
        }
    }

    /// Verifies a store request completely (metadata against its ID, every sliver against the ID, one index,
    /// consecutive segments within the blob) and stores it durably; returns the signed receipt once the index is
    /// complete, progress before. `sender` is the authenticated peer the request came from (ourselves for local
    /// stores). `connected`: the peers this node reaches now, which no departure evidence proves gone.
    pub(crate) fn store_locally(
        &self,
        request: pb::StoreRequest,
        sender: &PeerId,
        connected: &BTreeSet<PeerId>,
    ) -> Result<StoreAnswer, StoreRefusal> {
        let metadata = request
            .metadata
            .as_ref()
            .ok_or(StoreRefusal::NoMetadata)
            .and_then(|m| BlobMetadata::try_from(m).map_err(|_| StoreRefusal::BadMetadata))?;
        let blob_id = metadata.blob_id();
        let segments = metadata.params().segment_count();
        let count = u64::try_from(request.slivers.len()).unwrap_or(u64::MAX);
        let first = request.slivers.first().map_or(0, |s| s.segment);
        if count == 0 || first.saturating_add(count) > segments {
            return Err(StoreRefusal::OutOfRange {
                segments,
                count,
                first,
            });
        }
        let mut slivers = Vec::with_capacity(request.slivers.len());
        let mut index = None;
        for (segment, message) in (first..).zip(request.slivers) {
            let (id, sliver) = <(BlobId, Sliver)>::try_from(message)?;
            if id != blob_id || sliver.segment != segment {
                return Err(StoreRefusal::OutOfOrder);
            }
            if *index.get_or_insert(sliver.index) != sliver.index {
                return Err(StoreRefusal::MixedIndexes);
            }
            sliver.verify(&blob_id)?;
            slivers.push(sliver);
        }
        let index = index.ok_or(StoreRefusal::OutOfRange {
            segments,
            count,
            first,
        })?;
        // Runs arrive in order: one that starts past what is held would leave a gap no receipt could cover, and
        // the part of a run already held is not stored twice (so overlapping runs cannot pile up).
        let held_before = self.inner.store.segments_held(&blob_id, index);
        if first > held_before {
            return Err(StoreRefusal::Gap {
                first,
                index,
                held: held_before,
            });
        }
        let skip = usize::try_from(held_before - first).unwrap_or(usize::MAX);
        let slivers: Vec<Sliver> = slivers.into_iter().skip(skip).collect();
        if let Some(capacity) = self.inner.capacity {
            let incoming: u64 = slivers
                .iter()
                .map(|s| u64::try_from(s.data.len()).unwrap_or(u64::MAX))
                .sum();
            let held = self.inner.store.counters().bytes.load(Ordering::Relaxed);
            // A writer's list (epoch 0) may not use the repair reserve; a repair or hand-off may.
            let purpose = if request.holders_epoch == 0 {
                room::Purpose::Write
            } else {
                room::Purpose::Repair
            };
            let usable = room::usable(capacity.saturating_sub(held), capacity, purpose);
            if incoming > usable && !slivers.is_empty() {
                return Err(StoreRefusal::Full { held, capacity });
            }
        }
        let record = HolderRecord {
            holders: request.holders.iter().map(|h| h.to_vec()).collect(),
            epoch: request.holders_epoch,
            repairer: request.holders_repairer.to_vec(),
            content_type: content_type::check(&request.content_type)?.to_owned(),
            end_epoch: floe_protocol::lifetime::from_wire(request.end_epoch),
            claims: Claims::from_wire(
                &blob_id,
                &request.claims,
                &request.released,
                request.permanent_until,
                deletion::MAX_CLAIMS,
            )?,
            former: Vec::new(),
        };
        check_holders(&record.holders, metadata.params().shards())?;
        let me = self.inner.peer_id.to_bytes();
        if record.holders.get(usize::from(index)) != Some(&me) && *sender != self.inner.peer_id {
            // Stored anyway, within the sender's budget: the sender's view decided; if it is not ours, the
            // hand-off duty of the repair loop passes the sliver on to the listed holder. No write, repair or
            // hand-off sends such a store, so the budget is small.
            let bytes: u64 = slivers
                .iter()
                .map(|s| u64::try_from(s.data.len()).unwrap_or(u64::MAX))
                .sum();
            let charged = self
                .inner
                .unexpected_stores
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .charge(sender, bytes, Instant::now());
            if let Err(wait) = charged {
                self.inner
                    .metrics
                    .unexpected_stores_refused
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StoreRefusal::Unexpected {
                    index,
                    rate: super::UNEXPECTED_STORE_RATE,
                    retry_after: crate::budget::whole_seconds(wait),
                });
            }
            self.inner
                .metrics
                .unexpected_stores
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%blob_id, index, %sender, "stored a sliver the sender's holder list gives to another peer");
        }
        if record.epoch > 0 && self.inner.store.has(&blob_id, index) {
            self.inner
                .metrics
                .duplicate_slivers_received
                .fetch_add(1, Ordering::Relaxed);
        }
        // Which list to keep is the protocol's rule (`holders::accept`); the slivers are kept either way, since
        // they verify on their own.
        let current = self
            .inner
            .store
            .metadata_record(&blob_id)
            .ok()
            .map(|(_, r)| r);
        let acceptance = holders::accept(
            &record.as_list(),
            &sender.to_bytes(),
            current.as_ref().map(HolderRecord::as_list).as_ref(),
            Via::StoreRequest,
        )?;
        // A repaired list that takes indexes from holders not proven gone is not adopted (`holders::evidenced`);
        // its slivers still are, as for any list not taken.
        let acceptance = match (acceptance, current.as_ref()) {
            (Acceptance::Offered, Some(held)) if record.epoch > 0 => {
                let reached = self.reached_holders(&blob_id, &held.holders, connected);
                let proven = crate::repair::proven_departures(
                    &blob_id,
                    request.departures.as_ref(),
                    held,
                    record.epoch,
                    &reached,
                );
                match holders::evidenced(&held.as_list(), &record.as_list(), &proven) {
                    Ok(()) => Acceptance::Offered,
                    Err(why) => {
                        self.inner
                            .metrics
                            .lists_unproven
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%blob_id, %sender, %why, "kept our holder list: the one sent takes indexes without evidence");
                        Acceptance::Held
                    }
                }
            }
            (acceptance, _) => acceptance,
        };
        let held = current.clone();
        let record = match (acceptance, current) {
            // The list held stays; a later end epoch offered with it still counts (an extension).
            (Acceptance::Held | Acceptance::CatchUp, Some(current)) => current.merged_with(&record),
            (Acceptance::Provisional, _) => HolderRecord {
                epoch: 0,
                repairer: Vec::new(),
                ..record
            },
            (_, Some(current)) => record.keeping_label_of(&current).merged_with(&current),
            (_, None) => record,
        };
        // Claims only grow, and past the limit one would have to go (`deletion::MAX_CLAIMS`); a deleted blob takes
        // no slivers back unless the store brings a claim not yet released (a new deletable write).
        if let Some(current) = &held {
            if current.claims.merge_exceeds_limit(&record.claims) {
                return Err(deletion::DeletionError::TooMany(deletion::MAX_CLAIMS + 1).into());
            }
            let merged = current.claims.merged(&record.claims);
            if merged.standing(self.current_epoch()) == deletion::Standing::Deleted {
                return Err(StoreRefusal::Deleted(blob_id));
            }
        }
        let store = &self.inner.store;
        let adopted = if slivers.is_empty() {
            store.put_record(&metadata, &record)
        } else {
            store.put_record_and_slivers(&metadata, &record, index, &slivers)
        }?;
        if adopted && record.epoch > 0 {
            self.inner
                .metrics
                .holder_lists_adopted
                .fetch_add(1, Ordering::Relaxed);
        }
        let segments_held = self.inner.store.segments_held(&blob_id, index);
        if segments_held < segments {
            return Ok(StoreAnswer::Progress {
                blob_id,
                index,
                segments_held,
            });
        }
        let mut receipt = self.sign_receipt(&blob_id, index)?;
        let me = self.inner.peer_id.to_bytes();
        receipt.listed_elsewhere = self
            .inner
            .store
            .metadata_record(&blob_id)
            .is_ok_and(|(_, held)| held.holders.get(usize::from(index)) != Some(&me));
        Ok(StoreAnswer::Receipt(receipt))
    }

    fn sign_receipt(
        &self,
        blob_id: &BlobId,
        index: u16,
    ) -> Result<pb::StorageReceipt, StoreRefusal> {
        let signature = self
            .inner
            .keypair
            .sign(&receipt::signing_bytes(blob_id, index))?;
        Ok(pb::StorageReceipt {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            index: u32::from(index),
            holder_public_key: self.inner.keypair.public().encode_protobuf().into(),
            signature: signature.into(),
            note: String::new(),
            listed_elsewhere: false,
        })
    }

    /// A read request for another holder (`forward_to`): passed on over this node's direct connection to that
    /// holder, and its answer passed back unchanged (the reader verifies every sliver). Only a node that relays
    /// for others forwards, only to peers it reaches directly, and at most [`MAX_FORWARDED_READS`] at once.
    async fn forward_read(&self, reader: PeerId, mut read: pb::ReadRequest) -> pb::Response {
        let Ok(holder) = PeerId::from_bytes(&read.forward_to) else {
            return error_response("bad forward_to peer ID");
        };
        read.forward_to = Bytes::new();
        let reach = self.inner.net.reach(holder).await;
        if !reach.forwards {
            return error_response("this node relays for nobody, so it forwards no reads");
        }
        if !reach.direct {
            return error_response("this node has no direct connection to that holder");
        }
        let Ok(_permit) = self.inner.forward_permits.clone().try_acquire_owned() else {
            return pb::Response {
                kind: Some(pb::response::Kind::Busy(pb::Busy {})),
            };
        };
        let request = pb::Request {
            kind: Some(pb::request::Kind::Read(read)),
        };
        match self.inner.net.request(holder, request).await {
            Ok(
                response @ pb::Response {
                    kind: Some(pb::response::Kind::Read(_)),
                },
            ) => {
                self.inner
                    .metrics
                    .reads_forwarded
                    .fetch_add(1, Ordering::Relaxed);
                response
            }
            Ok(_) => error_response("the holder did not answer the read"),
            Err(error) => {
                tracing::debug!(%reader, %holder, %error, "forwarded read failed");
                error_response(format!("forwarding to the holder failed: {error}"))
            }
        }
    }

    fn handle_read(&self, request: pb::ReadRequest) -> pb::Response {
        let not_found = |why: String| pb::Response {
            kind: Some(pb::response::Kind::Read(pb::ReadResponse {
                result: Some(pb::read_response::Result::NotFound(why)),
            })),
        };
        let Ok(blob_id) = BlobId::from_slice(&request.blob_id) else {
            return error_response("bad blob ID");
        };
        let Ok(index) = u16::try_from(request.index) else {
            return error_response("bad sliver index");
        };
        let params = match self.inner.store.metadata(&blob_id) {
            Ok((metadata, _)) => *metadata.params(),
            Err(error) => return not_found(error.to_string()),
        };
        let segments = params.segment_count();
        let in_range = request.segment_count > 0
            && request
                .first_segment
                .checked_add(request.segment_count)
                .is_some_and(|end| end <= segments);
        if !in_range {
            return not_found(format!(
                "the blob has {segments} segments; asked for {} from {}",
                request.segment_count, request.first_segment
            ));
        }
        // One answer must fit one message: refused before anything is read, so a request cannot make this node
        // load a whole large index.
        if read_chunks(&params, request.first_segment, request.segment_count).len() > 1 {
            return error_response(format!(
                "{} segments of sliver {index} exceed one message ({MAX_RUN_BYTES} sliver bytes); ask for fewer",
                request.segment_count
            ));
        }
        match self.inner.store.read_slivers(
            &blob_id,
            index,
            request.first_segment,
            request.segment_count,
        ) {
            Ok(slivers) => {
                self.inner
                    .metrics
                    .slivers_served
                    .fetch_add(1, Ordering::Relaxed);
                pb::Response {
                    kind: Some(pb::response::Kind::Read(pb::ReadResponse {
                        result: Some(pb::read_response::Result::Slivers(pb::SliverSet {
                            slivers: slivers.iter().map(pb::Sliver::from).collect(),
                        })),
                    })),
                }
            }
            Err(error) => not_found(error.to_string()),
        }
    }

    /// Answers a storage challenge with the challenged sliver and its proof, or says why it cannot.
    fn handle_challenge(&self, challenge: pb::StorageChallenge) -> pb::Response {
        let Ok(blob_id) = BlobId::from_slice(&challenge.blob_id) else {
            return error_response("bad blob ID");
        };
        let Ok(index) = u16::try_from(challenge.index) else {
            return error_response("bad sliver index");
        };
        if challenge.nonce.len() > floe_protocol::challenge::MAX_NONCE_LEN {
            return error_response(format!(
                "nonce longer than {} bytes",
                floe_protocol::challenge::MAX_NONCE_LEN
            ));
        }
        let segment_count = match self.inner.store.metadata(&blob_id) {
            Ok((metadata, _)) if challenge.segment < metadata.params().segment_count() => {
                metadata.params().segment_count()
            }
            Ok(_) => return error_response("no such segment"),
            Err(error) => return error_response(format!("sliver not held: {error}")),
        };
        self.inner
            .metrics
            .challenges_answered
            .fetch_add(1, Ordering::Relaxed);
        // Part of the index is here and the rest is on its way (a repair, hand-off or write that delivers run by
        // run): a segment not there yet is no sign of loss. A segment already held must be produced, and a part
        // that stopped growing (its delivery was abandoned) is answered as what it is: not held.
        let held = self.inner.store.segments_held(&blob_id, index);
        if floe_protocol::challenge::answers_still_receiving(
            held,
            segment_count,
            challenge.segment,
            held > 0 && self.partial_still_growing(&blob_id, index, held),
        ) {
            return pb::Response {
                kind: Some(pb::response::Kind::Challenge(
                    floe_protocol::challenge::still_receiving_answer(
                        challenge.nonce,
                        held,
                        segment_count,
                    ),
                )),
            };
        }
        match self
            .inner
            .store
            .read_slivers(&blob_id, index, challenge.segment, 1)
        {
            Ok(mut slivers) => match slivers.pop() {
                Some(sliver) => pb::Response {
                    kind: Some(pb::response::Kind::Challenge(pb::ChallengeAnswer {
                        nonce: challenge.nonce,
                        sliver: Some(pb::Sliver::from(&sliver)),
                        receiving: None,
                    })),
                },
                None => error_response("sliver not held"),
            },
            Err(error) => error_response(format!("sliver not held: {error}")),
        }
    }

    fn handle_metadata(&self, request: pb::MetadataRequest) -> pb::Response {
        let record = BlobId::from_slice(&request.blob_id)
            .ok()
            .and_then(|id| self.inner.store.metadata_record(&id).ok());
        pb::Response {
            kind: Some(pb::response::Kind::Metadata(match record {
                Some((_, record)) if request.list_digest => record.digest_answer(),
                Some((metadata, record)) => record.answer(&metadata),
                None => pb::MetadataResponse::default(),
            })),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_outside_its_own_neighbourhood_says_so() {
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let blob_id = BlobId::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(outside_note(&peers[2], &peers, 4, &blob_id), None);
        let note = outside_note(&peers[5], &peers, 4, &blob_id).unwrap();
        assert!(note.contains("not among the 4 closest"), "{note}");
        // A small swarm (fewer peers than slivers): everyone is in the neighbourhood.
        assert_eq!(outside_note(&peers[5], &peers, 12, &blob_id), None);
    }
}
