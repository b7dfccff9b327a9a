//! The blob routes: `PUT /v1/blobs`, `GET|HEAD /v1/blobs/{id}` (ranges and conditional requests),
//! `GET /v1/blobs/{id}/byte-range`, `GET /v1/blobs/by-object-id/{id}` and `GET /v1/blobs/{id}/status`.
//!
//! Handlers read the request, ask the node and shape the answer; which ranges and preconditions apply is decided
//! in [`super::http_cache`], what Walrus clients are told in [`super::walrus`].

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::json;

use floe_protocol::{BlobId, content_type};

use super::AppState;
use super::errors::{bare, error};
use super::http_cache::{self, Precondition};
use super::walrus;
use crate::cache::BlobBytes;
use crate::service::{GetError, PutError, PutOptions};
use crate::spool::Spool;

/// Ranges larger than this are streamed rather than read whole (one segment at the default segment size).
const STREAM_ABOVE: u64 = 16 << 20;
/// Bodies up to this size are encoded in memory; larger ones are spooled to disk and written run by run, so a
/// put's memory does not grow with the blob (docs/protocol.md §10).
const SPOOL_ABOVE: usize = 16 << 20;
/// Blobs never change, so caches may keep them for a year; Walrus' aggregator says a day.
pub(super) const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// Blobs are whatever their writers put there, served from the gateway's own origin: a blob shown as a page runs
/// in a sandbox with an opaque origin, so its scripts cannot use this gateway as the page's own origin (status
/// page, writes) — only as any other website could.
pub(super) const BLOB_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-downloads allow-modals";

pub(super) fn parse_id(id: &str) -> Result<BlobId, Box<Response>> {
    id.parse::<BlobId>()
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("bad blob ID: {e}"))))
}

fn too_large(max: u64) -> Response {
    let mut response = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than this gateway accepts ({max} bytes; --max-body)"),
    );
    // The body is not read: the connection cannot carry another request after it.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why reading a body stopped.
fn body_error(e: &axum::Error) -> Response {
    if super::serve::is_too_slow(e) {
        error(StatusCode::REQUEST_TIMEOUT, e)
    } else {
        error(
            StatusCode::BAD_REQUEST,
            format!("reading the body failed: {e}"),
        )
    }
}

/// A body received: in memory with its share of the memory budget (held until the put is done), or spooled.
enum Received {
    Memory(Bytes, Option<tokio::sync::OwnedSemaphorePermit>),
    Spooled(Spool),
}

/// Takes `kib` more of the budget for bodies held in memory, into `held`; a 503 when the budget is spent.
pub(super) fn reserve(
    budget: &std::sync::Arc<tokio::sync::Semaphore>,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    kib: u32,
) -> Result<(), Box<Response>> {
    if kib == 0 {
        return Ok(());
    }
    let Ok(more) = std::sync::Arc::clone(budget).try_acquire_many_owned(kib) else {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is receiving too many request bodies at once; try again shortly",
        )));
    };
    match held {
        Some(held) => held.merge(more),
        None => *held = Some(more),
    }
    Ok(())
}

fn kib_of(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Receives a PUT body: in memory up to [`SPOOL_ABOVE`] (within the node's budget for bodies in memory), spooled
/// to disk beyond, never more than `max_body`.
async fn receive_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Received, Response> {
    let max = state.max_body;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max) {
        // Refused before a byte of the body is read; the server lingers briefly on close so the client sees it.
        return Err(too_large(max));
    }
    let mut stream = body.into_data_stream();
    let mut reserved = None;
    // A body that says its length takes its memory at once (and is not copied as a Vec doubles).
    let expected = announced
        .and_then(|len| usize::try_from(len).ok())
        .filter(|&len| len <= SPOOL_ABOVE)
        .unwrap_or(0);
    reserve(&state.body_budget, &mut reserved, kib_of(expected)).map_err(|e| *e)?;
    let mut buffered: Vec<u8> = Vec::with_capacity(expected);
    let mut spool: Option<Spool> = None;
    let mut received = 0u64;
    let spool_failed = |e: std::io::Error| {
        error(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("spooling the body to disk failed: {e}"),
        )
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
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
                reserved = None;
                spool = Some(new);
            }
            None => {
                let held = reserved.as_ref().map_or(0, |p| p.num_permits());
                let needed = kib_of(buffered.len().saturating_add(chunk.len()));
                let more = needed.saturating_sub(u32::try_from(held).unwrap_or(u32::MAX));
                reserve(&state.body_budget, &mut reserved, more).map_err(|e| *e)?;
                buffered.extend_from_slice(&chunk);
            }
        }
    }
    Ok(match spool {
        Some(spool) => Received::Spooled(spool),
        None => Received::Memory(Bytes::from(buffered), reserved),
    })
}

