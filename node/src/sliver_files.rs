//! Slivers as files: `floe slivers encode` writes one file per sliver index plus a metadata file, and
//! `floe slivers decode` rebuilds the blob from whichever files are present and valid.
//!
//! This module owns the on-disk layout of those files and the streaming loops around the protocol core's
//! encoder and decoder. It makes no protocol decision: verification, decoding and the consistency verdict
//! come from `floe-protocol`.
//!
//! Layout of `sliver-<index>.floe` (all integers little-endian):
//! - for every segment s, in order: the sliver bytes (`sliver_len(s)`), then its in-segment Merkle path
//!   (32 bytes per hash, `path_len(index, n)` hashes);
//! - a trailer: the sliver index (u16), the blob metadata as protobuf, the trailer's length (u64, covering
//!   the index and metadata), and the magic `FLOESLV1`.
//!
//! `blob.meta` holds the same metadata, length-prefixed. The trailer makes every sliver file self-contained:
//! any one of them, checked against the blob ID, tells the decoder the blob's parameters.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use floe_protocol::decoder::{Consistency, DecodeError, SegmentDecoder, VerifiedSliver};
use floe_protocol::encoder::BlobEncoder;
use floe_protocol::merkle::{self, Hash};
use floe_protocol::wire::{self, MAX_METADATA_LEN, pb};
use floe_protocol::{BlobId, BlobMetadata, BlobParams, Sliver, SliverProof};
use prost::Message;

const MAGIC: &[u8; 8] = b"FLOESLV1";
const METADATA_FILE: &str = "blob.meta";

/// Why a sliver-file operation failed. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SliverFileError {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (not a `#[source]`: the message already includes it once).
        cause: io::Error,
    },
    /// The input is not a regular file.
    #[error(
        "{0} is not a regular file; floe needs the blob's length before reading it, so save a stream to a file first"
    )]
    NotAFile(PathBuf),
    /// The output directory already holds slivers.
    #[error("{0} already holds sliver files; encode into an empty or new directory")]
    OutputNotEmpty(PathBuf),
    /// The output file exists.
    #[error("{0} already exists; choose another output path or remove it")]
    OutputExists(PathBuf),
    /// Bad parameters.
    #[error(transparent)]
    Params(#[from] floe_protocol::ParamsError),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] floe_protocol::EncodeError),
    /// No valid metadata for the blob ID.
    #[error(
        "no sliver file or {METADATA_FILE} in {dir} holds metadata for blob {blob_id}; wrong directory or blob ID?"
    )]
    NoMetadata {
        /// The directory.
        dir: PathBuf,
        /// The blob ID.
        blob_id: BlobId,
    },
    /// A segment has fewer than k valid slivers.
    #[error(
        "segment {segment} has {have} valid slivers but {need} are needed; the blob cannot be rebuilt from these files"
    )]
    NotEnoughSlivers {
        /// Segment index.
        segment: u64,
        /// Valid slivers found.
        have: usize,
        /// k.
        need: u16,
    },
    /// The blob's writer encoded it inconsistently.
    #[error(
        "blob {blob_id} is inconsistent: its writer's slivers of segment {segment} are not one codeword, so no reader can trust it"
    )]
    Inconsistent {
        /// The blob ID.
        blob_id: BlobId,
        /// The segment that proved it.
        segment: u64,
    },
    /// Decoding failed for another reason.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Threads for hashing slivers: all the machine offers. The results do not depend on it.
fn hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SliverFileError + '_ {
    move |cause| SliverFileError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// The name of the file for sliver `index`.
pub fn sliver_file_name(index: u16) -> String {
    format!("sliver-{index:04}.floe")
}

