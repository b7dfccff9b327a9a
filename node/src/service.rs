//! The node service: answers peers' requests from the store, and carries out puts and gets by driving the
//! protocol core's [`Write`] and [`Read`] state machines over the network.
//!
//! This module maps effects to IO (requests, timers, disk) and feeds results back with the current time; it
//! makes no protocol decision of its own beyond choosing the neighbourhood from the peer view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::{PeerId, kad};
use tokio::sync::{mpsc, oneshot};

use floe_protocol::content_type;
use floe_protocol::decoder::{Consistency, DecodeError, SegmentDecoder, VerifiedSliver};
use floe_protocol::encoder::EncodedBlob;
use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, default_shards};
use floe_protocol::holders::{self, Acceptance, HolderListError, Via};
use floe_protocol::placement::{PeerKey, Placement};
use floe_protocol::read::{Read, ReadConfig, ReadEffect};
use floe_protocol::receipt;
use floe_protocol::stream_write::{MAX_RUN_BYTES, cut_segments, store_runs};
use floe_protocol::wire::pb;
use floe_protocol::write::{Millis, Timer, Write, WriteConfig, WriteEffect};
use floe_protocol::{BlobId, BlobMetadata, BlobParams, EncodingType, Sliver};

use crate::cache::BlobBytes;
use crate::net::{Inbound, NetClient};
use crate::store::{HolderRecord, Store};

/// Inbound requests handled at once; beyond that the network answers "busy".
const MAX_CONCURRENT_INBOUND: usize = 64;

/// Checks a holder list's shape (`floe_protocol::holders::check`) with libp2p's peer IDs.
pub(crate) fn check_holders(holders: &[PeerKey], shards: u16) -> Result<(), HolderListError> {
    holders::check(holders, shards, |bytes| PeerId::from_bytes(bytes).is_ok())
}
/// Segments fetched per read round: bounds a read's memory to about this many segments of slivers.
const SEGMENTS_PER_ROUND: u64 = 1;
/// Segments whose re-encode check is remembered ([`crate::cache::CheckedSegments`]): about 3 MiB, and 512 GiB of
/// blobs at the default segment size.
const CHECKED_SEGMENTS: usize = 32 << 10;
/// Longest receipt note a writer heeds (a holder's own note is under 200 bytes).
pub(crate) const MAX_NOTE_LEN: usize = 256;
/// Streamed reads served at once; each holds about two rounds of segments.
const MAX_STREAMS: usize = 8;
/// How long a streamed read waits for a client to take the next chunk before giving up on it.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// libp2p identity keys as the receipt rule's signature scheme (`floe_protocol::receipt`).
pub(crate) struct PeerSignatures;

impl receipt::Signatures for PeerSignatures {
    type Peer = PeerId;

    fn signer(&self, public_key: &[u8]) -> Option<PeerId> {
        PublicKey::try_decode_protobuf(public_key)
            .ok()
            .map(|key| key.to_peer_id())
    }

    fn verifies(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        PublicKey::try_decode_protobuf(public_key).is_ok_and(|key| key.verify(message, signature))
    }
}

