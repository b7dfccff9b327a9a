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
use crate::service::{LifetimeConfig, Node, RepairConfig};
use crate::store::Store;

/// Default libp2p port.
pub const DEFAULT_P2P_PORT: u16 = 4001;
/// Default gateway address: loopback only, so a fresh node does not expose writes to the world.
pub const DEFAULT_HTTP: &str = "127.0.0.1:31415";
/// Default cap on established connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 512;
/// Default largest blob the gateway accepts. Bodies over 16 MiB are spooled to disk and written run by run, so
/// this bounds a put's disk use, not its memory.
pub const DEFAULT_MAX_BODY: u64 = 1 << 30;
/// Most bytes a get reads into memory at once; the gateway streams larger ranges.
pub const MAX_GET: u64 = 256 << 20;
/// Default memory for the hot-blob cache.
pub const DEFAULT_CACHE_SIZE: u64 = 64 << 20;

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
    /// Memory for the hot-blob cache, e.g. "64MiB" ("0" disables it).
    pub cache_size: Option<String>,
    /// Largest blob the gateway accepts, e.g. "256MiB".
    pub max_body: Option<String>,
    /// How long a holder may be out of reach before its slivers are repaired elsewhere, e.g. "5m".
    pub repair_grace: Option<String>,
    /// How often the node checks the blobs it holds for departed holders, e.g. "10s".
    pub repair_interval: Option<String>,
    /// How often the node challenges each holder of the blobs it leads, e.g. "60s".
    pub challenge_interval: Option<String>,
    /// How long a blob's holders go unchallenged after this node's sliver arrived or its holder list changed,
    /// e.g. "60s".
    pub challenge_settle: Option<String>,
    /// How long a leaving node spends handing its slivers off before it exits, e.g. "60s".
    pub handoff_timeout: Option<String>,
    /// How long part of a sliver index may sit without growing before it is deleted, e.g. "1h".
    pub partial_ttl: Option<String>,
    /// How long a peer must be known before repairs give it slivers while older peers could take them, e.g. "2h".
    pub newcomer_age: Option<String>,
    /// Ask the local router for a port mapping with UPnP (default true).
    pub upnp: Option<bool>,
    /// Established connections at most (default 512).
    pub max_connections: Option<u32>,
    /// Offer a relay to peers behind NAT (default true).
    pub relay_server: Option<bool>,
    /// Relay reservations held for others at once (default 128).
    pub relay_max_reservations: Option<usize>,
    /// Circuits relayed at once (default 16).
    pub relay_max_circuits: Option<usize>,
    /// A relayed circuit is closed after this long, e.g. "2m".
    pub relay_max_circuit_duration: Option<String>,
    /// A relayed circuit is closed after this many bytes, e.g. "1MiB".
    pub relay_max_circuit_bytes: Option<String>,
    /// Lazy-repair threshold: lost slivers a blob waits for before its repair (default 1).
    pub repair_min_lost: Option<u16>,
    /// Most slivers a blob written here is cut into (default 1000).
    pub max_shards: Option<u16>,
    /// Origins whose web pages may store blobs through the gateway: "*", or origins separated by commas
    /// (default none; reads are open to every origin).
    pub cors_write_origins: Option<String>,
    /// Time a gateway client has to send a request's headers, e.g. "10s".
    pub http_header_timeout: Option<String>,
    /// A gateway connection with nothing in flight and nothing moving is closed after this long, e.g. "60s".
    pub http_idle_timeout: Option<String>,
    /// Gateway connections at most (default 1024).
    pub http_max_connections: Option<usize>,
    /// Gateway connections at most from one IP address (default 64).
    pub http_max_connections_per_ip: Option<usize>,
    /// The slowest a request body may arrive, in bytes per second, e.g. "1KiB" (default 1KiB).
    pub http_min_body_rate: Option<String>,
    /// Requests per second one gateway client may sustain, bursts of ten seconds' worth (default 50; 0: no
    /// limit).
    pub http_client_requests: Option<u64>,
    /// Bytes per second one gateway client may move, e.g. "64MiB" (default 64MiB; 0: no limit).
    pub http_client_bytes: Option<String>,
    /// Requests one gateway client may have in flight (default 16; 0: no limit).
    pub http_client_in_flight: Option<u32>,
    /// Addresses and networks the gateway does not limit, separated by commas, or "none" (default
    /// "127.0.0.1,::1").
    pub http_exempt: Option<String>,
    /// Reverse proxies whose X-Forwarded-For names the gateway client, separated by commas (default none).
    pub http_trusted_proxies: Option<String>,
    /// File of API keys, one per line, each with ten times an address's gateway budget.
    pub api_keys: Option<PathBuf>,
    /// The length of an epoch, e.g. "1d" or "10s" (default 1 day); every node of a swarm must use the same.
    pub epoch_duration: Option<String>,
    /// Epochs a blob is kept when its put does not say (default 30).
    pub default_epochs: Option<u64>,
    /// The most epochs ahead a put may ask for (default 365).
    pub max_epochs: Option<u64>,
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
        if other.cache_size.is_some() {
            self.cache_size = other.cache_size;
        }
        if other.max_body.is_some() {
            self.max_body = other.max_body;
        }
        if other.upnp.is_some() {
            self.upnp = other.upnp;
        }
        if other.max_connections.is_some() {
            self.max_connections = other.max_connections;
        }
        if other.relay_server.is_some() {
            self.relay_server = other.relay_server;
        }
        if other.relay_max_reservations.is_some() {
            self.relay_max_reservations = other.relay_max_reservations;
        }
        if other.relay_max_circuits.is_some() {
            self.relay_max_circuits = other.relay_max_circuits;
        }
        if other.repair_min_lost.is_some() {
            self.repair_min_lost = other.repair_min_lost;
        }
        if other.max_shards.is_some() {
            self.max_shards = other.max_shards;
        }
        if other.http_max_connections.is_some() {
            self.http_max_connections = other.http_max_connections;
        }
        if other.http_max_connections_per_ip.is_some() {
            self.http_max_connections_per_ip = other.http_max_connections_per_ip;
        }
        if other.http_client_requests.is_some() {
            self.http_client_requests = other.http_client_requests;
        }
        if other.http_client_in_flight.is_some() {
            self.http_client_in_flight = other.http_client_in_flight;
        }
        if other.api_keys.is_some() {
            self.api_keys = other.api_keys;
        }
        if other.default_epochs.is_some() {
            self.default_epochs = other.default_epochs;
        }
        if other.max_epochs.is_some() {
            self.max_epochs = other.max_epochs;
        }
        for (mine, theirs) in [
            (&mut self.repair_grace, other.repair_grace),
            (&mut self.repair_interval, other.repair_interval),
            (&mut self.challenge_interval, other.challenge_interval),
            (&mut self.challenge_settle, other.challenge_settle),
            (&mut self.handoff_timeout, other.handoff_timeout),
            (&mut self.partial_ttl, other.partial_ttl),
            (&mut self.newcomer_age, other.newcomer_age),
            (&mut self.cors_write_origins, other.cors_write_origins),
            (&mut self.http_header_timeout, other.http_header_timeout),
            (&mut self.http_idle_timeout, other.http_idle_timeout),
            (&mut self.http_min_body_rate, other.http_min_body_rate),
            (&mut self.http_client_bytes, other.http_client_bytes),
            (&mut self.http_exempt, other.http_exempt),
            (&mut self.http_trusted_proxies, other.http_trusted_proxies),
            (&mut self.epoch_duration, other.epoch_duration),
            (
                &mut self.relay_max_circuit_duration,
                other.relay_max_circuit_duration,
            ),
            (
                &mut self.relay_max_circuit_bytes,
                other.relay_max_circuit_bytes,
            ),
        ] {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self
    }
}

