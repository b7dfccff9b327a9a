//! Writing a run's outputs: `timeseries.csv`, `summary.json` and `timeseries.svg`, plus a sweep's
//! `sweep.csv` and `runs.csv`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::Error;
use crate::metrics::Row;
use crate::sim::RunResult;
use crate::sweep::SweepResult;

/// The commit of the working tree the simulator runs from: `FLOE_SIMNET_GIT_COMMIT` when set, else
/// `git rev-parse HEAD`, else "unknown".
pub fn git_commit() -> String {
    if let Ok(commit) = std::env::var("FLOE_SIMNET_GIT_COMMIT") {
        return commit;
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes a run's outputs into `dir` (created if needed), recording `commit` in the summary.
pub fn write_run(dir: &Path, result: &RunResult, commit: &str) -> Result<(), Error> {
    fs::create_dir_all(dir)?;
    let mut csv = String::with_capacity(128 * (result.rows.len() + 1));
    csv.push_str(Row::CSV_HEADER);
    csv.push('\n');
    for row in &result.rows {
        csv.push_str(&row.csv());
        csv.push('\n');
    }
    fs::write(dir.join("timeseries.csv"), csv)?;
    let mut summary = result.summary.clone();
    commit.clone_into(&mut summary.git_commit);
    fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    fs::write(
        dir.join("timeseries.svg"),
        svg(&result.rows, &summary.scenario),
    )?;
    Ok(())
}

/// Writes a sweep's tables into `dir`.
pub fn write_sweep(dir: &Path, sweep: &SweepResult) -> Result<(), Error> {
    fs::create_dir_all(dir)?;
    let mut points = String::from(
        "parameter,value,runs,availability_mean,availability_ci95,availability_min_mean,repair_bytes_mean,\
         repair_bytes_ci95,durability_losses_mean\n",
    );
    for p in &sweep.points {
        let _ = writeln!(
            points,
            "{},{},{},{:.6},{:.6},{:.6},{:.1},{:.1},{:.3}",
            csv_cell(&sweep.parameter),
            csv_cell(&p.value),
            p.runs.len(),
            p.availability.mean,
            p.availability.ci95,
            p.availability_min_mean,
            p.repair_bytes.mean,
            p.repair_bytes.ci95,
            p.durability_losses_mean
        );
    }
    fs::write(dir.join("sweep.csv"), points)?;
    let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    let mut runs = String::from(
        "value,seed,availability_mean,availability_min,repair_bytes,durability_losses,reads_ok,reads_failed,\
         read_p50_ms,read_p99_ms,trace_hash\n",
    );
    for p in &sweep.points {
        for r in &p.runs {
            let _ = writeln!(
                runs,
                "{},{},{:.6},{:.6},{},{},{},{},{},{},{}",
                csv_cell(&p.value),
                r.seed,
                r.availability_mean,
                r.availability_min,
                r.repair_bytes,
                r.durability_losses,
                r.reads_ok,
                r.reads_failed,
                opt(r.read_p50_ms),
                opt(r.read_p99_ms),
                r.trace_hash
            );
        }
    }
    fs::write(dir.join("runs.csv"), runs)?;
    Ok(())
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Two small line charts (availability, cumulative repair bytes) against simulated hours. Hand-written SVG
/// rather than a plotting crate: it is a few dozen lines, and the CSV is there for real analysis.
pub fn svg(rows: &[Row], title: &str) -> String {
    const WIDTH: f64 = 760.0;
    const PANEL: f64 = 220.0;
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const GAP: f64 = 60.0;
    let hours: Vec<f64> = rows
        .iter()
        .map(|r| r.time_ms as f64 / 3_600_000.0)
        .collect();
    let t_max = hours.last().copied().unwrap_or(1.0).max(1e-9);
    let availability: Vec<f64> = rows.iter().map(|r| r.availability).collect();
    let repair: Vec<f64> = rows.iter().map(|r| r.repair_bytes as f64 / 1e6).collect();
    let a_min = availability.iter().copied().fold(1.0, f64::min);
    let a_low = if a_min >= 1.0 {
        0.9
    } else {
        (a_min - 0.05).max(0.0)
    };
    let r_max = repair.iter().copied().fold(0.0, f64::max).max(1e-9);
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        xml_escape(title)
    );
    let panels = [
        ("availability", &availability, a_low, 1.0, "#1f77b4"),
        ("repair MB (cumulative)", &repair, 0.0, r_max, "#d62728"),
    ];
    for (p, (label, ys, y_low, y_high, colour)) in panels.into_iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL + GAP);
        let plot_w = WIDTH - LEFT - RIGHT;
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(out, r#"<text x="{LEFT}" y="{}">{label}</text>"#, y0 - 6.0);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{y_high:.3}</text><text x="{}" y="{}" text-anchor="end">{y_low:.3}</text>"#,
            LEFT - 6.0,
            y0 + 10.0,
            LEFT - 6.0,
            y0 + PANEL
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{t_max:.2} h</text>"#,
            WIDTH - RIGHT,
            y0 + PANEL + 16.0
        );
        let span = (y_high - y_low).max(1e-12);
        let mut points = String::new();
        for (t, y) in hours.iter().zip(ys.iter()) {
            let x = LEFT + t / t_max * plot_w;
            let y = y0 + PANEL - ((y - y_low) / span).clamp(0.0, 1.0) * PANEL;
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.trim_end()
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_well_formed_enough() {
        let rows: Vec<Row> = (1..=3)
            .map(|i| Row {
                time_ms: i * 3_600_000,
                live_nodes: 10,
                certified: 5,
                readable: 5,
                availability: 1.0 - 0.1 * i as f64,
                durability_losses: 0,
                repair_bytes: i * 1_000_000,
                read_p50_ms: None,
                read_p99_ms: None,
                reads_ok: 0,
                reads_failed: 0,
                write_p50_ms: None,
                write_p99_ms: None,
                messages_per_node: 0.0,
                bytes_per_node: 0.0,
                active_repairs: 0,
            })
            .collect();
        let svg = svg(&rows, "a <b> & c");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
