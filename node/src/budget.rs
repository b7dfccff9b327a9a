//! Token buckets: what the gateway's per-client budgets (`gateway::fair_use`) and the per-peer budget for
//! unexpected stores ([`PeerBudgets`]) are made of.
//!
//! A bucket holds up to [`BURST_SECONDS`] of its rate and refills continuously. A charge may take it below zero
//! (a debt: a body's size is not known before it moves); whoever holds it admits new work only while the level is
//! at or above what the work needs. Time is an input (an [`Instant`]), so the rules are tested without sleeping.
//! This module owns the arithmetic and the keyed map; what a budget is for is its caller's business.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bucket's burst: this many seconds of its rate.
pub const BURST_SECONDS: u64 = 10;
/// One token, in a bucket's unit (token-nanoseconds): a rate of r per second adds r units per nanosecond, so
/// refills need no division.
pub const UNIT: i128 = 1_000_000_000;

/// A token bucket: `level` in [`UNIT`]s, refilled up to `at`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    level: i128,
    at: Instant,
}

impl Bucket {
    /// A full bucket for `rate` tokens per second.
    pub fn full(rate: u64, now: Instant) -> Self {
        Self {
            level: capacity(rate),
            at: now,
        }
    }

    /// Adds what `rate` has refilled since the last call, up to the burst.
    pub fn refill(&mut self, rate: u64, now: Instant) {
        let elapsed =
            i128::try_from(now.saturating_duration_since(self.at).as_nanos()).unwrap_or(i128::MAX);
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(i128::from(rate)))
            .min(capacity(rate));
        self.at = self.at.max(now);
    }

    /// Whether at least `tokens` are there.
    pub fn has(&self, tokens: u64) -> bool {
        self.level >= i128::from(tokens).saturating_mul(UNIT)
    }

    /// Takes `tokens`, into debt if need be.
    pub fn take(&mut self, tokens: u64) {
        self.level = self
            .level
            .saturating_sub(i128::from(tokens).saturating_mul(UNIT));
    }

    /// Time until `tokens` are there at `rate` (zero if they are, or if the rate is 0: the caller checks that).
    pub fn wait_for(&self, tokens: u64, rate: u64) -> Duration {
        let missing = i128::from(tokens)
            .saturating_mul(UNIT)
            .saturating_sub(self.level);
        if missing <= 0 || rate == 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(rate);
        let nanos = missing.saturating_add(rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Full to its burst: nothing owed, nothing to forget.
    pub fn is_full(&self, rate: u64) -> bool {
        self.level >= capacity(rate)
    }
}

fn capacity(rate: u64) -> i128 {
    i128::from(rate)
        .saturating_mul(i128::from(BURST_SECONDS))
        .saturating_mul(UNIT)
}

/// Whole seconds to tell a client to wait (`Retry-After`): rounded up, at least 1.
pub fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

/// One byte bucket per peer, all at one rate; peers whose buckets are full are forgotten when the map grows.
#[derive(Debug)]
pub struct PeerBudgets<K> {
    rate: u64,
    buckets: HashMap<K, Bucket>,
}

/// Peers tracked before full buckets are forgotten.
const PRUNE_AT: usize = 1_024;

impl<K: Eq + Hash + Clone> PeerBudgets<K> {
    /// Budgets of `rate` bytes per second each, with [`BURST_SECONDS`] of burst.
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Charges `bytes` to `peer` at `now` if its budget is not in debt; otherwise says how long until it is not.
    /// A charge may take it into debt, so work of any size passes once the budget has recovered.
    pub fn charge(&mut self, peer: &K, bytes: u64, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(peer) && self.buckets.len() >= PRUNE_AT {
            let rate = self.rate;
            self.buckets.retain(|_, bucket| {
                bucket.refill(rate, now);
                !bucket.is_full(rate)
            });
        }
        let rate = self.rate;
        let bucket = self
            .buckets
            .entry(peer.clone())
            .or_insert_with(|| Bucket::full(rate, now));
        bucket.refill(rate, now);
        if !bucket.has(0) {
            return Err(bucket.wait_for(0, rate));
        }
        bucket.take(bytes);
        Ok(())
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_bursts_refills_and_owes() {
        let start = Instant::now();
        let mut bucket = Bucket::full(4, start);
        assert!(bucket.has(40) && !bucket.has(41));
        bucket.take(45);
        assert!(!bucket.has(0));
        assert_eq!(bucket.wait_for(0, 4), Duration::from_millis(1250));
        assert_eq!(bucket.wait_for(1, 4), Duration::from_millis(1500));
        bucket.refill(4, start + Duration::from_millis(1250));
        assert!(bucket.has(0) && !bucket.has(1));
        // A clock that goes back changes nothing; a long pause refills only up to the burst.
        bucket.refill(4, start);
        assert!(bucket.has(0));
        bucket.refill(4, start + Duration::from_secs(3600));
        assert!(bucket.is_full(4) && !bucket.has(41));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(200)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
        assert_eq!(whole_seconds(Duration::from_millis(5001)), 6);
    }

    #[test]
    fn each_peer_has_its_own_budget_and_settled_ones_are_forgotten() {
        let start = Instant::now();
        let mut budgets = PeerBudgets::new(100);
        let (greedy, other) = ("greedy".to_owned(), "other".to_owned());
        // 1,000 bytes of burst: a 1,500-byte store passes and leaves a debt of 500, five seconds.
        assert!(budgets.charge(&greedy, 1_500, start).is_ok());
        assert_eq!(
            budgets.charge(&greedy, 1, start),
            Err(Duration::from_secs(5))
        );
        assert!(budgets.charge(&other, 1_000, start).is_ok());
        assert!(
            budgets
                .charge(&greedy, 1, start + Duration::from_secs(5))
                .is_ok()
        );
        for peer in 0..PRUNE_AT {
            assert!(budgets.charge(&peer.to_string(), 1, start).is_ok());
        }
        assert!(budgets.len() > PRUNE_AT);
        // Twenty seconds on, everyone's bucket is full again: one new peer prunes them all.
        let later = start + Duration::from_secs(20);
        assert!(budgets.charge(&"new".to_owned(), 10, later).is_ok());
        assert_eq!(budgets.len(), 1);
    }
}