/// Counters exposed on /metrics and in status.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Blobs written (certified).
    pub puts: AtomicU64,
    /// Writes that failed.
    pub put_failures: AtomicU64,
    /// Blobs read.
    pub gets: AtomicU64,
    /// Reads that failed.
    pub get_failures: AtomicU64,
    /// Store requests answered with a receipt.
    pub slivers_received: AtomicU64,
    /// Sliver sets served to readers.
    pub slivers_served: AtomicU64,
    /// Invalid slivers received from peers (bad proofs, wrong blob).
    pub invalid_slivers_received: AtomicU64,
    /// Segments rebuilt by decoding (not from source slivers).
    pub segments_decoded: AtomicU64,
    /// Partial sliver indexes deleted after `partial_ttl` without growing.
    pub partial_indexes_reclaimed: AtomicU64,
    /// Segments read without the re-encode check because this node had checked them before.
    pub segment_checks_skipped: AtomicU64,
    /// Outbound requests sent by puts.
    pub write_requests: AtomicU64,
    /// Puts spooled to disk and written run by run (bodies over 16 MiB).
    pub streamed_puts: AtomicU64,
    /// Outbound requests sent by gets.
    pub read_requests: AtomicU64,
    /// Latency histograms (put, get, gateway requests).
    pub latencies: crate::metrics::Latencies,
    /// Repairs this node led (it announced a new holder list and rebuilt lost slivers).
    pub repairs_started: AtomicU64,
    /// Repairs that delivered every rebuilt sliver.
    pub repairs_done: AtomicU64,
    /// Repairs that could not fetch k slivers or deliver every rebuilt one.
    pub repairs_failed: AtomicU64,
    /// Slivers rebuilt by decoding and delivered to their new holders.
    pub slivers_rebuilt: AtomicU64,
    /// Sliver bytes fetched from other holders for repairs.
    pub repair_bytes_fetched: AtomicU64,
    /// Sliver bytes sent to new holders by repairs.
    pub repair_bytes_sent: AtomicU64,
    /// Segments decoded for repairs.
    pub repair_segments_decoded: AtomicU64,
    /// Slivers handed off to their next holder (leaving, or no longer ours after a new holder list).
    pub slivers_handed_off: AtomicU64,
    /// Sliver bytes handed off.
    pub handoff_bytes_sent: AtomicU64,
    /// Repaired or handed-off slivers received that this node already held (duplicate work).
    pub duplicate_slivers_received: AtomicU64,
    /// Newer holder lists adopted from announcements or store requests.
    pub holder_lists_adopted: AtomicU64,
    /// Slivers stored here although, by this node's view, it is outside the blob's neighbourhood.
    pub stored_outside_own_view: AtomicU64,
    /// Receipts whose holder said it is outside the blob's neighbourhood by its own view.
    pub placement_disagreements: AtomicU64,
    /// Gossiped announcements refused (malformed, unsigned by their repairer, from a non-holder, bad list).
    pub announcements_refused: AtomicU64,
    /// Challenges this node sent that the holder answered with a valid sliver.
    pub challenges_passed: AtomicU64,
    /// Challenges this node sent that the holder failed (no sliver, or an invalid one).
    pub challenges_failed: AtomicU64,
    /// Challenges this node answered.
    pub challenges_answered: AtomicU64,
}

/// How a node keeps its blobs whole: departure detection, repair, hand-off and challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    /// How long a holder may be out of reach before its slivers are rebuilt elsewhere.
    pub grace: Duration,
    /// How often held blobs are checked.
    pub interval: Duration,
    /// How often the holders of each blob this node leads are challenged.
    pub challenge_interval: Duration,
    /// Consecutive failed challenges after which a peer is treated as gone.
    pub challenge_failures: u32,
    /// How long a blob's holders go unchallenged after this node's sliver of it became whole or its holder list
    /// changed: time for the writer's background delivery, a repair or a hand-off to reach every holder.
    pub challenge_settle: Duration,
    /// Repairs run at once: a mass departure becomes a queue, not a storm.
    pub max_concurrent: usize,
    /// Time a leaving node spends handing off.
    pub handoff_timeout: Duration,
    /// Lazy-repair threshold (`protocol::repair::repair_due`): 1 repairs every loss at once.
    pub min_lost: u16,
    /// How long part of a sliver index (the runs of a write, repair or hand-off that stopped midway) may sit
    /// here without growing before it is deleted.
    pub partial_ttl: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(300),
            interval: Duration::from_secs(10),
            challenge_interval: Duration::from_secs(60),
            challenge_failures: 3,
            challenge_settle: Duration::from_secs(60),
            max_concurrent: 4,
            handoff_timeout: Duration::from_secs(60),
            min_lost: 1,
            partial_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why a put failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The blob is too large for the parameters.
    #[error("{0}")]
    Params(#[from] floe_protocol::ParamsError),
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Not enough holders stored their slivers.
    #[error(
        "only {stored} of the {needed} receipts needed came back ({failed} holders failed); the swarm is too small or too many peers are failing"
    )]
    NotCertified {
        /// Receipts.
        stored: usize,
        /// Needed.
        needed: usize,
        /// Failed holders.
        failed: usize,
    },
    /// Too many large puts at once; try again later.
    #[error("this node is writing {0} large blobs already; try again shortly")]
    Busy(usize),
    /// Internal failure.
    #[error("{0}")]
    Internal(String),
}

