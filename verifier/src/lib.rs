//! floe's reader-side check, for browsers: given a blob ID, it accepts metadata only if it hashes to that ID,
//! slivers only if their proofs lead to it, and rebuilds a segment from k verified slivers. Nothing a gateway
//! says is used unchecked, so a page can read through any node, honest or not, and get the right bytes or an
//! error. `floe-protocol` does the hashing and decoding (the same code the nodes run); [`wasm`] exports it to
//! JavaScript (`verifier/js/floe-verify.mjs`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

use prost::Message as _;

use floe_protocol::wire::pb;
use floe_protocol::{
    BlobId, BlobMetadata, BlobParams, Consistency, EncodingType, SegmentDecoder, Sliver,
    VerifiedSliver,
};

pub mod wasm;

/// Why a step of a verified read failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The parameters are not ones floe uses.
    #[error("bad parameters: {0}")]
    Params(String),
    /// The metadata does not hash to the blob ID: the gateway that sent it lied or erred.
    #[error("the metadata does not hash to the blob ID")]
    WrongMetadata,
    /// Not a protobuf `SliverSet`.
    #[error("not a sliver set: {0}")]
    Malformed(String),
    /// Fewer than k verified slivers of the segment.
    #[error("segment {segment}: {have} verified slivers of the {need} needed")]
    NotEnough {
        /// The segment.
        segment: u64,
        /// Verified slivers.
        have: usize,
        /// k.
        need: usize,
    },
    /// The verified slivers do not decode to one codeword: the writer was inconsistent.
    #[error("segment {0} does not decode consistently")]
    Decode(u64),
}

/// One blob being read.
pub struct Verifier {
    blob_id: BlobId,
    metadata: BlobMetadata,
    decoder: SegmentDecoder,
    /// Verified slivers by segment, then sliver index.
    slivers: BTreeMap<u64, BTreeMap<u16, VerifiedSliver>>,
    /// Slivers that failed verification (for the caller's report).
    pub rejected: u32,
}

impl Verifier {
    /// Opens `blob_id` with metadata as a gateway gave it; refused unless it hashes to `blob_id`.
    pub fn open(
        blob_id: BlobId,
        encoding_code: u8,
        shards: u16,
        segment_size: u64,
        blob_length: u64,
        segment_roots: Vec<[u8; 32]>,
    ) -> Result<Self, VerifyError> {
        let encoding = [EncodingType::RsSimd, EncodingType::NovelPoly]
            .into_iter()
            .find(|e| e.code() == encoding_code)
            .ok_or_else(|| VerifyError::Params(format!("unknown encoding {encoding_code}")))?;
        let params = BlobParams::new(encoding, shards, segment_size, blob_length)
            .map_err(|e| VerifyError::Params(e.to_string()))?;
        let metadata = BlobMetadata::new(params, segment_roots)
            .map_err(|e| VerifyError::Params(e.to_string()))?;
        if metadata.blob_id() != blob_id {
            return Err(VerifyError::WrongMetadata);
        }
        Ok(Self {
            blob_id,
            decoder: SegmentDecoder::new(params),
            metadata,
            slivers: BTreeMap::new(),
            rejected: 0,
        })
    }

    /// The blob's parameters.
    pub fn params(&self) -> &BlobParams {
        self.metadata.params()
    }