/// Whether `name` looks like a sliver file (`sliver-<digits>`, any extension).
fn is_sliver_file_name(name: &str) -> bool {
    name.strip_prefix("sliver-").is_some_and(|rest| {
        let digits = rest.split('.').next().unwrap_or("");
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn blob_length_of(file: &File, path: &Path) -> Result<u64, SliverFileError> {
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(SliverFileError::NotAFile(path.to_owned()));
    }
    Ok(metadata.len())
}

/// Streams `input` through the encoder, calling `each` with every encoded segment. Memory stays at one
/// segment plus its slivers whatever the file size.
fn encode_file<F>(
    input: &Path,
    params_for: F,
    mut each: impl FnMut(&floe_protocol::encoder::EncodedSegment<'_>) -> Result<(), SliverFileError>,
) -> Result<BlobMetadata, SliverFileError>
where
    F: FnOnce(u64) -> Result<BlobParams, SliverFileError>,
{
    let file = File::open(input).map_err(io_error(input))?;
    let params = params_for(blob_length_of(&file, input)?)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut encoder = BlobEncoder::new(params).with_hash_threads(hash_threads());
    let mut buffer = Vec::new();
    for segment in 0..params.segment_count() {
        let len = params.segment_len(segment).unwrap_or(0);
        buffer.resize(len, 0);
        reader
            .read_exact(&mut buffer)
            .map_err(|cause| SliverFileError::Io {
                path: input.to_owned(),
                cause: io::Error::new(
                    cause.kind(),
                    format!("the file shrank while it was read ({cause})"),
                ),
            })?;
        let encoded = encoder.encode_next(&buffer)?;
        each(&encoded)?;
    }
    // A file that grew while we read it would give slivers of a different blob than its length says.
    let mut probe = [0u8; 1];
    if reader.read(&mut probe).map_err(io_error(input))? != 0 {
        return Err(SliverFileError::Io {
            path: input.to_owned(),
            cause: io::Error::other("the file grew while it was read"),
        });
    }
    Ok(encoder.finish()?)
}

/// Computes the blob ID of `input` without writing anything.
pub fn blob_id_of_file(
    input: &Path,
    params_for: impl FnOnce(u64) -> Result<BlobParams, SliverFileError>,
) -> Result<BlobMetadata, SliverFileError> {
    encode_file(input, params_for, |_| Ok(()))
}

/// Encodes `input` into `out_dir`: one `sliver-<index>.floe` per sliver index plus `blob.meta`.
pub fn encode_to_dir(
    input: &Path,
    out_dir: &Path,
    params_for: impl FnOnce(u64) -> Result<BlobParams, SliverFileError>,
) -> Result<BlobMetadata, SliverFileError> {
    fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let occupied = fs::read_dir(out_dir)
        .map_err(io_error(out_dir))?
        .filter_map(Result::ok)
        .any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            is_sliver_file_name(&name) || name == METADATA_FILE
        });
    if occupied {
        return Err(SliverFileError::OutputNotEmpty(out_dir.to_owned()));
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let result = encode_to_dir_inner(input, out_dir, params_for, &mut written);
    if result.is_err() {
        // Leave no half-written blob behind to be mistaken for a whole one.
        for path in written {
            let _ = fs::remove_file(path);
        }
    }
    result
}

fn encode_to_dir_inner(
    input: &Path,
    out_dir: &Path,
    params_for: impl FnOnce(u64) -> Result<BlobParams, SliverFileError>,
    written: &mut Vec<PathBuf>,
) -> Result<BlobMetadata, SliverFileError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let metadata = encode_file(input, params_for, |encoded| {
        if paths.is_empty() {
            for index in 0..encoded.slivers.len() {
                let index = u16::try_from(index).unwrap_or(u16::MAX);
                let path = out_dir.join(sliver_file_name(index));
                File::create(&path).map_err(io_error(&path))?;
                written.push(path.clone());
                paths.push(path);
            }
        }
        // Open, append, close: a blob may have thousands of slivers, more than a process may keep open.
        for (index, (path, sliver)) in paths.iter().zip(encoded.slivers).enumerate() {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            let path_bytes: Vec<u8> = encoded.segment_path(index).unwrap_or_default().concat();
            let mut file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io_error(path))?;
            file.write_all(sliver).map_err(io_error(path))?;
            file.write_all(&path_bytes).map_err(io_error(path))?;
        }
        Ok(())
    })?;
    let meta_bytes = pb::BlobMetadata::from(&metadata).encode_to_vec();
    for (index, path) in paths.iter().enumerate() {
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        let mut trailer = Vec::with_capacity(meta_bytes.len() + 18);
        trailer.extend_from_slice(&index.to_le_bytes());
        trailer.extend_from_slice(&meta_bytes);
        let body_len = u64::try_from(trailer.len()).unwrap_or(u64::MAX);
        trailer.extend_from_slice(&body_len.to_le_bytes());
        trailer.extend_from_slice(MAGIC);
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        file.write_all(&trailer).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))?;
    }
    let meta_path = out_dir.join(METADATA_FILE);
    written.push(meta_path.clone());
    fs::write(
        &meta_path,
        wire::encode_frame(&pb::BlobMetadata::from(&metadata)),
    )
    .map_err(io_error(&meta_path))?;
    Ok(metadata)
}

