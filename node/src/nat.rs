//! Reachability across NAT (issue 17): the relay service a node offers to others, and the relays a node that
//! cannot be dialled reserves slots on, so that peers reach it through them and then upgrade to a direct
//! connection with DCUtR where the NATs allow.
//!
//! This module decides which relays to use and with what limits; the swarm (`crate::net`) does the dialling and
//! listening. It must not block or do I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

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
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
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
