//! Quilts at the gateway, on Walrus' routes: `PUT /v1/quilts` (multipart: one field per patch, named by its
//! identifier; `_metadata` with tags), `GET /v1/blobs/by-quilt-patch-id/{id}`, `GET
//! /v1/blobs/by-quilt-id/{quiltId}/{identifier}` and `GET /v1/quilts/{quiltId}/patches`.
//!
//! The layout and its checks are `floe_protocol::quilt`'s. A quilt small enough to be one segment is read whole
//! (and kept in the hot-blob cache); a larger one by its head, whose index is kept here, and then only the
//! range of the patch asked for, which touches only the segments it lies in.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use floe_protocol::BlobId;
use floe_protocol::quilt::{self, NewPatch, Patch, PatchId};

use super::AppState;
use super::blobs::{self, BLOB_CSP, CACHE_CONTROL};
use super::errors::error;
use super::walrus;
use crate::service::PutOptions;

/// The media type a quilt blob is labelled with.
pub const QUILT_CONTENT_TYPE: &str = "application/vnd.floe.quilt";
/// Quilts up to this size are read whole: they are one segment, which a range read would fetch anyway.
const READ_WHOLE_UP_TO: u64 = floe_protocol::encoding::DEFAULT_SEGMENT_SIZE;
/// A first read of a large quilt's head: enough for the index of a few hundred patches.
const FIRST_HEAD_READ: u64 = 64 << 10;
/// Indexes of large quilts kept in memory.
const INDEXES_KEPT: usize = 256;
/// Largest `_metadata` field accepted.
const MAX_METADATA_FIELD: usize = 1 << 20;
/// Tags a patch's answer carries as headers of the same name (as Walrus' aggregator does by default); the rest
/// stay in `GET /v1/quilts/{id}/patches`.
const TAG_HEADERS: [&str; 4] = [
    "content-type",
    "content-disposition",
    "content-encoding",
    "content-language",
];

/// Indexes of large quilts read lately (small ones are in the hot-blob cache whole).
#[derive(Debug, Default)]
pub struct QuiltIndexes(Mutex<BTreeMap<BlobId, Arc<Vec<Patch>>>>);

impl QuiltIndexes {
    fn get(&self, quilt: &BlobId) -> Option<Arc<Vec<Patch>>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(quilt)
            .cloned()
    }

    fn insert(&self, quilt: BlobId, index: Arc<Vec<Patch>>) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= INDEXES_KEPT {
            // Any one goes: a miss costs one head read.
            kept.pop_first();
        }
        kept.insert(quilt, index);
    }
}

/// `PUT /v1/quilts`.
pub async fn put_quilt(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let mut pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    // Walrus' quilt version: only its first, whose routes these are.
    if let Some(version) = pairs.iter().find(|(k, _)| k == "quilt_version")
        && !matches!(version.1.as_str(), "v1" | "V1" | "1")
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("quilt_version must be v1, got {:?}", version.1),
        );
    }
    pairs.retain(|(k, _)| k != "quilt_version");
    let query = match walrus::parse_put_query(&pairs) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if query.content_type.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "content_type does not apply to a quilt: give each patch's type as its part's Content-Type or a \
             content-type tag",
        );
    }
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("a quilt is multipart/form-data: {}", e.body_text()),
            );
        }
    };
    let (patches, _budget) = match read_patches(&state, &mut multipart).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let (bytes, index) = match quilt::build(patches) {
        Ok(built) => built,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let end_epoch = match state.node.end_epoch_for(query.epochs) {
        Ok(end) => end,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let options = PutOptions {
        content_type: QUILT_CONTENT_TYPE.to_owned(),
        force: query.force,
        end_epoch: Some(end_epoch),
        permanent: query.permanent,
    };
    // A quilt over a segment is written like a large blob: spooled, then encoded and delivered segment by
    // segment (the pipeline overlaps them, and memory stays bounded); a small one from memory.
    let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let result = if length > READ_WHOLE_UP_TO {
        match spool(&state, &bytes).await {
            Ok(spool) => {
                drop(bytes);
                state.node.put_spooled(spool, &options).await
            }
            Err(response) => return response,
        }
    } else {
        state.node.put(bytes.into(), &options).await
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return blobs::put_error(e),
    };
    let stored = match blobs::store_answer(&outcome) {
        Ok(answer) => answer,
        Err(response) => return *response,
    };
    let patches: Vec<Value> = index
        .iter()
        .map(|p| {
            let (start, end) = p.range();
            json!({
                "identifier": p.identifier,
                "quiltPatchId": p.id(&outcome.blob_id).to_string(),
                "range": [start, end],
            })
        })
        .collect();
    axum::Json(json!({"blobStoreResult": stored, "storedQuiltBlobs": patches})).into_response()
}

/// A spool file holding `bytes`, for a streamed put.
async fn spool(state: &AppState, bytes: &[u8]) -> Result<crate::spool::Spool, Response> {
    let permit = state
        .node
        .streamed_put_permit()
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let failed = |e: std::io::Error| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("spooling the quilt: {e}"),
        )
    };
    let mut spool = crate::spool::Spool::create(state.node.spool_dir(), permit)
        .await
        .map_err(failed)?;
    spool.write(bytes).await.map_err(failed)?;
    Ok(spool)
}