/// Why a get failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// No peer knows the blob.
    #[error("no peer knows blob {0}")]
    NotFound(BlobId),
    /// Too few valid slivers reachable.
    #[error("only {have} of the {need} valid slivers needed are reachable")]
    NotEnoughSlivers {
        /// Valid slivers.
        have: usize,
        /// k.
        need: usize,
    },
    /// The blob is inconsistently encoded.
    #[error("blob {0} is inconsistent: its writer's slivers are not one codeword")]
    Inconsistent(BlobId),
    /// The range lies outside the blob.
    #[error("range {start}-{end} is outside the blob of {len} bytes")]
    Range {
        /// First byte.
        start: u64,
        /// End (exclusive).
        end: u64,
        /// Blob length.
        len: u64,
    },
    /// The range is larger than this node reads into memory at once.
    #[error(
        "{len} bytes asked for; this node serves at most {max} bytes per request until streaming reads land: use Range requests"
    )]
    TooLarge {
        /// Bytes asked for.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Too many streamed reads at once; try again later.
    #[error("this node is serving {0} streamed reads already; try again shortly")]
    Busy(usize),
    /// Internal failure.
    #[error("{0}")]
    Internal(String),
}

/// The outcome of a put.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    /// The blob ID.
    pub blob_id: BlobId,
    /// Whether this node already had the blob certified.
    pub already_certified: bool,
    /// The certificate's receipts (sliver index → receipt).
    pub certificate: pb::Certificate,
    /// Blob length.
    pub size: u64,
    /// n.
    pub shards: u16,
}

/// How a blob is to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The blob's media type, checked with `floe_protocol::content_type::check` (empty: none); it travels beside
    /// the holder list.
    pub content_type: String,
    /// Store even if this node already holds a certificate for the blob (Walrus' `force`).
    pub force: bool,
}

/// A holder's answer to a store request.
#[derive(Debug, Clone)]
pub(crate) enum StoreAnswer {
    /// The index is complete here: the signed receipt.
    Receipt(pb::StorageReceipt),
    /// The run was kept; the index is not complete yet.
    Progress {
        /// The blob.
        blob_id: BlobId,
        /// The sliver index.
        index: u16,
        /// Segments held from segment 0 without a gap.
        segments_held: u64,
    },
}

/// Where the slivers of an index being delivered come from.
pub(crate) enum IndexSource {
    /// A blob encoded in memory (a write).
    Encoded(Arc<EncodedBlob>),
    /// This node's store, read run by run (a hand-off).
    Store,
}

/// A cheap, cloneable handle to the node service.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    keypair: Keypair,
    pub(crate) peer_id: PeerId,
    pub(crate) net: NetClient,
    pub(crate) metrics: Metrics,
    pub(crate) epoch: Instant,
    pub(crate) write_config: WriteConfig,
    pub(crate) read_config: ReadConfig,
    certificates: std::sync::Mutex<BTreeMap<BlobId, pb::Certificate>>,
    capacity: Option<u64>,
    max_get: u64,
    cache: crate::cache::BlobCache,
    checked: crate::cache::CheckedSegments,
    stream_permits: Arc<tokio::sync::Semaphore>,
    put_permits: Arc<tokio::sync::Semaphore>,
    inbound_permits: Arc<tokio::sync::Semaphore>,
    pub(crate) repair: RepairConfig,
    pub(crate) repair_state: std::sync::Mutex<crate::steward_state::RepairState>,
    spool_dir: std::path::PathBuf,
}

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

/// A peer key as text, for logs.
pub(crate) fn peer_label(peer: &[u8]) -> String {
    PeerId::from_bytes(peer).map_or_else(|_| "(bad peer id)".into(), |p| p.to_string())
}

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

fn error_response(text: impl Into<String>) -> pb::Response {
    pb::Response {
        kind: Some(pb::response::Kind::Error(text.into())),
    }
}

