//! Blob metadata, the blob ID computation, sliver proofs and their verification.
//!
//! This module owns the commitment: how segment roots, the blob root and the blob ID are derived, and the
//! check that a single sliver belongs to a blob ID. It holds no sliver bytes beyond the one being checked
//! and never decodes.
//!
//! Structure (docs/protocol.md gives it byte by byte):
//! - segment root = Merkle root over `sliver_leaf(sliver)` for the n slivers of the segment, in index order;
//! - blob root = Merkle root over `segment_leaf(segment root)` for every segment, in segment order;
//! - blob ID = BLAKE3 derive-key("floe 2026-11 blob id v1") over
//!   `encoding u8 ‖ n u16le ‖ k u16le ‖ segment_size u64le ‖ blob_length u64le ‖ blob root`.

use crate::blob_id::BlobId;
use crate::encoding::BlobParams;
use crate::merkle::{self, Hash, Tree};

const BLOB_ID_CONTEXT: &str = "floe 2026-11 blob id v1";

/// The parameters plus the blob root: all a receiver needs, with the blob ID, to check any sliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The encoding parameters.
    pub params: BlobParams,
    /// The Merkle root over the segment roots.
    pub blob_root: Hash,
}

impl BlobHeader {
    /// The blob ID this header commits to.
    pub fn blob_id(&self) -> BlobId {
        let p = &self.params;
        let mut hasher = blake3::Hasher::new_derive_key(BLOB_ID_CONTEXT);
        hasher.update(&[p.encoding().code()]);
        hasher.update(&p.shards().to_le_bytes());
        hasher.update(&p.source_shards().to_le_bytes());
        hasher.update(&p.segment_size().to_le_bytes());
        hasher.update(&p.blob_length().to_le_bytes());
        hasher.update(&self.blob_root);
        BlobId(*hasher.finalize().as_bytes())
    }
}

/// Why metadata could not be built or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The number of segment roots differs from the segment count.
    #[error("the blob has {expected} segments but the metadata lists {found} segment roots")]
    SegmentCount {
        /// Segments the parameters give.
        expected: u64,
        /// Roots given.
        found: usize,
    },
    /// The metadata hashes to another blob ID.
    #[error("this metadata belongs to blob {found}, not {expected}")]
    WrongBlob {
        /// The blob ID asked for.
        expected: BlobId,
        /// The ID the metadata hashes to.
        found: BlobId,
    },
}

/// A blob's full metadata: parameters and every segment root (32 bytes a segment).
#[derive(Debug, Clone)]
pub struct BlobMetadata {
    params: BlobParams,
    segment_roots: Vec<Hash>,
    tree: Tree,
}

impl PartialEq for BlobMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params && self.segment_roots == other.segment_roots
    }
}
impl Eq for BlobMetadata {}

