//! Stewardship: the rules a holder applies to each blob it holds on every scan, with time as an input. Who of a
//! blob's holders is gone ([`Liveness`]: out of reach for the grace period, counted from when this peer first
//! found them missing), when a blob has settled enough for its holders to be challenged ([`Settling`]), which
//! partial sliver indexes were abandoned ([`Partials`]), which slivers this peer must hand off
//! ([`hand_off_indexes`]) and whether its repair is due now ([`repair_now`]).
//!
//! [`Steward`] puts them together: one scan's duties for each blob held here (hand-offs, a repair to lead, a
//! challenge round as leader or deputy), with challenge scheduling, and [`revert_undelivered`] says which list a
//! repair that failed partway announces.
//!
//! Each piece is a small deterministic state keyed by blob or peer, generic over the peer type as
//! [`crate::repair::plan`] is, and allocation-free on the common path (a peer seen connected, a blob already
//! settling). The driver owns the IO around it: it says who is connected, which slivers it holds and what time
//! it is, and acts on the answers. It must not read a clock, talk to peers or store anything.

use std::collections::{BTreeMap, BTreeSet};

use crate::blob_id::BlobId;
use crate::write::Millis;

mod scan;

pub use scan::{BlobAtScan, BlobDuties, Duty, Steward, StewardConfig, revert_undelivered};

/// What a scan makes of one holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Connected now.
    Here,
    /// Not connected, for less than the grace period: its slivers are not moved yet.
    Missing,
    /// Not connected for the grace period or longer: its slivers move. `newly` the first time a scan says so
    /// (for the driver's log), until the peer is seen again.
    Gone {
        /// First time reported gone since last seen.
        newly: bool,
    },
}

/// A blob's holders as one scan sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderView<P> {
    /// Out of reach past the grace period, or failing.
    pub gone: BTreeSet<P>,
    /// Another holder is missing but still within its grace period.
    pub pending: bool,
    /// Holders reported gone for the first time (for the driver's log).
    pub newly_gone: Vec<P>,
}

/// Since when each holder this peer found unconnected has been missing.
#[derive(Debug, Clone)]
pub struct Liveness<P> {
    missing_since: BTreeMap<P, Millis>,
    reported: BTreeSet<P>,
}

impl<P> Default for Liveness<P> {
    fn default() -> Self {
        Self {
            missing_since: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }
}

impl<P: Ord + Clone> Liveness<P> {
    /// Records what a scan saw of `peer` at `now`. A peer's grace period runs from the first scan that found it
    /// unconnected (a peer this node never talked to is not gone at once), and ends when it is seen again.
    pub fn observe(&mut self, peer: &P, connected: bool, now: Millis, grace: Millis) -> Presence {
        if connected {
            if !self.missing_since.is_empty() {
                self.missing_since.remove(peer);
                self.reported.remove(peer);
            }
            return Presence::Here;
        }
        let since = *self.missing_since.entry(peer.clone()).or_insert(now);
        if now.saturating_sub(since) < grace {
            return Presence::Missing;
        }
        Presence::Gone {
            newly: self.reported.insert(peer.clone()),
        }
    }

    /// A blob's holders as this peer sees them at `now`: the gone ones (out of reach past the grace period, or
    /// in `failing`), and whether another is still within its grace period (`pending`: a repair then waits for
    /// it, at most one grace period, so holders lost together are rebuilt in one repair). `me` is never gone.
    pub fn gone_holders(
        &mut self,
        holders: &[P],
        me: &P,
        now: Millis,
        grace: Millis,
        connected: impl Fn(&P) -> bool,
        failing: &BTreeSet<P>,
    ) -> HolderView<P> {
        let mut view = HolderView {
            gone: BTreeSet::new(),
            pending: false,
            newly_gone: Vec::new(),
        };
        for holder in holders.iter().filter(|h| *h != me) {
            match self.observe(holder, connected(holder), now, grace) {
                Presence::Here => {}
                Presence::Missing => view.pending = true,
                Presence::Gone { newly } => {
                    if newly {
                        view.newly_gone.push(holder.clone());
                    }
                    view.gone.insert(holder.clone());
                }
            }
            if failing.contains(holder) {
                view.gone.insert(holder.clone());
            }
        }
        view
    }

