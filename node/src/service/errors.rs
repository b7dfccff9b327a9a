//! Why a store request was refused here, and why sending a sliver index to a holder failed. A refusal's text
//! goes back to the peer that sent the request (`Response.error`); a send failure is logged and counted by the
//! write, repair or hand-off that sent it, which then tries another holder or later.

use floe_protocol::content_type::ContentTypeError;
use floe_protocol::holders::HolderListError;
use floe_protocol::metadata::SliverError;
use floe_protocol::receipt::ReceiptError;
use floe_protocol::wire::WireError;

use crate::net::RequestError;
use crate::store::StoreError;

/// Why this node refused a store request.
#[derive(Debug, thiserror::Error)]
pub enum StoreRefusal {
    /// No metadata in the request.
    #[error("store request without metadata")]
    NoMetadata,
    /// The metadata does not decode or is inconsistent.
    #[error("bad metadata")]
    BadMetadata,
    /// Not a run of consecutive segments within the blob.
    #[error(
        "a store request carries consecutive segments of one sliver index, within the blob's {segments}; got {count} from segment {first}"
    )]
    OutOfRange {
        /// Segments of the blob.
        segments: u64,
        /// Slivers in the request.
        count: u64,
        /// The first one's segment.
        first: u64,
    },
    /// A sliver is malformed on the wire.
    #[error("malformed sliver: {0}")]
    Malformed(#[from] WireError),
    /// Slivers not in segment order, or of another blob.
    #[error("slivers out of order or of another blob")]
    OutOfOrder,
    /// More than one sliver index in one request.
    #[error("store request mixes sliver indexes")]
    MixedIndexes,
    /// A sliver does not verify against the blob ID.
    #[error("{0}")]
    Invalid(#[from] SliverError),
    /// The run starts past what is held, leaving a gap.
    #[error(
        "a run from segment {first} of sliver {index}, but only segments below {held} are held"
    )]
    Gap {
        /// The run's first segment.
        first: u64,
        /// Its sliver index.
        index: u16,
        /// Segments held from the first.
        held: u64,
    },
    /// Storing it would take this node over `--capacity`.
    #[error("node is full: {held} of {capacity} bytes used")]
    Full {
        /// Bytes held.
        held: u64,
        /// The capacity.
        capacity: u64,
    },
    /// The holder list sent gives the sliver to another peer, and the sender is over its budget for such
    /// stores.
    #[error(
        "the holder list sent gives sliver {index} to another peer, and this sender is over its budget for such \
         stores ({rate} bytes per second); retry in {retry_after} s"
    )]
    Unexpected {
        /// The sliver index.
        index: u16,
        /// The budget, bytes per second.
        rate: u64,
        /// Seconds until the sender's budget allows another.
        retry_after: u64,
    },
    /// The content type is not one a node keeps.
    #[error("{0}")]
    ContentType(#[from] ContentTypeError),
    /// The holder list is malformed, or not one this node accepts from the sender.
    #[error("{0}")]
    Holders(#[from] HolderListError),
    /// Claims that are malformed, or a store that would take the blob past its limit of claims.
    #[error("deletion claims: {0}")]
    Claims(#[from] floe_protocol::deletion::DeletionError),
    /// The blob was deleted and the store brings no new claim: writing it again takes a new deletable write.
    #[error(
        "blob {0} was deleted (every writer released its claim); a store of it needs a new claim"
    )]
    Deleted(floe_protocol::BlobId),
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Signing the receipt failed.
    #[error("signing the receipt: {0}")]
    Sign(#[from] libp2p::identity::SigningError),
    /// A blocking task of this node's did not finish (the node is shutting down).
    #[error("store task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why sending (part of) a sliver index to a holder failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The holder list names something that is not a peer ID.
    #[error("bad peer ID in the holder list")]
    BadPeer,
    /// This node is the holder and refused its own request.
    #[error("refused here: {0}")]
    Local(#[from] StoreRefusal),
    /// The request never got an answer.
    #[error("{0}")]
    Request(#[from] RequestError),
    /// The holder refused; its own words.
    #[error("refused: {0}")]
    Refused(String),
    /// The holder's queue was full.
    #[error("node busy; try again")]
    Busy,
    /// The holder has no room for the sliver.
    #[error("the holder is full: {free} of its {capacity} bytes free")]
    Full {
        /// Its free bytes.
        free: u64,
        /// Its capacity.
        capacity: u64,
    },
    /// The receipt does not hold.
    #[error("{0}")]
    Receipt(#[from] ReceiptError),
    /// An answer that is no answer to a store request.
    #[error("unexpected response")]
    Unexpected,
    /// The holder did not keep what it was sent.
    #[error("the holder keeps {held} of the index's {segments} segments after a run up to {end}")]
    Stalled {
        /// Segments it says it holds.
        held: u64,
        /// Segments of the blob.
        segments: u64,
        /// The run's end.
        end: u64,
    },
    /// Every run went out and no receipt came back.
    #[error("the holder never sent its receipt")]
    NoReceipt,
    /// A streamed write's run was not encoded when its turn came.
    #[error("the run was not encoded yet")]
    Unprepared,
    /// Reading the index from this node's store failed.
    #[error("reading the sliver here: {0}")]
    Read(#[from] StoreError),
    /// A blocking task of this node's did not finish (the node is shutting down).
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
