//! Network diversity with real processes: sixteen `floe node`s on four loopback /24s. The rule itself is
//! `floe_protocol::diversity` (unit tests and proptests there); this checks the wiring: that nodes learn each
//! other's networks from the addresses they reach them on, and that writes place by them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

mod common;
use common::*;

/// The /24 of a loopback address like 127.0.3.2: its third byte.
fn network_of(listen: &str) -> u8 {
    let ip = listen.split('/').nth(2).unwrap();
    ip.split('.').nth(2).unwrap().parse().unwrap()
}

#[test]
fn sixteen_nodes_in_four_networks_hold_at_most_two_slivers_per_network() {
    // QUIC: its dials leave from the listening socket, so a peer sees each node's own 127.0.X.Y. Over TCP the
    // kernel sends every loopback connection from 127.0.0.1, and the listener would see one network.
    let listen: Vec<String> = (1..=4)
        .flat_map(|net| (1..=4).map(move |host| format!("/ip4/127.0.{net}.{host}/udp/0/quic-v1")))
        .collect();
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let mut swarm = TestSwarm::start_on(&listen, &["--max-shards", "8"]);
    let network: BTreeMap<String, u8> = swarm
        .nodes
        .iter()
        .map(|n| (n.peer_id.clone(), network_of(&n.listen)))
        .collect();
    // Every node learns the four networks from the addresses it reaches the others on.
    for node in &swarm.nodes {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let status = json(&format!("{}/v1/node/status", node.http));
            if status["networks"]["known"] == 4 {
                assert_eq!(
                    status["networks"]["own"],
                    format!("127.0.{}.0/24", network_of(&node.listen))
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "networks not learned: {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // Let every node connect to the others it will place on, so it judges them by a connection's address.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let blobs: Vec<(String, Vec<u8>)> = (0..30u64)
        .map(|i| {
            let data = blob(1_000 + 997 * usize::try_from(i).unwrap(), i);
            let writer = &swarm.nodes[usize::try_from(i).unwrap() % 16];
            (put(writer, &data), data)
        })
        .collect();
    for (id, _) in &blobs {
        let status = json(&format!("{}/v1/blobs/{id}/status", swarm.nodes[0].http));
        assert_eq!(status["shards"], 8, "--max-shards caps n: {status}");
        let mut per_network: BTreeMap<u8, usize> = BTreeMap::new();
        for holder in status["holderList"].as_array().unwrap() {
            let peer = holder["peerId"].as_str().unwrap();
            *per_network.entry(network[peer]).or_default() += 1;
        }
        assert!(
            per_network.values().all(|&count| count <= 2),
            "blob {id}: slivers per /24 {per_network:?} (at most 2 with n = 8 over four /24s)"
        );
    }
    // Every node of 127.0.1.0/24 and 127.0.2.0/24 dies: four slivers of each blob are left, and k = 3.
    for i in 0..8 {
        swarm.kill(i);
    }
    for (i, (id, data)) in blobs.iter().enumerate() {
        let reader = &swarm.nodes[8 + i % 8];
        let got =
            get(reader, id).unwrap_or_else(|e| panic!("blob {id} after two /24s died: {e:?}"));
        assert!(got == *data, "blob {id} read back different bytes");
    }
}
