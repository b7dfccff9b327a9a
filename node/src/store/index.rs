//! What every part of the store shares: the index's tables, the store's error type, its counters and its
//! tuning. A leaf: it depends on no other part of the store.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use floe_protocol::BlobId;
use redb::TableDefinition;

/// (blob ID ‖ sliver index ‖ first segment, big-endian) → (log number, offset, length, segments) of a run.
pub(super) const SLIVERS: TableDefinition<&[u8], (u32, u64, u64, u64)> =
    TableDefinition::new("sliver_runs");
/// The index of the first layout of this store (one record per blob and index, all segments): read once at open
/// and moved into `SLIVERS` as runs from segment 0.
pub(super) const SLIVERS_V1: TableDefinition<&[u8], (u32, u64, u64)> =
    TableDefinition::new("slivers");
/// (log number, offset) → the record's key in `SLIVERS`: what a compaction of that log must move.
pub(super) const BY_LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("by_log");
/// Log number → (live bytes, bytes written).
pub(super) const LOGS: TableDefinition<u32, (u64, u64)> = TableDefinition::new("logs");
/// Blob ID → its `MetadataResponse` (metadata, holder list, epoch, repairer).
pub(super) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// The store's own state; [`NEXT_LOG`] only.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The number the next log opened gets, as of the last durable commit. A log at or past it that the index does
/// not know was opened after that commit and is replayed from its start; one below it is a leftover (a
/// compacted log whose removal did not reach the disk) and must never be replayed.
pub(super) const NEXT_LOG: &str = "next_log";

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
