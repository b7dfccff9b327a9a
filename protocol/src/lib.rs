//! floe's sans-IO protocol core.
//!
//! This crate owns everything that decides what floe does with a blob: how it is erasure coded into slivers
//! ([`encoding`]), how the blob ID commits to every sliver ([`merkle`], [`metadata`]), how slivers are
//! produced ([`encoder`]) and rebuilt with a consistency verdict every reader shares ([`decoder`]), and the
//! wire format ([`wire`]). It must not do IO, read a clock, draw randomness of its own or iterate in an order a
//! `HashMap` picks: the node and the simulator drive the same code and must get the same answers.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]
// protocol/clippy.toml lists what would break determinism or bring IO in: using any of it fails the build.
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod blob_id;
pub mod challenge;
pub mod content_type;
pub mod copy;
pub mod decoder;
pub mod deletion;
pub mod departure;
pub mod diversity;
pub mod encoder;
pub mod encoding;
pub mod holders;
pub mod keyspace;
pub mod lifetime;
pub mod merkle;
pub mod metadata;
pub mod name;
pub mod placement;
pub mod quilt;
pub mod read;
pub mod receipt;
pub mod repair;
pub mod room;
pub mod steward;
pub mod stream_write;
pub mod wire;
pub mod write;

pub use blob_id::{BlobId, ParseBlobIdError};
pub use decoder::{Consistency, DecodeError, InconsistencyProof, SegmentDecoder, VerifiedSliver};
pub use encoder::{BlobEncoder, EncodeError, EncodedBlob};
pub use encoding::{BlobParams, Codec, CodecError, EncodingType, ParamsError};
pub use metadata::{BlobHeader, BlobMetadata, Sliver, SliverError, SliverProof};
