//! The libp2p side of a node: transports, behaviours, and the event loop that owns the `Swarm` (the wire codec
//! is in `codec`, the NAT handling of the loop in `reach`).
//!
//! This module owns peers and connections: discovery (Kademlia, fed by identify), reachability (AutoNAT v2,
//! relays, DCUtR, UPnP), RTTs (ping), and moving floe requests and responses. It makes no protocol decision;
//! inbound requests go to the node service, and the service asks for outbound ones through [`NetClient`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, connection_limits, dcutr, gossipsub,
    identify, noise, ping, relay, tcp, upnp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use floe_protocol::diversity::Network;
use floe_protocol::read::Reach;
use floe_protocol::wire::{MAX_FRAME_LEN, MAX_METADATA_LEN, pb};

mod addr_book;
mod codec;
mod reach;
use addr_book::AddressBook;
use reach::{log_dial_back, log_hole_punch, log_upnp};

pub use codec::FloeCodec;

/// The floe request-response protocol.
pub const FLOE_PROTOCOL: StreamProtocol = StreamProtocol::new("/floe/1");
/// How long a relayed connection stays open after a direct one to the same peer exists.
const CIRCUIT_GRACE: Duration = Duration::from_secs(5);

/// floe's own Kademlia protocol name, so a floe swarm never joins the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/floe/kad/1");
/// What identify tells peers this node runs: `floe/<version>`.
pub const AGENT_VERSION: &str = concat!("floe/", env!("CARGO_PKG_VERSION"));
/// The gossipsub topic of repair announcements.
pub const REPAIR_TOPIC: &str = "floe/repair/1";
/// The gossipsub topic on which nodes with a capacity say how much room they have left (`pb::Room`).
pub const ROOM_TOPIC: &str = "floe/room/1";
/// Gossip topic of deletions: `pb::DeleteRequest`s, released tokens a holder checks against its claims.
pub const DELETE_TOPIC: &str = "floe/delete/1";
/// Largest gossip message: an announcement carries a holder list of up to 4096 peer IDs.
pub const MAX_GOSSIP_LEN: usize = 256 * 1024;
/// Largest request or response: a sliver set plus metadata.
pub const MAX_MESSAGE_LEN: usize = MAX_FRAME_LEN + MAX_METADATA_LEN + (1 << 20);

/// Everything a floe node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so that limits are checked before any other behaviour sees a connection.
    limits: connection_limits::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    floe: request_response::Behaviour<FloeCodec>,
    gossipsub: gossipsub::Behaviour,
    /// Learns, address by address, whether we are reachable from outside (a peer dials the address back); a
    /// confirmed address puts Kademlia in server mode.
    autonat: autonat::v2::client::Behaviour,
    /// Dials back the addresses peers ask about.
    autonat_server: autonat::v2::server::Behaviour,
    /// Reaches peers behind NAT through a relay, then upgrades to a direct connection (DCUtR).
    relay_client: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    /// Asks the home router to forward our port; off with `--no-upnp` (and in tests, which stay on loopback).
    upnp: Toggle<upnp::tokio::Behaviour>,
    /// Relays for peers behind NAT, within `crate::nat::RelayLimits`; off with `--no-relay-server`.
    relay: Toggle<relay::Behaviour>,
}

/// A gossip message, with the peer that signed it and its topic.
#[derive(Debug)]
pub struct Gossip {
    /// The author (gossipsub signs messages, so this is authenticated).
    pub source: PeerId,
    /// The topic it came on.
    pub topic: Topic,
    /// The message bytes.
    pub data: Vec<u8>,
}

/// floe's gossip topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// [`REPAIR_TOPIC`]: repair announcements.
    Repair,
    /// [`ROOM_TOPIC`]: free space.
    Room,
    /// [`DELETE_TOPIC`]: deletions.
    Delete,
}

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Self::Repair => REPAIR_TOPIC,
            Self::Room => ROOM_TOPIC,
            Self::Delete => DELETE_TOPIC,
        }
    }
}

/// A request from a peer, to be answered through [`NetClient::respond`].
#[derive(Debug)]
pub struct Inbound {
    /// Who asked.
    pub peer: PeerId,
    /// What they asked.
    pub request: pb::Request,
    /// Where the answer goes.
    pub channel: ResponseChannel<pb::Response>,
}

