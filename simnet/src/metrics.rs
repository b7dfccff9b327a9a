//! What a run measures: one [`Row`] per sample interval and a [`Summary`] at the end.

use floe_protocol::write::Millis;
use serde::Serialize;

/// One row of `timeseries.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// End of the interval.
    pub time_ms: Millis,
    /// Nodes up.
    pub live_nodes: u64,
    /// Blobs certified so far.
    pub certified: u64,
    /// Certified blobs with ≥ k good slivers on live, honest holders.
    pub readable: u64,
    /// readable ÷ certified (1 before any blob is certified).
    pub availability: f64,
    /// Blobs that ever had fewer than k good slivers on honest, unwiped disks, live or not.
    pub durability_losses: u64,
    /// Repair traffic so far: fetched slivers plus delivered slivers, bytes on the wire.
    pub repair_bytes: u64,
    /// Read latency percentiles over reads that completed in the interval.
    pub read_p50_ms: Option<u64>,
    /// 99th percentile.
    pub read_p99_ms: Option<u64>,
    /// Reads that completed in the interval.
    pub reads_ok: u64,
    /// Reads that failed in the interval.
    pub reads_failed: u64,
    /// Write latency (to certification) over writes certified in the interval.
    pub write_p50_ms: Option<u64>,
    /// 99th percentile.
    pub write_p99_ms: Option<u64>,
    /// Messages sent in the interval per live node.
    pub messages_per_node: f64,
    /// Bytes sent in the interval per live node.
    pub bytes_per_node: f64,
    /// Repairs running at the end of the interval.
    pub active_repairs: u64,
}

impl Row {
    /// The CSV header, matching [`Row::csv`].
    pub const CSV_HEADER: &'static str = "time_ms,live_nodes,certified,readable,availability,durability_losses,\
repair_bytes,read_p50_ms,read_p99_ms,reads_ok,reads_failed,write_p50_ms,write_p99_ms,messages_per_node,\
bytes_per_node,active_repairs";

    /// The row as CSV (no trailing newline); missing percentiles are empty cells.
    pub fn csv(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        format!(
            "{},{},{},{},{:.6},{},{},{},{},{},{},{},{},{:.3},{:.1},{}",
            self.time_ms,
            self.live_nodes,
            self.certified,
            self.readable,
            self.availability,
            self.durability_losses,
            self.repair_bytes,
            opt(self.read_p50_ms),
            opt(self.read_p99_ms),
            self.reads_ok,
            self.reads_failed,
            opt(self.write_p50_ms),
            opt(self.write_p99_ms),
            self.messages_per_node,
            self.bytes_per_node,
            self.active_repairs
        )
    }
}

