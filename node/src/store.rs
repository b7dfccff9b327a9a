//! The local sliver store: what this node holds, durably, and serves only after re-verifying it.
//!
//! Layout under `<data-dir>/store/`:
//! - `log/<number>.log`: append-only sliver logs. Each store request's slivers are one record, a run: the
//!   slivers of one index for consecutive segments, as length-prefixed `Sliver` frames in segment order (a small
//!   blob's index is one run of all its segments; a large blob's arrives as many runs). Holder records are
//!   logged too. Every record starts with a header (kind, key, segments, length, checksum), so the logs can be
//!   replayed. A log is written until it reaches `log_size` bytes, then sealed; records are never rewritten in
//!   place.
//! - `index.redb`: the index (a redb database): where each run (blob, sliver index, first segment) lives and how
//!   many segments it holds, the reverse map a compaction walks, each log's live and written bytes, and each
//!   blob's metadata with its holder list and the list's epoch (a `MetadataResponse`).
//!
//! Writes go through one committer thread that group-commits: it takes every queued request, appends the
//! records to the active log, `fdatasync`s it once, commits one index transaction and only then answers. The log
//! is the write-ahead log of the index: that commit is not durable (no fsync) unless the batch removes something
//! or opened a log, and a checkpoint (a durable commit, off the answer's path) follows at least every
//! `checkpoint_interval` or `checkpoint_bytes` of log. Opening replays the records logged after the last durable
//! commit (stopping at a torn record), so an acknowledged sliver survives kill -9 and power loss at the cost of
//! one fsync per group commit, and a reopen replays a bounded tail whatever the store holds.
//!
//! Space comes back by compaction: while the logs' live bytes are below `compact_live_percent` of what they
//! hold, the emptiest sealed log has its live records copied to the active log (one index transaction moves
//! them), then it is deleted. The logs thus stay within about `100 / compact_live_percent` of the live bytes
//! whatever the deletion pattern, and the copying goes where it frees the most. Opening reads no sliver data
//! beyond the replayed tail: the index says what is held.
//!
//! Every read verifies each sliver against the blob ID (the Merkle proof is the checksum): corruption is
//! counted, logged and reported, never served. All methods block; call them from `spawn_blocking`.
//! This module decides nothing about protocol: which holder list wins comes from `floe_protocol::repair`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use floe_protocol::content_type;
use floe_protocol::placement::PeerKey;
use floe_protocol::wire::{self, MAX_FRAME_LEN, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata, Sliver};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// (blob ID ‖ sliver index ‖ first segment, big-endian) → (log number, offset, length, segments) of a run.
const SLIVERS: TableDefinition<&[u8], (u32, u64, u64, u64)> = TableDefinition::new("sliver_runs");
/// The index of the first layout of this store (one record per blob and index, all segments): read once at open
/// and moved into `SLIVERS` as runs from segment 0.
const SLIVERS_V1: TableDefinition<&[u8], (u32, u64, u64)> = TableDefinition::new("slivers");
/// (log number, offset) → the record's key in `SLIVERS`: what a compaction of that log must move.
const BY_LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("by_log");
/// Log number → (live bytes, bytes written).
const LOGS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("logs");
/// Blob ID → its `MetadataResponse` (metadata, holder list, epoch, repairer).
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// The store's own state; [`NEXT_LOG`] only.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The number the next log opened gets, as of the last durable commit. A log at or past it that the index does
/// not know was opened after that commit and is replayed from its start; one below it is a leftover (a
/// compacted log whose removal did not reach the disk) and must never be replayed.
const NEXT_LOG: &str = "next_log";

/// Why the store could not serve or accept something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Disk IO failed.
    #[error("store IO on {path}: {cause}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The error.
        cause: io::Error,
    },
    /// The index database failed.
    #[error("store index: {0}")]
    Index(String),
    /// The store's committer is gone (the node is shutting down, or a previous failure stopped it).
    #[error("the store is closed")]
    Closed,
    /// The store does not hold it.
    #[error("not stored here")]
    Missing,
    /// A record larger than any store request can carry.
    #[error("a sliver record of {0} bytes is larger than the store accepts")]
    TooLarge(usize),
    /// What the store holds failed verification.
    #[error("stored data for blob {blob_id} index {index} is corrupt: {why}")]
    Corrupt {
        /// Blob.
        blob_id: BlobId,
        /// Sliver index.
        index: u16,
        /// What failed.
        why: String,
    },
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> Self {
        Self::Index(error.to_string())
    }
}

macro_rules! index_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(error: $t) -> Self {
                Self::Index(error.to_string())
            }
        }
    )*};
}
index_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Counters the node reports.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Sliver runs held (one per blob, index and store request kept; a small blob's index is one run).
    pub slivers: AtomicU64,
    /// Bytes of sliver records held (live bytes).
    pub bytes: AtomicU64,
    /// Corrupt sliver records found on read.
    pub corrupt_found: AtomicU64,
    /// Logs compacted since start.
    pub compactions: AtomicU64,
    /// Bytes copied by compaction since start.
    pub compacted_bytes: AtomicU64,
    /// Group commits since start.
    pub commits: AtomicU64,
    /// Durable index commits since start (group commits that had to be, compactions and checkpoints).
    pub durable_commits: AtomicU64,
    /// Records replayed from the logs when the store opened (what a crash had left only in the logs).
    pub replayed: AtomicU64,
}

/// A blob's holder list as this node knows it, with its epoch (0 for the writer's list, one more per repair
/// or hand-off) and the peer that made it (empty for the writer's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderRecord {
    /// The holder of each sliver index.
    pub holders: Vec<PeerKey>,
    /// The list's epoch.
    pub epoch: u64,
    /// The peer that made the list.
    pub repairer: Vec<u8>,
    /// The blob's media type as its writer gave it (empty: none); a label beside the list, not in the blob ID
    /// (`floe_protocol::content_type`). Every list made from this one carries it on.
    pub content_type: String,
}

impl HolderRecord {
    /// The writer's list.
    pub fn initial(holders: Vec<PeerKey>) -> Self {
        Self {
            holders,
            epoch: 0,
            repairer: Vec::new(),
            content_type: String::new(),
        }
    }

    /// The same record, with `known`'s label if it has none: a list from a peer that never learnt the blob's
    /// label (an older node, or one that got its sliver by hand-off) must not erase it.
    pub fn keeping_label_of(mut self, known: &HolderRecord) -> Self {
        if self.content_type.is_empty() {
            self.content_type.clone_from(&known.content_type);
        }
        self
    }

    /// The same record with `content_type` as the blob's media type.
    pub fn with_content_type(mut self, content_type: &str) -> Self {
        content_type.clone_into(&mut self.content_type);
        self
    }

    /// The list as the protocol's holder-list rules see it.
    pub fn as_list(&self) -> floe_protocol::holders::List<'_, PeerKey> {
        floe_protocol::holders::List {
            holders: &self.holders,
            epoch: self.epoch,
            repairer: &self.repairer,
        }
    }

    /// Whether this list replaces `current` (protocol rule: higher epoch, then lower repairer).
    pub fn supersedes(&self, current: &HolderRecord) -> bool {
        floe_protocol::holders::supersedes(
            self.epoch,
            &self.repairer,
            current.epoch,
            &current.repairer,
        )
    }
}

/// Tuning of the store. The defaults suit a node; the benchmark and tests shrink them.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// A log is sealed once it holds this many bytes.
    pub log_size: u64,
    /// A sealed log with less than this percentage of live bytes is compacted.
    pub compact_live_percent: u64,
    /// Most bytes of sliver records in one group commit.
    pub batch_bytes: usize,
    /// The index database's page cache.
    pub index_cache_bytes: usize,
    /// The index is made durable at least this often while it has changes only the logs hold (see the module
    /// doc): the most log a reopen after a crash replays, in time.
    pub checkpoint_interval: Duration,
    /// ... and at least every this many logged bytes: the most a reopen after a crash replays, in bytes.
    pub checkpoint_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            log_size: 64 << 20,
            compact_live_percent: 85,
            batch_bytes: 64 << 20,
            index_cache_bytes: 32 << 20,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
        }
    }
}

/// A run's key: blob ID ‖ sliver index ‖ first segment, big-endian, so one index's runs sort by segment.
type Key = [u8; 42];
/// The part of a key that names one sliver index of one blob.
type IndexPrefix = [u8; 34];

fn key(blob_id: &BlobId, index: u16, first: u64) -> Key {
    let mut key = [0u8; 42];
    key[..32].copy_from_slice(blob_id.as_bytes());
    key[32..34].copy_from_slice(&index.to_be_bytes());
    key[34..].copy_from_slice(&first.to_be_bytes());
    key
}

fn prefix(blob_id: &BlobId, index: u16) -> IndexPrefix {
    let mut prefix = [0u8; 34];
    prefix[..32].copy_from_slice(blob_id.as_bytes());
    prefix[32..].copy_from_slice(&index.to_be_bytes());
    prefix
}

fn key_prefix(key: &Key) -> IndexPrefix {
    let mut prefix = [0u8; 34];
    prefix.copy_from_slice(&key[..34]);
    prefix
}

fn first_segment(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(34..42)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Marks the start of a logged record; a log of the first record layout (payloads only) never matches it.
const RECORD_MAGIC: [u8; 8] = *b"floeLOG1";
/// magic ‖ kind ‖ key ‖ segments ‖ payload length ‖ checksum.
const HEADER_LEN: usize = 8 + 1 + 42 + 8 + 8 + 16;

/// What a logged record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    /// A run of slivers: the payload is what `SLIVERS` points at.
    Run = 1,
    /// A blob's holder record (a `MetadataResponse` frame); `RECORDS` keeps its own copy, so in the log it is
    /// only there to be replayed.
    Holders = 2,
}

/// The header written before every payload appended to a log, so that a reopen after a crash can replay what
/// the index had not made durable. The checksum (BLAKE3 over the header's other fields and the payload) tells a
/// whole record from a torn one.
fn record_header(
    kind: RecordKind,
    key: &Key,
    segments: u64,
    payload: &[u8],
) -> Result<[u8; HEADER_LEN], StoreError> {
    let len = u64::try_from(payload.len()).map_err(|_| StoreError::TooLarge(payload.len()))?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&RECORD_MAGIC);
    header[8] = kind as u8;
    header[9..51].copy_from_slice(key);
    header[51..59].copy_from_slice(&segments.to_be_bytes());
    header[59..67].copy_from_slice(&len.to_be_bytes());
    let checksum = record_checksum(&header, payload);
    header[67..].copy_from_slice(&checksum);
    Ok(header)
}

fn record_checksum(header: &[u8; HEADER_LEN], payload: &[u8]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header[..67]);
    hasher.update(payload);
    let mut checksum = [0u8; 16];
    checksum.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    checksum
}

/// A header's fields: kind, key, segments, payload length; `None` if it is not a record header.
fn parse_header(header: &[u8; HEADER_LEN]) -> Option<(RecordKind, Key, u64, u64)> {
    if header[..8] != RECORD_MAGIC {
        return None;
    }
    let kind = match header[8] {
        1 => RecordKind::Run,
        2 => RecordKind::Holders,
        _ => return None,
    };
    let key: Key = header[9..51].try_into().ok()?;
    let segments = u64::from_be_bytes(header[51..59].try_into().ok()?);
    let len = u64::from_be_bytes(header[59..67].try_into().ok()?);
    Some((kind, key, segments, len))
}

/// A record's place: log number, offset, length.
type Location = (u32, u64, u64);
/// A run's place and size: log number, offset, length, segments.
type RunLocation = (u32, u64, u64, u64);