/// What the network knows of its peers.
#[derive(Debug, Clone, Default)]
pub struct PeerView {
    /// Peers in the routing table or connected, sorted.
    pub peers: Vec<PeerId>,
    /// Connected peers.
    pub connected: usize,
    /// Last measured round-trip time per peer, in milliseconds.
    pub rtt_ms: BTreeMap<PeerId, u64>,
    /// Our listen addresses.
    pub listen_addrs: Vec<Multiaddr>,
    /// Connected peers that answer pings (fewer than three failed in a row), sorted.
    pub connected_peers: BTreeSet<PeerId>,
    /// The network (/24 or /48) of each peer whose address is known: for a connected peer the address of its
    /// oldest open connection (the one it is actually reached on), otherwise the first address the routing
    /// table holds for it.
    pub networks: BTreeMap<PeerId, Network>,
    /// This node's own network, from its first listen address that names a host (none when it listens only on
    /// 0.0.0.0 or ::).
    pub own_network: Option<Network>,
    /// When this node first connected to each peer it still knows (forgotten once the peer leaves both the
    /// connections and the routing table): a peer's age, for the newcomer rule of repairs.
    pub first_seen: BTreeMap<PeerId, std::time::Instant>,
    /// Connected peers with at least one direct connection.
    pub direct_peers: BTreeSet<PeerId>,
    /// Connected peers reached only through a relay (no holder candidates; see `crate::nat::holds_slivers`).
    pub relayed_only_peers: BTreeSet<PeerId>,
    /// Whether this node serves the DHT (Kademlia server mode), which makes it a holder candidate for others.
    pub dht_server: bool,
    /// This node's confirmed external addresses (its listen addresses on a public network, relayed addresses
    /// of its reservations, UPnP mappings, AutoNAT v2 confirmations).
    pub external_addrs: Vec<Multiaddr>,
}

/// The network of the first IP address in `addr` (for a relayed address, the relay's).
pub fn network_of(addr: &Multiaddr) -> Option<Network> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(Network::of(ip.into())),
        Protocol::Ip6(ip) => Some(Network::of(ip.into())),
        _ => None,
    })
}

impl PeerView {
    /// How this node reaches each peer (measured round-trip time, reached only through a relay) keyed by peer
    /// ID bytes, as the protocol's read and repair machines rank holders.
    pub fn reach_by_key(&self) -> BTreeMap<Vec<u8>, Reach> {
        let peers = self.rtt_ms.keys().chain(&self.relayed_only_peers);
        peers
            .map(|peer| {
                let reach = Reach {
                    rtt: self.rtt_ms.get(peer).copied(),
                    relayed: self.relayed_only_peers.contains(peer),
                };
                (peer.to_bytes(), reach)
            })
            .collect()
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The network's event loop has stopped (the node is shutting down).
    #[error("network stopped")]
    Stopped,
    /// Dialing, sending or waiting for the answer failed (unreachable, timed out, closed, unsupported).
    #[error("{0}")]
    Failed(request_response::OutboundFailure),
}

enum Command {
    Request {
        peer: PeerId,
        request: pb::Request,
        reply: oneshot::Sender<Result<pb::Response, RequestError>>,
    },
    Respond {
        channel: ResponseChannel<pb::Response>,
        response: pb::Response,
    },
    View {
        reply: oneshot::Sender<PeerView>,
    },
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Dial {
        peer: PeerId,
    },
    Reach {
        peer: PeerId,
        reply: oneshot::Sender<PeerReach>,
    },
}

/// How this node reaches one peer, for routing a read (`NetClient::reach`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerReach {
    /// At least one connection to the peer is direct.
    pub direct: bool,
    /// The relay of a circuit to the peer, when every connection to it is relayed: a reader asks that relay to
    /// forward its read requests (docs/protocol.md §11, "Forwarded reads").
    pub relay: Option<PeerId>,
    /// This node relays for others, and so forwards read requests to the peers it reaches directly.
    pub forwards: bool,
}

/// A cheap, cloneable handle to the event loop.
#[derive(Clone)]
pub struct NetClient {
    commands: mpsc::Sender<Command>,
    local: PeerId,
}

