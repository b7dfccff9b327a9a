//! Room: this node's free space under `--capacity`, what peers said of theirs (`pb::Room`, in refusals and on
//! the room topic), and the announcements of its own. The rules (who counts as having room, when to announce)
//! are `floe_protocol::room`'s; this module keeps the state and does the IO.

use super::*;
use floe_protocol::room;

/// Peers whose room is remembered at most; past this, stale entries go, then the map stops growing (an unknown
/// peer counts as having room, so forgetting loses nothing but a refused store).
const MAX_ROOMS: usize = 16_384;

/// What peers said of their room, and what this node last announced.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    /// Free bytes each peer last reported, and when (this node's clock, [`Node::now`]).
    peers: std::collections::HashMap<PeerId, (u64, Millis)>,
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

    /// Whether `peer` (this node included) has room for `needed` bytes, as far as this node knows.
    pub(crate) fn has_room(&self, peer: &PeerId, needed: u64) -> bool {
        if *peer == self.inner.peer_id {
            return self.free_bytes().is_none_or(|free| free >= needed);
        }
        let announced = self.rooms().peers.get(peer).copied();
        room::has_room(announced, needed, self.now())
    }

    /// Remembers what `peer` said of its room.
    pub(crate) fn note_room(&self, peer: PeerId, free: u64) {
        let now = self.now();
        let mut rooms = self.rooms();
        if rooms.peers.len() >= MAX_ROOMS && !rooms.peers.contains_key(&peer) {
            rooms
                .peers
                .retain(|_, (_, at)| now.saturating_sub(*at) < room::ROOM_TTL);
            if rooms.peers.len() >= MAX_ROOMS {
                return;
            }
        }
        rooms.peers.insert(peer, (free, now));
    }

    /// Peers known to have no room at all now.
    pub fn peers_without_room(&self) -> usize {
        let now = self.now();
        self.rooms()
            .peers
            .values()
            .filter(|(free, at)| *free == 0 && now.saturating_sub(*at) < room::ROOM_TTL)
            .count()
    }

    /// A room announcement gossiped by `source`.
    pub(crate) fn on_room_gossip(&self, source: PeerId, data: &[u8]) -> Result<(), WireError> {
        let announced: pb::Room = floe_protocol::wire::decode_body(data, 64, "Room")?;
        self.note_room(source, announced.free_bytes);
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
