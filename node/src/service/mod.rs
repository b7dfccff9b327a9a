//! The node service: answers peers' requests from the store, and carries out puts and gets by driving the
//! protocol core's `Write` and `Read` state machines over the network.
//!
//! This module maps effects to IO (requests, timers, disk) and feeds results back with the current time; it
//! makes no protocol decision of its own beyond choosing the neighbourhood from the peer view.
//!
//! Files: this one has the node's types (errors, options, metrics, the `Node` handle) and the helpers every
//! driver shares; `inbound` answers peers, `write` carries out puts, `read` carries out gets. Each of those
//! only adds methods to `Node` and uses this file, never each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use tokio::sync::{mpsc, oneshot};

use floe_protocol::content_type;
use floe_protocol::decoder::{Consistency, DecodeError, VerifiedSliver};
use floe_protocol::diversity;
use floe_protocol::encoder::EncodedBlob;
use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, MIN_SHARDS, default_shards};
use floe_protocol::holders::{self, Acceptance, HolderListError, Via};
use floe_protocol::keyspace;
use floe_protocol::placement::{PeerKey, Placement};
use floe_protocol::read::{Reach, Read, ReadConfig, ReadEffect};
use floe_protocol::receipt;
use floe_protocol::stream_write::{MAX_RUN_BYTES, cut_segments, store_runs};
use floe_protocol::wire::{WireError, pb};
use floe_protocol::write::{Millis, Write, WriteConfig, WriteEffect};
use floe_protocol::{BlobId, BlobMetadata, BlobParams, EncodingType, Sliver};

mod delete;
mod errors;
mod inbound;
mod lifetimes;
mod names;
mod read;
mod room;
mod write;

pub(crate) use write::{neighbourhood_in, network_in, repair_candidates_in};

use crate::cache::BlobBytes;
use crate::drive::{Driver, Wake};
pub(crate) use delete::delete_request;
pub use delete::{DeleteError, DeleteOutcome};
pub use errors::{SendError, StoreRefusal};
pub use lifetimes::{EpochsAsked, LifetimeConfig};
pub use names::{NamePublished, NameServiceError, NameSignatures};
pub(crate) use read::list_digest_request;

use crate::net::{Inbound, NetClient, PeerView};
use crate::store::{HolderRecord, Store};

/// Most segments of one sliver index a reader may ask for at once (`Node::slivers_for_reader`).
pub const MAX_SLIVERS_PER_ASK: u64 = 64;

/// Inbound requests handled at once; beyond that the network answers "busy".
const MAX_CONCURRENT_INBOUND: usize = 64;

/// Read requests a relaying node forwards at once for readers that reach a holder only through it; beyond that
/// it answers "busy". Each holds one answer (up to one message) in memory.
const MAX_FORWARDED_READS: usize = 8;

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
    /// Read requests sent through a relay for it to forward to a holder reached only through that relay.
    pub read_requests_forwarded: AtomicU64,
    /// Read requests this node forwarded, as a relay, to holders it reaches directly.
    pub reads_forwarded: AtomicU64,
    /// Latency histograms (put, get, gateway requests).
    pub latencies: crate::metrics::Latencies,
    /// Repairs this node led (it announced a new holder list and rebuilt lost slivers).
    pub repairs_started: AtomicU64,
    /// Repairs that delivered every rebuilt sliver.
    pub repairs_done: AtomicU64,
    /// Repairs that could not fetch k slivers or deliver every rebuilt one.
    pub repairs_failed: AtomicU64,
    /// Repairs not started because no holder found gone was proven gone by the other holders' statements.
    pub repairs_unproven: AtomicU64,
    /// Repaired holder lists refused (announced or sent with slivers) because they take indexes from holders not
    /// proven gone.
    pub lists_unproven: AtomicU64,
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
    /// Hand-offs whose receiver's list gives the index to another peer: the sender kept its copy.
    pub handoffs_kept: AtomicU64,
    /// Comparisons of a blob's list with its former holders' (`repair::reunion`).
    pub reunions: AtomicU64,
    /// Lists adopted because former holders agreed on a newer one (the other side of a healed partition).
    pub reunions_adopted: AtomicU64,
    /// Slivers stored here although, by this node's view, it is outside the blob's neighbourhood.
    pub stored_outside_own_view: AtomicU64,
    /// Store requests whose holder list gives the sliver to another peer, stored within the sender's budget.
    pub unexpected_stores: AtomicU64,
    /// Such store requests refused: the sender was over its budget ([`UNEXPECTED_STORE_RATE`]).
    pub unexpected_stores_refused: AtomicU64,
    /// Store requests refused because they would take this node over `--capacity`.
    pub stores_refused_full: AtomicU64,
    /// Store requests this node sent that a holder refused for lack of room.
    pub holders_full: AtomicU64,
    /// Slivers deleted because their blob's lifetime was over.
    pub expired_slivers_dropped: AtomicU64,
    /// Deletion tokens that released a claim on a blob held here (from a deleter, a peer or gossip).
    pub claims_released: AtomicU64,
    /// Slivers deleted because their blob was deleted.
    pub deleted_slivers_dropped: AtomicU64,
    /// Sliver bytes those deletions freed (the store's compaction returns them to the disk).
    pub deleted_bytes_reclaimed: AtomicU64,
    /// Deletions this node passed on to holders of a deleted blob that had not acknowledged it.
    pub deletions_passed_on: AtomicU64,
    /// Name records this node started keeping (new names and moves).
    pub names_kept: AtomicU64,
    /// Name records this node passed on to a name's neighbourhood peer that confirmed it.
    pub names_passed_on: AtomicU64,
    /// Blobs held here within `repair::scan::EXPIRY_WARNING_EPOCHS` of their end epoch, at the last scan.
    pub blobs_expiring_soon: AtomicU64,
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
    /// How long this node must have known a peer before a repair, hand-off or rebalance gives it slivers while
    /// an older peer could take them (`diversity::repair_candidates`).
    pub newcomer_age: Duration,
}

