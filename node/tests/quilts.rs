//! Quilts with real processes: three `floe node`s. The layout's rules are `floe_protocol::quilt`'s (unit tests
//! and proptests there); this checks Walrus' routes end to end: a multipart put answers a quilt and a patch ID
//! per file, every patch reads back from another node by ID and by identifier with its type, identifier and
//! tags, a large quilt is read by its head and the patch's range, and what is wrong gets a clear status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

mod common;
use common::*;

const BOUNDARY: &str = "floe-test-boundary-7d1e";

/// A part: name, optional content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, content_type, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n")
                .as_bytes(),
        );
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn put_quilt(node: &NodeProc, query: &str, body: &[u8], content_type: &str) -> (u16, Value) {
    let mut response = agent()
        .put(&format!("{}/v1/quilts?{query}", node.http))
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// GET `path` on `node` with `headers`: status, headers as (name, value), body.
fn fetch(
    node: &NodeProc,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    fetch_raw(&format!("{}{path}", node.http), headers)
}

#[test]
fn a_site_sized_quilt_stores_in_one_put_and_every_patch_reads_back() {
    let swarm = TestSwarm::start(3);
    let (writer, reader) = (&swarm.nodes[0], &swarm.nodes[2]);
    let html = b"<!doctype html><p>hello from a quilt</p>".to_vec();
    let png = blob(5_000, 1);
    let data = blob(300_000, 2);
    let body = multipart(&[
        ("index.html", Some("text/html; charset=utf-8"), &html),
        ("assets/logo.png", Some("image/png"), &png),
        ("data.bin", None, &data),
        ("_metadata", None, br#"[{"identifier":"data.bin","tags":{"creator":"floe","content-disposition":"attachment"}}]"#),
    ]);
    let (status, answer) = put_quilt(writer, "epochs=5", &body, &multipart_type());
    assert_eq!(status, 200, "{answer}");
    let quilt = answer["blobStoreResult"]["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = answer["storedQuiltBlobs"].as_array().unwrap();
    let names: Vec<&str> = stored
        .iter()
        .map(|p| p["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["assets/logo.png", "data.bin", "index.html"],
        "{answer}"
    );
    let id_of = |name: &str| {
        stored.iter().find(|p| p["identifier"] == name).unwrap()["quiltPatchId"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // By patch ID, from a node that did not write it: the bytes, the type, the identifier, the tags as headers.
    let logo = id_of("assets/logo.png");
    let (status, headers, bytes) =
        fetch(reader, &format!("/v1/blobs/by-quilt-patch-id/{logo}"), &[]);
    assert_eq!(status, 200);
    assert_eq!(bytes, png);
    assert_eq!(header(&headers, "content-type"), Some("image/png"));
    assert_eq!(
        header(&headers, "x-quilt-patch-identifier"),
        Some("assets/logo.png")
    );
    let etag = header(&headers, "etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{logo}\""));
    let (status, _, _) = fetch(
        reader,
        &format!("/v1/blobs/by-quilt-patch-id/{logo}"),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(status, 304);
    let (status, headers, bytes) = fetch(
        reader,
        &format!("/v1/blobs/by-quilt-patch-id/{logo}"),
        &[("Range", "bytes=10-19")],
    );
    assert_eq!(status, 206);
    assert_eq!(bytes, png[10..20]);
    assert_eq!(header(&headers, "content-range"), Some("bytes 10-19/5000"));

    // By identifier (a path with a slash is percent-encoded in one segment).
    let (status, headers, bytes) = fetch(
        reader,
        &format!("/v1/blobs/by-quilt-id/{quilt}/index.html"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(bytes, html);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let (status, headers, bytes) = fetch(
        &swarm.nodes[1],
        &format!("/v1/blobs/by-quilt-id/{quilt}/data.bin"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(bytes, data);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(header(&headers, "content-disposition"), Some("attachment"));
    let (status, _, bytes) = fetch(
        reader,
        &format!("/v1/blobs/by-quilt-id/{quilt}/assets%2Flogo.png"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(bytes, png);

    // The list, as Walrus gives it.
    let (status, _, list) = fetch(reader, &format!("/v1/quilts/{quilt}/patches"), &[]);
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&list).unwrap();
    let data_entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == "data.bin")
        .unwrap();
    assert_eq!(data_entry["patch_id"].as_str().unwrap(), id_of("data.bin"));
    assert_eq!(data_entry["tags"]["creator"], "floe");

    // What is wrong gets a status and a reason.
    let (status, _, body) = fetch(
        reader,
        &format!("/v1/blobs/by-quilt-id/{quilt}/nope.txt"),
        &[],
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = fetch(reader, "/v1/blobs/by-quilt-patch-id/not-a-patch-id", &[]);
    assert_eq!(status, 400);
    let plain = put(writer, b"just a blob, not a quilt");
    let (status, _, body) = fetch(reader, &format!("/v1/quilts/{plain}/patches"), &[]);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not a quilt"));
    // A patch ID of this quilt with a range no patch has.
    let mut wrong = logo.clone().into_bytes();
    wrong[50] = if wrong[50] == b'A' { b'B' } else { b'A' };
    let (status, _, _) = fetch(
        reader,
        &format!(
            "/v1/blobs/by-quilt-patch-id/{}",
            String::from_utf8(wrong).unwrap()
        ),
        &[],
    );
    assert!(status == 404 || status == 400, "{status}");
    for (parts, needle) in [
        (
            vec![("a", None, &b"1"[..]), ("a", None, &b"2"[..])],
            "twice",
        ),
        (vec![("_secret", None, &b"1"[..])], "reserved"),
        (
            vec![
                ("ok", None, &b"1"[..]),
                ("_metadata", None, &b"[{\"identifier\":\"missing\"}]"[..]),
            ],
            "not a part",
        ),
        (vec![("bad ", None, &b"1"[..])], "whitespace"),
    ] {
        let body = multipart(&parts);
        let (status, answer) = put_quilt(writer, "", &body, &multipart_type());
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(needle), "{needle}: {answer}");
    }
    let (status, answer) = put_quilt(writer, "", b"plain bytes", "application/octet-stream");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("multipart"), "{answer}");
    let (status, answer) = put_quilt(
        writer,
        "quilt_version=v2",
        &multipart(&[("a", None, b"1")]),
        &multipart_type(),
    );
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = put_quilt(writer, "", &multipart(&[]), &multipart_type());
    assert_eq!(status, 400, "{answer}");
}

#[test]
fn a_large_quilt_is_read_by_its_head_and_the_patch_range() {
    // A cache large enough for one of the quilt's two segments (about 8.5 MiB each; an entry may take an eighth).
    let swarm = TestSwarm::start_with(3, &["--cache-size", "128MiB"]);
    let big = blob(17 << 20, 3);
    let small = b"tiny".to_vec();
    let body = multipart(&[
        ("big.bin", None, &big),
        ("small.txt", Some("text/plain"), &small),
    ]);
    let (status, answer) = put_quilt(&swarm.nodes[0], "", &body, &multipart_type());
    assert_eq!(status, 200, "{answer}");
    let quilt = answer["blobStoreResult"]["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, headers, bytes) = fetch(
        &swarm.nodes[1],
        &format!("/v1/blobs/by-quilt-id/{quilt}/small.txt"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(bytes, small);
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    // The small patch lies in the quilt's second segment: asked for again, that segment comes into the node's
    // cache, and the third read takes it from there.
    for _ in 0..2 {
        let (_, _, again) = fetch(
            &swarm.nodes[1],
            &format!("/v1/blobs/by-quilt-id/{quilt}/small.txt"),
            &[],
        );
        assert_eq!(again, small);
    }
    assert!(
        metric(&swarm.nodes[1], "floe_cache_segment_hits_total") >= 1,
        "misses {} cache bytes {}",
        metric(&swarm.nodes[1], "floe_cache_segment_misses_total"),
        metric(&swarm.nodes[1], "floe_cache_bytes")
    );
    assert!(metric(&swarm.nodes[1], "floe_cache_bytes_served_total") >= small.len() as u64);
    let (status, _, bytes) = fetch(
        &swarm.nodes[2],
        &format!("/v1/blobs/by-quilt-id/{quilt}/big.bin"),
        &[],
    );
    assert_eq!(status, 200);
    assert!(bytes == big, "the big patch differs");
}
