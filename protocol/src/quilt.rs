//! Quilts: many small files ("patches") stored as one blob, so a site of hundreds of files pays one encoding, n
//! slivers, n receipts and n store records instead of one of each per file (Walrus groups small files the same
//! way; its routes are served over this layout).
//!
//! A quilt blob is the 8 bytes `floeqlt1`, a u32 little-endian index length L, L bytes of `QuiltIndex` protobuf,
//! then the patches' bytes back to back in index order (sorted by identifier). Each index entry gives its patch's
//! byte range in the blob, so a reader fetches the head and then only the segments its patch lies in. A
//! [`PatchId`] names a patch by the quilt's blob ID and that range: anyone can read a patch by ID without the
//! index, and the blob ID still commits to every byte.
//!
//! This module owns the layout and its checks; it does no IO. Building takes the whole quilt in memory (the
//! gateway's body limit bounds it).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use crate::BlobId;
use crate::wire::pb;

/// The first bytes of every quilt.
pub const MAGIC: &[u8; 8] = b"floeqlt1";
/// Bytes before the index: the magic and the index length.
pub const PREFIX_LEN: usize = 12;
/// Largest index accepted (about 1,000 bytes per patch at the most patches).
pub const MAX_INDEX_LEN: usize = 16 << 20;
/// Most patches in one quilt.
pub const MAX_PATCHES: usize = 10_000;
/// Longest identifier, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 1024;
/// Most tags on one patch.
pub const MAX_TAGS: usize = 64;
/// Longest tag key or value, in bytes.
pub const MAX_TAG_LEN: usize = 4096;
/// The version byte of a floe patch ID (Walrus' own patch IDs use 0x01, with sliver columns, not bytes).
pub const PATCH_ID_VERSION: u8 = 0xf1;
const PATCH_ID_LEN: usize = 32 + 1 + 8 + 8;

