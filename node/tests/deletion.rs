//! Deletion with real processes: five `floe node`s scanning every second. The rules are
//! `floe_protocol::deletion`'s (unit tests and proptests there); this checks the wiring: a deletable put answers a
//! token, `DELETE /v1/blobs/{id}` takes it (and refuses what is wrong with a clear status), the deletion reaches
//! every holder, one that was down included, two writers each keep their copy, permanent blobs stay, and
//! `floe put` / `floe delete` carry the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

fn delete(node: &NodeProc, id: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = agent().delete(&format!("{}/v1/blobs/{id}", node.http));
    if let Some(token) = token {
        request = request.header("X-Floe-Deletion-Token", token);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    (status, body)
}

/// The blob ID and deletion token of a put answer (either shape).
fn id_and_token(body: &Value) -> (String, Option<String>) {
    let shape = if body["newlyCreated"].is_object() {
        &body["newlyCreated"]
    } else {
        &body["alreadyCertified"]
    };
    let id = shape["blobObject"]["blobId"]
        .as_str()
        .or_else(|| shape["blobId"].as_str())
        .unwrap()
        .to_owned();
    (id, shape["deletionToken"].as_str().map(str::to_owned))
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

const OTHER_TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn a_token_deletes_a_blob_everywhere_and_a_holder_that_was_down_catches_up() {
    let mut swarm = TestSwarm::start_with(5, &["--repair-interval", "1s"]);
    let data = blob(200_000, 1);
    let (status, body) = put_with(&swarm.nodes[0], &data, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["newlyCreated"]["blobObject"]["deletable"], true,
        "{body}"
    );
    let (id, token) = id_and_token(&body);
    let token = token.expect("a deletable put answers a token");
    assert_eq!(token.len(), 64);
    let status = json(&format!("{}/v1/blobs/{id}/status", swarm.nodes[2].http));
    assert_eq!(status["deletion"]["claims"], 1, "{status}");

    // What is wrong gets a status and a reason, and deletes nothing.
    let reader = &swarm.nodes[1];
    for (token, code, needle) in [
        (None, 400, "X-Floe-Deletion-Token"),
        (Some("nothex"), 400, "64 hex digits"),
        (Some(OTHER_TOKEN), 403, "does not match"),
    ] {
        let (status, body) = delete(reader, &id, token);
        assert_eq!(status, code, "{body}");
        assert!(message(&body).contains(needle), "{body}");
    }
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, body) = delete(reader, unknown, Some(&token));
    assert_eq!(status, 404, "{body}");
    let (status, body) = delete(reader, "not-an-id", Some(&token));
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(&swarm.nodes[3], &id).unwrap(), data);

    // One holder is down when the blob is deleted, through a node that did not write it.
    swarm.kill(4);
    let (status, body) = delete(&swarm.nodes[1], &id, Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true, "{body}");
    assert_eq!(body["claimsLeft"], 0, "{body}");
    assert!(body["holdersReached"].as_u64().unwrap() >= 3, "{body}");
    for node in [0, 2, 3] {
        let (code, text) = get(&swarm.nodes[node], &id).unwrap_err();
        assert_eq!(code, 404, "{text}");
        assert!(text.contains("deleted"), "{text}");
    }
    wait_until(
        "the live holders to drop the deleted blob's slivers",
        Duration::from_secs(20),
        || swarm.total("floe_deleted_slivers_dropped_total") >= 4,
    );
    assert!(swarm.total("floe_deleted_bytes_reclaimed_total") > 0);
    // Deleting again is fine.
    let (status, body) = delete(&swarm.nodes[2], &id, Some(&token));
    assert_eq!(status, 200, "{body}");

    // The holder that was down hears of it from the others once it is back, and drops its slivers. It stays down
    // longer than gossipsub replays recent messages, so it is the tombstones that tell it.
    std::thread::sleep(Duration::from_secs(7));
    let passed_before = swarm.total("floe_deletions_passed_on_total");
    swarm.restart(4);
    swarm.wait_formed(5);
    wait_until(
        "the returning holder to drop its slivers of the deleted blob",
        Duration::from_secs(30),
        || metric(&swarm.nodes[4], "floe_deleted_slivers_dropped_total") >= 1,
    );
    let (code, text) = get(&swarm.nodes[4], &id).unwrap_err();
    assert_eq!(code, 404, "{text}");
    assert!(swarm.total("floe_deletions_passed_on_total") > passed_before);

    // Written again, it has a new claim and is served again.
    let (status, body) = put_with(&swarm.nodes[2], &data, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&swarm.nodes[3], &id).unwrap(), data);
}