type Reply = mpsc::SyncSender<Result<bool, StoreError>>;

/// Work for the committer.
enum Job {
    Record {
        blob_id: BlobId,
        record: HolderRecord,
        frame: Vec<u8>,
        reply: Reply,
    },
    Slivers {
        key: Key,
        segments: u64,
        payload: Vec<u8>,
        reply: Reply,
    },
    /// Every run of one sliver index; with `only_if_segments`, only while exactly that many segments (from the
    /// first) are held, checked inside the commit.
    Remove {
        prefix: IndexPrefix,
        only_if_segments: Option<u64>,
        reply: Reply,
    },
}

impl Job {
    fn payload_len(&self) -> usize {
        match self {
            Job::Slivers { payload, .. } => payload.len(),
            _ => 0,
        }
    }

    fn reply(&self) -> &Reply {
        match self {
            Job::Record { reply, .. } | Job::Slivers { reply, .. } | Job::Remove { reply, .. } => {
                reply
            }
        }
    }
}

/// The store.
pub struct Store {
    log_dir: PathBuf,
    db: Arc<Database>,
    counters: Arc<StoreCounters>,
    /// Submissions to the committer: the jobs of one submission go into the same group commit.
    jobs: Mutex<Option<mpsc::Sender<Vec<Job>>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Record { .. } => "Record",
            Job::Slivers { .. } => "Slivers",
            Job::Remove { .. } => "Remove",
        })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.to_owned(),
        cause,
    }
}

