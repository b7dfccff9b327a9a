//! `floe`: the command line of the floe storage network.
//!
//! `floe node` runs a peer; `floe devnet` runs a local swarm; `floe put|get|status` talk to a gateway; the
//! offline tools compute blob IDs and split files into verifiable sliver files and back.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
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
    },
    /// Store FILE through a node's gateway; prints the blob ID.
    Put {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Fetch a blob through a node's gateway.
    Get {
        /// The blob ID (43 characters of URL-safe base64; may start with '-').
        #[arg(allow_hyphen_values = true)]
        blob_id: String,
        /// Write here instead of standard output.
        #[arg(short, long)]
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
    /// The node's gateway.
    #[arg(long, default_value = floe_node::client::DEFAULT_GATEWAY)]
    gateway: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
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
    /// How often the holders of the blobs this node leads are challenged (default 60s).
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
    /// Do not ask the local router for a port mapping (UPnP).
    #[arg(long)]
    no_upnp: bool,
    /// Established connections at most (default 512).
    #[arg(long, value_name = "N")]
    max_connections: Option<u32>,
    /// Lazy repair: wait until this many of a blob's slivers are lost, then rebuild them in one pass (default 1:
    /// every loss at once; capped at half the losses a blob tolerates).
    #[arg(long, value_name = "N")]
    repair_min_lost: Option<u16>,
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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
                upnp: args.no_upnp.then_some(false),
                max_connections: args.max_connections,
                repair_min_lost: args.repair_min_lost,
            };
            runtime()?.block_on(floe_node::daemon::run(file.merge(flags)))?;
        }
        Command::Devnet {
            nodes,
            base_port,
            data_dir,
            cache_size,
            max_body,
        } => {
            runtime()?.block_on(floe_node::devnet::run(
                nodes, base_port, data_dir, cache_size, max_body,
            ))?;
        }
        Command::Put { file, gateway } => {
            let answer = floe_node::client::put(&gateway.gateway, &file, gateway.json)?;
            if gateway.json {
                floe_node::client::print_json(&answer)?;
            } else {
                let id = floe_node::client::blob_id_of(&answer)
                    .context("the gateway's answer has no blob ID")?;
                println!("{id}");
            }
        }
        Command::Get {
            blob_id,
            output,
            gateway,
        } => {
            let bytes = floe_node::client::get(&gateway.gateway, &blob_id, output.as_deref())?;
            if let Some(path) = output {
                eprintln!("floe: wrote {bytes} bytes to {}", path.display());
            }
        }
        Command::Status { blob_id, gateway } => {
            let status = floe_node::client::status(&gateway.gateway, &blob_id)?;
            if gateway.json {
                floe_node::client::print_json(&status)?;
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
            }
        }
        Command::BlobId { file, encoding } => {
            let metadata = sliver_files::blob_id_of_file(&file, encoding.params_for())?;
            println!("{}", metadata.blob_id());
        }
        Command::Slivers(SliversCommand::Encode {
            file,
            out,
            encoding,
        }) => {
            let metadata = sliver_files::encode_to_dir(&file, &out, encoding.params_for())?;
            let params = metadata.params();
            eprintln!(
                "floe: wrote {} slivers ({} {} source) of {} segment(s) to {}",
                params.shards(),
                params.encoding().name(),
                params.source_shards(),
                params.segment_count(),
                out.display()
            );
            println!("{}", metadata.blob_id());
        }
        Command::Slivers(SliversCommand::Decode { dir, blob_id, out }) => {
            let blob_id: BlobId = blob_id
                .parse()
                .with_context(|| format!("--blob-id {blob_id:?}"))?;
            let mut report = DecodeReport::default();
            let result = sliver_files::decode_from_dir(&dir, &blob_id, &out, &mut report);
            for line in &report.rejected {
                eprintln!("floe: rejected {line}");
            }
            let metadata = result?;
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
