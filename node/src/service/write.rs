//! Writes: encode a blob, place it on its neighbourhood, drive `floe_protocol::write::Write` until receipts
//! certify it, and deliver each sliver index run by run; the writer's record of the blob and its certificate.

use super::*;

/// The peers of `view` and `me`, ordered by distance to `blob_id` (`keyspace::by_distance`, Kademlia's own
/// metric) and then spread over networks for an n-sliver blob (`diversity::spread`): the first `shards` hold at
/// most ⌈n / S⌉ peers per /24 or /48 wherever the swarm allows it.
pub(crate) fn neighbourhood_in(
    view: &PeerView,
    me: &PeerId,
    blob_id: &BlobId,
    shards: u16,
) -> Vec<PeerId> {
    spread_neighbourhood(view, me, blob_id, shards).0
}

/// [`neighbourhood_in`], and the cap per network it was spread with.
fn spread_neighbourhood(
    view: &PeerView,
    me: &PeerId,
    blob_id: &BlobId,
    shards: u16,
) -> (Vec<PeerId>, usize) {
    let mut peers = view.peers.clone();
    peers.push(*me);
    peers.sort();
    peers.dedup();
    keyspace::by_distance(blob_id, &mut peers, |p| p.to_bytes());
    let network = network_in(view, me);
    let cap = diversity::cap(
        shards,
        diversity::count_networks(peers.iter().map(&network)),
    );
    diversity::spread(&mut peers, network, cap, &BTreeMap::new());
    (peers, cap)
}

/// The network of a peer as `view` knows it (`me` by its listen address).
pub(crate) fn network_in<'a>(
    view: &'a PeerView,
    me: &'a PeerId,
) -> impl Fn(&PeerId) -> Option<diversity::Network> + 'a {
    move |peer| {
        if peer == me {
            view.own_network
        } else {
            view.networks.get(peer).copied()
        }
    }
}

/// A repair's candidates for a blob of `holders` (as the steward asks for them, given the holders it takes for
/// `gone`): the live holders that `usable` says can move slivers, and as many new peers from the blob's spread
/// neighbourhood as there are indexes to place, counting the networks of the holders that stay, and peers known
/// for less than `newcomer_age` only after every older one (`diversity::repair_candidates`).
pub(crate) fn repair_candidates_in(
    view: &PeerView,
    me: &PeerId,
    blob_id: &BlobId,
    holders: &[PeerKey],
    gone: &BTreeSet<PeerKey>,
    usable: impl Fn(&PeerId) -> bool,
    newcomer_age: Duration,
) -> Vec<PeerKey> {
    let shards = u16::try_from(holders.len()).unwrap_or(u16::MAX);
    let network = network_in(view, me);
    let by_key = |key: &PeerKey| PeerId::from_bytes(key).ok().and_then(|p| network(&p));
    let mut kept: Vec<PeerKey> = holders
        .iter()
        .filter(|h| !gone.contains(*h))
        .cloned()
        .collect();
    kept.sort();
    kept.dedup();
    let (neighbourhood, cap) = spread_neighbourhood(view, me, blob_id, shards);
    let live: Vec<PeerKey> = neighbourhood
        .into_iter()
        .filter(|p| usable(p))
        .map(|p| p.to_bytes())
        .filter(|p| !gone.contains(p))
        .collect();
    // How long this node has known each peer, an input to the protocol's newcomer rule.
    let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
    let known_for = |key: &PeerKey| {
        let peer = PeerId::from_bytes(key).ok()?;
        if peer == *me {
            return Some(Millis::MAX);
        }
        view.first_seen.get(&peer).map(|at| millis(at.elapsed()))
    };
    let mut newcomers = diversity::repair_candidates(
        shards,
        &kept,
        &live,
        by_key,
        cap,
        known_for,
        millis(newcomer_age),
    );
    newcomers.sort();
    // `live` holds peers that answer now, so the kept holders in it are the ones that may move slivers.
    live.into_iter()
        .filter(|p| kept.binary_search(p).is_ok() || newcomers.binary_search(p).is_ok())
        .collect()
}

impl Node {
    /// Peers in our view, ourselves included, ordered by distance to `blob_id` (`keyspace::by_distance`,
    /// Kademlia's own metric) and spread over networks for an n-sliver blob.
    pub(crate) async fn neighbourhood(&self, blob_id: &BlobId, shards: u16) -> Vec<PeerId> {
        let view = self.inner.net.view().await;
        neighbourhood_in(&view, &self.inner.peer_id, blob_id, shards)
    }