    /// Takes the slivers of a protobuf `SliverSet` that verify against the blob ID; returns how many did.
    pub fn add_slivers(&mut self, bytes: &[u8]) -> Result<usize, VerifyError> {
        let set =
            pb::SliverSet::decode(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let mut kept = 0;
        for message in set.slivers {
            let verified = <(BlobId, Sliver)>::try_from(message)
                .ok()
                .filter(|(id, _)| *id == self.blob_id)
                .and_then(|(_, sliver)| VerifiedSliver::new(sliver, &self.blob_id).ok());
            match verified {
                Some(sliver) => {
                    let (segment, index) = (sliver.sliver().segment, sliver.sliver().index);
                    self.slivers
                        .entry(segment)
                        .or_default()
                        .insert(index, sliver);
                    kept += 1;
                }
                None => self.rejected = self.rejected.saturating_add(1),
            }
        }
        Ok(kept)
    }

    /// Distinct verified sliver indexes of `segment`.
    pub fn have(&self, segment: u64) -> usize {
        self.slivers.get(&segment).map_or(0, BTreeMap::len)
    }

    /// Rebuilds `segment` from its verified slivers (checking that they are one codeword), and forgets them.
    pub fn decode(&mut self, segment: u64) -> Result<Vec<u8>, VerifyError> {
        let need = usize::from(self.params().source_shards());
        let have = self.have(segment);
        if have < need {
            return Err(VerifyError::NotEnough {
                segment,
                have,
                need,
            });
        }
        let slivers: Vec<VerifiedSliver> = self
            .slivers
            .remove(&segment)
            .map(|m| m.into_values().collect())
            .unwrap_or_default();
        self.decoder
            .decode(segment, &slivers, Consistency::Full)
            .map_err(|_| VerifyError::Decode(segment))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use floe_protocol::encoder::EncodedBlob;

    fn encoded(len: usize) -> (Vec<u8>, EncodedBlob) {
        let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let params = BlobParams::new(
            EncodingType::RsSimd,
            7,
            1 << 16,
            u64::try_from(len).unwrap(),
        )
        .unwrap();
        (data.clone(), EncodedBlob::encode(params, &data).unwrap())
    }

    fn open(blob: &EncodedBlob) -> Result<Verifier, VerifyError> {
        let p = blob.metadata.params();
        Verifier::open(
            blob.metadata.blob_id(),
            p.encoding().code(),
            p.shards(),
            p.segment_size(),
            p.blob_length(),
            blob.metadata.segment_roots().to_vec(),
        )
    }

    fn set(slivers: &[Sliver]) -> Vec<u8> {
        pb::SliverSet {
            slivers: slivers.iter().map(pb::Sliver::from).collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn verified_slivers_rebuild_each_segment_and_bad_ones_are_refused() {
        let (data, blob) = encoded(200_000);
        let mut verifier = open(&blob).unwrap();
        let k = usize::from(verifier.params().source_shards());
        let segments = verifier.params().segment_count();
        let mut out = Vec::new();
        for segment in 0..segments {
            // A liar's sliver first (one byte flipped), then honest parity slivers.
            let mut bad = blob.sliver(segment, 0).unwrap();
            let mut bytes = bad.data.to_vec();
            bytes[0] ^= 0x80;
            bad.data = bytes.into();
            assert_eq!(verifier.add_slivers(&set(&[bad])).unwrap(), 0);
            let honest: Vec<Sliver> = (1..=u16::try_from(k).unwrap())
                .map(|i| blob.sliver(segment, i).unwrap())
                .collect();
            assert_eq!(verifier.add_slivers(&set(&honest)).unwrap(), k);
            out.extend(verifier.decode(segment).unwrap());
        }
        assert_eq!(out, data);
        assert_eq!(verifier.rejected, u32::try_from(segments).unwrap());
        assert!(matches!(
            verifier.add_slivers(b"\xff\xff"),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier.decode(0),
            Err(VerifyError::NotEnough { .. })
        ));
    }

    #[test]
    fn metadata_that_does_not_hash_to_the_id_is_refused() {
        let (_, blob) = encoded(10_000);
        let p = blob.metadata.params();
        let mut roots = blob.metadata.segment_roots().to_vec();
        roots[0][0] ^= 1;
        let lied = Verifier::open(
            blob.metadata.blob_id(),
            p.encoding().code(),
            p.shards(),
            p.segment_size(),
            p.blob_length(),
            roots,
        );
        assert_eq!(lied.err(), Some(VerifyError::WrongMetadata));
        assert!(open(&blob).is_ok());
    }
}
