//! `floe devnet`: N `floe node` processes on 127.0.0.1, joined into one swarm, for trying floe on one machine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::daemon::NodeInfo;

/// Starts `nodes` nodes with data under `data_dir` (a fresh temporary directory when `None`), each with the given
/// hot-blob cache and body limit when set, prints node 0's gateway, and runs until Ctrl-C, then stops every node.
pub async fn run(
    nodes: usize,
    base_port: u16,
    data_dir: Option<PathBuf>,
    cache_size: Option<String>,
    max_body: Option<String>,
    epoch_duration: Option<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!((1..=64).contains(&nodes), "--nodes must be 1 to 64");
    let port = |offset: usize, i: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(base_port) + offset + i)
            .context("--base-port too high for this many nodes")
    };
    let keep = data_dir.is_some();
    let root = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("floe-devnet-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let exe = std::env::current_exe().context("locating the floe binary")?;
    let mut children: Vec<Child> = Vec::new();
    let bootstrap = format!("/ip4/127.0.0.1/tcp/{}", port(0, 0)?);
    let result = async {
        for i in 0..nodes {
            let dir = root.join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            let log = std::fs::File::create(dir.join("node.log"))?;
            let mut command = Command::new(&exe);
            command
                .arg("node")
                .arg("--data-dir")
                .arg(&dir)
                .arg("--listen")
                .arg(format!("/ip4/127.0.0.1/tcp/{}", port(0, i)?))
                .arg("--http")
                .arg(format!("127.0.0.1:{}", port(1000, i)?))
                // The whole devnet stops together: there is nobody to hand slivers to.
                .args(["--handoff-timeout", "0s"])
                // Loopback only: no router to ask.
                .arg("--no-upnp")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if i > 0 {
                command.arg("--bootstrap").arg(&bootstrap);
            }
            if let Some(size) = &cache_size {
                command.arg("--cache-size").arg(size);
            }
            if let Some(size) = &max_body {
                command.arg("--max-body").arg(size);
            }
            if let Some(duration) = &epoch_duration {
                command.arg("--epoch-duration").arg(duration);
            }
            children.push(command.spawn().context("starting a node")?);
            if i == 0 {
                // Others bootstrap through node 0: start them once it listens.
                let path = dir.join("node.json");
                let deadline = Instant::now() + Duration::from_secs(30);
                while !path.exists() {
                    anyhow::ensure!(Instant::now() < deadline, "node 0 did not start; see {}", dir.join("node.log").display());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // Wait until every node reports its addresses.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut infos = Vec::new();
        for i in 0..nodes {
            let path = root.join(format!("node-{i}/node.json"));
            loop {
                if let Ok(info) = std::fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice::<NodeInfo>(&b)?)) {
                    infos.push(info);
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "node {i} did not start; see {}", root.join(format!("node-{i}/node.log")).display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        println!("floe devnet: {nodes} nodes running, data in {}", root.display());
        for (i, info) in infos.iter().enumerate() {
            println!("  node {i}: gateway http://{}  peer {}", info.http, info.peer_id);
        }
        let gateway = infos.first().map(|i| i.http.clone()).unwrap_or_default();
        println!("gateway: http://{gateway}");
        println!("try:  floe put FILE --gateway http://{gateway}   (or: curl -X PUT --data-binary @FILE http://{gateway}/v1/blobs)");
        println!("Ctrl-C stops the devnet.");
        tokio::signal::ctrl_c().await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    for child in &mut children {
        stop(child);
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

/// Asks a child to stop (SIGTERM), then kills it if it has not within a few seconds.
fn stop(child: &mut Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY-free: `kill` via the command line keeps this crate free of unsafe code.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