    /// Stores a blob: encodes it, sends each sliver index to its holder and returns once receipts certify it.
    /// Delivery of the remaining slivers goes on in the background.
    pub async fn put(&self, data: Bytes, options: &PutOptions) -> Result<PutOutcome, PutError> {
        let started = Instant::now();
        let result = self.put_inner(data, options).await;
        let m = &self.inner.metrics;
        record(&result, started, &m.puts, &m.latencies.put, &m.put_failures);
        result
    }

    async fn put_inner(&self, data: Bytes, options: &PutOptions) -> Result<PutOutcome, PutError> {
        let content_type = options.content_type.as_str();
        let view = self.inner.net.view().await;
        let shards = self.shards_for(&view);
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let params = BlobParams::new(EncodingType::RsSimd, shards, DEFAULT_SEGMENT_SIZE, length)?;
        let whole = data.clone();
        let started = Instant::now();
        let encoded = tokio::task::spawn_blocking(move || EncodedBlob::encode(params, &data))
            .await
            .map_err(|e| PutError::Internal(e.to_string()))?
            .map_err(|e| PutError::Encode(e.to_string()))?;
        let blob_id = encoded.metadata.blob_id();
        let epoch = self.current_epoch();
        let end_epoch = self.put_end_epoch(options)?;
        if let Some((certificate, held)) = self.already_certified(&blob_id, options, end_epoch) {
            return Ok(PutOutcome {
                blob_id,
                already_certified: true,
                certificate,
                size: length,
                shards,
                end_epoch: held,
                epoch,
                deletion_token: None,
            });
        }
        // Certified here before: this write extends it, or adds a writer's claim (answered `alreadyCertified`).
        let extension = self.certificate(&blob_id).is_some() && !options.force;
        let (claims, deletion_token) = Node::write_claims(&blob_id, options, end_epoch);
        let encoded_at = started.elapsed();
        let (placement, record, writer_record) = self
            .place(&encoded.metadata, content_type, end_epoch, claims)
            .await?;
        let placed_at = started.elapsed();
        let encoded_metadata = encoded.metadata.clone();

        let (certified_tx, certified_rx) = oneshot::channel();
        let node = self.clone();
        let encoded = Arc::new(encoded);
        tokio::spawn(async move {
            node.drive_write(blob_id, encoded, placement, record, certified_tx)
                .await;
        });
        let certificate = certified_rx
            .await
            .map_err(|_| PutError::Internal("write task ended".into()))??;
        writer_record.finish(&blob_id).await;
        // A blob kept longer before keeps its later end epoch (records merge by the later one): say so.
        let end_epoch = self.held_end_epoch(&blob_id).map_or(end_epoch, |held| {
            floe_protocol::lifetime::extend(held, end_epoch)
        });
        tracing::debug!(
            %blob_id,
            encode_us = encoded_at.as_micros(),
            place_us = placed_at.saturating_sub(encoded_at).as_micros(),
            certify_us = started.elapsed().saturating_sub(placed_at).as_micros(),
            "put certified"
        );
        self.remember_certificate(blob_id, certificate.clone())?;
        // Just written, likely read soon: serve it from memory, under the label the holders keep (a blob stored
        // before under another label keeps that one; one index lookup).
        let label = self.inner.store.metadata_record(&blob_id).map_or_else(
            |_| content_type.to_owned(),
            |(_, record)| record.content_type,
        );
        self.inner.cache.insert(&BlobBytes {
            metadata: encoded_metadata,
            content_type: label,
            bytes: whole,
            end_epoch,
        });
        Ok(PutOutcome {
            blob_id,
            already_certified: extension,
            certificate,
            size: length,
            shards,
            end_epoch,
            epoch,
            deletion_token,
        })
    }

