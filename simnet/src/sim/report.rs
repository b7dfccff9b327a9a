//! Reporting: periodic samples and the run's summary.

use super::*;

impl Sim {
    // -----------------------------------------------------------------------------------------------------------
    // Reporting

    pub(super) fn sample(&mut self) {
        self.last_sample = Some(self.now);
        let mut interval = std::mem::take(&mut self.interval);
        interval.read_ms.sort_unstable();
        interval.write_ms.sort_unstable();
        let live = self.alive_count;
        let per_node = |x: u64| {
            if live == 0 {
                0.0
            } else {
                x as f64 / live as f64
            }
        };
        let availability = if self.certified == 0 {
            1.0
        } else {
            self.readable as f64 / self.certified as f64
        };
        let row = Row {
            time_ms: self.now,
            live_nodes: live,
            certified: self.certified,
            readable: self.readable,
            availability,
            durability_losses: self.lost,
            repair_bytes: self.s.repair_bytes,
            read_p50_ms: percentile(&interval.read_ms, 50.0),
            read_p99_ms: percentile(&interval.read_ms, 99.0),
            reads_ok: interval.reads_ok,
            reads_failed: interval.reads_failed,
            write_p50_ms: percentile(&interval.write_ms, 50.0),
            write_p99_ms: percentile(&interval.write_ms, 99.0),
            messages_per_node: per_node(interval.messages),
            bytes_per_node: per_node(interval.bytes),
            active_repairs: self.active_repairs,
        };
        if self.progress && self.now >= self.next_progress {
            let end = self.sc.duration_ms.max(1);
            eprintln!(
                "floe-simnet: {:5.1}% t={:.2}h live={} availability={:.4} losses={} repairs={} events={}",
                self.now as f64 * 100.0 / end as f64,
                self.now as f64 / 3_600_000.0,
                live,
                availability,
                self.lost,
                self.s.repairs_started,
                self.s.events
            );
            self.next_progress = self.now.saturating_add((end / 20).max(1));
        }
        self.rows.push(row);
    }

    pub(super) fn finish(mut self, started: Instant) -> RunResult {
        let rows = std::mem::take(&mut self.rows);
        let availabilities: Vec<f64> = rows.iter().map(|r| r.availability).collect();
        let full = self
            .blobs
            .iter()
            .filter(|b| b.status == Status::Certified && b.good_live == u32::from(b.n))
            .count();
        let mut s = std::mem::take(&mut self.s);
        s.scenario = self.sc.name.clone();
        s.seed = self.seed;
        s.git_commit = "unknown".into();
        s.scenario_hash = self.sc.source_hash.clone();
        s.trace_hash = self.trace.finalize();
        s.simulated_ms = self.sc.duration_ms;
        s.shards = self.sc.shards();
        s.nodes_initial = u64::from(self.sc.nodes.count);
        s.nodes_total = as_u64(self.nodes.len());
        s.nodes_live_final = self.alive_count;
        s.blobs = as_u64(self.originals);
        (s.blobs_divided_final, s.duplicate_bytes_final) = self.divided_at_end();
        // Expired and deleted blobs were certified too.
        s.blobs_certified = self.certified + s.blobs_expired + s.blobs_deleted;
        s.deleted_slivers_left = self.deleted_slivers_left();
        s.availability_final = availabilities.last().copied().unwrap_or(1.0);
        s.availability_min = availabilities.iter().copied().fold(1.0, f64::min);
        s.availability_mean = if availabilities.is_empty() {
            1.0
        } else {
            availabilities.iter().sum::<f64>() / availabilities.len() as f64
        };
        s.blobs_readable_final = self.readable;
        s.blobs_fully_replicated_final = as_u64(full);
        s.durability_losses = self.lost;
        s.read_p50_ms = self.read_hist.percentile(50.0);
        s.read_p99_ms = self.read_hist.percentile(99.0);
        s.write_p50_ms = self.write_hist.percentile(50.0);
        s.write_p99_ms = self.write_hist.percentile(99.0);
        s.stored_bytes_max = self.nodes.iter().map(|n| n.stored).max().unwrap_or(0);
        let capacity = self.sc.disk.capacity_bytes;
        s.nodes_over_capacity = as_u64(
            self.nodes
                .iter()
                .filter(|n| capacity > 0 && n.stored > capacity)
                .count(),
        );
        s.wall_seconds = started.elapsed().as_secs_f64();
        RunResult { summary: s, rows }
    }
}
