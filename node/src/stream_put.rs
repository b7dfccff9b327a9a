//! Streamed puts: a blob too large to hold in memory is spooled to disk as it arrives, then encoded twice — once
//! for its segment roots (the blob ID commits to all of them, so nothing can be sent before the whole blob is
//! seen), once run by run while the protocol core's [`StreamWrite`] delivers it.
//!
//! This module owns the spool files and maps the streamed write's effects to IO: it reads and encodes the runs the
//! state machine asks for on one blocking thread, sends store requests, feeds answers and timers back. The
//! write's decisions (window, retries, quorum) are the protocol crate's. Memory stays at about `window` encoded
//! runs plus one segment, whatever the blob's size; disk holds the spool until the write finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use floe_protocol::encoding::DEFAULT_SEGMENT_SIZE;
use floe_protocol::placement::{PeerKey, Placement};
use floe_protocol::stream_write::{StreamWrite, StreamWriteConfig, StreamWriteEffect, store_runs};
use floe_protocol::wire::pb;
use floe_protocol::{
    BlobEncoder, BlobMetadata, BlobParams, EncodeError, EncodingType, Sliver, SliverProof,
};

use crate::drive::{Driver, Wake};
use crate::service::{
    Node, PutError, PutOptions, PutOutcome, SendError, StoreAnswer, certificate_of,
};
use crate::spool::Spool;
use crate::store::HolderRecord;

/// Why the spool of a streamed write could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Opening the spool file failed.
    #[error("opening the spool: {0}")]
    Open(std::io::Error),
    /// Reading a segment failed.
    #[error("reading the spool at segment {segment}: {cause}")]
    Read {
        /// The segment.
        segment: u64,
        /// The error.
        cause: std::io::Error,
    },
    /// A segment or run past the blob's end.
    #[error("segment or run {0} is outside the blob")]
    Outside(u64),
    /// Runs must be encoded in order.
    #[error("runs asked out of order at segment {0}")]
    OutOfOrder(u64),
    /// The spool's bytes differ from the first pass.
    #[error("the spool changed under the write at segment {0}")]
    Changed(u64),
    /// The encoder made more slivers than a sliver index can number (a bug, not an input).
    #[error("sliver index {0} is out of range")]
    IndexOverflow(usize),
    /// The encoder gave no proof for a sliver of `segment` (a bug, not an input).
    #[error("no segment path for a sliver of segment {0}")]
    NoSegmentPath(u64),
    /// The encoder refused.
    #[error("{0}")]
    Encode(#[from] EncodeError),
}
/// Reads segment `segment` of the spooled blob into `buffer`.
fn read_segment(
    file: &File,
    params: &BlobParams,
    segment: u64,
    buffer: &mut Vec<u8>,
) -> Result<(), SpoolError> {
    let len = params
        .segment_len(segment)
        .ok_or(SpoolError::Outside(segment))?;
    buffer.resize(len, 0);
    file.read_exact_at(buffer, params.segment_offset(segment))
        .map_err(|cause| SpoolError::Read { segment, cause })
}

/// The first pass: every segment's root, so the metadata and the blob ID.
fn spool_metadata(
    path: &Path,
    params: BlobParams,
    threads: usize,
) -> Result<BlobMetadata, SpoolError> {
    let file = File::open(path).map_err(SpoolError::Open)?;
    let mut encoder = BlobEncoder::new(params).with_hash_threads(threads);
    let mut buffer = Vec::new();
    for segment in 0..params.segment_count() {
        read_segment(&file, &params, segment, &mut buffer)?;
        encoder.encode_next(&buffer)?;
    }
    Ok(encoder.finish()?)
}

/// One run's slivers, by sliver index, each in segment order.
type RunSlivers = Arc<Vec<Vec<Sliver>>>;

