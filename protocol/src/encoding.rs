//! Erasure coding of one segment into n slivers, and back, with either supported codec.
//!
//! This module owns the blob parameters (n, k, segment size, length), the sliver size rule and the two codecs.
//! It does not hash or verify anything: callers hand it slivers that [`crate::metadata`] already verified, and
//! it trusts their indexes.
//!
//! Sliver size: a segment of `len` bytes gives slivers of `max(2, 2·⌈len / 2k⌉)` bytes, the same for every
//! sliver of the segment and for both codecs. Source slivers carry the segment zero-padded to `k · sliver_len`.

use crate::copy;
#[cfg(feature = "novelpoly")]
use reed_solomon_novelpoly::WrappedShard;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Fewest slivers a blob may have.
pub const MIN_SHARDS: u16 = 4;
/// Most slivers a blob may have. Bounds the work a hostile metadata record can ask of a reader.
pub const MAX_SHARDS: u16 = 4096;
/// The segment size floe uses unless told otherwise: 16 MiB keeps encoding and decoding memory near
/// 4 × 16 MiB whatever the blob size, while a byte range still costs at most one segment per end.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;
/// Smallest accepted segment size (tests use small segments to cover multi-segment blobs cheaply).
pub const MIN_SEGMENT_SIZE: u64 = 256;
/// Largest accepted segment size: a reader allocates about 5 segments' worth, so this bounds its memory.
pub const MAX_SEGMENT_SIZE: u64 = 64 << 20;
/// Most segments a blob may have (2 MiB of segment roots in its metadata; 1 TiB at the default size).
pub const MAX_SEGMENTS: u64 = 1 << 16;
/// The number of slivers a writer picks when nothing else decides: the swarm size, capped here. At 1000 a
/// sliver of a 1 MiB blob is 3 KiB, and a read needs 334 requests; more would cost more in requests than it
/// gains in spread. Walrus uses the same count.
pub const DEFAULT_MAX_SHARDS: u16 = 1000;

/// The default n for a writer that sees `swarm_size` peers (itself included): every peer holds a sliver
/// up to [`DEFAULT_MAX_SHARDS`], and never fewer than [`MIN_SHARDS`] slivers.
pub fn default_shards(swarm_size: usize) -> u16 {
    u16::try_from(swarm_size)
        .unwrap_or(u16::MAX)
        .clamp(MIN_SHARDS, DEFAULT_MAX_SHARDS)
}

/// The Reed-Solomon source sliver count for n slivers: k = ⌊(n−1)/3⌋ + 1, the largest k for which any two
/// thirds of the slivers may be lost.
pub fn source_shards_for(shards: u16) -> u16 {
    (shards.saturating_sub(1)) / 3 + 1
}

/// The codec a blob was encoded with. The discriminants are part of the blob ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EncodingType {
    /// `reed-solomon-simd`: GF(2^16), Leopard-style FFT; contiguous source slivers. The default.
    RsSimd = 1,
    /// `reed-solomon-novelpoly`: GF(2^16), novel polynomial basis; source slivers striped two bytes at a time.
    /// Its k must be a power of two, so k is ⌊(n−1)/3⌋+1 rounded down to one (more storage, same tolerance).
    NovelPoly = 2,
}

impl EncodingType {
    /// The byte that stands for this encoding in the blob ID.
    pub fn code(self) -> u8 {
        match self {
            Self::RsSimd => 1,
            Self::NovelPoly => 2,
        }
    }

    /// The encoding for a code, if any.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::RsSimd),
            2 => Some(Self::NovelPoly),
            _ => None,
        }
    }

    /// The name used on the command line and in docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::RsSimd => "rs-simd",
            Self::NovelPoly => "novelpoly",
        }
    }

    /// The source sliver count this codec uses for n slivers.
    pub fn source_shards(self, shards: u16) -> u16 {
        let k = source_shards_for(shards);
        match self {
            Self::RsSimd => k,
            // Largest power of two not above k.
            Self::NovelPoly => 1 << (u16::BITS - 1 - k.leading_zeros()),
        }
    }
}

impl std::str::FromStr for EncodingType {
    type Err = ParamsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "rs-simd" => Ok(Self::RsSimd),
            "novelpoly" => Ok(Self::NovelPoly),
            other => Err(ParamsError::UnknownEncoding(other.to_owned())),
        }
    }
}

