//! Where peers listen, remembered past Kademlia: a failed dial takes a peer out of the routing table (it is no
//! holder candidate while out of reach), and with it the only addresses libp2p knew. After a partition heals,
//! holders and former holders on the other side are dialled again with what this book kept. Bounded: the
//! peers heard from longest ago are forgotten first.

use std::collections::BTreeMap;

use floe_protocol::diversity::Network;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// Peers remembered at most.
pub(super) const MAX_PEERS: usize = 4096;
/// Addresses remembered per peer at most.
pub(super) const MAX_ADDRS: usize = 8;

/// The listen addresses peers last told us (identify), for dialling them again.
#[derive(Debug, Default)]
pub(super) struct AddressBook {
    peers: BTreeMap<PeerId, (u64, Vec<Multiaddr>)>,
    /// Peers by when they were last recorded, oldest first.
    by_age: BTreeMap<u64, PeerId>,
    next: u64,
}

impl AddressBook {
    /// Records where `peer` listens (its addresses this node can dial); replaces what was known.
    pub(super) fn record(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let mut addrs: Vec<Multiaddr> = addrs.into_iter().take(MAX_ADDRS).collect();
        addrs.dedup();
        if addrs.is_empty() {
            return;
        }
        if let Some((age, _)) = self.peers.remove(&peer) {
            self.by_age.remove(&age);
        }
        let age = self.next;
        self.next = self.next.saturating_add(1);
        self.peers.insert(peer, (age, addrs));
        self.by_age.insert(age, peer);
        while self.peers.len() > MAX_PEERS {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.peers.remove(&oldest);
        }
    }

    /// Records what `peer`'s identify says of where it listens: the addresses `dialable` from here, and those on a
    /// network this node already reaches the peer on directly (`reached`, by connection): private networks
    /// joined by a route, as the partition test's two /24s are, which the dialable rule leaves to Kademlia.
    pub(super) fn record_identified(
        &mut self,
        peer: PeerId,
        listen_addrs: &[Multiaddr],
        dialable: &[Multiaddr],
        reached: Option<&BTreeMap<ConnectionId, Network>>,
    ) {
        let on_reached = |addr: &Multiaddr| {
            super::network_of(addr)
                .is_some_and(|net| reached.is_some_and(|r| r.values().any(|n| *n == net)))
        };
        let kept = listen_addrs
            .iter()
            .filter(|addr| dialable.contains(addr) || on_reached(addr));
        self.record(peer, kept.cloned());
    }

    /// Where `peer` last said it listens (empty if unknown).
    pub(super) fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|(_, addrs)| addrs.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn identified_addresses_on_a_network_already_reached_are_kept() {
        let mut book = AddressBook::default();
        let peer = PeerId::random();
        let on = |a: &str| -> Multiaddr { a.parse().unwrap() };
        let listen = [
            on("/ip4/10.77.2.2/tcp/4002"),
            on("/ip4/192.168.9.9/tcp/4002"),
        ];
        // Neither dialable by the private-network rule, one on the network the connection came from.
        let reached: BTreeMap<ConnectionId, Network> = [(
            ConnectionId::new_unchecked(1),
            Network::of("10.77.2.7".parse().unwrap()),
        )]
        .into();
        book.record_identified(peer, &listen, &[], Some(&reached));
        assert_eq!(book.addresses(&peer), vec![listen[0].clone()]);
        // Dialable ones are kept whatever the connections.
        book.record_identified(peer, &listen, &listen[1..], None);
        assert_eq!(book.addresses(&peer), vec![listen[1].clone()]);
    }

    #[test]
    fn the_latest_addresses_are_kept_and_the_oldest_peers_go_first() {
        let mut book = AddressBook::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        book.record(a, [addr(1), addr(2)]);
        book.record(a, [addr(3)]);
        assert_eq!(book.addresses(&a), vec![addr(3)]);
        assert!(book.addresses(&b).is_empty());
        // Nothing dialable told: what was known stays.
        book.record(a, []);
        assert_eq!(book.addresses(&a), vec![addr(3)]);
        book.record(b, (0..20).map(addr));
        assert_eq!(book.addresses(&b).len(), MAX_ADDRS);
        for _ in 0..MAX_PEERS - 1 {
            book.record(PeerId::random(), [addr(9)]);
        }
        // a was recorded before b: it goes first.
        assert!(book.addresses(&a).is_empty());
        assert_eq!(book.addresses(&b).len(), MAX_ADDRS);
        assert_eq!(book.peers.len(), MAX_PEERS);
        assert_eq!(book.by_age.len(), MAX_PEERS);
    }
}