fn log_path(log_dir: &Path, number: u32) -> PathBuf {
    log_dir.join(format!("{number:08}.log"))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Store {
    /// Opens (or creates) the store under `data_dir` with the default tuning.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, StoreConfig::default())
    }

    /// Opens (or creates) the store under `data_dir`. Reads the index, lists the logs and replays their tail
    /// past the last durable index commit (at most one checkpoint's worth, unless checkpoints failed).
    pub fn open_with(data_dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let root = data_dir.join("store");
        let log_dir = root.join("log");
        fs::create_dir_all(&log_dir).map_err(io_err(&log_dir))?;
        if data_dir.join("blobs").is_dir() {
            tracing::warn!(
                path = %data_dir.join("blobs").display(),
                "a sliver directory from floe's first store layout is present and is not read; \
                 remove it once nothing in it is needed"
            );
        }
        let db_path = root.join("index.redb");
        let db = Database::builder()
            .set_cache_size(config.index_cache_bytes)
            .create(&db_path)
            .map_err(|e| StoreError::Index(format!("{}: {e}", db_path.display())))?;
        let logs_on_disk = fs::read_dir(&log_dir)
            .map_err(io_err(&log_dir))?
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".log")))
            .count();
        // Create the tables so read transactions find them; a new store starts its log numbers at 0.
        let txn = db.begin_write()?;
        let next_log_mark = {
            txn.open_table(SLIVERS)?;
            txn.open_table(BY_LOG)?;
            let logs_known = !txn.open_table(LOGS)?.is_empty()?;
            txn.open_table(RECORDS)?;
            let mut meta = txn.open_table(META)?;
            let mark = meta.get(NEXT_LOG)?.map(|v| v.value());
            if mark.is_none() && !logs_known && logs_on_disk == 0 {
                meta.insert(NEXT_LOG, 0)?;
                Some(0)
            } else {
                mark
            }
        };
        txn.commit()?;
        migrate_v1(&db)?;

        let logs = load_logs(&db)?;
        // A log on disk the index does not know is either the newest, opened after the last durable commit (the
        // replay below reads it), or a leftover: a compacted log whose deletion was interrupted, or a new log with
        // no whole record. Nothing points into a leftover. But logs beside an index that knows none mean the index
        // was lost or replaced (a new log forces a durable commit, so a crash leaves at most one unknown): deleting
        // them would lose every sliver, so refuse instead.
        let mut highest = logs.keys().next_back().copied().unwrap_or(0);
        // One log of this layout (records with headers) beside an index without a mark is a lost index too:
        // replaying it from the start would bring back what was removed from it. One log of the first layout
        // is what an earlier version's crash before its first commit left, and goes.
        let lost_index = logs.is_empty()
            && next_log_mark.is_none()
            && (logs_on_disk > 1 || (logs_on_disk == 1 && holds_records(&log_dir)));
        if lost_index {
            return Err(StoreError::Index(format!(
                "{} holds {logs_on_disk} sliver logs but {} knows none of them; the index was lost or replaced. \
                 Move the logs away (their slivers are lost to this node) or restore the index",
                log_dir.display(),
                db_path.display()
            )));
        }
        // A store of an earlier version has no mark: every log it opened is in its durable index.
        let next_log_mark = next_log_mark.unwrap_or_else(|| {
            logs.keys()
                .next_back()
                .map_or(0, |&h| u64::from(h).saturating_add(1))
        });
        let replayed = recover(&db, &log_dir, next_log_mark)?;
        let logs = load_logs(&db)?;
        let slivers = db.begin_read()?.open_table(SLIVERS)?.len()?;
        for entry in fs::read_dir(&log_dir).map_err(io_err(&log_dir))?.flatten() {
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            highest = highest.max(number);
            if !logs.contains_key(&number) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        let counters = Arc::new(StoreCounters::default());
        counters.slivers.store(slivers, Ordering::Relaxed);
        counters.replayed.store(replayed, Ordering::Relaxed);
        counters
            .bytes
            .store(logs.values().map(|l| l.live).sum(), Ordering::Relaxed);
        let db = Arc::new(db);
        let committer = Committer {
            db: Arc::clone(&db),
            log_dir: log_dir.clone(),
            counters: Arc::clone(&counters),
            config,
            logs,
            active: None,
            sealed: Vec::new(),
            compaction_paused_until: None,
            // Never below the mark: a log opened after the last durable commit must be replayed, not taken
            // for a leftover.
            next_log: highest
                .checked_add(1)
                .ok_or_else(|| StoreError::Index("log numbers exhausted".into()))?
                .max(u32::try_from(next_log_mark).unwrap_or(u32::MAX)),
            dirty: false,
            force_durable: false,
            last_durable: Instant::now(),
            checkpoint_retry_at: None,
            logged_since_durable: 0,
        };
        let (jobs, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("floe-store".into())
            .spawn(move || committer.run(&queue))
            .map_err(io_err(&log_dir))?;
        Ok(Self {
            log_dir,
            db,
            counters,
            jobs: Mutex::new(Some(jobs)),
            committer: Mutex::new(Some(handle)),
        })
    }

    /// The counters.
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    fn submit(&self, submission: Vec<Job>) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or(StoreError::Closed)?
            .send(submission)
            .map_err(|_| StoreError::Closed)
    }

    fn run_job(&self, make: impl FnOnce(Reply) -> Job) -> Result<bool, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(vec![make(reply)])?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    /// Stores the metadata and the writer's holder list of a blob (kept if a record is already present).
    pub fn put_metadata(
        &self,
        metadata: &BlobMetadata,
        holders: &[PeerKey],
    ) -> Result<(), StoreError> {
        self.put_record(metadata, &HolderRecord::initial(holders.to_vec()))
            .map(|_| ())
    }

    /// Stores the metadata with `record` if the blob has no record yet, or if `record` supersedes the one held.
    /// Returns whether `record` is now the one held.
    pub fn put_record(
        &self,
        metadata: &BlobMetadata,
        record: &HolderRecord,
    ) -> Result<bool, StoreError> {
        let job = record_job(metadata, record)?;
        self.run_job(job)
    }

    /// Stores a blob's record as [`Store::put_record`] does and a run of slivers of `index` (consecutive segments,
    /// already verified by the caller), in one group commit when the committer takes both together. Returns
    /// whether `record` is now the one held.
    pub fn put_record_and_slivers(
        &self,
        metadata: &BlobMetadata,
        record: &HolderRecord,
        index: u16,
        slivers: &[Sliver],
    ) -> Result<bool, StoreError> {
        let (record_reply, record_answer) = mpsc::sync_channel(1);
        let (slivers_reply, slivers_answer) = mpsc::sync_channel(1);
        let job = slivers_job(&metadata.blob_id(), index, slivers)?;
        // One submission, so one group commit (and its fsyncs) covers both.
        self.submit(vec![
            record_job(metadata, record)?(record_reply),
            job(slivers_reply),
        ])?;
        let adopted = record_answer.recv().map_err(|_| StoreError::Closed)??;
        slivers_answer.recv().map_err(|_| StoreError::Closed)??;
        Ok(adopted)
    }

    /// Stores a run of slivers of `index` (consecutive segments, already verified by the caller), durably.
    pub fn put_slivers(
        &self,
        blob_id: &BlobId,
        index: u16,
        slivers: &[Sliver],
    ) -> Result<(), StoreError> {
        let job = slivers_job(blob_id, index, slivers)?;
        self.run_job(job).map(|_| ())
    }

    /// Deletes sliver `index` of a blob, every segment of it (handed off to its new holder); its space comes back
    /// by compaction.
    pub fn remove_sliver(&self, blob_id: &BlobId, index: u16) -> Result<(), StoreError> {
        self.run_job(|reply| Job::Remove {
            prefix: prefix(blob_id, index),
            only_if_segments: None,
            reply,
        })
        .map(|_| ())
    }

    /// Deletes a partial sliver index (every run of it) only if it still holds exactly `segments` segments from
    /// the first, checked in the same commit as the deletion: a run stored meanwhile (a delivery that resumed)
    /// keeps it. Returns whether it was deleted.
    pub fn remove_partial(
        &self,
        blob_id: &BlobId,
        index: u16,
        segments: u64,
    ) -> Result<bool, StoreError> {
        self.run_job(|reply| Job::Remove {
            prefix: prefix(blob_id, index),
            only_if_segments: Some(segments),
            reply,
        })
    }

    /// The blobs this node has a record of, in blob ID order.
    pub fn blobs(&self) -> Vec<BlobId> {
        let read = || -> Result<Vec<BlobId>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(RECORDS)?;
            let mut ids = Vec::new();
            for entry in table.iter()? {
                if let Ok(id) = BlobId::from_slice(entry?.0.value()) {
                    ids.push(id);
                }
            }
            Ok(ids)
        };
        read().unwrap_or_else(|error| {
            tracing::warn!(%error, "listing the blobs held failed");
            Vec::new()
        })
    }

    /// The sliver indexes of a blob of which some segment is held here, ascending.
    pub fn indexes(&self, blob_id: &BlobId) -> Vec<u16> {
        let read = || -> Result<Vec<u16>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(SLIVERS)?;
            let (low, high) = (key(blob_id, 0, 0), key(blob_id, u16::MAX, u64::MAX));
            let mut indexes = Vec::new();
            for entry in table.range::<&[u8]>(&low[..]..=&high[..])? {
                let (key, _) = entry?;
                if let Some(&[a, b]) = key.value().get(32..34) {
                    let index = u16::from_be_bytes([a, b]);
                    if indexes.last() != Some(&index) {
                        indexes.push(index);
                    }
                }
            }
            Ok(indexes)
        };
        read().unwrap_or_else(|error| {
            tracing::warn!(%blob_id, %error, "listing a blob's slivers failed");
            Vec::new()
        })
    }

    /// The metadata and holder list of a blob, checked against its ID.
    pub fn metadata(&self, blob_id: &BlobId) -> Result<(BlobMetadata, Vec<PeerKey>), StoreError> {
        self.metadata_record(blob_id)
            .map(|(metadata, record)| (metadata, record.holders))
    }

    /// The metadata and full holder record of a blob, checked against its ID.
    pub fn metadata_record(
        &self,
        blob_id: &BlobId,
    ) -> Result<(BlobMetadata, HolderRecord), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let entry = table
            .get(&blob_id.as_bytes()[..])?
            .ok_or(StoreError::Missing)?;
        parse_record(blob_id, entry.value())
    }

    /// Whether any segment of sliver `index` of the blob is held.
    pub fn has(&self, blob_id: &BlobId, index: u16) -> bool {
        self.runs(blob_id, index, 0, u64::MAX)
            .is_ok_and(|runs| !runs.is_empty())
    }

    /// How many segments of sliver `index`, counted from segment 0 without a gap, are held: a store request that
    /// completes this to the blob's segment count completes the index.
    pub fn segments_held(&self, blob_id: &BlobId, index: u16) -> u64 {
        let mut held = 0u64;
        for (first, (_, _, _, segments)) in
            self.runs(blob_id, index, 0, u64::MAX).unwrap_or_default()
        {
            if first > held {
                break;
            }
            held = held.max(first.saturating_add(segments));
        }
        held
    }

    /// The runs of `index` that may hold segments in `[first, end)`, by first segment.
    fn runs(
        &self,
        blob_id: &BlobId,
        index: u16,
        first: u64,
        end: u64,
    ) -> Result<Vec<(u64, RunLocation)>, StoreError> {
        let mut runs = Vec::new();
        if end <= first {
            return Ok(runs);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SLIVERS)?;
        let (zero, at, last) = (
            key(blob_id, index, 0),
            key(blob_id, index, first),
            key(blob_id, index, end - 1),
        );
        // Runs do not overlap when they arrive in order, so the last run starting at or before `first` is the
        // only earlier one that can cover it: seek to it instead of walking every run from segment 0. If it does
        // not cover `first` (an overlap left by an older writer), walk them all.
        let before = table
            .range::<&[u8]>(&zero[..]..=&at[..])?
            .next_back()
            .transpose()?
            .map(|(k, v)| (first_segment(k.value()), v.value()));
        let from = match before {
            Some((Some(run_first), location)) if run_first.saturating_add(location.3) > first => {
                runs.push((run_first, location));
                key(blob_id, index, first.saturating_add(1))
            }
            None => at,
            Some(_) => zero,
        };
        if from <= last {
            for entry in table.range::<&[u8]>(&from[..]..=&last[..])? {
                let (key, location) = entry?;
                let Some(run_first) = first_segment(key.value()) else {
                    continue;
                };
                let location = location.value();
                if run_first.saturating_add(location.3) > first {
                    runs.push((run_first, location));
                }
            }
        }
        Ok(runs)
    }

    /// Reads a run's bytes. A compaction may move the run and delete its log between the index lookup and the
    /// open; the lookup is then repeated.
    fn read_run(
        &self,
        blob_id: &BlobId,
        index: u16,
        run_first: u64,
        mut location: RunLocation,
    ) -> Result<Vec<u8>, StoreError> {
        let mut attempts = 0;
        loop {
            let (log, offset, len, _) = location;
            let corrupt = |why: String| StoreError::Corrupt {
                blob_id: *blob_id,
                index,
                why,
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= MAX_FRAME_LEN)
                .ok_or_else(|| corrupt(format!("index names a record of {len} bytes")))?;
            let path = log_path(&self.log_dir, log);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound && attempts == 0 => {
                    attempts += 1;
                    let txn = self.db.begin_read()?;
                    let table = txn.open_table(SLIVERS)?;
                    // The same run moved by compaction, not another one stored under its key since.
                    let segments = location.3;
                    location = table
                        .get(&key(blob_id, index, run_first)[..])?
                        .map(|entry| entry.value())
                        .filter(|moved| moved.3 == segments)
                        .ok_or(StoreError::Missing)?;
                    continue;
                }
                Err(error) => return Err(corrupt(format!("{}: {error}", path.display()))),
            };
            let mut bytes = vec![0u8; len];
            file.read_exact_at(&mut bytes, offset)
                .map_err(|error| corrupt(format!("{} at {offset}: {error}", path.display())))?;
            return Ok(bytes);
        }
    }

    /// The slivers of `index` for segments `[first, first + count)`, each verified against the blob ID. Missing if
    /// any of them is not held.
    pub fn read_slivers(
        &self,
        blob_id: &BlobId,
        index: u16,
        first: u64,
        count: u64,
    ) -> Result<Vec<Sliver>, StoreError> {
        let end = first.saturating_add(count);
        let read = || -> Result<Vec<Sliver>, StoreError> {
            let mut slivers: Vec<Sliver> = Vec::new();
            let mut next = first;
            for (run_first, location) in self.runs(blob_id, index, first, end)? {
                if next >= end {
                    break;
                }
                let run_end = run_first.saturating_add(location.3);
                if run_first > next {
                    return Err(StoreError::Missing);
                }
                if run_end <= next {
                    continue;
                }
                let bytes = self.read_run(blob_id, index, run_first, location)?;
                let want = run_end.min(end);
                slivers.extend(parse_and_verify(
                    &bytes, blob_id, index, run_first, next, want,
                )?);
                next = want;
            }
            if next < end {
                return Err(StoreError::Missing);
            }
            Ok(slivers)
        };
        let result = read();
        if let Err(StoreError::Corrupt { why, .. }) = &result {
            self.counters.corrupt_found.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%blob_id, index, why, "corrupt sliver record found; not serving it");
        }
        result
    }

    /// Bytes the store occupies on disk (logs and index), as allocated by the file system.
    pub fn disk_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0u64;
        let root = self.log_dir.parent().unwrap_or(&self.log_dir);
        for dir in [root, self.log_dir.as_path()] {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    total = total.saturating_add(meta.blocks().saturating_mul(512));
                }
            }
        }
        total
    }

    /// Stops the committer after the queued work and waits for it.
    pub fn close(&self) {
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Moves an index of the first layout (one record per blob and index holding every segment) into runs from
/// segment 0, in one transaction. A record whose blob has no readable metadata cannot be served and is dropped
/// (compaction reclaims it).
fn migrate_v1(db: &Database) -> Result<(), StoreError> {
    let old: Vec<(Vec<u8>, Location)> = {
        let txn = db.begin_read()?;
        let table = match txn.open_table(SLIVERS_V1) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let mut old = Vec::new();
        for entry in table.iter()? {
            let (key, location) = entry?;
            old.push((key.value().to_vec(), location.value()));
        }
        old
    };
    let txn = db.begin_write()?;
    let mut moved = 0usize;
    let mut dropped = 0usize;
    {
        let records = txn.open_table(RECORDS)?;
        let mut slivers = txn.open_table(SLIVERS)?;
        let mut by_log = txn.open_table(BY_LOG)?;
        let mut logs = txn.open_table(LOGS)?;
        for (old_key, (log, offset, len)) in old {
            // An index error stops the migration (nothing is committed); only a record that is absent or
            // unreadable drops its slivers.
            let segments = match old_key.get(..32).map(BlobId::from_slice) {
                Some(Ok(id)) => records
                    .get(&id.as_bytes()[..])?
                    .and_then(|entry| parse_record(&id, entry.value()).ok())
                    .map(|(metadata, _)| metadata.params().segment_count()),
                _ => None,
            };
            match (segments, <[u8; 34]>::try_from(old_key.as_slice())) {
                (Some(segments), Ok(old_prefix)) => {
                    let mut new_key = [0u8; 42];
                    new_key[..34].copy_from_slice(&old_prefix);
                    slivers.insert(&new_key[..], (log, offset, len, segments))?;
                    by_log.insert((log, offset), &new_key[..])?;
                    moved += 1;
                }
                _ => {
                    by_log.remove((log, offset))?;
                    let info = logs.get(log)?.map(|e| e.value());
                    if let Some((live, written)) = info {
                        logs.insert(log, (live.saturating_sub(len), written))?;
                    }
                    dropped += 1;
                }
            }
        }
    }
    txn.delete_table(SLIVERS_V1)?;
    txn.commit()?;
    tracing::info!(moved, dropped, "moved the sliver index to the run layout");
    Ok(())
}

fn record_job(
    metadata: &BlobMetadata,
    record: &HolderRecord,
) -> Result<impl FnOnce(Reply) -> Job + use<>, StoreError> {
    let message = pb::MetadataResponse {
        metadata: Some(metadata.into()),
        holders: record.holders.iter().map(|h| h.clone().into()).collect(),
        holders_epoch: record.epoch,
        holders_repairer: record.repairer.clone().into(),
        content_type: record.content_type.clone(),
    };
    let frame = wire::encode_frame(&message);
    let too_large = frame.len() > MAX_METADATA_LEN * 2;
    let blob_id = metadata.blob_id();
    let record = record.clone();
    if too_large {
        // Never stored: `parse_record` could not read it back.
        return Err(StoreError::TooLarge(frame.len()));
    }
    Ok(move |reply| Job::Record {
        blob_id,
        record,
        frame,
        reply,
    })
}

/// The job that stores a run: `slivers` must be of one index and consecutive segments.
fn slivers_job(
    blob_id: &BlobId,
    index: u16,
    slivers: &[Sliver],
) -> Result<impl FnOnce(Reply) -> Job + use<>, StoreError> {
    let first = slivers.first().map_or(0, |s| s.segment);
    let consecutive = slivers
        .iter()
        .zip(first..)
        .all(|(sliver, segment)| sliver.index == index && sliver.segment == segment);
    if slivers.is_empty() || !consecutive {
        return Err(StoreError::Index(
            "a sliver run must hold one index's slivers of consecutive segments".into(),
        ));
    }
    let payload = encode_payload(slivers)?;
    let key = key(blob_id, index, first);
    let segments = u64::try_from(slivers.len()).map_err(|_| StoreError::TooLarge(slivers.len()))?;
    Ok(move |reply| Job::Slivers {
        key,
        segments,
        payload,
        reply,
    })
}

fn encode_payload(slivers: &[Sliver]) -> Result<Vec<u8>, StoreError> {
    let mut payload = Vec::new();
    for sliver in slivers {
        pb::Sliver::from(sliver)
            .encode_length_delimited(&mut payload)
            .map_err(|e| StoreError::Index(e.to_string()))?;
    }
    if payload.len() > MAX_FRAME_LEN {
        return Err(StoreError::TooLarge(payload.len()));
    }
    Ok(payload)
}

fn parse_record(
    blob_id: &BlobId,
    bytes: &[u8],
) -> Result<(BlobMetadata, HolderRecord), StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        blob_id: *blob_id,
        index: u16::MAX,
        why,
    };
    let record: pb::MetadataResponse =
        wire::decode_frame(bytes, MAX_METADATA_LEN * 2, "MetadataResponse")
            .map_err(|e| corrupt(e.to_string()))?;
    let metadata = record
        .metadata
        .as_ref()
        .ok_or_else(|| corrupt("no metadata".into()))
        .and_then(|m| BlobMetadata::try_from(m).map_err(|e| corrupt(e.to_string())))?;
    metadata
        .check(blob_id)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((
        metadata,
        HolderRecord {
            holders: record.holders.iter().map(|h| h.to_vec()).collect(),
            epoch: record.holders_epoch,
            repairer: record.holders_repairer.to_vec(),
            content_type: content_type::or_none(&record.content_type).to_owned(),
        },
    ))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LogInfo {
    live: u64,
    written: u64,
}

struct ActiveLog {
    number: u32,
    file: File,
    len: u64,
}

