//! Sweeps: run a scenario for a range of seeds at each value of one parameter (the file's `[sweep]` table), and
//! report the mean and a 95% confidence interval (Student's t over the seeds) of availability and repair bytes.

use std::ops::Range;

use crate::scenario::{Scenario, set_path};
use crate::sim::{RunOptions, run};
use crate::{Error, Summary};

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// Seed.
    pub seed: u64,
    /// Mean sampled availability over the run.
    pub availability_mean: f64,
    /// Lowest sampled availability.
    pub availability_min: f64,
    /// Repair bytes.
    pub repair_bytes: u64,
    /// Durability losses.
    pub durability_losses: u64,
    /// Reads that succeeded.
    pub reads_ok: u64,
    /// Reads that failed.
    pub reads_failed: u64,
    /// Median read latency.
    pub read_p50_ms: Option<u64>,
    /// 99th percentile read latency.
    pub read_p99_ms: Option<u64>,
    /// Trace hash.
    pub trace_hash: String,
}

impl SweepRun {
    fn from_summary(s: &Summary) -> Self {
        Self {
            seed: s.seed,
            availability_mean: s.availability_mean,
            availability_min: s.availability_min,
            repair_bytes: s.repair_bytes,
            durability_losses: s.durability_losses,
            reads_ok: s.reads_ok,
            reads_failed: s.reads_failed,
            read_p50_ms: s.read_p50_ms,
            read_p99_ms: s.read_p99_ms,
            trace_hash: s.trace_hash.clone(),
        }
    }
}

/// A mean with the half-width of its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Mean.
    pub mean: f64,
    /// Half-width of the 95% interval (0 with one run).
    pub ci95: f64,
}

/// All runs at one parameter value.
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// The value, as TOML text ("base" without a `[sweep]` table).
    pub value: String,
    /// The runs, by seed.
    pub runs: Vec<SweepRun>,
    /// Availability (time-averaged per run) across seeds.
    pub availability: Estimate,
    /// Mean over seeds of the lowest availability in each run.
    pub availability_min_mean: f64,
    /// Repair bytes across seeds.
    pub repair_bytes: Estimate,
    /// Mean durability losses.
    pub durability_losses_mean: f64,
}

/// A whole sweep.
#[derive(Debug, Clone)]
pub struct SweepResult {
    /// The dotted parameter, or "none".
    pub parameter: String,
    /// One point per value.
    pub points: Vec<SweepPoint>,
}

/// Parses `A..B` (B excluded) or `A..=B` (B included).
pub fn parse_seeds(text: &str) -> Result<Range<u64>, Error> {
    let bad = || {
        Error::Invalid(format!(
            "seeds must look like 1..20 or 1..=20, not {text:?}"
        ))
    };
    let (a, b, inclusive) = if let Some((a, b)) = text.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = text.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive {
        b.checked_add(1).ok_or_else(bad)?
    } else {
        b
    };
    if end <= a {
        return Err(bad());
    }
    Ok(a..end)
}

/// Two-sided 97.5% quantiles of Student's t for 1–30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean and 95% confidence half-width of `values` (t-distribution; 1.96 beyond 120 degrees of freedom).
pub fn estimate(values: &[f64]) -> Estimate {
    let n = values.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            ci95: f64::NAN,
        };
    }
    let count = n as f64;
    let mean = values.iter().sum::<f64>() / count;
    if n == 1 {
        return Estimate { mean, ci95: 0.0 };
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
    let df = n - 1;
    let t = match df {
        1..=30 => T_975[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    };
    Estimate {
        mean,
        ci95: t * (variance / count).sqrt(),
    }
}

/// Runs the sweep described by the scenario text `text` over `seeds`. Every point's summary carries the base
/// file's hash.
pub fn sweep(text: &str, seeds: Range<u64>, progress: bool) -> Result<SweepResult, Error> {
    let base = Scenario::from_toml(text)?;
    let table: toml::Table = text.parse()?;
    let mut variants: Vec<(String, Scenario)> = Vec::new();
    let parameter = match &base.sweep {
        Some(spec) if !spec.values.is_empty() => {
            for value in &spec.values {
                let mut point = table.clone();
                set_path(&mut point, &spec.parameter, value.clone())?;
                let mut scenario = Scenario::from_table(point)?;
                scenario.source_hash.clone_from(&base.source_hash);
                let label = match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                variants.push((label, scenario));
            }
            spec.parameter.clone()
        }
        _ => {
            variants.push(("base".to_owned(), base.clone()));
            "none".to_owned()
        }
    };
    let total = variants.len() * usize::try_from(seeds.end - seeds.start).unwrap_or(usize::MAX);
    let mut done = 0usize;
    let mut points = Vec::with_capacity(variants.len());
    for (value, scenario) in variants {
        let mut runs = Vec::new();
        for seed in seeds.clone() {
            let result = run(&scenario, seed, &RunOptions { progress: false })?;
            done += 1;
            if progress {
                let s = &result.summary;
                eprintln!(
                    "floe-simnet sweep [{done}/{total}] {parameter}={value} seed={seed}: availability mean {:.4} \
                     min {:.4}, repair {} bytes, {:.1}s",
                    s.availability_mean, s.availability_min, s.repair_bytes, s.wall_seconds
                );
            }
            runs.push(SweepRun::from_summary(&result.summary));
        }
        let availability = estimate(&runs.iter().map(|r| r.availability_mean).collect::<Vec<_>>());
        let repair_bytes = estimate(
            &runs
                .iter()
                .map(|r| r.repair_bytes as f64)
                .collect::<Vec<_>>(),
        );
        let count = runs.len().max(1) as f64;
        points.push(SweepPoint {
            value,
            availability,
            availability_min_mean: runs.iter().map(|r| r.availability_min).sum::<f64>() / count,
            repair_bytes,
            durability_losses_mean: runs.iter().map(|r| r.durability_losses as f64).sum::<f64>()
                / count,
            runs,
        });
    }
    Ok(SweepResult { parameter, points })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seeds("1..5").unwrap(), 1..5);
        assert_eq!(parse_seeds("1..=5").unwrap(), 1..6);
        assert!(parse_seeds("5..5").is_err());
        assert!(parse_seeds("x").is_err());
    }

    #[test]
    fn confidence_intervals_use_student_t() {
        let e = estimate(&[1.0, 2.0, 3.0]);
        assert!((e.mean - 2.0).abs() < 1e-12);
        // sd = 1, n = 3, t(2) = 4.303: 4.303 / √3.
        assert!((e.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(estimate(&[5.0]).ci95, 0.0);
    }

    #[test]
    fn a_sweep_varies_its_parameter() {
        let text = "duration_ms = 600_000\n[nodes]\ncount = 12\n[workload]\nblobs = 4\nwrite_phase_ms = 10_000\n\
                    [sweep]\nparameter = \"nodes.count\"\nvalues = [8, 16]\n";
        let result = sweep(text, 1..3, false).unwrap();
        assert_eq!(result.parameter, "nodes.count");
        assert_eq!(result.points.len(), 2);
        assert_eq!(result.points[0].value, "8");
        assert_eq!(result.points[1].runs.len(), 2);
        assert!(result.points.iter().all(|p| p.availability.mean == 1.0));
    }
}
