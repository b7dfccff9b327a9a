//! Opening a store: moving an index of the first layout to the run layout, and replaying the logged tail past
//! the last durable commit (a torn record ends a log's replay; a whole record after damage resumes it).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use floe_protocol::BlobId;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::committer::*;
use super::index::*;
use super::log::*;
use super::record::*;

/// Moves an index of the first layout (one record per blob and index holding every segment) into runs from
/// segment 0, in one transaction. A record whose blob has no readable metadata cannot be served and is dropped
/// (compaction reclaims it).
pub(super) fn migrate_v1(db: &Database) -> Result<(), StoreError> {
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

/// Replays what the logs hold past the index's last durable commit: records appended after it (the index
/// commits that followed were not durable and a crash lost them), stopping in each log at the first record that
/// is not whole (a torn tail). Logs the index knows are read from their durable length; an unknown log numbered
/// at or past `next_log_mark` (opened after that commit), from the start. One durable transaction; returns how
/// many records it replayed.
pub(super) fn recover(
    db: &Database,
    log_dir: &Path,
    next_log_mark: u64,
) -> Result<u64, StoreError> {
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
pub(super) fn holds_records(log_dir: &Path) -> bool {
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