/// Why a set of blob parameters is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The encoding name or code is not one floe knows.
    #[error("unknown encoding {0:?}; floe knows rs-simd and novelpoly")]
    UnknownEncoding(String),
    /// n out of range.
    #[error("a blob has {MIN_SHARDS} to {MAX_SHARDS} slivers per segment; {0} was asked for")]
    ShardCount(u64),
    /// k does not follow the encoding's rule for n.
    #[error("{encoding} with {shards} slivers uses {expected} source slivers, not {found}")]
    SourceShardCount {
        /// The encoding's name.
        encoding: &'static str,
        /// n.
        shards: u16,
        /// The k the rule gives.
        expected: u16,
        /// The k given.
        found: u64,
    },
    /// Segment size out of range.
    #[error("segment size must be {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE} bytes; got {0}")]
    SegmentSize(u64),
    /// The blob needs too many segments.
    #[error(
        "a blob of {length} bytes in {segment_size}-byte segments needs more than {MAX_SEGMENTS} segments"
    )]
    TooLarge {
        /// Blob length.
        length: u64,
        /// Segment size.
        segment_size: u64,
    },
}

/// Everything the blob ID commits to except the slivers themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobParams {
    encoding: EncodingType,
    shards: u16,
    source_shards: u16,
    segment_size: u64,
    blob_length: u64,
}

impl BlobParams {
    /// Parameters for a blob of `blob_length` bytes in `shards` slivers, with k from the encoding's rule.
    pub fn new(
        encoding: EncodingType,
        shards: u16,
        segment_size: u64,
        blob_length: u64,
    ) -> Result<Self, ParamsError> {
        Self::from_parts(
            encoding,
            u64::from(shards),
            u64::from(encoding.source_shards(shards)),
            segment_size,
            blob_length,
        )
    }

    /// Parameters as found on the wire or on disk: every field is checked, k against the rule.
    pub fn from_parts(
        encoding: EncodingType,
        shards: u64,
        source_shards: u64,
        segment_size: u64,
        blob_length: u64,
    ) -> Result<Self, ParamsError> {
        let shards = u16::try_from(shards)
            .ok()
            .filter(|n| (MIN_SHARDS..=MAX_SHARDS).contains(n))
            .ok_or(ParamsError::ShardCount(shards))?;
        let expected = encoding.source_shards(shards);
        if source_shards != u64::from(expected) {
            return Err(ParamsError::SourceShardCount {
                encoding: encoding.name(),
                shards,
                expected,
                found: source_shards,
            });
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(ParamsError::SegmentSize(segment_size));
        }
        if blob_length.div_ceil(segment_size) > MAX_SEGMENTS {
            return Err(ParamsError::TooLarge {
                length: blob_length,
                segment_size,
            });
        }
        Ok(Self {
            encoding,
            shards,
            source_shards: expected,
            segment_size,
            blob_length,
        })
    }

    /// The codec.
    pub fn encoding(&self) -> EncodingType {
        self.encoding
    }
    /// n: slivers per segment.
    pub fn shards(&self) -> u16 {
        self.shards
    }
    /// k: source slivers per segment; any k distinct slivers of a segment rebuild it.
    pub fn source_shards(&self) -> u16 {
        self.source_shards
    }
    /// Bytes per segment (the last one may be shorter).
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }
    /// Length of the blob in bytes.
    pub fn blob_length(&self) -> u64 {
        self.blob_length
    }

    /// Number of segments: at least one, so that an empty blob still has slivers to store and prove.
    pub fn segment_count(&self) -> u64 {
        self.blob_length.div_ceil(self.segment_size).max(1)
    }

    /// Byte offset of a segment in the blob.
    pub fn segment_offset(&self, segment: u64) -> u64 {
        segment.saturating_mul(self.segment_size)
    }

    /// Length of segment `segment` in bytes, or `None` when the blob has no such segment.
    pub fn segment_len(&self, segment: u64) -> Option<usize> {
        if segment >= self.segment_count() {
            return None;
        }
        let start = self.segment_offset(segment);
        let len = self
            .blob_length
            .saturating_sub(start)
            .min(self.segment_size);
        // segment_size ≤ MAX_SEGMENT_SIZE, which fits usize on every supported target.
        usize::try_from(len).ok()
    }

    /// Length of every sliver of `segment`, or `None` when the blob has no such segment.
    pub fn sliver_len(&self, segment: u64) -> Option<usize> {
        self.segment_len(segment)
            .map(|len| sliver_len_for(len, self.source_shards))
    }

    /// Bytes of one sliver index over every segment: what a holder stores for each index it holds.
    pub fn index_bytes(&self) -> u64 {
        let segments = self.segment_count();
        let len = |segment: u64| {
            self.sliver_len(segment)
                .and_then(|len| u64::try_from(len).ok())
                .unwrap_or(0)
        };
        if segments == 0 {
            return 0;
        }
        len(0)
            .saturating_mul(segments - 1)
            .saturating_add(len(segments - 1))
    }

    /// The segments that hold bytes `[start, end)` of the blob.
    pub fn segments_for_range(&self, start: u64, end: u64) -> std::ops::Range<u64> {
        if start >= end {
            return 0..0;
        }
        start / self.segment_size..end.div_ceil(self.segment_size)
    }
}

