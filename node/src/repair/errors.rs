//! Why a repair, a hand-off or a gossiped announcement did not go through. Each is logged and counted where it
//! happens; the next scan tries again.

use floe_protocol::blob_id::ParseBlobIdError;
use floe_protocol::decoder::DecodeError;
use floe_protocol::holders::HolderListError;
use floe_protocol::metadata::SliverError;
use floe_protocol::wire::WireError;

use crate::service::SendError;
use crate::store::StoreError;

/// Why a repair or hand-off stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking task of this node's did not finish (the node is shutting down).
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// One of this node's own slivers does not verify.
    #[error("own sliver: {0}")]
    OwnSliver(#[from] SliverError),
    /// Rebuilding a segment failed.
    #[error("rebuilding: {0}")]
    Decode(#[from] DecodeError),
    /// Too few valid slivers could be fetched to rebuild.
    #[error("only {have} of the {need} slivers needed could be fetched")]
    TooFewSlivers {
        /// Valid slivers fetched.
        have: usize,
        /// Slivers needed.
        need: usize,
    },
    /// Some rebuilt slivers found no holder that took them.
    #[error("{0} rebuilt slivers could not be delivered")]
    Undelivered(usize),
    /// The sliver index handed off is outside the holder list.
    #[error("sliver index {0} is outside the holder list")]
    NotListed(u16),
    /// The receiver of a hand-off stored the sliver, but its own list gives the index to another peer: our copy
    /// stays until the lists agree.
    #[error("the receiver's holder list gives sliver index {0} to another peer")]
    ListedElsewhere(u16),
    /// No holder whose indexes the plan moves was proven gone by the holders' statements (`departure`).
    #[error("none of the {0} holders found gone was proven gone by the other holders")]
    Unproven(usize),
    /// Sending a sliver to its new holder failed.
    #[error("{0}")]
    Send(#[from] SendError),
}

/// Why a gossiped repair announcement was not applied.
#[derive(Debug, thiserror::Error)]
pub enum AnnouncementError {
    /// It does not decode.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// Its blob ID is malformed.
    #[error("{0}")]
    BlobId(#[from] ParseBlobIdError),
    /// Its holder list is malformed, or not one this node accepts from its source.
    #[error("{0}")]
    Holders(#[from] HolderListError),
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking task of this node's did not finish (the node is shutting down).
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}
