//! Reachability across NAT, the event loop's side (issue 17): dialling relayed peers directly where that can
//! work, serving the DHT on a shared private network, and closing or renewing circuits. The rules themselves
//! are in `crate::nat`; this module applies them to the swarm and must not block.

use std::collections::BTreeSet;

use libp2p::kad;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use floe_protocol::diversity::Network;

use super::{EventLoop, PeerReach, UNANSWERED_PINGS, network_of};

/// Logs a hole punch's outcome (operators read these to see why a peer stays relayed).
pub(super) fn log_hole_punch(event: libp2p::dcutr::Event) {
    let peer = event.remote_peer_id;
    match event.result {
        Ok(connection) => tracing::info!(%peer, ?connection, "hole punched: direct connection"),
        Err(error) => tracing::info!(%peer, %error, "hole punch failed"),
    }
}

/// Logs an AutoNAT v2 dial-back test of one of this node's addresses.
pub(super) fn log_dial_back(event: libp2p::autonat::v2::client::Event) {
    let (addr, server) = (event.tested_addr, event.server);
    match event.result {
        Ok(()) => tracing::info!(%addr, %server, "reachable: a peer dialled us back"),
        Err(error) => tracing::info!(%addr, %server, %error, "not reachable from outside"),
    }
}

/// Logs what the home router said to a UPnP port mapping request.
pub(super) fn log_upnp(event: libp2p::upnp::Event) {
    use libp2p::upnp::Event;
    match event {
        Event::NewExternalAddr {
            local_addr,
            external_addr,
        } => tracing::info!(%local_addr, %external_addr, "UPnP: the router forwards a port to us"),
        Event::ExpiredExternalAddr {
            local_addr,
            external_addr,
        } => tracing::info!(%local_addr, %external_addr, "UPnP: port mapping expired"),
        Event::GatewayNotFound => tracing::info!("UPnP: no router offers it"),
        Event::NonRoutableGateway => {
            tracing::info!("UPnP: the router's outside address is not public (a NAT behind a NAT)")
        }
    }
}

