//! `floe-simnet`: run a scenario, check that it replays, or sweep it over seeds and one parameter.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use floe_simnet::{RunOptions, Scenario, output, run, sweep};

/// jemalloc: the simulator's hot loop is dominated by small short-lived allocations, which glibc's malloc served
/// slower (docs/performance.md, the simulator section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Deterministic discrete-event simulator for floe.
#[derive(Debug, Parser)]
#[command(name = "floe-simnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario with one seed; write timeseries.csv, summary.json and timeseries.svg.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The run seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Run twice and fail unless both runs produce the same trace hash.
        #[arg(long)]
        check_determinism: bool,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Measure this machine's sliver verification and consistency-check throughput (one core) and print them
    /// as a scenario's [cpu] table.
    Cpu {
        /// Slivers per blob (n).
        #[arg(long, default_value_t = 20)]
        shards: u16,
        /// Blob size in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        size: u64,
        /// Seconds spent on each measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Run a scenario over a range of seeds at each value of its [sweep] parameter; write sweep.csv, runs.csv.
    Sweep {
        /// The scenario file (TOML), optionally with a [sweep] table.
        scenario: PathBuf,
        /// Seeds: A..B (B excluded) or A..=B.
        #[arg(long)]
        seeds: String,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
    },
}

fn read_scenario(path: &Path) -> Result<(String, Scenario)> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let scenario =
        Scenario::from_toml(&text).with_context(|| format!("loading {}", path.display()))?;
    Ok((text, scenario))
}

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floe-simnet: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            scenario,
            seed,
            out,
            check_determinism,
            quiet,
        } => {
            let (_, sc) = read_scenario(&scenario)?;
            let options = RunOptions { progress: !quiet };
            let result = run(&sc, seed, &options).context("running the scenario")?;
            output::write_run(&out, &result, &output::git_commit())
                .with_context(|| format!("writing outputs to {}", out.display()))?;
            let s = &result.summary;
            println!(
                "{} seed {}: availability final {:.4} min {:.4} mean {:.4}; durability losses {}; repair {} bytes \
                 ({} repairs, {} duplicate rebuilds); reads {} ok / {} failed / {} wrong; {} events in {:.1}s; \
                 trace {}",
                if s.scenario.is_empty() {
                    "scenario"
                } else {
                    &s.scenario
                },
                s.seed,
                s.availability_final,
                s.availability_min,
                s.availability_mean,
                s.durability_losses,
                s.repair_bytes,
                s.repairs_run,
                s.duplicate_rebuilds,
                s.reads_ok,
                s.reads_failed,
                s.reads_wrong,
                s.events,
                s.wall_seconds,
                s.trace_hash
            );
            if s.forged_lists_announced > 0 {
                println!(
                    "forged holder lists: {} announced, {} refused ({} only because honest holders reach the \
                     holders named gone), {} adopted",
                    s.forged_lists_announced,
                    s.forged_lists_refused,
                    s.forged_lists_stopped_by_reach,
                    s.forged_lists_adopted
                );
            }
            if check_determinism {
                let again = run(&sc, seed, &RunOptions { progress: false })
                    .context("running the scenario a second time")?;
                if again.summary.trace_hash != s.trace_hash {
                    bail!(
                        "not deterministic: trace hashes differ between two runs with seed {seed}: {} and {}",
                        s.trace_hash,
                        again.summary.trace_hash
                    );
                }
                println!(
                    "determinism check passed: both runs have trace {}",
                    s.trace_hash
                );
            }
            Ok(())
        }
        Command::Cpu {
            shards,
            size,
            seconds,
        } => {
            let budget = std::time::Duration::try_from_secs_f64(seconds)
                .context("--seconds must be a non-negative number of seconds")?;
            let cpu = floe_simnet::cpu::profile(shards, size, budget)?;
            println!("# floe-simnet cpu --shards {shards} --size {size}: one core of this machine");
            println!("[cpu]");
            println!("verify_mb_per_s = {:.1}", cpu.verify_mb_per_s);
            println!("check_mb_per_s = {:.1}", cpu.check_mb_per_s);
            Ok(())
        }
        Command::Sweep {
            scenario,
            seeds,
            out,
            quiet,
        } => {
            let (text, _) = read_scenario(&scenario)?;
            let seeds = sweep::parse_seeds(&seeds)?;
            let result = sweep::sweep(&text, seeds, !quiet).context("running the sweep")?;
            output::write_sweep(&out, &result)
                .with_context(|| format!("writing outputs to {}", out.display()))?;
            for p in &result.points {
                println!(
                    "{}={}: availability {:.4} ± {:.4}, repair bytes {:.0} ± {:.0} ({} seeds)",
                    result.parameter,
                    p.value,
                    p.availability.mean,
                    p.availability.ci95,
                    p.repair_bytes.mean,
                    p.repair_bytes.ci95,
                    p.runs.len()
                );
            }
            Ok(())
        }
    }
}