    /// A new blob's placement over its neighbourhood, and the task storing the writer's holder record (list and
    /// content type) here, which runs while the slivers go out: await it before answering the put.
    pub(crate) async fn place(
        &self,
        metadata: &BlobMetadata,
        content_type: &str,
        end_epoch: u64,
        claims: floe_protocol::deletion::Claims,
    ) -> Result<(Placement, HolderRecord, WriterRecordTask), PutError> {
        let blob_id = metadata.blob_id();
        let shards = metadata.params().shards();
        // Peers known to lack room for one of its sliver indexes are skipped, and the next in the spread order
        // step in; too few with room, and nothing is sent (`room::holders_with_room`).
        let needed = metadata.params().index_bytes();
        let ordered = self.neighbourhood(&blob_id, shards).await;
        let neighbourhood: Vec<PeerKey> =
            floe_protocol::room::holders_with_room(&ordered, shards, |peer| {
                self.has_room(peer, needed, floe_protocol::room::Purpose::Write)
            })?
            .into_iter()
            .map(|p| p.to_bytes())
            .collect();
        let placement = Placement::new(&blob_id, shards, &neighbourhood)
            .ok_or_else(|| PutError::Internal("no peers".into()))?;
        let record = HolderRecord::initial(placement.holder_list())
            .with_content_type(content_type)
            .with_end_epoch(end_epoch)
            .with_claims(claims);
        let node = self.clone();
        let (metadata, listed) = (metadata.clone(), record.clone());
        let writer_record = WriterRecordTask(tokio::task::spawn_blocking(move || {
            node.inner.store.put_record(&metadata, &listed).map(|_| ())
        }));
        Ok((placement, record, writer_record))
    }

    /// The end epoch a put stores its blob until (`options.end_epoch`, else the default lifetime from now).
    pub(crate) fn put_end_epoch(&self, options: &PutOptions) -> Result<u64, PutError> {
        match options.end_epoch {
            Some(end) => Ok(end),
            None => Ok(self.end_epoch_for(None)?),
        }
    }

    pub(crate) fn certificate(&self, blob_id: &BlobId) -> Option<pb::Certificate> {
        self.inner.certificates.lock().ok()?.get(blob_id).cloned()
    }

    pub(crate) fn remember_certificate(
        &self,
        blob_id: BlobId,
        certificate: pb::Certificate,
    ) -> Result<(), PutError> {
        self.inner
            .certificates
            .lock()
            .map_err(|_| PutError::Internal("lock poisoned".into()))?
            .insert(blob_id, certificate);
        Ok(())
    }

    /// A slot for one streamed put, if fewer than [`crate::spool::MAX_STREAMED_PUTS`] are running.
    pub fn streamed_put_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PutError> {
        Arc::clone(&self.inner.put_permits)
            .try_acquire_owned()
            .map_err(|_| PutError::Busy(crate::spool::MAX_STREAMED_PUTS))
    }