/// Whether a `Content-Type` header is the form type clients send by default (`curl --data-binary`, a browser's
/// `URLSearchParams`), with or without parameters.
fn is_form_default(value: &str) -> bool {
    value.split(';').next().is_some_and(|essence| {
        essence
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// `PUT /v1/blobs`: Walrus' publisher route.
pub async fn put_blob(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let query = match walrus::parse_put_query(&pairs) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // `?content_type=` wins over the header, which browsers set on every fetch with a body.
    let label = match &query.content_type {
        Some(label) => label.clone(),
        None => match headers.get(header::CONTENT_TYPE).map(HeaderValue::to_str) {
            None => String::new(),
            // What curl and HTML forms send when nobody chose a type says nothing about the blob.
            Some(Ok(value)) if is_form_default(value) => String::new(),
            Some(Ok(value)) => match content_type::check(value) {
                Ok(checked) => checked.to_owned(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("Content-Type: {e}")),
            },
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Content-Type: a content type is visible ASCII",
                );
            }
        },
    };
    let end_epoch = match state.node.end_epoch_for(query.epochs) {
        Ok(end) => end,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let options = PutOptions {
        content_type: label,
        force: query.force,
        end_epoch: Some(end_epoch),
        permanent: query.permanent,
    };
    let result = match receive_body(&state, &headers, body).await {
        // The budget stays taken while the put encodes the body.
        Ok(Received::Memory(bytes, _reserved)) => state.node.put(bytes, &options).await,
        Ok(Received::Spooled(spool)) => state.node.put_spooled(spool, &options).await,
        Err(response) => return response,
    };
    match result {
        Ok(outcome) => match store_answer(&outcome) {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(response) => *response,
        },
        Err(e) => put_error(e),
    }
}

/// Walrus' answer to a put that succeeded (`newlyCreated` or `alreadyCertified`).
pub(super) fn store_answer(
    outcome: &crate::service::PutOutcome,
) -> Result<serde_json::Value, Box<Response>> {
    let params = floe_protocol::BlobParams::new(
        floe_protocol::EncodingType::RsSimd,
        outcome.shards,
        floe_protocol::encoding::DEFAULT_SEGMENT_SIZE,
        outcome.size,
    )
    .map_err(|e| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e)))?;
    Ok(walrus::put_answer(outcome, walrus::encoded_length(&params)))
}