/// Headline numbers of a run (`summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Run seed.
    pub seed: u64,
    /// `git rev-parse HEAD` of the working tree, or "unknown"; filled in by the output writer.
    pub git_commit: String,
    /// BLAKE3 of the scenario file, hex.
    pub scenario_hash: String,
    /// BLAKE3 over every processed event in order, hex: equal for equal (scenario, seed, code).
    pub trace_hash: String,
    /// Events processed.
    pub events: u64,
    /// Simulated time, ms.
    pub simulated_ms: Millis,
    /// n.
    pub shards: u16,
    /// Nodes at time 0.
    pub nodes_initial: u64,
    /// Nodes that ever existed (arrivals included).
    pub nodes_total: u64,
    /// Nodes up at the end.
    pub nodes_live_final: u64,
    /// Blobs in the workload.
    pub blobs: u64,
    /// Blobs certified (expired ones included).
    pub blobs_certified: u64,
    /// Writes that failed or were abandoned (writer crashed) before certification.
    pub writes_failed: u64,
    /// Writes of blobs over one segment, delivered run by run by `stream_write::StreamWrite`.
    pub writes_streamed: u64,
    /// Store requests of streamed writes (one run of one index each; retries included).
    pub stream_runs_sent: u64,
    /// Availability at the end.
    pub availability_final: f64,
    /// Lowest sampled availability.
    pub availability_min: f64,
    /// Mean of the sampled availability.
    pub availability_mean: f64,
    /// Certified blobs readable at the end.
    pub blobs_readable_final: u64,
    /// Certified blobs with all n slivers good on live honest holders at the end.
    pub blobs_fully_replicated_final: u64,
    /// Blobs that lost durability (see [`Row::durability_losses`]).
    pub durability_losses: u64,
    /// Repair bytes on the wire.
    pub repair_bytes: u64,
    /// Repairs started (a leader claimed a blob).
    pub repairs_started: u64,
    /// Repairs that planned moves and ran the state machine.
    pub repairs_run: u64,
    /// Repairs whose machine reported Finished.
    pub repairs_finished: u64,
    /// Repairs whose machine reported Failed (fewer than k valid slivers fetched).
    pub repairs_failed: u64,
    /// Repairs dropped because their leader crashed.
    pub repairs_abandoned: u64,
    /// Repairs with nothing to do by the time the lookup returned, or no live candidate.
    pub repairs_empty: u64,
    /// Repair evaluations where the leader rule picked a byzantine holder (which never repairs).
    pub repair_evaluations_blocked_by_byzantine_leader: u64,
    /// Forged holder lists announced by hijacking byzantine holders (`byzantine.behaviour = "hijack"`).
    pub forged_lists_announced: u64,
    /// Of those, refused by the departure-evidence rule (`holders::evidenced`).
    pub forged_lists_refused: u64,
    /// Of those refused, the ones whose statements alone (byzantine holders of k indexes or more) would have
    /// proven the honest holders gone: refused because every honest holder reaches the holders they name.
    pub forged_lists_stopped_by_reach: u64,
    /// Of those, adopted: some live honest holder would have taken the list.
    pub forged_lists_adopted: u64,
    /// Repairs not started because the leader had heard another leader's announcement.
    pub repairs_suppressed_by_gossip: u64,
    /// Repair evaluations that waited for another holder still within its grace period (the node's rule,
    /// `steward::repair_now`), to rebuild holders lost together in one repair.
    pub repairs_waiting_for_pending: u64,
    /// Slivers moved off live holders by rebalancing (hand-offs, no decode).
    pub slivers_handed_off: u64,
    /// Sliver bytes those hand-offs moved.
    pub handoff_bytes: u64,
    /// Rebuilt slivers stored by their new holder.
    pub slivers_rebuilt: u64,
    /// Rebuilt slivers of an index that another repair had already moved off the same departed holder.
    pub duplicate_rebuilds: u64,
    /// Repair deliveries refused because the holder had adopted a superseding announcement.
    pub superseded_deliveries: u64,
    /// Reads that failed although the reader reached k good slivers on live, honest holders of its list when
    /// they started and when they failed: failures not owed to a cut or to lost slivers.
    pub reads_failed_in_reach: u64,
    /// Blobs a partition divided: each side kept its own list while it ran (`sim::sides`).
    pub blobs_divided: u64,
    /// Of those, blobs whose holders all came to one list after healing.
    pub blobs_reunited: u64,
    /// Longest time from the last partition healing to a divided blob's live holders all holding one list.
    pub reunion_ms_max: u64,
    /// Metadata requests holders made after healing to come to one list: catch-ups (holders of k indexes back)
    /// and comparisons with former holders.
    pub reunion_requests: u64,
    /// About the bytes of their answers: 100 bytes a digest answer, and a record naming the blob's n holders for
    /// each whole list fetched.
    pub reunion_answer_bytes: u64,
    /// Answers hijacking byzantine nodes (`byzantine.behaviour = "hijack"`) gave in catch-ups and reunions: each a
    /// forged list naming only byzantine peers, newer than any real one.
    pub reunion_forged_answers: u64,
    /// Holders that adopted such a forged list in a catch-up or reunion: must be 0.
    pub reunion_forged_adopted: u64,
    /// Slivers holders deleted when they adopted the reunited list (the losing side's extra slivers).
    pub reunion_slivers_deleted: u64,
    /// Bytes of those slivers.
    pub reunion_bytes_deleted: u64,
    /// Blobs still on more than one list at the end: must be 0 once a partition healed long enough before.
    pub blobs_divided_final: u64,
    /// Sliver bytes held beyond n of the blobs still divided at the end: must be 0 likewise.
    pub duplicate_bytes_final: u64,
    /// Crashes and departures (churn included).
    pub crashes: u64,
    /// Slivers that rotted.
    pub bitrot_events: u64,
    /// Storage challenges answered with the right sliver.
    pub challenges_passed: u64,
    /// Storage challenges failed (sliver missing, rotted, or withheld).
    pub challenges_failed: u64,
    /// Times a challenger began counting a holder as gone (its failures reached the threshold).
    pub holders_failing: u64,
    /// Times a challenger found one sliver lost (its failures reached the threshold) while its holder still
    /// passed others.
    pub slivers_found_lost: u64,
    /// Stores acknowledged but never written.
    pub lost_writes: u64,
    /// Writes refused before anything was sent: fewer than ⌈2n/3⌉ peers had room (`room::holders_with_room`).
    pub writes_refused_no_room: u64,
    /// Store and repair deliveries a holder refused because they would take it over its capacity.
    pub stores_refused_full: u64,
    /// Most sliver bytes one node held at the end.
    pub stored_bytes_max: u64,
    /// Nodes holding more than their capacity at the end: must be 0.
    pub nodes_over_capacity: u64,
    /// Certified blobs whose lifetime ended and whose slivers their holders dropped (`workload.epoch_ms`).
    pub blobs_expired: u64,
    /// Repairs started of a blob past its end epoch: must be 0.
    pub repairs_of_ended_blobs: u64,
    /// Certified blobs their writer deleted (`workload.delete_fraction`).
    pub blobs_deleted: u64,
    /// Slivers holders dropped because their blob was deleted.
    pub deleted_slivers_dropped: u64,
    /// Holders that were down when a blob they hold was deleted (told later by the blob's tombstones).
    pub deletion_holders_missed: u64,
    /// Slivers of deleted blobs still on holders at the end (down, or departed for good).
    pub deleted_slivers_left: u64,
    /// Longest time from a deletion to the last of its holders dropping its slivers.
    pub deletion_convergence_ms_max: u64,
    /// Store and repair deliveries refused because their blob was deleted (the holder's tombstone refuses them).
    pub stores_refused_deleted: u64,
    /// Repairs started of a deleted blob: must be 0.
    pub repairs_of_deleted_blobs: u64,
    /// Reads started.
    pub reads_started: u64,
    /// Reads that returned k valid slivers.
    pub reads_ok: u64,
    /// Reads that failed.
    pub reads_failed: u64,
    /// Reads dropped because the reader crashed.
    pub reads_abandoned: u64,
    /// Reads whose Ready named an index that never verified: must be 0.
    pub reads_wrong: u64,
    /// Rebuilds whose sources named an index that never verified: must be 0.
    pub rebuilds_wrong: u64,
    /// Read latency over the run.
    pub read_p50_ms: Option<u64>,
    /// 99th percentile.
    pub read_p99_ms: Option<u64>,
    /// Write latency to certification over the run.
    pub write_p50_ms: Option<u64>,
    /// 99th percentile.
    pub write_p99_ms: Option<u64>,
    /// Messages sent (gossip announcements counted once per subscriber).
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Wall-clock seconds the run took (not part of any hash).
    pub wall_seconds: f64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let len = sorted.len() as f64;
    let rank = crate::rng::ceil_ms(p / 100.0 * len).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(usize::MAX);
    sorted.get(index.min(sorted.len() - 1)).copied()
}

