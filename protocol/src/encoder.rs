//! Turning a blob into slivers with proofs, one segment at a time, in bounded memory.
//!
//! This module owns the order of work on the write side: encode a segment, hash its slivers into the
//! segment tree, hand the slivers and their in-segment paths to the caller, and at the end produce the
//! metadata (and with it the blob ID). It does no IO: callers read the blob and write or send the slivers.

use bytes::Bytes;

use crate::encoding::{BlobParams, Codec, CodecError};
use crate::merkle::{self, Hash, Tree};
use crate::metadata::{BlobMetadata, MetadataError, Sliver, SliverProof};

/// Why encoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The codec failed or the segment had the wrong length.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// More segments were fed than the blob has, or `finish` came too early.
    #[error("the blob has {expected} segments; {fed} were encoded")]
    SegmentCount {
        /// Segments the parameters give.
        expected: u64,
        /// Segments fed so far.
        fed: u64,
    },
    /// Metadata could not be built.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The Merkle tree over one segment's slivers.
pub fn segment_tree(slivers: &[Vec<u8>]) -> Option<Tree> {
    Tree::new(slivers.iter().map(|s| merkle::sliver_leaf(s)).collect())
}

/// One encoded segment, borrowed from the encoder until the next call.
#[derive(Debug)]
pub struct EncodedSegment<'a> {
    /// Segment index.
    pub segment: u64,
    /// The n slivers, in index order.
    pub slivers: &'a [Vec<u8>],
    /// The tree over their leaf hashes.
    pub tree: Tree,
}

impl EncodedSegment<'_> {
    /// The segment root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The path from sliver `index` to the segment root.
    pub fn segment_path(&self, index: u16) -> Option<Vec<Hash>> {
        self.tree.path(usize::from(index))
    }
}

/// Encodes a blob segment by segment. Feed exactly `params.segment_count()` segments, in order.
#[derive(Debug)]
pub struct BlobEncoder {
    codec: Codec,
    next_segment: u64,
    segment_roots: Vec<Hash>,
    slivers: Vec<Vec<u8>>,
}

impl BlobEncoder {
    /// An encoder for a blob with these parameters.
    pub fn new(params: BlobParams) -> Self {
        Self {
            codec: Codec::new(params),
            next_segment: 0,
            segment_roots: Vec::new(),
            slivers: Vec::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &BlobParams {
        self.codec.params()
    }

    /// The index of the segment the next call to [`Self::encode_next`] expects.
    pub fn next_segment(&self) -> u64 {
        self.next_segment
    }

    /// Encodes the next segment, whose length must be `params.segment_len(next_segment)`.
    pub fn encode_next(&mut self, data: &[u8]) -> Result<EncodedSegment<'_>, EncodeError> {
        let segment = self.next_segment;
        let expected = self.params().segment_count();
        if segment >= expected {
            return Err(EncodeError::SegmentCount {
                expected,
                fed: segment + 1,
            });
        }
        self.codec
            .encode_segment(segment, data, &mut self.slivers)?;
        let tree = segment_tree(&self.slivers).ok_or(EncodeError::SegmentCount {
            expected,
            fed: segment,
        })?;
        self.segment_roots.push(tree.root());
        self.next_segment += 1;
        Ok(EncodedSegment {
            segment,
            slivers: &self.slivers,
            tree,
        })
    }

    /// The metadata, once every segment was encoded.
    pub fn finish(self) -> Result<BlobMetadata, EncodeError> {
        let expected = self.params().segment_count();
        if self.next_segment != expected {
            return Err(EncodeError::SegmentCount {
                expected,
                fed: self.next_segment,
            });
        }
        Ok(BlobMetadata::new(*self.params(), self.segment_roots)?)
    }
}

/// A whole blob encoded in memory: for tests, small blobs and tools. Large blobs go through
/// [`BlobEncoder`] so that only one segment is in memory at a time.
#[derive(Debug, Clone)]
pub struct EncodedBlob {
    /// The metadata (and so the blob ID).
    pub metadata: BlobMetadata,
    /// Per segment, the n slivers and their tree.
    segments: Vec<(Vec<Bytes>, Tree)>,
}

impl EncodedBlob {
    /// Encodes `data` with `params` (whose length must match).
    pub fn encode(params: BlobParams, data: &[u8]) -> Result<Self, EncodeError> {
        let mut encoder = BlobEncoder::new(params);
        let mut segments = Vec::new();
        for segment in 0..params.segment_count() {
            let start = usize::try_from(params.segment_offset(segment)).unwrap_or(usize::MAX);
            let len = params.segment_len(segment).unwrap_or(0);
            let piece =
                data.get(start..start.saturating_add(len))
                    .ok_or(CodecError::SegmentLength {
                        segment,
                        expected: len,
                        found: data.len().saturating_sub(start),
                    })?;
            let encoded = encoder.encode_next(piece)?;
            let slivers = encoded
                .slivers
                .iter()
                .map(|s| Bytes::copy_from_slice(s))
                .collect();
            segments.push((slivers, encoded.tree));
        }
        if u64::try_from(data.len()).ok() != Some(params.blob_length()) {
            return Err(CodecError::SegmentLength {
                segment: params.segment_count(),
                expected: 0,
                found: data.len(),
            }
            .into());
        }
        let metadata = encoder.finish()?;
        Ok(Self { metadata, segments })
    }

    /// Sliver `index` of `segment`, with its proof.
    pub fn sliver(&self, segment: u64, index: u16) -> Option<Sliver> {
        let (slivers, tree) = self.segments.get(usize::try_from(segment).ok()?)?;
        Some(Sliver {
            header: self.metadata.header(),
            segment,
            index,
            data: slivers.get(usize::from(index))?.clone(),
            proof: SliverProof {
                segment_path: tree.path(usize::from(index))?,
                blob_path: self.metadata.blob_path(segment)?,
            },
        })
    }
}
