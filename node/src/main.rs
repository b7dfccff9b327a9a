//! `floe`: the command line of the floe storage network.
//!
//! `floe node` runs a peer; `floe devnet` runs a local swarm; `floe put|get|status` talk to a gateway; the
//! offline tools compute blob IDs and split files into verifiable sliver files and back.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use floe_node::client::{self, ClientError, Sink, Source};
use floe_node::sliver_files::{self, DecodeReport, SliverFileError};
use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, MAX_SHARDS, MIN_SHARDS};
use floe_protocol::{BlobId, BlobParams, EncodingType};

/// jemalloc gives freed memory back to the system; glibc's malloc kept the sliver-sized buffers of streamed puts
/// and gets in per-thread arenas, which let a node's RSS grow with the traffic (docs/decisions/0009).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The n the offline tools use unless told otherwise: what a writer in a 12-node swarm picks.
const OFFLINE_DEFAULT_SHARDS: u16 = 12;

#[derive(Parser, Debug)]
#[command(name = "floe", version, about = "floe: an open peer-to-peer blob store", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Machine-readable output on standard output, errors included (`{"error":{…}}`, non-zero exit).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a floe node: join the swarm, store slivers, serve the HTTP gateway.
    Node(Box<NodeArgs>),
    /// Run N nodes on 127.0.0.1 in one swarm (data in a temporary directory unless --data-dir is given).
    Devnet {
        /// How many nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// First libp2p port; gateways use this + 1000.
        #[arg(long, default_value_t = 47000)]
        base_port: u16,
        /// Keep node data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Each node's hot-blob cache, e.g. 64MiB (0 disables it; benchmarks of the read path use 0).
        #[arg(long, value_name = "SIZE")]
        cache_size: Option<String>,
        /// Each node's largest accepted PUT body, e.g. 16GiB (bodies over 16 MiB are spooled to disk).
        #[arg(long, value_name = "SIZE")]
        max_body: Option<String>,
        /// Each node's epoch, the unit of blob lifetimes, e.g. 10s to watch blobs expire (default 1d).
        #[arg(long, value_name = "DURATION")]
        epoch_duration: Option<String>,
    },
    /// Store FILE through a node's gateway; prints the blob ID. FILE may be a pipe, a FIFO, /dev/stdin, a
    /// process substitution, or - for standard input.
    Put {
        /// The file, or - for standard input.
        #[arg(allow_hyphen_values = true)]
        file: PathBuf,
        /// The blob's media type, served back with it (e.g. text/html; charset=utf-8, video/webm).
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        /// Keep the blob for this many epochs from now (default: the node's --default-epochs); storing it again
        /// with more extends it.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Store it permanent: no deletion token, and nobody can delete it before its end epoch. Without it the
        /// blob is deletable and its deletion token is printed on standard error.
        #[arg(long)]
        permanent: bool,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Delete a blob stored deletable: releases this writer's claim with the token its put printed. The blob
    /// goes once every writer of it has deleted (and no permanent write keeps it).
    Delete {
        /// The blob ID (may start with '-').
        #[arg(allow_hyphen_values = true)]
        blob_id: String,
        /// The deletion token (64 hex digits) `floe put` printed.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "FLOE_DELETION_TOKEN",
            hide_env_values = true
        )]
        token: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Fetch a blob through a node's gateway.
    Get {
        /// The blob ID (43 characters of URL-safe base64; may start with '-').
        #[arg(allow_hyphen_values = true)]
        blob_id: String,
        /// Write here (replaced only once the whole blob has arrived); - for standard output, which is also the
        /// default when standard output is not a terminal.
        #[arg(short, long, allow_hyphen_values = true)]
        output: Option<PathBuf>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Show a blob's health as a node's gateway sees it.
    Status {
        /// The blob ID (may start with '-').
        #[arg(allow_hyphen_values = true)]
        blob_id: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Print the blob ID of FILE without storing anything. Deterministic: same file and options, same ID.
    BlobId {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        encoding: EncodingArgs,
    },
    /// Split a file into verifiable sliver files and rebuild it from them.
    #[command(subcommand)]
    Slivers(SliversCommand),
    /// Publish a directory as a site any node serves.
    #[command(subcommand)]
    Site(SiteCommand),
}

#[derive(Subcommand, Debug)]
enum SiteCommand {
    /// Store DIR as one quilt plus a manifest; prints the site ID (its pages are at
    /// GATEWAY/v1/sites/SITE_ID/). DIR/floe-site.json may set the not-found page, redirects and headers.
    Publish {
        /// The site's directory.
        dir: PathBuf,
        /// Keep the site for this many epochs (default: the node's --default-epochs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Store it permanent (no deletion tokens).
        #[arg(long)]
        permanent: bool,
        /// Also point a name at it: the name of the ed25519 key in this file, created (readable by you only)
        /// if missing. Keep the file: whoever holds it moves the name (`floe site update`).
        #[arg(long, value_name = "FILE")]
        name_key: Option<PathBuf>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Publish DIR as a new version of a named site: stores it as `publish` does, then moves the name of the key
    /// in --name-key to it (GATEWAY/v1/sites/NAME/ and NAME.localhost serve the latest version).
    Update {
        /// The site's directory.
        dir: PathBuf,
        /// The name's key file, as `floe site publish --name-key` created it.
        #[arg(long, value_name = "FILE")]
        name_key: PathBuf,
        /// Keep this version for this many epochs (default: the node's --default-epochs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        epochs: Option<u64>,
        /// Store it permanent (no deletion tokens).
        #[arg(long)]
        permanent: bool,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Print the site a name points at now.
    Resolve {
        /// The name (n followed by 52 base32 characters).
        name: String,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SliversCommand {
    /// Encode FILE into one file per sliver (sliver-<index>.floe) plus blob.meta in DIR; prints the blob ID.
    Encode {
        /// The file to encode.
        file: PathBuf,
        /// Directory for the sliver files; created if missing, and must not already hold slivers.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        encoding: EncodingArgs,
    },
    /// Rebuild a blob from whichever sliver files in DIR are present and valid.
    Decode {
        /// Directory holding sliver files.
        dir: PathBuf,
        /// The blob ID to rebuild; every sliver is checked against it (may start with '-').
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        blob_id: String,
        /// Where to write the blob; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
struct GatewayArgs {
    /// The node's gateway: host:port or http://host:port.
    #[arg(long, default_value = floe_node::client::DEFAULT_GATEWAY)]
    gateway: String,
}

#[derive(Args, Debug)]
struct NodeArgs {
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default: $XDG_DATA_HOME/floe or ~/.local/share/floe).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// libp2p listen address (repeatable; default TCP and QUIC on port 4001).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer to join through, with or without /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Gateway address (default 127.0.0.1:31415).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Storage capacity, e.g. 100GiB (default: unlimited).
    #[arg(long, value_name = "SIZE")]
    capacity: Option<String>,
    /// Largest blob the gateway accepts, e.g. 16GiB (default 1GiB; bodies over 16 MiB are spooled to disk).
    #[arg(long, value_name = "SIZE")]
    max_body: Option<String>,
    /// Memory for recently read or written blobs served again without asking holders (default 64MiB; 0 disables).
    #[arg(long, value_name = "SIZE")]
    cache_size: Option<String>,
    /// How long a holder may be out of reach before its slivers are repaired elsewhere (default 5m).
    #[arg(long, value_name = "DURATION")]
    repair_grace: Option<String>,
    /// How often held blobs are checked for departed holders (default 10s).
    #[arg(long, value_name = "DURATION")]
    repair_interval: Option<String>,
    /// How often the holders of the blobs this node leads are challenged (default 60s; 0s turns challenges off).
    #[arg(long, value_name = "DURATION")]
    challenge_interval: Option<String>,
    /// How long a blob's holders go unchallenged after this node's sliver of it arrived or its holder list
    /// changed, so slivers still on their way are not counted as lost (default 60s).
    #[arg(long, value_name = "DURATION")]
    challenge_settle: Option<String>,
    /// Time allowed for handing slivers off on SIGTERM or Ctrl-C (default 60s; 0s keeps them for a restart).
    #[arg(long, value_name = "DURATION")]
    handoff_timeout: Option<String>,
    /// How long part of a sliver index (left by a write, repair or hand-off that stopped midway) may sit without
    /// growing before it is deleted (default 1h).
    #[arg(long, value_name = "DURATION")]
    partial_ttl: Option<String>,
    /// How long this node must have known a peer before a repair, hand-off or rebalance gives it slivers while
    /// an older peer could take them: an ID ground next to a blob has to wait this out (default 2h).
    #[arg(long, value_name = "DURATION")]
    newcomer_age: Option<String>,
    /// Do not ask the local router for a port mapping (UPnP).
    #[arg(long)]
    no_upnp: bool,
    /// Established connections at most (default 512).
    #[arg(long, value_name = "N")]
    max_connections: Option<u32>,
    /// Offer no relay to peers behind NAT (by default a node relays for them within the limits below).
    #[arg(long)]
    no_relay_server: bool,
    /// Relay reservations held for peers behind NAT at once (default 128).
    #[arg(long, value_name = "N")]
    relay_max_reservations: Option<usize>,
    /// Circuits relayed at once (default 16).
    #[arg(long, value_name = "N")]
    relay_max_circuits: Option<usize>,
    /// A relayed circuit is closed after this long (default 2m).
    #[arg(long, value_name = "DURATION")]
    relay_max_circuit_duration: Option<String>,
    /// A relayed circuit is closed after this many bytes (default 1MiB).
    #[arg(long, value_name = "SIZE")]
    relay_max_circuit_bytes: Option<String>,
    /// Lazy repair: wait until this many of a blob's slivers are lost, then rebuild them in one pass (default 1:
    /// every loss at once; capped at half the losses a blob tolerates).
    #[arg(long, value_name = "N")]
    repair_min_lost: Option<u16>,
    /// Most slivers a blob written here is cut into (default 1000; the default n is the swarm size up to this).
    /// Operators of small swarms lower it so that each network can hold a share (docs/protocol.md §9).
    #[arg(long, value_name = "N")]
    max_shards: Option<u16>,
    /// Origins whose web pages may store blobs through the gateway: * or origins like https://app.example
    /// separated by commas (default none; every origin may read).
    #[arg(long, value_name = "ORIGINS")]
    cors_write_origins: Option<String>,
    /// Time a gateway client has to send a request's headers, and the longest an idle keep-alive connection
    /// stays open (default 10s).
    #[arg(long, value_name = "DURATION")]
    http_header_timeout: Option<String>,
    /// A request body that sends nothing this long fails with 408, and a connection with nothing in flight and
    /// nothing moving is closed (default 60s).
    #[arg(long, value_name = "DURATION")]
    http_idle_timeout: Option<String>,
    /// Gateway connections at most (default 1024).
    #[arg(long, value_name = "N")]
    http_max_connections: Option<usize>,
    /// Gateway connections at most from one IP address (default 64).
    #[arg(long, value_name = "N")]
    http_max_connections_per_ip: Option<usize>,
    /// The slowest a request body may arrive, per second over each header-timeout window, e.g. 1KiB (default
    /// 1KiB).
    #[arg(long, value_name = "SIZE")]
    http_min_body_rate: Option<String>,
    /// Requests per second one gateway client (an IP address, an IPv6 /64, or an API key) may sustain, with
    /// bursts of ten seconds' worth; over it, 429 with Retry-After (default 50; 0: no limit).
    #[arg(long, value_name = "N")]
    http_client_requests: Option<u64>,
    /// Bytes per second one gateway client may move, uploads and downloads together, e.g. 64MiB (default
    /// 64MiB; 0: no limit).
    #[arg(long, value_name = "SIZE")]
    http_client_bytes: Option<String>,
    /// Requests one gateway client may have in flight at once (default 16; 0: no limit).
    #[arg(long, value_name = "N")]
    http_client_in_flight: Option<u32>,
    /// Addresses and networks (like 10.0.0.0/8) the gateway does not limit, separated by commas, or "none"
    /// (default 127.0.0.1,::1: the operator's own tools).
    #[arg(long, value_name = "LIST")]
    http_exempt: Option<String>,
    /// Reverse proxies in front of the gateway, separated by commas: their requests are judged by the client
    /// address they append to X-Forwarded-For (default none).
    #[arg(long, value_name = "LIST")]
    http_trusted_proxies: Option<String>,
    /// File of API keys, one per line: a request with X-Floe-Api-Key set to one of them has that key's budget,
    /// ten times an address's.
    #[arg(long, value_name = "FILE")]
    api_keys: Option<PathBuf>,
    /// The length of an epoch, the unit of blob lifetimes (default 1d; every node of a swarm must use the same;
    /// a devnet may use seconds).
    #[arg(long, value_name = "DURATION")]
    epoch_duration: Option<String>,
    /// Epochs a blob is kept when its put does not say (default 30).
    #[arg(long, value_name = "N")]
    default_epochs: Option<u64>,
    /// The most epochs ahead a put may ask for, and what epochs=max means (default 365).
    #[arg(long, value_name = "N")]
    max_epochs: Option<u64>,
}

#[derive(Args, Debug)]
struct EncodingArgs {
    /// Slivers per segment (n); any ⌊(n−1)/3⌋+1 of them rebuild the blob.
    #[arg(long, value_name = "N", default_value_t = OFFLINE_DEFAULT_SHARDS,
          value_parser = clap::value_parser!(u16).range(i64::from(MIN_SHARDS)..=i64::from(MAX_SHARDS)))]
    shards: u16,
    /// Erasure code: rs-simd (default) or novelpoly.
    #[arg(long, value_name = "ENCODING", default_value = "rs-simd")]
    encoding: EncodingType,
    /// Segment size in bytes (advanced: part of the blob ID; 256 B to 64 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SEGMENT_SIZE)]
    segment_size: u64,
}

impl EncodingArgs {
    fn params_for(&self) -> impl FnOnce(u64) -> Result<BlobParams, SliverFileError> + '_ {
        move |length| {
            Ok(BlobParams::new(
                self.encoding,
                self.shards,
                self.segment_size,
                length,
            )?)
        }
    }
}

fn main() -> ExitCode {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(tracing_subscriber::EnvFilter::from_default_env());
    // Warnings and errors reach the status page whatever RUST_LOG says.
    let recent = floe_node::recent::RecentErrorsLayer
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(logs)
        .with(recent)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if json => {
            let value = match error.downcast_ref::<ClientError>() {
                Some(client) => client.to_json(),
                None => serde_json::json!({"error": {"message": format!("{error:#}")}}),
            };
            // Not println!: a closed standard output must not turn an error report into a panic.
            let _ = writeln!(std::io::stdout(), "{value}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("floe: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Node(args) => {
            let file = match &args.config {
                Some(path) => floe_node::daemon::NodeConfig::from_file(path)?,
                None => floe_node::daemon::NodeConfig::default(),
            };
            let flags = floe_node::daemon::NodeConfig {
                data_dir: args.data_dir,
                listen: args.listen,
                bootstrap: args.bootstrap,
                http: args.http,
                capacity: args.capacity,
                max_body: args.max_body,
                cache_size: args.cache_size,
                repair_grace: args.repair_grace,
                repair_interval: args.repair_interval,
                challenge_interval: args.challenge_interval,
                challenge_settle: args.challenge_settle,
                handoff_timeout: args.handoff_timeout,
                partial_ttl: args.partial_ttl,
                newcomer_age: args.newcomer_age,
                upnp: args.no_upnp.then_some(false),
                max_connections: args.max_connections,
                relay_server: args.no_relay_server.then_some(false),
                relay_max_reservations: args.relay_max_reservations,
                relay_max_circuits: args.relay_max_circuits,
                relay_max_circuit_duration: args.relay_max_circuit_duration,
                relay_max_circuit_bytes: args.relay_max_circuit_bytes,
                repair_min_lost: args.repair_min_lost,
                max_shards: args.max_shards,
                cors_write_origins: args.cors_write_origins,
                http_header_timeout: args.http_header_timeout,
                http_idle_timeout: args.http_idle_timeout,
                http_max_connections: args.http_max_connections,
                http_max_connections_per_ip: args.http_max_connections_per_ip,
                http_min_body_rate: args.http_min_body_rate,
                http_client_requests: args.http_client_requests,
                http_client_bytes: args.http_client_bytes,
                http_client_in_flight: args.http_client_in_flight,
                http_exempt: args.http_exempt,
                http_trusted_proxies: args.http_trusted_proxies,
                api_keys: args.api_keys,
                epoch_duration: args.epoch_duration,
                default_epochs: args.default_epochs,
                max_epochs: args.max_epochs,
            };
            runtime()?.block_on(floe_node::daemon::run(file.merge(flags)))?;
        }
        Command::Devnet {
            nodes,
            base_port,
            data_dir,
            cache_size,
            max_body,
            epoch_duration,
        } => {
            runtime()?.block_on(floe_node::devnet::run(
                nodes,
                base_port,
                data_dir,
                cache_size,
                max_body,
                epoch_duration,
            ))?;
        }
        Command::Put {
            file,
            content_type,
            epochs,
            permanent,
            gateway,
        } => {
            let source = Source::from_arg(&file);
            let answer = client::put(
                &gateway.gateway,
                &source,
                content_type.as_deref(),
                client::PutParams { epochs, permanent },
                json,
            )?;
            if json {
                client::print_json(&answer)?;
            } else {
                let id = client::blob_id_of(&answer).ok_or_else(|| {
                    ClientError::BadAnswer("the put answer has no blob ID".into())
                })?;
                writeln!(std::io::stdout(), "{id}")?;
                // Standard error, so scripts that read the blob ID from standard output keep working.
                let token = answer["newlyCreated"]["deletionToken"]
                    .as_str()
                    .or_else(|| answer["alreadyCertified"]["deletionToken"].as_str());
                if let Some(token) = token {
                    writeln!(
                        std::io::stderr(),
                        "deletion token: {token}\n(shown once; `floe delete {id} --token {token}` deletes this copy)"
                    )?;
                }
            }
        }
        Command::Site(SiteCommand::Resolve { name, gateway }) => {
            let answer = floe_node::site_name::resolve(&gateway.gateway, &name)?;
            if json {
                client::print_json(&answer)?;
            } else {
                writeln!(
                    std::io::stdout(),
                    "{}",
                    answer["siteId"].as_str().unwrap_or_default()
                )?;
                writeln!(
                    std::io::stderr(),
                    "sequence {}: {}",
                    answer["sequence"],
                    answer["originUrl"].as_str().unwrap_or_default()
                )?;
            }
        }
        Command::Site(SiteCommand::Publish {
            dir,
            epochs,
            permanent,
            name_key,
            gateway,
        }) => {
            let key = name_key.map(|path| (path, floe_node::site_name::KeyFile::CreateIfMissing));
            let answer = publish_site(&gateway.gateway, &dir, epochs, permanent, key)?;
            print_published(&answer, json)?;
        }
        Command::Site(SiteCommand::Update {
            dir,
            name_key,
            epochs,
            permanent,
            gateway,
        }) => {
            let key = Some((name_key, floe_node::site_name::KeyFile::MustExist));
            let answer = publish_site(&gateway.gateway, &dir, epochs, permanent, key)?;
            print_published(&answer, json)?;
        }
        Command::Delete {
            blob_id,
            token,
            gateway,
        } => {
            let answer = client::delete(&gateway.gateway, &blob_id, &token)?;
            if json {
                client::print_json(&answer)?;
            } else if answer["deleted"].as_bool() == Some(true) {
                println!(
                    "blob {blob_id} deleted ({} of {} holders told; the rest hear it by gossip or their next scan)",
                    answer["holdersReached"], answer["holders"]
                );
            } else if let Some(until) = answer["keptUntilEpoch"].as_u64() {
                println!(
                    "your claim on blob {blob_id} is released; a permanent write keeps the blob until the end of epoch {until}"
                );
            } else {
                println!(
                    "your claim on blob {blob_id} is released; {} other writer(s) still keep it",
                    answer["claimsLeft"]
                );
            }
        }
        Command::Get {
            blob_id,
            output,
            gateway,
        } => {
            let sink = match output {
                Some(path) if path == std::path::Path::new("-") => Sink::Stdout,
                Some(path) => Sink::File(path),
                None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => anyhow::bail!(
                    "standard output is a terminal: give -o FILE, or -o - to print the blob anyway"
                ),
                None => Sink::Stdout,
            };
            if json && sink == Sink::Stdout {
                anyhow::bail!(
                    "--json prints a summary on standard output: give -o FILE for the blob"
                );
            }
            let bytes = client::get(&gateway.gateway, &blob_id, &sink)?;
            if let Sink::File(path) = &sink {
                if json {
                    client::print_json(&serde_json::json!({
                        "blobId": blob_id, "bytes": bytes, "output": path.display().to_string(),
                    }))?;
                } else {
                    eprintln!("floe: wrote {bytes} bytes to {}", path.display());
                }
            }
        }
        Command::Status { blob_id, gateway } => {
            let status = client::status(&gateway.gateway, &blob_id)?;
            if json {
                client::print_json(&status)?;
            } else {
                println!(
                    "blob {blob_id}: {} bytes, {} slivers ({} needed) on {} holders, {} on peers this node knows",
                    status["size"],
                    status["slivers"],
                    status["sourceShards"],
                    status["holders"],
                    status["sliversOnKnownPeers"]
                );
                let health = &status["health"];
                let state = match (health["full"].as_bool(), health["readable"].as_bool()) {
                    (Some(true), _) => "full",
                    (_, Some(true)) => "degraded (readable)",
                    _ => "unreadable from this node's view",
                };
                println!(
                    "health: {}/{} slivers on reachable holders, {state}{}",
                    health["sliversPresent"],
                    health["shards"],
                    if health["repairInProgress"].as_bool() == Some(true) {
                        ", repair in progress"
                    } else {
                        ""
                    }
                );
                match status["endEpoch"].as_u64() {
                    Some(end) => println!(
                        "stored until the end of epoch {end} (docs/operators.md, \"Lifetimes\")"
                    ),
                    None => println!("stored with no end epoch"),
                }
            }
        }
        Command::BlobId { file, encoding } => {
            let metadata = sliver_files::blob_id_of_file(&file, encoding.params_for())?;
            if json {
                client::print_json(&serde_json::json!({"blobId": metadata.blob_id().to_string()}))?;
            } else {
                writeln!(std::io::stdout(), "{}", metadata.blob_id())?;
            }
        }
        Command::Slivers(SliversCommand::Encode {
            file,
            out,
            encoding,
        }) => {
            let metadata = sliver_files::encode_to_dir(&file, &out, encoding.params_for())?;
            let params = metadata.params();
            if json {
                client::print_json(&serde_json::json!({
                    "blobId": metadata.blob_id().to_string(),
                    "shards": params.shards(),
                    "sourceShards": params.source_shards(),
                    "encodingType": params.encoding().name(),
                    "segments": params.segment_count(),
                    "out": out.display().to_string(),
                }))?;
                return Ok(());
            }
            eprintln!(
                "floe: wrote {} slivers ({} {} source) of {} segment(s) to {}",
                params.shards(),
                params.encoding().name(),
                params.source_shards(),
                params.segment_count(),
                out.display()
            );
            writeln!(std::io::stdout(), "{}", metadata.blob_id())?;
        }
        Command::Slivers(SliversCommand::Decode { dir, blob_id, out }) => {
            let blob_id: BlobId = blob_id
                .parse()
                .with_context(|| format!("--blob-id {blob_id:?}"))?;
            let mut report = DecodeReport::default();
            let result = sliver_files::decode_from_dir(&dir, &blob_id, &out, &mut report);
            if !json {
                for line in &report.rejected {
                    eprintln!("floe: rejected {line}");
                }
            }
            let metadata = result?;
            if json {
                client::print_json(&serde_json::json!({
                    "blobId": blob_id.to_string(),
                    "bytes": metadata.params().blob_length(),
                    "out": out.display().to_string(),
                    "decodedSegments": report.decoded_segments,
                    "segments": metadata.params().segment_count(),
                    "rejected": report.rejected,
                }))?;
                return Ok(());
            }
            eprintln!(
                "floe: rebuilt {} bytes into {} ({} of {} segment(s) needed decoding)",
                metadata.params().blob_length(),
                out.display(),
                report.decoded_segments,
                metadata.params().segment_count()
            );
        }
    }
    Ok(())
}

/// `floe site publish` and `floe site update`: the key first (a key file that cannot be used fails before
/// anything is uploaded), then the site, then the name moved to it.
fn publish_site(
    gateway: &str,
    dir: &std::path::Path,
    epochs: Option<u64>,
    permanent: bool,
    name_key: Option<(PathBuf, floe_node::site_name::KeyFile)>,
) -> anyhow::Result<serde_json::Value> {
    use floe_node::site_name;
    let key = name_key
        .map(|(path, create)| site_name::load_key(&path, create))
        .transpose()?;
    let mut answer =
        floe_node::site_publish::publish(gateway, dir, client::PutParams { epochs, permanent })?;
    if let Some(key) = &key {
        let site: floe_protocol::BlobId = answer["siteId"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| anyhow::anyhow!("the gateway's site ID: {e}"))?;
        let end_epoch = answer["endEpoch"].as_u64().unwrap_or(0);
        answer["name"] = site_name::point(gateway, key, &site, end_epoch).map_err(|e| {
            anyhow::anyhow!("the site {site} is published, but its name did not move: {e}")
        })?;
    }
    Ok(answer)
}

/// What `floe site publish|update` prints: the site ID on stdout, the rest on stderr (or all as JSON).
fn print_published(answer: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        client::print_json(answer)?;
        return Ok(());
    }
    let id = answer["siteId"].as_str().unwrap_or_default();
    writeln!(std::io::stdout(), "{id}")?;
    writeln!(
        std::io::stderr(),
        "published {} files: {} (its own origin), or {}",
        answer["files"],
        answer["originUrl"].as_str().unwrap_or_default(),
        answer["url"].as_str().unwrap_or_default()
    )?;
    let name = &answer["name"];
    if name.is_object() {
        writeln!(
            std::io::stderr(),
            "name {} now points at it (sequence {}, kept by {} of {} peers asked): {}",
            name["name"].as_str().unwrap_or_default(),
            name["sequence"],
            name["keptBy"],
            name["asked"],
            name["originUrl"].as_str().unwrap_or_default()
        )?;
    }
    for (what, field) in [
        ("manifest", "manifestDeletionToken"),
        ("quilt", "quiltDeletionToken"),
    ] {
        if let Some(token) = answer[field].as_str() {
            writeln!(std::io::stderr(), "{what} deletion token: {token}")?;
        }
    }
    Ok(())
}