/// The patches of a multipart body, with the memory budget they hold.
async fn read_patches(
    state: &AppState,
    multipart: &mut Multipart,
) -> Result<(Vec<NewPatch>, Option<tokio::sync::OwnedSemaphorePermit>), Box<Response>> {
    let bad = |why: String| Box::new(error(StatusCode::BAD_REQUEST, why));
    let mut held = None;
    let mut patches: Vec<NewPatch> = Vec::new();
    let mut metadata: Option<Vec<u8>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("malformed multipart body: {}", e.body_text()))),
        };
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(bad("every part needs a name: the patch's identifier".into()));
        };
        let part_type = field.content_type().map(str::to_owned);
        let data = match field.bytes().await {
            Ok(data) => data,
            Err(e) => return Err(bad(format!("reading part {name:?}: {}", e.body_text()))),
        };
        let kib = u32::try_from(data.len() / 1024 + 1).unwrap_or(u32::MAX);
        blobs::reserve(&state.body_budget, &mut held, kib)?;
        if name == "_metadata" {
            if data.len() > MAX_METADATA_FIELD {
                return Err(bad("_metadata is larger than 1 MiB".into()));
            }
            metadata = Some(data.to_vec());
            continue;
        }
        let mut tags = BTreeMap::new();
        // A part's own type (what `curl -F name=@file;type=…` and browsers' FormData send) becomes its
        // content-type tag, unless it is the default that says nothing.
        if let Some(part_type) = part_type.filter(|t| t != "application/octet-stream")
            && floe_protocol::content_type::check(&part_type).is_ok()
        {
            tags.insert("content-type".to_owned(), part_type);
        }
        patches.push(NewPatch {
            identifier: name,
            tags,
            data: data.to_vec(),
        });
    }
    if let Some(metadata) = metadata {
        apply_metadata(&mut patches, &metadata).map_err(bad)?;
    }
    if patches.is_empty() {
        return Err(bad(
            "the body has no patches: give one form field per file".into()
        ));
    }
    Ok((patches, held))
}