/// One sliver file, opened for decoding: its claimed index, and where each segment's record starts.
struct SliverFile {
    path: PathBuf,
    file: File,
    index: u16,
}

/// Why a sliver file cannot be used; the decode reports it and goes on with the others.
#[derive(Debug, thiserror::Error)]
enum TrailerError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("too short to be a sliver file")]
    TooShort,
    #[error("no sliver-file trailer (truncated or not a floe sliver file)")]
    NoTrailer,
    #[error("trailer length {0} is out of range")]
    Length(u64),
    #[error("{0}")]
    Wire(#[from] floe_protocol::wire::WireError),
    #[error("sliver index {0} is out of range")]
    Index(u16),
    #[error("holds {held} bytes of slivers where {expected} were expected (truncated or corrupt)")]
    Records { held: u64, expected: u64 },
}

/// Reads the trailer of a sliver file: (index, metadata).
fn read_trailer(file: &mut File) -> Result<(u16, BlobMetadata), TrailerError> {
    let len = file.metadata()?.len();
    if len < 16 {
        return Err(TrailerError::TooShort);
    }
    let mut tail = [0u8; 16];
    file.seek(SeekFrom::Start(len - 16))?;
    file.read_exact(&mut tail)?;
    let (length, magic) = tail.split_at(8);
    if magic != MAGIC {
        return Err(TrailerError::NoTrailer);
    }
    let mut length_bytes = [0u8; 8];
    length_bytes.copy_from_slice(length);
    let body_len = u64::from_le_bytes(length_bytes);
    let limit = u64::try_from(MAX_METADATA_LEN + 2).unwrap_or(u64::MAX);
    if body_len < 2 || body_len > limit || body_len > len - 16 {
        return Err(TrailerError::Length(body_len));
    }
    let mut body =
        vec![0u8; usize::try_from(body_len).map_err(|_| TrailerError::Length(body_len))?];
    file.seek(SeekFrom::Start(len - 16 - body_len))?;
    file.read_exact(&mut body)?;
    let index = u16::from_le_bytes([body[0], body[1]]);
    let message: pb::BlobMetadata =
        wire::decode_body(&body[2..], MAX_METADATA_LEN, "BlobMetadata")?;
    let metadata = BlobMetadata::try_from(&message)?;
    // The records before the trailer must have exactly the length the parameters give.
    let expected = records_len(metadata.params(), index).ok_or(TrailerError::Index(index))?;
    let held = len - 16 - body_len;
    if expected != held {
        return Err(TrailerError::Records { held, expected });
    }
    Ok((index, metadata))
}

fn record_len(params: &BlobParams, index: u16, segment: u64) -> Option<u64> {
    let data = params.sliver_len(segment)?;
    let path = merkle::path_len(usize::from(index), usize::from(params.shards()));
    u64::try_from(data + 32 * path).ok()
}

fn records_len(params: &BlobParams, index: u16) -> Option<u64> {
    if index >= params.shards() {
        return None;
    }
    (0..params.segment_count()).try_fold(0u64, |total, s| {
        total.checked_add(record_len(params, index, s)?)
    })
}

