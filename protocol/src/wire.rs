//! The wire format: prost types generated from `proto/floe.proto`, checked conversions to and from the
//! domain types, and length-prefixed framing with limits.
//!
//! This module owns the rule that nothing from the network is trusted: a frame's length is checked before
//! anything is allocated, every field is validated while converting, and no input makes it panic. It does no
//! IO; drivers feed it bytes.

use bytes::Bytes;
use prost::Message;

use crate::blob_id::{BlobId, ParseBlobIdError};
use crate::encoding::MAX_SEGMENT_SIZE;
use crate::encoding::{BlobParams, EncodingType, ParamsError};
use crate::merkle::Hash;
use crate::metadata::{BlobHeader, BlobMetadata, MetadataError, Sliver, SliverProof};

/// Generated protobuf types (package `floe.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/floe.v1.rs"));
}

/// Most hashes a Merkle path may hold. 13 cover 4096 slivers and 17 cover 65536 segments.
pub const MAX_PATH_LEN: usize = 32;
/// Largest frame floe accepts: the largest sliver (half of the largest segment) plus room for its header,
/// proof and framing.
pub const MAX_FRAME_LEN: usize = (32 << 20) + (64 << 10);
// The largest sliver (k = 2) is half the largest segment.
const _: () = assert!(MAX_FRAME_LEN as u64 >= MAX_SEGMENT_SIZE / 2 + (64 << 10));
/// Largest metadata frame: 65536 segment roots plus fields.
pub const MAX_METADATA_LEN: usize = (1 << 16) * 35 + 1024;

