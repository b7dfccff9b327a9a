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
#[derive(Debug, Default)]
pub struct RepairState {
    pub(crate) running: BTreeSet<BlobId>,
    pub(crate) handing_off: BTreeSet<(BlobId, u16)>,
    pub(crate) recent: BTreeMap<BlobId, Instant>,
    pub(crate) challenge_failures: challenge::Tally<PeerId>,
    pub(crate) last_challenged: BTreeMap<BlobId, Instant>,
    /// When each blob held whole here settled (`steward::Settling`): challenges wait `challenge_settle`.
    pub(crate) settling: steward::Settling,
    /// Holders found not connected, and since when (`steward::Liveness`).
    pub(crate) liveness: steward::Liveness<PeerKey>,
    /// Peers that announced their own departure (a hand-off list without themselves), and when.
    pub(crate) departed: BTreeMap<PeerKey, Instant>,
    /// Partial sliver indexes held here: segments held when last seen to grow, and since when.
    pub(crate) partial: steward::Partials,
    /// Since when each blob this node leads has had unrepaired losses (`steward::Losses`).
    pub(crate) losses: steward::Losses,
    pub(crate) leaving: bool,
}
