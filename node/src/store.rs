//! The local sliver store: what this node holds, durably, and serves only after re-verifying it.
//!
//! Layout under `<data-dir>/blobs/<blob id>/`:
//! - `meta`: the blob's metadata and its holder list with the list's epoch (a length-prefixed
//!   `MetadataResponse`); repair and hand-off replace the list when a newer epoch arrives;
//! - `<index>`: every segment's sliver of that index, as length-prefixed `Sliver` frames in segment order.
//!
//! Every file is written to a temporary name, fsynced, renamed into place and its directory fsynced before the
//! store reports success, so an acknowledged sliver survives kill -9. Every read verifies each sliver against
//! the blob ID (the Merkle proof is the checksum): corruption is counted, logged and reported as missing,
//! never served. All methods block; call them from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use floe_protocol::placement::PeerKey;
use floe_protocol::wire::{self, MAX_FRAME_LEN, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata, Sliver};
use prost::Message;

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
    /// The store does not hold it.
    #[error("not stored here")]
    Missing,
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

/// Counters the node reports.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Sliver indexes held (one per blob and index).
    pub slivers: AtomicU64,
    /// Bytes of sliver files held.
    pub bytes: AtomicU64,
    /// Corrupt sliver files found on read.
    pub corrupt_found: AtomicU64,
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
}

impl HolderRecord {
    /// The writer's list.
    pub fn initial(holders: Vec<PeerKey>) -> Self {
        Self {
            holders,
            epoch: 0,
            repairer: Vec::new(),
        }
    }

    /// Whether this list replaces `current` (protocol rule: higher epoch, then lower repairer).
    pub fn supersedes(&self, current: &HolderRecord) -> bool {
        floe_protocol::repair::supersedes(
            self.epoch,
            &self.repairer,
            current.epoch,
            &current.repairer,
        )
    }
}

/// The store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    counters: StoreCounters,
    /// Serialises read-modify-write of metadata records.
    meta_lock: std::sync::Mutex<()>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Writes `bytes` to `path` durably: temporary file, fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

impl Store {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("blobs");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let store = Self {
            root,
            counters: StoreCounters::default(),
            meta_lock: std::sync::Mutex::new(()),
        };
        // Count what is held; leftovers of interrupted writes are removed.
        for blob in fs::read_dir(&store.root)
            .map_err(io_err(&store.root))?
            .flatten()
        {
            for file in fs::read_dir(blob.path()).into_iter().flatten().flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = fs::remove_file(&path);
                } else if name.parse::<u16>().is_ok() {
                    store.counters.slivers.fetch_add(1, Ordering::Relaxed);
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    store.counters.bytes.fetch_add(len, Ordering::Relaxed);
                }
            }
        }
        Ok(store)
    }

    /// The counters.
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    fn blob_dir(&self, blob_id: &BlobId) -> PathBuf {
        self.root.join(blob_id.to_string())
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
        let _guard = self.meta_lock.lock().unwrap_or_else(|p| p.into_inner());
        let blob_id = metadata.blob_id();
        let path = self.blob_dir(&blob_id).join("meta");
        if path.exists() {
            match self.metadata_record(&blob_id) {
                Ok((_, current)) if current == *record || !record.supersedes(&current) => {
                    return Ok(current == *record);
                }
                Ok(_) => {}
                Err(_) => self.drop_bad_metadata(&blob_id),
            }
        }
        let message = pb::MetadataResponse {
            metadata: Some(metadata.into()),
            holders: record.holders.iter().map(|h| h.clone().into()).collect(),
            holders_epoch: record.epoch,
            holders_repairer: record.repairer.clone().into(),
        };
        write_durably(&path, &wire::encode_frame(&message))?;
        Ok(true)
    }

    /// The blobs this node has a record of, in blob ID order.
    pub fn blobs(&self) -> Vec<BlobId> {
        let mut ids: Vec<BlobId> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort();
        ids
    }

    /// The sliver indexes of a blob held here, ascending.
    pub fn indexes(&self, blob_id: &BlobId) -> Vec<u16> {
        let mut indexes: Vec<u16> = fs::read_dir(self.blob_dir(blob_id))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        indexes.sort_unstable();
        indexes
    }

    /// Deletes sliver `index` of a blob (handed off to its new holder).
    pub fn remove_sliver(&self, blob_id: &BlobId, index: u16) -> Result<(), StoreError> {
        let path = self.blob_dir(blob_id).join(index.to_string());
        let len = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(cause) => return Err(StoreError::Io { path, cause }),
        };
        fs::remove_file(&path).map_err(io_err(&path))?;
        let _ = self
            .counters
            .slivers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        let _ = self
            .counters
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(len))
            });
        Ok(())
    }

    /// Removes a metadata record that no longer parses, so the next store request can write a good one.
    fn drop_bad_metadata(&self, blob_id: &BlobId) {
        let _ = fs::remove_file(self.blob_dir(blob_id).join("meta"));
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
        let path = self.blob_dir(blob_id).join("meta");
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing);
            }
            Err(cause) => return Err(StoreError::Io { path, cause }),
        };
        let corrupt = |why: String| StoreError::Corrupt {
            blob_id: *blob_id,
            index: u16::MAX,
            why,
        };
        let record: pb::MetadataResponse =
            wire::decode_frame(&bytes, MAX_METADATA_LEN * 2, "MetadataResponse")
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
            },
        ))
    }

    /// Whether sliver `index` of the blob is held.
    pub fn has(&self, blob_id: &BlobId, index: u16) -> bool {
        self.blob_dir(blob_id).join(index.to_string()).exists()
    }

    /// Stores every segment's sliver of `index` (already verified by the caller), durably.
    pub fn put_slivers(
        &self,
        blob_id: &BlobId,
        index: u16,
        slivers: &[Sliver],
    ) -> Result<(), StoreError> {
        let path = self.blob_dir(blob_id).join(index.to_string());
        let mut bytes = Vec::new();
        for sliver in slivers {
            pb::Sliver::from(sliver)
                .encode_length_delimited(&mut bytes)
                .map_err(|e| StoreError::Io {
                    path: path.clone(),
                    cause: io::Error::other(e),
                })?;
        }
        let existed = path.exists();
        write_durably(&path, &bytes)?;
        if !existed {
            self.counters.slivers.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes.fetch_add(
                u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        Ok(())
    }

    /// The slivers of `index` for segments `[first, first + count)`, each verified against the blob ID.
    pub fn read_slivers(
        &self,
        blob_id: &BlobId,
        index: u16,
        first: u64,
        count: u64,
    ) -> Result<Vec<Sliver>, StoreError> {
        let path = self.blob_dir(blob_id).join(index.to_string());
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing);
            }
            Err(cause) => return Err(StoreError::Io { path, cause }),
        };
        let result = parse_and_verify(&bytes, blob_id, index, first, count);
        if let Err(StoreError::Corrupt { why, .. }) = &result {
            self.counters.corrupt_found.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%blob_id, index, path = %path.display(), why, "corrupt sliver file found; not serving it");
        }
        result
    }
}

fn parse_and_verify(
    bytes: &[u8],
    blob_id: &BlobId,
    index: u16,
    first: u64,
    count: u64,
) -> Result<Vec<Sliver>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        blob_id: *blob_id,
        index,
        why,
    };
    let mut slivers = Vec::new();
    let mut rest = bytes;
    let mut segment = 0u64;
    let end = first.saturating_add(count);
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