/// The one writer: appends records, syncs, commits the index, compacts.
struct Committer {
    db: Arc<Database>,
    log_dir: PathBuf,
    counters: Arc<StoreCounters>,
    config: StoreConfig,
    logs: BTreeMap<u32, LogInfo>,
    active: Option<ActiveLog>,
    /// Logs sealed since the last commit, with their final length.
    sealed: Vec<(u32, u64)>,
    /// No compaction before this instant (set after a failure).
    compaction_paused_until: Option<Instant>,
    next_log: u32,
    /// Index commits since the last durable one exist: their changes are durable only in the logs.
    dirty: bool,
    /// The next commit must be durable: a log was opened since the last durable commit, and a reopen must know
    /// every log that can hold records to replay.
    force_durable: bool,
    last_durable: Instant,
    /// No checkpoint before this instant (set after a failed one).
    checkpoint_retry_at: Option<Instant>,
    /// Bytes appended to logs since the last durable commit: what a reopen after a crash would replay.
    logged_since_durable: u64,
}

impl Committer {
    fn run(mut self, queue: &mpsc::Receiver<Vec<Job>>) {
        loop {
            // Writes first; while none are queued, compact one log after another.
            let first = match queue.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    if self.compact_logged() {
                        continue;
                    }
                    match queue.recv_timeout(self.idle_wait()) {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.checkpoint_if_due();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let mut batch = first;
            let mut bytes = batch
                .iter()
                .map(Job::payload_len)
                .fold(0, usize::saturating_add);
            while bytes < self.config.batch_bytes {
                match queue.try_recv() {
                    Ok(submission) => {
                        bytes = submission
                            .iter()
                            .map(Job::payload_len)
                            .fold(bytes, usize::saturating_add);
                        batch.extend(submission);
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&batch) {
                Ok(answers) => {
                    for (job, answer) in batch.iter().zip(answers) {
                        let _ = job.reply().send(answer);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, jobs = batch.len(), "store commit failed");
                    self.abandon_active();
                    for job in &batch {
                        let _ = job.reply().send(Err(StoreError::Index(error.to_string())));
                    }
                }
            }
            self.checkpoint_if_due();
            self.compact_logged();
        }
        if self.dirty
            && let Err(error) = self.checkpoint()
        {
            tracing::error!(%error, "store checkpoint at close failed; the next open replays the logs");
        }
    }

    /// Makes the index durable when it has been only in the logs for `checkpoint_interval`, or for
    /// `checkpoint_bytes` of them. Runs after the batch's answers went out, so no store request waits for it.
    fn checkpoint_if_due(&mut self) {
        let due = self.dirty
            && (self.last_durable.elapsed() >= self.config.checkpoint_interval
                || self.logged_since_durable >= self.config.checkpoint_bytes)
            && self
                .checkpoint_retry_at
                .is_none_or(|at| Instant::now() >= at);
        if !due {
            return;
        }
        match self.checkpoint() {
            Ok(()) => self.checkpoint_retry_at = None,
            Err(error) => {
                tracing::error!(%error, "store checkpoint failed; retrying in 5 s (the logs keep every write)");
                self.checkpoint_retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
            }
        }
    }

    /// How long the idle committer may wait for work before a checkpoint is due.
    fn idle_wait(&self) -> Duration {
        if !self.dirty {
            return Duration::from_millis(500);
        }
        let due = self
            .config
            .checkpoint_interval
            .saturating_sub(self.last_durable.elapsed());
        let retry = self.checkpoint_retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        due.max(retry).max(Duration::from_millis(1))
    }

    /// One durable index commit of everything committed so far (and of the lengths of logs abandoned since).
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let logs = self.staged_logs();
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(true);
        self.stage_logs(&txn, &logs)?;
        txn.commit()?;
        self.committed_logs(logs);
        self.made_durable();
        Ok(())
    }

    fn made_durable(&mut self) {
        self.dirty = false;
        self.force_durable = false;
        self.last_durable = Instant::now();
        self.logged_since_durable = 0;
        self.counters
            .durable_commits
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Compacts one log if one needs it; returns whether it did. After a failure it waits a minute before
    /// trying again, so a persistent error neither spins nor fills the disk with copies.
    fn compact_logged(&mut self) -> bool {
        if self
            .compaction_paused_until
            .is_some_and(|until| Instant::now() < until)
        {
            return false;
        }
        match self.compact_one() {
            Ok(compacted) => compacted,
            Err(error) => {
                tracing::error!(%error, "store compaction failed; retrying in a minute");
                self.abandon_active();
                self.compaction_paused_until = Some(Instant::now() + Duration::from_secs(60));
                false
            }
        }
    }

    /// Appends a record (header and `payload`) to the active log, opening a new one when it is full; returns
    /// where the payload went.
    fn append(
        &mut self,
        kind: RecordKind,
        key: &Key,
        segments: u64,
        payload: &[u8],
    ) -> Result<Location, StoreError> {
        let header = record_header(kind, key, segments, payload)?;
        let len = u64::try_from(payload.len()).map_err(|_| StoreError::TooLarge(payload.len()))?;
        let record_len = len.saturating_add(HEADER_LEN as u64);
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.len > 0 && a.len.saturating_add(record_len) > self.config.log_size)
            && let Some(full) = self.active.take()
        {
            let path = log_path(&self.log_dir, full.number);
            full.file.sync_data().map_err(io_err(&path))?;
            self.sealed.push((full.number, full.len));
        }
        let active = match &mut self.active {
            Some(active) => active,
            None => {
                let number = self.next_log;
                self.next_log = number
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Index("log numbers exhausted".into()))?;
                let path = log_path(&self.log_dir, number);
                let file = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                sync_dir(&self.log_dir)?;
                self.force_durable = true;
                self.active.insert(ActiveLog {
                    number,
                    file,
                    len: 0,
                })
            }
        };
        let at = active.len;
        let offset = at.saturating_add(HEADER_LEN as u64);
        let path = log_path(&self.log_dir, active.number);
        active
            .file
            .write_all_at(&header, at)
            .map_err(io_err(&path))?;
        active
            .file
            .write_all_at(payload, offset)
            .map_err(io_err(&path))?;
        active.len = offset.saturating_add(len);
        self.logged_since_durable = self.logged_since_durable.saturating_add(record_len);
        Ok((active.number, offset, len))
    }

    /// After a failed commit or compaction: the active log may end in records the index never took (or a
    /// partial one), so later appends go to a fresh log, and the next commit is durable and records the
    /// abandoned log's length. A reopen then never replays those records: they may name slivers removed since.
    fn abandon_active(&mut self) {
        if let Some(active) = self.active.take() {
            self.sealed.push((active.number, active.len));
        }
        self.force_durable = true;
    }

    /// The log table as it will be after the next commit: sealed logs' and the active log's written bytes.
    /// `sealed` is cleared only once a commit took them ([`Committer::committed_logs`]).
    fn staged_logs(&self) -> BTreeMap<u32, LogInfo> {
        let mut logs = self.logs.clone();
        for &(number, len) in &self.sealed {
            logs.entry(number).or_default().written = len;
        }
        if let Some(active) = &self.active {
            logs.entry(active.number).or_default().written = active.len;
        }
        logs
    }

    /// Writes the log table entries that differ from the committed ones, and the next log number.
    fn stage_logs(
        &self,
        txn: &redb::WriteTransaction,
        logs: &BTreeMap<u32, LogInfo>,
    ) -> Result<(), StoreError> {
        let mut log_table = txn.open_table(LOGS)?;
        for (number, info) in logs {
            if self.logs.get(number) != Some(info) {
                log_table.insert(number, (info.live, info.written))?;
            }
        }
        txn.open_table(META)?
            .insert(NEXT_LOG, u64::from(self.next_log))?;
        Ok(())
    }

    /// A commit took `logs`.
    fn committed_logs(&mut self, logs: BTreeMap<u32, LogInfo>) {
        self.logs = logs;
        self.sealed.clear();
    }

    fn sync_active(&self) -> Result<(), StoreError> {
        if let Some(active) = &self.active {
            active
                .file
                .sync_data()
                .map_err(io_err(&log_path(&self.log_dir, active.number)))?;
        }
        Ok(())
    }

    /// One group commit: append every record, sync the log, commit the index, update the mirrors.
    fn commit(&mut self, batch: &[Job]) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
        // A sliver already held is not written again: its bytes are fixed by the blob ID and index, and a peer
        // resending it must not cost a write, an fsync and compaction work.
        // Earlier jobs of the same batch count: a sliver removed before it is stored again must be written.
        // A holder record is logged (for replay) only when the commit may write it: when the record held before
        // the batch would give way to it, or when an earlier job of the batch touched the same blob.
        let (held, log_holders): (Vec<bool>, Vec<bool>) = {
            let txn = self.db.begin_read()?;
            let slivers = txn.open_table(SLIVERS)?;
            let records = txn.open_table(RECORDS)?;
            let mut log_holders = Vec::with_capacity(batch.len());
            let mut touched: std::collections::BTreeSet<BlobId> = Default::default();
            for job in batch {
                log_holders.push(match job {
                    Job::Record {
                        blob_id, record, ..
                    } => {
                        let current = records
                            .get(&blob_id.as_bytes()[..])?
                            .map(|entry| parse_record(blob_id, entry.value()));
                        !touched.insert(*blob_id) || holders_change(current, record).0
                    }
                    _ => false,
                });
            }
            let mut held = Vec::with_capacity(batch.len());
            let mut stored: BTreeMap<Key, bool> = BTreeMap::new();
            let mut removed: std::collections::BTreeSet<IndexPrefix> = Default::default();
            for job in batch {
                held.push(match job {
                    Job::Slivers { key, .. } => {
                        let was = match stored.get(key) {
                            Some(&present) => present,
                            None if removed.contains(&key_prefix(key)) => false,
                            None => slivers.get(&key[..])?.is_some(),
                        };
                        stored.insert(*key, true);
                        was
                    }
                    Job::Remove { prefix, .. } => {
                        stored.retain(|key, _| key_prefix(key) != *prefix);
                        removed.insert(*prefix);
                        false
                    }
                    Job::Record { .. } => false,
                });
            }
            (held, log_holders)
        };
        let started = Instant::now();
        let mut placed = Vec::with_capacity(batch.len());
        for ((job, held), log_holders) in batch.iter().zip(&held).zip(&log_holders) {
            placed.push(match job {
                Job::Slivers {
                    key,
                    segments,
                    payload,
                    ..
                } if !held => Some(self.append(RecordKind::Run, key, *segments, payload)?),
                Job::Record { blob_id, frame, .. } if *log_holders => {
                    self.append(RecordKind::Holders, &record_key(blob_id), 0, frame)?;
                    None
                }
                _ => None,
            });
        }
        let appended = started.elapsed();
        self.sync_active()?;
        #[cfg(test)]
        if tests::commit_fails_in(&self.log_dir) {
            return Err(StoreError::Index("injected commit failure".into()));
        }
        let synced = started.elapsed();
        let mut logs = self.staged_logs();
        let mut answers = Vec::with_capacity(batch.len());
        // The logs now hold every sliver and holder record of the batch, durably: the index commit need not be
        // durable too, as a reopen replays the logs past the last durable commit. A removal has nothing in the
        // logs to replay, so a batch with one is made durable at once.
        let durable =
            self.force_durable || batch.iter().any(|job| matches!(job, Job::Remove { .. }));
        let mut txn = self.db.begin_write()?;
        // Quick repair saves the allocator state for a fast reopen after a crash: only durable commits need it.
        txn.set_quick_repair(durable);
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Index(e.to_string()))?;
        }
        let slivers_held = {
            let mut slivers = txn.open_table(SLIVERS)?;
            let mut by_log = txn.open_table(BY_LOG)?;
            let mut records = txn.open_table(RECORDS)?;
            for ((job, location), held) in batch.iter().zip(&placed).zip(&held) {
                match (job, location) {
                    (
                        Job::Record {
                            blob_id,
                            record,
                            frame,
                            ..
                        },
                        _,
                    ) => {
                        answers.push(Ok(apply_holders(&mut records, blob_id, record, frame)?));
                    }
                    (Job::Slivers { key, segments, .. }, Some(location)) => {
                        apply_run(
                            &mut slivers,
                            &mut by_log,
                            &mut logs,
                            key,
                            *location,
                            *segments,
                        )?;
                        answers.push(Ok(true));
                    }
                    (
                        Job::Remove {
                            prefix,
                            only_if_segments,
                            ..
                        },
                        _,
                    ) => {
                        let mut low = [0u8; 42];
                        low[..34].copy_from_slice(prefix);
                        let mut high = [0xffu8; 42];
                        high[..34].copy_from_slice(prefix);
                        let runs: Vec<(Vec<u8>, RunLocation)> = slivers
                            .range::<&[u8]>(&low[..]..=&high[..])?
                            .map(|entry| entry.map(|(k, v)| (k.value().to_vec(), v.value())))
                            .collect::<Result<_, _>>()?;
                        if let Some(expected) = only_if_segments {
                            let mut held = 0u64;
                            for (key, (_, _, _, segments)) in &runs {
                                match first_segment(key) {
                                    Some(first) if first <= held => {
                                        held = held.max(first.saturating_add(*segments));
                                    }
                                    _ => break,
                                }
                            }
                            if held != *expected {
                                answers.push(Ok(false));
                                continue;
                            }
                        }
                        for (key, (log, offset, len, _)) in runs {
                            slivers.remove(&key[..])?;
                            release(&mut logs, &mut by_log, (log, offset, len))?;
                        }
                        answers.push(Ok(true));
                    }
                    (Job::Slivers { .. }, None) if *held => answers.push(Ok(true)),
                    (Job::Slivers { .. }, None) => {
                        answers.push(Err(StoreError::Index("record not placed".into())));
                    }
                }
            }
            slivers.len()?
        };
        self.stage_logs(&txn, &logs)?;
        let staged = started.elapsed();
        txn.commit()?;
        self.committed_logs(logs);
        if durable {
            self.made_durable();
        } else {
            self.dirty = true;
        }
        tracing::debug!(
            jobs = batch.len(),
            durable,
            append_us = appended.as_micros(),
            sync_us = synced.saturating_sub(appended).as_micros(),
            stage_us = staged.saturating_sub(synced).as_micros(),
            commit_us = started.elapsed().saturating_sub(staged).as_micros(),
            "store group commit"
        );
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.slivers.store(slivers_held, Ordering::Relaxed);
        self.counters
            .bytes
            .store(self.logs.values().map(|l| l.live).sum(), Ordering::Relaxed);
        Ok(answers)
    }

    /// Compacts the emptiest sealed log if the store and that log are below the threshold: its live records move to
    /// the active log in one index transaction, then it is deleted. One log per call, so writes wait at most one
    /// log's copy.
    fn compact_one(&mut self) -> Result<bool, StoreError> {
        let active = self.active.as_ref().map(|a| a.number);
        let percent = u128::from(self.config.compact_live_percent);
        // Only while the store as a whole is emptier than the threshold: compacting a log that is nearly full
        // copies much to free little, so the emptiest logs go first and compaction stops once the bound holds.
        let (live, written) = self.logs.values().fold((0u128, 0u128), |(l, w), info| {
            (l + u128::from(info.live), w + u128::from(info.written))
        });
        if live * 100 >= written * percent {
            return Ok(false);
        }
        let Some((&number, _)) = self
            .logs
            .iter()
            .filter(|&(&number, info)| {
                Some(number) != active
                    && u128::from(info.live) * 100 < u128::from(info.written) * percent
            })
            .min_by_key(|&(_, info)| {
                // Emptiest first: live / written, compared without division.
                (
                    u128::from(info.live) * 1_000_000 / u128::from(info.written.max(1)),
                    info.written,
                )
            })
        else {
            return Ok(false);
        };
        let path = log_path(&self.log_dir, number);
        let records: Vec<(u64, Key)> = {
            let txn = self.db.begin_read()?;
            let by_log = txn.open_table(BY_LOG)?;
            let mut records = Vec::new();
            for entry in by_log.range((number, 0)..=(number, u64::MAX))? {
                let (at, key) = entry?;
                if let Ok(key) = Key::try_from(key.value()) {
                    records.push((at.value().1, key));
                }
            }
            records
        };
        let mut moves = Vec::with_capacity(records.len());
        // Records that cannot be read back (the log vanished or was cut short under us) are lost: their index
        // entries go with the log, and the repair loop sees the slivers as not held.
        let mut lost = Vec::new();
        if !records.is_empty() {
            let file = match File::open(&path) {
                Ok(file) => Some(file),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(cause) => return Err(StoreError::Io { path, cause }),
            };
            let txn = self.db.begin_read()?;
            let slivers = txn.open_table(SLIVERS)?;
            for (offset, key) in records {
                let Some((log, at, len, segments)) = slivers.get(&key[..])?.map(|e| e.value())
                else {
                    continue;
                };
                if log != number || at != offset {
                    continue;
                }
                let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0).min(MAX_FRAME_LEN)];
                let read = match &file {
                    Some(file) if bytes.len() as u64 == len => {
                        file.read_exact_at(&mut bytes, offset)
                    }
                    Some(_) => Err(io::Error::other("record longer than any store request")),
                    None => Err(io::ErrorKind::NotFound.into()),
                };
                match read {
                    Ok(()) => {
                        let to = self.append(RecordKind::Run, &key, segments, &bytes)?;
                        moves.push((key, (number, offset), to, segments));
                    }
                    // Only a log that is gone or cut short loses its records; any other error may pass, so
                    // the compaction is abandoned and nothing is committed.
                    Err(error)
                        if matches!(
                            error.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        tracing::warn!(log = number, offset, %error, "a sliver record is unreadable and is dropped");
                        lost.push(key);
                    }
                    Err(cause) => return Err(StoreError::Io { path, cause }),
                }
            }
            self.sync_active()?;
        }
        let mut logs = self.staged_logs();
        logs.remove(&number);
        let mut moved_bytes = 0u64;
        let slivers_held;
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(true);
        {
            let mut slivers = txn.open_table(SLIVERS)?;
            let mut by_log = txn.open_table(BY_LOG)?;
            for (key, from, to, segments) in &moves {
                slivers.insert(&key[..], (to.0, to.1, to.2, *segments))?;
                by_log.remove(*from)?;
                by_log.insert((to.0, to.1), &key[..])?;
                let info = logs.entry(to.0).or_default();
                info.live = info.live.saturating_add(to.2);
                moved_bytes = moved_bytes.saturating_add(to.2);
            }
            for key in &lost {
                slivers.remove(&key[..])?;
            }
            // Anything left pointing into the log (there should be nothing) goes with it.
            let stale: Vec<(u32, u64)> = by_log
                .range((number, 0)..=(number, u64::MAX))?
                .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                .collect();
            for at in stale {
                by_log.remove(at)?;
            }
            txn.open_table(LOGS)?.remove(number)?;
            slivers_held = slivers.len()?;
        }
        self.stage_logs(&txn, &logs)?;
        // Durable, and so a checkpoint: the log is deleted next, and the index must never point into it again.
        txn.commit()?;
        self.made_durable();
        self.committed_logs(logs);
        self.counters.slivers.store(slivers_held, Ordering::Relaxed);
        self.counters
            .bytes
            .store(self.logs.values().map(|l| l.live).sum(), Ordering::Relaxed);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::Io { path, cause: error });
            }
            _ => {}
        }
        // A removal lost to a crash would leave a leftover, which the next log number keeps from being replayed;
        // syncing the directory spares the disk space too.
        sync_dir(&self.log_dir)?;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .compacted_bytes
            .fetch_add(moved_bytes, Ordering::Relaxed);
        tracing::debug!(log = number, moved_bytes, "compacted a sliver log");
        Ok(true)
    }
}

