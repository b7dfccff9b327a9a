//! Holder records: a blob's metadata with its holder list, epoch, repairer and content type, as the store
//! keeps them (a `MetadataResponse` frame) and the rule for writing one over another.

use floe_protocol::content_type;
use floe_protocol::placement::PeerKey;
use floe_protocol::wire::{self, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata};
use redb::ReadableTable;

use super::index::*;
use super::log::*;

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

pub(super) fn parse_record(
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

/// The key a holder record is logged under: the blob ID, then zeros.
pub(super) fn record_key(blob_id: &BlobId) -> Key {
    let mut key = [0u8; 42];
    key[..32].copy_from_slice(blob_id.as_bytes());
    key
}

/// Whether `record` is written over the `current` one, and whether it is the one held afterwards.
pub(super) fn holders_change(
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
pub(super) fn apply_holders(
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
