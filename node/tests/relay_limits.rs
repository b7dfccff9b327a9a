//! A floe node's relay service against greedy clients (issue 17): a real `floe node` on 127.0.0.1 relays with
//! small limits, and libp2p swarms inside the test reserve on it and push circuits past those limits. The relay
//! must refuse the reservation and the circuit beyond its counts, close an idle circuit at its duration, and
//! close a circuit that carries more than its byte limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, relay, tcp, yamux};

mod common;
use common::*;

const SINK: StreamProtocol = StreamProtocol::new("/floe-test/sink/1");
/// The relay's byte limit per circuit in this test.
const CIRCUIT_BYTES: u64 = 256 << 10;
/// The relay's duration limit per circuit in this test.
const CIRCUIT_SECS: u64 = 4;
/// libp2p's relay checks the byte count between copies of at most one buffer (8 KiB), so a circuit may carry
/// that much past its limit before it is closed.
const COPY_BUFFER: u64 = 8 << 10;

/// Reads a request to its end, counting every byte that arrives; writes requests whole and answers nothing.
#[derive(Clone, Default)]
struct SinkCodec {
    received: Arc<AtomicU64>,
}

impl request_response::Codec for SinkCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Ok(Vec::new());
            }
            self.received
                .fetch_add(u64::try_from(n).unwrap(), Ordering::Relaxed);
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    sink: request_response::Behaviour<SinkCodec>,
}

/// A libp2p swarm that reaches others only through relays, and counts the bytes sent to its sink.
fn client() -> (Swarm<Client>, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let codec = SinkCodec {
        received: received.clone(),
    };
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay| Client {
            relay,
            sink: request_response::Behaviour::with_codec(
                codec,
                [(SINK, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
            ),
        })
        .unwrap()
        // Circuits stay open until the relay closes them: that is what is measured.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    (swarm, received)
}

/// Drives `swarm` until `pick` returns a value for one of its events, or fails after `secs`.
async fn until<T>(
    swarm: &mut Swarm<Client>,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(SwarmEvent<ClientEvent>) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Err(_) => panic!("timed out after {secs} s waiting for {what}"),
        }
    }
}

/// Drives every swarm in `others` in the background for as long as the returned handles live.
fn drive(others: Vec<Swarm<Client>>) -> Vec<tokio::task::JoinHandle<()>> {
    others
        .into_iter()
        .map(|mut swarm| tokio::spawn(async move { while swarm.next().await.is_some() {} }))
        .collect()
}