/// The gateway's per-client budgets from `--http-client-*`, `--http-exempt`, `--http-trusted-proxies` and
/// `--api-keys`.
fn fair_use_config(config: &NodeConfig) -> anyhow::Result<gateway::FairUseConfig> {
    use gateway::fair_use;
    let defaults = gateway::FairUseConfig::default();
    let networks = |value: &Option<String>, flag: &str, default: Vec<ipnet::IpNet>| {
        value.as_deref().map_or(Ok(default), |list| {
            fair_use::parse_networks(list).with_context(|| format!("--{flag}"))
        })
    };
    let api_keys = match &config.api_keys {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --api-keys {}", path.display()))?;
            let keys = fair_use::parse_api_keys(&text);
            if keys.is_empty() {
                anyhow::bail!("--api-keys {} lists no key", path.display());
            }
            keys
        }
    };
    Ok(gateway::FairUseConfig {
        requests_per_second: config
            .http_client_requests
            .unwrap_or(defaults.requests_per_second),
        bytes_per_second: config
            .http_client_bytes
            .as_deref()
            .map(parse_size)
            .transpose()
            .context("--http-client-bytes")?
            .unwrap_or(defaults.bytes_per_second),
        max_in_flight: config
            .http_client_in_flight
            .unwrap_or(defaults.max_in_flight),
        exempt: networks(&config.http_exempt, "http-exempt", defaults.exempt)?,
        trusted_proxies: networks(
            &config.http_trusted_proxies,
            "http-trusted-proxies",
            defaults.trusted_proxies,
        )?,
        api_keys,
    })
}