/// The answer to a put that failed.
pub(super) fn put_error(e: PutError) -> Response {
    match e {
        PutError::Params(e) => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        // Out of room: up front (nothing sent), or refused by enough holders that the write failed.
        e @ (PutError::NoRoom(_) | PutError::NotCertified { full: 1.., .. }) => {
            error(StatusCode::INSUFFICIENT_STORAGE, e)
        }
        e @ (PutError::NotCertified { .. } | PutError::Busy(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A blob's metadata and media type: from the hot-blob cache, else from the store or the swarm.
pub(super) async fn resolve(
    state: &AppState,
    blob_id: &BlobId,
) -> Result<(Option<BlobBytes>, floe_protocol::BlobMetadata, String), Response> {
    if let Some(cached) = state.node.cached(blob_id) {
        let (metadata, label) = (cached.metadata.clone(), cached.content_type.clone());
        return Ok((Some(cached), metadata, label));
    }
    match state.node.find_metadata(blob_id).await {
        Ok((metadata, record)) => Ok((None, metadata, record.content_type)),
        Err(e) => Err(get_error(e)),
    }
}

/// Headers every blob answer carries.
fn blob_headers(
    builder: axum::http::response::Builder,
    label: &str,
    etag: &str,
) -> axum::http::response::Builder {
    let label = if label.is_empty() {
        "application/octet-stream"
    } else {
        label
    };
    builder
        .header(header::CONTENT_TYPE, label)
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_SECURITY_POLICY, BLOB_CSP)
}

/// `GET|HEAD /v1/blobs/{id}`: the blob, a `Range` of it (206), or 304/412 by its preconditions.
pub async fn get_blob(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let blob_id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    serve_blob(&state, &method, &blob_id, &headers).await
}

/// `GET /v1/blobs/by-object-id/{id}`: floe's object IDs are blob IDs in hex (see [`walrus`]).
pub async fn get_by_object_id(
    State(state): State<AppState>,
    method: Method,
    Path(object): Path<String>,
    headers: HeaderMap,
) -> Response {
    match walrus::blob_id_of_object(&object) {
        Some(blob_id) => serve_blob(&state, &method, &blob_id, &headers).await,
        None => error(
            StatusCode::NOT_FOUND,
            "floe has no Sui objects: an object ID here is a blob ID in hex (0x and 64 hex digits), as floe's \
             put answers give it",
        ),
    }
}

async fn serve_blob(
    state: &AppState,
    method: &Method,
    blob_id: &BlobId,
    headers: &HeaderMap,
) -> Response {
    let (cached, metadata, label) = match resolve(state, blob_id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let etag = http_cache::blob_etag(blob_id);
    if let Some(response) = precondition_answer(method, headers, &etag, CACHE_CONTROL) {
        return response;
    }
    let len = metadata.params().blob_length();
    let range = match requested_range(headers, &etag, len, "blob") {
        Ok(range) => range,
        Err(response) => return *response,
    };
    let (start, end) = range.unwrap_or((0, len));
    let mut builder = blob_headers(Response::builder(), &label, &etag)
        .header(header::CONTENT_LENGTH, end - start);
    if range.is_some() {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    if method == Method::HEAD {
        return finish(builder, Body::empty());
    }
    respond_with_bytes(state, blob_id, cached.as_ref(), builder, start, end).await
}

/// The one range a request's `Range` asks for within `len` bytes (`None`: all of them, or an `If-Range` that does
/// not match `etag`); a 416 that names the `what`'s size when it lies outside.
pub(super) fn requested_range(
    headers: &HeaderMap,
    etag: &str,
    len: u64,
    what: &str,
) -> Result<Option<(u64, u64)>, Box<Response>> {
    match headers
        .get(header::RANGE)
        .filter(|_| http_cache::range_applies(headers, etag))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_cache::parse_range(v, len))
    {
        Some(Ok(range)) => Ok(Some(range)),
        Some(Err(())) => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the {what} has {len} bytes"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Err(Box::new(response))
        }
        None => Ok(None),
    }
}

/// The answer a request's preconditions call for instead of the bytes, if any: 304 with the validators and the
/// `Cache-Control` a 200 would carry (a 304 updates the cached copy's headers, so a different one would change how
/// long the browser keeps it), or 412.
pub(super) fn precondition_answer(
    method: &Method,
    headers: &HeaderMap,
    etag: &str,
    cache_control: &str,
) -> Option<Response> {
    match http_cache::evaluate(method, headers, etag) {
        Precondition::Proceed => None,
        Precondition::NotModified => {
            let mut response = bare(StatusCode::NOT_MODIFIED);
            let h = response.headers_mut();
            for (name, value) in [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)] {
                if let Ok(value) = HeaderValue::from_str(value) {
                    h.insert(name, value);
                }
            }
            Some(response)
        }
        Precondition::Failed => Some(error(
            StatusCode::PRECONDITION_FAILED,
            format!("the entity tag here is {etag}"),
        )),
    }
}

pub(super) fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The bytes `[start, end)` as the body of `builder`: from the cache, streamed, or read whole.
pub(super) async fn respond_with_bytes(
    state: &AppState,
    blob_id: &BlobId,
    cached: Option<&BlobBytes>,
    builder: axum::http::response::Builder,
    start: u64,
    end: u64,
) -> Response {
    if let Some(blob) = cached
        && let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end))
        && let Some(bytes) = blob.bytes.get(s..e)
    {
        state.node.cache().served(bytes.len());
        return finish(builder, Body::from(blob.bytes.slice_ref(bytes)));
    }
    // Large ranges stream round by round (memory stays at a few segments); small ones are read whole, which
    // also fills the hot-blob cache.
    if end - start > STREAM_ABOVE {
        return match state.node.get_stream(blob_id, start, end).await {
            Ok((first, rest)) => {
                let rest = futures::stream::unfold(rest, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let body = futures::stream::iter(first.map(Ok))
                    .chain(rest)
                    .map(|item| item.map_err(std::io::Error::other));
                finish(builder, Body::from_stream(body))
            }
            Err(e) => get_error(e),
        };
    }
    match state.node.get(blob_id, Some((start, end))).await {
        Ok(blob) => finish(builder, Body::from(blob.bytes)),
        Err(e) => get_error(e),
    }
}

/// `GET /v1/blobs/{id}/byte-range?start=&length=`: Walrus' cacheable range route (200, its own entity tag).
pub async fn get_byte_range(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let blob_id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (mut start, mut length) = (None, None);
    for (name, value) in &pairs {
        let slot = match name.as_str() {
            "start" => &mut start,
            "length" => &mut length,
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {other:?}; byte-range takes start and length"),
                );
            }
        };
        match value.parse::<u64>() {
            Ok(n) => *slot = Some(n),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a whole number of bytes, got {value:?}"),
                );
            }
        }
    }
    let (Some(start), Some(length)) = (start, length) else {
        return error(
            StatusCode::BAD_REQUEST,
            "byte-range needs start and length (bytes), e.g. ?start=0&length=1024",
        );
    };
    if length == 0 {
        return error(StatusCode::BAD_REQUEST, "length must be at least 1");
    }
    let (cached, metadata, label) = match resolve(&state, &blob_id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let len = metadata.params().blob_length();
    let end = start.saturating_add(length);
    if end > len {
        return error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("bytes {start} to {end} lie outside the blob of {len} bytes"),
        );
    }
    let etag = format!("\"{blob_id}-{start}-{length}\"");
    if let Some(response) = precondition_answer(&method, &headers, &etag, CACHE_CONTROL) {
        return response;
    }
    let builder =
        blob_headers(Response::builder(), &label, &etag).header(header::CONTENT_LENGTH, length);
    if method == Method::HEAD {
        return finish(builder, Body::empty());
    }
    respond_with_bytes(&state, &blob_id, cached.as_ref(), builder, start, end).await
}

