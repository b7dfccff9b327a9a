//! Reunions: when a holder asks a blob's former holders (peers an earlier list of it named, kept by
//! [`crate::holders::former_after`]) which list they hold, so that the two sides of a healed partition, each with
//! a list made without the other, end with one ([`crate::holders::reunite`]).
//!
//! A former holder is asked once it is reachable, and again only after it was out of reach at some scan since:
//! a peer that stayed reachable heard every list this one did. A comparison that settles every answer ends the
//! blob's reunion: the other former holders reachable then are not asked. While one comparison of a blob runs,
//! or after one left an answer unsettled (a newer list without the support to adopt it, or no answer), the blob
//! waits a grace period before the next, so a byzantine former holder costs at most a few requests per grace
//! period; only former holders the last comparison could not name, reachable since, start one sooner. This
//! module decides whom to ask and when; the driver asks, applies [`crate::holders::reunite`] and reports back.
//! While a comparison runs, the blob's other duties wait ([`Reunions::comparing`]).

use std::collections::{BTreeMap, BTreeSet};

use super::OutOfReach;
use crate::blob_id::BlobId;
use crate::holders::FormerHolder;
use crate::write::Millis;

/// Former holders asked first in a comparison: enough that one lying and one stale answer still leave two to
/// agree, as in a catch-up. More are asked only while their answers do not decide.
pub const REUNION_ASKED: usize = 4;

/// Which former holders of each blob were asked since they were last out of reach, and when a blob may be
/// compared again.
#[derive(Debug, Clone)]
pub struct Reunions<P> {
    /// Former holders whose list was compared with ours, per blob, since they were last seen out of reach.
    settled: BTreeMap<BlobId, BTreeSet<P>>,
    /// Blobs being compared, or waiting after an unsettled comparison: no new one before this time.
    waiting: BTreeMap<BlobId, Millis>,
    /// Blobs being compared now, until the comparison ends or a grace period passes.
    running: BTreeMap<BlobId, Millis>,
    /// When each blob's last comparison ended.
    compared_at: BTreeMap<BlobId, Millis>,
    /// Blobs whose last comparison settled every answer: the other former holders reachable now are not asked.
    done: BTreeSet<BlobId>,
    /// The former holders named for each blob's last comparison.
    named: BTreeMap<BlobId, BTreeSet<P>>,
}

