//! Rebuilding segments from verified slivers, with the consistency check that makes every reader agree.
//!
//! This module owns the read-side verdict: a segment's bytes, "not enough slivers", or "inconsistent" with a
//! proof anyone can check. It never fetches anything; callers bring slivers they verified with
//! [`Sliver::verify`](crate::metadata::Sliver::verify).
//!
//! Why re-encode: Reed-Solomon decoding of any k slivers always "succeeds". If a writer committed to n
//! slivers that are not one codeword, different sets of k decode to different bytes. Re-encoding the result
//! and comparing the segment root catches this for every set of k, so all readers reach the same verdict.

use crate::blob_id::BlobId;
use crate::encoder::sliver_leaves;
use crate::encoding::{BlobParams, Codec, CodecError};
use crate::merkle::Hash;
use crate::merkle::Tree;
use crate::metadata::{Sliver, SliverError};

/// How much a reader checks after rebuilding a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Re-encode and compare with the committed segment root. Every reader reaches the same verdict
    /// whichever k slivers it used. The default.
    #[default]
    Full,
    /// Trust the verified slivers alone: the bytes are exactly what the writer committed in the slivers used,
    /// but for a blob whose writer encoded inconsistently, two readers may see different bytes. Costs no
    /// re-encode; meant for readers that already know the blob is consistent (a certified, checked copy).
    SliversOnly,
}

/// A sliver that passed [`Sliver::verify`] for a blob ID; only [`VerifiedSliver::new`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSliver {
    sliver: Sliver,
    blob_id: BlobId,
    leaf: Hash,
    segment_root: Hash,
}

impl VerifiedSliver {
    /// Verifies `sliver` against `blob_id`.
    pub fn new(sliver: Sliver, blob_id: &BlobId) -> Result<Self, SliverError> {
        let (leaf, segment_root) = sliver.verify_leaf(blob_id)?;
        Ok(Self {
            sliver,
            blob_id: *blob_id,
            leaf,
            segment_root,
        })
    }

    /// The sliver.
    pub fn sliver(&self) -> &Sliver {
        &self.sliver
    }

    /// The root of its segment.
    pub fn segment_root(&self) -> &Hash {
        &self.segment_root
    }

    /// Unwraps the sliver.
    pub fn into_sliver(self) -> Sliver {
        self.sliver
    }
}

/// A checkable claim that a blob's writer encoded a segment inconsistently: k valid slivers of the segment
/// whose decoding does not re-encode to the committed segment root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InconsistencyProof {
    /// The blob.
    pub blob_id: BlobId,
    /// The segment.
    pub segment: u64,
    /// k slivers of the segment with their proofs.
    pub slivers: Vec<Sliver>,
}

/// Why an inconsistency proof does not prove anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProof {
    /// A sliver in it fails verification.
    #[error("a sliver in the proof is invalid: {0}")]
    Sliver(#[from] SliverError),
    /// Not k distinct slivers of one segment.
    #[error("the proof must hold {need} distinct slivers of segment {segment}; it holds {have}")]
    TooFewSlivers {
        /// Segment.
        segment: u64,
        /// Distinct slivers of that segment.
        have: usize,
        /// k.
        need: usize,
    },
    /// Decoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The slivers re-encode to the committed root: the segment is consistent.
    #[error("segment {0} is consistent; the proof shows nothing wrong")]
    Consistent(u64),
}