fn sliver_len_for(segment_len: usize, source_shards: u16) -> usize {
    let k = usize::from(source_shards);
    (2 * segment_len.div_ceil(2 * k)).max(2)
}

/// Why encoding or decoding a segment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The segment's bytes do not have the length the parameters give.
    #[error("segment {segment} must be {expected} bytes; got {found}")]
    SegmentLength {
        /// Segment index.
        segment: u64,
        /// Expected length.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// Fewer distinct slivers than k.
    #[error("{have} distinct slivers of segment {segment}, {need} needed")]
    NotEnoughSlivers {
        /// Segment index.
        segment: u64,
        /// Distinct valid slivers at hand.
        have: usize,
        /// k.
        need: usize,
    },
    /// A sliver of the wrong size or index reached the codec (a caller bug; verified slivers never do).
    #[error("sliver {index} of segment {segment} does not fit the blob parameters")]
    BadSliver {
        /// Segment index.
        segment: u64,
        /// Sliver index.
        index: u16,
    },
    /// The underlying codec library reported an error.
    #[error("{encoding} codec failed: {message}")]
    Library {
        /// The encoding's name.
        encoding: &'static str,
        /// What the library said.
        message: String,
    },
}

fn simd_error(error: reed_solomon_simd::Error) -> CodecError {
    CodecError::Library {
        encoding: EncodingType::RsSimd.name(),
        message: error.to_string(),
    }
}

#[cfg(feature = "novelpoly")]
fn novelpoly_error(error: reed_solomon_novelpoly::Error) -> CodecError {
    CodecError::Library {
        encoding: EncodingType::NovelPoly.name(),
        message: error.to_string(),
    }
}

