//! Capacity with real processes: five `floe node`s with `--capacity 1MiB` filled until writes no longer fit.
//! The rules are `floe_protocol::room`'s (unit tests and a proptest there); this checks the wiring: that a full
//! node refuses with its room, that peers learn it from gossip, and that a write that cannot fit gets 507 before
//! anything is sent while one that fits still goes through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod common;
use common::*;

const CAPACITY: u64 = 1 << 20;

fn stored(node: &NodeProc) -> u64 {
    json(&format!("{}/v1/node/status", node.http))["bytesStored"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_full_swarm_refuses_what_does_not_fit_with_507_and_takes_what_does() {
    // Scans (and room announcements) every second.
    let swarm = TestSwarm::start_with(5, &["--capacity", "1MiB", "--repair-interval", "1s"]);
    let writer = &swarm.nodes[0];
    // n = 5, k = 2: a 300 kB blob puts about 150 kB on each node, so the sixth or seventh no longer fits.
    let mut written = Vec::new();
    let refusal = loop {
        let data = blob(300_000, written.len() as u64);
        let (status, body) = put_with(writer, &data, "");
        if status != 200 {
            break (status, body);
        }
        let id = body["newlyCreated"]["blobObject"]["blobId"]
            .as_str()
            .unwrap()
            .to_owned();
        written.push((id, data));
        assert!(written.len() < 10, "ten 300 kB blobs fit in 5 MiB at 2.5x");
        // Room announcements go out at the next scan: let them arrive, so the refusal comes before anything is
        // sent rather than from the holders.
        std::thread::sleep(Duration::from_secs(3));
    };
    let (status, body) = refusal;
    assert_eq!(status, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("room"), "{message}");
    assert!(
        written.len() >= 5,
        "only {} blobs fit: {message}",
        written.len()
    );
    eprintln!("{} blobs of 300 kB fit; the next: {message}", written.len());

    // Nothing of the refused blob was stored, and no node went over its capacity.
    let before: Vec<u64> = swarm.nodes.iter().map(stored).collect();
    let (status, _) = put_with(writer, &blob(300_000, 99), "");
    assert_eq!(status, 507);
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = swarm.nodes.iter().map(stored).collect();
    assert_eq!(before, after, "a refused write left slivers behind");
    for (node, bytes) in swarm.nodes.iter().zip(&after) {
        assert!(*bytes <= CAPACITY, "{} holds {bytes} bytes", node.peer_id);
    }
    // Peers learned each other's room from gossip, and from the holders' refusals if a write raced it.
    let status = json(&format!("{}/v1/node/status", writer.http));
    assert!(status["freeBytes"].as_u64().unwrap() < 150_000, "{status}");

    // A small blob still fits everywhere; every blob written reads back.
    let small = blob(10_000, 7);
    let (status, body) = put_with(writer, &small, "");
    assert_eq!(status, 200, "{body}");
    let small_id = body["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get(&swarm.nodes[3], &small_id).unwrap(), small);
    for (id, data) in &written {
        assert_eq!(&get(&swarm.nodes[4], id).unwrap(), data);
    }
}