impl InconsistencyProof {
    /// Checks the proof. `Ok(())` means the blob is inconsistent.
    pub fn verify(&self) -> Result<(), InvalidProof> {
        let mut verified = Vec::with_capacity(self.slivers.len());
        for sliver in &self.slivers {
            if sliver.segment != self.segment {
                return Err(InvalidProof::TooFewSlivers {
                    segment: self.segment,
                    have: 0,
                    need: 0,
                });
            }
            verified.push(VerifiedSliver::new(sliver.clone(), &self.blob_id)?);
        }
        let Some(first) = verified.first() else {
            return Err(InvalidProof::TooFewSlivers {
                segment: self.segment,
                have: 0,
                need: 1,
            });
        };
        let params = first.sliver.header.params;
        let mut decoder = SegmentDecoder::new(params);
        match decoder.decode(self.segment, &verified, Consistency::Full) {
            Err(DecodeError::Inconsistent(_)) => Ok(()),
            Ok(_) => Err(InvalidProof::Consistent(self.segment)),
            Err(DecodeError::Codec(CodecError::NotEnoughSlivers { have, need, .. })) => {
                Err(InvalidProof::TooFewSlivers {
                    segment: self.segment,
                    have,
                    need,
                })
            }
            Err(DecodeError::Codec(error)) => Err(error.into()),
            Err(DecodeError::Mixed) => Err(InvalidProof::TooFewSlivers {
                segment: self.segment,
                have: 0,
                need: usize::from(params.source_shards()),
            }),
        }
    }
}

/// Why a segment could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too few slivers, or a codec failure.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The writer encoded this segment inconsistently; the proof shows it.
    #[error("blob {} is inconsistent: its writer's slivers of segment {} are not one codeword", .0.blob_id, .0.segment)]
    Inconsistent(Box<InconsistencyProof>),
    /// Slivers of another blob, segment or parameters were mixed in (a caller bug).
    #[error("the slivers given are not all of the same blob and segment")]
    Mixed,
}

/// Rebuilds segments of one blob; keeps codec buffers between segments.
#[derive(Debug)]
pub struct SegmentDecoder {
    codec: Codec,
    scratch: Vec<Vec<u8>>,
    hash_threads: usize,
    /// The tree over the re-encoded segment from the last full consistency check (a rebuild's proofs).
    last_tree: Option<Tree>,
}

impl SegmentDecoder {
    /// A decoder for a blob with these parameters.
    pub fn new(params: BlobParams) -> Self {
        Self {
            codec: Codec::new(params),
            scratch: Vec::new(),
            last_tree: None,
            hash_threads: 1,
        }
    }

    /// Hash re-encoded slivers on up to `threads` threads (default 1). Verdicts are identical for any count.
    pub fn with_hash_threads(mut self, threads: usize) -> Self {
        self.hash_threads = threads.max(1);
        self
    }

    /// Switches to another blob, keeping work buffers.
    pub fn restart(&mut self, params: BlobParams) {
        self.codec.set_params(params);
    }

    /// Rebuilds `segment` from verified slivers of it (at least k distinct indexes; extra ones are ignored).
    pub fn decode(
        &mut self,
        segment: u64,
        slivers: &[VerifiedSliver],
        consistency: Consistency,
    ) -> Result<Vec<u8>, DecodeError> {
        let Some(first) = slivers.first() else {
            return Err(CodecError::NotEnoughSlivers {
                segment,
                have: 0,
                need: usize::from(self.codec.params().source_shards()),
            }
            .into());
        };
        if slivers.iter().any(|s| {
            s.sliver.segment != segment
                || s.blob_id != first.blob_id
                || s.sliver.header.params != *self.codec.params()
        }) {
            return Err(DecodeError::Mixed);
        }
        // Keep one sliver per index, the lowest indexes first: deterministic, and sources come first.
        let mut chosen: Vec<&VerifiedSliver> = slivers.iter().collect();
        chosen.sort_by_key(|s| s.sliver.index);
        chosen.dedup_by_key(|s| s.sliver.index);
        chosen.truncate(usize::from(self.codec.params().source_shards()));
        let pieces: Vec<(u16, &[u8])> = chosen
            .iter()
            .map(|s| (s.sliver.index, &s.sliver.data[..]))
            .collect();
        let data = self.codec.decode_segment(segment, &pieces)?;
        if consistency == Consistency::Full {
            self.codec
                .encode_segment(segment, &data, &mut self.scratch)?;
            // Slivers we verified already have known leaves; where the re-encoding reproduced them byte for
            // byte (a copy-speed compare), reuse the leaf instead of hashing again.
            let mut known = vec![None; self.scratch.len()];
            for sliver in &chosen {
                let index = usize::from(sliver.sliver.index);
                if let (Some(slot), Some(fresh)) = (known.get_mut(index), self.scratch.get(index))
                    && fresh[..] == sliver.sliver.data[..]
                {
                    *slot = Some(sliver.leaf);
                }
            }
            let leaves = sliver_leaves(&self.scratch, known, self.hash_threads);
            let tree = Tree::new(leaves);
            let root = tree.as_ref().map(Tree::root);
            self.last_tree = tree;
            if root.as_ref() != Some(&first.segment_root) {
                return Err(DecodeError::Inconsistent(Box::new(InconsistencyProof {
                    blob_id: first.blob_id,
                    segment,
                    slivers: chosen.iter().map(|s| s.sliver.clone()).collect(),
                })));
            }
        }
        Ok(data)
    }

