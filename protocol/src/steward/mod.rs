//! Stewardship: the rules a holder applies to each blob it holds on every scan, with time as an input. Who of a
//! blob's holders is gone ([`Liveness`]: out of reach for the grace period, counted from when the driver last
//! reached them, or from the first scan that found them out of reach), when a blob has settled enough for its holders to be challenged ([`Settling`]), which
//! partial sliver indexes were abandoned ([`Partials`]), which slivers this peer must hand off
//! ([`hand_off_indexes`]) and whether its repair is due now ([`repair_now`]).
//!
//! [`Steward`] puts them together: one scan's duties for each blob held here (hand-offs, a repair to lead, a
//! challenge round as leader or deputy), with challenge scheduling. A leader's plan keeps only the moves a list
//! can carry departure evidence for (`RepairPlan::restricted`, `holders::evidenced`).
//!
//! Each piece is a small deterministic state keyed by blob or peer, generic over the peer type as
//! [`crate::repair::plan`] is, and allocation-free on the common path (a peer seen connected, a blob already
//! settling). The driver owns the IO around it: it says who is connected, which slivers it holds and what time
//! it is, and acts on the answers. It must not read a clock, talk to peers or store anything.

use std::collections::{BTreeMap, BTreeSet};

use crate::blob_id::BlobId;
use crate::write::Millis;

mod reunion;
mod scan;

pub use reunion::{REUNION_ASKED, Reunions};
pub use scan::{BlobAtScan, BlobDuties, DEFAULT_CHALLENGES_PER_SCAN, Duty, Steward, StewardConfig};

/// What a scan makes of one holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Connected now.
    Here,
    /// Out of reach for less than the grace period: its slivers are not moved yet.
    Missing {
        /// When it becomes gone if it stays out of reach.
        until: Millis,
    },
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
    /// Another holder is missing but still within its grace period: the earliest time one of them becomes gone.
    pub pending_until: Option<Millis>,
    /// Holders reported gone for the first time (for the driver's log).
    pub newly_gone: Vec<P>,
    /// Sliver indexes whose holder is gone.
    pub lost: usize,
    /// Holders an earlier scan found gone (out of reach past the grace period) that this scan reaches again, in
    /// list order, each once.
    pub back: Vec<P>,
    /// Sliver indexes those holders hold.
    pub back_indexes: usize,
}

/// What the driver knows of whether a holder is reachable: `None` when it is, else since when it has been out
/// of reach. A time before `now` is taken as known (when its connection closed, a departure the simulator
/// scheduled); `now` says the driver knows no better ([`out_of_reach_now`]), and the steward counts from the
/// first scan that found the peer out of reach.
pub type OutOfReach = Option<Millis>;

/// The [`OutOfReach`] of a driver that only knows who is connected at `now`: a peer's grace period then runs
/// from the first scan that found it unconnected.
pub fn out_of_reach_now<P>(
    now: Millis,
    connected: impl Fn(&P) -> bool,
) -> impl Fn(&P) -> OutOfReach {
    move |peer| (!connected(peer)).then_some(now)
}

/// Since when each holder this peer found out of reach has been missing.
#[derive(Debug, Clone)]
pub struct Liveness<P> {
    missing: BTreeMap<P, Missed>,
    /// Scans begun ([`Liveness::begin_scan`]): a peer no scan looked at since the last one is forgotten.
    scan: u64,
}

/// One missing peer.
#[derive(Debug, Clone, Copy)]
struct Missed {
    since: Millis,
    reported: bool,
    last_scan: u64,
}

impl<P> Default for Liveness<P> {
    fn default() -> Self {
        Self {
            missing: BTreeMap::new(),
            scan: 0,
        }
    }
}

impl<P: Ord + Clone> Liveness<P> {
    /// Opens a scan: peers the previous scan did not find out of reach (reached again, or no blob held here
    /// names them any more) are forgotten, so departed peers do not pile up; one missed again later starts a
    /// new grace period, as a peer never seen does.
    pub fn begin_scan(&mut self) {
        self.scan = self.scan.saturating_add(1);
        let scan = self.scan;
        self.missing
            .retain(|_, missed| missed.last_scan.saturating_add(1) >= scan);
    }