/// The HTTP answer for a failed read.
pub fn get_error(e: GetError) -> Response {
    match e {
        GetError::NotFound(_) | GetError::Expired { .. } | GetError::Deleted(_) => {
            error(StatusCode::NOT_FOUND, e)
        }
        GetError::NotEnoughSlivers { .. } | GetError::SliverUnavailable { .. } => {
            error(StatusCode::SERVICE_UNAVAILABLE, e)
        }
        GetError::SliverRange { .. } => error(StatusCode::BAD_REQUEST, e),
        GetError::Inconsistent(_) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        GetError::Range { .. } => error(StatusCode::RANGE_NOT_SATISFIABLE, e),
        GetError::TooLarge { .. } => error(StatusCode::PAYLOAD_TOO_LARGE, e),
        GetError::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        GetError::Internal(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `GET /v1/blobs/{id}/status`: where a blob's slivers are and how healthy it is, as this node sees it.
pub async fn blob_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let blob_id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (metadata, record) = match state.node.find_metadata(&blob_id).await {
        Ok(found) => found,
        Err(e) => return get_error(e),
    };
    let holders = &record.holders;
    // Whole sliver indexes held here (every segment), for operators and the partition test.
    let held_here: Vec<u16> = {
        let (node, segments) = (state.node.clone(), metadata.params().segment_count());
        tokio::task::spawn_blocking(move || {
            let store = node.store();
            store
                .indexes(&blob_id)
                .into_iter()
                .filter(|&index| store.segments_held(&blob_id, index) >= segments)
                .collect()
        })
        .await
        .unwrap_or_default()
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
    let holder_list: Vec<_> = holders
        .iter()
        .enumerate()
        .map(|(index, h)| {
            json!({
                "index": index,
                "peerId": libp2p::PeerId::from_bytes(h).map_or_else(|_| "(malformed)".to_owned(), |p| p.to_string()),
                "reachable": *h == me || connected.contains(h),
                "self": *h == me,
            })
        })
        .collect();
    let repair = state.node.repair_view(&blob_id);
    let p = metadata.params();
    let mut distinct = holders.clone();
    distinct.sort();
    distinct.dedup();
    axum::Json(json!({
        "blobId": blob_id.to_string(),
        "size": p.blob_length(),
        "encodingType": p.encoding().name(),
        "contentType": (!record.content_type.is_empty()).then_some(record.content_type.as_str()),
        "shards": p.shards(),
        "sourceShards": p.source_shards(),
        "segments": p.segment_count(),
        "holders": distinct.len(),
        "slivers": holders.len(),
        "sliversOnKnownPeers": holders_known,
        "certificateQuorum": floe_protocol::write::certificate_quorum(p.shards()),
        "holderListEpoch": record.epoch,
        // Stored until the end of this epoch (null: no end); the node's status says which epoch it is now.
        "endEpoch": (record.served_until() != floe_protocol::lifetime::FOREVER).then_some(record.served_until()),
        // Writers' claims (deletable writes) and how many are not released; the epoch a permanent write keeps
        // the blob until. A blob whose every claim is released is deleted.
        "deletion": {
            "claims": record.claims.count(),
            "claimsLeft": record.claims.unreleased(),
            "permanentUntil": record.claims.permanent_until(),
            "deleted": record.is_deleted(state.node.current_epoch()),
        },
        "health": {
            "sliversPresent": present,
            "shards": p.shards(),
            "full": present == usize::from(p.shards()),
            "readable": present >= usize::from(p.source_shards()),
            "repairInProgress": repair.in_progress,
        },
        "holderList": holder_list,
        "sliversHeldHere": held_here,
    }))
    .into_response()
}