/// Marks the record at `old` dead: its log loses the live bytes, the reverse map forgets it.
fn release(
    logs: &mut BTreeMap<u32, LogInfo>,
    by_log: &mut redb::Table<'_, (u32, u64), &[u8]>,
    (log, offset, len): Location,
) -> Result<(), StoreError> {
    by_log.remove((log, offset))?;
    if let Some(info) = logs.get_mut(&log) {
        info.live = info.live.saturating_sub(len);
    }
    Ok(())
}

/// How long a failed checkpoint waits before the next try.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);

/// The key a holder record is logged under: the blob ID, then zeros.
fn record_key(blob_id: &BlobId) -> Key {
    let mut key = [0u8; 42];
    key[..32].copy_from_slice(blob_id.as_bytes());
    key
}

/// Whether `record` is written over the `current` one, and whether it is the one held afterwards.
fn holders_change(
    current: Option<Result<(BlobMetadata, HolderRecord), StoreError>>,
    record: &HolderRecord,
) -> (bool, bool) {
    match current {
        None | Some(Err(_)) => (true, true),
        Some(Ok((_, current))) if current == *record => (false, true),
        Some(Ok((_, current))) => {
            let newer = record.supersedes(&current);
            (newer, newer)
        }
    }
}

/// Stores a blob's holder record if it supersedes the one held; returns whether it is now the one held.
fn apply_holders(
    records: &mut redb::Table<'_, &[u8], &[u8]>,
    blob_id: &BlobId,
    record: &HolderRecord,
    frame: &[u8],
) -> Result<bool, StoreError> {
    let current = records
        .get(&blob_id.as_bytes()[..])?
        .map(|entry| parse_record(blob_id, entry.value()));
    let (write, adopted) = holders_change(current, record);
    if write {
        records.insert(&blob_id.as_bytes()[..], frame)?;
    }
    Ok(adopted)
}

/// Points `key` at the run at `location`; the run it replaces (if any) becomes dead space.
fn apply_run(
    slivers: &mut redb::Table<'_, &[u8], RunLocation>,
    by_log: &mut redb::Table<'_, (u32, u64), &[u8]>,
    logs: &mut BTreeMap<u32, LogInfo>,
    key: &Key,
    (log, offset, len): Location,
    segments: u64,
) -> Result<(), StoreError> {
    let old = slivers
        .insert(&key[..], (log, offset, len, segments))?
        .map(|e| e.value());
    if let Some((old_log, old_offset, old_len, _)) = old {
        release(logs, by_log, (old_log, old_offset, old_len))?;
    }
    by_log.insert((log, offset), &key[..])?;
    let info = logs.entry(log).or_default();
    info.live = info.live.saturating_add(len);
    Ok(())
}

