//! Reads a browser can verify (issue 19): `GET /v1/blobs/{blobId}/metadata` gives what the blob ID commits to,
//! and `GET /v1/blobs/{blobId}/slivers/{index}?segments=a..b` one sliver index's slivers with their Merkle
//! proofs, so a reader checks every byte against the blob ID itself instead of trusting this node
//! (docs/protocol.md §3–§5 give the hashes; docs/operators.md "Verifiable reads" the answers).
//!
//! The node verifies the slivers too before sending them (an honest gateway passes on no garbage), but a reader
//! that verifies needs to trust no gateway.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message as _;
use serde_json::json;

use super::AppState;
use super::blobs;
use super::errors::error;
use floe_protocol::wire::pb;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/blobs/{blobId}/metadata`: the committed parameters and segment roots.
pub async fn metadata(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let blob_id = match blobs::parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (metadata, _) = match state.node.find_metadata(&blob_id).await {
        Ok(found) => found,
        Err(e) => return blobs::get_error(e),
    };
    let p = metadata.params();
    let header = metadata.header();
    axum::Json(json!({
        "blobId": blob_id.to_string(),
        "encodingType": p.encoding().name(),
        "encodingCode": p.encoding().code(),
        "shards": p.shards(),
        "sourceShards": p.source_shards(),
        "segmentSize": p.segment_size(),
        "blobLength": p.blob_length(),
        "segments": p.segment_count(),
        "blobRoot": hex(&header.blob_root),
        "segmentRoots": metadata.segment_roots().iter().map(|r| hex(r)).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `GET /v1/blobs/{blobId}/slivers/{index}?segments=a..b`: a protobuf `SliverSet` (each `Sliver` with its
/// proof), segments a to b − 1; without `segments`, the first segment.
pub async fn slivers(
    State(state): State<AppState>,
    Path((id, index)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let blob_id = match blobs::parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let Ok(index) = index.parse::<u16>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("sliver index {index:?} is not a number from 0 to 65535"),
        );
    };
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (mut first, mut end) = (0u64, 1u64);
    for (name, value) in &pairs {
        if name != "segments" {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {name:?}; slivers take segments=a..b"),
            );
        }
        let parsed = value
            .split_once("..")
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        match parsed {
            Some((a, b)) if a < b => (first, end) = (a, b),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("segments must be a..b with a < b (b exclusive), got {value:?}"),
                );
            }
        }
    }
    match state
        .node
        .slivers_for_reader(&blob_id, index, first, end - first)
        .await
    {
        Ok((_, slivers)) => {
            let set = pb::SliverSet {
                slivers: slivers.iter().map(pb::Sliver::from).collect(),
            };
            Response::builder()
                .header(header::CONTENT_TYPE, "application/x-protobuf")
                // A blob ID's slivers never change.
                .header(header::CACHE_CONTROL, blobs::CACHE_CONTROL)
                .header(header::ETAG, format!("\"{blob_id}.{index}.{first}-{end}\""))
                .body(Body::from(set.encode_to_vec()))
                .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
        }
        Err(e) => blobs::get_error(e),
    }
}
