//! The WebAssembly exports (`floe_*`), used by `verifier/js/floe-verify.mjs`. One blob at a time (a page loads
//! one instance per reader). Bytes cross by an input buffer the caller fills (`floe_input` gives its address
//! in the instance's memory) and an output buffer it reads (`floe_output`); no Rust code here dereferences a
//! pointer from the caller, so there is no unsafe block: the `no_mangle` attribute is the only unsafe item.
#![allow(unsafe_code)]

use std::cell::RefCell;

use floe_protocol::BlobId;

use crate::Verifier;

thread_local! {
    static READER: RefCell<Option<Verifier>> = const { RefCell::new(None) };
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Codes the exports return below zero.
const MALFORMED: i64 = -1;
const WRONG_METADATA: i64 = -2;
const NOT_OPEN: i64 = -3;
const NOT_ENOUGH: i64 = -4;
const INCONSISTENT: i64 = -5;

/// An input buffer of `len` bytes (zeroed); returns its address for the caller to write into.
#[unsafe(no_mangle)]
pub extern "C" fn floe_input(len: u32) -> *mut u8 {
    INPUT.with_borrow_mut(|input| {
        input.clear();
        input.resize(usize::try_from(len).unwrap_or(0), 0);
        input.as_mut_ptr()
    })
}

/// The output buffer's address (what the last `floe_decode` wrote).
#[unsafe(no_mangle)]
pub extern "C" fn floe_output() -> *const u8 {
    OUTPUT.with_borrow(|output| output.as_ptr())
}

/// Opens a blob: the input holds its 32-byte ID, then its segment roots (32 bytes each). 0 when the metadata
/// hashes to the ID, else a negative code.
#[unsafe(no_mangle)]
pub extern "C" fn floe_open(
    encoding_code: u32,
    shards: u32,
    segment_size: u64,
    blob_length: u64,
) -> i64 {
    let opened = INPUT.with_borrow(|input| {
        let id = BlobId::from_slice(input.get(..32)?).ok()?;
        let roots: Vec<[u8; 32]> = input
            .get(32..)?
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok())
            .collect();
        Some(Verifier::open(
            id,
            u8::try_from(encoding_code).ok()?,
            u16::try_from(shards).ok()?,
            segment_size,
            blob_length,
            roots,
        ))
    });
    match opened {
        Some(Ok(verifier)) => {
            READER.set(Some(verifier));
            0
        }
        Some(Err(crate::VerifyError::WrongMetadata)) => WRONG_METADATA,
        _ => MALFORMED,
    }
}

/// Adds the input (a protobuf `SliverSet`): how many slivers verified, or a negative code.
#[unsafe(no_mangle)]
pub extern "C" fn floe_add_slivers() -> i64 {
    READER.with_borrow_mut(|reader| {
        let Some(reader) = reader.as_mut() else {
            return NOT_OPEN;
        };
        INPUT.with_borrow(|input| match reader.add_slivers(input) {
            Ok(kept) => i64::try_from(kept).unwrap_or(i64::MAX),
            Err(_) => MALFORMED,
        })
    })
}

/// Distinct verified sliver indexes of `segment`.
#[unsafe(no_mangle)]
pub extern "C" fn floe_have(segment: u64) -> u32 {
    READER.with_borrow(|reader| {
        reader
            .as_ref()
            .map_or(0, |r| u32::try_from(r.have(segment)).unwrap_or(u32::MAX))
    })
}

/// k: verified slivers a segment needs.
#[unsafe(no_mangle)]
pub extern "C" fn floe_need() -> u32 {
    READER.with_borrow(|reader| {
        reader
            .as_ref()
            .map_or(0, |r| u32::from(r.params().source_shards()))
    })
}

/// Slivers refused so far.
#[unsafe(no_mangle)]
pub extern "C" fn floe_rejected() -> u32 {
    READER.with_borrow(|reader| reader.as_ref().map_or(0, |r| r.rejected))
}

/// The first byte of `segment` in the blob.
#[unsafe(no_mangle)]
pub extern "C" fn floe_segment_offset(segment: u64) -> u64 {
    READER.with_borrow(|reader| {
        reader
            .as_ref()
            .map_or(0, |r| r.params().segment_offset(segment))
    })
}

/// The segments holding bytes `[start, end)`: first in the low 32 bits, end in the high (the blob's segment
/// count fits 32 bits).
#[unsafe(no_mangle)]
pub extern "C" fn floe_segments_for(start: u64, end: u64) -> u64 {
    READER.with_borrow(|reader| {
        reader.as_ref().map_or(0, |r| {
            let range = r.params().segments_for_range(start, end);
            (range.end << 32) | (range.start & 0xffff_ffff)
        })
    })
}

/// Rebuilds `segment` into the output buffer: its length, or a negative code.
#[unsafe(no_mangle)]
pub extern "C" fn floe_decode(segment: u64) -> i64 {
    let decoded = READER.with_borrow_mut(|reader| reader.as_mut().map(|r| r.decode(segment)));
    match decoded {
        None => NOT_OPEN,
        Some(Ok(bytes)) => {
            let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
            OUTPUT.set(bytes);
            len
        }
        Some(Err(crate::VerifyError::NotEnough { .. })) => NOT_ENOUGH,
        Some(Err(_)) => INCONSISTENT,
    }
}
