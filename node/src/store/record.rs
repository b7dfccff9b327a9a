//! Holder records: a blob's metadata with its holder list, epoch, repairer and content type, as the store
//! keeps them (a `MetadataResponse` frame) and the rule for writing one over another.

use floe_protocol::deletion::{self, Claims, DeletionError};
use floe_protocol::holders::FormerHolder;
use floe_protocol::placement::PeerKey;
use floe_protocol::wire::{self, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata};
use floe_protocol::{content_type, lifetime};
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
    /// The epoch the blob is stored until (`floe_protocol::lifetime`; `FOREVER` for none). Like the label it
    /// rides beside the list; unlike the list it only ever grows ([`HolderRecord::merged_with`]).
    pub end_epoch: u64,
    /// The writers' deletion claims, the tokens released so far and any permanence (`floe_protocol::deletion`).
    /// They only grow: records merge by union ([`HolderRecord::merged_with`]).
    pub claims: Claims,
    /// Peers earlier lists of the blob named and this one does not, most recent first, each with the indexes
    /// it held in the list that dropped it (`floe_protocol::holders::former_after`): asked for their list once
    /// reachable again, so the sides of a healed partition end with one. Computed by the store when a list
    /// replaces another; never taken from a peer.
    pub former: Vec<FormerHolder<PeerKey>>,
}

impl HolderRecord {
    /// The writer's list.
    pub fn initial(holders: Vec<PeerKey>) -> Self {
        Self {
            holders,
            epoch: 0,
            repairer: Vec::new(),
            content_type: String::new(),
            end_epoch: lifetime::FOREVER,
            claims: Claims::default(),
            former: Vec::new(),
        }
    }

    /// The same record stored until `end_epoch`.
    pub fn with_end_epoch(mut self, end_epoch: u64) -> Self {
        self.end_epoch = end_epoch;
        self
    }

