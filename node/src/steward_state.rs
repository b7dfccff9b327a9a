//! The node's stewardship bookkeeping, shared by its tasks: repairs and hand-offs running, recent repairs,
//! challenge tallies and times, the state `floe_protocol::steward` keeps (liveness, settling, partial indexes),
//! peers that announced their departure, and whether this node is leaving. A leaf: the service holds it, the
//! repair driver reads and updates it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use floe_protocol::BlobId;
use floe_protocol::challenge;
use floe_protocol::placement::PeerKey;
use floe_protocol::steward;
use libp2p::PeerId;

/// Repair bookkeeping shared by the node's tasks.
#[derive(Debug)]
pub struct RepairState {
    pub(crate) running: BTreeSet<BlobId>,
    pub(crate) handing_off: BTreeSet<(BlobId, u16)>,
    pub(crate) recent: BTreeMap<BlobId, Instant>,
    pub(crate) challenge_failures: challenge::Tally<PeerId>,
    /// Each scan's decisions and what they keep between scans (liveness, settling, losses, challenge times).
    pub(crate) steward: steward::Steward<PeerKey>,
    /// Peers that announced their own departure (a hand-off list without themselves), and when.
    pub(crate) departed: BTreeMap<PeerKey, Instant>,
    /// Partial sliver indexes held here: segments held when last seen to grow, and since when.
    pub(crate) partial: steward::Partials,
    /// When this node last caught up with each blob's list by asking its holders (an announcement far ahead).
    pub(crate) caught_up: BTreeMap<BlobId, Instant>,
    /// Holders of each deleted blob held here that acknowledged its deletion (`repair::deletions`).
    pub(crate) deletion_acks: BTreeMap<BlobId, BTreeSet<PeerKey>>,
    /// Holders found holding nothing of a blob, and when: new holders a repair led here could not deliver to
    /// (`repair::lead`), and holders that failed a challenge made when a repair leader asked for a statement
    /// (`repair::evidence`). Counted gone for the blob for ten minutes.
    pub(crate) held_nothing: BTreeMap<(BlobId, PeerKey), Instant>,
    pub(crate) leaving: bool,
}

impl RepairState {
    /// Bookkeeping for a node whose first scan is due at `now`.
    pub fn new(config: steward::StewardConfig, now: floe_protocol::write::Millis) -> Self {
        Self {
            running: BTreeSet::new(),
            handing_off: BTreeSet::new(),
            recent: BTreeMap::new(),
            challenge_failures: challenge::Tally::default(),
            steward: steward::Steward::new(config, now),
            departed: BTreeMap::new(),
            partial: steward::Partials::default(),
            caught_up: BTreeMap::new(),
            deletion_acks: BTreeMap::new(),
            held_nothing: BTreeMap::new(),
            leaving: false,
        }
    }
}
