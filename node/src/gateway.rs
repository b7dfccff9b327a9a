//! The HTTP gateway every node serves, compatible with the Walrus aggregator/publisher routes so that dApp
//! code can point at any floe peer.
//!
//! Routes: `PUT /v1/blobs`, `GET|HEAD /v1/blobs/{id}` (with `Range`), `GET /v1/blobs/{id}/status`,
//! `GET /v1/node/status`, `GET /metrics`. Errors are JSON: `{"error": {"status": …, "message": …}}`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures::StreamExt as _;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use floe_protocol::BlobId;

use crate::service::{GetError, Node, PutError};
use crate::stream_put::Spool;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest accepted blob body, in bytes.
    pub max_body: usize,
    /// libp2p's metrics registry (the network's event loop records into it).
    pub registry: Arc<Registry>,
}

#[derive(Clone)]
struct AppState {
    node: Node,
    /// Largest accepted blob body.
    max_body: u64,
    /// libp2p's metrics; floe's own are read from the node at each scrape.
    registry: Arc<Registry>,
}

/// Ranges larger than this are streamed rather than read whole (one segment at the default segment size).
const STREAM_ABOVE: u64 = 16 << 20;
/// Bodies up to this size are encoded in memory; larger ones are spooled to disk and written run by run, so a
/// put's memory does not grow with the blob (docs/protocol.md §10).
const SPOOL_ABOVE: usize = 16 << 20;

/// The router.
pub fn router(node: Node, config: GatewayConfig) -> Router {
    Router::new()
        .route("/v1/blobs", put(put_blob))
        .route("/v1/blobs/{id}", get(get_blob))
        .route("/v1/blobs/{id}/status", get(blob_status))
        .route("/v1/node/status", get(node_status))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see docs/operators.md",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(AppState {
            node,
            max_body: u64::try_from(config.max_body).unwrap_or(u64::MAX),
            registry: config.registry,
        })
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({"error": {"status": status.as_u16(), "message": message.to_string()}})),
    )
        .into_response()
}

fn parse_id(id: &str) -> Result<BlobId, Box<Response>> {
    id.parse::<BlobId>()
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad blob ID: {e}"))))
}

fn too_large(max: u64) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than this gateway accepts ({max} bytes; --max-body)"),
    )
}

/// Receives a PUT body: in memory up to [`SPOOL_ABOVE`], spooled to disk beyond, never more than `max_body`.
async fn receive_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Result<Bytes, Spool>, Response> {
    let max = state.max_body;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if announced.is_some_and(|len| len > max) {
        // A client that waits for `100 Continue` gets the answer before sending anything. Others send the body
        // before they read the answer and would see a broken pipe: take (and drop) up to the limit first, no
        // more than an accepted body would cost.
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits {
            let mut taken = 0u64;
            while let Some(Ok(chunk)) = stream.next().await {
                taken = taken.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                if taken > max {
                    break;
                }
            }
        }
        return Err(too_large(max));
    }
    let mut buffered: Vec<u8> = Vec::new();
    let mut spool: Option<Spool> = None;
    let mut received = 0u64;
    let spool_failed = |e: std::io::Error| {
        error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("spooling the body to disk failed: {e}"),
        )
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            )
        })?;
        received = received.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if received > max {
            return Err(too_large(max));
        }
        match &mut spool {
            Some(spool) => spool.write(&chunk).await.map_err(spool_failed)?,
            None if buffered.len().saturating_add(chunk.len()) > SPOOL_ABOVE => {
                let permit = state
                    .node
                    .streamed_put_permit()
                    .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
                let mut new = Spool::create(state.node.spool_dir(), permit)
                    .await
                    .map_err(spool_failed)?;
                new.write(&buffered).await.map_err(spool_failed)?;
                new.write(&chunk).await.map_err(spool_failed)?;
                buffered = Vec::new();
                spool = Some(new);
            }
            None => buffered.extend_from_slice(&chunk),
        }
    }
    Ok(match spool {
        Some(spool) => Err(spool),
        None => Ok(Bytes::from(buffered)),
    })
}

