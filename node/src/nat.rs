//! Reachability across NAT (issue 17): the relay service a node offers to others, and the relays a node that
//! cannot be dialled reserves slots on, so that peers reach it through them and then upgrade to a direct
//! connection with DCUtR where the NATs allow.
//!
//! This module decides which relays to use and with what limits; the swarm (`crate::net`) does the dialling and
//! listening. It must not block or do I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use floe_protocol::diversity::Network;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol, relay};

/// Relays a node behind NAT keeps a reservation on: two, so that losing one leaves it reachable.
pub const RELAYS_WANTED: usize = 2;

/// What a node's relay service allows others (`--relay-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held at once, over all peers.
    pub max_reservations: usize,
    /// Circuits relayed at once, over all peers.
    pub max_circuits: usize,
    /// A circuit is closed after this long.
    pub max_circuit_duration: Duration,
    /// A circuit is closed after this many bytes in either direction.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    /// Enough for a neighbourhood of NATed peers to be dialled and hole-punched, not to carry their slivers: a
    /// circuit exists until DCUtR gives a direct connection (seconds), so 1 MiB and 2 minutes each suffice.
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_circuits: 16,
            max_circuit_duration: Duration::from_secs(120),
            max_circuit_bytes: 1 << 20,
        }
    }
}