/// Blob lifetimes from `--epoch-duration`, `--default-epochs` and `--max-epochs`.
fn lifetime_config(config: &NodeConfig) -> anyhow::Result<LifetimeConfig> {
    let defaults = LifetimeConfig::default();
    let lifetimes = LifetimeConfig {
        epoch_duration: config
            .epoch_duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("--epoch-duration")?
            .unwrap_or(defaults.epoch_duration),
        default_epochs: config.default_epochs.unwrap_or(defaults.default_epochs),
        max_epochs: config.max_epochs.unwrap_or(defaults.max_epochs),
    };
    if lifetimes.epoch_duration < Duration::from_secs(1) {
        anyhow::bail!("--epoch-duration must be at least 1s");
    }
    if lifetimes.max_epochs == 0 {
        anyhow::bail!("--max-epochs must be at least 1");
    }
    if !(1..=lifetimes.max_epochs).contains(&lifetimes.default_epochs) {
        anyhow::bail!(
            "--default-epochs must be between 1 and --max-epochs ({}), not {}",
            lifetimes.max_epochs,
            lifetimes.default_epochs
        );
    }
    Ok(lifetimes)
}

/// `--max-shards`: between the smallest n a blob may have and the default cap.
fn check_max_shards(max_shards: Option<u16>) -> anyhow::Result<u16> {
    use floe_protocol::encoding::{DEFAULT_MAX_SHARDS, MIN_SHARDS};
    let Some(n) = max_shards else {
        return Ok(DEFAULT_MAX_SHARDS);
    };
    if !(MIN_SHARDS..=DEFAULT_MAX_SHARDS).contains(&n) {
        anyhow::bail!(
            "--max-shards must be between {MIN_SHARDS} and {DEFAULT_MAX_SHARDS}, not {n}"
        );
    }
    Ok(n)
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

/// Parses durations like `500ms`, `30s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 30s or 5m"))?;
    let millis: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => anyhow::bail!("unknown duration unit {other:?} in {text:?}; use ms, s, m, h or d"),
    };
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .with_context(|| format!("{text:?} is too long"))
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
    let max_shards = check_max_shards(config.max_shards)?;
    let cache_size = config
        .cache_size
        .as_deref()
        .map(parse_size)
        .transpose()?
        .unwrap_or(DEFAULT_CACHE_SIZE);

    let duration = |value: &Option<String>, default: Duration| {
        value.as_deref().map_or(Ok(default), parse_duration)
    };
    let write_origins =
        gateway::WriteOrigins::parse(config.cors_write_origins.as_deref().unwrap_or(""))?;
    let serve_defaults = gateway::ServeLimits::default();
    let limits = gateway::ServeLimits {
        header_timeout: duration(&config.http_header_timeout, serve_defaults.header_timeout)?,
        idle_timeout: duration(&config.http_idle_timeout, serve_defaults.idle_timeout)?,
        max_connections: config
            .http_max_connections
            .unwrap_or(serve_defaults.max_connections),
        max_connections_per_ip: config
            .http_max_connections_per_ip
            .unwrap_or(serve_defaults.max_connections_per_ip),
        min_body_rate: config
            .http_min_body_rate
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(serve_defaults.min_body_rate),
    };
    if limits.header_timeout.is_zero() || limits.idle_timeout.is_zero() {
        anyhow::bail!("--http-header-timeout and --http-idle-timeout must be more than 0s");
    }
    if limits.max_connections == 0 || limits.max_connections_per_ip == 0 {
        anyhow::bail!(
            "--http-max-connections and --http-max-connections-per-ip must be at least 1"
        );
    }

    let fair_use = fair_use_config(&config)?;
    let lifetimes = lifetime_config(&config)?;

    let store = Store::open(&data_dir).context("opening the store")?;
    let defaults = RepairConfig::default();
    let repair = RepairConfig {
        grace: duration(&config.repair_grace, defaults.grace)?,
        interval: duration(&config.repair_interval, defaults.interval)?,
        challenge_interval: duration(&config.challenge_interval, defaults.challenge_interval)?,
        challenge_settle: duration(&config.challenge_settle, defaults.challenge_settle)?,
        handoff_timeout: duration(&config.handoff_timeout, defaults.handoff_timeout)?,
        partial_ttl: duration(&config.partial_ttl, defaults.partial_ttl)?,
        newcomer_age: duration(&config.newcomer_age, defaults.newcomer_age)?,
        min_lost: config.repair_min_lost.unwrap_or(defaults.min_lost),
        ..defaults
    };
    let relay_defaults = crate::nat::RelayLimits::default();
    let relay = if config.relay_server.unwrap_or(true) {
        let limits = crate::nat::RelayLimits {
            max_reservations: config
                .relay_max_reservations
                .unwrap_or(relay_defaults.max_reservations),
            max_circuits: config
                .relay_max_circuits
                .unwrap_or(relay_defaults.max_circuits),
            max_circuit_duration: duration(
                &config.relay_max_circuit_duration,
                relay_defaults.max_circuit_duration,
            )?,
            max_circuit_bytes: config
                .relay_max_circuit_bytes
                .as_deref()
                .map(parse_size)
                .transpose()?
                .unwrap_or(relay_defaults.max_circuit_bytes),
        };
        if limits.max_circuit_duration.is_zero() || limits.max_circuit_bytes == 0 {
            anyhow::bail!(
                "--relay-max-circuit-duration and --relay-max-circuit-bytes must be more than 0"
            );
        }
        Some(limits)
    } else {
        None
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (net, inbound, gossip, event_loop) = net::start(
        keypair.clone(),
        NetConfig {
            listen: listen.clone(),
            bootstrap,
            request_timeout: Duration::from_secs(30),
            upnp: config.upnp.unwrap_or(true),
            max_connections: config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            relay,
        },
        &mut registry,
    )?;
    tokio::spawn(event_loop.run());
    // Built while the swarm forms, so the first put or repair does not wait for the codec tables.
    let codecs = tokio::task::spawn_blocking(floe_protocol::encoding::prepare_codecs);
    let node = Node::new(
        store,
        data_dir.join("spool"),
        keypair,
        net.clone(),
        capacity,
        MAX_GET,
        cache_size,
        repair,
        max_shards,
        lifetimes,
    );
    codecs
        .await
        .context("preparing the erasure codecs")?
        .context("preparing the erasure codecs")?;
    tokio::spawn(node.clone().serve(inbound));
    tokio::spawn(node.clone().listen_gossip(gossip));
    tokio::spawn(node.clone().repair_loop());

    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("binding the gateway to {http}"))?;
    let http_bound = listener.local_addr()?;
    let app = gateway::router(
        node.clone(),
        GatewayConfig {
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            registry: std::sync::Arc::new(registry),
            write_origins,
            fair_use: std::sync::Arc::new(gateway::FairUse::new(fair_use)),
        },
    );
    let server = tokio::spawn(async move {
        gateway::serve::serve(listener, app, limits, shutdown_signal()).await
    });

    // Report where we listen once every transport is up (each listen address yields at least one), TCP first:
    // every libp2p implementation speaks TCP, and a peer that takes the first address (a js-libp2p peer without
    // QUIC, say) must not be handed a QUIC one.
    let mut listen_addrs = Vec::new();
    for _ in 0..50 {
        listen_addrs = net.view().await.listen_addrs;
        if listen_addrs.len() >= listen.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listen_addrs.sort_by_key(|addr| {
        !addr
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::Tcp(_)))
    });
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
    // A planned departure hands every sliver to its next holder, so the swarm needs no decode.
    let timeout = node.repair_config().handoff_timeout;
    if timeout.is_zero() {
        tracing::info!("hand-off disabled (--handoff-timeout 0s): slivers stay here for a restart");
    } else {
        match tokio::time::timeout(timeout, node.hand_off_all()).await {
            Ok(report) => tracing::info!(
                handed_off = report.handed_off,
                failed = report.failed,
                blobs = report.blobs,
                bytes = report.bytes,
                "hand-off done"
            ),
            Err(_) => tracing::warn!(?timeout, "hand-off timed out; the rest is left to repair"),
        }
    }
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
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
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

    #[test]
    fn fair_use_settings_come_from_the_file_and_flags_or_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "# ours\nalpha\n").unwrap();
        let file: NodeConfig = toml::from_str(&format!(
            "http-client-requests = 7\nhttp-client-bytes = \"1MiB\"\nhttp-exempt = \"none\"\n\
             api-keys = {:?}",
            keys.display().to_string()
        ))
        .unwrap();
        let flags = NodeConfig {
            http_client_in_flight: Some(3),
            http_trusted_proxies: Some("10.0.0.0/8".into()),
            ..NodeConfig::default()
        };
        let config = fair_use_config(&file.merge(flags)).unwrap();
        assert_eq!(config.requests_per_second, 7);
        assert_eq!(config.bytes_per_second, 1 << 20);
        assert_eq!(config.max_in_flight, 3);
        assert!(config.exempt.is_empty());
        assert_eq!(config.trusted_proxies.len(), 1);
        assert_eq!(config.api_keys, vec!["alpha".to_owned()]);
        assert_eq!(
            fair_use_config(&NodeConfig::default()).unwrap(),
            gateway::FairUseConfig::default()
        );

        let wrong = |config: NodeConfig| format!("{:#}", fair_use_config(&config).unwrap_err());
        let message = wrong(NodeConfig {
            http_exempt: Some("127.0.0.1,localhost".into()),
            ..NodeConfig::default()
        });
        assert!(
            message.contains("--http-exempt") && message.contains("localhost"),
            "{message}"
        );
        let message = wrong(NodeConfig {
            http_client_bytes: Some("fast".into()),
            ..NodeConfig::default()
        });
        assert!(message.contains("--http-client-bytes"), "{message}");
        let message = wrong(NodeConfig {
            api_keys: Some(dir.path().join("missing")),
            ..NodeConfig::default()
        });
        assert!(message.contains("--api-keys"), "{message}");
        std::fs::write(&keys, "# nothing\n").unwrap();
        let message = wrong(NodeConfig {
            api_keys: Some(keys),
            ..NodeConfig::default()
        });
        assert!(message.contains("lists no key"), "{message}");
    }
}