/// Why bytes from the wire were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame is longer than the limit for its kind.
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLong {
        /// Announced or actual length.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadPrefix,
    /// Fewer bytes than the prefix announced.
    #[error("frame announces {announced} bytes but only {available} are present")]
    Truncated {
        /// Announced length.
        announced: usize,
        /// Bytes present.
        available: usize,
    },
    /// Not valid protobuf.
    #[error("not a valid {message} message: {reason}")]
    Decode {
        /// Message kind.
        message: &'static str,
        /// What prost said.
        reason: String,
    },
    /// A required field is absent.
    #[error("{message} lacks its {field} field")]
    Missing {
        /// Message kind.
        message: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A hash field is not 32 bytes.
    #[error("{field} must hold 32-byte hashes; found one of {len} bytes")]
    BadHash {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A Merkle path is longer than any valid one.
    #[error("{field} holds {len} hashes; at most {MAX_PATH_LEN} are valid")]
    PathTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A blob ID field is malformed.
    #[error("bad blob ID: {0}")]
    BlobId(#[from] ParseBlobIdError),
    /// Parameters out of range.
    #[error("bad blob parameters: {0}")]
    Params(#[from] ParamsError),
    /// Metadata does not fit its parameters.
    #[error("bad metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// A sliver index above 65535.
    #[error("sliver index {0} is out of range")]
    Index(u32),
}

/// Encodes `message` with its varint length prefix.
pub fn encode_frame<M: Message>(message: &M) -> Vec<u8> {
    message.encode_length_delimited_to_vec()
}

/// Reads the length prefix at the start of `buf`: `Ok(None)` when more bytes are needed to know it, else the
/// body length and the prefix length. Refuses a body over `limit` before anything is allocated.
pub fn frame_len(buf: &[u8], limit: usize) -> Result<Option<(usize, usize)>, WireError> {
    let mut value: u64 = 0;
    for (position, byte) in buf.iter().enumerate().take(10) {
        // The tenth byte may only carry the 64th bit; anything more overflows u64.
        if position == 9 && *byte > 1 {
            return Err(WireError::BadPrefix);
        }
        value |= u64::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            let len = usize::try_from(value)
                .ok()
                .filter(|len| *len <= limit)
                .ok_or(WireError::TooLong { len: value, limit })?;
            return Ok(Some((len, position + 1)));
        }
    }
    if buf.len() >= 10 {
        Err(WireError::BadPrefix)
    } else {
        Ok(None)
    }
}

/// Decodes one length-prefixed message that fills `buf` exactly.
pub fn decode_frame<M: Message + Default>(
    buf: &[u8],
    limit: usize,
    name: &'static str,
) -> Result<M, WireError> {
    let (len, prefix) = frame_len(buf, limit)?.ok_or(WireError::BadPrefix)?;
    let body = &buf[prefix..];
    if body.len() != len {
        return Err(WireError::Truncated {
            announced: len,
            available: body.len(),
        });
    }
    decode_body(body, limit, name)
}

/// Decodes an unprefixed message body of at most `limit` bytes.
pub fn decode_body<M: Message + Default>(
    body: &[u8],
    limit: usize,
    name: &'static str,
) -> Result<M, WireError> {
    if body.len() > limit {
        return Err(WireError::TooLong {
            len: u64::try_from(body.len()).unwrap_or(u64::MAX),
            limit,
        });
    }
    M::decode(body).map_err(|error| WireError::Decode {
        message: name,
        reason: error.to_string(),
    })
}

fn hash(bytes: &[u8], field: &'static str) -> Result<Hash, WireError> {
    bytes.try_into().map_err(|_| WireError::BadHash {
        field,
        len: bytes.len(),
    })
}

fn path(hashes: &[Bytes], field: &'static str) -> Result<Vec<Hash>, WireError> {
    if hashes.len() > MAX_PATH_LEN {
        return Err(WireError::PathTooLong {
            field,
            len: hashes.len(),
        });
    }
    hashes.iter().map(|h| hash(h, field)).collect()
}

fn bytes_of(hashes: &[Hash]) -> Vec<Bytes> {
    hashes.iter().map(|h| Bytes::copy_from_slice(h)).collect()
}

impl From<&BlobParams> for pb::BlobParams {
    fn from(params: &BlobParams) -> Self {
        let encoding = match params.encoding() {
            EncodingType::RsSimd => pb::EncodingType::RsSimd,
            EncodingType::NovelPoly => pb::EncodingType::Novelpoly,
        };
        Self {
            encoding: encoding.into(),
            shards: u32::from(params.shards()),
            source_shards: u32::from(params.source_shards()),
            segment_size: params.segment_size(),
            blob_length: params.blob_length(),
        }
    }
}

impl TryFrom<&pb::BlobParams> for BlobParams {
    type Error = WireError;

    fn try_from(params: &pb::BlobParams) -> Result<Self, WireError> {
        let encoding = EncodingType::from_code(params.encoding)
            .ok_or_else(|| ParamsError::UnknownEncoding(format!("code {}", params.encoding)))?;
        Ok(BlobParams::from_parts(
            encoding,
            u64::from(params.shards),
            u64::from(params.source_shards),
            params.segment_size,
            params.blob_length,
        )?)
    }
}

impl From<&BlobHeader> for pb::BlobHeader {
    fn from(header: &BlobHeader) -> Self {
        Self {
            params: Some((&header.params).into()),
            blob_root: Bytes::copy_from_slice(&header.blob_root),
        }
    }
}

impl TryFrom<&pb::BlobHeader> for BlobHeader {
    type Error = WireError;

    fn try_from(header: &pb::BlobHeader) -> Result<Self, WireError> {
        let params = header.params.as_ref().ok_or(WireError::Missing {
            message: "BlobHeader",
            field: "params",
        })?;
        Ok(BlobHeader {
            params: params.try_into()?,
            blob_root: hash(&header.blob_root, "blob_root")?,
        })
    }
}

impl From<&BlobMetadata> for pb::BlobMetadata {
    fn from(metadata: &BlobMetadata) -> Self {
        Self {
            params: Some(metadata.params().into()),
            segment_roots: bytes_of(metadata.segment_roots()),
        }
    }
}

impl TryFrom<&pb::BlobMetadata> for BlobMetadata {
    type Error = WireError;

    fn try_from(metadata: &pb::BlobMetadata) -> Result<Self, WireError> {
        let params: BlobParams = metadata
            .params
            .as_ref()
            .ok_or(WireError::Missing {
                message: "BlobMetadata",
                field: "params",
            })?
            .try_into()?;
        let roots = metadata
            .segment_roots
            .iter()
            .map(|r| hash(r, "segment_roots"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BlobMetadata::new(params, roots)?)
    }
}

impl From<&Sliver> for pb::Sliver {
    fn from(sliver: &Sliver) -> Self {
        Self {
            blob_id: Bytes::copy_from_slice(sliver.header.blob_id().as_bytes()),
            header: Some((&sliver.header).into()),
            segment: sliver.segment,
            index: u32::from(sliver.index),
            data: sliver.data.clone(),
            proof: Some(pb::SliverProof {
                segment_path: bytes_of(&sliver.proof.segment_path),
                blob_path: bytes_of(&sliver.proof.blob_path),
            }),
        }
    }
}

impl TryFrom<pb::Sliver> for (BlobId, Sliver) {
    type Error = WireError;

    /// Checks the fields; the proof itself is checked by [`Sliver::verify`] against the ID the caller wants.
    fn try_from(sliver: pb::Sliver) -> Result<Self, WireError> {
        let blob_id = BlobId::from_slice(&sliver.blob_id)?;
        let header: BlobHeader = sliver
            .header
            .as_ref()
            .ok_or(WireError::Missing {
                message: "Sliver",
                field: "header",
            })?
            .try_into()?;
        let proof = sliver.proof.as_ref().ok_or(WireError::Missing {
            message: "Sliver",
            field: "proof",
        })?;
        let index = u16::try_from(sliver.index).map_err(|_| WireError::Index(sliver.index))?;
        Ok((
            blob_id,
            Sliver {
                header,
                segment: sliver.segment,
                index,
                data: sliver.data,
                proof: SliverProof {
                    segment_path: path(&proof.segment_path, "segment_path")?,
                    blob_path: path(&proof.blob_path, "blob_path")?,
                },
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::encoder::EncodedBlob;
    use proptest::prelude::*;

    fn blob() -> EncodedBlob {
        let params = BlobParams::new(EncodingType::RsSimd, 7, 256, 1000).expect("valid");
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        EncodedBlob::encode(params, &data).expect("encodes")
    }

    #[test]
    fn sliver_and_metadata_round_trip() {
        let blob = blob();
        let id = blob.metadata.blob_id();
        let sliver = blob.sliver(2, 5).expect("exists");
        let frame = encode_frame(&pb::Sliver::from(&sliver));
        let decoded: pb::Sliver = decode_frame(&frame, MAX_FRAME_LEN, "Sliver").expect("decodes");
        let (decoded_id, decoded) = <(BlobId, Sliver)>::try_from(decoded).expect("valid");
        assert_eq!(decoded_id, id);
        assert_eq!(decoded, sliver);
        assert!(decoded.verify(&id).is_ok());

        let frame = encode_frame(&pb::BlobMetadata::from(&blob.metadata));
        let decoded: pb::BlobMetadata =
            decode_frame(&frame, MAX_METADATA_LEN, "BlobMetadata").expect("decodes");
        let metadata = BlobMetadata::try_from(&decoded).expect("valid");
        assert_eq!(metadata, blob.metadata);
        assert_eq!(metadata.blob_id(), id);
    }

    #[test]
    fn every_message_round_trips() {
        let blob = blob();
        let sliver = pb::Sliver::from(&blob.sliver(0, 0).expect("exists"));
        let receipt = pb::StorageReceipt {
            blob_id: sliver.blob_id.clone(),
            index: 3,
            holder_public_key: Bytes::from_static(b"key"),
            signature: Bytes::from_static(b"sig"),
            note: "outside my view".into(),
            listed_elsewhere: true,
        };
        fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: M) {
            let frame = encode_frame(&m);
            let back: M = decode_frame(&frame, MAX_FRAME_LEN, "test").expect("decodes");
            assert_eq!(back, m);
        }
        round_trip(pb::StoreRequest {
            slivers: vec![sliver.clone()],
            metadata: Some((&blob.metadata).into()),
            holders: vec![Bytes::from_static(b"peer")],
            ..Default::default()
        });
        round_trip(receipt.clone());
        round_trip(pb::Certificate {
            blob_id: sliver.blob_id.clone(),
            receipts: vec![receipt],
        });
        round_trip(pb::ReadRequest {
            blob_id: sliver.blob_id.clone(),
            first_segment: 1,
            index: 2,
            segment_count: 3,
            forward_to: vec![7u8; 38].into(),
        });
        round_trip(pb::ReadResponse {
            result: Some(pb::read_response::Result::Slivers(pb::SliverSet {
                slivers: vec![sliver.clone()],
            })),
        });
        round_trip(pb::Request {
            kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
                blob_id: sliver.blob_id.clone(),
                list_digest: true,
            })),
        });
        round_trip(pb::Response {
            kind: Some(pb::response::Kind::Metadata(pb::MetadataResponse {
                metadata: Some((&blob.metadata).into()),
                holders: vec![Bytes::from_static(b"peer")],
                ..Default::default()
            })),
        });
        round_trip(pb::ReadResponse {
            result: Some(pb::read_response::Result::NotFound("gone".into())),
        });
        round_trip(pb::RepairAnnouncement {
            blob_id: sliver.blob_id.clone(),
            indexes: vec![1, 2],
            repairer: Bytes::from_static(b"peer"),
            epoch: 9,
            holders: vec![Bytes::from_static(b"peer"), Bytes::from_static(b"other")],
            departures: Some(pb::Departures {
                peers: vec![Bytes::from_static(b"gone")],
                statements: vec![pb::DepartureStatement {
                    epoch: 8,
                    gone: Bytes::from_static(&[1]),
                    signer_public_key: Bytes::from_static(b"key"),
                    signature: Bytes::from_static(b"sig"),
                }],
            }),
        });
        round_trip(pb::StorageChallenge {
            blob_id: sliver.blob_id.clone(),
            segment: 0,
            index: 0,
            nonce: Bytes::from_static(b"nonce"),
        });
        round_trip(pb::ChallengeAnswer {
            nonce: Bytes::from_static(b"nonce"),
            sliver: Some(sliver),
            receiving: None,
        });
        round_trip(crate::challenge::still_receiving_answer(
            Bytes::from_static(b"nonce"),
            3,
            10,
        ));
        round_trip(pb::Response {
            kind: Some(pb::response::Kind::Busy(pb::Busy {})),
        });
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused_before_allocation() {
        // A prefix announcing 2^62 bytes is refused from the prefix alone.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
        assert!(matches!(
            frame_len(&huge, MAX_FRAME_LEN),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(
            frame_len(&[0xff; 12], 100),
            Err(WireError::BadPrefix)
        ));
        assert_eq!(frame_len(&[0x80], 100), Ok(None));
        assert!(matches!(
            decode_frame::<pb::Sliver>(&[5, 1, 2], 100, "Sliver"),
            Err(WireError::Truncated { .. })
        ));
        let mut sliver = pb::Sliver::from(&blob().sliver(0, 0).expect("exists"));
        sliver.proof = Some(pb::SliverProof {
            segment_path: vec![Bytes::from_static(&[0; 32]); MAX_PATH_LEN + 1],
            blob_path: vec![],
        });
        assert!(matches!(
            <(BlobId, Sliver)>::try_from(sliver.clone()),
            Err(WireError::PathTooLong { .. })
        ));
        sliver.index = 70_000;
        sliver.proof = Some(pb::SliverProof::default());
        assert!(matches!(
            <(BlobId, Sliver)>::try_from(sliver.clone()),
            Err(WireError::Index(70_000))
        ));
        sliver.header = None;
        assert!(matches!(
            <(BlobId, Sliver)>::try_from(sliver),
            Err(WireError::Missing { .. })
        ));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(sliver) = decode_frame::<pb::Sliver>(&bytes, MAX_FRAME_LEN, "Sliver")
                && let Ok((id, sliver)) = <(BlobId, Sliver)>::try_from(sliver)
            {
                let _ = sliver.verify(&id);
            }
            if let Ok(metadata) = decode_body::<pb::BlobMetadata>(&bytes, MAX_METADATA_LEN, "BlobMetadata") {
                let _ = BlobMetadata::try_from(&metadata);
            }
            let _ = decode_body::<pb::StoreRequest>(&bytes, MAX_FRAME_LEN, "StoreRequest");
            let _ = decode_body::<pb::ReadResponse>(&bytes, MAX_FRAME_LEN, "ReadResponse");
        }

        #[test]
        fn mutated_frames_never_panic(flip in 0usize..4096, byte in any::<u8>()) {
            let frame = encode_frame(&pb::Sliver::from(&blob().sliver(1, 1).expect("exists")));
            let mut bytes = frame.clone();
            let at = flip % bytes.len();
            bytes[at] = byte;
            if let Ok(sliver) = decode_frame::<pb::Sliver>(&bytes, MAX_FRAME_LEN, "Sliver")
                && let Ok((id, sliver)) = <(BlobId, Sliver)>::try_from(sliver)
            {
                let _ = sliver.verify(&id);
            }
        }
    }
}
