//! The gateway and the CLI as browsers, dApps and scripts use them, against real node processes: piped puts,
//! stdout gets, `--json` errors, CORS, conditional requests, content types, Walrus answers and errors, the
//! OpenAPI document, and a node under idle and trickling connections.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

fn floe(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // Written from a thread: a pipe holds 64 KiB, and floe reads while it uploads.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    child.wait_with_output().unwrap()
}

/// Runs a bash script with `floe` on the PATH's front, for FIFOs and process substitution.
fn bash(script: &str) -> Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_floe"));
    Command::new("bash")
        .args(["-c", script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "floe failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn fetch(gateway: &str, id: &str) -> Vec<u8> {
    let output = floe(&["get", id, "-o", "-", "--gateway", gateway], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn piped_fifo_and_stdin_puts_are_byte_identical_and_errors_are_clear() {
    let swarm = TestSwarm::start(4);
    // Without a scheme, as users type it.
    let put_gw = swarm.nodes[0].http.trim_start_matches("http://").to_owned();
    let get_gw = swarm.nodes[3].http.clone();
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [0usize, 1, 3_000_000].into_iter().enumerate() {
        let data = blob(len, 40 + i as u64);
        let file = dir.path().join(format!("data-{len}"));
        std::fs::write(&file, &data).unwrap();
        // `-`, `/dev/stdin`, a FIFO and process substitution: none has a length up front.
        let by_dash = ok(floe(&["put", "-", "--gateway", &put_gw], Some(&data)));
        let by_dev = ok(floe(
            &["put", "/dev/stdin", "--gateway", &put_gw],
            Some(&data),
        ));
        let fifo = dir.path().join(format!("fifo-{len}"));
        let by_fifo = ok(bash(&format!(
            "mkfifo {fifo} && (cat {file} > {fifo} &) && floe put {fifo} --gateway {put_gw}",
            fifo = fifo.display(),
            file = file.display()
        )));
        let by_subst = ok(bash(&format!(
            "floe put <(cat {}) --gateway {put_gw}",
            file.display()
        )));
        let by_file = ok(floe(
            &["put", file.to_str().unwrap(), "--gateway", &put_gw],
            None,
        ));
        for id in [&by_dash, &by_dev, &by_fifo, &by_subst] {
            assert_eq!(id, &by_file, "{len} bytes stored as another blob");
        }
        assert_eq!(fetch(&get_gw, &by_file), data, "{len} bytes");
        // Into a file, and a failed download leaves none behind.
        let copy = dir.path().join(format!("copy-{len}"));
        ok(floe(
            &[
                "get",
                &by_file,
                "-o",
                copy.to_str().unwrap(),
                "--gateway",
                &get_gw,
            ],
            None,
        ));
        assert_eq!(std::fs::read(&copy).unwrap(), data);
    }
    // A FIFO as the target is written, never replaced by a file.
    let target = dir.path().join("target-fifo");
    let out = bash(&format!(
        "mkfifo {t} && (cat {t} > {t}.read &) && floe get {id} -o {t} --gateway {get_gw} && sleep 0.5 && \
         test -p {t} && cmp {t}.read {f}",
        t = target.display(),
        id = &ok(floe(
            &["put", "-", "--gateway", &put_gw],
            Some(&blob(5000, 3))
        )),
        f = {
            let f = dir.path().join("fifo-expected");
            std::fs::write(&f, blob(5000, 3)).unwrap();
            f.display().to_string()
        },
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A file whose size says 0 but has content (/proc) is read to its end, not stored empty.
    let answer: Value = serde_json::from_str(&ok(floe(
        &["put", "/proc/self/status", "--json", "--gateway", &put_gw],
        None,
    )))
    .unwrap();
    assert!(
        answer["newlyCreated"]["blobObject"]["size"]
            .as_u64()
            .unwrap()
            > 100,
        "{answer}"
    );
    // A body over --max-body (64 MiB in these tests) gets the node's answer, not a broken pipe.
    let big = dir.path().join("too-big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let out = floe(&["put", big.to_str().unwrap(), "--gateway", &put_gw], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than this gateway accepts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&big).unwrap();
    // A directory is named as such, not blamed on the node.
    let out = floe(
        &["put", dir.path().to_str().unwrap(), "--gateway", &put_gw],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a directory, not a file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    let id = ok(floe(&["put", "-", "--gateway", &put_gw], Some(b"x")));
    let out = floe(
        &[
            "get",
            &id,
            "-o",
            dir.path().to_str().unwrap(),
            "--gateway",
            &get_gw,
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before);
    // --json: errors as {"error":…} on stdout, from the gateway or from here, with a non-zero exit.
    let missing = "A".repeat(43);
    let out = floe(
        &[
            "get",
            &missing,
            "-o",
            "/dev/null",
            "--json",
            "--gateway",
            &get_gw,
        ],
        None,
    );
    assert!(!out.status.success());
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["status"], "NOT_FOUND", "{error}");
    let out = floe(&["put", "/nonexistent", "--json"], None);
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "local", "{error}");
    let out = floe(&["status", "bad", "--json"], None);
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad blob ID")
    );
    let out = floe(&["put", "-", "--json", "--gateway", "ftp://x"], Some(b""));
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--gateway")
    );
    // A put's JSON is the Walrus answer; a get's is a summary.
    let answer: Value = serde_json::from_str(&ok(floe(
        &[
            "put",
            "-",
            "--json",
            "--content-type",
            "text/plain",
            "--gateway",
            &put_gw,
        ],
        Some(b"json please"),
    )))
    .unwrap();
    let id = client_blob_id(&answer);
    let copy = dir.path().join("json-copy");
    let summary: Value = serde_json::from_str(&ok(floe(
        &[
            "get",
            &id,
            "-o",
            copy.to_str().unwrap(),
            "--json",
            "--gateway",
            &get_gw,
        ],
        None,
    )))
    .unwrap();
    assert_eq!(summary["bytes"], 11);
}

/// A download that breaks midway leaves no file (and no temporary one) behind, and is blamed on the connection.
#[test]
fn a_broken_download_leaves_nothing_behind() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        // Promises 100,000 bytes, sends 10, hangs up.
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("blob");
    let id = "A".repeat(43);
    let out = floe(
        &[
            "get",
            &id,
            "-o",
            target.to_str().unwrap(),
            "--json",
            "--gateway",
            &addr.to_string(),
        ],
        None,
    );
    server.join().unwrap();
    assert!(!out.status.success());
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "connection", "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn client_blob_id(answer: &Value) -> String {
    answer["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .or_else(|| answer["alreadyCertified"]["blobId"].as_str())
        .unwrap()
        .to_owned()
}

/// One HTTP request on a raw socket; returns the status, the headers (lower-case names) and the body.
fn raw(addr: &str, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

/// Reads an HTTP/1.1 answer to its end; returns the status, the headers (lower-case names) and the body.
fn read_answer(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let body = bytes.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn assert_envelope(status: u16, body: &[u8], expected: u16, what: &str) {
    assert_eq!(
        status,
        expected,
        "{what}: {}",
        String::from_utf8_lossy(body)
    );
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("{what}: not JSON: {}", String::from_utf8_lossy(body)));
    assert_eq!(value["error"]["code"], expected, "{what}: {value}");
    assert!(value["error"]["status"].is_string(), "{what}: {value}");
    assert!(value["error"]["message"].is_string(), "{what}: {value}");
    assert!(value["error"]["details"].is_array(), "{what}: {value}");
}

#[test]
fn browsers_get_cors_conditionals_content_types_and_walrus_answers() {
    let swarm = TestSwarm::start_with(4, &["--cors-write-origins", "http://app.example"]);
    let (writer, reader) = (&swarm.nodes[0], &swarm.nodes[3]);
    let agent = agent();
    let addr = reader.http.trim_start_matches("http://").to_owned();

    // A blob stored with a type, read back from another node with it.
    let html = b"<!doctype html><p>hello from floe</p>";
    let mut response = agent
        .put(&format!("{}/v1/blobs?epochs=3&deletable=true", writer.http))
        .header("Content-Type", "text/html; charset=utf-8")
        .send(&html[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let object = &answer["newlyCreated"]["blobObject"];
    let id = object["blobId"].as_str().unwrap().to_owned();
    for field in ["registeredEpoch", "certifiedEpoch", "size"] {
        assert!(object[field].is_u64(), "{field}: {answer}");
    }
    assert!(object["id"].as_str().unwrap().starts_with("0x"));
    // Deletable (the default, and asked for): the answer carries the writer's token.
    assert_eq!(object["deletable"], true);
    assert_eq!(
        answer["newlyCreated"]["deletionToken"]
            .as_str()
            .map(str::len),
        Some(64),
        "{answer}"
    );
    // Stored for three epochs from now.
    let registered = object["registeredEpoch"].as_u64().unwrap();
    assert_eq!(
        object["storage"]["endEpoch"].as_u64(),
        Some(registered + 3),
        "{answer}"
    );
    assert_eq!(object["storage"]["startEpoch"], object["registeredEpoch"]);
    assert!(object["storage"]["storageSize"].as_u64().unwrap() > html.len() as u64);
    assert!(
        answer["newlyCreated"]["resourceOperation"]["registerFromScratch"]["encodedLength"]
            .is_u64()
    );
    assert_eq!(answer["newlyCreated"]["cost"], 0);
    let mut again = agent
        .put(&format!("{}/v1/blobs", writer.http))
        .send(&html[..])
        .unwrap();
    let again: Value = serde_json::from_str(&again.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(again["alreadyCertified"]["blobId"], id.as_str(), "{again}");
    // Again without ?epochs=: the default lifetime, 30 epochs, is longer, so the put extends the blob.
    assert_eq!(
        again["alreadyCertified"]["endEpoch"].as_u64(),
        Some(registered + 30),
        "{again}"
    );

    let get = |headers: &[(&str, &str)]| {
        let mut request =
            format!("GET /v1/blobs/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        raw(&addr, request.as_bytes())
    };
    let (status, headers, body) = get(&[("Origin", "http://page.example")]);
    assert_eq!(status, 200);
    assert_eq!(body, html);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(
        header(&headers, "access-control-expose-headers")
            .unwrap()
            .contains("ETag")
    );
    assert!(
        header(&headers, "content-security-policy")
            .unwrap()
            .starts_with("sandbox")
    );
    let etag = header(&headers, "etag").unwrap().to_owned();
    assert_eq!(etag, format!("\"{id}\""));

    // Conditional requests (RFC 9110).
    let (status, headers, body) = get(&[("If-None-Match", &etag)]);
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    assert_eq!(get(&[("If-None-Match", "\"other\"")]).0, 200);
    let (status, _, body) = get(&[("If-Match", "\"other\"")]);
    assert_envelope(status, &body, 412, "If-Match");
    assert_eq!(get(&[("If-Match", &etag)]).0, 200);
    let (status, headers, body) = get(&[("Range", "bytes=2-5"), ("If-Range", &etag)]);
    assert_eq!((status, body.as_slice()), (206, &html[2..6]));
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 2-5/{}", html.len()).as_str())
    );
    let (status, _, body) = get(&[("Range", "bytes=2-5"), ("If-Range", "\"stale\"")]);
    assert_eq!((status, body.as_slice()), (200, &html[..]));
    let (status, _, body) = get(&[("Range", "bytes=0-")]);
    assert_eq!((status, body.as_slice()), (206, &html[..]));

    // Preflights: reads from anyone, writes only from the listed origin.
    let preflight = |origin: &str, method: &str| {
        raw(
            &addr,
            format!(
                "OPTIONS /v1/blobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let (status, headers, _) = preflight("http://page.example", "GET");
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let (status, headers, _) = preflight("http://app.example", "PUT");
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(preflight("http://evil.example", "PUT").0, 403);

    // ?content_type= wins over the header; the byte-range route and object IDs.
    let mut response = agent
        .put(&format!(
            "{}/v1/blobs?content_type=application/json",
            writer.http
        ))
        .header("Content-Type", "text/plain")
        .send(&b"{\"a\":1}"[..])
        .unwrap();
    let json_id = client_blob_id(
        &serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap(),
    );
    let mut response = agent
        .get(&format!(
            "{}/v1/blobs/{json_id}/byte-range?start=1&length=4",
            reader.http
        ))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.headers()["etag"],
        format!("\"{json_id}-1-4\"").as_str()
    );
    assert_eq!(response.body_mut().read_to_string().unwrap(), "\"a\":");
    let object = object["id"].as_str().unwrap();
    let mut response = agent
        .get(&format!("{}/v1/blobs/by-object-id/{object}", reader.http))
        .call()
        .unwrap();
    assert_eq!(response.body_mut().read_to_vec().unwrap(), html);
    let status = json(&format!("{}/v1/blobs/{id}/status", reader.http));
    assert_eq!(status["contentType"], "text/html; charset=utf-8");
    assert_eq!(
        status["holderList"].as_array().unwrap().len(),
        status["shards"].as_u64().unwrap() as usize
    );

    // Every error is the envelope: bad queries, bad IDs, unknown routes, methods, sizes, encodings.
    let long_uri = format!(
        "GET /v1/blobs/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "A".repeat(10_000)
    );
    let big_header = format!(
        "GET /v1/blobs/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let cases: Vec<(String, u16)> = vec![
        ("PUT /v1/blobs?epochs=notanumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".into(), 400),
        ("PUT /v1/blobs?send_object_to=0x1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".into(), 400),
        ("PUT /v1/blobs?deletable=maybe HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".into(), 400),
        ("PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: nonsense\r\nContent-Length: 1\r\n\r\nx".into(), 400),
        ("GET /v1/blobs/%00abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 400),
        ("GET /v1/blobs/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 400),
        (format!("GET /v1/blobs/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "A".repeat(43)), 404),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 404),
        ("DELETE /v1/blobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 405),
        ("POST /v1/node/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".into(), 405),
        (format!("GET /v1/blobs/{id}/byte-range?start=x&length=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 400),
        (format!("GET /v1/blobs/{id}/byte-range?start=0&length=999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 416),
        ("GET /v1/blobs/by-object-id/0x12 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 404),
        (format!("GET /v1/blobs/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: bytes=999-\r\n\r\n"), 416),
        (long_uri, 414),
        (big_header, 431),
    ];
    for (request, expected) in cases {
        let (status, _, body) = raw(&addr, request.as_bytes());
        assert_envelope(
            status,
            &body,
            expected,
            request.lines().next().unwrap_or_default(),
        );
    }
    // A browser on another origin may not write here.
    let mut response = agent
        .put(&format!("{}/v1/blobs", reader.http))
        .header("Origin", "http://evil.example")
        .send(&b"nope"[..])
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("--cors-write-origins")
    );

    // The OpenAPI document, the status page, latency histograms and the node's identity.
    let api = json(&format!("{}/v1/api", reader.http));
    assert!(api["paths"]["/v1/blobs/{blobId}/byte-range"]["get"].is_object());
    let mut page = agent.get(&format!("{}/", reader.http)).call().unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.body_mut()
            .read_to_string()
            .unwrap()
            .contains("floe node")
    );
    let mut metrics = agent
        .get(&format!("{}/metrics", writer.http))
        .call()
        .unwrap();
    let metrics = metrics.body_mut().read_to_string().unwrap();
    for needle in [
        "# TYPE floe_put_duration_seconds histogram",
        "floe_put_duration_seconds_count",
        "floe_get_duration_seconds_bucket{le=",
        "floe_http_request_duration_seconds_sum",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    let node = json(&format!("{}/v1/node/status", reader.http));
    for field in ["version", "uptimeSeconds", "recentErrors", "capacityBytes"] {
        assert!(node.get(field).is_some(), "{field} missing: {node}");
    }
}

/// Opens `count` connections to `target` from `source` (an address on the loopback, so each source has its own
/// per-address cap).
fn connect_from(source: [u8; 4], target: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let socket = connect_one(source, target);
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            socket
        })
        .collect()
}

/// A TCP connection from a chosen loopback source address (std cannot bind a client socket; tokio can).
fn connect_one(source: [u8; 4], target: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        let stream = socket.connect(target).await.unwrap().into_std().unwrap();
        // tokio leaves its sockets non-blocking; this test reads with timeouts instead.
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

fn median_get_ms(url: &str, rounds: usize) -> f64 {
    let agent = agent();
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let mut response = agent.get(url).call().unwrap();
            assert_eq!(response.status(), 200);
            response.body_mut().read_to_vec().unwrap();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

#[test]
fn idle_and_trickling_connections_neither_slow_a_get_nor_stay_open() {
    let swarm = TestSwarm::start_with(
        4,
        &["--http-idle-timeout", "3s", "--http-header-timeout", "3s"],
    );
    let node = &swarm.nodes[0];
    let target: SocketAddr = node.http.trim_start_matches("http://").parse().unwrap();
    let id = put(&swarm.nodes[1], &blob(200_000, 9));
    let url = format!("{}/v1/blobs/{id}", node.http);
    median_get_ms(&url, 5); // warm up: connections to the holders
    let unloaded = median_get_ms(&url, 21);

    // 500 idle connections from ten addresses, 50 each (under the per-address cap of 64) ...
    let mut idle = Vec::new();
    for i in 0..10u8 {
        idle.extend(connect_from([127, 0, 1, i + 1], target, 50));
    }
    // ... and 100 trickling ones: 50 sending headers a byte at a time, 50 a body.
    let mut tricklers = Vec::new();
    for i in 0..2u8 {
        tricklers.extend(connect_from([127, 0, 2, i + 1], target, 50));
    }
    for (n, stream) in tricklers.iter_mut().enumerate() {
        if n % 2 == 1 {
            stream
                .write_all(b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
                .unwrap();
        }
    }
    // The trickler writes a byte to each every 300 ms and collects what comes back, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = std::sync::Arc::clone(&stop);
        let streams: Vec<TcpStream> = tricklers.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            let header = b"GET / HTTP/1.1\r\nHost: a-very-slow-client\r\n";
            let mut state: Vec<(TcpStream, bool, Vec<u8>)> = streams
                .into_iter()
                .map(|s| (s, false, Vec::new()))
                .collect();
            for (stream, _, _) in &state {
                stream.set_nonblocking(true).unwrap();
            }
            let mut at = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (n, (stream, closed, seen)) in state.iter_mut().enumerate() {
                    if *closed {
                        continue;
                    }
                    if seen.is_empty() {
                        let byte = if n % 2 == 0 {
                            header[at % header.len()]
                        } else {
                            b'x'
                        };
                        if stream.write_all(&[byte]).is_err() {
                            *closed = true;
                            continue;
                        }
                    }
                    let mut buf = [0u8; 4096];
                    match stream.read(&mut buf) {
                        Ok(0) => *closed = true,
                        Ok(k) => seen.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => *closed = true,
                    }
                }
                at += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            state
                .into_iter()
                .map(|(_, closed, seen)| (closed, seen))
                .collect::<Vec<_>>()
        })
    };
    // One more from a full address gets a 503 with Retry-After at once.
    let mut full = connect_from([127, 0, 3, 1], target, 64);
    let mut refused = connect_from([127, 0, 3, 1], target, 1).remove(0);
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );
    full.clear();

    let loaded = median_get_ms(&url, 21);
    eprintln!("GET median: {unloaded:.2} ms unloaded, {loaded:.2} ms with 600 hostile connections");
    // Loopback latencies are a few ms: 2 ms of slack keeps scheduler noise from deciding the test.
    assert!(
        loaded <= 2.0 * unloaded + 2.0,
        "GET slowed from {unloaded:.2} ms to {loaded:.2} ms under idle and trickling connections"
    );

    // After the timeouts every idle connection is closed, and every trickler is answered or closed.
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let trickled = trickle.join().unwrap();
    let still_open = idle
        .iter_mut()
        .map(|stream| {
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .filter(|open| *open)
        .count();
    assert_eq!(
        still_open, 0,
        "{still_open} of 500 idle connections still open"
    );
    let open_tricklers = trickled.iter().filter(|(closed, _)| !closed).count();
    assert_eq!(
        open_tricklers, 0,
        "{open_tricklers} of 100 trickling connections still open"
    );
    let answered_408 = trickled
        .iter()
        .filter(|(_, seen)| String::from_utf8_lossy(seen).starts_with("HTTP/1.1 408"))
        .count();
    assert!(answered_408 > 0, "no trickled body was answered 408");
    // The node still serves.
    assert_eq!(get(node, &id).unwrap().len(), 200_000);
}

/// One request from a chosen loopback source address; returns the status, headers and body.
fn request_from(
    source: [u8; 4],
    target: SocketAddr,
    path: &str,
    headers: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = connect_one(source, target);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    read_answer(&mut stream)
}

#[test]
fn greedy_clients_get_429_with_retry_after_and_others_keep_their_budget() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("keys");
    std::fs::write(&key_file, "# test keys\nsesame\n").unwrap();
    let swarm = TestSwarm::start_with(
        4,
        &[
            "--http-client-requests",
            "2",
            "--http-client-bytes",
            "100KiB",
            "--api-keys",
            key_file.to_str().unwrap(),
        ],
    );
    let node = &swarm.nodes[0];
    let target: SocketAddr = node.http.trim_start_matches("http://").parse().unwrap();
    let status = "/v1/api"; // cheap, and open to pages on every origin

    // Two requests a second, bursts of twenty: about the twenty-first in a row is refused (plus the two a second
    // the bucket refills while they run), with the time to wait.
    let started = Instant::now();
    let mut served = 0;
    let (code, headers, body) = loop {
        let answer = request_from(
            [127, 0, 5, 1],
            target,
            status,
            "Origin: https://app.example\r\n",
        );
        if answer.0 != 200 || served > 100 {
            break answer;
        }
        served += 1;
    };
    assert_envelope(code, &body, 429, "over the request rate");
    let allowed = 20.0 + 2.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        (20..=100).contains(&served) && f64::from(served) <= allowed,
        "{served} requests served before the first 429 (at most {allowed:.1} allowed)"
    );
    let message = serde_json::from_slice::<Value>(&body).unwrap()["error"]["message"].clone();
    assert!(message.as_str().unwrap().contains("127.0.5.1"), "{message}");
    let wait: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&wait), "Retry-After {wait}");
    // A browser can read it: CORS wraps the refusal.
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));

    // Another address, a known API key from the refused address, and the operator's own host are served.
    assert_eq!(request_from([127, 0, 5, 2], target, status, "").0, 200);
    let key = "X-Floe-Api-Key: sesame\r\n";
    assert_eq!(request_from([127, 0, 5, 1], target, status, key).0, 200);
    let (code, _, body) = request_from([127, 0, 5, 1], target, status, "X-Floe-Api-Key: guess\r\n");
    assert_envelope(code, &body, 401, "an unknown API key");
    for _ in 0..40 {
        assert_eq!(request_from([127, 0, 0, 1], target, status, "").0, 200);
    }

    // Bytes: 100 KiB a second, bursts of 1,000 KiB. A 1.5 MiB read is served whole, then the debt holds the
    // client's next request for about (1,536 − 1,000) / 100 seconds.
    let data = blob(1536 << 10, 21);
    let id = put(node, &data); // from 127.0.0.1: exempt
    let (code, _, body) = request_from([127, 0, 5, 3], target, &format!("/v1/blobs/{id}"), "");
    assert_eq!(code, 200);
    assert!(body == data, "the overdrawing read is served whole");
    let (code, headers, body) = request_from([127, 0, 5, 3], target, status, "");
    assert_envelope(code, &body, 429, "over the byte budget");
    let wait: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((3..=6).contains(&wait), "Retry-After {wait}");

    assert!(metric(node, "floe_gateway_over_request_rate_total") >= 1);
    assert!(metric(node, "floe_gateway_over_byte_budget_total") >= 1);
    assert!(metric(node, "floe_gateway_unknown_api_keys_total") >= 1);
    assert_eq!(metric(node, "floe_gateway_client_requests_per_second"), 2);
}