impl NetClient {
    /// Our peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Sends `request` to `peer` and waits for the answer.
    pub async fn request(
        &self,
        peer: PeerId,
        request: pb::Request,
    ) -> Result<pb::Response, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer.await.map_err(|_| RequestError::Stopped)?
    }

    /// Answers an inbound request.
    pub async fn respond(&self, channel: ResponseChannel<pb::Response>, response: pb::Response) {
        let _ = self
            .commands
            .send(Command::Respond { channel, response })
            .await;
    }

    /// Publishes `data` on the repair topic. Best effort: with no subscribed peer it is dropped (and logged).
    pub async fn publish(&self, data: Vec<u8>) {
        self.publish_on(Topic::Repair, data).await;
    }

    /// Publishes this node's room (`pb::Room`) on the room topic. Best effort, like [`Self::publish`].
    pub async fn publish_room(&self, data: Vec<u8>) {
        self.publish_on(Topic::Room, data).await;
    }

    /// Publishes a deletion (`pb::DeleteRequest`) on the delete topic. Best effort, like [`Self::publish`].
    pub async fn publish_deletion(&self, data: Vec<u8>) {
        self.publish_on(Topic::Delete, data).await;
    }

    async fn publish_on(&self, topic: Topic, data: Vec<u8>) {
        let _ = self.commands.send(Command::Publish { topic, data }).await;
    }

    /// Dials `peer` if it is not connected, so that a holder that is only idle is not taken for gone.
    pub async fn dial(&self, peer: PeerId) {
        let _ = self.commands.send(Command::Dial { peer }).await;
    }

    /// How this node reaches `peer` now (nothing, if the network has stopped).
    pub async fn reach(&self, peer: PeerId) -> PeerReach {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Reach { peer, reply })
            .await
            .is_err()
        {
            return PeerReach::default();
        }
        answer.await.unwrap_or_default()
    }

    /// The current view of the swarm.
    pub async fn view(&self) -> PeerView {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::View { reply }).await.is_err() {
            return PeerView::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through (with or without `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// How long a floe request may take.
    pub request_timeout: Duration,
    /// Ask the local router for a port mapping (UPnP IGD).
    pub upnp: bool,
    /// Established connections at most, in and out; a peer may hold at most a few.
    pub max_connections: u32,
    /// The relay service offered to peers behind NAT, if any.
    pub relay: Option<crate::nat::RelayLimits>,
}

/// Consecutive failed pings (5 s apart) after which a connected peer counts as out of reach. More than one:
/// js-libp2p closes an inbound ping stream after 10 s, so the ping on a js peer's connection fails about every
/// second time and is reopened; a single failure says nothing about the peer.
pub(super) const UNANSWERED_PINGS: u32 = 3;
/// Connections one peer may hold at once (TCP and QUIC, both directions).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;

/// Builds the swarm, starts listening and dialling, and returns the client, the inbound request stream and the
/// event loop to spawn.
pub fn start(
    keypair: Keypair,
    config: NetConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<(
    NetClient,
    mpsc::Receiver<Inbound>,
    mpsc::Receiver<Gossip>,
    EventLoop,
)> {
    let local = keypair.public().to_peer_id();
    let request_timeout = config.request_timeout;
    let (upnp, max_connections) = (config.upnp, config.max_connections);
    let relay_limits = config.relay.clone();
    let wants_relays = crate::nat::needs_relays(&config.listen);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(10));
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            // A node on a public or loopback address serves the DHT from the start (loopback addresses are never
            // confirmed as external). One behind NAT is a client until an address of it is confirmed: a relay
            // reservation, a UPnP mapping or an AutoNAT v2 dial-back. Only servers are asked to hold slivers.
            kad.set_mode((!wants_relays).then_some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(MAX_GOSSIP_LEN)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .heartbeat_interval(Duration::from_secs(1))
                .build()
                .map_err(|e| io::Error::other(e.to_string()))?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(io::Error::other)?;
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(max_connections))
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                .with_max_pending_incoming(Some(max_connections / 4 + 16));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                kad,
                identify: identify::Behaviour::new(
                    identify::Config::new("/floe/id/1".into(), key.public())
                        .with_agent_version(AGENT_VERSION.to_owned())
                        // A relayed address reserved later reaches peers without waiting for the next round.
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_secs(5)),
                ),
                floe: request_response::Behaviour::new(
                    [(FLOE_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(256),
                ),
                gossipsub,
                autonat: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                upnp: Toggle::from(upnp.then(upnp::tokio::Behaviour::default)),
                relay: Toggle::from(
                    relay_limits.map(|limits| relay::Behaviour::new(peer_id, limits.config())),
                ),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    // A node not on a private network serves as a relay from the start (libp2p would wait for a confirmed
    // external address, which loopback and test-range addresses never get). A node behind NAT never relays: left
    // to itself, libp2p would enable the service once the node's own relayed address is confirmed, and peers
    // would then reserve on a node they can reach only through another relay.
    if let Some(relay) = swarm.behaviour_mut().relay.as_mut() {
        relay.set_status(Some(if wants_relays {
            relay::Status::Disable
        } else {
            relay::Status::Enable
        }));
    }
    for topic in [REPAIR_TOPIC, ROOM_TOPIC, DELETE_TOPIC] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))?;
    }
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| {
            // libp2p's transport error displays as an empty string; its cause says what went wrong.
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            anyhow::anyhow!("listening on {addr}: {cause}")
        })?;
    }
    // Dialled once the first listener is up (`EventLoop::on_event`): a dial from the listening port is what lets
    // a NAT that keeps ports map this node to the same outside port for every peer, which hole punching needs.
    for addr in &config.bootstrap {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
    }
    let (commands, command_rx) = mpsc::channel(1024);
    let (inbound_tx, inbound) = mpsc::channel(1024);
    let (gossip_tx, gossip) = mpsc::channel(1024);
    Ok((
        NetClient { commands, local },
        inbound,
        gossip,
        EventLoop {
            gossip: gossip_tx,
            swarm,
            commands: command_rx,
            inbound: inbound_tx,
            pending: HashMap::new(),
            rtt_ms: BTreeMap::new(),
            ping_failures: BTreeMap::new(),
            ping_timeouts: BTreeMap::new(),
            addr_book: AddressBook::default(),
            connection_networks: BTreeMap::new(),
            kad_servers: BTreeSet::new(),
            relayed_connections: BTreeMap::new(),
            relay_of: BTreeMap::new(),
            close_circuits_at: BTreeMap::new(),
            punch_retries: crate::nat::PunchRetries::default(),
            first_seen: BTreeMap::new(),
            bootstrapped: false,
            bootstrap: config.bootstrap,
            bootstrap_dialled: false,
            metrics: libp2p::metrics::Metrics::new(registry),
            wants_relays,
            relays: crate::nat::Relays::default(),
        },
    ))
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    gossip: mpsc::Sender<Gossip>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<pb::Response, RequestError>>>,
    rtt_ms: BTreeMap<PeerId, u64>,
    /// Consecutive failed pings per connected peer.
    ping_failures: BTreeMap<PeerId, u32>,
    /// Consecutive failed pings per connection (a peer without the protocol aside): at three it is closed.
    ping_timeouts: BTreeMap<ConnectionId, u32>,
    /// Where DHT servers listen, kept after Kademlia forgets them (a failed dial): holders are dialled again.
    addr_book: AddressBook,
    /// The network of each open direct connection's remote address, per peer (relayed connections are not
    /// here: a connected peer missing from this map is reached only through a relay).
    connection_networks: BTreeMap<PeerId, BTreeMap<ConnectionId, Network>>,
    /// Peers whose last identify listed floe's Kademlia protocol: they serve the DHT, so they are reachable.
    kad_servers: BTreeSet<PeerId>,
    /// Open relayed connections per peer, each with whether this node dialled it; closed once a direct one
    /// exists (a relay's circuits are scarce).
    relayed_connections: BTreeMap<PeerId, BTreeMap<ConnectionId, bool>>,
    /// The relay of the latest circuit to each peer (kept while the peer is connected at all).
    relay_of: BTreeMap<PeerId, PeerId>,
    /// When to close the circuits of peers now also connected directly.
    close_circuits_at: BTreeMap<PeerId, std::time::Instant>,
    /// Peers reached only through relays, to dial again for another hole punch.
    punch_retries: crate::nat::PunchRetries,
    /// When each known peer was first connected.
    first_seen: BTreeMap<PeerId, std::time::Instant>,
    bootstrapped: bool,
    bootstrap: Vec<Multiaddr>,
    /// Whether the bootstrap peers were dialled (once the first listener is up).
    bootstrap_dialled: bool,
    /// libp2p's own metrics (connections, kad, identify, ping, gossipsub, DCUtR), exported on `/metrics`.
    metrics: libp2p::metrics::Metrics,
    /// Whether this node listens only on private addresses, and so reserves slots on relays.
    wants_relays: bool,
    /// The relays it reserved on.
    relays: crate::nat::Relays,
}

impl EventLoop {
    /// Runs until every client handle is dropped.
    pub async fn run(mut self) {
        let mut bootstrap_timer = tokio::time::interval(Duration::from_secs(30));
        // Not at once: the first dials wait for a listener (see `start`).
        let mut redial_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(2),
            Duration::from_secs(2),
        );
        loop {
            tokio::select! {
                _ = redial_timer.tick() => {
                    self.close_spare_circuits();
                    // A bootstrap peer that was down when we started (or that we lost) is tried again until we
                    // are connected to someone; otherwise a node could stay alone forever.
                    if self.swarm.connected_peers().next().is_none() {
                        for addr in self.bootstrap.clone() {
                            let _ = self.swarm.dial(addr);
                        }
                    }
                }
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = bootstrap_timer.tick() => {
                    // Refresh the routing table; an error only means no peer is known yet.
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
        }
    }

    fn view(&mut self) -> PeerView {
        // Holder candidates: DHT servers reached directly or not yet connected (see `crate::nat::holds_slivers`).
        let connected: BTreeSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let candidate = |peer: &PeerId| {
            crate::nat::holds_slivers(
                connected.contains(peer),
                self.kad_servers.contains(peer),
                self.connection_networks.contains_key(peer),
            )
        };
        let mut peers: Vec<PeerId> = connected.iter().copied().filter(candidate).collect();
        // Connections first: an address a peer is reached on outweighs one it only claims.
        let mut networks: BTreeMap<PeerId, Network> = self
            .connection_networks
            .iter()
            .filter_map(|(peer, conns)| Some((*peer, *conns.values().next()?)))
            .collect();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if !candidate(&peer) {
                    continue;
                }
                peers.push(peer);
                if let std::collections::btree_map::Entry::Vacant(slot) = networks.entry(peer)
                    && let Some(net) = entry.node.value.iter().find_map(network_of)
                {
                    slot.insert(net);
                }
            }
        }
        peers.sort();
        peers.dedup();
        // Bounded by the routing table: a peer known nowhere any more starts over as a newcomer.
        self.first_seen
            .retain(|peer, _| peers.binary_search(peer).is_ok());
        // A peer that failed its last pings is connected but not answering: not counted as reachable.
        let connected_peers: BTreeSet<PeerId> = self
            .swarm
            .connected_peers()
            .copied()
            .filter(|p| {
                self.ping_failures
                    .get(p)
                    .is_none_or(|&n| n < UNANSWERED_PINGS)
            })
            .collect();
        let listen_addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        let own_network = listen_addrs
            .iter()
            .filter(|a| {
                !a.iter().any(|p| match p {
                    Protocol::Ip4(ip) => ip.is_unspecified(),
                    Protocol::Ip6(ip) => ip.is_unspecified(),
                    _ => false,
                })
            })
            .find_map(network_of);
        PeerView {
            connected: connected_peers.len(),
            peers,
            rtt_ms: self.rtt_ms.clone(),
            listen_addrs,
            connected_peers,
            networks,
            own_network,
            first_seen: self.first_seen.clone(),
            direct_peers: connected
                .iter()
                .filter(|p| self.connection_networks.contains_key(p))
                .copied()
                .collect(),
            relayed_only_peers: connected
                .iter()
                .filter(|p| !self.connection_networks.contains_key(p))
                .copied()
                .collect(),
            dht_server: self.swarm.behaviour().kad.mode() == kad::Mode::Server,
            external_addrs: self.swarm.external_addresses().cloned().collect(),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().floe.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, response } => {
                // Fails only when the peer is gone; nothing to do then.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .floe
                    .send_response(channel, response);
            }
            Command::View { reply } => {
                let _ = reply.send(self.view());
            }
            Command::Publish { topic, data } => {
                let name = gossipsub::IdentTopic::new(topic.name());
                if let Err(error) = self.swarm.behaviour_mut().gossipsub.publish(name, data) {
                    // No peer subscribed yet (a node alone), or a duplicate: nothing is lost but this message.
                    tracing::debug!(%error, ?topic, "could not publish gossip");
                }
            }
            Command::Reach { peer, reply } => {
                let _ = reply.send(self.reach(peer));
            }
            Command::Dial { peer } => {
                // Kademlia drops a peer whose dial failed (across a partition, say); the book still knows it.
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .addresses(self.addr_book.addresses(&peer))
                    .extend_addresses_through_behaviour()
                    .build();
                if let Err(error) = self.swarm.dial(opts) {
                    tracing::debug!(%peer, %error, "cannot dial holder");
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder as _;
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &event {
            self.ping_timeouts.remove(connection_id);
        }
        if let SwarmEvent::Behaviour(inner) = &event {
            match inner {
                BehaviourEvent::Kad(e) => self.metrics.record(e),
                BehaviourEvent::Identify(e) => self.metrics.record(e),
                BehaviourEvent::Ping(e) => self.metrics.record(e),
                BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
                BehaviourEvent::Dcutr(e) => self.metrics.record(e),
                _ => {}
            }
        }
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                // A node that is not on a private network is dialled where it listens: that is its external
                // address (relays hand it to the peers that reserve on them).
                let relayed = address.iter().any(|p| p == Protocol::P2pCircuit);
                let unspecified = address.iter().any(|p| {
                    matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
                        || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
                });
                if !self.wants_relays && !relayed && !unspecified {
                    self.swarm.add_external_address(address);
                }
                if !relayed && !self.bootstrap_dialled {
                    self.bootstrap_dialled = true;
                    for addr in self.bootstrap.clone() {
                        if let Err(error) = self.swarm.dial(addr.clone()) {
                            tracing::warn!(%addr, %error, "cannot dial bootstrap peer");
                        }
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                tracing::info!(?addresses, ?reason, "a listener closed");
                self.relays.closed(listener_id);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                tracing::debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.first_seen
                    .entry(peer_id)
                    .or_insert_with(std::time::Instant::now);
                let remote = endpoint.get_remote_address();
                let relayed = remote.iter().any(|p| p == Protocol::P2pCircuit);
                // A relayed connection's address names the relay's network, not the peer's.
                if relayed {
                    let circuit = match &endpoint {
                        libp2p::core::ConnectedPoint::Dialer { address, .. } => address,
                        libp2p::core::ConnectedPoint::Listener { local_addr, .. } => local_addr,
                    };
                    if let Some(relay) = crate::nat::relay_in(circuit) {
                        self.relay_of.insert(peer_id, relay);
                    }
                    let circuits = self.relayed_connections.entry(peer_id).or_default();
                    circuits.insert(connection_id, endpoint.is_dialer());
                    // Both peers dialled each other through relays at once: two hole punches on one address
                    // pair would collide, every attempt. Both sides keep the same one.
                    let local = *self.swarm.local_peer_id();
                    for id in crate::nat::duplicate_circuits(local, peer_id, circuits) {
                        tracing::debug!(%peer_id, "two circuits to one peer: closing one");
                        self.swarm.close_connection(id);
                    }
                } else if self.relayed_connections.contains_key(&peer_id) {
                    // Hole punched (or dialled directly): the circuit is no longer needed, once the other side
                    // has finished its half of the upgrade (closing at once aborts it).
                    self.close_circuits_at
                        .entry(peer_id)
                        .or_insert_with(|| std::time::Instant::now() + CIRCUIT_GRACE);
                }
                if !relayed && let Some(net) = network_of(remote) {
                    self.connection_networks
                        .entry(peer_id)
                        .or_default()
                        .insert(connection_id, net);
                }
                if !self.bootstrapped {
                    self.bootstrapped = true;
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                if let Some(circuits) = self.relayed_connections.get_mut(&peer_id) {
                    circuits.remove(&connection_id);
                    if circuits.is_empty() {
                        self.relayed_connections.remove(&peer_id);
                    }
                }
                if let Some(conns) = self.connection_networks.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        // Only relayed connections are left.
                        self.connection_networks.remove(&peer_id);
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connection_networks.remove(&peer_id);
                self.kad_servers.remove(&peer_id);
                self.relayed_connections.remove(&peer_id);
                self.relay_of.remove(&peer_id);
                self.close_circuits_at.remove(&peer_id);
                self.rtt_ms.remove(&peer_id);
                self.ping_failures.remove(&peer_id);
                tracing::debug!(%peer_id, "disconnected");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => {
                // Strict validation: only signed messages arrive here, so the source is the author.
                let topic = [Topic::Repair, Topic::Room, Topic::Delete]
                    .into_iter()
                    .find(|t| message.topic == gossipsub::IdentTopic::new(t.name()).hash());
                if let (Some(source), Some(topic)) = (message.source, topic)
                    && self
                        .gossip
                        .try_send(Gossip {
                            source,
                            topic,
                            data: message.data,
                        })
                        .is_err()
                {
                    tracing::warn!(%source, ?topic, "gossip queue full; dropped a message");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(%peer_id, observed = %info.observed_addr, "identified");
                if self.wants_relays {
                    // A peer on a public address that offers the hop protocol can relay for us.
                    let circuit = info
                        .listen_addrs
                        .iter()
                        .find_map(|addr| self.relays.consider(peer_id, &info.protocols, addr));
                    if let Some(circuit) = circuit {
                        match self.swarm.listen_on(circuit.clone()) {
                            Ok(id) => {
                                tracing::info!(relay = %peer_id, %circuit, "reserving a relay slot");
                                self.relays.listening(peer_id, Some(id));
                            }
                            Err(error) => {
                                tracing::warn!(relay = %peer_id, %error, "cannot listen through a relay");
                                self.relays.listening(peer_id, None);
                            }
                        }
                    }
                }
                // Kademlia ignores the addresses of inbound connections; identify tells where the peer listens. A
                // peer in client mode (behind NAT, not reachable yet) stays out of the routing table, and so out
                // of holder lists.
                self.dial_directly_if_possible(peer_id, &info.listen_addrs);
                self.serve_dht_if_on_a_shared_private_network(peer_id, &info.observed_addr);
                if info.protocols.contains(&KAD_PROTOCOL) {
                    self.kad_servers.insert(peer_id);
                    // Only addresses someone can dial: a NATed peer's home address is of no use to the peers we
                    // pass it on to (nor to us, unless we share its home network), and failed dials cost time.
                    let own: BTreeSet<Network> =
                        self.swarm.listeners().filter_map(network_of).collect();
                    let dialable: Vec<Multiaddr> = info
                        .listen_addrs
                        .iter()
                        .filter(|addr| {
                            addr.iter().any(|p| p == Protocol::P2pCircuit)
                                || crate::nat::dialable_from(addr, &own)
                        })
                        .cloned()
                        .collect();
                    let reached = self.connection_networks.get(&peer_id);
                    self.addr_book.record_identified(
                        peer_id,
                        &info.listen_addrs,
                        &dialable,
                        reached,
                    );
                    for addr in dialable {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                } else if self.kad_servers.remove(&peer_id) {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.on_ping(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => log_hole_punch(event),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => log_dial_back(event),
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(event)) => log_upnp(event),
            SwarmEvent::Behaviour(BehaviourEvent::Floe(event)) => self.on_floe(event),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
                // A peer we cannot reach is no holder candidate until it comes back (one still connected is
                // reachable: only this dial's addresses failed).
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer);
                }
            }
            _ => {}
        }
    }

    fn on_floe(&mut self, event: request_response::Event<pb::Request, pb::Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let inbound = Inbound {
                        peer,
                        request,
                        channel,
                    };
                    if let Err(mpsc::error::TrySendError::Full(inbound)) =
                        self.inbound.try_send(inbound)
                    {
                        let busy = pb::Response {
                            kind: Some(pb::response::Kind::Busy(pb::Busy {})),
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .floe
                            .send_response(inbound.channel, busy);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                tracing::debug!(%peer, %error, "request failed");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
