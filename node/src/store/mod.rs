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
//! This module decides nothing about protocol: which holder list wins comes from `floe_protocol::holders`.
//! Files: `log` (the on-disk record format), `committer` (the write path, checkpoints, compaction), `record`
//! (holder records), `recover` (opening: migration and replay); this file has the store's API and its reads.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use floe_protocol::placement::PeerKey;
use floe_protocol::wire::{self, MAX_FRAME_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata, Sliver};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

mod committer;
mod index;
mod log;
mod names;
mod record;
mod recover;

use committer::{Committer, Job, Reply, RunLocation, load_logs, record_job, slivers_job};
use index::{BY_LOG, LOGS, META, NEXT_LOG, RECORDS, SLIVERS};
pub use index::{StoreConfig, StoreCounters, StoreError};
use log::{first_segment, io_err, key, log_path, prefix};
pub use record::HolderRecord;
use record::parse_record;
use recover::{holds_records, migrate_v1, recover};

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
            txn.open_table(names::NAMES)?;
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
    use super::index::SLIVERS_V1;
    use super::*;
    use floe_protocol::BlobParams;
    use floe_protocol::encoder::EncodedBlob;
    use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, EncodingType};
    use std::fs::OpenOptions;
    use std::time::Duration;

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

    pub(in crate::store) fn commit_fails_in(log_dir: &Path) -> bool {
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
    fn a_superseding_list_keeps_the_holders_it_drops_as_former_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), no_checkpoints()).unwrap();
        let encoded = blob(2, 1000, 12);
        let id = encoded.metadata.blob_id();
        let former = |peer: u8, index: u16| floe_protocol::holders::FormerHolder {
            peer: vec![peer; 4],
            indexes: vec![index],
        };
        let mut first = HolderRecord::initial(holders(12));
        // Former holders offered with a list are never taken: only this node's own lists say who they are.
        first.former = vec![former(99, 0)];
        assert!(store.put_record(&encoded.metadata, &first).unwrap());
        assert!(store.metadata_record(&id).unwrap().1.former.is_empty());
        // A repair moves indexes 0 and 1 to a new peer: their holders become former ones, with those indexes.
        let mut moved = holders(12);
        moved[0] = vec![50; 4];
        moved[1] = vec![50; 4];
        let repaired = HolderRecord {
            holders: moved.clone(),
            epoch: 1,
            repairer: vec![2; 4],
            ..HolderRecord::initial(Vec::new())
        };
        assert!(store.put_record(&encoded.metadata, &repaired).unwrap());
        assert_eq!(
            store.metadata_record(&id).unwrap().1.former,
            vec![former(0, 0), former(1, 1)]
        );
        // An older list changes nothing; a later one that takes peer 0 back leaves only peer 1.
        assert!(!store.put_record(&encoded.metadata, &first).unwrap());
        moved[0] = vec![0; 4];
        let back = HolderRecord {
            holders: moved,
            epoch: 2,
            ..repaired.clone()
        };
        assert!(store.put_record(&encoded.metadata, &back).unwrap());
        assert_eq!(
            store.metadata_record(&id).unwrap().1.former,
            vec![former(1, 1)]
        );
        // Replaying the log after a crash gives the same former holders; answers to peers carry none.
        let crashed = crash_copy(dir.path());
        drop(store);
        let reopened = Store::open_with(crashed.path(), no_checkpoints()).unwrap();
        let (metadata, record) = reopened.metadata_record(&id).unwrap();
        assert_eq!(record.former, vec![former(1, 1)]);
        assert!(record.answer(&metadata).former_holders.is_empty());
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
            end_epoch: floe_protocol::lifetime::FOREVER,
            claims: Default::default(),
            former: Vec::new(),
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
    fn end_epochs_only_grow_whichever_list_wins_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = blob(3, 1000, 12);
        let (metadata, id) = (&encoded.metadata, encoded.metadata.blob_id());
        let end = |store: &Store| {
            let held = store.metadata_record(&id).unwrap().1;
            (held.epoch, held.end_epoch)
        };
        let first = HolderRecord::initial(holders(12)).with_end_epoch(10);
        assert!(store.put_record(metadata, &first).unwrap());
        // The writer's list again, with a later end: an extension.
        assert!(
            store
                .put_record(metadata, &first.clone().with_end_epoch(20))
                .unwrap()
        );
        assert_eq!(end(&store), (0, 20));
        // A repaired list made before the extension reached its repairer: its list wins, the end stays.
        let repaired = HolderRecord {
            holders: holders(12).into_iter().rev().collect(),
            epoch: 1,
            repairer: vec![1],
            content_type: String::new(),
            end_epoch: 10,
            claims: Default::default(),
            former: Vec::new(),
        };
        assert!(store.put_record(metadata, &repaired).unwrap());
        assert_eq!(end(&store), (1, 20));
        // The writer's list with a later end still: the list stays, the end grows; a shorter end changes nothing.
        assert!(
            !store
                .put_record(metadata, &first.clone().with_end_epoch(30))
                .unwrap()
        );
        assert_eq!(end(&store), (1, 30));
        assert!(store.put_record(metadata, &repaired).unwrap());
        assert_eq!(end(&store), (1, 30));
        // Replaying the logged records in order gives the same record.
        drop(store);
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        assert_eq!(end(&store), (1, 30));
        assert_eq!(
            store.metadata_record(&id).unwrap().1.holders,
            repaired.holders
        );
    }

    /// Claims and releases merge by union whichever list wins, a release survives a writer's list sent again,
    /// and the record reads back the same after a reopen (replay).
    #[test]
    fn claims_and_releases_merge_whichever_list_wins_and_survive_a_reopen() {
        use floe_protocol::deletion::{Claims, Token, claim_of};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let encoded = blob(5, 1000, 12);
        let (metadata, id) = (&encoded.metadata, encoded.metadata.blob_id());
        let (a, b) = (Token([1; 32]), Token([2; 32]));
        let first =
            HolderRecord::initial(holders(12)).with_claims(Claims::deletable(claim_of(&id, &a)));
        assert!(store.put_record(metadata, &first).unwrap());
        // A second writer's list (the same epoch) adds its claim.
        let second =
            HolderRecord::initial(holders(12)).with_claims(Claims::deletable(claim_of(&id, &b)));
        store.put_record(metadata, &second).unwrap();
        let held = |store: &Store| store.metadata_record(&id).unwrap().1.claims;
        assert_eq!(held(&store).count(), 2);
        // A repaired list that knows only the first claim, released: its list wins, both claims stay.
        let mut released = first.claims.clone();
        released.release(&id, a).unwrap();
        let repaired = HolderRecord {
            holders: holders(12).into_iter().rev().collect(),
            epoch: 1,
            repairer: vec![1],
            ..HolderRecord::initial(Vec::new())
        }
        .with_claims(released);
        assert!(store.put_record(metadata, &repaired).unwrap());
        assert_eq!((held(&store).count(), held(&store).unreleased()), (2, 1));
        // The first writer's list again (a late store) cannot undo the release.
        store.put_record(metadata, &first).unwrap();
        assert_eq!(held(&store).unreleased(), 1);
        let mut all = held(&store);
        all.release(&id, b).unwrap();
        store
            .put_record(
                metadata,
                &store.metadata_record(&id).unwrap().1.with_claims(all),
            )
            .unwrap();
        assert!(store.metadata_record(&id).unwrap().1.is_deleted(0));
        drop(store);
        let store = Store::open_with(dir.path(), small_logs()).unwrap();
        let record = store.metadata_record(&id).unwrap().1;
        assert!(record.is_deleted(0));
        assert_eq!(record.holders, repaired.holders);
    }

    /// A store whose whole life fits in its active log (a small node whose blobs expire) gets the space back too:
    /// compaction seals the mostly dead active log and copies what lives.
    #[test]
    fn a_mostly_dead_active_log_is_sealed_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            log_size: 64 << 20,
            ..small_logs()
        };
        let store = Store::open_with(dir.path(), config).unwrap();
        let blobs: Vec<EncodedBlob> = (0..8).map(|i| blob(i, 1_500_000, 4)).collect();
        for encoded in &blobs {
            store.put_metadata(&encoded.metadata, &holders(4)).unwrap();
            for index in 0..4 {
                let id = encoded.metadata.blob_id();
                store
                    .put_slivers(&id, index, &slivers_of(encoded, index))
                    .unwrap();
            }
        }
        let before = store.disk_bytes();
        assert!(before > 8 << 20, "{before}");
        for encoded in &blobs[1..] {
            for index in 0..4 {
                store
                    .remove_sliver(&encoded.metadata.blob_id(), index)
                    .unwrap();
            }
        }
        let left = store.counters().bytes.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.disk_bytes() > left * 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            store.disk_bytes() <= left * 2,
            "disk {before} → {} for {left} live",
            store.disk_bytes()
        );
        drop(store);
        let store = Store::open_with(dir.path(), config).unwrap();
        let id = blobs[0].metadata.blob_id();
        assert_eq!(store.indexes(&id), vec![0, 1, 2, 3]);
        assert_eq!(
            store.read_slivers(&id, 2, 0, 1).unwrap(),
            slivers_of(&blobs[0], 2)
        );
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
