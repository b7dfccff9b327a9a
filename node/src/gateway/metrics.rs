//! `GET /metrics`: the node's counters, gauges and latency histograms with libp2p's, in OpenMetrics text.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AppState;
use super::errors::error;

/// `GET /metrics`: libp2p's metrics, then floe's, as one OpenMetrics document.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.node.metrics();
    let c = state.node.store().counters();
    let view = state.node.net().view().await;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut rows: Vec<(&str, &str, u64)> = vec![
        (
            "floe_slivers_stored",
            "sliver indexes held",
            c.slivers.load(Ordering::Relaxed),
        ),
        (
            "floe_bytes_stored",
            "bytes of sliver records held",
            c.bytes.load(Ordering::Relaxed),
        ),
        (
            "floe_corrupt_slivers_found_total",
            "corrupt sliver records found on read",
            c.corrupt_found.load(Ordering::Relaxed),
        ),
        (
            "floe_store_compactions_total",
            "sliver logs compacted",
            c.compactions.load(Ordering::Relaxed),
        ),
        (
            "floe_store_compacted_bytes_total",
            "sliver bytes copied by compaction",
            c.compacted_bytes.load(Ordering::Relaxed),
        ),
        (
            "floe_store_commits_total",
            "group commits of the sliver store",
            c.commits.load(Ordering::Relaxed),
        ),
        (
            "floe_cache_hits_total",
            "gets served from the hot-blob cache",
            state.node.cache().hits.load(Ordering::Relaxed),
        ),
        (
            "floe_cache_segment_hits_total",
            "segments reads took from the cache instead of the holders",
            state.node.cache().segment_hits.load(Ordering::Relaxed),
        ),
        (
            "floe_cache_segment_misses_total",
            "segments reads fetched from the holders (hit rate: hits / (hits + misses))",
            state.node.cache().segment_misses.load(Ordering::Relaxed),
        ),
        (
            "floe_cache_bytes_served_total",
            "bytes answered from the cache: whole blobs, ranges of them, and cached segments",
            state.node.cache().bytes_served.load(Ordering::Relaxed),
        ),
        (
            "floe_cache_bytes",
            "bytes of blobs and segments in the hot-blob cache",
            state.node.cache().bytes(),
        ),
        (
            "floe_puts_total",
            "blobs written",
            m.puts.load(Ordering::Relaxed),
        ),
        (
            "floe_put_failures_total",
            "writes that failed",
            m.put_failures.load(Ordering::Relaxed),
        ),
        (
            "floe_gets_total",
            "blobs read",
            m.gets.load(Ordering::Relaxed),
        ),
        (
            "floe_get_failures_total",
            "reads that failed",
            m.get_failures.load(Ordering::Relaxed),
        ),
        (
            "floe_slivers_received_total",
            "store requests accepted",
            m.slivers_received.load(Ordering::Relaxed),
        ),
        (
            "floe_slivers_served_total",
            "sliver sets served",
            m.slivers_served.load(Ordering::Relaxed),
        ),
        (
            "floe_invalid_slivers_received_total",
            "invalid slivers received",
            m.invalid_slivers_received.load(Ordering::Relaxed),
        ),
        (
            "floe_segments_decoded_total",
            "segments rebuilt by decoding",
            m.segments_decoded.load(Ordering::Relaxed),
        ),
        (
            "floe_partial_indexes_reclaimed_total",
            "partial sliver indexes deleted after --partial-ttl without growing",
            m.partial_indexes_reclaimed.load(Ordering::Relaxed),
        ),
        (
            "floe_segment_checks_skipped_total",
            "segments read without the re-encode check, checked here before",
            m.segment_checks_skipped.load(Ordering::Relaxed),
        ),
        (
            "floe_write_requests_total",
            "store requests sent",
            m.write_requests.load(Ordering::Relaxed),
        ),
        (
            "floe_read_requests_total",
            "read requests sent",
            m.read_requests.load(Ordering::Relaxed),
        ),
        (
            "floe_read_requests_forwarded_total",
            "read requests sent through a relay to a holder reached only through it",
            m.read_requests_forwarded.load(Ordering::Relaxed),
        ),
        (
            "floe_reads_forwarded_total",
            "read requests forwarded, as a relay, to holders reached directly",
            m.reads_forwarded.load(Ordering::Relaxed),
        ),
        (
            "floe_streamed_puts_total",
            "puts spooled to disk and written run by run",
            load(&m.streamed_puts),
        ),
        (
            "floe_connected_peers",
            "connected peers",
            u64::try_from(view.connected).unwrap_or(0),
        ),
        (
            "floe_repairs_started_total",
            "repairs led",
            load(&m.repairs_started),
        ),
        (
            "floe_repairs_done_total",
            "repairs that delivered every rebuilt sliver",
            load(&m.repairs_done),
        ),
        (
            "floe_repairs_failed_total",
            "repairs that failed (retried later)",
            load(&m.repairs_failed),
        ),
        (
            "floe_repairs_unproven_total",
            "repairs not started: no holder found gone was proven gone by the other holders",
            load(&m.repairs_unproven),
        ),
        (
            "floe_holder_lists_unproven_total",
            "repaired holder lists refused: they take indexes from holders not proven gone",
            load(&m.lists_unproven),
        ),
        (
            "floe_slivers_rebuilt_total",
            "slivers rebuilt by decoding and delivered",
            load(&m.slivers_rebuilt),
        ),
        (
            "floe_repair_bytes_fetched_total",
            "sliver bytes fetched for repairs",
            load(&m.repair_bytes_fetched),
        ),
        (
            "floe_repair_bytes_sent_total",
            "rebuilt sliver bytes delivered",
            load(&m.repair_bytes_sent),
        ),
        (
            "floe_repair_segments_decoded_total",
            "segments decoded for repairs",
            load(&m.repair_segments_decoded),
        ),
        (
            "floe_slivers_handed_off_total",
            "slivers handed to their next holder",
            load(&m.slivers_handed_off),
        ),
        (
            "floe_handoff_bytes_sent_total",
            "sliver bytes handed off",
            load(&m.handoff_bytes_sent),
        ),
        (
            "floe_duplicate_slivers_received_total",
            "repaired or handed-off slivers already held",
            load(&m.duplicate_slivers_received),
        ),
        (
            "floe_holder_lists_adopted_total",
            "newer holder lists adopted",
            load(&m.holder_lists_adopted),
        ),
        (
            "floe_handoffs_kept_total",
            "hand-offs whose receiver's list gives the sliver to another peer, so the sender kept its copy",
            load(&m.handoffs_kept),
        ),
        (
            "floe_reunions_total",
            "comparisons of a blob's holder list with its former holders' lists",
            load(&m.reunions),
        ),
        (
            "floe_reunion_lists_adopted_total",
            "holder lists adopted because former holders agreed on a newer one",
            load(&m.reunions_adopted),
        ),
        (
            "floe_stored_outside_own_view_total",
            "slivers stored here although this node's view puts it outside the blob's neighbourhood",
            load(&m.stored_outside_own_view),
        ),
        (
            "floe_placement_disagreements_total",
            "receipts whose holder said it is outside the blob's neighbourhood by its own view",
            load(&m.placement_disagreements),
        ),
        (
            "floe_expired_slivers_dropped_total",
            "slivers deleted because their blob's lifetime was over",
            load(&m.expired_slivers_dropped),
        ),
        (
            "floe_claims_released_total",
            "deletion tokens that released a claim on a blob held here",
            load(&m.claims_released),
        ),
        (
            "floe_deleted_slivers_dropped_total",
            "slivers deleted because their blob was deleted",
            load(&m.deleted_slivers_dropped),
        ),
        (
            "floe_deleted_bytes_reclaimed_total",
            "sliver bytes freed by deletions",
            load(&m.deleted_bytes_reclaimed),
        ),
        (
            "floe_deletions_passed_on_total",
            "deletions passed on to holders of a deleted blob that had not acknowledged it",
            load(&m.deletions_passed_on),
        ),
        (
            "floe_names_kept_total",
            "name records this node started keeping (new names and moves)",
            load(&m.names_kept),
        ),
        (
            "floe_names_passed_on_total",
            "name records passed on to a peer of the name's neighbourhood that confirmed it",
            load(&m.names_passed_on),
        ),
        (
            "floe_blobs_expiring_soon",
            "blobs held here within two epochs of their end epoch",
            load(&m.blobs_expiring_soon),
        ),
        (
            "floe_epoch",
            "the current epoch (--epoch-duration)",
            state.node.current_epoch(),
        ),
        (
            "floe_stores_refused_full_total",
            "store requests refused because they would take this node over --capacity",
            load(&m.stores_refused_full),
        ),
        (
            "floe_holders_full_total",
            "store requests this node sent that the holder refused for lack of room",
            load(&m.holders_full),
        ),
        (
            "floe_peers_without_room",
            "peers that said they have no room left",
            u64::try_from(state.node.peers_without_room()).unwrap_or(u64::MAX),
        ),
        (
            "floe_unexpected_stores_total",
            "store requests whose holder list gives the sliver to another peer, stored within the sender's budget",
            load(&m.unexpected_stores),
        ),
        (
            "floe_unexpected_stores_refused_total",
            "such store requests refused: the sender was over its budget",
            load(&m.unexpected_stores_refused),
        ),
        (
            "floe_announcements_refused_total",
            "gossiped repair announcements refused",
            load(&m.announcements_refused),
        ),
        (
            "floe_challenges_passed_total",
            "challenges sent that holders passed",
            load(&m.challenges_passed),
        ),
        (
            "floe_challenges_failed_total",
            "challenges sent that holders failed",
            load(&m.challenges_failed),
        ),
        (
            "floe_challenges_answered_total",
            "challenges answered",
            load(&m.challenges_answered),
        ),
    ];
    if let Some(free) = state.node.free_bytes() {
        rows.push((
            "floe_free_bytes",
            "bytes this node may still store under --capacity",
            free,
        ));
    }
    let fair = &state.fair_use;
    let limits = fair.config();
    rows.extend([
        (
            "floe_gateway_over_request_rate_total",
            "gateway requests refused with 429: the client was over its request rate",
            load(&fair.counters.over_requests),
        ),
        (
            "floe_gateway_over_byte_budget_total",
            "gateway requests refused with 429: the client was over its byte budget",
            load(&fair.counters.over_bytes),
        ),
        (
            "floe_gateway_over_in_flight_total",
            "gateway requests refused with 429: the client had its most requests in flight",
            load(&fair.counters.over_in_flight),
        ),
        (
            "floe_gateway_unknown_api_keys_total",
            "gateway requests refused with 401: unknown API key",
            load(&fair.counters.unknown_keys),
        ),
        (
            "floe_gateway_client_bytes_total",
            "body bytes charged to limited gateway clients",
            load(&fair.counters.bytes_charged),
        ),
        (
            "floe_gateway_clients",
            "gateway clients with a budget tracked",
            u64::try_from(fair.clients()).unwrap_or(u64::MAX),
        ),
        (
            "floe_gateway_client_requests_per_second",
            "requests per second one gateway client may sustain (0: no limit)",
            limits.requests_per_second,
        ),
        (
            "floe_gateway_client_bytes_per_second",
            "bytes per second one gateway client may move (0: no limit)",
            limits.bytes_per_second,
        ),
        (
            "floe_gateway_client_max_in_flight",
            "requests one gateway client may have in flight (0: no limit)",
            u64::from(limits.max_in_flight),
        ),
    ]);
    // floe's counters live in the node as atomics; they are copied into a registry of constants per scrape and
    // encoded after libp2p's, so the answer is one OpenMetrics document with one EOF.
    let mut floe = Registry::default();
    for (name, help, value) in rows {
        match name.strip_suffix("_total") {
            Some(counter) => floe.register(counter, help, ConstCounter::new(value)),
            None => floe.register(
                name,
                help,
                ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
            ),
        }
    }
    m.latencies.register(&mut floe);
    let mut text = String::new();
    let encoded = prometheus_client::encoding::text::encode_registry(&mut text, &state.registry)
        .and_then(|()| prometheus_client::encoding::text::encode(&mut text, &floe));
    if let Err(e) = encoded {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
