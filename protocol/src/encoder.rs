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

/// Below this many sliver bytes per segment, hashing on more threads costs more than it saves.
const PARALLEL_HASH_MIN_BYTES: usize = 256 << 10;

/// The Merkle tree over one segment's slivers.
pub fn segment_tree(slivers: &[Vec<u8>]) -> Option<Tree> {
    segment_tree_with(slivers, 1)
}

/// The Merkle tree over one segment's slivers, hashing them on up to `threads` threads. The result does not
/// depend on the thread count. Hashing every sliver is most of the cost of the commitment (3× the segment's
/// bytes), so drivers with cores to spare pass more than one; the simulator keeps one.
pub fn segment_tree_with(slivers: &[Vec<u8>], threads: usize) -> Option<Tree> {
    Tree::new(sliver_leaves(slivers, vec![None; slivers.len()], threads))
}

/// Leaf hashes of `slivers`, taking `known[i]` where it is `Some` (a caller that already hashed those
/// exact bytes) and hashing the rest on up to `threads` threads.
pub(crate) fn sliver_leaves(
    slivers: &[Vec<u8>],
    known: Vec<Option<Hash>>,
    threads: usize,
) -> Vec<Hash> {
    let mut leaves: Vec<(Option<Hash>, &[u8])> = known
        .into_iter()
        .zip(slivers)
        .map(|(leaf, sliver)| (leaf, sliver.as_slice()))
        .collect();
    let to_hash: usize = leaves
        .iter()
        .filter(|(l, _)| l.is_none())
        .map(|(_, s)| s.len())
        .sum();
    let threads = threads.clamp(1, leaves.len().max(1));
    let fill = |chunk: &mut [(Option<Hash>, &[u8])]| {
        for (leaf, sliver) in chunk {
            if leaf.is_none() {
                *leaf = Some(merkle::sliver_leaf(sliver));
            }
        }
    };
    if threads == 1 || to_hash < PARALLEL_HASH_MIN_BYTES {
        fill(&mut leaves);
    } else {
        let per_thread = leaves.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut chunks = leaves.chunks_mut(per_thread);
            // The calling thread takes the first chunk itself.
            let first = chunks.next();
            for chunk in chunks {
                scope.spawn(move || fill(chunk));
            }
            if let Some(chunk) = first {
                fill(chunk);
            }
        });
    }
    leaves
        .into_iter()
        .map(|(leaf, _)| leaf.unwrap_or_default())
        .collect()
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
    hash_threads: usize,
}

impl BlobEncoder {
    /// An encoder for a blob with these parameters.
    pub fn new(params: BlobParams) -> Self {
        Self {
            codec: Codec::new(params),
            next_segment: 0,
            segment_roots: Vec::new(),
            slivers: Vec::new(),
            hash_threads: 1,
        }
    }

    /// Hash slivers on up to `threads` threads (default 1). Output is identical for any count.
    pub fn with_hash_threads(mut self, threads: usize) -> Self {
        self.hash_threads = threads.max(1);
        self
    }

    /// Starts a new blob, keeping the codec's work space and the sliver buffers: fresh large allocations
    /// cost about as much as encoding itself, so long-lived writers reuse one encoder.
    pub fn restart(&mut self, params: BlobParams) {
        self.codec.set_params(params);
        self.next_segment = 0;
        self.segment_roots.clear();
    }

    /// The metadata of the blob just encoded, leaving the encoder ready for [`Self::restart`].
    pub fn take_metadata(&mut self) -> Result<BlobMetadata, EncodeError> {
        let expected = self.params().segment_count();
        if self.next_segment != expected {
            return Err(EncodeError::SegmentCount {
                expected,
                fed: self.next_segment,
            });
        }
        Ok(BlobMetadata::new(
            *self.params(),
            std::mem::take(&mut self.segment_roots),
        )?)
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
        let tree = segment_tree_with(&self.slivers, self.hash_threads).ok_or(
            EncodeError::SegmentCount {
                expected,
                fed: segment,
            },
        )?;
        self.segment_roots.push(tree.root());
        self.next_segment += 1;
        Ok(EncodedSegment {
            segment,
            slivers: &self.slivers,
            tree,
        })
    }

    /// Moves out the n slivers of the segment just encoded, in index order; the next segment gets fresh buffers.
    /// For writers that hand slivers on without copying them.
    pub fn take_slivers(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.slivers)
    }

    /// The metadata, once every segment was encoded.
    pub fn finish(mut self) -> Result<BlobMetadata, EncodeError> {
        self.take_metadata()
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

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::encoding::EncodingType;

    #[test]
    fn thread_count_never_changes_the_commitment() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let params = BlobParams::new(EncodingType::RsSimd, 10, 1 << 20, 3_000_000).unwrap();
        let ids: Vec<_> = [1usize, 2, 5, 64]
            .iter()
            .map(|&threads| {
                let mut encoder = BlobEncoder::new(params).with_hash_threads(threads);
                for segment in 0..params.segment_count() {
                    let start = usize::try_from(params.segment_offset(segment)).unwrap();
                    let len = params.segment_len(segment).unwrap();
                    encoder.encode_next(&data[start..start + len]).unwrap();
                }
                encoder.finish().unwrap().blob_id()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }

    #[test]
    fn a_restarted_encoder_gives_the_ids_a_fresh_one_gives() {
        let mut reused =
            BlobEncoder::new(BlobParams::new(EncodingType::RsSimd, 12, 256, 0).unwrap());
        for (shards, len) in [(12u16, 1000usize), (40, 5000), (4, 3), (12, 1000)] {
            let data = vec![9u8; len];
            let params = BlobParams::new(EncodingType::RsSimd, shards, 1024, len as u64).unwrap();
            reused.restart(params);
            let mut fresh = BlobEncoder::new(params);
            for segment in 0..params.segment_count() {
                let start = usize::try_from(params.segment_offset(segment)).unwrap();
                let piece = &data[start..start + params.segment_len(segment).unwrap()];
                reused.encode_next(piece).unwrap();
                fresh.encode_next(piece).unwrap();
            }
            assert_eq!(reused.take_metadata().unwrap(), fresh.finish().unwrap());
        }
    }

    #[test]
    fn feeding_too_many_or_too_few_segments_is_an_error() {
        let params = BlobParams::new(EncodingType::RsSimd, 12, 256, 300).unwrap();
        let mut encoder = BlobEncoder::new(params);
        assert!(matches!(
            encoder.take_metadata(),
            Err(EncodeError::SegmentCount { fed: 0, .. })
        ));
        encoder.encode_next(&[0; 256]).unwrap();
        assert!(encoder.encode_next(&[0; 10]).is_err(), "wrong length");
        encoder.encode_next(&[0; 44]).unwrap();
        assert!(matches!(
            encoder.encode_next(&[0; 1]),
            Err(EncodeError::SegmentCount { .. })
        ));
    }
}
