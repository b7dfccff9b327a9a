//! The sliver logs on disk: run keys, the record header (magic, kind, key, segments, length, checksum), reading
//! one record back, and finding the next whole one after damage. Nothing here touches the index.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use floe_protocol::BlobId;
use floe_protocol::wire::{MAX_FRAME_LEN, MAX_METADATA_LEN};

use super::index::*;

/// A run's key: blob ID ‖ sliver index ‖ first segment, big-endian, so one index's runs sort by segment.
pub(super) type Key = [u8; 42];
/// The part of a key that names one sliver index of one blob.
pub(super) type IndexPrefix = [u8; 34];

pub(super) fn key(blob_id: &BlobId, index: u16, first: u64) -> Key {
    let mut key = [0u8; 42];
    key[..32].copy_from_slice(blob_id.as_bytes());
    key[32..34].copy_from_slice(&index.to_be_bytes());
    key[34..].copy_from_slice(&first.to_be_bytes());
    key
}

pub(super) fn prefix(blob_id: &BlobId, index: u16) -> IndexPrefix {
    let mut prefix = [0u8; 34];
    prefix[..32].copy_from_slice(blob_id.as_bytes());
    prefix[32..].copy_from_slice(&index.to_be_bytes());
    prefix
}

pub(super) fn key_prefix(key: &Key) -> IndexPrefix {
    let mut prefix = [0u8; 34];
    prefix.copy_from_slice(&key[..34]);
    prefix
}

pub(super) fn first_segment(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(34..42)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Marks the start of a logged record; a log of the first record layout (payloads only) never matches it.
pub(super) const RECORD_MAGIC: [u8; 8] = *b"floeLOG1";
/// magic ‖ kind ‖ key ‖ segments ‖ payload length ‖ checksum.
pub(super) const HEADER_LEN: usize = 8 + 1 + 42 + 8 + 8 + 16;

/// What a logged record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordKind {
    /// A run of slivers: the payload is what `SLIVERS` points at.
    Run = 1,
    /// A blob's holder record (a `MetadataResponse` frame); `RECORDS` keeps its own copy, so in the log it is
    /// only there to be replayed.
    Holders = 2,
}

/// The header written before every payload appended to a log, so that a reopen after a crash can replay what
/// the index had not made durable. The checksum (BLAKE3 over the header's other fields and the payload) tells a
/// whole record from a torn one.
pub(super) fn record_header(
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

pub(super) fn record_checksum(header: &[u8; HEADER_LEN], payload: &[u8]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header[..67]);
    hasher.update(payload);
    let mut checksum = [0u8; 16];
    checksum.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    checksum
}

/// A header's fields: kind, key, segments, payload length; `None` if it is not a record header.
pub(super) fn parse_header(header: &[u8; HEADER_LEN]) -> Option<(RecordKind, Key, u64, u64)> {
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

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.to_owned(),
        cause,
    }
}

pub(super) fn log_path(log_dir: &Path, number: u32) -> PathBuf {
    log_dir.join(format!("{number:08}.log"))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A whole record read back from a log.
pub(super) struct LogRecord {
    pub(super) kind: RecordKind,
    pub(super) key: Key,
    pub(super) segments: u64,
    pub(super) payload_at: u64,
    pub(super) payload: Vec<u8>,
}

impl LogRecord {
    pub(super) fn payload_len(&self) -> u64 {
        u64::try_from(self.payload.len()).unwrap_or(u64::MAX)
    }

    pub(super) fn end(&self) -> u64 {
        self.payload_at.saturating_add(self.payload_len())
    }
}

/// The record at `at` of a log `len` bytes long, if a whole one is there (header, length within bounds and the
/// file, checksum).
pub(super) fn read_record(file: &File, at: u64, len: u64) -> io::Result<Option<LogRecord>> {
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
pub(super) fn next_whole_record(file: &File, at: u64, len: u64) -> io::Result<Option<u64>> {
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
