//! Names at the gateway (`floe_protocol::name`, `service::names`):
//! - `GET /v1/names/{name}` resolves a name by asking its neighbourhood;
//! - `PUT /v1/names/{name}` publishes a record its owner signed (JSON, below): the gateway relays it and never
//!   sees the owner's key, so any gateway will do and none can move a name;
//! - sites are served by name (`gateway::sites`) through [`NameCache`].
//!
//! The JSON form of a record: `{"name", "sequence", "siteId", "endEpoch", "signature"}`, the signature in
//! URL-safe base64 without padding (86 characters).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use floe_protocol::BlobId;
use floe_protocol::name::{Name, NameError, NameRecord};
use floe_protocol::wire::pb;

use super::AppState;
use super::errors::error;
use crate::service::{NamePublished, NameServiceError};

/// How long a name resolved for a site request is used before it is asked again: a move reaches readers of
/// other gateways within this (the gateway that relayed the move knows at once).
pub const NAME_TTL: Duration = Duration::from_secs(30);
/// Names kept resolved.
const NAMES_KEPT: usize = 1024;
/// Largest `PUT /v1/names/{name}` body.
const MAX_RECORD_BODY: usize = 4 << 10;

/// Why a JSON record is malformed.
#[derive(Debug, thiserror::Error)]
pub enum RecordJsonError {
    /// The name.
    #[error("name: {0}")]
    Name(#[from] NameError),
    /// The site ID.
    #[error("siteId: {0}")]
    Site(#[from] floe_protocol::ParseBlobIdError),
    /// The signature's text.
    #[error("signature: not URL-safe base64 without padding ({0})")]
    Signature(#[from] data_encoding::DecodeError),
}

/// A name record as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordJson {
    /// The name (`n…`, 53 characters).
    pub name: String,
    /// Grows with every move.
    pub sequence: u64,
    /// The site the name points at.
    pub site_id: String,
    /// The epoch after which the record is forgotten; 0: no end.
    #[serde(default)]
    pub end_epoch: u64,
    /// The owner's ed25519 signature, URL-safe base64 without padding.
    pub signature: String,
}

impl RecordJson {
    /// The JSON form of a record.
    pub fn of(record: &NameRecord) -> Self {
        Self {
            name: record.name.to_string(),
            sequence: record.sequence,
            site_id: record.site_id.to_string(),
            end_epoch: record.end_epoch,
            signature: BASE64URL_NOPAD.encode(&record.signature),
        }
    }

    /// The wire form; lengths and the signature are checked by the node.
    pub fn to_wire(&self) -> Result<pb::NameRecord, RecordJsonError> {
        let name: Name = self.name.parse()?;
        let site: BlobId = self.site_id.parse()?;
        let signature = BASE64URL_NOPAD.decode(self.signature.as_bytes())?;
        Ok(pb::NameRecord {
            name: Bytes::copy_from_slice(name.as_bytes()),
            sequence: self.sequence,
            site_id: Bytes::copy_from_slice(site.as_bytes()),
            end_epoch: self.end_epoch,
            signature: Bytes::from(signature),
        })
    }
}

/// Names resolved lately, for serving sites by name.
#[derive(Debug, Default)]
pub struct NameCache(Mutex<BTreeMap<Name, (Instant, NameRecord)>>);

impl NameCache {
    fn fresh(&self, name: &Name) -> Option<NameRecord> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(name)
            .filter(|(at, _)| at.elapsed() < NAME_TTL)
            .map(|(_, record)| record.clone())
    }

    /// Remembers `record` unless a greater one is known.
    fn insert(&self, record: &NameRecord) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, known)) = kept.get_mut(&record.name) {
            if !known.supersedes(record) {
                *known = record.clone();
            }
            *at = Instant::now();
            return;
        }
        if kept.len() >= NAMES_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < NAME_TTL);
            if kept.len() >= NAMES_KEPT {
                kept.pop_first();
            }
        }
        kept.insert(record.name, (Instant::now(), record.clone()));
    }
}

fn parse_name(text: &str) -> Result<Name, Box<Response>> {
    text.parse::<Name>().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("bad name {text:?}: {e}"),
        ))
    })
}

