//! Sites with real processes: `floe site publish` stores a directory through one node, and another node serves
//! it by the manifest (`floe_node::site`, whose routing rules have unit tests): the home page, directories,
//! redirects, the not-found page, media types, headers from floe-site.json, validators, ranges, and clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn fetch(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    fetch_raw(url, headers)
}

#[test]
fn a_published_site_is_served_by_any_node() {
    let swarm = TestSwarm::start(3);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><link rel=stylesheet href=style.css><p>home",
    )
    .unwrap();
    std::fs::write(root.join("docs/index.html"), "<p>docs").unwrap();
    std::fs::write(root.join("style.css"), "p { color: teal }").unwrap();
    std::fs::write(root.join("404.html"), "<p>no such page").unwrap();
    std::fs::write(root.join("clip.webm"), blob(200_000, 4)).unwrap();
    std::fs::write(root.join(".git/HEAD"), "secret").unwrap();
    std::fs::write(
        root.join("floe-site.json"),
        r#"{"notFound": "/404.html",
            "redirects": {"/old": {"to": "/docs/", "status": 301}},
            "headers": {"/style.css": {"cache-control": "public, max-age=300"}}}"#,
    )
    .unwrap();
    let floe = env!("CARGO_BIN_EXE_floe");
    let published = std::process::Command::new(floe)
        .args([
            "site",
            "publish",
            root.to_str().unwrap(),
            "--gateway",
            &swarm.nodes[0].http,
        ])
        .output()
        .unwrap();
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let site = String::from_utf8(published.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(String::from_utf8_lossy(&published.stderr).contains("published 5 files"));
    let base = format!("{}/v1/sites/{site}", swarm.nodes[2].http);

    let (status, headers, body) = fetch(&base, &[]);
    assert_eq!(status, 301, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/v1/sites/{site}/").as_str())
    );
    let (status, headers, body) = fetch(&format!("{base}/"), &[]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("home"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(
        csp.contains("allow-scripts") && !csp.contains("allow-same-origin"),
        "{csp}"
    );
    let etag = header(&headers, "etag").unwrap().to_owned();
    let (status, _, _) = fetch(&format!("{base}/"), &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);

    let (status, headers, _) = fetch(&format!("{base}/docs"), &[]);
    assert_eq!(status, 301);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/v1/sites/{site}/docs/").as_str())
    );
    let (status, _, body) = fetch(&format!("{base}/docs/"), &[]);
    assert_eq!((status, body), (200, b"<p>docs".to_vec()));
    let (status, headers, _) = fetch(&format!("{base}/old"), &[]);
    assert_eq!(status, 301);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/v1/sites/{site}/docs/").as_str())
    );

    let (status, headers, _) = fetch(&format!("{base}/style.css"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=300")
    );
    // Revalidated, it keeps the site's caching (a 304 updates the cached copy's headers).
    let etag = header(&headers, "etag").unwrap().to_owned();
    let (status, headers, _) = fetch(&format!("{base}/style.css"), &[("If-None-Match", &etag)]);
    assert_eq!(status, 304);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=300")
    );
    let (status, headers, body) =
        fetch(&format!("{base}/clip.webm"), &[("Range", "bytes=100-199")]);
    assert_eq!(status, 206);
    assert_eq!(body.len(), 100);
    assert_eq!(header(&headers, "content-type"), Some("video/webm"));

    // Unknown pages get the site's not-found page with 404; what was not published is unknown.
    let (status, _, body) = fetch(&format!("{base}/nope.html"), &[]);
    assert_eq!((status, body), (404, b"<p>no such page".to_vec()));
    let (status, _, _) = fetch(&format!("{base}/.git/HEAD"), &[]);
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&format!("{base}/floe-site.json"), &[]);
    assert_eq!(status, 404);

    // On its own origin ({label}.localhost, here by the Host header): the same pages, unsandboxed, redirects
    // inside the origin, and nothing else of the gateway reachable.
    let label = floe_node::site::host_label(&site.parse().unwrap());
    let host = format!("{label}.localhost");
    let own = swarm.nodes[1].http.clone();
    let (status, headers, body) = fetch(&format!("{own}/"), &[("Host", &host)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("home"));
    assert!(header(&headers, "content-security-policy").is_none());
    let (status, headers, _) = fetch(&format!("{own}/docs"), &[("Host", &host)]);
    assert_eq!(status, 301);
    assert_eq!(header(&headers, "location"), Some("/docs/"));
    let (status, _, body) = fetch(&format!("{own}/v1/api"), &[("Host", &host)]);
    assert_eq!((status, body), (404, b"<p>no such page".to_vec()));

    // What is not a site says so.
    let plain = put(&swarm.nodes[0], b"not a manifest");
    let (status, _, body) = fetch(&format!("{}/v1/sites/{plain}/", swarm.nodes[1].http), &[]);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = fetch(&format!("{}/v1/sites/not-an-id/", swarm.nodes[1].http), &[]);
    assert_eq!(status, 400);
    // A blob larger than any manifest is refused without being read whole.
    let oversized = put(&swarm.nodes[0], &vec![b' '; (4 << 20) + 1]);
    let (status, _, body) = fetch(
        &format!("{}/v1/sites/{oversized}/", swarm.nodes[1].http),
        &[],
    );
    assert_eq!(status, 422);
    assert!(String::from_utf8_lossy(&body).contains("more than a manifest may hold"));

    // A broken floe-site.json is refused before anything is stored.
    std::fs::write(
        root.join("floe-site.json"),
        r#"{"notFound": "/missing.html"}"#,
    )
    .unwrap();
    let refused = std::process::Command::new(floe)
        .args([
            "site",
            "publish",
            root.to_str().unwrap(),
            "--gateway",
            &swarm.nodes[0].http,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("notFound"));
}