impl Node {
    /// A node over `store`, signing with `keypair`, talking through `net`, storing at most `capacity` bytes and
    /// reading at most `max_get` bytes into memory per get; streamed puts spool in `spool_dir` (emptied here of
    /// what an earlier run left).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        spool_dir: std::path::PathBuf,
        keypair: Keypair,
        net: NetClient,
        capacity: Option<u64>,
        max_get: u64,
        cache_bytes: u64,
        repair: RepairConfig,
    ) -> Self {
        let peer_id = keypair.public().to_peer_id();
        crate::spool::clear_spool_dir(&spool_dir);
        Self {
            inner: Arc::new(Inner {
                store,
                keypair,
                peer_id,
                net,
                metrics: Metrics::default(),
                epoch: Instant::now(),
                // Retry no sooner than the network gives up on a request (net::NetConfig uses 30 s).
                write_config: WriteConfig {
                    request_timeout: 30_000,
                    ..WriteConfig::default()
                },
                read_config: ReadConfig::default(),
                certificates: std::sync::Mutex::new(BTreeMap::new()),
                capacity,
                max_get,
                cache: crate::cache::BlobCache::new(cache_bytes),
                checked: crate::cache::CheckedSegments::new(CHECKED_SEGMENTS),
                stream_permits: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
                put_permits: Arc::new(tokio::sync::Semaphore::new(crate::spool::MAX_STREAMED_PUTS)),
                inbound_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INBOUND)),
                repair,
                repair_state: std::sync::Mutex::new(crate::steward_state::RepairState::default()),
                spool_dir,
            }),
        }
    }

    /// Our peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The hot-blob cache.
    pub fn cache(&self) -> &crate::cache::BlobCache {
        &self.inner.cache
    }

    /// The storage capacity (`--capacity`), if limited.
    pub fn capacity(&self) -> Option<u64> {
        self.inner.capacity
    }

    /// How long this node has been running.
    pub fn uptime(&self) -> Duration {
        self.inner.epoch.elapsed()
    }

    /// The network handle.
    pub fn net(&self) -> &NetClient {
        &self.inner.net
    }

    /// The repair settings.
    pub fn repair_config(&self) -> RepairConfig {
        self.inner.repair
    }

    pub(crate) fn now(&self) -> Millis {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

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
        let started = Instant::now();
        let outside = match &request.kind {
            Some(pb::request::Kind::Store(store)) => self.outside_own_view(store).await,
            _ => None,
        };
        let viewed_at = started.elapsed();
        let node = self.clone();
        let result = tokio::task::spawn_blocking(move || match request.kind {
            Some(pb::request::Kind::Store(store)) => {
                let blocking_at = started.elapsed();
                let mut response = node.handle_store(store, &peer);
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
        let shards = usize::from(metadata.params().shards());
        let neighbourhood = self.neighbourhood(&blob_id).await;
        outside_note(&self.inner.peer_id, &neighbourhood, shards, &blob_id)
    }

    fn handle_store(&self, request: pb::StoreRequest, sender: &PeerId) -> pb::Response {
        match self.store_locally(request, sender) {
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
            Err(why) => {
                self.inner
                    .metrics
                    .invalid_slivers_received
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(why, "refused a store request");
                error_response(why)
            }
        }
    }

    /// Verifies a store request completely (metadata against its ID, every sliver against the ID, one index,
    /// consecutive segments within the blob) and stores it durably; returns the signed receipt once the index is
    /// complete, progress before. `sender` is the authenticated peer the request came from (ourselves for local
    /// stores).
    pub(crate) fn store_locally(
        &self,
        request: pb::StoreRequest,
        sender: &PeerId,
    ) -> Result<StoreAnswer, String> {
        let metadata = request
            .metadata
            .as_ref()
            .ok_or("store request without metadata")
            .and_then(|m| BlobMetadata::try_from(m).map_err(|_| "bad metadata"))
            .map_err(str::to_owned)?;
        let blob_id = metadata.blob_id();
        let segments = metadata.params().segment_count();
        let count = u64::try_from(request.slivers.len()).unwrap_or(u64::MAX);
        let first = request.slivers.first().map_or(0, |s| s.segment);
        if count == 0 || first.saturating_add(count) > segments {
            return Err(format!(
                "a store request carries consecutive segments of one sliver index, within the blob's {segments}; \
                 got {count} from segment {first}"
            ));
        }
        let mut slivers = Vec::with_capacity(request.slivers.len());
        let mut index = None;
        for (segment, message) in (first..).zip(request.slivers) {
            let (id, sliver) = <(BlobId, Sliver)>::try_from(message).map_err(|e| e.to_string())?;
            if id != blob_id || sliver.segment != segment {
                return Err("slivers out of order or of another blob".into());
            }
            if *index.get_or_insert(sliver.index) != sliver.index {
                return Err("store request mixes sliver indexes".into());
            }
            sliver.verify(&blob_id).map_err(|e| e.to_string())?;
            slivers.push(sliver);
        }
        let index = index.ok_or("empty store request")?;
        // Runs arrive in order: one that starts past what is held would leave a gap no receipt could cover, and
        // the part of a run already held is not stored twice (so overlapping runs cannot pile up).
        let held_before = self.inner.store.segments_held(&blob_id, index);
        if first > held_before {
            return Err(format!(
                "a run from segment {first} of sliver {index}, but only segments below {held_before} are held"
            ));
        }
        let skip = usize::try_from(held_before - first).unwrap_or(usize::MAX);
        let slivers: Vec<Sliver> = slivers.into_iter().skip(skip).collect();
        if let Some(capacity) = self.inner.capacity {
            let incoming: u64 = slivers
                .iter()
                .map(|s| u64::try_from(s.data.len()).unwrap_or(u64::MAX))
                .sum();
            let held = self.inner.store.counters().bytes.load(Ordering::Relaxed);
            if held.saturating_add(incoming) > capacity && !slivers.is_empty() {
                return Err(format!("node is full: {held} of {capacity} bytes used"));
            }
        }
        let record = HolderRecord {
            holders: request.holders.iter().map(|h| h.to_vec()).collect(),
            epoch: request.holders_epoch,
            repairer: request.holders_repairer.to_vec(),
            content_type: content_type::check(&request.content_type)
                .map_err(|e| e.to_string())?
                .to_owned(),
        };
        check_holders(&record.holders, metadata.params().shards()).map_err(|e| e.to_string())?;
        let me = self.inner.peer_id.to_bytes();
        if record.holders.get(usize::from(index)) != Some(&me) {
            // Stored anyway: the sender's view decided; if it is not ours, the hand-off duty of the repair loop
            // passes the sliver on to the listed holder.
            tracing::info!(%blob_id, index, "stored a sliver the sender's holder list gives to another peer");
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
        )
        .map_err(|e| e.to_string())?;
        let record = match (acceptance, current) {
            (Acceptance::Held, Some(current)) => current,
            (Acceptance::Provisional, _) => HolderRecord {
                epoch: 0,
                repairer: Vec::new(),
                ..record
            },
            (_, Some(current)) => record.keeping_label_of(&current),
            (_, None) => record,
        };
        let store = &self.inner.store;
        let adopted = if slivers.is_empty() {
            store.put_record(&metadata, &record)
        } else {
            store.put_record_and_slivers(&metadata, &record, index, &slivers)
        }
        .map_err(|e| e.to_string())?;
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
        self.sign_receipt(&blob_id, index).map(StoreAnswer::Receipt)
    }

    fn sign_receipt(&self, blob_id: &BlobId, index: u16) -> Result<pb::StorageReceipt, String> {
        let signature = self
            .inner
            .keypair
            .sign(&receipt::signing_bytes(blob_id, index))
            .map_err(|e| e.to_string())?;
        Ok(pb::StorageReceipt {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            index: u32::from(index),
            holder_public_key: self.inner.keypair.public().encode_protobuf().into(),
            signature: signature.into(),
            note: String::new(),
        })
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
        if held > 0
            && challenge.segment >= held
            && held < segment_count
            && self.partial_still_growing(&blob_id, index, held)
        {
            return error_response(crate::net::receiving_answer(held, segment_count));
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
                Some((metadata, record)) => pb::MetadataResponse {
                    metadata: Some((&metadata).into()),
                    holders: record.holders.into_iter().map(Bytes::from).collect(),
                    holders_epoch: record.epoch,
                    holders_repairer: record.repairer.into(),
                    content_type: record.content_type,
                },
                None => pb::MetadataResponse::default(),
            })),
        }
    }

    /// Peers in our view, ourselves included, ordered by Kademlia distance to `blob_id`.
    pub(crate) async fn neighbourhood(&self, blob_id: &BlobId) -> Vec<PeerId> {
        let view = self.inner.net.view().await;
        let mut peers = view.peers;
        peers.push(self.inner.peer_id);
        peers.sort();
        peers.dedup();
        let target = kad::KBucketKey::new(blob_id.as_bytes().to_vec());
        peers.sort_by_key(|p| kad::KBucketKey::from(*p).distance(&target));
        peers
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
        let shards = default_shards(view.peers.len() + 1);
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let params = BlobParams::new(EncodingType::RsSimd, shards, DEFAULT_SEGMENT_SIZE, length)?;
        let whole = data.clone();
        let started = Instant::now();
        let encoded = tokio::task::spawn_blocking(move || EncodedBlob::encode(params, &data))
            .await
            .map_err(|e| PutError::Internal(e.to_string()))?
            .map_err(|e| PutError::Encode(e.to_string()))?;
        let blob_id = encoded.metadata.blob_id();
        if !options.force
            && let Some(certificate) = self.certificate(&blob_id)
        {
            return Ok(PutOutcome {
                blob_id,
                already_certified: true,
                certificate,
                size: length,
                shards,
            });
        }
        let encoded_at = started.elapsed();
        let (placement, record, recording) = self.place(&encoded.metadata, content_type).await?;
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
        recording.done(&blob_id).await;
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
        });
        Ok(PutOutcome {
            blob_id,
            already_certified: false,
            certificate,
            size: length,
            shards,
        })
    }

    /// A new blob's placement over its neighbourhood, and the recording of the writer's holder record (list and
    /// content type) here, which runs while the slivers go out: await it before answering the put.
    pub(crate) async fn place(
        &self,
        metadata: &BlobMetadata,
        content_type: &str,
    ) -> Result<(Placement, HolderRecord, Recording), PutError> {
        let blob_id = metadata.blob_id();
        let shards = metadata.params().shards();
        let neighbourhood: Vec<PeerKey> = self
            .neighbourhood(&blob_id)
            .await
            .into_iter()
            .take(usize::from(shards))
            .map(|p| p.to_bytes())
            .collect();
        let placement = Placement::new(&blob_id, shards, &neighbourhood)
            .ok_or_else(|| PutError::Internal("no peers".into()))?;
        let record = HolderRecord::initial(placement.holder_list()).with_content_type(content_type);
        let node = self.clone();
        let (metadata, listed) = (metadata.clone(), record.clone());
        let recording = Recording(tokio::task::spawn_blocking(move || {
            node.inner.store.put_record(&metadata, &listed).map(|_| ())
        }));
        Ok((placement, record, recording))
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
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(PeerKey, u16, u32, Result<pb::StorageReceipt, String>)>();
        let (mut write, mut effects) =
            Write::start(blob_id, placement, self.inner.write_config, self.now());
        let mut receipts: BTreeMap<u16, pb::StorageReceipt> = BTreeMap::new();
        let mut timer = Timer::default();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    WriteEffect::Send {
                        peer,
                        index,
                        attempt,
                    } => {
                        let node = self.clone();
                        let tx = tx.clone();
                        let source = IndexSource::Encoded(Arc::clone(&encoded));
                        let record = record.clone();
                        let metadata = encoded.metadata.clone();
                        tokio::spawn(async move {
                            let result = node
                                .send_index(&peer, index, &metadata, &record, &source)
                                .await;
                            let _ = tx.send((peer, index, attempt, result));
                        });
                    }
                    WriteEffect::SetTimer(at) => {
                        timer.request(at);
                    }
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
            tokio::select! {
                Some((peer, index, attempt, result)) = rx.recv() => {
                    let now = self.now();
                    effects = match result {
                        Ok(receipt) => {
                            let receipt = self.heed_receipt(&blob_id, index, &peer, receipt);
                            let signature = receipt.signature.to_vec();
                            receipts.insert(index, receipt);
                            write.on_receipt(&peer, index, signature)
                        }
                        Err(why) => {
                            tracing::debug!(%blob_id, index, attempt, why, "store request failed");
                            write.on_failure(&peer, index, attempt, now)
                        }
                    };
                }
                _ = timer_fires(self.inner.epoch, timer.deadline()) => {
                    timer.fire();
                    effects = write.on_timer(self.now());
                }
            }
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
    ) -> Result<pb::StorageReceipt, String> {
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
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
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
                    return Err(format!(
                        "the holder keeps {segments_held} of the index's {segments} segments after a run up to {end}"
                    ));
                }
            }
        }
        Err("the holder never sent its receipt".into())
    }

    /// Sends one store request (one run of one index) and checks the answer.
    pub(crate) async fn send_store(
        &self,
        peer: &[u8],
        blob_id: BlobId,
        index: u16,
        request: pb::StoreRequest,
    ) -> Result<StoreAnswer, String> {
        let peer_id = PeerId::from_bytes(peer).map_err(|e| e.to_string())?;
        if peer_id == self.inner.peer_id {
            let node = self.clone();
            let me = self.inner.peer_id;
            return tokio::task::spawn_blocking(move || node.store_locally(request, &me))
                .await
                .map_err(|e| e.to_string())?;
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
                receipt::check(&PeerSignatures, &receipt, &blob_id, index, &peer_id)
                    .map_err(|e| e.to_string())?;
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
            Some(pb::response::Kind::Error(why)) => Err(why),
            _ => Err("unexpected response".into()),
        }
    }

    /// Asks `peer` for its record of a blob; `None` if it cannot answer with one.
    pub(crate) async fn ask_metadata(
        &self,
        peer: PeerId,
        blob_id: &BlobId,
    ) -> Option<pb::MetadataResponse> {
        let request = pb::Request {
            kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
                blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            })),
        };
        match self.inner.net.request(peer, request).await {
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

    /// Like [`Self::find_metadata`], skipping records whose holder list is in `tried`: a reader that could not
    /// read with one list (a stale or hostile one) asks for another.
    async fn find_metadata_excluding(
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
        for peer in self.neighbourhood(blob_id).await.into_iter().take(32) {
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
                let found = HolderRecord {
                    holders,
                    epoch: record.holders_epoch,
                    repairer: record.holders_repairer.to_vec(),
                    content_type: content_type::or_none(&record.content_type).to_owned(),
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
        let result = match self.inner.cache.get(blob_id) {
            Some(blob) => slice_cached(blob, range),
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
    pub fn cached(&self, blob_id: &BlobId) -> Option<BlobBytes> {
        self.inner.cache.get(blob_id)
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
        let mut decoder = Some(SegmentDecoder::new(params).with_hash_threads(hash_threads()));
        let mut first = segments.start;
        while first < segments.end {
            let count = (segments.end - first).min(SEGMENTS_PER_ROUND);
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
                let offset = params.segment_offset(segment);
                let from = usize::try_from(start.saturating_sub(offset)).unwrap_or(0);
                let to =
                    usize::try_from((end - offset).min(u64::try_from(bytes.len()).unwrap_or(0)))
                        .unwrap_or(0);
                let chunk = Bytes::from(bytes).slice(from.min(to)..to);
                if tx.send(chunk).await.is_err() {
                    return Ok(()); // the reader is gone
                }
            }
            first += count;
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
        let view = self.inner.net.view().await;
        let rtt: BTreeMap<Vec<u8>, u64> = view
            .rtt_ms
            .iter()
            .map(|(p, ms)| (p.to_bytes(), *ms))
            .collect();
        let me = self.inner.peer_id.to_bytes();
        let (mut read, mut effects) = Read::start(
            placement,
            params.source_shards(),
            |peer| {
                if peer == me.as_slice() {
                    Some(0)
                } else {
                    rtt.get(peer).copied()
                }
            },
            self.inner.read_config,
            self.now(),
        );
        let (tx, mut rx) = mpsc::unbounded_channel::<(u16, Option<Vec<VerifiedSliver>>)>();
        let mut got: BTreeMap<u16, Vec<VerifiedSliver>> = BTreeMap::new();
        let mut timer = Timer::default();
        loop {
            for effect in effects.drain(..) {
                match effect {
                    ReadEffect::Send { peer, index } => {
                        let node = self.clone();
                        let tx = tx.clone();
                        let id = *blob_id;
                        tokio::spawn(async move {
                            let slivers = node
                                .fetch_index(&peer, &id, index, &params, first, count)
                                .await;
                            let _ = tx.send((index, slivers));
                        });
                    }
                    ReadEffect::SetTimer(at) => {
                        timer.request(at);
                    }
                    ReadEffect::Ready(indexes) => {
                        got.retain(|index, _| indexes.contains(index));
                        return Ok(got);
                    }
                    ReadEffect::Failed { have, need } => {
                        return Err(GetError::NotEnoughSlivers { have, need });
                    }
                }
            }
            tokio::select! {
                Some((index, slivers)) = rx.recv() => {
                    let valid = slivers.is_some();
                    if let Some(slivers) = slivers {
                        got.insert(index, slivers);
                    }
                    effects = read.on_response(index, valid, self.now());
                }
                _ = timer_fires(self.inner.epoch, timer.deadline()) => {
                    timer.fire();
                    effects = read.on_timer(self.now());
                }
            }
        }
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
            let request = pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
                    first_segment: first,
                    index: u32::from(index),
                    segment_count: count,
                })),
            };
            let response = self.inner.net.request(peer_id, request).await.ok()?;
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

/// Threads for hashing slivers in the consistency check: what the machine offers (results do not depend on it).
/// Segment ranges of `[first, first + count)` whose slivers of one index fit one read response: at most
/// `MAX_RUN_BYTES` of sliver bytes (one segment at least, which the frame limit always fits).
fn read_chunks(params: &BlobParams, first: u64, count: u64) -> Vec<std::ops::Range<u64>> {
    cut_segments(params, first..first.saturating_add(count), MAX_RUN_BYTES)
}

/// The certificate of a write: the receipts collected, by sliver index.
pub(crate) fn certificate_of(
    blob_id: &BlobId,
    receipts: &BTreeMap<u16, pb::StorageReceipt>,
) -> pb::Certificate {
    pb::Certificate {
        blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
        receipts: receipts.values().cloned().collect(),
    }
}

/// The writer's record of a new blob (metadata and holder list) being stored; see [`Node::place`].
pub(crate) struct Recording(tokio::task::JoinHandle<Result<(), crate::store::StoreError>>);

impl Recording {
    /// Waits until the record is stored. By then the blob is certified on its holders, so a failure here does
    /// not fail the put: it costs only this node's own record of the blob (the holders keep theirs, and reads
    /// find the metadata there), and is logged.
    pub(crate) async fn done(self, blob_id: &BlobId) {
        let error = match self.0.await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(%blob_id, error, "could not store this writer's record of a certified blob");
    }
}

/// A store request carrying `slivers` (one run of one index) with the blob's metadata and `record` as the
/// holder list.
pub(crate) fn store_request(
    slivers: Vec<pb::Sliver>,
    metadata: &BlobMetadata,
    record: &HolderRecord,
) -> pb::StoreRequest {
    pb::StoreRequest {
        slivers,
        metadata: Some(metadata.into()),
        holders: record
            .holders
            .iter()
            .map(|h| Bytes::from(h.clone()))
            .collect(),
        holders_epoch: record.epoch,
        holders_repairer: Bytes::from(record.repairer.clone()),
        content_type: record.content_type.clone(),
    }
}

pub(crate) fn hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Counts an operation's outcome: successes and their total latency, or a failure.
pub(crate) fn record<T, E>(
    result: &Result<T, E>,
    started: Instant,
    ok: &AtomicU64,
    latency: &prometheus_client::metrics::histogram::Histogram,
    failed: &AtomicU64,
) {
    if result.is_ok() {
        ok.fetch_add(1, Ordering::Relaxed);
        latency.observe(started.elapsed().as_secs_f64());
    } else {
        failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Completes when the state machine's timer, `at` milliseconds after `epoch`, fires; never when there is none.
pub(crate) async fn timer_fires(epoch: Instant, at: Option<Millis>) {
    match at {
        Some(at) => tokio::time::sleep_until((epoch + Duration::from_millis(at)).into()).await,
        None => std::future::pending().await,
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
