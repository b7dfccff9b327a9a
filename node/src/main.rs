//! `floe`: the command line of the floe storage network.
//!
//! Today it offers the offline tools: computing a blob ID, and splitting a file into verifiable sliver files
//! and back. `floe node`, the gateway client and the devnet arrive with the node (see the README's roadmap).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use floe_node::sliver_files::{self, DecodeReport, SliverFileError};
use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, MAX_SHARDS, MIN_SHARDS};
use floe_protocol::{BlobId, BlobParams, EncodingType};

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
        /// The blob ID to rebuild; every sliver is checked against it.
        #[arg(long, value_name = "ID")]
        blob_id: String,
        /// Where to write the blob; must not exist yet.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