/// A codec for one blob's parameters. It keeps its work buffers between segments, so encode or decode a
/// whole blob with one `Codec`.
pub struct Codec {
    params: BlobParams,
    simd_encoder: Option<ReedSolomonEncoder>,
    simd_decoder: Option<ReedSolomonDecoder>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for these parameters.
    pub fn new(params: BlobParams) -> Self {
        Self {
            params,
            simd_encoder: None,
            simd_decoder: None,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &BlobParams {
        &self.params
    }

    /// Switches to another blob's parameters, keeping work buffers.
    pub fn set_params(&mut self, params: BlobParams) {
        self.params = params;
    }

    fn checked_segment_len(&self, segment: u64, found: usize) -> Result<usize, CodecError> {
        let expected = self
            .params
            .segment_len(segment)
            .ok_or(CodecError::SegmentLength {
                segment,
                expected: 0,
                found,
            })?;
        if expected != found {
            return Err(CodecError::SegmentLength {
                segment,
                expected,
                found,
            });
        }
        Ok(expected)
    }

    /// Encodes segment `segment` into `slivers`, which is resized to n buffers of the sliver length. The
    /// buffers are reused, so pass the same vector for every segment.
    pub fn encode_segment(
        &mut self,
        segment: u64,
        data: &[u8],
        slivers: &mut Vec<Vec<u8>>,
    ) -> Result<(), CodecError> {
        let segment_len = self.checked_segment_len(segment, data.len())?;
        let sliver_len = sliver_len_for(segment_len, self.params.source_shards);
        let n = usize::from(self.params.shards);
        let k = usize::from(self.params.source_shards);
        slivers.resize_with(n, Vec::new);
        match self.params.encoding {
            EncodingType::RsSimd => {
                for (index, sliver) in slivers.iter_mut().enumerate().take(k) {
                    sliver.clear();
                    let start = (index * sliver_len).min(segment_len);
                    let end = ((index + 1) * sliver_len).min(segment_len);
                    copy::extend(sliver, &data[start..end]);
                    sliver.resize(sliver_len, 0);
                }
                let encoder = match &mut self.simd_encoder {
                    Some(encoder) => {
                        encoder.reset(k, n - k, sliver_len).map_err(simd_error)?;
                        encoder
                    }
                    slot => slot
                        .insert(ReedSolomonEncoder::new(k, n - k, sliver_len).map_err(simd_error)?),
                };
                for sliver in &slivers[..k] {
                    encoder.add_original_shard(sliver).map_err(simd_error)?;
                }
                let result = encoder.encode().map_err(simd_error)?;
                for (sliver, recovery) in slivers[k..].iter_mut().zip(result.recovery_iter()) {
                    sliver.clear();
                    copy::extend(sliver, recovery);
                }
            }
            EncodingType::NovelPoly => self.novelpoly_encode(data, k, sliver_len, slivers)?,
        }
        if slivers.iter().any(|sliver| sliver.len() != sliver_len) {
            return Err(CodecError::Library {
                encoding: self.params.encoding.name(),
                message: "produced slivers of an unexpected size".to_owned(),
            });
        }
        Ok(())
    }

    #[cfg(feature = "novelpoly")]
    fn novelpoly(&self) -> Result<reed_solomon_novelpoly::ReedSolomon, CodecError> {
        let params = reed_solomon_novelpoly::CodeParams::derive_parameters(
            usize::from(self.params.shards),
            usize::from(self.params.source_shards),
        )
        .map_err(novelpoly_error)?;
        Ok(params.make_encoder())
    }

    #[cfg(feature = "novelpoly")]
    fn novelpoly_encode(
        &self,
        data: &[u8],
        k: usize,
        sliver_len: usize,
        slivers: &mut [Vec<u8>],
    ) -> Result<(), CodecError> {
        let code = self.novelpoly()?;
        let padded;
        // novelpoly refuses empty input; an empty segment encodes as k·2 zero bytes (the same slivers the size
        // rule gives).
        let input = if data.is_empty() {
            padded = vec![0u8; k * sliver_len];
            &padded[..]
        } else {
            data
        };
        let shards: Vec<WrappedShard> = code.encode(input).map_err(novelpoly_error)?;
        for (sliver, shard) in slivers.iter_mut().zip(shards) {
            *sliver = shard.into_inner();
        }
        Ok(())
    }

    #[cfg(feature = "novelpoly")]
    fn novelpoly_decode(
        &self,
        by_index: &[Option<&[u8]>],
        n: usize,
        k: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let code = self.novelpoly()?;
        let mut received: Vec<Option<WrappedShard>> = vec![None; n];
        let mut added = 0;
        for (slot, data) in received.iter_mut().zip(by_index) {
            if let (Some(data), true) = (data, added < k) {
                *slot = Some(WrappedShard::new(data.to_vec()));
                added += 1;
            }
        }
        code.reconstruct(received).map_err(novelpoly_error)
    }

    /// Without the `novelpoly` feature (the browser verifier's build: its library does not build for
    /// WebAssembly), novelpoly blobs cannot be encoded or decoded here.
    #[cfg(not(feature = "novelpoly"))]
    fn novelpoly_encode(
        &self,
        _: &[u8],
        _: usize,
        _: usize,
        _: &mut [Vec<u8>],
    ) -> Result<(), CodecError> {
        Err(Self::novelpoly_missing())
    }

    #[cfg(not(feature = "novelpoly"))]
    fn novelpoly_decode(
        &self,
        _: &[Option<&[u8]>],
        _: usize,
        _: usize,
    ) -> Result<Vec<u8>, CodecError> {
        Err(Self::novelpoly_missing())
    }

    #[cfg(not(feature = "novelpoly"))]
    fn novelpoly_missing() -> CodecError {
        CodecError::Library {
            encoding: EncodingType::NovelPoly.name(),
            message: "this build has no novelpoly codec (the novelpoly feature is off)".to_owned(),
        }
    }

    /// Rebuilds segment `segment` from slivers given as (index, bytes). Indexes must be distinct and below n,
    /// and every sliver must have the segment's sliver length (verified slivers always do). When the k source
    /// slivers are all present, the segment is assembled from them without decoding.
    pub fn decode_segment(
        &mut self,
        segment: u64,
        slivers: &[(u16, &[u8])],
    ) -> Result<Vec<u8>, CodecError> {
        let segment_len = self
            .params
            .segment_len(segment)
            .ok_or(CodecError::SegmentLength {
                segment,
                expected: 0,
                found: 0,
            })?;
        let sliver_len = sliver_len_for(segment_len, self.params.source_shards);
        let n = usize::from(self.params.shards);
        let k = usize::from(self.params.source_shards);

        // Pick at most one sliver per index, checking sizes; sources first so the systematic path is found.
        let mut by_index: Vec<Option<&[u8]>> = vec![None; n];
        for &(index, data) in slivers {
            let slot = by_index
                .get_mut(usize::from(index))
                .ok_or(CodecError::BadSliver { segment, index })?;
            if data.len() != sliver_len {
                return Err(CodecError::BadSliver { segment, index });
            }
            *slot = Some(data);
        }
        let have = by_index.iter().filter(|s| s.is_some()).count();
        if have < k {
            return Err(CodecError::NotEnoughSlivers {
                segment,
                have,
                need: k,
            });
        }

        if let Some(sources) = by_index[..k]
            .iter()
            .copied()
            .collect::<Option<Vec<&[u8]>>>()
        {
            return Ok(self.assemble_systematic(&sources, segment_len));
        }

        let mut out = match self.params.encoding {
            EncodingType::RsSimd => {
                let decoder = match &mut self.simd_decoder {
                    Some(decoder) => {
                        decoder.reset(k, n - k, sliver_len).map_err(simd_error)?;
                        decoder
                    }
                    slot => slot
                        .insert(ReedSolomonDecoder::new(k, n - k, sliver_len).map_err(simd_error)?),
                };
                // Exactly k shards: more would only add work.
                let mut added = 0;
                for (index, data) in by_index.iter().enumerate() {
                    let Some(data) = data else { continue };
                    if added == k {
                        break;
                    }
                    if index < k {
                        decoder
                            .add_original_shard(index, data)
                            .map_err(simd_error)?;
                    } else {
                        decoder
                            .add_recovery_shard(index - k, data)
                            .map_err(simd_error)?;
                    }
                    added += 1;
                }
                let result = decoder.decode().map_err(simd_error)?;
                let mut out = Vec::with_capacity(k * sliver_len);
                for (index, source) in by_index[..k].iter().enumerate() {
                    match source {
                        Some(data) => copy::extend(&mut out, data),
                        None => copy::extend(
                            &mut out,
                            result
                                .restored_original(index)
                                .ok_or_else(|| CodecError::Library {
                                    encoding: EncodingType::RsSimd.name(),
                                    message: format!("did not restore source sliver {index}"),
                                })?,
                        ),
                    }
                }
                out
            }
            EncodingType::NovelPoly => self.novelpoly_decode(&by_index, n, k)?,
        };
        if out.len() < segment_len {
            return Err(CodecError::Library {
                encoding: self.params.encoding.name(),
                message: format!(
                    "rebuilt {} bytes of a {segment_len}-byte segment",
                    out.len()
                ),
            });
        }
        out.truncate(segment_len);
        Ok(out)
    }

    /// The segment from its k source slivers, in index order, without decoding.
    pub fn assemble_systematic(&self, sources: &[&[u8]], segment_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(segment_len);
        match self.params.encoding {
            EncodingType::RsSimd => {
                for source in sources {
                    let take = (segment_len - out.len()).min(source.len());
                    copy::extend(&mut out, &source[..take]);
                    if out.len() == segment_len {
                        break;
                    }
                }
            }
            EncodingType::NovelPoly => {
                // Row r of 2k bytes is spread as bytes 2r, 2r+1 of every source sliver.
                let rows = sources.first().map_or(0, |s| s.len() / 2);
                'rows: for row in 0..rows {
                    for source in sources {
                        for byte in &source[2 * row..2 * row + 2] {
                            if out.len() == segment_len {
                                break 'rows;
                            }
                            out.push(*byte);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Builds the codecs' shared tables now by encoding and decoding one small segment with each encoding, so the
/// first blob a process encodes or decodes does not pay for them (tens of milliseconds for reed-solomon-simd's
/// GF(2^16) tables). Call it once when a long-running process starts; later calls cost one tiny encode.
pub fn prepare_codecs() -> Result<(), CodecError> {
    for encoding in [EncodingType::RsSimd, EncodingType::NovelPoly] {
        // n = 4, k = 2: the smallest shape both codecs accept; the decode below drops a source sliver, so it
        // exercises recovery, not only the systematic path.
        let data = [0x5au8; 64];
        let params = BlobParams::new(encoding, 4, 256, 64).map_err(|e| CodecError::Library {
            encoding: encoding.name(),
            message: e.to_string(),
        })?;
        let mut codec = Codec::new(params);
        let mut slivers = Vec::new();
        codec.encode_segment(0, &data, &mut slivers)?;
        let known: Vec<(u16, &[u8])> = (1u16..)
            .zip(slivers.iter().skip(1))
            .map(|(index, sliver)| (index, sliver.as_slice()))
            .collect();
        if codec.decode_segment(0, &known)? != data {
            return Err(CodecError::Library {
                encoding: encoding.name(),
                message: "decoded a test segment to other bytes".to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn index_bytes_add_up_every_segment_of_one_index() {
        let params = BlobParams::new(EncodingType::RsSimd, 10, 1024, 2500).unwrap();
        let per_segment: u64 = (0..params.segment_count())
            .map(|segment| params.sliver_len(segment).unwrap() as u64)
            .sum();
        assert_eq!(params.index_bytes(), per_segment);
        assert!(params.index_bytes() > 2500 / u64::from(params.source_shards()));
        let empty = BlobParams::new(EncodingType::RsSimd, 10, 1024, 0).unwrap();
        assert_eq!(
            empty.index_bytes(),
            empty.segment_count() * empty.sliver_len(0).map_or(0, |l| l as u64)
        );
    }

    #[test]
    fn codecs_prepare_with_a_recovering_decode() {
        assert_eq!(prepare_codecs(), Ok(()));
        // A second call is cheap and still checks the round trip.
        assert_eq!(prepare_codecs(), Ok(()));
    }

    #[test]
    fn source_shards_follow_the_rule() {
        assert_eq!(source_shards_for(4), 2);
        assert_eq!(source_shards_for(12), 4);
        assert_eq!(source_shards_for(100), 34);
        assert_eq!(source_shards_for(1000), 334);
        assert_eq!(EncodingType::NovelPoly.source_shards(100), 32);
        assert_eq!(EncodingType::NovelPoly.source_shards(1000), 256);
        assert_eq!(EncodingType::NovelPoly.source_shards(4), 2);
        assert_eq!(EncodingType::NovelPoly.source_shards(7), 2);
        for n in MIN_SHARDS..=MAX_SHARDS {
            // Losing ⌊2n/3⌋ slivers leaves exactly k.
            let k = source_shards_for(n);
            assert_eq!(n - k, 2 * n / 3);
            assert!(EncodingType::NovelPoly.source_shards(n) <= k);
        }
    }

    #[test]
    fn params_reject_what_they_cannot_honour() {
        let ok = BlobParams::new(EncodingType::RsSimd, 12, 1024, 5000).expect("valid");
        assert_eq!(ok.segment_count(), 5);
        assert_eq!(ok.segment_len(4), Some(5000 - 4096));
        assert_eq!(ok.segment_len(5), None);
        assert_eq!(ok.sliver_len(0), Some(256));
        assert_eq!(ok.segments_for_range(1000, 1025), 0..2);
        assert!(matches!(
            BlobParams::new(EncodingType::RsSimd, 3, 1024, 1),
            Err(ParamsError::ShardCount(3))
        ));
        assert!(matches!(
            BlobParams::from_parts(EncodingType::RsSimd, 12, 5, 1024, 1),
            Err(ParamsError::SourceShardCount { .. })
        ));
        assert!(matches!(
            BlobParams::new(EncodingType::RsSimd, 12, 100, 1),
            Err(ParamsError::SegmentSize(100))
        ));
        assert!(matches!(
            BlobParams::new(EncodingType::RsSimd, 12, 256, u64::MAX),
            Err(ParamsError::TooLarge { .. })
        ));
        let empty = BlobParams::new(EncodingType::RsSimd, 12, 1024, 0).expect("valid");
        assert_eq!(empty.segment_count(), 1);
        assert_eq!(empty.sliver_len(0), Some(2));
    }

    #[test]
    fn default_shards_follow_the_swarm() {
        assert_eq!(default_shards(1), 4);
        assert_eq!(default_shards(20), 20);
        assert_eq!(default_shards(5000), DEFAULT_MAX_SHARDS);
        assert_eq!(default_shards(usize::MAX), DEFAULT_MAX_SHARDS);
    }
}