/// Why a quilt, an index or a patch ID is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuiltError {
    /// A quilt needs at least one patch.
    #[error("a quilt needs at least one patch")]
    Empty,
    /// More patches than [`MAX_PATCHES`].
    #[error("a quilt holds at most {MAX_PATCHES} patches, got {0}")]
    TooManyPatches(usize),
    /// An identifier that breaks the rules.
    #[error("identifier {identifier:?}: {why}")]
    Identifier {
        /// The identifier (cut to 64 characters).
        identifier: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two patches with one identifier.
    #[error("identifier {0:?} appears twice; identifiers are unique within a quilt")]
    Duplicate(String),
    /// Tags that break the rules.
    #[error("tags of {identifier:?}: {why}")]
    Tags {
        /// The patch.
        identifier: String,
        /// What is wrong with them.
        why: &'static str,
    },
    /// The bytes are not a quilt (no magic, or an index that does not fit).
    #[error("not a floe quilt: {0}")]
    NotAQuilt(&'static str),
    /// The index is malformed.
    #[error("malformed quilt index: {0}")]
    BadIndex(String),
    /// The index is larger than [`MAX_INDEX_LEN`].
    #[error("the quilt index is {0} bytes, more than the {MAX_INDEX_LEN} accepted")]
    IndexTooLarge(u64),
    /// A patch ID that is not one.
    #[error("bad quilt patch ID: {0}")]
    BadPatchId(&'static str),
}

/// One patch to put in a quilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPatch {
    /// Unique within the quilt ([`check_identifier`]).
    pub identifier: String,
    /// The writer's tags (e.g. `content-type`).
    pub tags: BTreeMap<String, String>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A patch as the index gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Its identifier.
    pub identifier: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// First byte in the quilt blob.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

impl Patch {
    /// Its byte range in the quilt blob, `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        (self.offset, self.offset.saturating_add(self.length))
    }

    /// Its ID in the quilt `quilt`.
    pub fn id(&self, quilt: &BlobId) -> PatchId {
        PatchId {
            quilt: *quilt,
            offset: self.offset,
            length: self.length,
        }
    }
}

/// Checks an identifier: 1 to [`MAX_IDENTIFIER_LEN`] bytes, no control characters, not starting with `_`
/// (Walrus reserves it: `_metadata`) and without trailing whitespace.
pub fn check_identifier(identifier: &str) -> Result<(), QuiltError> {
    let bad = |why| QuiltError::Identifier {
        identifier: identifier.chars().take(64).collect(),
        why,
    };
    if identifier.is_empty() {
        return Err(bad("empty"));
    }
    if identifier.len() > MAX_IDENTIFIER_LEN {
        return Err(bad("longer than 1024 bytes"));
    }
    if identifier.starts_with('_') {
        return Err(bad("starts with '_', which is reserved"));
    }
    if identifier.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    if identifier.ends_with(char::is_whitespace) {
        return Err(bad("ends with whitespace"));
    }
    Ok(())
}

fn check_tags(identifier: &str, tags: &BTreeMap<String, String>) -> Result<(), QuiltError> {
    let bad = |why| QuiltError::Tags {
        identifier: identifier.chars().take(64).collect(),
        why,
    };
    if tags.len() > MAX_TAGS {
        return Err(bad("more than 64 tags"));
    }
    if tags
        .iter()
        .any(|(k, v)| k.is_empty() || k.len() > MAX_TAG_LEN || v.len() > MAX_TAG_LEN)
    {
        return Err(bad(
            "a tag key is empty, or a key or value is longer than 4096 bytes",
        ));
    }
    Ok(())
}

/// Builds a quilt from `patches`: the blob's bytes and its index (patches sorted by identifier).
pub fn build(mut patches: Vec<NewPatch>) -> Result<(Vec<u8>, Vec<Patch>), QuiltError> {
    if patches.is_empty() {
        return Err(QuiltError::Empty);
    }
    if patches.len() > MAX_PATCHES {
        return Err(QuiltError::TooManyPatches(patches.len()));
    }
    patches.sort_by(|a, b| a.identifier.cmp(&b.identifier));
    for pair in patches.windows(2) {
        if pair[0].identifier == pair[1].identifier {
            return Err(QuiltError::Duplicate(pair[0].identifier.clone()));
        }
    }
    for patch in &patches {
        check_identifier(&patch.identifier)?;
        check_tags(&patch.identifier, &patch.tags)?;
    }
    // The index's length depends on the offsets it holds, which depend on its length: encode with the final
    // offsets' widths by iterating until the length is stable (varints grow at most a few times).
    let mut index_len = 0u64;
    let (index, entries) = loop {
        let mut offset = u64::try_from(PREFIX_LEN)
            .unwrap_or(u64::MAX)
            .saturating_add(index_len);
        let mut entries = Vec::with_capacity(patches.len());
        for patch in &patches {
            let length = u64::try_from(patch.data.len()).unwrap_or(u64::MAX);
            entries.push(Patch {
                identifier: patch.identifier.clone(),
                tags: patch.tags.clone(),
                offset,
                length,
            });
            offset = offset.saturating_add(length);
        }
        let index = encode_index(&entries);
        let len = u64::try_from(index.len()).unwrap_or(u64::MAX);
        if len == index_len {
            break (index, entries);
        }
        index_len = len;
    };
    if index.len() > MAX_INDEX_LEN {
        return Err(QuiltError::IndexTooLarge(index_len));
    }
    let total: usize =
        patches.iter().map(|p| p.data.len()).sum::<usize>() + PREFIX_LEN + index.len();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&u32::try_from(index.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(&index);
    for patch in &patches {
        bytes.extend_from_slice(&patch.data);
    }
    Ok((bytes, entries))
}

fn encode_index(entries: &[Patch]) -> Vec<u8> {
    pb::QuiltIndex {
        patches: entries
            .iter()
            .map(|p| pb::QuiltPatch {
                identifier: p.identifier.clone(),
                offset: p.offset,
                length: p.length,
                tags: p
                    .tags
                    .iter()
                    .map(|(key, value)| pb::QuiltTag {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// The index length a quilt's first [`PREFIX_LEN`] bytes announce.
pub fn index_len(prefix: &[u8]) -> Result<usize, QuiltError> {
    let head = prefix
        .get(..PREFIX_LEN)
        .ok_or(QuiltError::NotAQuilt("shorter than its 12-byte head"))?;
    if &head[..8] != MAGIC {
        return Err(QuiltError::NotAQuilt("it does not start with floeqlt1"));
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_INDEX_LEN {
        return Err(QuiltError::IndexTooLarge(u64::from(u32::from_le_bytes([
            head[8], head[9], head[10], head[11],
        ]))));
    }
    Ok(len)
}

/// Parses and checks the index of a quilt blob of `quilt_len` bytes: `bytes` is the blob's head, at least
/// [`PREFIX_LEN`] plus the announced index length. Every patch must lie after the index and inside the blob, in
/// identifier order without overlapping, with valid identifiers and tags.
pub fn parse_index(bytes: &[u8], quilt_len: u64) -> Result<Vec<Patch>, QuiltError> {
    let len = index_len(bytes)?;
    let end = PREFIX_LEN.saturating_add(len);
    let index = bytes
        .get(PREFIX_LEN..end)
        .ok_or(QuiltError::NotAQuilt("the index runs past the bytes given"))?;
    let decoded = pb::QuiltIndex::decode(index).map_err(|e| QuiltError::BadIndex(e.to_string()))?;
    if decoded.patches.len() > MAX_PATCHES {
        return Err(QuiltError::TooManyPatches(decoded.patches.len()));
    }
    let mut next = u64::try_from(end).unwrap_or(u64::MAX);
    let mut patches = Vec::with_capacity(decoded.patches.len());
    let mut previous: Option<String> = None;
    for patch in decoded.patches {
        check_identifier(&patch.identifier)?;
        if previous
            .as_deref()
            .is_some_and(|p| p >= patch.identifier.as_str())
        {
            return Err(QuiltError::BadIndex(
                "identifiers not sorted or not unique".into(),
            ));
        }
        let mut tags = BTreeMap::new();
        for tag in patch.tags {
            if tags.insert(tag.key, tag.value).is_some() {
                return Err(QuiltError::BadIndex(format!(
                    "a tag key appears twice on {:?}",
                    patch.identifier
                )));
            }
        }
        check_tags(&patch.identifier, &tags)?;
        let stop = patch.offset.checked_add(patch.length);
        if patch.offset < next || stop.is_none_or(|stop| stop > quilt_len) {
            return Err(QuiltError::BadIndex(format!(
                "patch {:?} lies outside the quilt's data or overlaps another",
                patch.identifier
            )));
        }
        next = stop.unwrap_or(u64::MAX);
        previous = Some(patch.identifier.clone());
        patches.push(Patch {
            identifier: patch.identifier,
            tags,
            offset: patch.offset,
            length: patch.length,
        });
    }
    if patches.is_empty() {
        return Err(QuiltError::Empty);
    }
    Ok(patches)
}

/// A patch's ID: the quilt's blob ID and the patch's byte range in it. Its text form is URL-safe base64 without
/// padding of blob ID ‖ [`PATCH_ID_VERSION`] ‖ offset (u64 LE) ‖ length (u64 LE): 66 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatchId {
    /// The quilt.
    pub quilt: BlobId,
    /// First byte of the patch in the quilt.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

impl PatchId {
    /// The patch's byte range in the quilt, `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        (self.offset, self.offset.saturating_add(self.length))
    }
}

impl std::fmt::Display for PatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = [0u8; PATCH_ID_LEN];
        bytes[..32].copy_from_slice(self.quilt.as_bytes());
        bytes[32] = PATCH_ID_VERSION;
        bytes[33..41].copy_from_slice(&self.offset.to_le_bytes());
        bytes[41..].copy_from_slice(&self.length.to_le_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

impl std::str::FromStr for PatchId {
    type Err = QuiltError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 66 {
            return Err(QuiltError::BadPatchId("a floe patch ID is 66 characters"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| QuiltError::BadPatchId("not URL-safe base64"))?;
        let bytes: [u8; PATCH_ID_LEN] = bytes
            .try_into()
            .map_err(|_| QuiltError::BadPatchId("wrong length"))?;
        if bytes[32] != PATCH_ID_VERSION {
            return Err(QuiltError::BadPatchId("unknown version"));
        }
        let quilt =
            BlobId::from_slice(&bytes[..32]).map_err(|_| QuiltError::BadPatchId("bad quilt ID"))?;
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let (offset, length) = (word(33), word(41));
        if offset.checked_add(length).is_none() {
            return Err(QuiltError::BadPatchId("range overflows"));
        }
        Ok(Self {
            quilt,
            offset,
            length,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn patch(identifier: &str, data: &[u8]) -> NewPatch {
        NewPatch {
            identifier: identifier.into(),
            tags: BTreeMap::new(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_quilt_round_trips_and_patches_are_where_the_index_says() {
        let mut tagged = patch("index.html", b"<p>hi</p>");
        tagged
            .tags
            .insert("content-type".into(), "text/html".into());
        let (bytes, index) =
            build(vec![patch("b.bin", &[7; 300]), tagged, patch("a", b"")]).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let names: Vec<&str> = index.iter().map(|p| p.identifier.as_str()).collect();
        assert_eq!(names, ["a", "b.bin", "index.html"]);
        let parsed = parse_index(&bytes, u64::try_from(bytes.len()).unwrap()).unwrap();
        assert_eq!(parsed, index);
        let html = &parsed[2];
        let (start, end) = html.range();
        assert_eq!(
            &bytes[usize::try_from(start).unwrap()..usize::try_from(end).unwrap()],
            b"<p>hi</p>"
        );
        assert_eq!(html.tags["content-type"], "text/html");
        assert_eq!(u64::try_from(bytes.len()).unwrap(), end);
    }

    #[test]
    fn bad_quilts_are_refused_with_the_reason() {
        assert_eq!(build(vec![]), Err(QuiltError::Empty));
        assert!(matches!(
            build(vec![patch("x", b"1"), patch("x", b"2")]),
            Err(QuiltError::Duplicate(_))
        ));
        for bad in ["", "_metadata", "tab\there", "trailing ", &"x".repeat(1025)] {
            assert!(
                matches!(check_identifier(bad), Err(QuiltError::Identifier { .. })),
                "{bad:?}"
            );
        }
        check_identifier("assets/logo 2.png").unwrap();
        let mut tags = patch("t", b"");
        tags.tags.insert(String::new(), "v".into());
        assert!(matches!(build(vec![tags]), Err(QuiltError::Tags { .. })));
        assert!(matches!(
            parse_index(b"notaquiltatall", 14),
            Err(QuiltError::NotAQuilt(_))
        ));
        // An index that points past the blob.
        let (bytes, _) = build(vec![patch("a", b"abc")]).unwrap();
        let short = u64::try_from(bytes.len() - 1).unwrap();
        assert!(matches!(
            parse_index(&bytes, short),
            Err(QuiltError::BadIndex(_))
        ));
    }

    #[test]
    fn patch_ids_round_trip_and_strangers_are_refused() {
        let quilt = BlobId::from_slice(&[3; 32]).unwrap();
        let id = PatchId {
            quilt,
            offset: 100,
            length: 5,
        };
        let text = id.to_string();
        assert_eq!(text.len(), 66);
        assert_eq!(text.parse::<PatchId>().unwrap(), id);
        assert!(text[..65].parse::<PatchId>().is_err());
        assert!("A".repeat(66).parse::<PatchId>().is_err());
        assert!("é".repeat(33).parse::<PatchId>().is_err());
    }

    proptest! {
        /// Whatever bytes arrive as a quilt's head, parsing answers without panicking, and what it accepts lies
        /// inside the blob.
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), len in 0u64..1024) {
            let mut head = MAGIC.to_vec();
            head.extend_from_slice(&bytes);
            if let Ok(patches) = parse_index(&head, len) {
                for p in patches {
                    prop_assert!(p.offset.saturating_add(p.length) <= len);
                }
            }
            let _ = parse_index(&bytes, len);
        }

        /// Built quilts parse back to their index, with every patch's bytes in its range.
        #[test]
        fn built_quilts_parse_back(sizes in proptest::collection::vec(0usize..300, 1..20)) {
            let patches: Vec<NewPatch> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| patch(&format!("p{i:03}"), &vec![u8::try_from(i % 251).unwrap(); n]))
                .collect();
            let (bytes, index) = build(patches.clone()).unwrap();
            prop_assert_eq!(parse_index(&bytes, u64::try_from(bytes.len()).unwrap()).unwrap(), index.clone());
            for (p, entry) in patches.iter().zip(&index) {
                let (start, end) = entry.range();
                prop_assert_eq!(&bytes[usize::try_from(start).unwrap()..usize::try_from(end).unwrap()], &p.data[..]);
            }
        }
    }
}