/// Replays what the logs hold past the index's last durable commit: records appended after it (the index
/// commits that followed were not durable and a crash lost them), stopping in each log at the first record that
/// is not whole (a torn tail). Logs the index knows are read from their durable length; an unknown log numbered
/// at or past `next_log_mark` (opened after that commit), from the start. One durable transaction; returns how
/// many records it replayed.
fn recover(db: &Database, log_dir: &Path, next_log_mark: u64) -> Result<u64, StoreError> {
    let known = load_logs(db)?;
    let mut todo = Vec::new();
    for entry in fs::read_dir(log_dir).map_err(io_err(log_dir))?.flatten() {
        let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let len = entry.metadata().map_err(io_err(&path))?.len();
        match known.get(&number) {
            Some(info) if len > info.written => todo.push((number, info.written, len)),
            Some(_) => {}
            None if u64::from(number) >= next_log_mark => todo.push((number, 0, len)),
            None => {}
        }
    }
    if todo.is_empty() {
        return Ok(0);
    }
    todo.sort_unstable();
    let mut logs = known.clone();
    let mut replayed = 0u64;
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(true);
    {
        let mut slivers = txn.open_table(SLIVERS)?;
        let mut by_log = txn.open_table(BY_LOG)?;
        let mut records = txn.open_table(RECORDS)?;
        for (number, from, len) in todo {
            let path = log_path(log_dir, number);
            let file = File::open(&path).map_err(io_err(&path))?;
            let mut at = from;
            loop {
                let record = match read_record(&file, at, len) {
                    Ok(Some(record)) => record,
                    // Not a whole record: a torn, unacknowledged write if nothing whole follows it; damage
                    // (bit rot) if something does, and the records after it are still good.
                    Ok(None) => match next_whole_record(&file, at, len) {
                        Ok(Some(next)) => {
                            tracing::error!(
                                log = number,
                                offset = at,
                                bytes = next - at,
                                "damaged bytes in a sliver log are skipped; slivers logged in them are \
                                 not held, and the repair loop will see that"
                            );
                            at = next;
                            continue;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::error!(log = number, offset = at, %error, "a sliver log cannot be read past this point; its later records are not replayed");
                            break;
                        }
                    },
                    Err(error) => {
                        tracing::error!(log = number, offset = at, %error, "a sliver log cannot be read past this point; its later records are not replayed");
                        break;
                    }
                };
                match record.kind {
                    RecordKind::Run => apply_run(
                        &mut slivers,
                        &mut by_log,
                        &mut logs,
                        &record.key,
                        (number, record.payload_at, record.payload_len()),
                        record.segments,
                    )?,
                    RecordKind::Holders => {
                        let blob_id = BlobId::from_slice(&record.key[..32]).ok();
                        match blob_id
                            .and_then(|id| parse_record(&id, &record.payload).ok().map(|r| (id, r)))
                        {
                            Some((id, (_, holders))) => {
                                apply_holders(&mut records, &id, &holders, &record.payload)?;
                            }
                            None => tracing::warn!(
                                log = number,
                                offset = at,
                                "a logged holder record does not parse and is not replayed"
                            ),
                        }
                    }
                }
                replayed += 1;
                at = record.end();
            }
            if at < len {
                tracing::info!(
                    log = number,
                    offset = at,
                    bytes = len - at,
                    "a sliver log ends in bytes that are not a whole record (an unacknowledged write cut \
                     short by a crash); they are ignored"
                );
            }
            match logs.get_mut(&number) {
                Some(info) => info.written = info.written.max(at),
                // A new log with nothing whole in it stays unknown, and the open removes it.
                None if at > 0 => {
                    logs.insert(
                        number,
                        LogInfo {
                            live: 0,
                            written: at,
                        },
                    );
                }
                None => {}
            }
        }
        let mut log_table = txn.open_table(LOGS)?;
        for (number, info) in &logs {
            if known.get(number) != Some(info) {
                log_table.insert(number, (info.live, info.written))?;
            }
        }
    }
    txn.commit()?;
    if replayed > 0 {
        tracing::info!(
            records = replayed,
            "replayed sliver log records the index had not made durable"
        );
    }
    Ok(replayed)
}

/// Whether a log in `log_dir` starts with a record header (the layout with a write-ahead log).
fn holds_records(log_dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(log_dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".log"))
            && File::open(entry.path()).is_ok_and(|file| {
                let mut magic = [0u8; RECORD_MAGIC.len()];
                file.read_exact_at(&mut magic, 0).is_ok() && magic == RECORD_MAGIC
            })
    })
}

/// A whole record read back from a log.
struct LogRecord {
    kind: RecordKind,
    key: Key,
    segments: u64,
    payload_at: u64,
    payload: Vec<u8>,
}

impl LogRecord {
    fn payload_len(&self) -> u64 {
        u64::try_from(self.payload.len()).unwrap_or(u64::MAX)
    }

    fn end(&self) -> u64 {
        self.payload_at.saturating_add(self.payload_len())
    }
}

/// The record at `at` of a log `len` bytes long, if a whole one is there (header, length within bounds and the
/// file, checksum).
fn read_record(file: &File, at: u64, len: u64) -> io::Result<Option<LogRecord>> {
    let Some(payload_at) = at.checked_add(HEADER_LEN as u64).filter(|&p| p <= len) else {
        return Ok(None);
    };
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, at)?;
    let Some((kind, key, segments, payload_len)) = parse_header(&header) else {
        return Ok(None);
    };
    let limit = match kind {
        RecordKind::Run => MAX_FRAME_LEN,
        RecordKind::Holders => MAX_METADATA_LEN * 2,
    };
    let Some(size) = usize::try_from(payload_len)
        .ok()
        .filter(|&size| size <= limit && payload_at.saturating_add(payload_len) <= len)
    else {
        return Ok(None);
    };
    let mut payload = vec![0u8; size];
    file.read_exact_at(&mut payload, payload_at)?;
    if record_checksum(&header, &payload)[..] != header[67..] {
        return Ok(None);
    }
    Ok(Some(LogRecord {
        kind,
        key,
        segments,
        payload_at,
        payload,
    }))
}

/// Where the next whole record after `at` starts, if any: the log is searched for the record magic.
fn next_whole_record(file: &File, at: u64, len: u64) -> io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut from = at.saturating_add(1);
    while from < len {
        let want = usize::try_from(len - from).map_or(CHUNK, |rest| rest.min(CHUNK));
        let chunk = &mut buf[..want];
        file.read_exact_at(chunk, from)?;
        for (offset, window) in chunk.windows(RECORD_MAGIC.len()).enumerate() {
            if window == RECORD_MAGIC {
                let candidate = from.saturating_add(u64::try_from(offset).unwrap_or(u64::MAX));
                if read_record(file, candidate, len)?.is_some() {
                    return Ok(Some(candidate));
                }
            }
        }
        // Overlap by the magic's length less one, so a magic across two chunks is found.
        let advance = want.saturating_sub(RECORD_MAGIC.len() - 1).max(1);
        from = from.saturating_add(u64::try_from(advance).unwrap_or(u64::MAX));
    }
    Ok(None)
}

/// Each log's (live, written) bytes as the index has them.
fn load_logs(db: &Database) -> Result<BTreeMap<u32, LogInfo>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(LOGS)?;
    let mut logs = BTreeMap::new();
    for entry in table.iter()? {
        let (number, info) = entry?;
        let (live, written) = info.value();
        logs.insert(number.value(), LogInfo { live, written });
    }
    Ok(logs)
}

