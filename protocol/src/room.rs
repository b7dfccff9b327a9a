//! Room: which peers can take a blob's slivers, and when a holder tells the swarm how much space it has left.
//!
//! A node with a capacity (`--capacity`) refuses a store that would take it over, answering its free bytes, and
//! gossips its free bytes now and then ([`should_announce`]). Writes stop short of the last tenth of a capacity
//! ([`usable`]): that reserve is for repairs and hand-offs, so a swarm that writes fill up can still heal. Writers and repairers skip peers known to lack
//! room for one sliver index of the blob ([`holders_with_room`]); readers still follow the holder list. A write
//! that cannot find ⌈2n/3⌉ distinct peers with room is refused before anything is sent ([`NoRoom`]): it could
//! not be certified, and a refusal up front leaves no slivers behind. What peers say about their room is a
//! claim, not evidence; a wrong one costs a refused store, which the write survives like any failed holder.
//!
//! This module decides; the driver keeps the peers' announcements, measures its own free bytes and says what
//! time it is.

use crate::write::{Millis, certificate_quorum};

/// A holder announces its free bytes again after this long even if they did not change (10 minutes), so peers
/// that joined since learn them.
pub const REANNOUNCE_AFTER: Millis = 10 * 60 * 1000;
/// A peer's announcement is forgotten after this long without a newer one (three announcements missed): a peer
/// that stopped announcing is taken to have room again, and its next refusal says otherwise.
pub const ROOM_TTL: Millis = 3 * REANNOUNCE_AFTER;
/// Free bytes must move by at least this fraction of the capacity (1/100) before a holder announces again.
pub const ANNOUNCE_STEP_DIVISOR: u64 = 100;
/// The share of a capacity kept for repairs and hand-offs (a tenth): writes never use it.
pub const REPAIR_RESERVE_DIVISOR: u64 = 10;

/// What a store is for: a write may not use the repair reserve; a repair or hand-off may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A writer's slivers (the writer's list, epoch 0).
    Write,
    /// A rebuilt or handed-off sliver (a repaired list).
    Repair,
}

/// Bytes of `free` (out of `capacity`) a store for `purpose` may use: all of them for a repair, all but the
/// reserve ([`REPAIR_RESERVE_DIVISOR`]) for a write.
pub fn usable(free: u64, capacity: u64, purpose: Purpose) -> u64 {
    match purpose {
        Purpose::Repair => free,
        Purpose::Write => free.saturating_sub(capacity / REPAIR_RESERVE_DIVISOR),
    }
}

/// A write that cannot be certified for lack of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "only {with_room} peers have room for a sliver of this blob and {needed} are needed; the swarm is too full"
)]
pub struct NoRoom {
    /// Distinct peers with room among the candidates.
    pub with_room: usize,
    /// Distinct holders needed: ⌈2n/3⌉, so that the receipts can certify the blob.
    pub needed: usize,
}

/// The holders of a new blob of `shards` slivers: the first `shards` peers of `ordered` (the blob's spread
/// neighbourhood, best first) that `has_room` says can take one of its sliver indexes. When fewer than `shards`
/// have room, the placement gives some of them more than one index, so at least ⌈2n/3⌉ distinct peers must
/// have room, or the write could never be certified.
pub fn holders_with_room<P: Clone>(
    ordered: &[P],
    shards: u16,
    has_room: impl Fn(&P) -> bool,
) -> Result<Vec<P>, NoRoom> {
    let chosen: Vec<P> = ordered
        .iter()
        .filter(|peer| has_room(peer))
        .take(usize::from(shards))
        .cloned()
        .collect();
    let needed = certificate_quorum(shards).min(ordered.len()).max(1);
    if chosen.len() < needed {
        return Err(NoRoom {
            with_room: chosen.len(),
            needed,
        });
    }
    Ok(chosen)
}

/// A peer's last word on its room: free bytes and capacity, and when it said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announced {
    /// Free bytes.
    pub free: u64,
    /// Capacity.
    pub capacity: u64,
    /// When (the driver's clock).
    pub at: Millis,
}

/// Whether a peer that announced its room (if it did) has room for `needed` bytes for `purpose` at `now`:
/// unknown or stale ([`ROOM_TTL`]) counts as room.
pub fn has_room(announced: Option<Announced>, needed: u64, purpose: Purpose, now: Millis) -> bool {
    match announced {
        Some(a) if now.saturating_sub(a.at) < ROOM_TTL => {
            usable(a.free, a.capacity, purpose) >= needed
        }
        _ => true,
    }
}

