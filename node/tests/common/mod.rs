//! Shared by the multi-process tests: real `floe node` processes on 127.0.0.1, started and stopped by PID.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct NodeProc {
    pub child: Option<Child>,
    pub peer_id: String,
    pub dir: PathBuf,
    pub http: String,
    pub listen: String,
}

/// A swarm of node processes; every process is killed when it goes out of scope, pass or fail.
pub struct TestSwarm {
    pub nodes: Vec<NodeProc>,
    extra: Vec<String>,
    root: Option<tempfile::TempDir>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Swarm tests run one at a time: a dozen node processes each already load both cores.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for TestSwarm {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // A failed test keeps its nodes' data and logs for a post-mortem (any test does with FLOE_TEST_KEEP=1).
        if (std::thread::panicking() || std::env::var_os("FLOE_TEST_KEEP").is_some())
            && let Some(root) = self.root.take()
        {
            eprintln!("node data and logs kept in {}", root.keep().display());
        }
    }
}

pub fn spawn_node(dir: &Path, bootstrap: Option<&str>, extra: &[String]) -> NodeProc {
    spawn_node_on("/ip4/127.0.0.1/tcp/0", dir, bootstrap, extra)
}

/// A node listening on the multiaddr `listen` (any 127.0.0.0/8 address: Linux answers on all of them).
pub fn spawn_node_on(
    listen: &str,
    dir: &Path,
    bootstrap: Option<&str>,
    extra: &[String],
) -> NodeProc {
    let info_path = dir.join("node.json");
    let _ = std::fs::remove_file(&info_path);
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_floe"));
    command
        .args([
            "node",
            "--listen",
            listen,
            "--http",
            "127.0.0.1:0",
            "--max-body",
            "64MiB",
            "--no-upnp",
        ])
        .args(extra)
        // Reads must exercise the holders, not the hot-blob cache, unless a test asks for the cache.
        .args(if extra.iter().any(|a| a == "--cache-size") {
            &[][..]
        } else {
            &["--cache-size", "0"][..]
        })
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "floe_node=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(addr) = bootstrap {
        command.args(["--bootstrap", addr]);
    }
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let info: Value = loop {
        if let Ok(bytes) = std::fs::read(&info_path)
            && let Ok(info) = serde_json::from_slice(&bytes)
        {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "node in {} did not start",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    NodeProc {
        child: Some(child),
        peer_id: info["peerId"].as_str().unwrap().to_owned(),
        dir: dir.to_owned(),
        http: format!("http://{}", info["http"].as_str().unwrap()),
        listen: info["listen"][0].as_str().unwrap().to_owned(),
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub fn json(url: &str) -> Value {
    let mut response = agent().get(url).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

pub fn metric(node: &NodeProc, name: &str) -> u64 {
    let mut response = agent()
        .get(&format!("{}/metrics", node.http))
        .call()
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

impl TestSwarm {
    pub fn start(count: usize) -> Self {
        Self::start_with(count, &[])
    }

    /// Starts `count` nodes with `extra` flags (repair timings, say).
    pub fn start_with(count: usize, extra: &[&str]) -> Self {
        Self::start_on(&vec!["/ip4/127.0.0.1/tcp/0"; count], extra)
    }

    /// Starts one node per listen multiaddr in `listen` (on loopback addresses), with `extra` flags.
    pub fn start_on(listen: &[&str], extra: &[&str]) -> Self {
        let count = listen.len();
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let root = tempfile::tempdir().unwrap();
        let mut nodes = vec![spawn_node_on(
            listen[0],
            &root.path().join("node-0"),
            None,
            &extra,
        )];
        let bootstrap = nodes[0].listen.clone();
        for (i, addr) in listen.iter().enumerate().skip(1) {
            nodes.push(spawn_node_on(
                addr,
                &root.path().join(format!("node-{i}")),
                Some(&bootstrap),
                &extra,
            ));
        }
        let swarm = Self {
            nodes,
            extra,
            root: Some(root),
            _serial: serial,
        };
        swarm.wait_formed(count);
        swarm
    }

    /// Starts a fresh node (new identity, empty store) and returns its position.
    pub fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        let bootstrap = self.nodes[0].listen.clone();
        let dir = self.nodes[0]
            .dir
            .parent()
            .unwrap()
            .join(format!("node-{index}"));
        self.nodes
            .push(spawn_node(&dir, Some(&bootstrap), &self.extra));
        index
    }

    /// Sends SIGTERM and waits for the node to exit on its own (it hands its slivers off first).
    pub fn terminate(&mut self, index: usize) {
        let mut child = self.nodes[index].child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {index} did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &NodeProc> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// The sum of a metric over the live nodes.
    pub fn total(&self, name: &str) -> u64 {
        self.live().map(|n| metric(n, name)).sum()
    }

    /// Waits until every live node knows every other one.
    pub fn wait_formed(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in self.live() {
            loop {
                let status = json(&format!("{}/v1/node/status", node.http));
                if status["knownPeers"].as_u64().unwrap_or(0) as usize >= count - 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "swarm did not form: {status}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    pub fn kill(&mut self, index: usize) {
        let mut child = self.nodes[index].child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    pub fn restart(&mut self, index: usize) {
        let bootstrap = self.nodes[0].listen.clone();
        let dir = self.nodes[index].dir.clone();
        self.nodes[index] = spawn_node(&dir, Some(&bootstrap), &self.extra);
    }
}

pub fn put(node: &NodeProc, data: &[u8]) -> String {
    let mut response = agent()
        .put(&format!("{}/v1/blobs", node.http))
        .send(data)
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(status, 200, "put failed: {body}");
    body["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A put with `query` (`epochs=3`, say; empty for none) that may fail: the status and the JSON answer.
pub fn put_with(node: &NodeProc, data: &[u8], query: &str) -> (u16, Value) {
    let mut response = agent()
        .put(&format!("{}/v1/blobs?{query}", node.http))
        .send(data)
        .unwrap();
    let status = response.status().as_u16();
    let body = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    (status, body)
}

pub fn get(node: &NodeProc, id: &str) -> Result<Vec<u8>, (u16, String)> {
    let mut response = agent()
        .get(&format!("{}/v1/blobs/{id}", node.http))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    if status == 200 {
        Ok(body)
    } else {
        Err((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Waits until `done`, checking every half second; fails the test after `timeout`, naming `what`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A GET of `url` with `headers` that does not follow redirects: the status, the headers as (name, value), and
/// the body.
pub fn fetch_raw(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let seen = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (status, seen, body)
}

/// The value of header `name` among `headers` (names in lower case, as `fetch_raw` gives them).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