impl EventLoop {
    /// A ping's outcome. A peer whose last [`UNANSWERED_PINGS`] pings failed counts as out of reach (a frozen
    /// process keeps its connection open); a connection whose own last [`UNANSWERED_PINGS`] pings went
    /// unanswered is closed, so the next dial opens a fresh one: across a healed partition the old one sits in
    /// TCP's retransmission backoff for up to a minute, and libp2p dials nobody it is still connected to. A
    /// peer without the ping protocol ("unsupported") keeps its connections.
    pub(super) fn on_ping(&mut self, event: libp2p::ping::Event) {
        let libp2p::ping::Event {
            peer,
            connection,
            result,
        } = event;
        match result {
            Ok(rtt) => {
                self.rtt_ms
                    .insert(peer, u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX));
                self.ping_failures.remove(&peer);
                self.ping_timeouts.remove(&connection);
            }
            Err(error) => {
                let failures = self.ping_failures.entry(peer).or_insert(0);
                *failures = failures.saturating_add(1);
                tracing::debug!(%peer, %error, failures = *failures, "ping failed");
                // A ping over a dead connection times out once; the next ones fail to open their stream
                // (negotiation times out), so any failure but "unsupported" counts.
                if !matches!(error, libp2p::ping::Failure::Unsupported) {
                    let timeouts = self.ping_timeouts.entry(connection).or_insert(0);
                    *timeouts = timeouts.saturating_add(1);
                    if *timeouts >= UNANSWERED_PINGS {
                        tracing::debug!(%peer, ?connection, "closing a connection whose pings go unanswered");
                        self.swarm.close_connection(connection);
                    }
                }
            }
        }
    }

    /// How this node reaches `peer`: see [`PeerReach`].
    pub(super) fn reach(&self, peer: PeerId) -> PeerReach {
        let direct = self.connection_networks.contains_key(&peer);
        let relayed = self.relayed_connections.contains_key(&peer);
        PeerReach {
            direct,
            relay: (!direct && relayed)
                .then(|| self.relay_of.get(&peer).copied())
                .flatten(),
            forwards: !self.wants_relays && self.swarm.behaviour().relay.is_enabled(),
        }
    }

    /// Dials `peer` directly when it is reached only through a relay but listens where we can dial it: on a
    /// public address (it dialled us through a relay before we dialled it; hole punching towards a public node
    /// fails, as it has no observed address to offer), or on this node's own private network (two hosts behind
    /// one home router; a hole punch between them would need the router to hairpin).
    pub(super) fn dial_directly_if_possible(&mut self, peer: PeerId, listen_addrs: &[Multiaddr]) {
        if !self.swarm.is_connected(&peer) || self.connection_networks.contains_key(&peer) {
            return;
        }
        let own: BTreeSet<Network> = self.swarm.listeners().filter_map(network_of).collect();
        let direct: Vec<Multiaddr> = listen_addrs
            .iter()
            .filter(|a| crate::nat::dialable_from(a, &own))
            .cloned()
            .collect();
        if direct.is_empty() {
            return;
        }
        tracing::debug!(%peer, addrs = ?direct, "relayed peer with a direct address: dialling it");
        let opts = DialOpts::peer_id(peer)
            .addresses(direct)
            .condition(PeerCondition::Always)
            .build();
        if let Err(error) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %error, "cannot dial a relayed peer directly");
        }
    }

    /// A node on a private network that a peer sees at a private address of one of this node's own networks
    /// shares that network with the peer (a LAN, or namespaces on one bridge): nothing translates its address
    /// there, so it serves the DHT for those peers. Behind NAT, peers elsewhere see the router's address instead.
    pub(super) fn serve_dht_if_on_a_shared_private_network(
        &mut self,
        peer: PeerId,
        observed: &Multiaddr,
    ) {
        if !self.wants_relays || self.swarm.behaviour().kad.mode() == kad::Mode::Server {
            return;
        }
        let own: BTreeSet<Network> = self.swarm.listeners().filter_map(network_of).collect();
        let shared = crate::nat::ip_of(observed).is_some_and(crate::nat::is_private)
            && network_of(observed).is_some_and(|n| own.contains(&n));
        if shared {
            tracing::info!(%peer, %observed, "a peer shares our private network: serving the DHT");
            self.swarm
                .behaviour_mut()
                .kad
                .set_mode(Some(kad::Mode::Server));
        }
    }

    /// Closes the relayed connections of peers that have had a direct one for [`CIRCUIT_GRACE`].
    pub(super) fn close_spare_circuits(&mut self) {
        let now = std::time::Instant::now();
        let due: Vec<PeerId> = self
            .close_circuits_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.close_circuits_at.remove(&peer);
            if !self.connection_networks.contains_key(&peer) {
                continue; // the direct connection is gone again: keep the circuit
            }
            let circuits = self.relayed_connections.remove(&peer).unwrap_or_default();
            tracing::debug!(%peer, circuits = circuits.len(), "direct connection: closing circuits");
            for id in circuits.into_keys() {
                self.swarm.close_connection(id);
            }
        }
        let relayed_only: BTreeSet<PeerId> = self
            .relayed_connections
            .keys()
            .filter(|p| !self.connection_networks.contains_key(p))
            .copied()
            .collect();
        let local = *self.swarm.local_peer_id();
        for peer in self.punch_retries.due(now, local, &relayed_only) {
            // A fresh circuit gets a fresh hole punch; the old ones go, so that it is the only one.
            tracing::debug!(%peer, "still reached only through a relay: dialling again to punch a hole");
            for id in self
                .relayed_connections
                .remove(&peer)
                .unwrap_or_default()
                .into_keys()
            {
                self.swarm.close_connection(id);
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .build();
            if let Err(error) = self.swarm.dial(opts) {
                tracing::debug!(%peer, %error, "cannot dial a relayed peer again");
            }
        }
    }
}