impl RepairConfig {
    /// The settings the steward decides each scan by.
    pub fn steward(&self) -> floe_protocol::steward::StewardConfig {
        let millis = |d: Duration| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX);
        floe_protocol::steward::StewardConfig {
            scan_interval: millis(self.interval),
            grace: millis(self.grace),
            settle: millis(self.challenge_settle),
            min_lost: self.min_lost,
            challenge_interval: millis(self.challenge_interval),
            challenges_per_scan: floe_protocol::steward::DEFAULT_CHALLENGES_PER_SCAN,
        }
    }
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
            newcomer_age: Duration::from_secs(2 * 3600),
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
        "only {stored} of the {needed} receipts needed came back ({failed} holders failed, {full} of them for lack of room); the swarm is too small, too full, or too many peers are failing"
    )]
    NotCertified {
        /// Receipts.
        stored: usize,
        /// Needed.
        needed: usize,
        /// Failed holders.
        failed: usize,
        /// Sliver indexes refused for lack of room.
        full: usize,
    },
    /// Too few peers have room for the blob's slivers; nothing was sent.
    #[error("{0}")]
    NoRoom(#[from] floe_protocol::room::NoRoom),
    /// The lifetime asked for is not one this node accepts.
    #[error("{0}")]
    Lifetime(#[from] floe_protocol::lifetime::LifetimeError),
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
    /// The blob's lifetime is over.
    #[error(
        "blob {blob_id} expired: it was stored until the end of epoch {end_epoch}, and this is epoch {current}"
    )]
    Expired {
        /// The blob.
        blob_id: BlobId,
        /// Its end epoch.
        end_epoch: u64,
        /// The current epoch.
        current: u64,
    },
    /// Every writer of the blob released its claim with its deletion token.
    #[error("blob {0} was deleted: every writer released its claim with a deletion token")]
    Deleted(BlobId),
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
    /// A sliver index or segment range the blob does not have, or more segments than one ask may take.
    #[error(
        "sliver index {index} of segments {first}..{first}+{count}: the blob has {shards} sliver indexes and {segments} segments, and one request takes 1 to 64 segments"
    )]
    SliverRange {
        /// Index asked.
        index: u16,
        /// First segment asked.
        first: u64,
        /// Segments asked.
        count: u64,
        /// n.
        shards: u16,
        /// Segments of the blob.
        segments: u64,
    },
    /// The holder of a sliver index did not answer with it (down, or lost it): another index will do.
    #[error(
        "the holder of sliver index {index} did not give it; ask for another index (any k of n rebuild the blob)"
    )]
    SliverUnavailable {
        /// The index.
        index: u16,
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
    /// The epoch it is stored until.
    pub end_epoch: u64,
    /// The epoch it was stored in.
    pub epoch: u64,
    /// The writer's deletion token (a deletable write), shown once: `DELETE /v1/blobs/{id}` takes it.
    pub deletion_token: Option<floe_protocol::deletion::Token>,
}

/// How a blob is to be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The blob's media type, checked with `floe_protocol::content_type::check` (empty: none); it travels beside
    /// the holder list.
    pub content_type: String,
    /// Store even if this node already holds a certificate for the blob (Walrus' `force`).
    pub force: bool,
    /// The epoch to store it until (`None`: `--default-epochs` from now); a later one than the blob has extends it.
    pub end_epoch: Option<u64>,
    /// A permanent write: no deletion token, and nobody can delete the blob before its end epoch. Otherwise the
    /// write is deletable (the default) and its outcome carries the writer's token.
    pub permanent: bool,
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

