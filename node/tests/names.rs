//! Site names with real processes: `floe site publish --name-key` and `floe site update` move a name that any
//! node serves, on the gateway's paths and on the name's own origin; only the key's owner moves it, an old record
//! never rolls it back, and the record outlives the nodes that first kept it. The rules themselves have unit
//! tests and proptests in `floe_protocol::name`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::{Value, json};

fn floe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .output()
        .unwrap()
}

fn floe_json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = floe(&all);
    assert!(
        out.status.success(),
        "floe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn put_record(node: &NodeProc, name: &str, record: &Value) -> (u16, Vec<(String, String)>, Value) {
    let url = format!("{}/v1/names/{name}", node.http);
    let mut response = agent()
        .put(&url)
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(record).unwrap().as_slice())
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap();
    (
        status,
        headers,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_name_follows_the_latest_version_and_only_its_owner_moves_it() {
    let swarm = TestSwarm::start(5);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<p>version one").unwrap();
    let key = dir.path().join("site.key");
    let key = key.to_str().unwrap();
    let site_dir = site.to_str().unwrap();

    // A missing key is refused by `update` before anything is uploaded.
    let out = floe(&[
        "site",
        "update",
        site_dir,
        "--name-key",
        key,
        "--gateway",
        &swarm.nodes[0].http,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("creates one"));
    assert!(!std::path::Path::new(key).exists());

    let first = floe_json(&[
        "site",
        "publish",
        site_dir,
        "--name-key",
        key,
        "--gateway",
        &swarm.nodes[0].http,
    ]);
    let name = first["name"]["name"].as_str().unwrap().to_owned();
    let v1 = first["siteId"].as_str().unwrap().to_owned();
    assert_eq!(first["name"]["sequence"], 1);
    assert_eq!(first["name"]["siteId"], v1.as_str());
    assert_eq!(first["name"]["keptBy"], 5, "{first}");
    assert!(name.starts_with('n') && name.len() == 53);

    // Any node serves the site by name, revalidated on each use.
    let (status, headers, body) =
        fetch_raw(&format!("{}/v1/sites/{name}/", swarm.nodes[3].http), &[]);
    assert_eq!((status, body), (200, b"<p>version one".to_vec()));
    assert_eq!(header(&headers, "cache-control"), Some("public, no-cache"));
    let old_etag = header(&headers, "etag").unwrap().to_owned();
    let (status, headers, _) = fetch_raw(
        &format!("{}/v1/sites/{name}/", swarm.nodes[3].http),
        &[("If-None-Match", &old_etag)],
    );
    assert_eq!(status, 304);
    // A 304 carries the caching of the 200: were it immutable, the browser would keep the old version for good.
    assert_eq!(header(&headers, "cache-control"), Some("public, no-cache"));
    let port = swarm.nodes[2].http.rsplit(':').next().unwrap().to_owned();
    let (status, _, body) = fetch_raw(
        &format!("{}/", swarm.nodes[2].http),
        &[("Host", &format!("{name}.localhost:{port}"))],
    );
    assert_eq!((status, body), (200, b"<p>version one".to_vec()));

    // A new version moves the name; the old site ID still serves the old version.
    std::fs::write(site.join("index.html"), "<p>version two").unwrap();
    let second = floe_json(&[
        "site",
        "update",
        site_dir,
        "--name-key",
        key,
        "--gateway",
        &swarm.nodes[1].http,
    ]);
    let v2 = second["siteId"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    assert_eq!(second["name"]["sequence"], 2);
    assert_eq!(second["name"]["name"], name.as_str());
    // A node that never resolved the name serves the new version; one that did asks again after a lookup.
    let (status, _, body) = fetch_raw(
        &format!("{}/v1/sites/{name}/", swarm.nodes[4].http),
        &[("If-None-Match", &old_etag)],
    );
    assert_eq!((status, body), (200, b"<p>version two".to_vec()));
    let resolved = json(&format!("{}/v1/names/{name}", swarm.nodes[3].http));
    assert_eq!(resolved["siteId"], v2.as_str());
    assert_eq!(resolved["live"], true);
    let (_, _, body) = fetch_raw(&format!("{}/v1/sites/{name}/", swarm.nodes[3].http), &[]);
    assert_eq!(body, b"<p>version two");
    let (_, _, body) = fetch_raw(&format!("{}/v1/sites/{v1}/", swarm.nodes[3].http), &[]);
    assert_eq!(body, b"<p>version one");
    let out = floe(&["site", "resolve", &name, "--gateway", &swarm.nodes[2].http]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v2);

    // Only the owner moves it: a record changed by anyone else is refused, and a replayed old one never rolls
    // the name back.
    let current = &second["name"];
    let record = |sequence: u64, site: &str, signature: &str| {
        json!({"name": name, "sequence": sequence, "siteId": site, "endEpoch": current["endEpoch"],
               "signature": signature})
    };
    let signature = current["signature"].as_str().unwrap();
    let (status, _, body) = put_record(&swarm.nodes[2], &name, &record(3, &v1, signature));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    let replay = record(1, &v1, first["name"]["signature"].as_str().unwrap());
    let (status, headers, body) = put_record(&swarm.nodes[2], &name, &replay);
    assert_eq!(status, 409, "{body}");
    assert_eq!(header(&headers, "x-floe-name-sequence"), Some("2"));
    assert_eq!(
        json(&format!("{}/v1/names/{name}", swarm.nodes[0].http))["siteId"],
        v2.as_str()
    );

    // Malformed requests get clear errors.
    let (status, _, body) = put_record(&swarm.nodes[2], &name, &json!({"name": name}));
    assert_eq!(status, 400, "{body}");
    let other = format!("n{}", "a".repeat(52));
    let (status, _, body) = put_record(&swarm.nodes[2], &other, &record(3, &v2, signature));
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not of"),
        "{body}"
    );
    let (status, _, body) = fetch_raw(&format!("{}/v1/names/nope", swarm.nodes[2].http), &[]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = fetch_raw(&format!("{}/v1/names/{other}", swarm.nodes[2].http), &[]);
    assert_eq!(status, 404);
    let (status, _, _) = fetch_raw(&format!("{}/v1/sites/{other}/", swarm.nodes[2].http), &[]);
    assert_eq!(status, 404);
}

#[test]
fn a_name_outlives_the_nodes_that_first_kept_it() {
    let mut swarm = TestSwarm::start_with(3, &["--repair-interval", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<p>kept").unwrap();
    let key = dir.path().join("site.key");
    let published = floe_json(&[
        "site",
        "publish",
        site.to_str().unwrap(),
        "--name-key",
        key.to_str().unwrap(),
        "--gateway",
        &swarm.nodes[0].http,
    ]);
    let name = published["name"]["name"].as_str().unwrap().to_owned();
    let site_id = published["siteId"].as_str().unwrap().to_owned();
    let newcomers: Vec<usize> = (0..3).map(|_| swarm.add_node()).collect();
    swarm.wait_formed(6);
    // The nodes that kept the record pass it on to the newcomers in the name's neighbourhood at their scans.
    wait_until(
        "newcomers keep the name",
        std::time::Duration::from_secs(60),
        || {
            newcomers
                .iter()
                .all(|&i| metric(&swarm.nodes[i], "floe_names_kept_total") >= 1)
        },
    );
    for i in 0..3 {
        swarm.kill(i);
    }
    for &i in &newcomers {
        let resolved = json(&format!("{}/v1/names/{name}", swarm.nodes[i].http));
        assert_eq!(resolved["siteId"], site_id.as_str(), "node {i}: {resolved}");
        assert_eq!(resolved["sequence"], 1);
    }
}