/// Whether a holder with `capacity` and `free` bytes announces at `now`, having last announced `last` (free
/// bytes and when): at first, when its free bytes moved by a hundredth of its capacity or it filled up or
/// emptied, and every [`REANNOUNCE_AFTER`].
pub fn should_announce(last: Option<(u64, Millis)>, free: u64, capacity: u64, now: Millis) -> bool {
    let Some((announced, at)) = last else {
        return true;
    };
    let step = (capacity / ANNOUNCE_STEP_DIVISOR).max(1);
    announced.abs_diff(free) >= step
        || (announced == 0) != (free == 0)
        || now.saturating_sub(at) >= REANNOUNCE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_peers_are_skipped_and_too_few_with_room_is_refused() {
        let ordered = [1u8, 2, 3, 4, 5, 6];
        let full = |p: &u8| *p == 2 || *p == 4;
        // n = 4 needs 3 distinct peers with room: the next ones in order step in.
        assert_eq!(
            holders_with_room(&ordered, 4, |p| !full(p)),
            Ok(vec![1, 3, 5, 6])
        );
        assert_eq!(
            holders_with_room(&ordered[..4], 4, |p| !full(p)),
            Err(NoRoom {
                with_room: 2,
                needed: 3
            })
        );
        // Three peers for four indexes: one holds two, and three receipts still certify.
        assert_eq!(
            holders_with_room(&ordered[..5], 4, |p| !full(p)),
            Ok(vec![1, 3, 5])
        );
        assert_eq!(
            holders_with_room(&ordered, 4, |_| false),
            Err(NoRoom {
                with_room: 0,
                needed: 3
            })
        );
    }

    #[test]
    fn announcements_are_heeded_until_stale() {
        let said = |free| {
            Some(Announced {
                free,
                capacity: 1_000,
                at: 0,
            })
        };
        assert!(has_room(None, u64::MAX, Purpose::Write, 0));
        assert!(has_room(said(200), 100, Purpose::Write, 5));
        assert!(!has_room(said(199), 100, Purpose::Write, ROOM_TTL - 1));
        assert!(has_room(said(199), 100, Purpose::Write, ROOM_TTL));
        // The last tenth is for repairs only.
        assert!(has_room(said(100), 100, Purpose::Repair, 5));
        assert!(!has_room(said(99), 100, Purpose::Repair, 5));
        assert_eq!(usable(150, 1_000, Purpose::Write), 50);
        assert_eq!(usable(50, 1_000, Purpose::Write), 0);
        assert_eq!(usable(50, 1_000, Purpose::Repair), 50);
    }

    #[test]
    fn holders_announce_on_change_on_filling_and_now_and_then() {
        let capacity = 10_000;
        assert!(should_announce(None, 5_000, capacity, 0));
        assert!(!should_announce(Some((5_000, 0)), 4_901, capacity, 1));
        assert!(should_announce(Some((5_000, 0)), 4_900, capacity, 1));
        assert!(should_announce(Some((5_000, 0)), 5_100, capacity, 1));
        assert!(should_announce(Some((50, 0)), 0, capacity, 1));
        assert!(should_announce(Some((0, 0)), 1, capacity, 1));
        assert!(!should_announce(
            Some((0, 0)),
            0,
            capacity,
            REANNOUNCE_AFTER - 1
        ));
        assert!(should_announce(Some((0, 0)), 0, capacity, REANNOUNCE_AFTER));
    }

    proptest! {
        /// Every chosen holder has room, they come in the neighbourhood's order, and the write is refused exactly
        /// when fewer than ⌈2n/3⌉ peers (or all of them, in a smaller swarm) have room.
        #[test]
        fn only_peers_with_room_hold_and_refusal_is_exact(
            room in proptest::collection::vec(any::<bool>(), 1..40),
            shards in 4u16..40,
        ) {
            let ordered: Vec<usize> = (0..room.len()).collect();
            let with_room = room.iter().filter(|r| **r).count();
            let needed = certificate_quorum(shards).min(ordered.len()).max(1);
            match holders_with_room(&ordered, shards, |p| room[*p]) {
                Ok(chosen) => {
                    prop_assert!(chosen.iter().all(|p| room[*p]));
                    prop_assert!(chosen.windows(2).all(|w| w[0] < w[1]));
                    prop_assert_eq!(chosen.len(), with_room.min(usize::from(shards)));
                    prop_assert!(chosen.len() >= needed);
                }
                Err(no_room) => {
                    prop_assert_eq!(no_room, NoRoom { with_room, needed });
                    prop_assert!(with_room < needed);
                }
            }
        }
    }
}