impl<P> Default for Reunions<P> {
    fn default() -> Self {
        Self {
            settled: BTreeMap::new(),
            waiting: BTreeMap::new(),
            running: BTreeMap::new(),
            compared_at: BTreeMap::new(),
            done: BTreeSet::new(),
            named: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone> Reunions<P> {
    /// The former holders of `blob_id` to ask now, in the order `former` keeps them (most recent first), given
    /// who is out of reach: every reachable one not yet settled. The driver asks the first [`REUNION_ASKED`], and
    /// the others in rounds ([`crate::holders::Reunion::next_round`]) only while [`crate::holders::reunite`]
    /// finds a newer list without the support to adopt it; it reports back those it asked. Asking starts a comparison:
    /// no other starts for this blob before [`Reunions::handle_compared`] or a grace period. Former holders out of
    /// reach now are asked once they are back. Free when the blob has no former holders, as most have none.
    pub fn due(
        &mut self,
        now: Millis,
        blob_id: BlobId,
        former: &[FormerHolder<P>],
        out_of_reach: impl Fn(&P) -> OutOfReach,
        grace: Millis,
    ) -> Vec<P> {
        if former.is_empty() {
            self.settled.remove(&blob_id);
            self.waiting.remove(&blob_id);
            self.running.remove(&blob_id);
            self.compared_at.remove(&blob_id);
            self.done.remove(&blob_id);
            self.named.remove(&blob_id);
            return Vec::new();
        }
        let reachable: Vec<&P> = former
            .iter()
            .map(|f| &f.peer)
            .filter(|peer| out_of_reach(peer).is_none())
            .collect();
        if let Some(settled) = self.settled.get_mut(&blob_id) {
            settled.retain(|peer| reachable.contains(&peer));
        }
        // The last comparison found nothing newer, or adopted what its answers agreed on: the other former holders
        // reachable now are taken as settled unasked (a blob's holders each keep up to n of them). Those out of
        // reach now are asked once they are back.
        if self.done.remove(&blob_id) {
            self.settled
                .entry(blob_id)
                .or_default()
                .extend(reachable.iter().map(|peer| (*peer).clone()));
        }
        let settled = self.settled.get(&blob_id);
        let ask: Vec<P> = reachable
            .into_iter()
            .filter(|peer| settled.is_none_or(|s| !s.contains(*peer)))
            .cloned()
            .collect();
        let running = self.running.get(&blob_id).is_some_and(|&until| now < until);
        let waiting = self.waiting.get(&blob_id).is_some_and(|&until| now < until);
        // An unsettled comparison waits a grace period, unless former holders it could not name (out of reach
        // then) are reachable now: after a partition heals they come back a few at a time, and a reunion needs
        // those standing for k indexes. The earlier ones are named again, as their answers are not kept.
        let fresh = self
            .named
            .get(&blob_id)
            .is_none_or(|named| ask.iter().any(|peer| !named.contains(peer)));
        if running || (waiting && !fresh) {
            return Vec::new();
        }
        if ask.is_empty() {
            self.waiting.remove(&blob_id);
            self.named.remove(&blob_id);
        } else {
            let until = now.saturating_add(grace.max(1));
            self.waiting.insert(blob_id, until);
            self.running.insert(blob_id, until);
            self.named.insert(blob_id, ask.iter().cloned().collect());
        }
        ask
    }

    /// Whether a comparison of `blob_id` is running at `now` (asked, not yet reported, for at most a grace
    /// period). Its list may be about to change: the steward neither hands off, repairs nor challenges meanwhile,
    /// so the two sides of a healed partition do not rebalance lists that one of them is about to give up.
    pub fn comparing(&self, blob_id: &BlobId, now: Millis) -> bool {
        self.running.get(blob_id).is_some_and(|&until| now < until)
    }

    /// Tells the steward how a comparison of `blob_id` ended at `now`: `settled` are the asked former holders
    /// whose answer was compared to the end (their list is the one held now, or older, or they hold none), and
    /// `unsettled` says some answer was newer than the list held but not adopted, or some asked peer did not
    /// answer: the blob is compared again after `grace`, else at the next scan (other former holders may be
    /// left to ask).
    pub fn handle_compared(
        &mut self,
        now: Millis,
        blob_id: BlobId,
        settled: impl IntoIterator<Item = P>,
        unsettled: bool,
        grace: Millis,
    ) {
        self.settled.entry(blob_id).or_default().extend(settled);
        self.running.remove(&blob_id);
        self.compared_at.insert(blob_id, now);
        if unsettled {
            self.waiting
                .insert(blob_id, now.saturating_add(grace.max(1)));
            self.done.remove(&blob_id);
        } else {
            self.waiting.remove(&blob_id);
            self.done.insert(blob_id);
        }
    }

    /// Whether a comparison of `blob_id` ended less than `grace` before `now`: the former holders asked may be
    /// about to adopt the list held here, and a holder of it moving its own indexes meanwhile
    /// ([`super::Steward`]'s rebalance of a crowded network) would give them answers that disagree, each costing
    /// them another grace period.
    pub fn compared_within(&self, blob_id: &BlobId, now: Millis, grace: Millis) -> bool {
        self.compared_at
            .get(blob_id)
            .is_some_and(|&at| now < at.saturating_add(grace))
    }

    /// Asks every reachable former holder of `blob_id` again at the next comparison: one of them announced a
    /// newer list this peer could not take from it alone (`holders::reopens_reunion`). A comparison running or
    /// waiting keeps its time.
    pub fn reopen(&mut self, blob_id: BlobId) {
        self.settled.remove(&blob_id);
        self.done.remove(&blob_id);
    }

    /// Forgets blobs no longer held (`held` says no).
    pub fn retain(&mut self, mut held: impl FnMut(&BlobId) -> bool) {
        self.settled.retain(|blob_id, _| held(blob_id));
        self.waiting.retain(|blob_id, _| held(blob_id));
        self.running.retain(|blob_id, _| held(blob_id));
        self.compared_at.retain(|blob_id, _| held(blob_id));
        self.done.retain(|blob_id| held(blob_id));
        self.named.retain(|blob_id, _| held(blob_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Millis = 5_000;

    fn blob() -> BlobId {
        BlobId([7; 32])
    }

    /// Former holders of one index each, in this order.
    fn entries(peers: &[u8]) -> Vec<FormerHolder<u8>> {
        peers
            .iter()
            .map(|&peer| FormerHolder {
                peer,
                indexes: vec![u16::from(peer)],
            })
            .collect()
    }

    fn reach(away: &'static [u8]) -> impl Fn(&u8) -> OutOfReach {
        move |peer| away.contains(peer).then_some(0)
    }

    #[test]
    fn reachable_former_holders_are_asked_once_until_they_go_away() {
        let mut reunions = Reunions::default();
        let former = entries(&[1, 2, 3, 4, 5, 6]);
        // 2 is out of reach: not asked; the reachable ones are named, and the driver asks the first four.
        assert_eq!(
            reunions.due(0, blob(), &former, reach(&[2]), GRACE),
            vec![1, 3, 4, 5, 6]
        );
        // A comparison runs: nothing more until it ends.
        assert!(reunions.comparing(&blob(), 100));
        assert!(
            reunions
                .due(100, blob(), &former, reach(&[2]), GRACE)
                .is_empty()
        );
        reunions.handle_compared(200, blob(), [1, 3, 4, 5], false, GRACE);
        assert!(!reunions.comparing(&blob(), 200));
        // Every answer settled: the other reachable one (6) is not asked; 2, out of reach, is once it is back.
        assert!(
            reunions
                .due(300, blob(), &former, reach(&[2]), GRACE)
                .is_empty()
        );
        assert_eq!(
            reunions.due(400, blob(), &former, reach(&[]), GRACE),
            vec![2]
        );
        reunions.handle_compared(450, blob(), [2], false, GRACE);
        assert!(
            reunions
                .due(500, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        // 3 goes out of reach and comes back: asked again.
        assert!(
            reunions
                .due(600, blob(), &former, reach(&[3]), GRACE)
                .is_empty()
        );
        assert_eq!(
            reunions.due(700, blob(), &former, reach(&[]), GRACE),
            vec![3]
        );
    }

    #[test]
    fn an_unsettled_comparison_waits_a_grace_period() {
        let mut reunions = Reunions::default();
        let former = entries(&[1, 2]);
        assert_eq!(
            reunions.due(0, blob(), &former, reach(&[]), GRACE),
            vec![1, 2]
        );
        // 1 answered a newer list alone; 2's answer was older.
        reunions.handle_compared(100, blob(), [2], true, GRACE);
        assert!(
            reunions
                .due(200, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        assert_eq!(
            reunions.due(100 + GRACE, blob(), &former, reach(&[]), GRACE),
            vec![1]
        );
        // A comparison whose answer never comes back does not block the blob past a grace period either.
        assert!(reunions.comparing(&blob(), 100 + GRACE + 1));
        assert!(!reunions.comparing(&blob(), 100 + 2 * GRACE + 1));
        assert!(
            reunions
                .due(100 + GRACE + 1, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        assert_eq!(
            reunions.due(100 + 2 * GRACE, blob(), &former, reach(&[]), GRACE),
            vec![1]
        );
    }

    #[test]
    fn former_holders_back_after_an_unsettled_comparison_are_asked_at_once() {
        let mut reunions = Reunions::default();
        let former = entries(&[1, 2, 3, 4]);
        // Only 1 and 2 are back yet; both answer a newer list, too few indexes to adopt it.
        assert_eq!(
            reunions.due(0, blob(), &former, reach(&[3, 4]), GRACE),
            vec![1, 2]
        );
        reunions.handle_compared(100, blob(), [], true, GRACE);
        assert!(
            reunions
                .due(200, blob(), &former, reach(&[3, 4]), GRACE)
                .is_empty()
        );
        // 3 is back: compared again at once, 1 and 2 with it, without waiting the grace period out.
        assert_eq!(
            reunions.due(300, blob(), &former, reach(&[4]), GRACE),
            vec![1, 2, 3]
        );
        // Not while that comparison runs, even if 4 comes back meanwhile.
        assert!(
            reunions
                .due(400, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        reunions.handle_compared(500, blob(), [], true, GRACE);
        assert_eq!(
            reunions.due(600, blob(), &former, reach(&[]), GRACE),
            vec![1, 2, 3, 4]
        );
        // Nobody new: the unsettled comparison waits its grace period.
        reunions.handle_compared(700, blob(), [], true, GRACE);
        assert!(
            reunions
                .due(800, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        assert_eq!(
            reunions.due(700 + GRACE, blob(), &former, reach(&[]), GRACE),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn a_newer_list_from_a_former_holder_reopens_the_comparison() {
        let mut reunions = Reunions::default();
        let former = entries(&[1, 2, 3]);
        assert_eq!(
            reunions.due(0, blob(), &former, reach(&[]), GRACE),
            vec![1, 2, 3]
        );
        reunions.handle_compared(100, blob(), [1, 2, 3], false, GRACE);
        assert!(
            reunions
                .due(200, blob(), &former, reach(&[]), GRACE)
                .is_empty()
        );
        // Their side moved on after answering: all are asked again, so two can agree on the new list.
        reunions.reopen(blob());
        assert_eq!(
            reunions.due(300, blob(), &former, reach(&[]), GRACE),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn an_unsettled_comparison_asks_the_others_later() {
        let mut reunions = Reunions::default();
        let former = entries(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            reunions.due(0, blob(), &former, reach(&[]), GRACE),
            vec![1, 2, 3, 4, 5, 6]
        );
        // The driver asked four. 1 answered a newer list alone: the others may hold it too, so they are asked
        // after the wait.
        reunions.handle_compared(100, blob(), [2, 3, 4], true, GRACE);
        assert_eq!(
            reunions.due(100 + GRACE, blob(), &former, reach(&[]), GRACE),
            vec![1, 5, 6]
        );
    }

    #[test]
    fn blobs_without_former_holders_cost_nothing() {
        let mut reunions: Reunions<u8> = Reunions::default();
        assert!(reunions.due(0, blob(), &[], reach(&[]), GRACE).is_empty());
        assert!(reunions.settled.is_empty() && reunions.waiting.is_empty());
        assert_eq!(
            reunions.due(0, blob(), &entries(&[1]), reach(&[]), GRACE),
            vec![1]
        );
        reunions.retain(|_| false);
        assert!(reunions.settled.is_empty() && reunions.waiting.is_empty());
        assert!(reunions.running.is_empty());
    }
}