/// Applies `_metadata` (Walrus' JSON array of `{"identifier", "tags"}`) to the patches: tags add to (and
/// override) what the parts said.
fn apply_metadata(patches: &mut [NewPatch], metadata: &[u8]) -> Result<(), String> {
    let entries: Vec<Value> = serde_json::from_slice(metadata).map_err(|e| {
        format!("_metadata must be a JSON array of {{\"identifier\", \"tags\"}}: {e}")
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        let Some(identifier) = entry["identifier"].as_str() else {
            return Err("every _metadata entry needs an identifier".into());
        };
        if !seen.insert(identifier.to_owned()) {
            return Err(format!("_metadata names {identifier:?} twice"));
        }
        let Some(patch) = patches.iter_mut().find(|p| p.identifier == identifier) else {
            return Err(format!(
                "_metadata names {identifier:?}, which is not a part of this body"
            ));
        };
        match &entry["tags"] {
            Value::Null => {}
            Value::Object(tags) => {
                for (key, value) in tags {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    patch.tags.insert(key.to_ascii_lowercase(), value);
                }
            }
            _ => return Err(format!("the tags of {identifier:?} must be a JSON object")),
        }
    }
    Ok(())
}

/// A quilt's index, and the whole quilt when it is small enough to be read whole.
pub(super) async fn quilt_index(
    state: &AppState,
    quilt: &BlobId,
) -> Result<(Arc<Vec<Patch>>, Option<crate::cache::BlobBytes>), Response> {
    let (cached, metadata, _) = blobs::resolve(state, quilt).await?;
    let len = metadata.params().blob_length();
    let not_a_quilt = |e: quilt::QuiltError| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("blob {quilt} is not a quilt this node can read: {e}"),
        )
    };
    if len <= READ_WHOLE_UP_TO {
        let whole = match cached {
            Some(whole) => whole,
            None => state
                .node
                .get(quilt, None)
                .await
                .map_err(blobs::get_error)?,
        };
        let index = quilt::parse_index(&whole.bytes, len).map_err(not_a_quilt)?;
        return Ok((Arc::new(index), Some(whole)));
    }
    if let Some(index) = state.quilt_indexes.get(quilt) {
        return Ok((index, None));
    }
    let mut head = state
        .node
        .get(quilt, Some((0, FIRST_HEAD_READ.min(len))))
        .await
        .map_err(blobs::get_error)?
        .bytes;
    let needed = quilt::index_len(&head).map_err(not_a_quilt)? + quilt::PREFIX_LEN;
    let needed = u64::try_from(needed).unwrap_or(u64::MAX);
    if needed > u64::try_from(head.len()).unwrap_or(0) && needed <= len {
        head = state
            .node
            .get(quilt, Some((0, needed)))
            .await
            .map_err(blobs::get_error)?
            .bytes;
    }
    let index = Arc::new(quilt::parse_index(&head, len).map_err(not_a_quilt)?);
    state.quilt_indexes.insert(*quilt, Arc::clone(&index));
    Ok((index, None))
}

/// `GET|HEAD /v1/blobs/by-quilt-patch-id/{quiltPatchId}`.
pub async fn get_by_patch_id(
    State(state): State<AppState>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let patch_id: PatchId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (index, whole) = match quilt_index(&state, &patch_id.quilt).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match index.iter().find(|p| p.range() == patch_id.range()) {
        Some(patch) => {
            serve_patch(
                &state,
                &method,
                &headers,
                &patch_id.quilt,
                patch,
                whole,
                &PatchStyle::QUILT,
            )
            .await
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("quilt {} has no patch {id}", patch_id.quilt),
        ),
    }
}

/// `GET|HEAD /v1/blobs/by-quilt-id/{quiltId}/{identifier}`.
pub async fn get_by_identifier(
    State(state): State<AppState>,
    method: Method,
    Path((quilt, identifier)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let quilt = match blobs::parse_id(&quilt) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (index, whole) = match quilt_index(&state, &quilt).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match index.iter().find(|p| p.identifier == identifier) {
        Some(patch) => {
            serve_patch(
                &state,
                &method,
                &headers,
                &quilt,
                patch,
                whole,
                &PatchStyle::QUILT,
            )
            .await
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "quilt {quilt} has no patch named {identifier:?} (GET /v1/quilts/{quilt}/patches lists them)"
            ),
        ),
    }
}

/// `GET /v1/quilts/{quiltId}/patches`: every patch's identifier, ID and tags, as Walrus lists them.
pub async fn list_patches(State(state): State<AppState>, Path(quilt): Path<String>) -> Response {
    let quilt = match blobs::parse_id(&quilt) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (index, _) = match quilt_index(&state, &quilt).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let patches: Vec<Value> = index
        .iter()
        .map(|p| {
            json!({
                "identifier": p.identifier,
                "patch_id": p.id(&quilt).to_string(),
                "tags": p.tags,
            })
        })
        .collect();
    axum::Json(Value::Array(patches)).into_response()
}

/// How a patch is answered: Walrus' patch routes use [`PatchStyle::QUILT`]; a site sets its own type, policy and
/// headers (`gateway::sites`).
pub(super) struct PatchStyle<'a> {
    /// 200, or the status of a site's not-found page.
    pub status: StatusCode,
    /// The media type, over the patch's `content-type` tag.
    pub content_type: Option<&'a str>,
    /// `Content-Security-Policy` (empty: none).
    pub csp: &'a str,
    /// More headers, set last (they override the defaults).
    pub headers: &'a [(String, String)],
}

