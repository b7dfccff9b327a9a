//! Network diversity: at most c slivers of a blob per network, so that peer IDs ground near a blob ID cannot take
//! its neighbourhood (docs/protocol.md §9, "Networks").
//!
//! A peer ID costs one key generation, so an attacker can make as many IDs as it likes close to any blob ID. An
//! address in another network costs far more. This module counts peers by network (an IPv4 /24 or an IPv6 /48,
//! judged by the address a peer is actually reached on) and orders a blob's neighbourhood so that its first n
//! peers hold at most c = max(1, ⌈n / S⌉) per network, S being the number of networks among the peers known.
//! Storj applies the same rule per /24. Writes take their holders, reads their metadata queries and repairs their
//! new holders from this order, in the node and in the simulator.
//!
//! It decides only the order: it does not learn addresses, keep state or do I/O. A peer whose network is not
//! known (no address seen yet) counts as a network of its own and adds nothing to S.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::write::Millis;

/// A network as the cap counts them: the first three bytes of an IPv4 address (its /24) or the first six of an
/// IPv6 address (its /48). An IPv4-mapped IPv6 address counts as the IPv4 address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    /// An IPv4 /24.
    V4([u8; 3]),
    /// An IPv6 /48.
    V6([u8; 6]),
}

impl Network {
    /// The network of an address.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Network::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Network::V6(o) => write!(
                f,
                "{:x}:{:x}:{:x}::/48",
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]]),
                u16::from_be_bytes([o[4], o[5]])
            ),
        }
    }
}

/// The most slivers of an n-sliver blob one network may hold when the peers known span `networks` networks:
/// max(1, ⌈n / S⌉). With no network known there is nothing to spread over, and the cap is n.
pub fn cap(shards: u16, networks: usize) -> usize {
    let shards = usize::from(shards);
    if networks == 0 {
        return shards.max(1);
    }
    shards.div_ceil(networks).max(1)
}

/// Whether the network of `me` holds more than `cap` of a blob's sliver indexes (`holders`, by index), as
/// `network` knows the peers: the blob is crowded there, and its holders there over their share move their own
/// (`steward`). A peer whose network is unknown is alone in its network, so `me` without one is never crowded.
pub fn crowded<P: PartialEq, N: PartialEq>(
    holders: &[P],
    me: &P,
    network: impl Fn(&P) -> Option<N>,
    cap: usize,
) -> bool {
    let Some(mine) = network(me) else {
        return false;
    };
    holders
        .iter()
        .filter(|h| *h == me || network(h).is_some_and(|n| n == mine))
        .count()
        > cap
}