    /// Peers currently counted missing.
    pub fn missing(&self) -> usize {
        self.missing_since.len()
    }
}

/// Per blob held whole here: a fingerprint of its holder list, and since when this peer has held its sliver
/// whole under that list. Until the settle time has passed, holders may legitimately lack their slivers (the
/// writer delivers the rest after the certificate; a repair or hand-off delivers a new holder's run by run), so
/// nobody challenges them.
#[derive(Debug, Clone, Default)]
pub struct Settling {
    blobs: BTreeMap<BlobId, (u64, Millis)>,
}

impl Settling {
    /// Whether `blob_id` has settled at `now`: this peer holds its sliver whole (`held_whole`) under the list
    /// with `fingerprint` since at least `settle` ago. A new list, or a sliver that became whole, starts the
    /// wait again; a zero settle time settles at once.
    pub fn settled(
        &mut self,
        blob_id: BlobId,
        fingerprint: u64,
        held_whole: bool,
        now: Millis,
        settle: Millis,
    ) -> bool {
        if !held_whole {
            self.blobs.remove(&blob_id);
            return false;
        }
        match self.blobs.get(&blob_id) {
            Some(&(seen, since)) if seen == fingerprint => now.saturating_sub(since) >= settle,
            _ => {
                self.blobs.insert(blob_id, (fingerprint, now));
                settle == 0
            }
        }
    }

    /// Forgets blobs no longer held.
    pub fn retain(&mut self, mut keep: impl FnMut(&BlobId) -> bool) {
        self.blobs.retain(|blob_id, _| keep(blob_id));
    }
}

/// The partial sliver indexes held here (what a write, repair or hand-off that stopped midway left): how many
/// segments each held when last seen to grow, and since when.
#[derive(Debug, Clone, Default)]
pub struct Partials {
    tracked: BTreeMap<(BlobId, u16), (u64, Millis)>,
}

impl Partials {
    /// Records the partial indexes one scan saw (`seen`: index → segments held) and returns those that have
    /// not grown for `ttl`. A part that grows starts its wait again; one no longer partial is forgotten.
    pub fn stalled(
        &mut self,
        seen: &BTreeMap<(BlobId, u16), u64>,
        now: Millis,
        ttl: Millis,
    ) -> Vec<(BlobId, u16)> {
        self.tracked.retain(|key, _| seen.contains_key(key));
        let mut stalled = Vec::new();
        for (key, &held) in seen {
            match self.tracked.get_mut(key) {
                Some((was, since)) if *was == held => {
                    if now.saturating_sub(*since) >= ttl {
                        stalled.push(*key);
                    }
                }
                Some(entry) => *entry = (held, now),
                None => {
                    self.tracked.insert(*key, (held, now));
                }
            }
        }
        stalled
    }

    /// Whether a partial index holding its first `held` segments may still be on its way: not yet seen by a
    /// scan, grown since the last one, or grown within `settle`. One that stopped growing longer ago was
    /// abandoned, and a challenge must be able to find the loss.
    pub fn still_growing(
        &self,
        blob_id: &BlobId,
        index: u16,
        held: u64,
        now: Millis,
        settle: Millis,
    ) -> bool {
        match self.tracked.get(&(*blob_id, index)) {
            None => true,
            Some(&(seen, since)) => seen != held || now.saturating_sub(since) < settle,
        }
    }

    /// Forgets one index (deleted).
    pub fn forget(&mut self, blob_id: &BlobId, index: u16) {
        self.tracked.remove(&(*blob_id, index));
    }
}

/// The sliver indexes held here whole that the current list gives to another live peer: this peer hands them
/// off. None while this peer rebuilds the blob from them.
pub fn hand_off_indexes<'a, P: PartialEq + Ord>(
    holders: &'a [P],
    held_whole: &'a [u16],
    me: &'a P,
    gone: &'a BTreeSet<P>,
    rebuilding: bool,
) -> impl Iterator<Item = u16> + 'a {
    held_whole
        .iter()
        .copied()
        .filter(move |_| !rebuilding)
        .filter(move |&index| {
            holders
                .get(usize::from(index))
                .is_some_and(|holder| holder != me && !gone.contains(holder))
        })
}

/// Since when each blob has had lost holders this peer has not repaired yet.
#[derive(Debug, Clone, Default)]
pub struct Losses {
    since: BTreeMap<BlobId, Millis>,
}

impl Losses {
    /// Records a scan's count of `lost` holders of `blob_id` at `now`; returns how long the blob has had losses
    /// (0 when it has none, or they are new).
    pub fn observe(&mut self, blob_id: BlobId, lost: usize, now: Millis) -> Millis {
        if lost == 0 {
            self.since.remove(&blob_id);
            return 0;
        }
        now.saturating_sub(*self.since.entry(blob_id).or_insert(now))
    }

    /// Forgets blobs no longer held.
    pub fn retain(&mut self, mut keep: impl FnMut(&BlobId) -> bool) {
        self.since.retain(|blob_id, _| keep(blob_id));
    }
}