    /// Records what a scan saw of `peer` at `now`: reachable (`None`) or out of reach since a time
    /// ([`OutOfReach`]). A peer's grace period runs from when the driver knows it went out of reach, else from
    /// the first scan that found it so (a peer this node never talked to is not gone at once), and ends once a
    /// whole scan finds it reachable: a scan that misses it again after that starts a new one. Reachable peers
    /// cost nothing here; most are.
    pub fn observe(
        &mut self,
        peer: &P,
        out_of_reach: OutOfReach,
        now: Millis,
        grace: Millis,
    ) -> Presence {
        let Some(since) = out_of_reach else {
            return Presence::Here;
        };
        let (known, since, scan) = (since < now, since.min(now), self.scan);
        let fresh = Missed {
            since,
            reported: false,
            last_scan: scan,
        };
        // Looked up before inserting: a peer already missing costs no clone.
        let missed = match self.missing.get_mut(peer) {
            // Not missed by the previous scan or this one: reached meanwhile; its grace period starts again.
            Some(missed) if missed.last_scan.saturating_add(1) < scan => {
                *missed = fresh;
                missed
            }
            Some(missed) => missed,
            None => self.missing.entry(peer.clone()).or_insert(fresh),
        };
        if known {
            missed.since = since;
        }
        missed.last_scan = scan;
        let until = missed.since.saturating_add(grace);
        if now < until {
            return Presence::Missing { until };
        }
        Presence::Gone {
            newly: !std::mem::replace(&mut missed.reported, true),
        }
    }

    /// A blob's holders as this peer sees them at `now`: the gone ones (out of reach past the grace period, or
    /// in `failing`), and when the first still within its grace period becomes gone (`pending_until`: a repair
    /// waits for it, at most one grace period, so holders lost together are rebuilt in one repair). `me` is
    /// never gone.
    pub fn gone_holders(
        &mut self,
        holders: &[P],
        me: &P,
        now: Millis,
        grace: Millis,
        out_of_reach: impl Fn(&P) -> OutOfReach,
        failing: &BTreeSet<P>,
    ) -> HolderView<P> {
        let mut view = HolderView {
            gone: BTreeSet::new(),
            pending_until: None,
            newly_gone: Vec::new(),
            lost: 0,
            back: Vec::new(),
            back_indexes: 0,
        };
        for holder in holders.iter().filter(|h| *h != me) {
            let out = match self.observe(holder, out_of_reach(holder), now, grace) {
                Presence::Here => {
                    // Most scans find nobody missing: the common path looks nothing up.
                    if !self.missing.is_empty() && self.back_from_gone(holder) {
                        view.back_indexes += 1;
                        if !view.back.contains(holder) {
                            view.back.push(holder.clone());
                        }
                    }
                    false
                }
                Presence::Missing { until } => {
                    view.pending_until = Some(view.pending_until.map_or(until, |t| t.min(until)));
                    false
                }
                Presence::Gone { newly } => {
                    if newly {
                        view.newly_gone.push(holder.clone());
                    }
                    true
                }
            };
            if out || (!failing.is_empty() && failing.contains(holder)) {
                view.lost += 1;
                view.gone.insert(holder.clone());
            }
        }
        view
    }

    /// Whether `peer`, reachable in this scan, was gone in the previous one: out of reach past the grace period
    /// and reported so. It stays so for the rest of this scan; the next forgets it ([`Liveness::begin_scan`]).
    fn back_from_gone(&self, peer: &P) -> bool {
        self.missing.get(peer).is_some_and(|missed| {
            missed.reported && missed.last_scan.saturating_add(1) >= self.scan
        })
    }

    /// Since when `peer` has been out of reach, as the last scans found it; `None` when a scan reached it
    /// since, or no recent scan looked at it.
    pub fn missing_since(&self, peer: &P) -> Option<Millis> {
        self.missing
            .get(peer)
            .filter(|missed| missed.last_scan.saturating_add(1) >= self.scan)
            .map(|missed| missed.since)
    }