/// The number of distinct known networks among `networks`.
pub fn count_networks<N: Ord>(networks: impl IntoIterator<Item = Option<N>>) -> usize {
    let mut seen: Vec<N> = networks.into_iter().flatten().collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Reorders `peers`, given closest first, so that any prefix of n of them holds at most `cap` peers per network
/// whenever the peers allow it. Each peer's tier is its rank among the peers of its network (counting `preset`
/// peers of that network first: holders that keep their slivers in a repair) divided by `cap`; peers are
/// ordered by tier and, within a tier, keep their order. Tier 0 is the capped neighbourhood; later tiers fill
/// in, closest first and still spread, only where the networks known have fewer than n peers within the cap.
/// A peer whose network is unknown is alone in its network (tier 0). Networks are [`Network`]s in the node and
/// any ordered key in the simulator.
pub fn spread<P, N: Ord + Copy>(
    peers: &mut Vec<P>,
    network: impl Fn(&P) -> Option<N>,
    cap: usize,
    preset: &BTreeMap<N, usize>,
) {
    let cap = cap.max(1);
    let mut seen: BTreeMap<N, usize> = BTreeMap::new();
    let mut tiered: Vec<(usize, P)> = peers
        .drain(..)
        .map(|peer| {
            let tier = match network(&peer) {
                None => 0,
                Some(net) => {
                    let rank = seen
                        .entry(net)
                        .or_insert_with(|| preset.get(&net).copied().unwrap_or(0));
                    let tier = *rank / cap;
                    *rank = rank.saturating_add(1);
                    tier
                }
            };
            (tier, peer)
        })
        .collect();
    // A stable sort: within a tier, the distance order stays.
    tiered.sort_by_key(|(tier, _)| *tier);
    peers.extend(tiered.into_iter().map(|(_, peer)| peer));
}

/// The peers that may take the slivers of a repair's gone holders (or a hand-off's, or a rebalance's): chosen
/// from `neighbourhood` (live peers, closest first) in [`spread`] order with the networks of the holders that
/// stay (`kept_holders`, reachable or not) counted first, as many as there are indexes to place (`shards` minus
/// the holders kept), in neighbourhood order. Peers the caller has known for less than `newcomer_age`
/// (`known_for`: how long, `None` for never) come only after every older one: a newcomer takes slivers only when no established peer can, so an ID
/// ground next to a blob after it was written must wait out the age first. The caller plans over these and the
/// reachable kept holders: `repair::plan` fills the gone holders' indexes from exactly them, so a repair puts
/// no more than `cap` slivers in one network where the neighbourhood allows it.
pub fn repair_candidates<P: Ord + Clone, N: Ord + Copy>(
    shards: u16,
    kept_holders: &[P],
    neighbourhood: &[P],
    network: impl Fn(&P) -> Option<N>,
    cap: usize,
    known_for: impl Fn(&P) -> Option<Millis>,
    newcomer_age: Millis,
) -> Vec<P> {
    let mut kept: Vec<P> = kept_holders.to_vec();
    kept.sort();
    kept.dedup();
    let mut preset: BTreeMap<N, usize> = BTreeMap::new();
    for net in kept.iter().filter_map(&network) {
        *preset.entry(net).or_insert(0) += 1;
    }
    // A peer listed twice would take two places: the first listing counts.
    let mut seen: BTreeSet<&P> = BTreeSet::new();
    let (mut others, mut juniors): (Vec<P>, Vec<P>) = neighbourhood
        .iter()
        .filter(|p| kept.binary_search(p).is_err() && seen.insert(*p))
        .cloned()
        .partition(|p| known_for(p).is_some_and(|age| age >= newcomer_age));
    spread(&mut others, &network, cap, &preset);
    spread(&mut juniors, &network, cap, &preset);
    others.append(&mut juniors);
    let room = usize::from(shards).saturating_sub(kept.len());
    others.truncate(room);
    others.sort();
    neighbourhood
        .iter()
        .filter(|p| others.binary_search(p).is_ok())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        let a = Network::of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
        let b = Network::of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200)));
        let c = Network::of(IpAddr::V4(Ipv4Addr::new(203, 0, 114, 7)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "203.0.113.0/24");
        // Loopback counts by its /24 too, so tests can spread nodes over 127.0.X.1.
        let lo1 = Network::of("127.0.1.1".parse().unwrap());
        let lo2 = Network::of("127.0.2.1".parse().unwrap());
        assert_ne!(lo1, lo2);
        let v6a = Network::of("2001:db8:1:2::1".parse().unwrap());
        let v6b = Network::of("2001:db8:1:ffff::9".parse().unwrap());
        let v6c = Network::of("2001:db8:2::1".parse().unwrap());
        assert_eq!(v6a, v6b);
        assert_ne!(v6a, v6c);
        assert_eq!(v6a.to_string(), "2001:db8:1::/48");
        let mapped = Network::of(IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped()));
        assert_eq!(mapped, a);
        assert_ne!(Network::of(IpAddr::V6(Ipv6Addr::LOCALHOST)), lo1);
    }

    #[test]
    fn a_blob_is_crowded_where_a_network_holds_more_than_the_cap() {
        // Twelve indexes: eleven on network 1 (peers 0..6), one on network 2 (peer 10).
        let holders: Vec<u8> = (0..12).map(|i| if i == 6 { 10 } else { i % 6 }).collect();
        let network = |p: &u8| match p {
            0..=5 => Some(1),
            10..=15 => Some(2),
            _ => None,
        };
        assert!(crowded(&holders, &1, network, 6));
        assert!(!crowded(&holders, &10, network, 6));
        assert!(
            !crowded(&holders, &1, network, 11),
            "eleven is within a cap of eleven"
        );
        assert!(
            !crowded(&holders, &1, |_: &u8| None::<u8>, 1),
            "no network known"
        );
    }

    #[test]
    fn the_cap_is_n_over_the_networks_rounded_up() {
        assert_eq!(cap(100, 1000), 1);
        assert_eq!(cap(100, 100), 1);
        assert_eq!(cap(100, 99), 2);
        assert_eq!(cap(8, 4), 2);
        assert_eq!(cap(8, 3), 3);
        assert_eq!(cap(8, 1), 8);
        assert_eq!(cap(8, 0), 8);
        assert_eq!(cap(0, 0), 1);
    }

    fn net(x: u8) -> Option<Network> {
        Some(Network::V4([10, 0, x]))
    }

    #[test]
    fn ground_ids_in_one_network_give_way_to_other_networks() {
        // Peers 0..6 are in network 1 (an attacker's IDs, all closest); 6..10 each in a network of their own.
        let mut peers: Vec<u8> = (0..10).collect();
        let network = |p: &u8| if *p < 6 { net(1) } else { net(*p) };
        spread(&mut peers, network, 1, &BTreeMap::new());
        assert_eq!(peers, vec![0, 6, 7, 8, 9, 1, 2, 3, 4, 5]);
        // With a cap of two, the attacker keeps two of the first five.
        let mut peers: Vec<u8> = (0..10).collect();
        spread(&mut peers, network, 2, &BTreeMap::new());
        assert_eq!(peers, vec![0, 1, 6, 7, 8, 9, 2, 3, 4, 5]);
        // Unknown networks stand alone.
        let mut peers: Vec<u8> = (0..4).collect();
        spread(&mut peers, |_| None::<Network>, 1, &BTreeMap::new());
        assert_eq!(peers, vec![0, 1, 2, 3]);
    }

    #[test]
    fn repair_candidates_count_the_holders_kept() {
        // Holders 20 and 21 stay, both in network 1; the cap is 2. Peers 0 to 3 (network 1) are closest, then 4
        // to 8 (networks of their own): network 1 is full, so the two gone holders' indexes go to 4 and 5.
        let network = |p: &u8| match *p {
            20 | 21 | 0..4 => net(1),
            x => net(x),
        };
        let neighbourhood: Vec<u8> = (0..9).collect();
        let old = |_: &u8| Some(100);
        let newcomers = repair_candidates(4, &[21, 20], &neighbourhood, network, 2, old, 10);
        assert_eq!(newcomers, vec![4, 5]);
        // Peer 4 joined a moment ago: 5 and 6 are taken before it.
        let age = |p: &u8| Some(if *p == 4 { 3 } else { 100 });
        let newcomers = repair_candidates(4, &[21, 20], &neighbourhood, network, 2, age, 10);
        assert_eq!(newcomers, vec![5, 6]);
        // When only newcomers are left, they take the slivers (in spread order) rather than none.
        let never = |_: &u8| None;
        let newcomers = repair_candidates(4, &[21, 20], &neighbourhood, network, 2, never, 10);
        assert_eq!(newcomers, vec![4, 5]);
    }

    proptest! {
        /// A repair's newcomers: never a kept holder, as many as there are indexes to place (or every other peer
        /// when fewer), seniors only when enough seniors fit, and then no network over the cap with the kept
        /// holders counted.
        #[test]
        fn repair_newcomers_keep_the_cap_and_prefer_seniors(
            peers in proptest::collection::vec((0u8..5, any::<bool>()), 0..40),
            kept_count in 0usize..12,
            shards in 1u16..16,
            cap in 1usize..4,
        ) {
            // Peers 0..kept_count are the kept holders; the neighbourhood is every peer, closest first.
            let network = |p: &usize| peers.get(*p).and_then(|(n, _)| net(*n));
            let senior = |p: &usize| peers.get(*p).is_some_and(|(_, s)| *s);
            let kept: Vec<usize> = (0..kept_count.min(peers.len())).collect();
            let neighbourhood: Vec<usize> = (0..peers.len()).collect();
            let known_for = |p: &usize| Some(if senior(p) { 10 } else { 9 });
            let newcomers =
                repair_candidates(shards, &kept, &neighbourhood, network, cap, known_for, 10);
            let room = usize::from(shards).saturating_sub(kept.len());
            prop_assert!(newcomers.iter().all(|p| !kept.contains(p)));
            prop_assert_eq!(newcomers.len(), room.min(peers.len() - kept.len()));
            let mut preset: BTreeMap<Network, usize> = BTreeMap::new();
            for p in &kept {
                if let Some(n) = network(p) {
                    *preset.entry(n).or_insert(0) += 1;
                }
            }
            // Seniors that fit the cap, counting the kept holders and closer seniors.
            let mut fill = preset.clone();
            let fitting = neighbourhood
                .iter()
                .filter(|p| !kept.contains(p) && senior(p))
                .filter(|p| {
                    let Some(n) = network(p) else { return true };
                    let count = fill.entry(n).or_insert(0);
                    *count += 1;
                    *count <= cap
                })
                .count();
            if fitting >= room {
                prop_assert!(newcomers.iter().all(senior));
                let mut total = preset.clone();
                for p in &newcomers {
                    if let Some(n) = network(p) {
                        *total.entry(n).or_insert(0) += 1;
                    }
                }
                for (n, count) in total {
                    let before = preset.get(&n).copied().unwrap_or(0);
                    prop_assert!(count <= cap.max(before), "{n}: {count} over cap {cap}");
                }
            }
        }

        /// Whatever the networks, the first n peers after `spread` hold at most `cap` per network whenever the
        /// peers allow it (at least n of them within the cap), and `spread` only reorders.
        #[test]
        fn a_prefix_of_n_respects_the_cap(
            networks in proptest::collection::vec(proptest::option::of(0u8..6), 0..40),
            shards in 1u16..20,
        ) {
            let mut peers: Vec<usize> = (0..networks.len()).collect();
            let network = |p: &usize| networks[*p].and_then(net);
            let c = cap(shards, count_networks(networks.iter().map(|n| n.and_then(net))));
            spread(&mut peers, network, c, &BTreeMap::new());
            let mut sorted = peers.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..networks.len()).collect::<Vec<_>>());
            let mut room: BTreeMap<Network, usize> = BTreeMap::new();
            let mut within_cap = 0usize;
            for net in networks.iter().map(|n| n.and_then(net)) {
                match net {
                    None => within_cap += 1,
                    Some(net) => {
                        let r = room.entry(net).or_insert(0);
                        if *r < c {
                            *r += 1;
                            within_cap += 1;
                        }
                    }
                }
            }
            let n = usize::from(shards);
            let mut per_network: BTreeMap<Network, usize> = BTreeMap::new();
            for p in peers.iter().take(n) {
                if let Some(net) = network(p) {
                    *per_network.entry(net).or_insert(0) += 1;
                }
            }
            if within_cap >= n {
                prop_assert!(per_network.values().all(|&count| count <= c), "{per_network:?} over cap {c}");
            }
            // A peer in tier 0 is never behind a peer of a later tier, and a network never skips ahead of its
            // own closer peers.
            for net in per_network.keys() {
                let order: Vec<usize> = peers.iter().copied().filter(|p| network(p) == Some(*net)).collect();
                let mut sorted_order = order.clone();
                sorted_order.sort_unstable();
                prop_assert_eq!(order, sorted_order);
            }
        }
    }
}