async fn put_blob(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = match receive_body(&state, &headers, body).await {
        Ok(Ok(bytes)) => state.node.put(bytes).await,
        Ok(Err(spool)) => state.node.put_spooled(spool).await,
        Err(response) => return response,
    };
    match result {
        Ok(outcome) => {
            let certificate: Vec<_> = outcome
                .certificate
                .receipts
                .iter()
                .map(|r| json!({"index": r.index, "holderPublicKey": hex(&r.holder_public_key), "signature": hex(&r.signature)}))
                .collect();
            let id = outcome.blob_id.to_string();
            let body = if outcome.already_certified {
                json!({"alreadyCertified": {"blobId": id, "certificate": certificate}})
            } else {
                json!({"newlyCreated": {"blobObject": {
                    "blobId": id,
                    "size": outcome.size,
                    "encodingType": "rs-simd",
                    "shards": outcome.shards,
                    "certificate": certificate,
                }}})
            };
            axum::Json(body).into_response()
        }
        Err(PutError::Params(e)) => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        Err(e @ (PutError::NotCertified { .. } | PutError::Busy(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against a blob of `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // Multiple ranges: serve the whole blob, as RFC 9110 allows.
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let start: u64 = a.parse().ok()?;
            let last = if b.is_empty() {
                None
            } else {
                Some(b.parse::<u64>().ok()?)
            };
            // RFC 9110: a last position before the first makes the range invalid, to be ignored.
            if last.is_some_and(|last| last < start) {
                return None;
            }
            (
                start,
                last.map_or(len, |last| last.saturating_add(1).min(len)),
            )
        }
        (true, false) => {
            let suffix: u64 = b.parse().ok()?;
            (len.saturating_sub(suffix), len)
        }
        (true, true) => return None,
    };
    Some(if parsed.0 < parsed.1 {
        Ok(parsed)
    } else {
        Err(())
    })
}

async fn get_blob(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let blob_id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    // A hot blob is served from memory: no lookup, no holders asked.
    let cached = state.node.cached(&blob_id);
    let metadata = match &cached {
        Some((metadata, _)) => metadata.clone(),
        None => match state.node.find_metadata(&blob_id).await {
            Ok((metadata, _)) => metadata,
            Err(e) => return get_error(e),
        },
    };
    let len = metadata.params().blob_length();
    let range = match headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len))
    {
        Some(Ok(range)) => Some(range),
        Some(Err(())) => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the blob has {len} bytes"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
        None => None,
    };
    let (start, end) = range.unwrap_or((0, len));
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ETAG, format!("\"{blob_id}\""))
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start);
    if range.is_some() {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    if method == Method::HEAD {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e));
    }
    if let Some((_, blob)) = &cached
        && let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end))
        && let Some(bytes) = blob.get(s..e)
    {
        return builder
            .body(Body::from(blob.slice_ref(bytes)))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e));
    }
    // Large ranges stream round by round (memory stays at a few segments); small ones are read whole, which
    // also fills the hot-blob cache.
    if end - start > STREAM_ABOVE {
        return match state.node.get_stream(&blob_id, start, end).await {
            Ok((first, rest)) => {
                let rest = futures::stream::unfold(rest, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let body = futures::stream::iter(first.map(Ok))
                    .chain(rest)
                    .map(|item| item.map_err(std::io::Error::other));
                builder
                    .body(Body::from_stream(body))
                    .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
            }
            Err(e) => get_error(e),
        };
    }
    match state.node.get(&blob_id, Some((start, end))).await {
        Ok((_, bytes)) => builder
            .body(Body::from(bytes))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => get_error(e),
    }
}

fn get_error(e: GetError) -> Response {
    match e {
        GetError::NotFound(_) => error(StatusCode::NOT_FOUND, e),
        GetError::NotEnoughSlivers { .. } => error(StatusCode::SERVICE_UNAVAILABLE, e),
        GetError::Inconsistent(_) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        GetError::Range { .. } => error(StatusCode::RANGE_NOT_SATISFIABLE, e),
        GetError::TooLarge { .. } => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        GetError::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        GetError::Internal(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn blob_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let blob_id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (metadata, holders) = match state.node.find_metadata(&blob_id).await {
        Ok(found) => found,
        Err(e) => return get_error(e),
    };
    let view = state.node.net().view().await;
    let reachable: Vec<Vec<u8>> = view.peers.iter().map(|p| p.to_bytes()).collect();
    let connected: Vec<Vec<u8>> = view.connected_peers.iter().map(|p| p.to_bytes()).collect();
    let me = state.node.peer_id().to_bytes();
    let holders_known = holders
        .iter()
        .filter(|h| **h == me || reachable.contains(h))
        .count();
    // A sliver counts as present when its holder is this node or connected now.
    let present = holders
        .iter()
        .filter(|h| **h == me || connected.contains(h))
        .count();
    let repair = state.node.repair_view(&blob_id);
    let p = metadata.params();
    let mut distinct = holders.clone();
    distinct.sort();
    distinct.dedup();
    axum::Json(json!({
        "blobId": blob_id.to_string(),
        "size": p.blob_length(),
        "encodingType": p.encoding().name(),
        "shards": p.shards(),
        "sourceShards": p.source_shards(),
        "segments": p.segment_count(),
        "holders": distinct.len(),
        "slivers": holders.len(),
        "sliversOnKnownPeers": holders_known,
        "certificateQuorum": floe_protocol::write::certificate_quorum(p.shards()),
        "health": {
            "sliversPresent": present,
            "shards": p.shards(),
            "full": present == usize::from(p.shards()),
            "readable": present >= usize::from(p.source_shards()),
            "repairInProgress": repair.in_progress,
        },
    }))
    .into_response()
}

async fn node_status(State(state): State<AppState>) -> Response {
    let view = state.node.net().view().await;
    let counters = state.node.store().counters();
    let m = state.node.metrics();
    axum::Json(json!({
        "peerId": state.node.peer_id().to_string(),
        "listenAddresses": view.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "connectedPeers": view.connected,
        "knownPeers": view.peers.len(),
        "sliversStored": counters.slivers.load(Ordering::Relaxed),
        "bytesStored": counters.bytes.load(Ordering::Relaxed),
        "corruptSliversFound": counters.corrupt_found.load(Ordering::Relaxed),
        "repair": {
            "repairsStarted": m.repairs_started.load(Ordering::Relaxed),
            "repairsDone": m.repairs_done.load(Ordering::Relaxed),
            "repairsFailed": m.repairs_failed.load(Ordering::Relaxed),
            "sliversRebuilt": m.slivers_rebuilt.load(Ordering::Relaxed),
            "sliversHandedOff": m.slivers_handed_off.load(Ordering::Relaxed),
            "holderListsAdopted": m.holder_lists_adopted.load(Ordering::Relaxed),
        },
        "challenges": {
            "passed": m.challenges_passed.load(Ordering::Relaxed),
            "failed": m.challenges_failed.load(Ordering::Relaxed),
            "answered": m.challenges_answered.load(Ordering::Relaxed),
            "failingPeers": state.node.challenge_failures().iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, n)| (p.to_string(), *n))
                .collect::<std::collections::BTreeMap<String, u32>>(),
        },
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.node.metrics();
    let c = state.node.store().counters();
    let view = state.node.net().view().await;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let rows: Vec<(&str, &str, u64)> = vec![
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
            "floe_cache_bytes",
            "bytes of blobs in the hot-blob cache",
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
            "floe_put_latency_ms_total",
            "sum of put latencies",
            m.put_ms_total.load(Ordering::Relaxed),
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
            "floe_get_latency_ms_total",
            "sum of get latencies",
            m.get_ms_total.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=50-1000", 100), Some(Ok((50, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
        assert_eq!(parse_range("bytes=-", 100), None);
        assert_eq!(parse_range("bytes=5-3", 100), None);
    }
}
