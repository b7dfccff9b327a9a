//! `floe node`: configuration, identity, and starting the network, the service and the gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::gateway::{self, GatewayConfig};
use crate::net::{self, NetConfig};
use crate::service::Node;
use crate::store::Store;

/// Default libp2p port.
pub const DEFAULT_P2P_PORT: u16 = 4001;
/// Default gateway address: loopback only, so a fresh node does not expose writes to the world.
pub const DEFAULT_HTTP: &str = "127.0.0.1:31415";
/// Default largest blob the gateway accepts.
pub const DEFAULT_MAX_BODY: u64 = 256 << 20;

/// Node settings, from the config file with flags on top. Every field is optional in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// libp2p listen addresses.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Bootstrap peers.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Gateway address.
    pub http: Option<String>,
    /// Storage capacity, e.g. "100GiB".
    pub capacity: Option<String>,
    /// Largest blob the gateway accepts, e.g. "256MiB".
    pub max_body: Option<String>,
}

impl NodeConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// `other`'s set fields override this one's.
    pub fn merge(mut self, other: NodeConfig) -> Self {
        if other.data_dir.is_some() {
            self.data_dir = other.data_dir;
        }
        if !other.listen.is_empty() {
            self.listen = other.listen;
        }
        if !other.bootstrap.is_empty() {
            self.bootstrap = other.bootstrap;
        }
        if other.http.is_some() {
            self.http = other.http;
        }
        if other.capacity.is_some() {
            self.capacity = other.capacity;
        }
        if other.max_body.is_some() {
            self.max_body = other.max_body;
        }
        self
    }
}

/// Parses sizes like `4096`, `64KiB`, `10MB`, `2GiB`, `1TiB`.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a size like 512MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" | "t" => 1 << 40,
        other => {
            anyhow::bail!("unknown size unit {other:?} in {text:?}; use B, KiB, MiB, GiB or TiB")
        }
    };
    number
        .checked_mul(multiplier)
        .with_context(|| format!("{text:?} is too large"))
}

/// The default data directory: `$XDG_DATA_HOME/floe`, else `~/.local/share/floe`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("floe");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/floe")
}

/// Loads the node's ed25519 identity, creating it on first start.
pub fn load_or_create_identity(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a libp2p identity key", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .context("encoding the new identity")?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(keypair)
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// What a running node reports in `<data-dir>/node.json`, so scripts and tests find its ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Peer ID.
    pub peer_id: String,
    /// Gateway address actually bound.
    pub http: String,
    /// libp2p listen addresses actually bound, with `/p2p/<peer id>`.
    pub listen: Vec<String>,
    /// Process ID.
    pub pid: u32,
}

/// Runs a node until Ctrl-C or SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let keypair = load_or_create_identity(&data_dir)?;
    let peer_id = keypair.public().to_peer_id();
    let listen: Vec<Multiaddr> = if config.listen.is_empty() {
        vec![
            format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}").parse()?,
            format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1").parse()?,
        ]
    } else {
        config
            .listen
            .iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("--listen {a:?} is not a multiaddr"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let bootstrap: Vec<Multiaddr> = config
        .bootstrap
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("--bootstrap {a:?} is not a multiaddr"))
        })
        .collect::<anyhow::Result<_>>()?;
    let http: SocketAddr = config
        .http
        .as_deref()
        .unwrap_or(DEFAULT_HTTP)
        .parse()
        .context("--http must be an address like 127.0.0.1:31415")?;
    let max_body = config
        .max_body
        .as_deref()
        .map(parse_size)
        .transpose()?
        .unwrap_or(DEFAULT_MAX_BODY);
    let capacity = config.capacity.as_deref().map(parse_size).transpose()?;

    let store = Store::open(&data_dir).context("opening the store")?;
    let (net, inbound, event_loop) = net::start(
        keypair.clone(),
        NetConfig {
            listen,
            bootstrap,
            request_timeout: Duration::from_secs(30),
        },
    )?;
    tokio::spawn(event_loop.run());
    // Reads are held in memory until streaming reads land: allow what a put may bring in.
    let node = Node::new(
        store,
        keypair,
        net.clone(),
        capacity,
        max_body.max(DEFAULT_MAX_BODY),
    );
    tokio::spawn(node.clone().serve(inbound));

    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("binding the gateway to {http}"))?;
    let http_bound = listener.local_addr()?;
    let app = gateway::router(
        node.clone(),
        GatewayConfig {
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        },
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });

    // Report where we listen once the transports are up.
    let mut listen_addrs = Vec::new();
    for _ in 0..50 {
        listen_addrs = net.view().await.listen_addrs;
        if !listen_addrs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = NodeInfo {
        peer_id: peer_id.to_string(),
        http: http_bound.to_string(),
        listen: listen_addrs
            .iter()
            .map(|a| format!("{a}/p2p/{peer_id}"))
            .collect(),
        pid: std::process::id(),
    };
    let info_path = data_dir.join("node.json");
    std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("writing {}", info_path.display()))?;
    tracing::info!(%peer_id, gateway = %http_bound, data_dir = %data_dir.display(), "floe node running");
    server.await??;
    tracing::info!("floe node stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let file: NodeConfig = toml::from_str(
            "listen = [\"/ip4/127.0.0.1/tcp/1\"]\nhttp = \"127.0.0.1:2\"\ncapacity = \"1GiB\"",
        )
        .unwrap();
        let flags = NodeConfig {
            http: Some("127.0.0.1:3".into()),
            ..NodeConfig::default()
        };
        let merged = file.merge(flags);
        assert_eq!(merged.http.as_deref(), Some("127.0.0.1:3"));
        assert_eq!(merged.listen, vec!["/ip4/127.0.0.1/tcp/1".to_owned()]);
        assert_eq!(merged.capacity.as_deref(), Some("1GiB"));
        assert!(toml::from_str::<NodeConfig>("typo = 1").is_err());
    }
}