/// The slivers for segments `[first, end)` of a run that starts at segment `run_first`, each verified.
fn parse_and_verify(
    bytes: &[u8],
    blob_id: &BlobId,
    index: u16,
    run_first: u64,
    first: u64,
    end: u64,
) -> Result<Vec<Sliver>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        blob_id: *blob_id,
        index,
        why,
    };
    let mut slivers = Vec::new();
    let mut rest = bytes;
    let mut segment = run_first;
    let count = end.saturating_sub(first);
    while !rest.is_empty() && segment < end {
        let (len, prefix) = wire::frame_len(rest, MAX_FRAME_LEN)
            .map_err(|e| corrupt(e.to_string()))?
            .ok_or_else(|| corrupt("truncated frame".into()))?;
        let frame = rest
            .get(..prefix + len)
            .ok_or_else(|| corrupt("truncated frame".into()))?;
        rest = &rest[prefix + len..];
        if segment >= first {
            let message: pb::Sliver = wire::decode_frame(frame, MAX_FRAME_LEN, "Sliver")
                .map_err(|e| corrupt(e.to_string()))?;
            let (id, sliver) =
                <(BlobId, Sliver)>::try_from(message).map_err(|e| corrupt(e.to_string()))?;
            if id != *blob_id || sliver.index != index || sliver.segment != segment {
                return Err(corrupt(format!("frame {segment} holds another sliver")));
            }
            sliver.verify(blob_id).map_err(|e| corrupt(e.to_string()))?;
            slivers.push(sliver);
        }
        segment += 1;
    }
    if u64::try_from(slivers.len()).ok() != Some(count.min(segment.saturating_sub(first)))
        || segment < end
    {
        return Err(corrupt(format!("holds {segment} segments, {end} needed")));
    }
    Ok(slivers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use floe_protocol::BlobParams;
    use floe_protocol::encoder::EncodedBlob;
    use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, EncodingType};

    fn blob(seed: u8, len: usize, shards: u16) -> EncodedBlob {
        let data: Vec<u8> = (0..len)
            .map(|i| u8::try_from((i * 31 + usize::from(seed) * 7) % 251).unwrap())
            .collect();
        let params = BlobParams::new(
            EncodingType::RsSimd,
            shards,
            DEFAULT_SEGMENT_SIZE,
            u64::try_from(len).unwrap(),
        )
        .unwrap();
        EncodedBlob::encode(params, &data).unwrap()
    }

    fn slivers_of(encoded: &EncodedBlob, index: u16) -> Vec<Sliver> {
        (0..encoded.metadata.params().segment_count())
            .map(|s| encoded.sliver(s, index).unwrap())
            .collect()
    }

    fn small_logs() -> StoreConfig {
        StoreConfig {
            log_size: 64 << 10,
            compact_live_percent: 85,
            batch_bytes: 1 << 20,
            index_cache_bytes: 1 << 20,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
        }
    }

    /// Stores whose next commits fail after their records are logged and synced (by log directory).
    static FAILING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(super) fn commit_fails_in(log_dir: &Path) -> bool {
        FAILING.lock().unwrap().iter().any(|d| d == log_dir)
    }

    fn fail_commits(data_dir: &Path, fail: bool) {
        let log_dir = data_dir.join("store/log");
        let mut failing = FAILING.lock().unwrap();
        failing.retain(|d| *d != log_dir);
        if fail {
            failing.push(log_dir);
        }
    }

    #[test]
    fn records_of_a_failed_commit_are_never_replayed_over_a_later_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        let kept = put_blob(&store, 1, 0);
        fail_commits(dir.path(), true);
        let (removed, result) = try_put_blob(&store, 2, 0);
        assert!(result.is_err());
        let id = removed.metadata.blob_id();
        fail_commits(dir.path(), false);
        // The writer tries again (a fresh log), then the index is removed.
        put_blob(&store, 2, 0);
        store.remove_sliver(&id, 0).unwrap();
        let crashed = crash_copy(dir.path());
        drop(store);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 0);
        assert!(
            reopened.indexes(&id).is_empty(),
            "a removed index came back"
        );
        assert_held(&reopened, &kept, 0);
    }

    #[test]
    fn a_log_opened_after_the_last_durable_commit_is_replayed_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        // One record per log: the failed write below opens two logs the durable index never hears of.
        let config = StoreConfig {
            log_size: 1,
            ..no_checkpoints()
        };
        let store = Store::open_with(dir.path(), config).unwrap();
        let first = put_blob(&store, 1, 0);
        fail_commits(dir.path(), true);
        let (encoded, result) = try_put_blob(&store, 2, 0);
        assert!(result.is_err());
        let crashed = crash_copy(dir.path());
        fail_commits(dir.path(), false);
        drop(store);
        let reopened = Store::open_with(crashed.path(), config).unwrap();
        // Never acknowledged, but whole in the logs: kept (the writer was sending it to this holder anyway).
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 2);
        assert_held(&reopened, &first, 0);
        assert_held(&reopened, &encoded, 0);
    }

    #[test]
    fn a_compacted_log_that_comes_back_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            compact_live_percent: 100,
            ..no_checkpoints()
        };
        let gone = {
            let store = Store::open_with(dir.path(), config).unwrap();
            let gone = put_blob(&store, 1, 0);
            store.remove_sliver(&gone.metadata.blob_id(), 0).unwrap();
            gone
        };
        let logs: Vec<PathBuf> = fs::read_dir(dir.path().join("store/log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(logs.len(), 1);
        let log = logs[0].clone();
        let bytes = fs::read(&log).unwrap();
        {
            // Reopened, the log is no longer the active one, holds nothing live and is compacted away.
            let store = Store::open_with(dir.path(), config).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.counters().compactions.load(Ordering::Relaxed) == 0 {
                assert!(Instant::now() < deadline, "no compaction");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(!log.exists());
        // As if its removal had not reached the disk before a crash.
        fs::write(&log, bytes).unwrap();
        let reopened = Store::open_with(dir.path(), config).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 0);
        assert!(reopened.indexes(&gone.metadata.blob_id()).is_empty());
        assert!(!log.exists(), "a leftover log is removed at open");
    }

    /// No checkpoint and no compaction while a test runs: every index commit after the first is only in the
    /// logs, as when a busy node is killed.
    fn no_checkpoints() -> StoreConfig {
        StoreConfig {
            checkpoint_interval: Duration::from_secs(3600),
            checkpoint_bytes: u64::MAX,
            compact_live_percent: 0,
            ..small_logs()
        }
    }

    /// The store's files as a kill -9 would leave them (what the kernel holds for each file), copied while the
    /// store is still open.
    fn crash_copy(data_dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        let log = copy.path().join("store/log");
        fs::create_dir_all(&log).unwrap();
        fs::copy(
            data_dir.join("store/index.redb"),
            copy.path().join("store/index.redb"),
        )
        .unwrap();
        for entry in fs::read_dir(data_dir.join("store/log")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), log.join(entry.file_name())).unwrap();
        }
        copy
    }

    /// Stores blob `seed`'s record and sliver `index` as a writer's store request does.
    fn try_put_blob(
        store: &Store,
        seed: u8,
        index: u16,
    ) -> (EncodedBlob, Result<bool, StoreError>) {
        let encoded = blob(seed, 10_000, 4);
        let result = store.put_record_and_slivers(
            &encoded.metadata,
            &HolderRecord::initial(holders(4)),
            index,
            &slivers_of(&encoded, index),
        );
        (encoded, result)
    }

    fn put_blob(store: &Store, seed: u8, index: u16) -> EncodedBlob {
        let (encoded, result) = try_put_blob(store, seed, index);
        result.unwrap();
        encoded
    }

    fn assert_held(store: &Store, encoded: &EncodedBlob, index: u16) {
        let id = encoded.metadata.blob_id();
        assert_eq!(store.indexes(&id), vec![index], "blob {id}");
        let (_, record) = store.metadata_record(&id).unwrap();
        assert_eq!(record, HolderRecord::initial(holders(4)));
        let count = encoded.metadata.params().segment_count();
        assert_eq!(
            store.read_slivers(&id, index, 0, count).unwrap(),
            slivers_of(encoded, index)
        );
    }

    #[test]
    fn acknowledged_writes_survive_a_crash_before_the_index_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        // The first write opens a log, so its commit is durable; the nine after it are only in the log.
        let blobs: Vec<EncodedBlob> = (0..10u8).map(|seed| put_blob(&store, seed, 1)).collect();
        assert_eq!(store.counters().durable_commits.load(Ordering::Relaxed), 1);
        let crashed = crash_copy(dir.path());
        drop(store);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        // Each of the nine logged a run and a holder record.
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 18);
        for encoded in &blobs {
            assert_held(&reopened, encoded, 1);
        }
        // The replay was made durable: another crash replays only what came after it. Writes go to a new log,
        // whose first commit is durable again.
        let more = [put_blob(&reopened, 10, 2), put_blob(&reopened, 11, 2)];
        let again = crash_copy(crashed.path());
        drop(reopened);
        let reopened = Store::open_with(again.path(), no_checkpoints()).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 2);
        for encoded in &blobs {
            assert_held(&reopened, encoded, 1);
        }
        for encoded in &more {
            assert_held(&reopened, encoded, 2);
        }
    }

    #[test]
    fn a_torn_record_at_the_end_of_a_log_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        let first = put_blob(&store, 1, 0);
        let second = put_blob(&store, 2, 0);
        let last = put_blob(&store, 3, 0);
        let crashed = crash_copy(dir.path());
        drop(store);
        // Cut the last record (the last blob's run) short, then add bytes that are no record at all.
        let log = fs::read_dir(crashed.path().join("store/log"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let len = fs::metadata(&log).unwrap().len();
        let file = OpenOptions::new().write(true).open(&log).unwrap();
        file.set_len(len - 10).unwrap();
        file.write_all_at(&[0u8; 500], len - 10).unwrap();
        drop(file);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        // The second blob's run and record, and the last blob's record: the run is torn.
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 3);
        assert_held(&reopened, &first, 0);
        assert_held(&reopened, &second, 0);
        let id = last.metadata.blob_id();
        assert!(reopened.indexes(&id).is_empty());
        // Written again, it is held, also after a clean reopen.
        put_blob(&reopened, 3, 0);
        drop(reopened);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 0);
        assert_held(&reopened, &last, 0);
    }

    #[test]
    fn damaged_bytes_inside_the_replayed_tail_cost_only_their_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        let first = put_blob(&store, 1, 0);
        let rotted = put_blob(&store, 2, 0);
        let last = put_blob(&store, 3, 0);
        let (log, offset, len, _) = {
            let txn = store.db.begin_read().unwrap();
            let slivers = txn.open_table(SLIVERS).unwrap();
            let at = key(&rotted.metadata.blob_id(), 0, 0);
            slivers.get(&at[..]).unwrap().unwrap().value()
        };
        let crashed = crash_copy(dir.path());
        drop(store);
        let path = log_path(&crashed.path().join("store/log"), log);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0x5a; 16], offset + len / 2).unwrap();
        drop(file);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        // The rotted blob's holder record, then the last blob's record and run; the rotted run is skipped.
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 3);
        assert_held(&reopened, &first, 0);
        assert_held(&reopened, &last, 0);
        assert!(reopened.indexes(&rotted.metadata.blob_id()).is_empty());
    }

    #[test]
    fn removals_are_durable_at_once_and_checkpoints_end_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        let kept = put_blob(&store, 1, 0);
        let removed = put_blob(&store, 2, 0);
        store.remove_sliver(&removed.metadata.blob_id(), 0).unwrap();
        let crashed = crash_copy(dir.path());
        drop(store);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 0);
        assert_held(&reopened, &kept, 0);
        assert!(reopened.indexes(&removed.metadata.blob_id()).is_empty());
        drop(reopened);

        // With a checkpoint after every commit, a crash has nothing to replay.
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            checkpoint_interval: Duration::ZERO,
            ..no_checkpoints()
        };
        let store = Store::open_with(dir.path(), config).unwrap();
        let blobs: Vec<EncodedBlob> = (0..4u8).map(|seed| put_blob(&store, seed, 3)).collect();
        // The checkpoint follows the answer: wait for the committer to get there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.counters().durable_commits.load(Ordering::Relaxed) < 4 {
            assert!(Instant::now() < deadline, "no checkpoint");
            std::thread::sleep(Duration::from_millis(5));
        }
        let crashed = crash_copy(dir.path());
        drop(store);
        let reopened = Store::open_with(crashed.path(), config).unwrap();
        assert_eq!(reopened.counters().replayed.load(Ordering::Relaxed), 0);
        for encoded in &blobs {
            assert_held(&reopened, encoded, 3);
        }
    }

    fn holders(n: u16) -> Vec<PeerKey> {
        (0..n).map(|i| vec![u8::try_from(i).unwrap(); 4]).collect()
    }

    #[test]
    fn a_record_and_its_slivers_share_one_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        // Each store of a record with slivers must cost one commit (one set of fsyncs), never two, however the
        // committer's wake-ups fall: repeat to give a split a chance to show.
        for seed in 0..20u8 {
            let encoded = blob(seed, 10_000, 4);
            let before = store.counters().commits.load(Ordering::Relaxed);
            store
                .put_record_and_slivers(
                    &encoded.metadata,
                    &HolderRecord::initial(holders(4)),
                    1,
                    &slivers_of(&encoded, 1),
                )
                .unwrap();
            let after = store.counters().commits.load(Ordering::Relaxed);
            assert_eq!(after - before, 1, "blob {seed}");
        }
    }

    #[test]
    fn slivers_and_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let encoded = blob(1, 100_000, 12);
        let id = encoded.metadata.blob_id();
        {
            let store = Store::open_with(dir.path(), small_logs()).unwrap();
            assert!(
                store
                    .put_record_and_slivers(
                        &encoded.metadata,
                        &HolderRecord::initial(holders(12)),
                        3,
                        &slivers_of(&encoded, 3)
                    )
                    .unwrap()
            );
            store.put_slivers(&id, 7, &slivers_of(&encoded, 7)).unwrap();
            assert_eq!(store.indexes(&id), vec![3, 7]);
            // Dropped without any shutdown work beyond the committer's: what a kill -9 after the answers leaves.
        }
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        assert_eq!(store.blobs(), vec![id]);
        assert_eq!(store.indexes(&id), vec![3, 7]);
        assert!(store.has(&id, 7) && !store.has(&id, 8));
        assert_eq!(store.counters().slivers.load(Ordering::Relaxed), 2);
        let read = store.read_slivers(&id, 7, 0, 1).unwrap();
        assert_eq!(read, slivers_of(&encoded, 7));
        let (metadata, listed) = store.metadata(&id).unwrap();
        assert_eq!(metadata, encoded.metadata);
        assert_eq!(listed, holders(12));
        assert!(matches!(
            store.read_slivers(&id, 8, 0, 1),
            Err(StoreError::Missing)
        ));
    }

    #[test]
    fn only_a_superseding_holder_list_replaces_the_one_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = blob(2, 1000, 12);
        let id = encoded.metadata.blob_id();
        let first = HolderRecord::initial(holders(12));
        assert!(store.put_record(&encoded.metadata, &first).unwrap());
        let newer = HolderRecord {
            holders: holders(12).into_iter().rev().collect(),
            epoch: 2,
            repairer: vec![1],
            // The label rides along with the list and comes back from the store.
            content_type: "text/html; charset=utf-8".into(),
        };
        assert!(store.put_record(&encoded.metadata, &newer).unwrap());
        let older = HolderRecord {
            epoch: 1,
            ..newer.clone()
        };
        assert!(!store.put_record(&encoded.metadata, &older).unwrap());
        assert_eq!(store.metadata_record(&id).unwrap().1, newer);
        // The writer's list, sent again, does not undo the repair.
        store
            .put_metadata(&encoded.metadata, &first.holders)
            .unwrap();
        assert_eq!(store.metadata_record(&id).unwrap().1, newer);
    }

    #[test]
    fn deleted_slivers_give_their_space_back_and_the_rest_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let blobs: Vec<EncodedBlob> = (0..12).map(|i| blob(i, 120_000, 12)).collect();
        for encoded in &blobs {
            store.put_metadata(&encoded.metadata, &holders(12)).unwrap();
            for index in 0..12 {
                let id = encoded.metadata.blob_id();
                store
                    .put_slivers(&id, index, &slivers_of(encoded, index))
                    .unwrap();
            }
        }
        let live = store.counters().bytes.load(Ordering::Relaxed);
        let before = store.disk_bytes();
        // Delete every index but 0, 5 and 9 (scattered over every log): three in four records go.
        for encoded in &blobs {
            for index in (0..12).filter(|i| ![0, 5, 9].contains(i)) {
                store
                    .remove_sliver(&encoded.metadata.blob_id(), index)
                    .unwrap();
            }
        }
        // Compaction runs after each commit and when idle; one more commit nudges it, then wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let left = store.counters().bytes.load(Ordering::Relaxed);
        assert!(left * 3 < live);
        while store.disk_bytes() > left * 2 + (1 << 20) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let after = store.disk_bytes();
        assert!(store.counters().compactions.load(Ordering::Relaxed) > 0);
        assert!(
            after < before / 2,
            "disk {before} → {after} for {left} live"
        );
        drop(store);
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        for encoded in &blobs {
            let id = encoded.metadata.blob_id();
            assert_eq!(store.indexes(&id), vec![0, 5, 9]);
            for index in [0, 5, 9] {
                assert_eq!(
                    store.read_slivers(&id, index, 0, 1).unwrap(),
                    slivers_of(encoded, index)
                );
            }
        }
        assert_eq!(store.counters().corrupt_found.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn corruption_is_reported_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = blob(3, 50_000, 12);
        let id = encoded.metadata.blob_id();
        store.put_metadata(&encoded.metadata, &holders(12)).unwrap();
        store.put_slivers(&id, 4, &slivers_of(&encoded, 4)).unwrap();
        for entry in fs::read_dir(dir.path().join("store/log")).unwrap() {
            let path = entry.unwrap().path();
            let mut bytes = fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            fs::write(&path, bytes).unwrap();
        }
        assert!(matches!(
            store.read_slivers(&id, 4, 0, 1),
            Err(StoreError::Corrupt { index: 4, .. })
        ));
        assert_eq!(store.counters().corrupt_found.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_vanished_log_loses_its_slivers_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            log_size: 1,
            ..small_logs()
        };
        let store = Store::open_with(dir.path(), config).unwrap();
        let encoded = blob(4, 50_000, 12);
        let id = encoded.metadata.blob_id();
        store.put_metadata(&encoded.metadata, &holders(12)).unwrap();
        // One record per log (log_size 1): the holder record in the first log, index 0 in the second, index 1
        // in the third.
        store.put_slivers(&id, 0, &slivers_of(&encoded, 0)).unwrap();
        store.put_slivers(&id, 1, &slivers_of(&encoded, 1)).unwrap();
        let mut logs: Vec<PathBuf> = fs::read_dir(dir.path().join("store/log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        logs.sort();
        assert_eq!(logs.len(), 3);
        fs::remove_file(&logs[1]).unwrap();
        assert!(matches!(
            store.read_slivers(&id, 0, 0, 1),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            store.read_slivers(&id, 1, 0, 1).unwrap(),
            slivers_of(&encoded, 1)
        );
        // A third store must not fail on the missing log; it does not touch it.
        store.put_slivers(&id, 2, &slivers_of(&encoded, 2)).unwrap();
        assert!(store.has(&id, 2));
    }

    #[test]
    fn a_sliver_sent_again_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = blob(5, 60_000, 12);
        let id = encoded.metadata.blob_id();
        let record = HolderRecord::initial(holders(12));
        let slivers = slivers_of(&encoded, 2);
        store
            .put_record_and_slivers(&encoded.metadata, &record, 2, &slivers)
            .unwrap();
        let log_bytes = || -> u64 {
            fs::read_dir(dir.path().join("store/log"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let (live, logged) = (store.counters().bytes.load(Ordering::Relaxed), log_bytes());
        for _ in 0..20 {
            store
                .put_record_and_slivers(&encoded.metadata, &record, 2, &slivers)
                .unwrap();
        }
        assert_eq!(store.counters().bytes.load(Ordering::Relaxed), live);
        assert_eq!(log_bytes(), logged, "nothing appended to the logs");
        assert_eq!(store.read_slivers(&id, 2, 0, 1).unwrap(), slivers);
    }

    fn segmented_blob(seed: u8, len: usize, shards: u16) -> EncodedBlob {
        let data: Vec<u8> = (0..len)
            .map(|i| u8::try_from((i * 17 + usize::from(seed) * 3) % 253).unwrap())
            .collect();
        let params = BlobParams::new(
            EncodingType::RsSimd,
            shards,
            4096,
            u64::try_from(len).unwrap(),
        )
        .unwrap();
        EncodedBlob::encode(params, &data).unwrap()
    }

    #[test]
    fn a_partial_index_is_removed_only_while_it_holds_what_was_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = segmented_blob(9, 100_000, 4);
        let id = encoded.metadata.blob_id();
        let all = slivers_of(&encoded, 1);
        let record = HolderRecord::initial(holders(4));
        store
            .put_record_and_slivers(&encoded.metadata, &record, 1, &all[..3])
            .unwrap();
        // The delivery resumed since the scan saw 2 segments: the part stays.
        assert!(!store.remove_partial(&id, 1, 2).unwrap());
        assert_eq!(store.segments_held(&id, 1), 3);
        // Still what was seen: it goes, every run of it.
        store.put_slivers(&id, 1, &all[3..5]).unwrap();
        assert!(store.remove_partial(&id, 1, 5).unwrap());
        assert!(!store.has(&id, 1));
        // A part that does not start at segment 0 holds 0 segments and goes as such.
        store.put_slivers(&id, 1, &all[4..6]).unwrap();
        assert_eq!(store.segments_held(&id, 1), 0);
        assert!(store.remove_partial(&id, 1, 0).unwrap());
        assert!(store.indexes(&id).is_empty());
    }

    #[test]
    fn an_index_stored_in_runs_reads_across_them_and_goes_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = segmented_blob(7, 100_000, 4);
        let id = encoded.metadata.blob_id();
        let segments = encoded.metadata.params().segment_count();
        assert!(segments > 10);
        let all = slivers_of(&encoded, 1);
        let record = HolderRecord::initial(holders(4));
        // Runs arrive out of order; a gap keeps the index incomplete.
        store
            .put_record_and_slivers(&encoded.metadata, &record, 1, &all[5..9])
            .unwrap();
        assert_eq!(store.segments_held(&id, 1), 0);
        assert!(store.has(&id, 1));
        store.put_slivers(&id, 1, &all[0..5]).unwrap();
        assert_eq!(store.segments_held(&id, 1), 9);
        assert!(matches!(
            store.read_slivers(&id, 1, 8, 2),
            Err(StoreError::Missing)
        ));
        store.put_slivers(&id, 1, &all[9..]).unwrap();
        assert_eq!(store.segments_held(&id, 1), segments);
        // A run sent again under another cut overlaps; reads still give each segment once.
        store.put_slivers(&id, 1, &all[3..12]).unwrap();
        assert_eq!(store.read_slivers(&id, 1, 0, segments).unwrap(), all);
        assert_eq!(store.read_slivers(&id, 1, 4, 6).unwrap(), all[4..10]);
        assert_eq!(store.indexes(&id), vec![1]);
        // Slivers that are not one index's consecutive segments are refused.
        let mut gappy = all[0..2].to_vec();
        gappy.push(all[3].clone());
        assert!(store.put_slivers(&id, 1, &gappy).is_err());
        assert!(store.put_slivers(&id, 2, &all[0..2]).is_err());
        store.put_slivers(&id, 2, &slivers_of(&encoded, 2)).unwrap();
        store.remove_sliver(&id, 1).unwrap();
        assert!(!store.has(&id, 1));
        assert_eq!(store.segments_held(&id, 1), 0);
        assert_eq!(store.indexes(&id), vec![2]);
        drop(store);
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        assert_eq!(store.indexes(&id), vec![2]);
        assert_eq!(
            store.read_slivers(&id, 2, 0, segments).unwrap(),
            slivers_of(&encoded, 2)
        );
    }

    #[test]
    fn a_store_of_the_first_layout_is_moved_to_runs_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let encoded = segmented_blob(8, 30_000, 4);
        let id = encoded.metadata.blob_id();
        let orphan = segmented_blob(9, 30_000, 4);
        {
            let store = Store::open_with(dir.path(), small_logs()).unwrap();
            store.put_metadata(&encoded.metadata, &holders(4)).unwrap();
            store.put_slivers(&id, 0, &slivers_of(&encoded, 0)).unwrap();
            store.put_slivers(&id, 3, &slivers_of(&encoded, 3)).unwrap();
            // A blob without metadata cannot be served: the migration drops it.
            store
                .put_slivers(&orphan.metadata.blob_id(), 1, &slivers_of(&orphan, 1))
                .unwrap();
        }
        // Rewrite the index as the first layout had it: 34-byte keys, no segment counts.
        {
            let db = Database::create(dir.path().join("store/index.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let runs: Vec<(Vec<u8>, RunLocation)> = txn
                    .open_table(SLIVERS)
                    .unwrap()
                    .iter()
                    .unwrap()
                    .map(|e| {
                        let (k, v) = e.unwrap();
                        (k.value().to_vec(), v.value())
                    })
                    .collect();
                let mut old = txn.open_table(SLIVERS_V1).unwrap();
                let mut by_log = txn.open_table(BY_LOG).unwrap();
                for (key, (log, offset, len, _)) in runs {
                    old.insert(&key[..34], (log, offset, len)).unwrap();
                    by_log.insert((log, offset), &key[..34]).unwrap();
                }
            }
            txn.delete_table(SLIVERS).unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let segments = encoded.metadata.params().segment_count();
        assert_eq!(store.indexes(&id), vec![0, 3]);
        assert_eq!(store.segments_held(&id, 3), segments);
        assert_eq!(
            store.read_slivers(&id, 3, 0, segments).unwrap(),
            slivers_of(&encoded, 3)
        );
        assert!(!store.has(&orphan.metadata.blob_id(), 1));
        drop(store);
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        assert_eq!(store.indexes(&id), vec![0, 3]);
    }

    #[test]
    fn logs_beside_a_lost_index_are_kept_and_the_store_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            log_size: 1,
            ..small_logs()
        };
        let encoded = blob(6, 50_000, 12);
        {
            let store = Store::open_with(dir.path(), config).unwrap();
            for index in 0..3 {
                store
                    .put_slivers(
                        &encoded.metadata.blob_id(),
                        index,
                        &slivers_of(&encoded, index),
                    )
                    .unwrap();
            }
        }
        fs::remove_file(dir.path().join("store/index.redb")).unwrap();
        let error = Store::open_with(dir.path(), config).unwrap_err();
        assert!(error.to_string().contains("knows none of them"), "{error}");
        assert_eq!(
            fs::read_dir(dir.path().join("store/log")).unwrap().count(),
            3
        );

        // One log is refused too: replayed from its start it would bring back what had been removed.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open_with(dir.path(), small_logs()).unwrap();
            let id = encoded.metadata.blob_id();
            store.put_slivers(&id, 0, &slivers_of(&encoded, 0)).unwrap();
            store.remove_sliver(&id, 0).unwrap();
        }
        fs::remove_file(dir.path().join("store/index.redb")).unwrap();
        let error = Store::open_with(dir.path(), small_logs()).unwrap_err();
        assert!(error.to_string().contains("knows none of them"), "{error}");
        assert_eq!(
            fs::read_dir(dir.path().join("store/log")).unwrap().count(),
            1
        );
    }
}