fn read_metadata_file(dir: &Path) -> Option<BlobMetadata> {
    let bytes = fs::read(dir.join(METADATA_FILE)).ok()?;
    let message: pb::BlobMetadata =
        wire::decode_frame(&bytes, MAX_METADATA_LEN, "BlobMetadata").ok()?;
    BlobMetadata::try_from(&message).ok()
}

/// What a decode saw besides the blob: files or records it rejected, for the user to hear about.
#[derive(Debug, Default)]
pub struct DecodeReport {
    /// Human-readable lines, one per rejected file or record.
    pub rejected: Vec<String>,
    /// Segments rebuilt by decoding rather than from the source slivers.
    pub decoded_segments: u64,
}

/// Rebuilds blob `blob_id` from the sliver files in `dir` into `out`. Writes to a temporary file beside
/// `out` and renames it only when every segment was rebuilt and checked, so a failure leaves no output.
pub fn decode_from_dir(
    dir: &Path,
    blob_id: &BlobId,
    out: &Path,
    report: &mut DecodeReport,
) -> Result<BlobMetadata, SliverFileError> {
    if out.exists() {
        return Err(SliverFileError::OutputExists(out.to_owned()));
    }
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error(dir))?
        .filter_map(Result::ok)
        .filter(|entry| is_sliver_file_name(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .collect();
    names.sort();

    let mut metadata = read_metadata_file(dir).filter(|m| m.blob_id() == *blob_id);
    let mut files: Vec<SliverFile> = Vec::new();
    for path in names {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) => {
                report
                    .rejected
                    .push(format!("{}: cannot open: {error}", path.display()));
                continue;
            }
        };
        match read_trailer(&mut file) {
            Ok((index, found)) if found.blob_id() == *blob_id => {
                if metadata.is_none() {
                    metadata = Some(found);
                }
                files.push(SliverFile { path, file, index });
            }
            Ok((_, found)) => report.rejected.push(format!(
                "{}: belongs to blob {}, not {blob_id}",
                path.display(),
                found.blob_id()
            )),
            Err(why) => report.rejected.push(format!("{}: {why}", path.display())),
        }
    }
    let metadata = metadata.ok_or_else(|| SliverFileError::NoMetadata {
        dir: dir.to_owned(),
        blob_id: *blob_id,
    })?;
    // Sources first: when they are all valid, no segment needs decoding.
    files.sort_by_key(|f| f.index);
    files.dedup_by_key(|f| f.index);

    let tmp = temp_path_for(out);
    let result = decode_into(&metadata, blob_id, &mut files, &tmp, report);
    match result {
        Ok(()) => {
            fs::rename(&tmp, out).map_err(io_error(out))?;
            Ok(metadata)
        }
        Err(error) => {
            let _ = fs::remove_file(&tmp);
            Err(error)
        }
    }
}

fn temp_path_for(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blob".into());
    out.with_file_name(format!(".{name}.floe-partial-{}", std::process::id()))
}

