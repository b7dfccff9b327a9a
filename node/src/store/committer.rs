//! The committer thread: group commits (append to the active log, one fdatasync, one index transaction),
//! checkpoints, and compaction of sealed logs. It owns the write path and the logs' live-byte accounting.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use floe_protocol::wire::{MAX_FRAME_LEN, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata, Sliver};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::index::*;
use super::log::*;
use super::record::*;

/// A record's place: log number, offset, length.
pub(super) type Location = (u32, u64, u64);
/// A run's place and size: log number, offset, length, segments.
pub(super) type RunLocation = (u32, u64, u64, u64);

pub(super) type Reply = mpsc::SyncSender<Result<bool, StoreError>>;

/// Work for the committer.
pub(super) enum Job {
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

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Record { .. } => "Record",
            Job::Slivers { .. } => "Slivers",
            Job::Remove { .. } => "Remove",
        })
    }
}

pub(super) fn record_job(
    metadata: &BlobMetadata,
    record: &HolderRecord,
) -> Result<impl FnOnce(Reply) -> Job + use<>, StoreError> {
    // The store works out former holders itself (`holders_change`); an offered record's are never taken.
    let record = HolderRecord {
        former: Vec::new(),
        ..record.clone()
    };
    let frame = record_frame(metadata, &record);
    let too_large = frame.len() > MAX_METADATA_LEN * 2;
    let blob_id = metadata.blob_id();
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
pub(super) fn slivers_job(
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

pub(super) fn encode_payload(slivers: &[Sliver]) -> Result<Vec<u8>, StoreError> {
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LogInfo {
    pub(super) live: u64,
    pub(super) written: u64,
}

pub(super) struct ActiveLog {
    pub(super) number: u32,
    pub(super) file: File,
    pub(super) len: u64,
}

/// The one writer: appends records, syncs, commits the index, compacts.
pub(super) struct Committer {
    pub(super) db: Arc<Database>,
    pub(super) log_dir: PathBuf,
    pub(super) counters: Arc<StoreCounters>,
    pub(super) config: StoreConfig,
    pub(super) logs: BTreeMap<u32, LogInfo>,
    pub(super) active: Option<ActiveLog>,
    /// Logs sealed since the last commit, with their final length.
    pub(super) sealed: Vec<(u32, u64)>,
    /// No compaction before this instant (set after a failure).
    pub(super) compaction_paused_until: Option<Instant>,
    pub(super) next_log: u32,
    /// Index commits since the last durable one exist: their changes are durable only in the logs.
    pub(super) dirty: bool,
    /// The next commit must be durable: a log was opened since the last durable commit, and a reopen must know
    /// every log that can hold records to replay.
    pub(super) force_durable: bool,
    pub(super) last_durable: Instant,
    /// No checkpoint before this instant (set after a failed one).
    pub(super) checkpoint_retry_at: Option<Instant>,
    /// Bytes appended to logs since the last durable commit: what a reopen after a crash would replay.
    pub(super) logged_since_durable: u64,
}

/// The least dead bytes an active log must hold before compaction seals it to reclaim them: less frees too
/// little to be worth a new log. Small, because what a quiet node leaves in its active log after its blobs expire
/// or are deleted stays on its disk until then.
const MIN_RECLAIM_BYTES: u64 = 1 << 20;

impl Committer {
    pub(super) fn run(mut self, queue: &mpsc::Receiver<Vec<Job>>) {
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
                        !touched.insert(*blob_id) || holders_change(current, record).0.is_some()
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
        if super::tests::commit_fails_in(&self.log_dir) {
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

    /// With no sealed log to compact while the store is over its bound, the dead bytes are in the active log: a
    /// store whose whole life fits in one log (a small node, slivers expiring or handed off) would otherwise
    /// never get them back. Seals it, once it holds at least [`MIN_RECLAIM_BYTES`] of dead bytes and is below the
    /// threshold, so the next call compacts it; returns whether it did.
    fn seal_mostly_dead_active(&mut self, percent: u128) -> Result<bool, StoreError> {
        let Some(number) = self.active.as_ref().map(|a| a.number) else {
            return Ok(false);
        };
        let Some(info) = self.logs.get(&number) else {
            return Ok(false);
        };
        if info.written.saturating_sub(info.live) < MIN_RECLAIM_BYTES
            || u128::from(info.live) * 100 >= u128::from(info.written) * percent
        {
            return Ok(false);
        }
        if let Some(active) = self.active.take() {
            let path = log_path(&self.log_dir, active.number);
            active.file.sync_data().map_err(io_err(&path))?;
            self.sealed.push((active.number, active.len));
            tracing::debug!(
                log = active.number,
                "sealed a mostly dead active log for compaction"
            );
        }
        Ok(true)
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
            return self.seal_mostly_dead_active(percent);
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
pub(super) fn release(
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
pub(super) const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);

/// Points `key` at the run at `location`; the run it replaces (if any) becomes dead space.
pub(super) fn apply_run(
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

/// Each log's (live, written) bytes as the index has them.
pub(super) fn load_logs(db: &Database) -> Result<BTreeMap<u32, LogInfo>, StoreError> {
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
