//! Reads: find a blob's metadata and holder list (here, else from the nearest peers), drive
//! `floe_protocol::read::Read` over the holders, verify and decode, whole or streamed round by round.

use super::*;

/// Bytes `[start, end)` of a cached whole blob.
fn slice_cached(blob: BlobBytes, range: Option<(u64, u64)>) -> Result<BlobBytes, GetError> {
    let len = blob.metadata.params().blob_length();
    let (start, end) = range.unwrap_or((0, len));
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(s), Ok(e)) if s <= e && e <= blob.bytes.len() => Ok(BlobBytes {
            bytes: blob.bytes.slice(s..e),
            ..blob
        }),
        _ => Err(GetError::Range { start, end, len }),
    }
}

impl Node {
    /// Asks `peer` for its record of a blob; `None` if it cannot answer with one.
    pub(crate) async fn ask_metadata(
        &self,
        peer: PeerId,
        blob_id: &BlobId,
    ) -> Option<pb::MetadataResponse> {
        match self
            .inner
            .net
            .request(peer, metadata_request(blob_id))
            .await
        {
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Metadata(record)),
            }) => Some(record),
            _ => None,
        }
    }

    /// The metadata and holder record (list and content type) of a blob: from the local store, else from the
    /// nearest peers that know it.
    pub async fn find_metadata(
        &self,
        blob_id: &BlobId,
    ) -> Result<(BlobMetadata, HolderRecord), GetError> {
        self.find_metadata_excluding(blob_id, &[]).await
    }

    /// `found`, unless its end epoch is past or it was deleted: such a blob is not served, whoever still holds it.
    fn unless_expired(
        &self,
        blob_id: &BlobId,
        found: (BlobMetadata, HolderRecord),
    ) -> Result<(BlobMetadata, HolderRecord), GetError> {
        let current = self.current_epoch();
        if found.1.is_deleted(current) {
            return Err(GetError::Deleted(*blob_id));
        }
        let served_until = found.1.served_until();
        if floe_protocol::lifetime::is_live(served_until, current) {
            Ok(found)
        } else {
            Err(GetError::Expired {
                blob_id: *blob_id,
                end_epoch: served_until,
                current,
            })
        }
    }

    /// Like [`Self::find_metadata`], skipping records whose holder list is in `tried`: a reader that could not
    /// read with one list (a stale or hostile one) asks for another.
    async fn find_metadata_excluding(
        &self,
        blob_id: &BlobId,
        tried: &[Vec<PeerKey>],
    ) -> Result<(BlobMetadata, HolderRecord), GetError> {
        let found = self.find_record_excluding(blob_id, tried).await?;
        self.unless_expired(blob_id, found)
    }

    /// The blob's metadata and holder record, expired or deleted or not: this node's own, else the first valid
    /// one a peer of its neighbourhood gives, skipping lists in `tried`.
    pub(crate) async fn find_record_excluding(
        &self,
        blob_id: &BlobId,
        tried: &[Vec<PeerKey>],
    ) -> Result<(BlobMetadata, HolderRecord), GetError> {
        let store = self.clone();
        let id = *blob_id;
        if let Ok(Ok(found)) =
            tokio::task::spawn_blocking(move || store.inner.store.metadata_record(&id)).await
            && !tried.contains(&found.1.holders)
        {
            return Ok(found);
        }
        // The blob's n is not known yet: the cap is the one a blob written now would get.
        let view = self.inner.net.view().await;
        let shards = self.shards_for(&view);
        let lookups = neighbourhood_in(&view, &self.inner.peer_id, blob_id, shards);
        for peer in lookups.into_iter().take(32) {
            if peer == self.inner.peer_id {
                continue;
            }
            let Some(record) = self.ask_metadata(peer, blob_id).await else {
                continue;
            };
            let Some(metadata) = record
                .metadata
                .as_ref()
                .and_then(|m| BlobMetadata::try_from(m).ok())
            else {
                continue;
            };
            let holders: Vec<PeerKey> = record.holders.iter().map(|h| h.to_vec()).collect();
            if metadata.check(blob_id).is_ok()
                && check_holders(&holders, metadata.params().shards()).is_ok()
                && !tried.contains(&holders)
            {
                let Ok(found) = HolderRecord::from_answer(blob_id, &record) else {
                    continue;
                };
                return Ok((metadata, found));
            }
        }
        Err(GetError::NotFound(*blob_id))
    }

    /// Reads bytes `[start, end)` of a blob (`None` for the whole blob), with its metadata and media type.
    pub async fn get(
        &self,
        blob_id: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBytes, GetError> {
        let started = Instant::now();
        // A cached blob past its end epoch is not served from memory: the holders' records say it expired.
        let result = match self.cached(blob_id) {
            Some(blob) => {
                let sliced = slice_cached(blob, range);
                if let Ok(blob) = &sliced {
                    self.inner.cache.served(blob.bytes.len());
                }
                sliced
            }
            None => {
                let result = self.get_inner(blob_id, range).await;
                if let Ok(blob) = &result
                    && range.is_none_or(|(start, end)| {
                        start == 0 && end == blob.metadata.params().blob_length()
                    })
                {
                    self.inner.cache.insert(blob);
                }
                result
            }
        };
        let m = &self.inner.metrics;
        record(&result, started, &m.gets, &m.latencies.get, &m.get_failures);
        result
    }

    /// A whole blob this node read or wrote recently, from memory.
    /// Not one past its end epoch: the gateway then asks the holders' records, and answers that it expired.
    pub fn cached(&self, blob_id: &BlobId) -> Option<BlobBytes> {
        self.inner
            .cache
            .get(blob_id)
            .filter(|blob| floe_protocol::lifetime::is_live(blob.end_epoch, self.current_epoch()))
    }

    async fn get_inner(
        &self,
        blob_id: &BlobId,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBytes, GetError> {
        // Up to three distinct holder lists: one stale or hostile peer's list cannot make a blob unreadable.
        let mut tried: Vec<Vec<PeerKey>> = Vec::new();
        let mut last_error = None;
        while tried.len() < 3 {
            let started = Instant::now();
            let (
                metadata,
                HolderRecord {
                    holders,
                    content_type,
                    end_epoch,
                    ..
                },
            ) = match self.find_metadata_excluding(blob_id, &tried).await {
                Ok(found) => found,
                Err(error) => return Err(last_error.unwrap_or(error)),
            };
            let found_at = started.elapsed();
            let result = self
                .read_with(blob_id, metadata, holders.clone(), range)
                .await;
            tracing::debug!(
                %blob_id,
                metadata_us = found_at.as_micros(),
                read_us = started.elapsed().saturating_sub(found_at).as_micros(),
                "read with a holder list"
            );
            match result {
                Err(error @ GetError::NotEnoughSlivers { .. }) => {
                    tracing::info!(%blob_id, %error, "read failed with this holder list; trying another");
                    tried.push(holders);
                    last_error = Some(error);
                }
                other => {
                    return other.map(|(metadata, bytes)| BlobBytes {
                        metadata,
                        content_type,
                        bytes,
                        end_epoch,
                    });
                }
            }
        }
        Err(last_error.unwrap_or(GetError::NotFound(*blob_id)))
    }

    async fn read_with(
        &self,
        blob_id: &BlobId,
        metadata: BlobMetadata,
        holders: Vec<PeerKey>,
        range: Option<(u64, u64)>,
    ) -> Result<(BlobMetadata, Bytes), GetError> {
        let len = metadata.params().blob_length();
        let (start, end) = range.unwrap_or((0, len));
        if start > end || end > len {
            return Err(GetError::Range { start, end, len });
        }
        if end - start > self.inner.max_get {
            return Err(GetError::TooLarge {
                len: end - start,
                max: self.inner.max_get,
            });
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let collect = async {
            let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
            while let Some(chunk) = rx.recv().await {
                out.extend_from_slice(&chunk);
            }
            out
        };
        let (read, out) = tokio::join!(
            self.stream_range(blob_id, &metadata, holders, start, end, tx),
            collect
        );
        read?;
        Ok((metadata, Bytes::from(out)))
    }

    /// Reads bytes `[start, end)` of a blob round by round (a few segments at a time), sending each round's bytes
    /// to `tx` as soon as they are decoded, so memory holds one round whatever the range. Stops early, without an
    /// error, when the receiver goes away.
    async fn stream_range(
        &self,
        blob_id: &BlobId,
        metadata: &BlobMetadata,
        holders: Vec<PeerKey>,
        start: u64,
        end: u64,
        tx: mpsc::Sender<Bytes>,
    ) -> Result<(), GetError> {
        let params = *metadata.params();
        let len = params.blob_length();
        if start > end || end > len {
            return Err(GetError::Range { start, end, len });
        }
        let placement = Placement::from_holders(holders).ok_or(GetError::NotFound(*blob_id))?;
        let segments = params.segments_for_range(start, end);
        let mut decoder = Some(self.inner.decoders.take(params));
        let mut first = segments.start;
        // The part of `segment`'s bytes that lies in [start, end).
        let part = |segment: u64, bytes: &Bytes| {
            let offset = params.segment_offset(segment);
            let from = usize::try_from(start.saturating_sub(offset)).unwrap_or(0);
            let to = usize::try_from((end - offset).min(u64::try_from(bytes.len()).unwrap_or(0)))
                .unwrap_or(0);
            bytes.slice(from.min(to)..to)
        };
        'rounds: while first < segments.end {
            // A segment this node keeps decoded goes out without asking anyone (`cache::BlobCache::segment`).
            if let Some(bytes) = self.inner.cache.segment(blob_id, first) {
                let chunk = part(first, &bytes);
                self.inner.cache.served(chunk.len());
                if tx.send(chunk).await.is_err() {
                    break 'rounds;
                }
                first += 1;
                continue;
            }
            // Then a round of the segments up to the next cached one.
            let mut count = 1;
            while count < SEGMENTS_PER_ROUND
                && first + count < segments.end
                && !self.inner.cache.has_segment(blob_id, first + count)
            {
                count += 1;
            }
            let round_started = Instant::now();
            let slivers = self
                .fetch_segments(blob_id, &placement, params, first, count)
                .await?;
            let fetched_at = round_started.elapsed();
            let mut dec = decoder
                .take()
                .ok_or_else(|| GetError::Internal("decoder lost".into()))?;
            let metrics_node = self.clone();
            let id = *blob_id;
            let (dec, decoded) = tokio::task::spawn_blocking(move || {
                let mut decoded = Vec::new();
                for segment in first..first + count {
                    let these: Vec<VerifiedSliver> = slivers
                        .values()
                        .filter_map(|set| {
                            set.iter().find(|s| s.sliver().segment == segment).cloned()
                        })
                        .collect();
                    if these
                        .iter()
                        .any(|s| s.sliver().index >= params.source_shards())
                    {
                        metrics_node
                            .inner
                            .metrics
                            .segments_decoded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let checked = &metrics_node.inner.checked;
                    let consistency = if checked.contains(&id, segment) {
                        metrics_node
                            .inner
                            .metrics
                            .segment_checks_skipped
                            .fetch_add(1, Ordering::Relaxed);
                        Consistency::SliversOnly
                    } else {
                        Consistency::Full
                    };
                    match dec.decode(segment, &these, consistency) {
                        Ok(bytes) => {
                            if consistency == Consistency::Full {
                                checked.insert(&id, segment);
                            }
                            decoded.push((segment, bytes));
                        }
                        Err(error) => return (dec, Err(error)),
                    }
                }
                (dec, Ok(decoded))
            })
            .await
            .map_err(|e| GetError::Internal(e.to_string()))?;
            decoder = Some(dec);
            tracing::debug!(
                %blob_id,
                first,
                count,
                fetch_us = fetched_at.as_micros(),
                decode_us = round_started.elapsed().saturating_sub(fetched_at).as_micros(),
                "read round"
            );
            let decoded = decoded.map_err(|error| match error {
                DecodeError::Inconsistent(_) => GetError::Inconsistent(*blob_id),
                other => GetError::Internal(other.to_string()),
            })?;
            for (segment, bytes) in decoded {
                let bytes = Bytes::from(bytes);
                self.inner.cache.offer_segment(blob_id, segment, &bytes);
                let chunk = part(segment, &bytes);
                if tx.send(chunk).await.is_err() {
                    break 'rounds; // the reader is gone
                }
            }
            first += count;
        }
        // Kept for the next read (a failed read drops its decoder instead).
        if let Some(decoder) = decoder {
            self.inner.decoders.give(decoder);
        }
        Ok(())
    }

    /// Streams bytes `[start, end)` of a blob: the first round is read before this returns, so a blob that cannot
    /// be read fails with its error (and the gateway with its status) before any byte is sent; later failures end
    /// the stream with an error. Up to three holder lists are tried while nothing has been sent. Memory stays at
    /// about two rounds, so there is no `max_get` limit here.
    pub async fn get_stream(
        &self,
        blob_id: &BlobId,
        start: u64,
        end: u64,
    ) -> Result<(Option<Bytes>, mpsc::Receiver<Result<Bytes, GetError>>), GetError> {
        let permit = Arc::clone(&self.inner.stream_permits)
            .try_acquire_owned()
            .map_err(|_| GetError::Busy(MAX_STREAMS))?;
        let (out_tx, mut out_rx) = mpsc::channel::<Result<Bytes, GetError>>(1);
        let node = self.clone();
        let blob_id = *blob_id;
        let task = tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let mut tried: Vec<Vec<PeerKey>> = Vec::new();
            let mut sent = 0u64;
            let mut last_error = None;
            let result = loop {
                let (metadata, holders) = match node.find_metadata_excluding(&blob_id, &tried).await
                {
                    Ok((metadata, record)) => (metadata, record.holders),
                    Err(error) => break Err(last_error.unwrap_or(error)),
                };
                let from = start.saturating_add(sent);
                let (tx, mut rx) = mpsc::channel::<Bytes>(1);
                // Owns `rx`: when the client goes away or stops reading it ends and drops it, which stops the
                // read at its next round.
                let (out, sent_bytes) = (&out_tx, &mut sent);
                let forward = async move {
                    while let Some(chunk) = rx.recv().await {
                        let len = u64::try_from(chunk.len()).unwrap_or(0);
                        match tokio::time::timeout(STREAM_SEND_TIMEOUT, out.send(Ok(chunk))).await {
                            Ok(Ok(())) => *sent_bytes += len,
                            _ => break,
                        }
                    }
                };
                let (read, ()) = tokio::join!(
                    node.stream_range(&blob_id, &metadata, holders.clone(), from, end, tx),
                    forward
                );
                match read {
                    // Another holder list may still have k slivers: go on from the first byte not yet sent.
                    Err(error @ GetError::NotEnoughSlivers { .. })
                        if tried.len() < 2 && !out_tx.is_closed() =>
                    {
                        tracing::info!(%blob_id, %error, sent, "streamed read failed with this holder list; trying another");
                        tried.push(holders);
                        last_error = Some(error);
                    }
                    other => break other,
                }
            };
            let m = &node.inner.metrics;
            record(&result, started, &m.gets, &m.latencies.get, &m.get_failures);
            if let Err(error) = result {
                tracing::info!(%blob_id, %error, sent, "streamed read failed");
                let _ = out_tx.send(Err(error)).await;
            }
        });
        // The first item decides: an error before any byte becomes the answer itself.
        match out_rx.recv().await {
            Some(Err(error)) => Err(error),
            Some(Ok(first)) => Ok((Some(first), out_rx)),
            // Nothing at all: an empty range, or the task died (a panic is an internal error, not an empty body).
            None => match task.await {
                Err(join) => Err(GetError::Internal(join.to_string())),
                Ok(()) => Ok((None, out_rx)),
            },
        }
    }

    async fn fetch_segments(
        &self,
        blob_id: &BlobId,
        placement: &Placement,
        params: BlobParams,
        first: u64,
        count: u64,
    ) -> Result<BTreeMap<u16, Vec<VerifiedSliver>>, GetError> {
        let reach = self.inner.net.view().await.reach_by_key();
        let me = self.inner.peer_id.to_bytes();
        let (mut read, mut effects) = Read::start(
            placement,
            params.source_shards(),
            |peer| {
                if peer == me.as_slice() {
                    Reach::from(Some(0))
                } else {
                    reach.get(peer).copied().unwrap_or_default()
                }
            },
            self.inner.read_config,
            self.now(),
        );
        let mut driver = Driver::<(u16, Option<Vec<VerifiedSliver>>)>::new(self.inner.epoch);
        let mut got: BTreeMap<u16, Vec<VerifiedSliver>> = BTreeMap::new();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    ReadEffect::Send { peer, index } => {
                        let node = self.clone();
                        let id = *blob_id;
                        driver.spawn(async move {
                            let slivers = node
                                .fetch_index(&peer, &id, index, &params, first, count)
                                .await;
                            (index, slivers)
                        });
                    }
                    ReadEffect::SetTimer(at) => driver.set_timer(at),
                    ReadEffect::Ready(indexes) => {
                        got.retain(|index, _| indexes.contains(index));
                        return Ok(got);
                    }
                    ReadEffect::Failed { have, need } => {
                        return Err(GetError::NotEnoughSlivers { have, need });
                    }
                }
            }
            effects = match driver.next().await {
                Wake::Report((index, slivers)) => {
                    let valid = slivers.is_some();
                    if let Some(slivers) = slivers {
                        got.insert(index, slivers);
                    }
                    read.on_response(index, valid, self.now())
                }
                Wake::Timer(now) => read.on_timer(now),
            };
        }
    }

    /// Sliver `index` of segments `[first, first + count)` of a blob, verified against its ID, for a reader that
    /// verifies them again itself (`GET /v1/blobs/{id}/slivers/{index}`): from the index's holder (or this
    /// node's store). At most [`MAX_SLIVERS_PER_ASK`] segments and `max_get` bytes.
    pub async fn slivers_for_reader(
        &self,
        blob_id: &BlobId,
        index: u16,
        first: u64,
        count: u64,
    ) -> Result<(BlobMetadata, Vec<Sliver>), GetError> {
        let (metadata, record) = self.find_metadata(blob_id).await?;
        let params = *metadata.params();
        let segments = params.segment_count();
        let end = first
            .checked_add(count)
            .filter(|&end| end <= segments && count > 0);
        let Some(end) = end.filter(|_| index < params.shards() && count <= MAX_SLIVERS_PER_ASK)
        else {
            return Err(GetError::SliverRange {
                index,
                first,
                count,
                shards: params.shards(),
                segments,
            });
        };
        let bytes: u64 = (first..end)
            .map(|s| u64::try_from(params.sliver_len(s).unwrap_or(0)).unwrap_or(u64::MAX))
            .sum();
        if bytes > self.inner.max_get {
            return Err(GetError::TooLarge {
                len: bytes,
                max: self.inner.max_get,
            });
        }
        let holder = record
            .holders
            .get(usize::from(index))
            .ok_or(GetError::NotFound(*blob_id))?;
        let slivers = self
            .fetch_index(holder, blob_id, index, &params, first, count)
            .await
            .ok_or(GetError::SliverUnavailable { index })?;
        Ok((
            metadata,
            slivers.into_iter().map(|v| v.sliver().clone()).collect(),
        ))
    }

    /// Fetches and verifies sliver `index` of segments `[first, first + count)` from `peer` (or the local store),
    /// in requests that each fit one network message; `None` if anything is missing or invalid.
    pub(crate) async fn fetch_index(
        &self,
        peer: &[u8],
        blob_id: &BlobId,
        index: u16,
        params: &BlobParams,
        first: u64,
        count: u64,
    ) -> Option<Vec<VerifiedSliver>> {
        let mut all = Vec::new();
        for range in read_chunks(params, first, count) {
            let part = self
                .fetch_range(peer, blob_id, index, range.start, range.end - range.start)
                .await?;
            all.extend(part);
        }
        Some(all)
    }

    async fn fetch_range(
        &self,
        peer: &[u8],
        blob_id: &BlobId,
        index: u16,
        first: u64,
        count: u64,
    ) -> Option<Vec<VerifiedSliver>> {
        let peer_id = PeerId::from_bytes(peer).ok()?;
        let slivers: Vec<Sliver> = if peer_id == self.inner.peer_id {
            let node = self.clone();
            let id = *blob_id;
            tokio::task::spawn_blocking(move || {
                node.inner.store.read_slivers(&id, index, first, count)
            })
            .await
            .ok()?
            .ok()?
        } else {
            self.inner
                .metrics
                .read_requests
                .fetch_add(1, Ordering::Relaxed);
            // A holder reached only through a relay is asked through that relay, which forwards the request over
            // its direct connection: a circuit carries too few bytes for a sliver (decision 0018).
            let (to, forward_to) = match self.inner.net.reach(peer_id).await.relay {
                Some(relay) if relay != self.inner.peer_id => {
                    self.inner
                        .metrics
                        .read_requests_forwarded
                        .fetch_add(1, Ordering::Relaxed);
                    (relay, Bytes::copy_from_slice(peer))
                }
                _ => (peer_id, Bytes::new()),
            };
            let request = pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
                    first_segment: first,
                    index: u32::from(index),
                    segment_count: count,
                    forward_to,
                })),
            };
            let response = self.inner.net.request(to, request).await.ok()?;
            let Some(pb::response::Kind::Read(pb::ReadResponse {
                result: Some(pb::read_response::Result::Slivers(set)),
            })) = response.kind
            else {
                return None;
            };
            set.slivers
                .into_iter()
                .map(|m| <(BlobId, Sliver)>::try_from(m).ok().map(|(_, s)| s))
                .collect::<Option<Vec<_>>>()?
        };
        let id = *blob_id;
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            if u64::try_from(slivers.len()).ok() != Some(count) {
                return None;
            }
            let mut verified = Vec::with_capacity(slivers.len());
            for (offset, sliver) in slivers.into_iter().enumerate() {
                if sliver.index != index
                    || Some(sliver.segment) != first.checked_add(u64::try_from(offset).ok()?)
                {
                    return None;
                }
                match VerifiedSliver::new(sliver, &id) {
                    Ok(v) => verified.push(v),
                    Err(error) => {
                        node.inner
                            .metrics
                            .invalid_slivers_received
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%id, index, %error, "invalid sliver from a holder");
                        return None;
                    }
                }
            }
            Some(verified)
        })
        .await
        .ok()?
    }
}

/// A request for a blob's metadata and holder record.
pub(crate) fn metadata_request(blob_id: &BlobId) -> pb::Request {
    pb::Request {
        kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            list_digest: false,
        })),
    }
}

/// A request for a peer's holder list of a blob by its digest alone (`holders::digest`), with its epoch and
/// repairer.
pub(crate) fn list_digest_request(blob_id: &BlobId) -> pb::Request {
    pb::Request {
        kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            list_digest: true,
        })),
    }
}