/// Whether the leader starts a blob's repair now, given a non-empty plan: a join alone (nothing lost)
/// rebalances at once; losses wait for the lazy-repair threshold ([`crate::repair::repair_due`]); and while
/// another holder is still within its grace period (`pending`) a repair of losses waits for it, so holders
/// lost together are rebuilt in one pass — but for one grace period at most after the blob's first loss
/// (`losses_for`, from [`Losses`]): holders that keep going missing one after another cannot hold a loss
/// unrepaired for ever.
pub fn repair_now(
    lost: usize,
    shards: u16,
    min_lost: u16,
    pending: bool,
    losses_for: Millis,
    grace: Millis,
) -> bool {
    let due = lost == 0 || crate::repair::repair_due(shards, lost, min_lost);
    due && (!pending || lost == 0 || losses_for >= grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob(n: u8) -> BlobId {
        BlobId::from_slice(&[n; 32]).unwrap()
    }

    #[test]
    fn holders_are_gone_only_after_the_grace_period_from_when_first_missed() {
        let mut live = Liveness::<u8>::default();
        let grace = 100;
        let none = BTreeSet::new();
        let holders = [0u8, 1, 2, 3];
        // 1 and 2 are missing from t = 10; 0 is this peer.
        let up = |p: &u8| *p == 3;
        let view = live.gone_holders(&holders, &0, 10, grace, up, &none);
        assert!(view.gone.is_empty() && view.pending);
        let view = live.gone_holders(&holders, &0, 109, grace, up, &none);
        assert!(view.gone.is_empty() && view.pending);
        let view = live.gone_holders(&holders, &0, 110, grace, up, &none);
        assert_eq!(view.gone, BTreeSet::from([1, 2]));
        assert!(!view.pending);
        assert_eq!(view.newly_gone, vec![1, 2]);
        // Reported once; 2 comes back and its clock restarts.
        let up = |p: &u8| *p == 3 || *p == 2;
        let view = live.gone_holders(&holders, &0, 150, grace, up, &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        assert!(view.newly_gone.is_empty());
        let up = |p: &u8| *p == 3;
        let view = live.gone_holders(&holders, &0, 200, grace, up, &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        assert!(view.pending, "2 went missing again at 200");
        // Failing holders are gone whatever their connection.
        let failing = BTreeSet::from([3]);
        let view = live.gone_holders(&holders, &0, 200, grace, up, &failing);
        assert!(view.gone.contains(&3));
        assert_eq!(live.missing(), 2);
    }

    #[test]
    fn challenges_wait_for_a_blob_to_settle_after_its_sliver_or_list_changes() {
        let mut settling = Settling::default();
        let settle = 60_000;
        let (b, t0) = (blob(1), 1_000);
        assert!(!settling.settled(b, 1, false, t0, settle));
        assert!(!settling.settled(b, 1, true, t0, settle));
        assert!(!settling.settled(b, 1, true, t0 + settle / 2, settle));
        assert!(settling.settled(b, 1, true, t0 + settle, settle));
        // A new list restarts the wait; so does losing the sliver.
        assert!(!settling.settled(b, 2, true, t0 + settle, settle));
        assert!(!settling.settled(b, 2, true, t0 + settle * 3 / 2, settle));
        assert!(settling.settled(b, 2, true, t0 + settle * 2, settle));
        assert!(!settling.settled(b, 2, false, t0 + settle * 2, settle));
        assert!(!settling.settled(b, 2, true, t0 + settle * 2, settle));
        // A zero settle time settles at once.
        assert!(settling.settled(blob(2), 1, true, t0, 0));
        settling.retain(|id| *id == blob(2));
        assert!(!settling.settled(b, 2, true, t0 + settle * 9, settle));
    }

    #[test]
    fn partials_that_stop_growing_are_stalled_after_the_ttl() {
        let mut partials = Partials::default();
        let (b, ttl) = (blob(1), 1_000);
        let seen = |held: u64| BTreeMap::from([((b, 3), held)]);
        assert!(partials.stalled(&seen(2), 0, ttl).is_empty());
        assert!(
            partials.still_growing(&b, 3, 3, 10, 500),
            "grew since the scan"
        );
        assert!(
            partials.still_growing(&b, 3, 2, 400, 500),
            "within the settle time"
        );
        assert!(!partials.still_growing(&b, 3, 2, 600, 500));
        assert!(partials.stalled(&seen(2), 999, ttl).is_empty());
        // Growth restarts the wait.
        assert!(partials.stalled(&seen(4), 999, ttl).is_empty());
        assert!(partials.stalled(&seen(4), 1_998, ttl).is_empty());
        assert_eq!(partials.stalled(&seen(4), 1_999, ttl), vec![(b, 3)]);
        // Whole or deleted: forgotten.
        assert!(partials.stalled(&BTreeMap::new(), 5_000, ttl).is_empty());
        assert!(partials.still_growing(&b, 3, 4, 5_000, 500));
        partials.stalled(&seen(4), 5_000, ttl);
        partials.forget(&b, 3);
        assert!(partials.still_growing(&b, 3, 4, 9_000, 500));
    }

    #[test]
    fn a_partial_index_is_reclaimed_only_after_the_ttl_without_growing() {
        let ttl: Millis = 3_600_000;
        let t0: Millis = 5;
        let (a, b) = (blob(1), blob(2));
        let mut partials = Partials::default();
        let seen: BTreeMap<_, _> = [((a, 0), 3), ((b, 5), 1)].into_iter().collect();
        assert!(partials.stalled(&seen, t0, ttl).is_empty());
        // Just before the TTL: nothing yet.
        assert!(partials.stalled(&seen, t0 + ttl - 1_000, ttl).is_empty());
        // a grew meanwhile: its wait starts again; b did not and goes.
        let seen: BTreeMap<_, _> = [((a, 0), 4), ((b, 5), 1)].into_iter().collect();
        assert_eq!(partials.stalled(&seen, t0 + ttl, ttl), vec![(b, 5)]);
        assert_eq!(
            partials.stalled(&seen, t0 + ttl + ttl / 2, ttl),
            vec![(b, 5)]
        );
        assert_eq!(
            partials.stalled(&seen, t0 + 2 * ttl, ttl),
            vec![(a, 0), (b, 5)]
        );
        // An index that became whole (or was removed) is forgotten: seen again later, it waits a full TTL.
        let seen: BTreeMap<_, _> = [((b, 5), 1)].into_iter().collect();
        assert_eq!(partials.stalled(&seen, t0 + 2 * ttl, ttl), vec![(b, 5)]);
        let seen: BTreeMap<_, _> = [((a, 0), 4)].into_iter().collect();
        assert!(partials.stalled(&seen, t0 + 2 * ttl, ttl).is_empty());
    }

    #[test]
    fn slivers_given_to_another_live_holder_are_handed_off() {
        let holders = [1u8, 2, 1, 3];
        let gone = BTreeSet::from([3]);
        let held = [0u16, 1, 3, 9];
        let moved: Vec<u16> = hand_off_indexes(&holders, &held, &1, &gone, false).collect();
        assert_eq!(
            moved,
            vec![1],
            "index 0 is ours, 3's holder is gone, 9 is out of range"
        );
        assert_eq!(
            hand_off_indexes(&holders, &held, &1, &gone, true).count(),
            0
        );
    }

    #[test]
    fn repairs_wait_for_the_lazy_threshold_and_for_pending_holders_up_to_a_grace_period() {
        let grace = 100;
        assert!(
            repair_now(0, 10, 3, true, 0, grace),
            "a join rebalances at once"
        );
        assert!(repair_now(1, 10, 1, false, 0, grace));
        assert!(
            !repair_now(1, 10, 1, true, 99, grace),
            "another holder is still within its grace"
        );
        assert!(
            repair_now(1, 10, 1, true, 100, grace),
            "but not for longer than a grace period"
        );
        assert!(
            !repair_now(1, 100, 3, false, 500, grace),
            "below the lazy threshold"
        );
        assert!(repair_now(3, 100, 3, false, 0, grace));
        // The loss clock starts at the first loss and stops when nothing is lost.
        let mut losses = Losses::default();
        let b = blob(1);
        assert_eq!(losses.observe(b, 1, 10), 0);
        assert_eq!(losses.observe(b, 2, 70), 60);
        assert_eq!(losses.observe(b, 0, 80), 0);
        assert_eq!(losses.observe(b, 1, 90), 0);
        losses.retain(|_| false);
        assert_eq!(losses.observe(b, 1, 500), 0);
    }

    proptest! {
        /// A holder is gone exactly when it has been unconnected on every scan since a scan at least `grace` ago
        /// first found it missing; this peer never is.
        #[test]
        fn gone_means_missing_for_the_whole_grace_period(
            scans in proptest::collection::vec((1u64..50, proptest::collection::vec(any::<bool>(), 4)), 1..40),
            grace in 0u64..200,
        ) {
            let mut live = Liveness::<u8>::default();
            let holders = [0u8, 1, 2, 3];
            let mut now = 0;
            let mut missing_from: [Option<u64>; 4] = [None; 4];
            for (step, up) in scans {
                now += step;
                for (i, slot) in missing_from.iter_mut().enumerate() {
                    if up[i] { *slot = None } else if slot.is_none() { *slot = Some(now) }
                }
                let gone = live
                    .gone_holders(&holders, &0, now, grace, |p| up[usize::from(*p)], &BTreeSet::new())
                    .gone;
                prop_assert!(!gone.contains(&0));
                for p in 1u8..4 {
                    let expected = missing_from[usize::from(p)].is_some_and(|since| now - since >= grace);
                    prop_assert_eq!(gone.contains(&p), expected);
                }
            }
        }
    }
}
