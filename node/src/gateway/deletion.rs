//! `DELETE /v1/blobs/{blobId}`: a writer releases its claim on a blob with the deletion token its PUT answered
//! (`deletionToken`), sent in the `X-Floe-Deletion-Token` header, never in the URL (URLs end up in logs).
//!
//! The rules are `floe_protocol::deletion`'s and the work `Node::delete`'s; this module maps them to HTTP.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use floe_protocol::deletion::DeletionError;

use super::AppState;
use super::errors::error;
use super::walrus;
use crate::service::DeleteError;

/// The header that carries a deletion token.
pub const DELETION_TOKEN_HEADER: &str = "x-floe-deletion-token";

/// `DELETE /v1/blobs/{blobId}`.
pub async fn delete_blob(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let blob_id = match id.parse::<floe_protocol::BlobId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad blob ID: {e}")),
    };
    let token = match headers.get(DELETION_TOKEN_HEADER).map(|v| v.to_str()) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "a DELETE needs the X-Floe-Deletion-Token header: the deletionToken the blob's PUT answered with",
            );
        }
        Some(value) => match value.ok().and_then(walrus::parse_token) {
            Some(token) => token,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "X-Floe-Deletion-Token must be 64 hex digits (the deletionToken a PUT answered with)",
                );
            }
        },
    };
    match state.node.delete(&blob_id, token).await {
        Ok(outcome) => axum::Json(json!({
            "blobId": outcome.blob_id.to_string(),
            "deleted": outcome.deleted,
            "claims": outcome.claims,
            "claimsLeft": outcome.unreleased,
            "keptUntilEpoch": outcome.kept_until,
            "holdersReached": outcome.holders_reached,
            "holders": outcome.holders,
        }))
        .into_response(),
        Err(e @ DeleteError::UnknownBlob(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ DeleteError::Claims(DeletionError::WrongToken)) => error(StatusCode::FORBIDDEN, e),
        Err(e @ DeleteError::Claims(DeletionError::NotDeletable)) => error(StatusCode::CONFLICT, e),
        Err(e @ (DeleteError::Claims(_) | DeleteError::Malformed(_) | DeleteError::BlobId(_))) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Err(e @ DeleteError::NoHolderReached { .. }) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ (DeleteError::Store(_) | DeleteError::Task(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}