/// A latency histogram with 1 ms buckets up to 10 minutes (longer values land in the last bucket), for
/// run-wide percentiles without keeping every sample.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const HISTOGRAM_MS: usize = 600_000;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; HISTOGRAM_MS + 1],
            total: 0,
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, ms: u64) {
        let bucket = usize::try_from(ms)
            .unwrap_or(HISTOGRAM_MS)
            .min(HISTOGRAM_MS);
        self.counts[bucket] += 1;
        self.total += 1;
    }

    /// Nearest-rank percentile.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = crate::rng::ceil_ms(p / 100.0 * self.total as f64).max(1);
        let mut seen = 0;
        for (ms, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return u64::try_from(ms).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[], 50.0), None);
        let mut h = Histogram::default();
        for x in &v {
            h.record(*x);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        let row = Row {
            time_ms: 1,
            live_nodes: 2,
            certified: 3,
            readable: 3,
            availability: 1.0,
            durability_losses: 0,
            repair_bytes: 0,
            read_p50_ms: None,
            read_p99_ms: Some(5),
            reads_ok: 0,
            reads_failed: 0,
            write_p50_ms: None,
            write_p99_ms: None,
            messages_per_node: 0.0,
            bytes_per_node: 0.0,
            active_repairs: 0,
        };
        assert_eq!(
            row.csv().split(',').count(),
            Row::CSV_HEADER.split(',').count()
        );
    }
}