/// Asks the relay at `relay` for a reservation; whether it was granted.
async fn reserve(swarm: &mut Swarm<Client>, relay: &Multiaddr) -> bool {
    let listener = swarm
        .listen_on(relay.clone().with(Protocol::P2pCircuit))
        .unwrap();
    until(
        swarm,
        20,
        "the relay's answer to a reservation",
        |event| match event {
            SwarmEvent::Behaviour(ClientEvent::Relay(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => Some(true),
            SwarmEvent::ListenerClosed { listener_id, .. } if listener_id == listener => {
                Some(false)
            }
            SwarmEvent::ListenerError { listener_id, .. } if listener_id == listener => Some(false),
            _ => None,
        },
    )
    .await
}

fn circuit_to(relay: &Multiaddr, peer: PeerId) -> Multiaddr {
    relay
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_never_carries_more_than_its_limits() {
    let swarm_guard = TestSwarm::start_with(
        1,
        &[
            "--relay-max-reservations",
            "2",
            "--relay-max-circuits",
            "1",
            "--relay-max-circuit-bytes",
            "256KiB",
            "--relay-max-circuit-duration",
            "4s",
        ],
    );
    let node = &swarm_guard.nodes[0];
    // The node's listen address, with its peer ID.
    let relay: Multiaddr = node.listen.parse().unwrap();

    // Reservations: two granted, a third refused while both are held.
    let (mut listener_a, received_a) = client();
    let (mut listener_b, _) = client();
    let (mut greedy_third, _) = client();
    assert!(reserve(&mut listener_a, &relay).await, "first reservation");
    assert!(reserve(&mut listener_b, &relay).await, "second reservation");
    assert!(
        !reserve(&mut greedy_third, &relay).await,
        "a third reservation beyond --relay-max-reservations 2 was granted"
    );
    let a = *listener_a.local_peer_id();
    let b = *listener_b.local_peer_id();
    let _driven = drive(vec![listener_b]);

    // Circuits: one open (and idle) at a time; a second is refused while it lives, and the relay closes the
    // first at its duration limit.
    let (mut source, _) = client();
    source.dial(circuit_to(&relay, a)).unwrap();
    let mut opened = None;
    let mut closed = None;
    // The source's and the listener's events, until the listener saw the circuit open and close.
    let deadline = Instant::now() + Duration::from_secs(CIRCUIT_SECS + 20);
    let mut second_refused = None;
    let (mut second, _) = client();
    while closed.is_none() {
        assert!(
            Instant::now() < deadline,
            "the idle circuit was never closed"
        );
        tokio::select! {
            event = source.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event && peer_id == a {
                    opened.get_or_insert_with(Instant::now);
                    second.dial(circuit_to(&relay, b)).unwrap();
                }
                if let SwarmEvent::ConnectionClosed { peer_id, .. } = event && peer_id == a {
                    closed = Some(Instant::now());
                }
            }
            event = second.select_next_some(), if opened.is_some() && second_refused.is_none() => {
                match event {
                    SwarmEvent::OutgoingConnectionError { .. } => second_refused = Some(true),
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == b => {
                        second_refused = Some(false)
                    }
                    _ => {}
                }
            }
            _ = listener_a.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let (opened, closed) = (opened.unwrap(), closed.unwrap());
    assert_eq!(
        second_refused,
        Some(true),
        "a second circuit beyond --relay-max-circuits 1 was not refused"
    );
    let lived = closed - opened;
    eprintln!("idle circuit: closed by the relay after {lived:?} (limit {CIRCUIT_SECS} s)");
    assert!(
        lived >= Duration::from_secs(CIRCUIT_SECS) - Duration::from_millis(500)
            && lived <= Duration::from_secs(CIRCUIT_SECS + 3),
        "an idle circuit with a {CIRCUIT_SECS} s limit lived {lived:?}"
    );

    // Bytes: a greedy source pushes 4 MiB through a new circuit; the relay closes it at the byte limit. An
    // attempt can end early for other reasons on a loaded machine (the relay may still count the idle circuit
    // just closed, refusing the new one, or the circuit's duration limit may come first); such an attempt says
    // nothing about the byte limit, so up to three are made. Every attempt must stay within the limit.
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let (got, why) = push_greedy(&relay, a, &mut listener_a, &received_a).await;
        eprintln!(
            "greedy circuit: the sink received {got} bytes before it ended ({why}; limit {CIRCUIT_BYTES})"
        );
        assert!(
            got <= CIRCUIT_BYTES + COPY_BUFFER,
            "the relay carried {got} bytes on a circuit limited to {CIRCUIT_BYTES}"
        );
        let closed_at_limit = got >= CIRCUIT_BYTES / 2;
        attempts.push(format!("{got} bytes ({why})"));
        if closed_at_limit {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "no greedy circuit carried half its byte limit before it ended, so none was closed for its byte limit: {}",
        attempts.join("; ")
    );
}

/// One greedy attempt: a new client sends 4 MiB to `a` through a new circuit. Returns the bytes `a`'s sink
/// received and why the request ended.
async fn push_greedy(
    relay: &Multiaddr,
    a: PeerId,
    listener_a: &mut Swarm<Client>,
    received_a: &AtomicU64,
) -> (u64, String) {
    received_a.store(0, Ordering::Relaxed);
    let (mut greedy, _) = client();
    greedy.dial(circuit_to(relay, a)).unwrap();
    let request = greedy
        .behaviour_mut()
        .sink
        .send_request(&a, vec![7u8; 4 << 20]);
    let started = Instant::now();
    let why = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the greedy circuit was not closed; the sink got {} bytes",
            received_a.load(Ordering::Relaxed)
        );
        tokio::select! {
            event = greedy.select_next_some() => match event {
                SwarmEvent::Behaviour(ClientEvent::Sink(request_response::Event::OutboundFailure {
                    request_id, error, ..
                })) if request_id == request => {
                    break format!("{error} after {:?}", started.elapsed());
                }
                SwarmEvent::Behaviour(ClientEvent::Sink(request_response::Event::Message { .. })) => {
                    panic!("4 MiB went through a relay limited to {CIRCUIT_BYTES} bytes per circuit")
                }
                _ => {}
            },
            _ = listener_a.select_next_some() => {}
        }
    };
    // Let the listener read what was still in flight before counting.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        tokio::select! {
            _ = listener_a.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    (received_a.load(Ordering::Relaxed), why)
}