fn decode_into(
    metadata: &BlobMetadata,
    blob_id: &BlobId,
    files: &mut [SliverFile],
    tmp: &Path,
    report: &mut DecodeReport,
) -> Result<(), SliverFileError> {
    let params = *metadata.params();
    let k = params.source_shards();
    let header = metadata.header();
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_error(tmp))?;
    let mut decoder = SegmentDecoder::new(params).with_hash_threads(hash_threads());
    // Offsets advance per file as segments go by; records have fixed, computable lengths.
    let mut offsets = vec![0u64; files.len()];
    // A file found bad in one segment is still tried in the others: damage is often local.
    for segment in 0..params.segment_count() {
        let mut valid: Vec<VerifiedSliver> = Vec::with_capacity(usize::from(k));
        let blob_path = metadata.blob_path(segment).unwrap_or_default();
        for (file, offset) in files.iter_mut().zip(offsets.iter_mut()) {
            let Some(len) = record_len(&params, file.index, segment) else {
                continue;
            };
            let start = *offset;
            *offset += len;
            if valid.len() == usize::from(k) {
                continue;
            }
            let mut record = vec![0u8; usize::try_from(len).unwrap_or(0)];
            if let Err(error) = file
                .file
                .seek(SeekFrom::Start(start))
                .and_then(|_| file.file.read_exact(&mut record))
            {
                report.rejected.push(format!(
                    "{}: segment {segment}: {error}",
                    file.path.display()
                ));
                continue;
            }
            let data_len = params.sliver_len(segment).unwrap_or(0);
            let segment_path: Vec<Hash> = record[data_len..]
                .chunks_exact(32)
                .filter_map(|c| c.try_into().ok())
                .collect();
            record.truncate(data_len);
            let sliver = Sliver {
                header,
                segment,
                index: file.index,
                data: record.into(),
                proof: SliverProof {
                    segment_path,
                    blob_path: blob_path.clone(),
                },
            };
            match VerifiedSliver::new(sliver, blob_id) {
                Ok(verified) => valid.push(verified),
                Err(error) => report
                    .rejected
                    .push(format!("{}: {error}", file.path.display())),
            }
        }
        if valid.len() < usize::from(k) {
            return Err(SliverFileError::NotEnoughSlivers {
                segment,
                have: valid.len(),
                need: k,
            });
        }
        if valid.iter().any(|v| v.sliver().index >= k) {
            report.decoded_segments += 1;
        }
        let data = match decoder.decode(segment, &valid, Consistency::Full) {
            Ok(data) => data,
            Err(DecodeError::Inconsistent(proof)) => {
                return Err(SliverFileError::Inconsistent {
                    blob_id: proof.blob_id,
                    segment: proof.segment,
                });
            }
            Err(other) => return Err(other.into()),
        };
        output.write_all(&data).map_err(io_error(tmp))?;
    }
    output.sync_all().map_err(io_error(tmp))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::EncodingType;
    use floe_protocol::encoder::segment_tree;

    /// Writes sliver files by the documented layout for a writer that swapped one sliver for garbage
    /// before committing: the decoder must refuse the blob and write nothing.
    #[test]
    fn an_inconsistent_blob_is_refused_with_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let params = BlobParams::new(EncodingType::RsSimd, 8, 1024, 3000).unwrap();
        let mut encoder = BlobEncoder::new(params);
        let mut segments = Vec::new();
        for segment in 0..params.segment_count() {
            let start = usize::try_from(params.segment_offset(segment)).unwrap();
            let len = params.segment_len(segment).unwrap();
            let mut slivers = encoder
                .encode_next(&data[start..start + len])
                .unwrap()
                .slivers
                .to_vec();
            slivers[6][0] ^= 0xff;
            let tree = segment_tree(&slivers).unwrap();
            segments.push((slivers, tree));
        }
        let metadata =
            BlobMetadata::new(params, segments.iter().map(|(_, t)| t.root()).collect()).unwrap();
        let meta_bytes = pb::BlobMetadata::from(&metadata).encode_to_vec();
        for index in 0..8u16 {
            let mut file = Vec::new();
            for (slivers, tree) in &segments {
                file.extend_from_slice(&slivers[usize::from(index)]);
                for hash in tree.path(usize::from(index)).unwrap() {
                    file.extend_from_slice(&hash);
                }
            }
            let mut body = index.to_le_bytes().to_vec();
            body.extend_from_slice(&meta_bytes);
            file.extend_from_slice(&body);
            file.extend_from_slice(&u64::try_from(body.len()).unwrap().to_le_bytes());
            file.extend_from_slice(MAGIC);
            fs::write(dir.path().join(sliver_file_name(index)), file).unwrap();
        }
        // With all files the reader uses the clean sources; without three of them it must use parity.
        // Either way the verdict is the same.
        for drop in [vec![], vec![0u16, 1, 2]] {
            for index in &drop {
                let _ = fs::remove_file(dir.path().join(sliver_file_name(*index)));
            }
            let out = dir.path().join("out");
            let result = decode_from_dir(
                dir.path(),
                &metadata.blob_id(),
                &out,
                &mut DecodeReport::default(),
            );
            assert!(
                matches!(result, Err(SliverFileError::Inconsistent { .. })),
                "{result:?}"
            );
            assert!(!out.exists());
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 8 - drop.len());
        }
    }
}