fn name_error(failure: NameServiceError) -> Response {
    let status = match &failure {
        NameServiceError::Invalid(NameError::BadSignature) => StatusCode::FORBIDDEN,
        NameServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
        NameServiceError::Unknown(_) => StatusCode::NOT_FOUND,
        NameServiceError::Stale { .. } => StatusCode::CONFLICT,
        NameServiceError::NoneReached { .. } => StatusCode::SERVICE_UNAVAILABLE,
        NameServiceError::Store(_) | NameServiceError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, failure)
}

/// The site `name` points at now, for serving it: from the cache within [`NAME_TTL`], else asked.
pub(super) async fn site_of(state: &AppState, name: &Name) -> Result<BlobId, Response> {
    let record = match state.names.fresh(name) {
        Some(record) => record,
        None => {
            let record = state.node.resolve_name(name).await.map_err(name_error)?;
            state.names.insert(&record);
            record
        }
    };
    if !record.is_live(state.node.current_epoch()) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "name {name} pointed at site {} until epoch {}; its owner has not renewed it",
                record.site_id, record.end_epoch
            ),
        ));
    }
    Ok(record.site_id)
}

/// `GET /v1/names/{name}`: the name's record, asked of its neighbourhood now (never cached).
pub(super) async fn get_name(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let name = match parse_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    match state.node.resolve_name(&name).await {
        Ok(record) => {
            state.names.insert(&record);
            let live = record.is_live(state.node.current_epoch());
            let mut answer = json!(RecordJson::of(&record));
            answer["live"] = json!(live);
            answer["url"] = json!(format!("/v1/sites/{name}/"));
            axum::Json(answer).into_response()
        }
        Err(e) => name_error(e),
    }
}

/// `PUT /v1/names/{name}`: publishes a record signed by the name's owner to its neighbourhood.
pub(super) async fn put_name(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let name = match parse_name(&name) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    if body.len() > MAX_RECORD_BODY {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a name record is at most {MAX_RECORD_BODY} bytes of JSON"),
        );
    }
    let record: RecordJson = match serde_json::from_slice(&body) {
        Ok(record) => record,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not a name record ({{name, sequence, siteId, endEpoch, signature}}): {e}"
                ),
            );
        }
    };
    if record.name != name.to_string() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the record is of name {}, not of {name}", record.name),
        );
    }
    let wire = match record.to_wire() {
        Ok(wire) => wire,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.node.publish_name(&wire).await {
        Ok(NamePublished {
            record,
            kept_by,
            asked,
        }) => {
            state.names.insert(&record);
            let mut answer = json!(RecordJson::of(&record));
            answer["keptBy"] = json!(kept_by);
            answer["asked"] = json!(asked);
            answer["url"] = json!(format!("/v1/sites/{name}/"));
            axum::Json(answer).into_response()
        }
        Err(NameServiceError::Stale {
            name,
            kept,
            offered,
        }) => {
            let mut response = name_error(NameServiceError::Stale {
                name,
                kept,
                offered,
            });
            response
                .headers_mut()
                .insert("x-floe-name-sequence", kept.into());
            response
        }
        Err(e) => name_error(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_records_refuse_bad_fields_with_the_field_named() {
        let good = RecordJson {
            name: Name::from_slice(&[1; 32]).unwrap().to_string(),
            sequence: 1,
            site_id: BlobId([2; 32]).to_string(),
            end_epoch: 0,
            signature: BASE64URL_NOPAD.encode(&[3u8; 64]),
        };
        let wire = good.to_wire().unwrap();
        assert_eq!(wire.signature.len(), 64);
        let bad_site = RecordJson {
            site_id: "x".into(),
            ..good.clone()
        };
        assert!(
            bad_site
                .to_wire()
                .unwrap_err()
                .to_string()
                .starts_with("siteId")
        );
        let bad_signature = RecordJson {
            signature: "***".into(),
            ..good.clone()
        };
        assert!(
            bad_signature
                .to_wire()
                .unwrap_err()
                .to_string()
                .starts_with("signature")
        );
        let bad_name = RecordJson {
            name: "nope".into(),
            ..good
        };
        assert!(bad_name.to_wire().is_err());
        assert!(serde_json::from_str::<RecordJson>(r#"{"name":"n","sequence":1}"#).is_err());
    }
}
