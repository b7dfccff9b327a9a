//! Room: this node's free space under `--capacity`, what peers said of theirs (`pb::Room`, in refusals and on
//! the room topic), and the announcements of its own. The rules (who counts as having room, when to announce)
//! are `floe_protocol::room`'s; this module keeps the state and does the IO.

use super::*;
use floe_protocol::room::{self, Announced, Purpose};

/// Peers whose room is remembered at most; past this, stale entries go, then the map stops growing (an unknown
/// peer counts as having room, so forgetting loses nothing but a refused store).
const MAX_ROOMS: usize = 16_384;

/// What peers said of their room, and what this node last announced.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    /// Each peer's last word on its room, and when (this node's clock, [`Node::now`]).
    peers: std::collections::HashMap<PeerId, Announced>,
    /// This node's last announcement.
    announced: Option<(u64, Millis)>,
}

impl Node {
    /// Bytes this node may still store under `--capacity` (`None`: no limit).
    pub fn free_bytes(&self) -> Option<u64> {
        let held = self.inner.store.counters().bytes.load(Ordering::Relaxed);
        self.inner.capacity.map(|c| c.saturating_sub(held))
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `peer` (this node included) has room for `needed` bytes for `purpose`, as far as this node knows.
    pub(crate) fn has_room(&self, peer: &PeerId, needed: u64, purpose: Purpose) -> bool {
        if *peer == self.inner.peer_id {
            return match (self.inner.capacity, self.free_bytes()) {
                (Some(capacity), Some(free)) => room::usable(free, capacity, purpose) >= needed,
                _ => true,
            };
        }
        let announced = self.rooms().peers.get(peer).copied();
        room::has_room(announced, needed, purpose, self.now())
    }

    /// Remembers what `peer` said of its room.
    pub(crate) fn note_room(&self, peer: PeerId, said: &pb::Room) {
        let now = self.now();
        let mut rooms = self.rooms();
        if rooms.peers.len() >= MAX_ROOMS && !rooms.peers.contains_key(&peer) {
            rooms
                .peers
                .retain(|_, a| now.saturating_sub(a.at) < room::ROOM_TTL);
            if rooms.peers.len() >= MAX_ROOMS {
                return;
            }
        }
        rooms.peers.insert(
            peer,
            Announced {
                free: said.free_bytes,
                capacity: said.capacity_bytes,
                at: now,
            },
        );
    }

    /// Peers known to have no room left for writes now (their free bytes are within the repair reserve).
    pub fn peers_without_room(&self) -> usize {
        let now = self.now();
        self.rooms()
            .peers
            .values()
            .filter(|a| {
                room::usable(a.free, a.capacity, Purpose::Write) == 0
                    && now.saturating_sub(a.at) < room::ROOM_TTL
            })
            .count()
    }

    /// A room announcement gossiped by `source`.
    pub(crate) fn on_room_gossip(&self, source: PeerId, data: &[u8]) -> Result<(), WireError> {
        let announced: pb::Room = floe_protocol::wire::decode_body(data, 64, "Room")?;
        self.note_room(source, &announced);
        Ok(())
    }

    /// Gossips this node's free bytes if `room::should_announce` says it is time (nodes without a capacity never
    /// do: they always have room).
    pub(crate) async fn announce_room(&self) {
        let (Some(capacity), Some(free)) = (self.inner.capacity, self.free_bytes()) else {
            return;
        };
        let now = self.now();
        {
            let mut rooms = self.rooms();
            if !room::should_announce(rooms.announced, free, capacity, now) {
                return;
            }
            rooms.announced = Some((free, now));
        }
        let message = pb::Room {
            free_bytes: free,
            capacity_bytes: capacity,
        };
        tracing::debug!(free, capacity, "announcing room");
        self.inner
            .net
            .publish_room(prost::Message::encode_to_vec(&message))
            .await;
    }
}