    /// Where streamed puts spool their bodies.
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.inner.spool_dir
    }

    async fn drive_write(
        &self,
        blob_id: BlobId,
        encoded: Arc<EncodedBlob>,
        placement: Placement,
        record: HolderRecord,
        certified_tx: oneshot::Sender<Result<pb::Certificate, PutError>>,
    ) {
        let mut certified_tx = Some(certified_tx);
        let mut driver = Driver::<(PeerKey, u16, u32, Result<pb::StorageReceipt, SendError>)>::new(
            self.inner.epoch,
        );
        let (mut write, mut effects) =
            Write::start(blob_id, placement, self.inner.write_config, self.now());
        let mut receipts: BTreeMap<u16, pb::StorageReceipt> = BTreeMap::new();
        // Indexes a holder refused for lack of room: a failed write says so (507).
        let mut full: BTreeSet<u16> = BTreeSet::new();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    WriteEffect::Send {
                        peer,
                        index,
                        attempt,
                    } => {
                        let node = self.clone();
                        let source = IndexSource::Encoded(Arc::clone(&encoded));
                        let record = record.clone();
                        let metadata = encoded.metadata.clone();
                        driver.spawn(async move {
                            let result = node
                                .send_index(&peer, index, &metadata, &record, &source)
                                .await;
                            (peer, index, attempt, result)
                        });
                    }
                    WriteEffect::SetTimer(at) => driver.set_timer(at),
                    WriteEffect::Certified => {
                        if let Some(sender) = certified_tx.take() {
                            let _ = sender.send(Ok(certificate_of(&blob_id, &receipts)));
                        }
                    }
                    WriteEffect::Failed {
                        stored,
                        needed,
                        failed,
                    } => {
                        tracing::warn!(%blob_id, stored, needed, failed, "write failed");
                        if let Some(sender) = certified_tx.take() {
                            let _ = sender.send(Err(PutError::NotCertified {
                                stored,
                                needed,
                                failed,
                                full: full.len(),
                            }));
                        }
                        return;
                    }
                    WriteEffect::Finished => {
                        tracing::debug!(%blob_id, receipts = receipts.len(), "write finished");
                        return;
                    }
                }
            }
            effects = match driver.next().await {
                Wake::Report((peer, index, _, Ok(receipt))) => {
                    let receipt = self.heed_receipt(&blob_id, index, &peer, receipt);
                    let signature = receipt.signature.to_vec();
                    receipts.insert(index, receipt);
                    write.on_receipt(&peer, index, signature)
                }
                Wake::Report((peer, index, attempt, Err(why))) => {
                    tracing::debug!(%blob_id, index, attempt, %why, "store request failed");
                    if matches!(why, SendError::Full { .. }) {
                        full.insert(index);
                    }
                    write.on_failure(&peer, index, attempt, self.now())
                }
                Wake::Timer(now) => write.on_timer(now),
            };
        }
    }

    /// A holder's receipt as a writer keeps it. Its note is unsigned and peer-supplied: only a short one is heeded
    /// (counted and logged escaped), and it is never kept in the certificate.
    pub(crate) fn heed_receipt(
        &self,
        blob_id: &BlobId,
        index: u16,
        peer: &[u8],
        mut receipt: pb::StorageReceipt,
    ) -> pb::StorageReceipt {
        let note = std::mem::take(&mut receipt.note);
        if !note.is_empty() && note.len() <= MAX_NOTE_LEN {
            self.inner
                .metrics
                .placement_disagreements
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%blob_id, index, holder = %peer_label(peer), ?note, "a holder's view of the blob's neighbourhood differs from ours");
        }
        receipt
    }

    /// Sends sliver `index` to `peer` run by run ([`store_runs`]), each request made by `request_for` when its
    /// turn comes, and returns the receipt. A holder that already has the whole index answers the first run with
    /// its receipt, which ends the delivery early.
    pub(crate) async fn send_index(
        &self,
        peer: &[u8],
        index: u16,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        source: &IndexSource,
    ) -> Result<pb::StorageReceipt, SendError> {
        let blob_id = metadata.blob_id();
        let params = metadata.params();
        let segments = params.segment_count();
        for run in store_runs(params) {
            let end = run.end;
            let slivers: Vec<pb::Sliver> = match source {
                IndexSource::Encoded(encoded) => run
                    .filter_map(|s| encoded.sliver(s, index))
                    .map(|s| pb::Sliver::from(&s))
                    .collect(),
                IndexSource::Store => {
                    let node = self.clone();
                    tokio::task::spawn_blocking(move || {
                        node.inner.store.read_slivers(
                            &blob_id,
                            index,
                            run.start,
                            run.end - run.start,
                        )
                    })
                    .await??
                    .iter()
                    .map(pb::Sliver::from)
                    .collect()
                }
            };
            let request = store_request(slivers, metadata, record);
            match self.send_store(peer, blob_id, index, request).await? {
                StoreAnswer::Receipt(receipt) => return Ok(receipt),
                StoreAnswer::Progress { segments_held, .. }
                    if segments_held >= end && end < segments => {}
                StoreAnswer::Progress { segments_held, .. } => {
                    return Err(SendError::Stalled {
                        held: segments_held,
                        segments,
                        end,
                    });
                }
            }
        }
        Err(SendError::NoReceipt)
    }

    /// Sends one store request (one run of one index) and checks the answer.
    pub(crate) async fn send_store(
        &self,
        peer: &[u8],
        blob_id: BlobId,
        index: u16,
        request: pb::StoreRequest,
    ) -> Result<StoreAnswer, SendError> {
        let peer_id = PeerId::from_bytes(peer).map_err(|_| SendError::BadPeer)?;
        if peer_id == self.inner.peer_id {
            let node = self.clone();
            let me = self.inner.peer_id;
            return Ok(tokio::task::spawn_blocking(move || {
                node.store_locally(request, &me, &BTreeSet::new())
            })
            .await??);
        }
        self.inner
            .metrics
            .write_requests
            .fetch_add(1, Ordering::Relaxed);
        let response = self
            .inner
            .net
            .request(
                peer_id,
                pb::Request {
                    kind: Some(pb::request::Kind::Store(request)),
                },
            )
            .await?;
        match response.kind {
            Some(pb::response::Kind::Receipt(receipt)) => {
                receipt::check(&PeerSignatures, &receipt, &blob_id, index, &peer_id)?;
                Ok(StoreAnswer::Receipt(receipt))
            }
            Some(pb::response::Kind::Progress(progress))
                if progress.blob_id.as_ref() == blob_id.as_bytes()
                    && progress.index == u32::from(index) =>
            {
                Ok(StoreAnswer::Progress {
                    blob_id,
                    index,
                    segments_held: progress.segments_held,
                })
            }
            Some(pb::response::Kind::Error(why)) => Err(SendError::Refused(why)),
            Some(pb::response::Kind::Busy(_)) => Err(SendError::Busy),
            Some(pb::response::Kind::Full(room)) => {
                // Remembered, so the next writes and repairs skip it until it says it has room again.
                self.note_room(peer_id, &room);
                self.inner
                    .metrics
                    .holders_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(SendError::Full {
                    free: room.free_bytes,
                    capacity: room.capacity_bytes,
                })
            }
            _ => Err(SendError::Unexpected),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use libp2p::kad;

    /// A repair's new holders, as the node picks them from its view: never a peer it met moments ago while an
    /// older one can take the sliver, and no second peer of a network that already holds its share.
    #[test]
    fn repair_candidates_skip_newcomers_and_full_networks() {
        let me = PeerId::random();
        let blob_id = BlobId::from_slice(&[7; 32]).unwrap();
        // Twelve peers by distance to the blob: 0..4 (closest) joined just now; 4 and 5 share the /24 of holder
        // 8; 6 and 7 are old and alone in their /24s; 8..12 hold the blob with this node (11 has gone).
        let mut peers: Vec<PeerId> = (0..12).map(|_| PeerId::random()).collect();
        keyspace::by_distance(&blob_id, &mut peers, |p| p.to_bytes());
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3 * 3600))
            .unwrap();
        let mut view = PeerView {
            peers: peers.clone(),
            connected: peers.len(),
            connected_peers: peers.iter().copied().collect(),
            own_network: Some(diversity::Network::V4([10, 0, 0])),
            ..PeerView::default()
        };
        for (i, peer) in peers.iter().enumerate() {
            let net = match i {
                4 | 5 => 8,
                i => u8::try_from(i).unwrap(),
            };
            view.networks
                .insert(*peer, diversity::Network::V4([10, 1, net]));
            let seen = if i < 4 { Instant::now() } else { long_ago };
            view.first_seen.insert(*peer, seen);
        }
        let holders: Vec<PeerKey> = std::iter::once(me)
            .chain(peers[8..].iter().copied())
            .map(|p| p.to_bytes())
            .collect();
        let gone: BTreeSet<PeerKey> = [peers[11].to_bytes()].into_iter().collect();
        let new_holder = |age: Duration| {
            let candidates =
                repair_candidates_in(&view, &me, &blob_id, &holders, &gone, |_| true, age);
            // The holders that stay and answer are candidates too (they may give or take slivers).
            for kept in &holders[..4] {
                assert!(candidates.contains(kept), "{candidates:?}");
            }
            let new: Vec<PeerKey> = candidates
                .into_iter()
                .filter(|c| !holders.contains(c))
                .collect();
            assert_eq!(new.len(), 1, "one index to place: {new:?}");
            new[0].clone()
        };
        // The closest old peer with room in its network: 6 (4 and 5 would put a second sliver in 8's /24).
        assert_eq!(new_holder(Duration::from_secs(3600)), peers[6].to_bytes());
        // With no age asked, the closest peer takes it.
        assert_eq!(new_holder(Duration::ZERO), peers[0].to_bytes());
    }

    /// The protocol's neighbourhood metric is the one libp2p's Kademlia looks peers up by, so a node's
    /// neighbourhood is what its DHT lookups find.
    #[test]
    fn the_neighbourhood_metric_is_kademlias() {
        let peers: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
        for seed in 0u8..20 {
            let blob_id = BlobId::from_slice(&[seed; 32]).unwrap();
            let mut ours = peers.clone();
            keyspace::by_distance(&blob_id, &mut ours, |p| p.to_bytes());
            let target = kad::KBucketKey::new(blob_id.as_bytes().to_vec());
            let mut libp2p = peers.clone();
            libp2p.sort_by_key(|p| kad::KBucketKey::from(*p).distance(&target));
            assert_eq!(ours, libp2p);
        }
    }
}