#[test]
fn two_writers_each_keep_their_copy_and_permanent_writes_stay() {
    let swarm = TestSwarm::start_with(4, &["--repair-interval", "1s"]);
    let shared = blob(80_000, 2);
    let (_, first) = put_with(&swarm.nodes[0], &shared, "");
    let (_, second) = put_with(&swarm.nodes[1], &shared, "");
    let (id, token_a) = id_and_token(&first);
    let (id_b, token_b) = id_and_token(&second);
    assert_eq!(id, id_b);
    let (token_a, token_b) = (token_a.unwrap(), token_b.unwrap());
    assert_ne!(token_a, token_b);

    let (status, body) = delete(&swarm.nodes[2], &id, Some(&token_a));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], false, "{body}");
    assert_eq!(body["claimsLeft"], 1, "{body}");
    assert_eq!(get(&swarm.nodes[3], &id).unwrap(), shared);
    let (_, body) = delete(&swarm.nodes[2], &id, Some(&token_b));
    assert_eq!(body["deleted"], true, "{body}");
    let (code, text) = get(&swarm.nodes[3], &id).unwrap_err();
    assert_eq!(code, 404, "{text}");

    // A permanent blob has no token, and no token deletes it.
    let kept = blob(30_000, 3);
    let (status, body) = put_with(&swarm.nodes[0], &kept, "permanent=true");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["newlyCreated"]["blobObject"]["deletable"], false,
        "{body}"
    );
    let (kept_id, none) = id_and_token(&body);
    assert!(none.is_none(), "{body}");
    let (status, body) = delete(&swarm.nodes[1], &kept_id, Some(OTHER_TOKEN));
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("permanent"), "{body}");

    // A permanent write beside a deletable one: deleting releases the claim, the blob stays until the
    // permanent write's end.
    let both = blob(40_000, 4);
    let (_, body) = put_with(&swarm.nodes[0], &both, "permanent=true&epochs=5");
    let end = body["newlyCreated"]["blobObject"]["storage"]["endEpoch"]
        .as_u64()
        .unwrap();
    let (_, body) = put_with(&swarm.nodes[1], &both, "epochs=20");
    let (both_id, token) = id_and_token(&body);
    let (status, body) = delete(&swarm.nodes[2], &both_id, token.as_deref());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], false, "{body}");
    assert_eq!(body["keptUntilEpoch"].as_u64(), Some(end), "{body}");
    assert_eq!(get(&swarm.nodes[3], &both_id).unwrap(), both);
    let status = json(&format!(
        "{}/v1/blobs/{both_id}/status",
        swarm.nodes[3].http
    ));
    assert_eq!(status["endEpoch"].as_u64(), Some(end), "{status}");

    // Both parameters at once cannot be honoured.
    let (status, body) = put_with(&swarm.nodes[0], &both, "permanent=true&deletable=true");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn floe_put_prints_the_token_and_floe_delete_takes_it() {
    let swarm = TestSwarm::start_with(3, &["--repair-interval", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.bin");
    std::fs::write(&file, blob(20_000, 5)).unwrap();
    let floe = env!("CARGO_BIN_EXE_floe");
    let gateway = &swarm.nodes[0].http;
    let put = std::process::Command::new(floe)
        .args(["put", file.to_str().unwrap(), "--gateway", gateway])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let id = String::from_utf8(put.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(put.stderr).unwrap();
    let token = stderr
        .lines()
        .find_map(|l| l.strip_prefix("deletion token: "))
        .unwrap_or_else(|| panic!("no token in {stderr:?}"))
        .trim()
        .to_owned();

    let bad = std::process::Command::new(floe)
        .args(["delete", &id, "--token", "xyz", "--gateway", gateway])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64 hex digits"));
    let wrong = std::process::Command::new(floe)
        .args(["delete", &id, "--token", OTHER_TOKEN, "--gateway", gateway])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not match"));

    let deleted = std::process::Command::new(floe)
        .args(["delete", &id, "--gateway", &swarm.nodes[1].http])
        .env("FLOE_DELETION_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("deleted"));
    let (code, _) = get(&swarm.nodes[2], &id).unwrap_err();
    assert_eq!(code, 404);

    let permanent = std::process::Command::new(floe)
        .args([
            "put",
            file.to_str().unwrap(),
            "--permanent",
            "--gateway",
            gateway,
        ])
        .output()
        .unwrap();
    assert!(permanent.status.success());
    assert!(!String::from_utf8_lossy(&permanent.stderr).contains("deletion token"));
}