    /// The same record with `claims` as its deletion claims.
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = claims;
        self
    }

    /// The record to keep when `self` meets `other` for the same blob: `self`'s list, with the later end epoch of
    /// the two and the union of their claims and releases (an extension or a deletion reaches a holder by
    /// whichever path comes first).
    pub fn merged_with(mut self, other: &HolderRecord) -> Self {
        self.end_epoch = lifetime::extend(self.end_epoch, other.end_epoch);
        self.claims = self.claims.merged(&other.claims);
        self
    }

    /// The epoch the blob is served until: its end epoch, capped by a permanent write's end once every claim is
    /// released (`Claims::effective_end`).
    pub fn served_until(&self) -> u64 {
        self.claims.effective_end(self.end_epoch)
    }

    /// Whether the blob is deleted at epoch `current` (every claim released, no permanent write keeping it).
    pub fn is_deleted(&self, current: u64) -> bool {
        self.claims.standing(current) == deletion::Standing::Deleted
    }

    /// The record a metadata answer (or a logged record) gives, without its metadata; claims are checked against
    /// `blob_id` and held to `max_claims` of each kind.
    pub fn from_response(
        blob_id: &BlobId,
        response: &pb::MetadataResponse,
        max_claims: usize,
    ) -> Result<Self, DeletionError> {
        Ok(HolderRecord {
            holders: response.holders.iter().map(|h| h.to_vec()).collect(),
            epoch: response.holders_epoch,
            repairer: response.holders_repairer.to_vec(),
            content_type: content_type::or_none(&response.content_type).to_owned(),
            end_epoch: lifetime::from_wire(response.end_epoch),
            claims: Claims::from_wire(
                blob_id,
                &response.claims,
                &response.released,
                response.permanent_until,
                max_claims,
            )?,
            former: response
                .former_holders
                .iter()
                .map(|f| former_from_wire(f, response.holders.len()))
                .collect(),
        })
    }

    /// The record a peer's metadata answer gives: as [`HolderRecord::from_response`] with at most
    /// `deletion::MAX_CLAIMS` claims of each kind, and no former holders (a peer's say never names whom this
    /// node asks about its lists).
    pub fn from_answer(
        blob_id: &BlobId,
        response: &pb::MetadataResponse,
    ) -> Result<Self, DeletionError> {
        let mut record = Self::from_response(blob_id, response, deletion::MAX_CLAIMS)?;
        record.former.clear();
        Ok(record)
    }

    /// The answer to a peer's metadata request: the record without its former holders, which are this node's
    /// own business.
    pub fn answer(&self, metadata: &BlobMetadata) -> pb::MetadataResponse {
        pb::MetadataResponse {
            former_holders: Vec::new(),
            ..self.response(metadata)
        }
    }

    /// The answer to a peer asking for this record's list by its digest (`MetadataRequest.list_digest`): the
    /// digest, epoch and repairer, nothing else.
    pub fn digest_answer(&self) -> pb::MetadataResponse {
        pb::MetadataResponse {
            holders_epoch: self.epoch,
            holders_repairer: self.repairer.clone().into(),
            holders_digest: self.digest().to_vec().into(),
            ..pb::MetadataResponse::default()
        }
    }

    /// The digest of this record's list (`holders::digest`).
    pub fn digest(&self) -> [u8; 32] {
        floe_protocol::holders::digest(&self.as_list())
    }

    /// The metadata answer (and logged record) for this record of the blob `metadata` describes.
    pub fn response(&self, metadata: &BlobMetadata) -> pb::MetadataResponse {
        pb::MetadataResponse {
            metadata: Some(metadata.into()),
            holders: self.holders.iter().map(|h| h.clone().into()).collect(),
            holders_epoch: self.epoch,
            holders_repairer: self.repairer.clone().into(),
            content_type: self.content_type.clone(),
            end_epoch: self.end_epoch,
            claims: self.claims.claims().map(|c| c.0.to_vec().into()).collect(),
            released: self
                .claims
                .released()
                .map(|t| t.0.to_vec().into())
                .collect(),
            permanent_until: self.claims.permanent_until_wire(),
            former_holders: self
                .former
                .iter()
                .map(|f| pb::FormerHolder {
                    peer: f.peer.clone().into(),
                    indexes: f.indexes.iter().map(|&i| u32::from(i)).collect(),
                })
                .collect(),
            holders_digest: Default::default(),
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
    // This node's own record: merges may have taken it past what a peer may send, so no limit but the frame's.
    let held = HolderRecord::from_response(blob_id, &record, usize::MAX)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((metadata, held))
}

/// A former holder as its record keeps it; indexes outside a list of `shards` entries are dropped, so a damaged
/// record cannot make a former holder weigh more than the list has.
fn former_from_wire(former: &pb::FormerHolder, shards: usize) -> FormerHolder<PeerKey> {
    FormerHolder {
        peer: former.peer.to_vec(),
        indexes: former
            .indexes
            .iter()
            .filter_map(|&i| u16::try_from(i).ok())
            .filter(|&i| usize::from(i) < shards)
            .collect(),
    }
}

/// The key a holder record is logged under: the blob ID, then zeros.
pub(super) fn record_key(blob_id: &BlobId) -> Key {
    let mut key = [0u8; 42];
    key[..32].copy_from_slice(blob_id.as_bytes());
    key
}

/// What `record`, offered for a blob, makes of the `current` one: the record to write (`None`: keep what is
/// held) and whether `record`'s list is the one held afterwards. The list follows `HolderRecord::supersedes`;
/// the end epoch is the later of the two whichever list wins (`lifetime::extend`). A pure function of its
/// inputs, so replaying logged records in order rebuilds the same index.
pub(super) fn holders_change(
    current: Option<Result<(BlobMetadata, HolderRecord), StoreError>>,
    record: &HolderRecord,
) -> (Option<HolderRecord>, bool) {
    match current {
        // Former holders come from this peer's own lists only: an offered record's are never kept.
        None | Some(Err(_)) => (
            Some(HolderRecord {
                former: Vec::new(),
                ..record.clone()
            }),
            true,
        ),
        Some(Ok((_, current))) if record.supersedes(&current) => {
            let former = floe_protocol::holders::former_after(
                &current.holders,
                &current.former,
                &record.holders,
                &record.repairer,
            );
            (
                Some(HolderRecord {
                    former,
                    ..record.clone().merged_with(&current)
                }),
                true,
            )
        }
        Some(Ok((_, current))) => {
            let same = record.holders == current.holders
                && record.epoch == current.epoch
                && record.repairer == current.repairer
                && record.content_type == current.content_type;
            let merged = current.clone().merged_with(record);
            ((merged != current).then_some(merged), same)
        }
    }
}

/// The bytes a holder record is kept and logged as: a `MetadataResponse` frame.
pub(super) fn record_frame(metadata: &BlobMetadata, record: &HolderRecord) -> Vec<u8> {
    wire::encode_frame(&record.response(metadata))
}

/// Stores what `record` (offered as `frame`) makes of a blob's held record ([`holders_change`]); returns whether
/// its list is now the one held.
pub(super) fn apply_holders(
    records: &mut redb::Table<'_, &[u8], &[u8]>,
    blob_id: &BlobId,
    record: &HolderRecord,
    frame: &[u8],
) -> Result<bool, StoreError> {
    let current = records
        .get(&blob_id.as_bytes()[..])?
        .map(|entry| parse_record(blob_id, entry.value()));
    let metadata = match &current {
        Some(Ok((metadata, _))) => Some(metadata.clone()),
        _ => None,
    };
    let (write, adopted) = holders_change(current, record);
    match (write, metadata) {
        (Some(written), _) if written == *record => {
            records.insert(&blob_id.as_bytes()[..], frame)?;
        }
        (Some(written), Some(metadata)) => {
            let merged = record_frame(&metadata, &written);
            records.insert(&blob_id.as_bytes()[..], &merged[..])?;
        }
        // A record that differs from the offered one always comes from a current one, whose metadata is there.
        (Some(_), None) => {
            records.insert(&blob_id.as_bytes()[..], frame)?;
        }
        (None, _) => {}
    }
    Ok(adopted)
}