    /// Peers currently counted missing.
    pub fn missing(&self) -> usize {
        self.missing.len()
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
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 10, grace, out_of_reach_now(10, up), &none);
        assert!(view.gone.is_empty());
        assert_eq!(
            view.pending_until,
            Some(110),
            "gone a grace period after first missed"
        );
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 109, grace, out_of_reach_now(109, up), &none);
        assert!(view.gone.is_empty() && view.pending_until.is_some());
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 110, grace, out_of_reach_now(110, up), &none);
        assert_eq!(view.gone, BTreeSet::from([1, 2]));
        assert_eq!(view.pending_until, None);
        assert_eq!(view.newly_gone, vec![1, 2]);
        // Reported once; 2 comes back and its clock restarts.
        let up = |p: &u8| *p == 3 || *p == 2;
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 150, grace, out_of_reach_now(150, up), &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        assert!(view.newly_gone.is_empty());
        let up = |p: &u8| *p == 3;
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 200, grace, out_of_reach_now(200, up), &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        assert!(view.pending_until.is_some(), "2 went missing again at 200");
        // Failing holders are gone whatever their connection.
        let failing = BTreeSet::from([3]);
        live.begin_scan();
        let view = live.gone_holders(
            &holders,
            &0,
            200,
            grace,
            out_of_reach_now(200, up),
            &failing,
        );
        assert!(view.gone.contains(&3));
        assert_eq!(live.missing(), 2);
    }

    #[test]
    fn a_driver_that_knows_when_a_holder_went_out_of_reach_counts_grace_from_then() {
        let mut live = Liveness::<u8>::default();
        let (grace, none) = (100, BTreeSet::new());
        let holders = [0u8, 1, 2];
        // Holder 1's connection closed at 30; the first scan to look is at 80.
        let down_since_30 = |p: &u8| (*p == 1).then_some(30);
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 80, grace, down_since_30, &none);
        assert_eq!(view.pending_until, Some(130));
        live.begin_scan();
        let view = live.gone_holders(&holders, &0, 130, grace, down_since_30, &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        // A time in the future counts as now, and `now` as "not known": the first scan's time stays.
        let mut live = Liveness::<u8>::default();
        let mut pending_until = |now: Millis, since: Millis| {
            live.begin_scan();
            let out = |p: &u8| (*p == 2).then_some(since);
            live.gone_holders(&holders, &0, now, grace, out, &none)
                .pending_until
        };
        assert_eq!(pending_until(10, 500), Some(110));
        assert_eq!(pending_until(60, 60), Some(110));
        // What the driver knows wins over what a scan first saw: a later outage it knows the start of.
        assert_eq!(pending_until(70, 65), Some(165));
    }

    #[test]
    fn peers_no_scan_looks_at_any_more_are_forgotten() {
        let mut live = Liveness::<u8>::default();
        let (grace, none) = (100, BTreeSet::new());
        let up = |p: &u8| *p == 0;
        live.begin_scan();
        live.gone_holders(&[0, 1, 2], &0, 0, grace, out_of_reach_now(0, up), &none);
        assert_eq!(live.missing(), 2);
        // The next scan still looks at 1 (another blob's list), no longer at 2.
        live.begin_scan();
        live.gone_holders(&[0, 1], &0, 10, grace, out_of_reach_now(10, up), &none);
        assert_eq!(live.missing(), 2, "kept for one full scan");
        live.begin_scan();
        assert_eq!(live.missing(), 1);
        // In the same scan, named again: 2 starts a new grace period; 1 kept its own.
        let view = live.gone_holders(&[0, 1, 2], &0, 100, grace, out_of_reach_now(100, up), &none);
        assert_eq!(view.gone, BTreeSet::from([1]));
        assert_eq!(view.pending_until, Some(200));
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
                live.begin_scan();
                let gone = live
                    .gone_holders(&holders, &0, now, grace, out_of_reach_now(now, |p: &u8| up[usize::from(*p)]), &BTreeSet::new())
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