impl BlobMetadata {
    /// Metadata from parameters and one root per segment.
    pub fn new(params: BlobParams, segment_roots: Vec<Hash>) -> Result<Self, MetadataError> {
        let expected = params.segment_count();
        if u64::try_from(segment_roots.len()).ok() != Some(expected) {
            return Err(MetadataError::SegmentCount {
                expected,
                found: segment_roots.len(),
            });
        }
        let leaves = segment_roots.iter().map(merkle::segment_leaf).collect();
        let tree = Tree::new(leaves).ok_or(MetadataError::SegmentCount { expected, found: 0 })?;
        Ok(Self {
            params,
            segment_roots,
            tree,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &BlobParams {
        &self.params
    }

    /// Every segment root, in segment order.
    pub fn segment_roots(&self) -> &[Hash] {
        &self.segment_roots
    }

    /// The root of one segment.
    pub fn segment_root(&self, segment: u64) -> Option<&Hash> {
        usize::try_from(segment)
            .ok()
            .and_then(|s| self.segment_roots.get(s))
    }

    /// The header (parameters and blob root).
    pub fn header(&self) -> BlobHeader {
        BlobHeader {
            params: self.params,
            blob_root: self.tree.root(),
        }
    }

    /// The blob ID.
    pub fn blob_id(&self) -> BlobId {
        self.header().blob_id()
    }

    /// Checks that this metadata belongs to `blob_id`.
    pub fn check(&self, blob_id: &BlobId) -> Result<(), MetadataError> {
        let found = self.blob_id();
        if &found == blob_id {
            Ok(())
        } else {
            Err(MetadataError::WrongBlob {
                expected: *blob_id,
                found,
            })
        }
    }

    /// The path from a segment's leaf to the blob root.
    pub fn blob_path(&self, segment: u64) -> Option<Vec<Hash>> {
        usize::try_from(segment)
            .ok()
            .and_then(|s| self.tree.path(s))
    }
}

/// The proof that one sliver belongs to a blob: two Merkle paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SliverProof {
    /// From the sliver's leaf up to its segment root.
    pub segment_path: Vec<Hash>,
    /// From the segment's leaf up to the blob root.
    pub blob_path: Vec<Hash>,
}

/// A sliver of one segment with everything needed to check it against a blob ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sliver {
    /// The blob's header.
    pub header: BlobHeader,
    /// Segment index.
    pub segment: u64,
    /// Sliver index, below n.
    pub index: u16,
    /// The sliver's bytes.
    pub data: bytes::Bytes,
    /// Its proof.
    pub proof: SliverProof,
}

/// Why a sliver failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliverError {
    /// The header hashes to another blob ID.
    #[error("the sliver's header belongs to blob {found}, not {expected}")]
    WrongBlob {
        /// The blob ID asked for.
        expected: BlobId,
        /// What the header hashes to.
        found: BlobId,
    },
    /// Segment or sliver index out of range.
    #[error(
        "segment {segment}, sliver {index} does not exist in a blob of {segments} segments × {shards} slivers"
    )]
    OutOfRange {
        /// Segment index.
        segment: u64,
        /// Sliver index.
        index: u16,
        /// Segments in the blob.
        segments: u64,
        /// n.
        shards: u16,
    },
    /// The sliver's length differs from what the parameters give.
    #[error("sliver {index} of segment {segment} must be {expected} bytes; got {found}")]
    Length {
        /// Segment index.
        segment: u64,
        /// Sliver index.
        index: u16,
        /// Expected length.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// The bytes or the proof do not lead to the blob root.
    #[error(
        "sliver {index} of segment {segment} does not match its proof (corrupt sliver or forged proof)"
    )]
    BadProof {
        /// Segment index.
        segment: u64,
        /// Sliver index.
        index: u16,
    },
}

impl Sliver {
    /// Checks the sliver against `blob_id`. On success, returns the root of its segment (every valid sliver
    /// of a segment yields the same root).
    pub fn verify(&self, blob_id: &BlobId) -> Result<Hash, SliverError> {
        self.verify_leaf(blob_id)
            .map(|(_, segment_root)| segment_root)
    }

    /// Like [`Self::verify`], also returning the sliver's leaf hash: (leaf, segment root).
    pub(crate) fn verify_leaf(&self, blob_id: &BlobId) -> Result<(Hash, Hash), SliverError> {
        let found = self.header.blob_id();
        if &found != blob_id {
            return Err(SliverError::WrongBlob {
                expected: *blob_id,
                found,
            });
        }
        let params = &self.header.params;
        let out_of_range = || SliverError::OutOfRange {
            segment: self.segment,
            index: self.index,
            segments: params.segment_count(),
            shards: params.shards(),
        };
        let expected = params.sliver_len(self.segment).ok_or_else(out_of_range)?;
        if self.index >= params.shards() {
            return Err(out_of_range());
        }
        if self.data.len() != expected {
            return Err(SliverError::Length {
                segment: self.segment,
                index: self.index,
                expected,
                found: self.data.len(),
            });
        }
        let bad = || SliverError::BadProof {
            segment: self.segment,
            index: self.index,
        };
        let leaf = merkle::sliver_leaf(&self.data);
        let segment_root = merkle::root_from_path(
            leaf,
            usize::from(self.index),
            usize::from(params.shards()),
            &self.proof.segment_path,
        )
        .ok_or_else(bad)?;
        let segments = usize::try_from(params.segment_count()).map_err(|_| bad())?;
        let segment = usize::try_from(self.segment).map_err(|_| bad())?;
        let blob_root = merkle::root_from_path(
            merkle::segment_leaf(&segment_root),
            segment,
            segments,
            &self.proof.blob_path,
        )
        .ok_or_else(bad)?;
        if blob_root == self.header.blob_root {
            Ok((leaf, segment_root))
        } else {
            Err(bad())
        }
    }
}