impl Inner {
    /// Signs `message` with this node's identity key.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, libp2p::identity::SigningError> {
        self.keypair.sign(message)
    }

    /// This node's public key, protobuf-encoded as libp2p defines it.
    pub(crate) fn public_key(&self) -> Vec<u8> {
        self.keypair.public().encode_protobuf()
    }
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
    /// Segment decoders reused across reads and repairs (their codecs and work buffers).
    pub(crate) decoders: crate::cache::Decoders,
    stream_permits: Arc<tokio::sync::Semaphore>,
    put_permits: Arc<tokio::sync::Semaphore>,
    inbound_permits: Arc<tokio::sync::Semaphore>,
    forward_permits: Arc<tokio::sync::Semaphore>,
    pub(crate) repair: RepairConfig,
    /// The most slivers a blob written here is cut into (`--max-shards`).
    max_shards: u16,
    pub(crate) repair_state: std::sync::Mutex<crate::steward_state::RepairState>,
    spool_dir: std::path::PathBuf,
    /// Per-peer budgets for stores no holder list asked of this node ([`UNEXPECTED_STORE_RATE`]).
    pub(crate) unexpected_stores: std::sync::Mutex<crate::budget::PeerBudgets<PeerId>>,
    /// Peers' free space and this node's last announcement of its own.
    rooms: std::sync::Mutex<room::Rooms>,
    /// How long blobs live.
    lifetimes: LifetimeConfig,
    /// Name records passed on, and to whom.
    names_passed: std::sync::Mutex<names::NamesPassed>,
}

/// Bytes per second (with ten seconds of burst) a peer may push in store requests whose holder list gives the
/// sliver to someone else: no write, repair or hand-off does that, so only a confused or hostile peer does, and
/// without a budget such a peer could fill the disk and have the hand-off duty relay its bytes.
pub const UNEXPECTED_STORE_RATE: u64 = 1 << 20;

/// A peer key as text, for logs.
pub(crate) fn peer_label(peer: &[u8]) -> String {
    PeerId::from_bytes(peer).map_or_else(|_| "(bad peer id)".into(), |p| p.to_string())
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
        max_shards: u16,
        lifetimes: LifetimeConfig,
    ) -> Self {
        let peer_id = keypair.public().to_peer_id();
        crate::spool::clear_spool_dir(&spool_dir);
        let steward = repair.steward();
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
                decoders: crate::cache::Decoders::new(MAX_STREAMS, hash_threads()),
                stream_permits: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
                put_permits: Arc::new(tokio::sync::Semaphore::new(crate::spool::MAX_STREAMED_PUTS)),
                inbound_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INBOUND)),
                forward_permits: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDED_READS)),
                repair,
                max_shards,
                repair_state: std::sync::Mutex::new(crate::steward_state::RepairState::new(
                    steward, 0,
                )),
                spool_dir,
                unexpected_stores: std::sync::Mutex::new(crate::budget::PeerBudgets::new(
                    UNEXPECTED_STORE_RATE,
                )),
                rooms: std::sync::Mutex::new(room::Rooms::default()),
                lifetimes,
                names_passed: std::sync::Mutex::new(names::NamesPassed::default()),
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

    /// The n of a blob written now: the swarm size in `view` (this node included), up to `--max-shards`.
    pub(crate) fn shards_for(&self, view: &PeerView) -> u16 {
        default_shards(view.peers.len() + 1).min(self.inner.max_shards.max(MIN_SHARDS))
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
        crate::drive::now(self.inner.epoch)
    }
}

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

/// The task storing the writer's own record of a new blob (metadata and holder list); see [`Node::place`].
pub(crate) struct WriterRecordTask(tokio::task::JoinHandle<Result<(), crate::store::StoreError>>);

impl WriterRecordTask {
    /// Waits until the record is stored. By then the blob is certified on its holders, so a failure here does
    /// not fail the put: it costs only this node's own record of the blob (the holders keep theirs, and reads
    /// find the metadata there), and is logged.
    pub(crate) async fn finish(self, blob_id: &BlobId) {
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
        end_epoch: record.end_epoch,
        claims: record
            .claims
            .claims()
            .map(|c| c.0.to_vec().into())
            .collect(),
        released: record
            .claims
            .released()
            .map(|t| t.0.to_vec().into())
            .collect(),
        permanent_until: record.claims.permanent_until_wire(),
        departures: None,
    }
}

/// Threads for hashing slivers in the consistency check: what the machine offers (results do not depend on it).
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