/// The second pass, on its own thread: encodes the runs asked for, in order, and checks each segment's root
/// against the metadata (a spool that changed between the passes fails the write rather than send slivers
/// that do not match the blob ID).
fn prepare_runs(
    path: PathBuf,
    metadata: BlobMetadata,
    threads: usize,
    asks: std::sync::mpsc::Receiver<usize>,
    ready: impl Fn(usize, Result<RunSlivers, SpoolError>) -> bool,
) {
    let params = *metadata.params();
    let runs = store_runs(&params);
    let header = metadata.header();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            ready(0, Err(SpoolError::Open(error)));
            return;
        }
    };
    let mut encoder = BlobEncoder::new(params).with_hash_threads(threads);
    let mut buffer = Vec::new();
    while let Ok(run) = asks.recv() {
        let result = (|| -> Result<RunSlivers, SpoolError> {
            let outside = || SpoolError::Outside(u64::try_from(run).unwrap_or(u64::MAX));
            let segments = runs.get(run).ok_or_else(outside)?.clone();
            let shards = usize::from(params.shards());
            let mut by_index: Vec<Vec<Sliver>> = vec![Vec::new(); shards];
            for segment in segments {
                if encoder.next_segment() != segment {
                    return Err(SpoolError::OutOfOrder(segment));
                }
                read_segment(&file, &params, segment, &mut buffer)?;
                let tree = encoder.encode_next(&buffer)?.tree;
                if metadata.segment_root(segment) != Some(&tree.root()) {
                    return Err(SpoolError::Changed(segment));
                }
                let blob_path = metadata
                    .blob_path(segment)
                    .ok_or(SpoolError::Outside(segment))?;
                // Moved, not copied: the encoder allocates fresh buffers for the next segment.
                let encoded = encoder.take_slivers();
                for (index, (data, slivers)) in encoded.into_iter().zip(&mut by_index).enumerate() {
                    let index =
                        u16::try_from(index).map_err(|_| SpoolError::IndexOverflow(index))?;
                    slivers.push(Sliver {
                        header,
                        segment,
                        index,
                        data: Bytes::from(data),
                        proof: SliverProof {
                            segment_path: tree
                                .path(usize::from(index))
                                .ok_or(SpoolError::NoSegmentPath(segment))?,
                            blob_path: blob_path.clone(),
                        },
                    });
                }
            }
            Ok(Arc::new(by_index))
        })();
        let failed = result.is_err();
        if !ready(run, result) || failed {
            return;
        }
    }
}

/// What a streamed write's encoder thread and IO tasks report to its driver.
enum StreamReport {
    /// Run `run` encoded, or why it could not be.
    Prepared {
        run: usize,
        slivers: Result<RunSlivers, SpoolError>,
    },
    /// The answer to a store request for one run of one index.
    Sent {
        peer: PeerKey,
        index: u16,
        run: usize,
        attempt: u32,
        result: Result<StoreAnswer, SendError>,
    },
}

impl Node {
    /// Stores a blob spooled to disk: the streamed write. Returns once receipts certify it; delivery of the
    /// rest goes on in the background and the spool is removed when it ends.
    pub async fn put_spooled(
        &self,
        spool: Spool,
        options: &PutOptions,
    ) -> Result<PutOutcome, PutError> {
        let started = Instant::now();
        self.inner
            .metrics
            .streamed_puts
            .fetch_add(1, Ordering::Relaxed);
        let result = self.put_spooled_inner(spool, options).await;
        let m = &self.inner.metrics;
        crate::service::record(&result, started, &m.puts, &m.latencies.put, &m.put_failures);
        result
    }