impl RelayLimits {
    /// libp2p's relay configuration with these limits (and its own per-peer and rate limits).
    pub fn config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            max_circuits: self.max_circuits,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// The first IP address of `addr`, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Whether `ip` is an address of a private network that peers elsewhere cannot dial: RFC 1918, shared address
/// space (carrier-grade NAT), link-local, IPv6 unique-local and link-local. Loopback is not: peers on the same
/// machine reach it.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a node listening on `listen` needs relays: every address it listens on is private (a node behind a
/// home router). One listening on a public, loopback or unspecified address does not.
pub fn needs_relays(listen: &[Multiaddr]) -> bool {
    !listen.is_empty()
        && listen
            .iter()
            .all(|addr| ip_of(addr).is_some_and(is_private))
}

/// Whether a peer listening on `addr` can be dialled directly from a node whose own networks are `own`: the
/// address is not relayed, and it is either not private (public or loopback) or on one of `own`'s networks.
pub fn dialable_from(addr: &Multiaddr, own: &std::collections::BTreeSet<Network>) -> bool {
    if addr.iter().any(|p| p == Protocol::P2pCircuit) {
        return false;
    }
    match ip_of(addr) {
        Some(ip) if is_private(ip) => own.contains(&Network::of(ip)),
        Some(_) => true,
        None => false,
    }
}

/// The relay in a circuit address (`…/p2p/<relay>/p2p-circuit…`): the peer named just before `p2p-circuit`.
pub fn relay_in(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// Of several relayed connections between `local` and `remote` (each with whether `local` dialled it), the ones
/// to close so that both ends keep the same one: the one dialled by the smaller peer ID. Nothing is closed
/// until that one exists (it may still be on its way).
pub fn duplicate_circuits<C: Ord + Copy>(
    local: PeerId,
    remote: PeerId,
    circuits: &BTreeMap<C, bool>,
) -> Vec<C> {
    let we_keep_ours = local < remote;
    let Some(kept) = circuits
        .iter()
        .find(|(_, we_dialled)| **we_dialled == we_keep_ours)
        .map(|(id, _)| *id)
    else {
        return Vec::new();
    };
    circuits.keys().copied().filter(|id| *id != kept).collect()
}

/// How long a peer may stay reached only through a relay before the hole punch is tried again; each later
/// retry waits twice as long as the one before (20, 40, 80, 160 s). In the NAT testbed a punch between two
/// cone-NAT hosts failed on every retry 20 s apart and succeeded about two minutes after the first failure,
/// likely once the routers' connection tracking had forgotten the failed attempt (Linux keeps an unanswered
/// SYN's entry two minutes); backing off outlasts that.
pub const PUNCH_RETRY_AFTER: Duration = Duration::from_secs(20);
/// Hole punches tried again per peer (a symmetric NAT defeats every one).
pub const PUNCH_RETRIES: u32 = 4;

/// Peers reached only through relays, and when to try a hole punch with each again. libp2p tries a hole punch
/// once per relayed connection; one that failed for a passing reason (the other side's dial crossing ours, a
/// second circuit closed under it) stays relayed for good unless someone dials again.
#[derive(Debug, Default)]
pub struct PunchRetries {
    /// Since when each peer is relayed-only, and how many retries it had.
    relayed: BTreeMap<PeerId, (std::time::Instant, u32)>,
}

impl PunchRetries {
    /// Given the peers reached only through relays at `now`, those to dial again now: relayed-only for
    /// [`PUNCH_RETRY_AFTER`] times 2^(retries so far) since the last try, with retries left, and with a larger
    /// peer ID than `local` (one side redials, so the two redials cannot cross).
    pub fn due(
        &mut self,
        now: std::time::Instant,
        local: PeerId,
        relayed_only: &std::collections::BTreeSet<PeerId>,
    ) -> Vec<PeerId> {
        self.relayed.retain(|peer, _| relayed_only.contains(peer));
        let mut due = Vec::new();
        for peer in relayed_only {
            let (since, tries) = self.relayed.entry(*peer).or_insert((now, 0));
            if local < *peer
                && *tries < PUNCH_RETRIES
                && now.saturating_duration_since(*since)
                    >= PUNCH_RETRY_AFTER.saturating_mul(1 << (*tries).min(16))
            {
                *since = now;
                *tries += 1;
                due.push(*peer);
            }
        }
        due
    }
}

/// Whether a peer may be asked to hold slivers. A holder must be dialable by any reader, leader or challenger,
/// and carry slivers without a relay: relays are volunteers' bandwidth, limited to what dialling and hole
/// punching need (`RelayLimits`). So a peer qualifies when it serves the DHT (public, UPnP-mapped, confirmed by
/// AutoNAT v2, or reachable through a relay reservation) and, if `connected`, at least one of its connections
/// is direct (a hole punch succeeded, or it dialled us). A peer known only from the routing table qualifies
/// until a connection shows otherwise.
pub fn holds_slivers(connected: bool, kad_server: bool, direct: bool) -> bool {
    !connected || (kad_server && direct)
}

/// The relays this node reserves on, and the listener of each reservation.
#[derive(Debug, Default)]
pub struct Relays {
    chosen: BTreeMap<PeerId, Option<ListenerId>>,
}

impl Relays {
    /// Whether `peer`, which speaks `protocols` and is connected at `remote`, should become one of this node's
    /// relays; if so, the circuit address to listen on through it. A relay must offer the hop protocol and be
    /// reached on an address that is not private (else nobody outside could use it either).
    pub fn consider(
        &mut self,
        peer: PeerId,
        protocols: &[StreamProtocol],
        remote: &Multiaddr,
    ) -> Option<Multiaddr> {
        if self.chosen.len() >= RELAYS_WANTED || self.chosen.contains_key(&peer) {
            return None;
        }
        if !protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            return None;
        }
        if ip_of(remote).is_none_or(is_private) || remote.iter().any(|p| p == Protocol::P2pCircuit)
        {
            return None;
        }
        let mut circuit: Multiaddr = remote
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        circuit.push(Protocol::P2p(peer));
        circuit.push(Protocol::P2pCircuit);
        self.chosen.insert(peer, None);
        Some(circuit)
    }

    /// Notes the listener of the reservation on `relay` (or forgets the relay if listening failed).
    pub fn listening(&mut self, relay: PeerId, listener: Option<ListenerId>) {
        match listener {
            Some(id) => {
                self.chosen.insert(relay, Some(id));
            }
            None => {
                self.chosen.remove(&relay);
            }
        }
    }

    /// Forgets the relay whose reservation's listener closed, so another (or the same, later) can be chosen.
    pub fn closed(&mut self, listener: ListenerId) {
        self.chosen.retain(|_, id| *id != Some(listener));
    }

    /// The relays chosen.
    pub fn chosen(&self) -> usize {
        self.chosen.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn relayed_peers_are_dialled_directly_where_that_can_work() {
        let home: std::collections::BTreeSet<Network> =
            [Network::of("192.168.1.11".parse().unwrap())].into();
        assert!(dialable_from(&addr("/ip4/198.51.100.12/tcp/4001"), &home));
        assert!(
            dialable_from(&addr("/ip4/192.168.1.12/tcp/4002"), &home),
            "same home network"
        );
        assert!(
            !dialable_from(&addr("/ip4/192.168.2.11/tcp/4001"), &home),
            "another home"
        );
        assert!(!dialable_from(
            &addr(
                "/ip4/198.51.100.11/tcp/4001/p2p/12D3KooWSsRv56N4iXtrcYyMEcQNjb61SJpdfGQjjH5aJutsDnUU/p2p-circuit"
            ),
            &home
        ));
        assert!(!dialable_from(&addr("/dns4/example.org/tcp/4001"), &home));
    }

    #[test]
    fn both_ends_keep_the_circuit_the_smaller_peer_dialled() {
        let (a, b) = {
            let (x, y) = (PeerId::random(), PeerId::random());
            if x < y { (x, y) } else { (y, x) }
        };
        // Seen from a (the smaller): connection 1 it dialled, 2 dialled by b.
        let at_a: BTreeMap<u32, bool> = [(1, true), (2, false)].into();
        assert_eq!(duplicate_circuits(a, b, &at_a), vec![2]);
        // Seen from b, the same two connections under its own IDs: 7 dialled by a, 8 by itself.
        let at_b: BTreeMap<u32, bool> = [(7, false), (8, true)].into();
        assert_eq!(duplicate_circuits(b, a, &at_b), vec![8]);
        // The kept one has not arrived yet: close nothing.
        assert!(duplicate_circuits(a, b, &BTreeMap::from([(2, false)])).is_empty());
        assert!(duplicate_circuits(b, a, &BTreeMap::from([(7, false)])).is_empty());
    }

    #[test]
    fn the_relay_of_a_circuit_is_the_peer_before_p2p_circuit() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let dialled: Multiaddr =
            format!("/ip4/198.51.100.11/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(relay_in(&dialled), Some(relay));
        let listened: Multiaddr = format!("/ip4/198.51.100.11/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(relay_in(&listened), Some(relay));
        let direct: Multiaddr = format!("/ip4/198.51.100.11/tcp/4001/p2p/{target}")
            .parse()
            .unwrap();
        assert_eq!(relay_in(&direct), None);
        let anonymous: Multiaddr = "/ip4/198.51.100.11/tcp/4001/p2p-circuit".parse().unwrap();
        assert_eq!(relay_in(&anonymous), None);
    }

    #[test]
    fn relayed_peers_get_a_few_more_hole_punches_from_one_side() {
        let (a, b) = {
            let (x, y) = (PeerId::random(), PeerId::random());
            if x < y { (x, y) } else { (y, x) }
        };
        let t0 = std::time::Instant::now();
        let relayed = std::collections::BTreeSet::from([b]);
        let mut at_a = PunchRetries::default();
        assert!(at_a.due(t0, a, &relayed).is_empty(), "not yet");
        let mut at = Vec::new();
        for step in 1..100u32 {
            if !at_a
                .due(t0 + PUNCH_RETRY_AFTER * step, a, &relayed)
                .is_empty()
            {
                at.push(step);
            }
        }
        // Backing off: 20, 40, 80 and 160 s after the try before (in steps of 20 s), then never again.
        assert_eq!(at, vec![1, 3, 7, 15], "bounded, with backoff");
        // The larger side never redials.
        let mut at_b = PunchRetries::default();
        let back = std::collections::BTreeSet::from([a]);
        assert!(at_b.due(t0, b, &back).is_empty());
        assert!(at_b.due(t0 + PUNCH_RETRY_AFTER * 2, b, &back).is_empty());
        // A peer that got a direct connection starts over if it is relayed again later.
        at_a.due(t0, a, &std::collections::BTreeSet::new());
        assert!(
            at_a.due(t0 + PUNCH_RETRY_AFTER * 30, a, &relayed)
                .is_empty(),
            "clock restarts"
        );
    }

    #[test]
    fn only_dht_servers_reached_directly_hold_slivers() {
        // Connected: must serve the DHT and have a direct connection.
        assert!(holds_slivers(true, true, true));
        assert!(!holds_slivers(true, true, false), "relayed only");
        assert!(!holds_slivers(true, false, true), "a DHT client behind NAT");
        assert!(!holds_slivers(true, false, false));
        // Known from the routing table only (which holds servers alone): a candidate until a connection shows
        // otherwise.
        assert!(holds_slivers(false, false, false));
    }

    #[test]
    fn only_nodes_on_private_networks_need_relays() {
        assert!(needs_relays(&[addr("/ip4/192.168.1.11/tcp/4001")]));
        assert!(needs_relays(&[addr("/ip4/100.64.3.2/tcp/4001")]));
        assert!(!needs_relays(&[addr("/ip4/198.51.100.11/tcp/4001")]));
        assert!(!needs_relays(&[addr("/ip4/127.0.0.1/tcp/0")]));
        assert!(!needs_relays(&[addr("/ip4/0.0.0.0/tcp/4001")]));
        assert!(!needs_relays(&[
            addr("/ip4/10.0.0.2/tcp/4001"),
            addr("/ip4/203.0.113.9/tcp/4001")
        ]));
        assert!(!needs_relays(&[]));
    }

    #[test]
    fn relays_are_public_peers_that_offer_the_hop_protocol_two_at_most() {
        let hop = [relay::HOP_PROTOCOL_NAME];
        let mut relays = Relays::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert_eq!(
            relays.consider(a, &[], &addr("/ip4/198.51.100.11/tcp/4001")),
            None
        );
        assert_eq!(
            relays.consider(a, &hop, &addr("/ip4/192.168.1.1/tcp/4001")),
            None
        );
        let circuit = relays
            .consider(a, &hop, &addr("/ip4/198.51.100.11/tcp/4001"))
            .unwrap();
        assert_eq!(
            circuit,
            addr(&format!("/ip4/198.51.100.11/tcp/4001/p2p/{a}/p2p-circuit"))
        );
        assert_eq!(
            relays.consider(a, &hop, &addr("/ip4/198.51.100.11/tcp/4001")),
            None
        );
        assert!(
            relays
                .consider(b, &hop, &addr("/ip4/198.51.100.12/tcp/4001"))
                .is_some()
        );
        assert_eq!(
            relays.consider(c, &hop, &addr("/ip4/198.51.100.13/tcp/4001")),
            None
        );
        let listener = ListenerId::next();
        relays.listening(a, Some(listener));
        relays.listening(b, None);
        assert_eq!(relays.chosen(), 1);
        relays.closed(listener);
        assert_eq!(relays.chosen(), 0);
        assert!(
            relays
                .consider(c, &hop, &addr("/ip4/198.51.100.13/tcp/4001"))
                .is_some()
        );
    }
}