    /// Rebuilds slivers `targets` of `segment` from verified slivers of it (a repair): decodes, checks that the
    /// re-encoding matches the committed segment root (an inconsistent blob is refused with its proof, as in
    /// [`Self::decode`] with [`Consistency::Full`]), and returns the target slivers with their proofs, so their
    /// new holders can verify them against the blob ID alone.
    pub fn rebuild(
        &mut self,
        segment: u64,
        slivers: &[VerifiedSliver],
        targets: &[u16],
    ) -> Result<Vec<Sliver>, DecodeError> {
        self.last_tree = None;
        self.decode(segment, slivers, Consistency::Full)?;
        let first = slivers.first().ok_or(DecodeError::Mixed)?;
        // The consistency check built the tree over every re-encoded sliver: its paths are the proofs.
        let tree = self.last_tree.take().ok_or(DecodeError::Mixed)?;
        targets
            .iter()
            .map(|&index| {
                let data = self
                    .scratch
                    .get(usize::from(index))
                    .ok_or(DecodeError::Mixed)?;
                Ok(Sliver {
                    header: first.sliver.header,
                    segment,
                    index,
                    data: bytes::Bytes::copy_from_slice(data),
                    proof: crate::metadata::SliverProof {
                        segment_path: tree.path(usize::from(index)).ok_or(DecodeError::Mixed)?,
                        blob_path: first.sliver.proof.blob_path.clone(),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    //! Conformance tests, run against both encodings.
    use super::*;
    use crate::encoder::{BlobEncoder, EncodedBlob};
    use crate::encoding::EncodingType;
    use crate::metadata::BlobMetadata;
    use proptest::prelude::*;

    const ENCODINGS: [EncodingType; 2] = [EncodingType::RsSimd, EncodingType::NovelPoly];

    fn encoding() -> impl Strategy<Value = EncodingType> {
        prop::sample::select(ENCODINGS.to_vec())
    }

    /// Blob sizes from 0 bytes to several segments of 256..2048 bytes.
    fn blob_case() -> impl Strategy<Value = (EncodingType, u16, u64, Vec<u8>)> {
        (encoding(), 4u16..40, 256u64..2048).prop_flat_map(|(encoding, shards, segment_size)| {
            let max = usize::try_from(segment_size * 4).unwrap_or(8192);
            (
                Just(encoding),
                Just(shards),
                Just(segment_size),
                prop::collection::vec(any::<u8>(), 0..max),
            )
        })
    }

    /// A random choice of k distinct sliver indexes out of n, drawn from `seed` (Fisher-Yates).
    fn pick_k(seed: u64, shards: u16, k: usize) -> Vec<u16> {
        let mut indexes: Vec<u16> = (0..shards).collect();
        let mut state = seed;
        for i in (1..indexes.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from((state >> 33) % (i as u64 + 1)).expect("small");
            indexes.swap(i, j);
        }
        indexes.truncate(k);
        indexes
    }

    fn encode(encoding: EncodingType, shards: u16, segment_size: u64, data: &[u8]) -> EncodedBlob {
        let len = u64::try_from(data.len()).expect("small");
        let params = BlobParams::new(encoding, shards, segment_size, len).expect("valid");
        EncodedBlob::encode(params, data).expect("encodes")
    }

    fn read_all(
        blob: &EncodedBlob,
        pick: impl Fn(u64) -> Vec<u16>,
    ) -> Result<Vec<u8>, DecodeError> {
        let id = blob.metadata.blob_id();
        let params = *blob.metadata.params();
        let mut decoder = SegmentDecoder::new(params);
        let mut out = Vec::new();
        for segment in 0..params.segment_count() {
            let slivers: Vec<VerifiedSliver> = pick(segment)
                .into_iter()
                .map(|i| {
                    VerifiedSliver::new(blob.sliver(segment, i).expect("exists"), &id)
                        .expect("valid")
                })
                .collect();
            out.extend(decoder.decode(segment, &slivers, Consistency::Full)?);
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn any_k_slivers_rebuild_the_blob((encoding, shards, segment_size, data) in blob_case(), seed in any::<u64>()) {
            let blob = encode(encoding, shards, segment_size, &data);
            let k = usize::from(blob.metadata.params().source_shards());
            // A different random subset of k per segment, drawn from the seed.
            let back = read_all(&blob, |segment| {
                pick_k(seed ^ segment.wrapping_mul(0x9e37_79b9_7f4a_7c15), shards, k)
            });
            prop_assert_eq!(back.expect("decodes"), data);
        }

        #[test]
        fn a_repair_rebuilds_lost_slivers_byte_identical_with_valid_proofs(
            (encoding, shards, segment_size, data) in blob_case(), seed in any::<u64>(),
        ) {
            let blob = encode(encoding, shards, segment_size, &data);
            let params = *blob.metadata.params();
            let k = usize::from(params.source_shards());
            let id = blob.metadata.blob_id();
            let mut decoder = SegmentDecoder::new(params);
            for segment in 0..params.segment_count() {
                let mut order = pick_k(seed ^ segment, shards, usize::from(shards));
                let lost: Vec<u16> = order.split_off(k);
                let sources: Vec<VerifiedSliver> = order
                    .iter()
                    .map(|&i| VerifiedSliver::new(blob.sliver(segment, i).expect("sliver"), &id).expect("valid"))
                    .collect();
                let rebuilt = decoder.rebuild(segment, &sources, &lost).expect("rebuilds");
                prop_assert_eq!(rebuilt.len(), lost.len());
                for sliver in rebuilt {
                    prop_assert!(sliver.verify(&id).is_ok());
                    let original = blob.sliver(segment, sliver.index);
                    prop_assert_eq!(Some(sliver), original);
                }
            }
        }

        #[test]
        fn the_systematic_slivers_and_the_last_k_rebuild_the_blob((encoding, shards, segment_size, data) in blob_case()) {
            let blob = encode(encoding, shards, segment_size, &data);
            let k = blob.metadata.params().source_shards();
            prop_assert_eq!(read_all(&blob, |_| (0..k).collect()).expect("decodes"), data.clone());
            prop_assert_eq!(read_all(&blob, |_| (shards - k..shards).collect()).expect("decodes"), data);
        }

        #[test]
        fn any_flipped_bit_is_rejected(
            (encoding, shards, segment_size, data) in blob_case(),
            pick in any::<prop::sample::Index>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let blob = encode(encoding, shards, segment_size, &data);
            let id = blob.metadata.blob_id();
            let params = *blob.metadata.params();
            let segment = pick.index(usize::try_from(params.segment_count()).expect("small")) as u64;
            let index = u16::try_from(pick.index(usize::from(shards))).expect("small");
            let sliver = blob.sliver(segment, index).expect("exists");
            prop_assert!(sliver.verify(&id).is_ok());
            // Every bit of data, proof and header root is a candidate.
            let data_bits = sliver.data.len() * 8;
            let seg_bits = sliver.proof.segment_path.len() * 256;
            let blob_bits = sliver.proof.blob_path.len() * 256;
            let b = bit.index(data_bits + seg_bits + blob_bits + 256);
            let mut bad = sliver.clone();
            if b < data_bits {
                let mut bytes = bad.data.to_vec();
                bytes[b / 8] ^= 1 << (b % 8);
                bad.data = bytes.into();
            } else if b < data_bits + seg_bits {
                let b = b - data_bits;
                bad.proof.segment_path[b / 256][(b % 256) / 8] ^= 1 << (b % 8);
            } else if b < data_bits + seg_bits + blob_bits {
                let b = b - data_bits - seg_bits;
                bad.proof.blob_path[b / 256][(b % 256) / 8] ^= 1 << (b % 8);
            } else {
                let b = b - data_bits - seg_bits - blob_bits;
                bad.header.blob_root[b / 8] ^= 1 << (b % 8);
            }
            prop_assert!(bad.verify(&id).is_err());
        }

        #[test]
        fn inconsistent_encodings_are_detected_and_every_reader_agrees(
            encoding in encoding(),
            shards in 4u16..24,
            data in prop::collection::vec(any::<u8>(), 1..1500),
            tamper in any::<prop::sample::Index>(),
            subsets in prop::collection::vec(any::<u64>(), 4),
        ) {
            // A dishonest writer swaps one sliver for garbage before committing: the commitment is
            // well-formed, but the committed slivers are no longer one codeword.
            let len = u64::try_from(data.len()).expect("small");
            let params = BlobParams::new(encoding, shards, 512, len).expect("valid");
            let mut encoder = BlobEncoder::new(params);
            let mut segments = Vec::new();
            let mut roots = Vec::new();
            let victim = u16::try_from(tamper.index(usize::from(shards))).expect("small");
            for segment in 0..params.segment_count() {
                let start = usize::try_from(params.segment_offset(segment)).expect("small");
                let seg_len = params.segment_len(segment).expect("exists");
                let encoded = encoder.encode_next(&data[start..start + seg_len]).expect("encodes");
                let mut slivers = encoded.slivers.to_vec();
                for byte in &mut slivers[usize::from(victim)] {
                    *byte ^= 0x5a;
                }
                let tree = crate::encoder::segment_tree(&slivers).expect("non-empty");
                // The thread count never changes a root.
                prop_assert_eq!(crate::encoder::segment_tree_with(&slivers, 3).expect("non-empty").root(), tree.root());
                roots.push(tree.root());
                segments.push((slivers, tree));
            }
            let metadata = BlobMetadata::new(params, roots).expect("valid");
            let id = metadata.blob_id();
            let sliver = |segment: u64, index: u16| {
                let (slivers, tree) = &segments[usize::try_from(segment).expect("small")];
                let s = Sliver {
                    header: metadata.header(),
                    segment,
                    index,
                    data: slivers[usize::from(index)].clone().into(),
                    proof: crate::metadata::SliverProof {
                        segment_path: tree.path(usize::from(index)).expect("exists"),
                        blob_path: metadata.blob_path(segment).expect("exists"),
                    },
                };
                VerifiedSliver::new(s, &id).expect("every committed sliver verifies alone")
            };
            let k = usize::from(params.source_shards());
            for seed in subsets {
                // Each reader picks its own k slivers of segment 0, with or without the tampered one.
                let chosen = pick_k(seed, shards, k);
                let slivers: Vec<VerifiedSliver> = chosen.iter().map(|&i| sliver(0, i)).collect();
                let mut decoder = SegmentDecoder::new(params);
                match decoder.decode(0, &slivers, Consistency::Full) {
                    Err(DecodeError::Inconsistent(proof)) => {
                        prop_assert_eq!(proof.verify(), Ok(()));
                    }
                    other => prop_assert!(false, "reader with {:?} got {:?}", chosen, other.map(|d| d.len())),
                }
            }
        }
    }

    #[test]
    fn consistent_blobs_give_no_inconsistency_proof() {
        for encoding in ENCODINGS {
            let data = vec![42u8; 3000];
            let blob = encode(encoding, 10, 1024, &data);
            let id = blob.metadata.blob_id();
            let k = blob.metadata.params().source_shards();
            let slivers = (0..k)
                .map(|i| blob.sliver(1, i + 3).expect("exists"))
                .collect::<Vec<_>>();
            let proof = InconsistencyProof {
                blob_id: id,
                segment: 1,
                slivers,
            };
            assert_eq!(proof.verify(), Err(InvalidProof::Consistent(1)));
        }
    }

    #[test]
    fn too_few_or_mixed_slivers_are_refused() {
        let data = vec![7u8; 2000];
        let blob = encode(EncodingType::RsSimd, 12, 1024, &data);
        let id = blob.metadata.blob_id();
        let mut decoder = SegmentDecoder::new(*blob.metadata.params());
        let three: Vec<VerifiedSliver> = (0..3)
            .map(|i| VerifiedSliver::new(blob.sliver(0, i).expect("exists"), &id).expect("valid"))
            .collect();
        assert!(matches!(
            decoder.decode(0, &three, Consistency::Full),
            Err(DecodeError::Codec(CodecError::NotEnoughSlivers {
                have: 3,
                need: 4,
                ..
            }))
        ));
        let mut duplicates = three.clone();
        duplicates.push(three[0].clone());
        assert!(matches!(
            decoder.decode(0, &duplicates, Consistency::Full),
            Err(DecodeError::Codec(CodecError::NotEnoughSlivers {
                have: 3,
                ..
            }))
        ));
        assert!(matches!(
            decoder.decode(1, &three, Consistency::Full),
            Err(DecodeError::Mixed)
        ));
        assert!(matches!(
            decoder.decode(0, &[], Consistency::SliversOnly),
            Err(DecodeError::Codec(CodecError::NotEnoughSlivers {
                have: 0,
                ..
            }))
        ));
    }

    #[test]
    fn blob_ids_depend_on_every_parameter_and_byte() {
        let data = vec![1u8; 700];
        let base = encode(EncodingType::RsSimd, 12, 512, &data)
            .metadata
            .blob_id();
        assert_eq!(
            base,
            encode(EncodingType::RsSimd, 12, 512, &data)
                .metadata
                .blob_id()
        );
        assert_ne!(
            base,
            encode(EncodingType::NovelPoly, 12, 512, &data)
                .metadata
                .blob_id()
        );
        assert_ne!(
            base,
            encode(EncodingType::RsSimd, 13, 512, &data)
                .metadata
                .blob_id()
        );
        assert_ne!(
            base,
            encode(EncodingType::RsSimd, 12, 1024, &data)
                .metadata
                .blob_id()
        );
        let mut other = data.clone();
        other[699] = 2;
        assert_ne!(
            base,
            encode(EncodingType::RsSimd, 12, 512, &other)
                .metadata
                .blob_id()
        );
        other.push(0);
        assert_ne!(
            encode(EncodingType::RsSimd, 12, 512, &data[..699])
                .metadata
                .blob_id(),
            encode(
                EncodingType::RsSimd,
                12,
                512,
                &[&data[..699], &[0]].concat()
            )
            .metadata
            .blob_id()
        );
    }

    #[test]
    fn large_n_works_for_both_encodings() {
        for (encoding, shards) in [
            (EncodingType::RsSimd, 1024u16),
            (EncodingType::NovelPoly, 1024),
            (EncodingType::RsSimd, 4096),
        ] {
            let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
            let blob = encode(encoding, shards, 64 << 10, &data);
            let k = blob.metadata.params().source_shards();
            let back = read_all(&blob, |_| (shards - k..shards).collect()).expect("decodes");
            assert_eq!(back, data);
        }
    }
}