impl PatchStyle<'static> {
    /// A patch read on Walrus' routes: sandboxed like any blob.
    pub const QUILT: PatchStyle<'static> = PatchStyle {
        status: StatusCode::OK,
        content_type: None,
        csp: BLOB_CSP,
        headers: &[],
    };
}

/// One patch's bytes (a `Range` of them, or 304/412 by the preconditions), with its identifier and the tags
/// that are headers.
pub(super) async fn serve_patch(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    quilt: &BlobId,
    patch: &Patch,
    whole: Option<crate::cache::BlobBytes>,
    style: &PatchStyle<'_>,
) -> Response {
    // A patch ID names exactly these bytes, so it is a strong entity tag.
    let etag = format!("\"{}\"", patch.id(quilt));
    // The caching a 200 would carry: the style's own (a site's headers, a name's revalidation) wins.
    let cache_control = style
        .headers
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
        .map_or(CACHE_CONTROL, |(_, value)| value.as_str());
    if let Some(response) = blobs::precondition_answer(method, headers, &etag, cache_control) {
        return response;
    }
    let len = patch.length;
    // A not-found page is answered whole.
    let range = if style.status == StatusCode::OK {
        match blobs::requested_range(headers, &etag, len, "patch") {
            Ok(range) => range,
            Err(response) => return *response,
        }
    } else {
        None
    };
    let (start, end) = range.unwrap_or((0, len));
    let mut builder = Response::builder()
        .status(style.status)
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start);
    let mut set = vec![
        (
            header::CACHE_CONTROL.as_str().to_owned(),
            CACHE_CONTROL.to_owned(),
        ),
        (
            "x-quilt-patch-identifier".to_owned(),
            patch.identifier.clone(),
        ),
    ];
    for name in TAG_HEADERS {
        if let Some(value) = patch.tags.get(name) {
            set.push((name.to_owned(), value.clone()));
        }
    }
    if !style.csp.is_empty() {
        set.push((
            header::CONTENT_SECURITY_POLICY.as_str().to_owned(),
            style.csp.to_owned(),
        ));
    }
    if let Some(content_type) = style.content_type {
        set.push(("content-type".to_owned(), content_type.to_owned()));
    }
    set.extend(style.headers.iter().cloned());
    if !set.iter().any(|(name, _)| name == "content-type") {
        set.push((
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        ));
    }
    // Later entries win; names and values that are not valid header text are left out.
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in set {
        chosen.insert(name.to_ascii_lowercase(), value);
    }
    for (name, value) in chosen {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            builder = builder.header(name, value);
        }
    }
    if range.is_some() {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    let mut response = if method == Method::HEAD {
        blobs::finish(builder, Body::empty())
    } else {
        let (from, to) = (
            patch.offset.saturating_add(start),
            patch.offset.saturating_add(end),
        );
        blobs::respond_with_bytes(state, quilt, whole.as_ref(), builder, from, to).await
    };
    // A site's not-found page is a page: the error envelope must not replace it (a read that failed is still
    // enveloped, since its status is not the style's).
    if style.status != StatusCode::OK && response.status() == style.status {
        response
            .extensions_mut()
            .insert(super::errors::BodyIsTheAnswer);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn patch(identifier: &str) -> NewPatch {
        NewPatch {
            identifier: identifier.into(),
            tags: BTreeMap::new(),
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn metadata_adds_tags_and_names_what_is_wrong() {
        let mut patches = vec![patch("a.png"), patch("b")];
        apply_metadata(
            &mut patches,
            br#"[{"identifier":"a.png","tags":{"Content-Type":"image/png","n":3}}]"#,
        )
        .unwrap();
        assert_eq!(patches[0].tags["content-type"], "image/png");
        assert_eq!(patches[0].tags["n"], "3");
        for (metadata, needle) in [
            (&b"{}"[..], "JSON array"),
            (br#"[{"tags":{}}]"#, "needs an identifier"),
            (br#"[{"identifier":"zzz"}]"#, "not a part"),
            (br#"[{"identifier":"b"},{"identifier":"b"}]"#, "twice"),
            (br#"[{"identifier":"b","tags":[1]}]"#, "JSON object"),
        ] {
            let error = apply_metadata(&mut patches, metadata).unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
    }
}