    async fn put_spooled_inner(
        &self,
        mut spool: Spool,
        options: &PutOptions,
    ) -> Result<PutOutcome, PutError> {
        spool
            .finish()
            .await
            .map_err(|e| PutError::Internal(format!("spooling the body: {e}")))?;
        let view = self.inner.net.view().await;
        let shards = self.shards_for(&view);
        let length = spool.len();
        let params = BlobParams::new(EncodingType::RsSimd, shards, DEFAULT_SEGMENT_SIZE, length)?;
        let path = spool.path().to_owned();
        let threads = crate::service::hash_threads();
        let metadata = tokio::task::spawn_blocking(move || spool_metadata(&path, params, threads))
            .await
            .map_err(|e| PutError::Internal(e.to_string()))?
            .map_err(|e| PutError::Encode(e.to_string()))?;
        let blob_id = metadata.blob_id();
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
        let extension = self.certificate(&blob_id).is_some() && !options.force;
        let (claims, deletion_token) = Node::write_claims(&blob_id, options, end_epoch);
        let (placement, record, writer_record) = self
            .place(&metadata, &options.content_type, end_epoch, claims)
            .await?;

        let (certified_tx, certified_rx) = oneshot::channel();
        let node = self.clone();
        tokio::spawn(async move {
            node.drive_stream_write(spool, metadata, placement, record, certified_tx)
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
        self.remember_certificate(blob_id, certificate.clone())?;
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

    async fn drive_stream_write(
        &self,
        spool: Spool,
        metadata: BlobMetadata,
        placement: Placement,
        record: HolderRecord,
        certified_tx: oneshot::Sender<Result<pb::Certificate, PutError>>,
    ) {
        let blob_id = metadata.blob_id();
        let runs = store_runs(metadata.params());
        let mut certified_tx = Some(certified_tx);
        let fail = |tx: &mut Option<oneshot::Sender<_>>, error: PutError| {
            if let Some(sender) = tx.take() {
                let _ = sender.send(Err(error));
            }
        };
        let (ask_tx, ask_rx) = std::sync::mpsc::channel::<usize>();
        let mut driver = Driver::<StreamReport>::new(self.inner.epoch);
        {
            let (path, metadata) = (spool.path().to_owned(), metadata.clone());
            let threads = crate::service::hash_threads();
            let reporter = driver.reporter();
            tokio::task::spawn_blocking(move || {
                prepare_runs(path, metadata, threads, ask_rx, |run, slivers| {
                    reporter
                        .send(StreamReport::Prepared { run, slivers })
                        .is_ok()
                })
            });
        }
        let config = StreamWriteConfig::like(&self.inner.write_config);
        let (mut write, mut effects) = StreamWrite::start(blob_id, placement, runs.len(), config);
        let mut prepared: BTreeMap<usize, RunSlivers> = BTreeMap::new();
        let mut receipts: BTreeMap<u16, pb::StorageReceipt> = BTreeMap::new();
        // Indexes a holder refused for lack of room: a failed write says so (507).
        let mut full: BTreeSet<u16> = BTreeSet::new();
        let metadata_pb: pb::BlobMetadata = (&metadata).into();
        let holders_pb: Vec<Bytes> = record
            .holders
            .iter()
            .map(|h| Bytes::from(h.clone()))
            .collect();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    StreamWriteEffect::Prepare { run } => {
                        if ask_tx.send(run).is_err() {
                            fail(
                                &mut certified_tx,
                                PutError::Internal("the encoder stopped".into()),
                            );
                            return;
                        }
                    }
                    StreamWriteEffect::Release { below } => prepared.retain(|&run, _| run >= below),
                    StreamWriteEffect::Send {
                        peer,
                        index,
                        run,
                        attempt,
                    } => {
                        let slivers = prepared
                            .get(&run)
                            .and_then(|run| run.get(usize::from(index)))
                            .map(|slivers| slivers.iter().map(pb::Sliver::from).collect());
                        let Some(slivers) = slivers else {
                            driver.report(StreamReport::Sent {
                                peer,
                                index,
                                run,
                                attempt,
                                result: Err(SendError::Unprepared),
                            });
                            continue;
                        };
                        let request = pb::StoreRequest {
                            slivers,
                            metadata: Some(metadata_pb.clone()),
                            holders: holders_pb.clone(),
                            content_type: record.content_type.clone(),
                            ..Default::default()
                        };
                        let node = self.clone();
                        driver.spawn(async move {
                            let result = node.send_store(&peer, blob_id, index, request).await;
                            StreamReport::Sent {
                                peer,
                                index,
                                run,
                                attempt,
                                result,
                            }
                        });
                    }
                    StreamWriteEffect::SetTimer(at) => driver.set_timer(at),
                    StreamWriteEffect::Certified => {
                        if let Some(sender) = certified_tx.take() {
                            let _ = sender.send(Ok(certificate_of(&blob_id, &receipts)));
                        }
                    }
                    StreamWriteEffect::Failed {
                        stored,
                        needed,
                        failed,
                    } => {
                        tracing::warn!(%blob_id, stored, needed, failed, "streamed write failed");
                        fail(
                            &mut certified_tx,
                            PutError::NotCertified {
                                stored,
                                needed,
                                failed,
                                full: full.len(),
                            },
                        );
                        return;
                    }
                    StreamWriteEffect::Finished => {
                        tracing::info!(%blob_id, receipts = receipts.len(), runs = runs.len(), "streamed write finished");
                        return;
                    }
                }
            }
            effects = match driver.next().await {
                Wake::Report(StreamReport::Prepared { run, slivers }) => match slivers {
                    Ok(slivers) => {
                        prepared.insert(run, slivers);
                        write.on_prepared(run, self.now())
                    }
                    Err(why) => {
                        tracing::warn!(%blob_id, run, %why, "encoding a run of a streamed write failed");
                        fail(&mut certified_tx, PutError::Encode(why.to_string()));
                        return;
                    }
                },
                Wake::Report(StreamReport::Sent {
                    peer,
                    index,
                    run,
                    attempt,
                    result,
                }) => {
                    let now = self.now();
                    let run_end = runs.get(run).map_or(u64::MAX, |r| r.end);
                    match result {
                        Ok(StoreAnswer::Receipt(receipt)) => {
                            let receipt = self.heed_receipt(&blob_id, index, &peer, receipt);
                            let signature = receipt.signature.to_vec();
                            receipts.insert(index, receipt);
                            write.on_receipt(&peer, index, signature)
                        }
                        Ok(StoreAnswer::Progress { segments_held, .. })
                            if segments_held >= run_end =>
                        {
                            write.on_progress(&peer, index, run, attempt, now)
                        }
                        Ok(StoreAnswer::Progress { segments_held, .. }) => {
                            tracing::debug!(%blob_id, index, run, segments_held, "holder lacks earlier segments");
                            write.on_failure(&peer, index, run, attempt, now)
                        }
                        Err(why) => {
                            tracing::debug!(%blob_id, index, run, attempt, %why, "store request failed");
                            if matches!(why, SendError::Full { .. }) {
                                full.insert(index);
                            }
                            write.on_failure(&peer, index, run, attempt, now)
                        }
                    }
                }
                Wake::Timer(now) => write.on_timer(now),
            };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use floe_protocol::EncodedBlob;

    #[test]
    fn both_passes_give_the_in_memory_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let path = dir.path().join("blob.part");
        std::fs::write(&path, &data).unwrap();
        let params = BlobParams::new(EncodingType::RsSimd, 7, 4096, 200_000).unwrap();
        let expected = EncodedBlob::encode(params, &data).unwrap();
        assert_eq!(
            spool_metadata(&path, params, 1).unwrap().blob_id(),
            expected.metadata.blob_id()
        );
        let (ask_tx, ask_rx) = std::sync::mpsc::channel();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let runs = store_runs(&params);
        for run in 0..runs.len() {
            ask_tx.send(run).unwrap();
        }
        drop(ask_tx);
        prepare_runs(
            path,
            expected.metadata.clone(),
            2,
            ask_rx,
            |run, slivers| ready_tx.send((run, slivers)).is_ok(),
        );
        let mut seen = 0;
        while let Ok((run, slivers)) = ready_rx.try_recv() {
            let slivers = slivers.unwrap();
            for (index, of_index) in slivers.iter().enumerate() {
                let index = u16::try_from(index).unwrap();
                let want: Vec<Sliver> = runs[run]
                    .clone()
                    .map(|s| expected.sliver(s, index).unwrap())
                    .collect();
                assert_eq!(of_index, &want);
            }
            seen += 1;
        }
        assert_eq!(seen, runs.len());
    }

    #[test]
    fn a_spool_that_changed_between_the_passes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 50_000];
        let path = dir.path().join("blob.part");
        std::fs::write(&path, &data).unwrap();
        let params = BlobParams::new(EncodingType::RsSimd, 4, 4096, 50_000).unwrap();
        let metadata = spool_metadata(&path, params, 1).unwrap();
        let mut changed = data.clone();
        changed[10] = 8;
        std::fs::write(&path, &changed).unwrap();
        let (ask_tx, ask_rx) = std::sync::mpsc::channel();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        ask_tx.send(0).unwrap();
        drop(ask_tx);
        prepare_runs(path, metadata, 1, ask_rx, |run, slivers| {
            ready_tx.send((run, slivers)).is_ok()
        });
        let (_, result) = ready_rx.try_recv().unwrap();
        assert!(matches!(result, Err(SpoolError::Changed(_))));
    }
}
