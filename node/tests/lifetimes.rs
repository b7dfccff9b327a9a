//! Blob lifetimes with real processes: four `floe node`s with two-second epochs. The rules are
//! `floe_protocol::lifetime`'s (unit tests and a proptest there) and the store's record merge (its unit tests);
//! this checks the wiring: `?epochs=` sets the end epoch the answers report, a blob is served until then and
//! answered 404 after, its holders drop its slivers a grace epoch later, and a second put extends a blob.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

mod common;
use common::*;

fn epoch(node: &NodeProc) -> u64 {
    json(&format!("{}/v1/node/status", node.http))["epoch"]
        .as_u64()
        .unwrap()
}

#[test]
fn blobs_live_until_their_end_epoch_then_go_and_a_second_put_extends_them() {
    let swarm = TestSwarm::start_with(
        4,
        &[
            "--epoch-duration",
            "2s",
            "--repair-interval",
            "1s",
            "--max-epochs",
            "100",
        ],
    );
    let writer = &swarm.nodes[0];
    let reader = &swarm.nodes[2];

    let short = blob(50_000, 1);
    let now = epoch(writer);
    let (status, body) = put_with(writer, &short, "epochs=1");
    assert_eq!(status, 200, "{body}");
    let object = &body["newlyCreated"]["blobObject"];
    let short_id = object["blobId"].as_str().unwrap().to_owned();
    let end = object["storage"]["endEpoch"].as_u64().unwrap();
    assert!(
        (now + 1..=now + 2).contains(&end),
        "end {end} at epoch {now}"
    );
    assert_eq!(object["storage"]["startEpoch"].as_u64(), Some(end - 1));
    assert_eq!(get(reader, &short_id).unwrap(), short);
    let status = json(&format!("{}/v1/blobs/{short_id}/status", reader.http));
    assert_eq!(status["endEpoch"].as_u64(), Some(end), "{status}");
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["status", &short_id, "--gateway", &reader.http])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("stored until the end of epoch {end}")),
        "{shown}"
    );

    // Stored for one epoch, then again for fifty: the second put extends it.
    let extended = blob(60_000, 2);
    let (_, body) = put_with(writer, &extended, "epochs=1");
    let extended_id = body["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = put_with(writer, &extended, "epochs=50");
    assert_eq!(status, 200, "{body}");
    let again = &body["alreadyCertified"];
    assert_eq!(
        again["blobId"].as_str(),
        Some(extended_id.as_str()),
        "{body}"
    );
    assert!(again["endEpoch"].as_u64().unwrap() >= end + 48, "{body}");
    // Asking for less than it has changes nothing.
    let (_, body) = put_with(writer, &extended, "epochs=2");
    assert_eq!(
        body["alreadyCertified"]["endEpoch"], again["endEpoch"],
        "{body}"
    );

    // Bad lifetimes get a 400 that says why.
    for (query, needle) in [
        ("epochs=0", "epochs must be"),
        ("epochs=101", "--max-epochs"),
    ] {
        let (status, body) = put_with(writer, &blob(10, 3), query);
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }

    // Past the end epoch the short blob is answered 404, saying it expired; a grace epoch later every holder
    // has dropped its slivers. The extended blob is still there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while epoch(reader) <= end {
        assert!(Instant::now() < deadline, "the epoch never passed {end}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, message) = get(reader, &short_id).unwrap_err();
    assert_eq!(code, 404, "{message}");
    assert!(message.contains("expired"), "{message}");
    assert!(message.contains(&format!("epoch {end}")), "{message}");
    wait_until(
        "every holder to drop the expired blob's slivers",
        Duration::from_secs(30),
        || swarm.total("floe_expired_slivers_dropped_total") >= 4,
    );
    assert_eq!(get(reader, &extended_id).unwrap(), extended);
    assert_eq!(get(&swarm.nodes[3], &extended_id).unwrap(), extended);
}
