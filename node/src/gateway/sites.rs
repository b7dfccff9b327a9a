//! Sites at the gateway: `GET|HEAD /v1/sites/{siteId}/{path}` serves a site's files by its manifest
//! (`crate::site`): `index.html` for a directory, the not-found page with 404, redirects, the manifest's media
//! types and headers, `Range`, `ETag` and 304 as for any patch (`gateway::quilts`). In place of a site ID, a
//! name (`floe_protocol::name`) serves the site it points at now (`gateway::names`), revalidated on each use.
//!
//! A site is served on two kinds of address:
//! - **its own origin**, `http://{label}.{gateway host}/…` (`site::host_label`; `{label}.localhost:{port}`
//!   works in every browser with no DNS): [`site_hosts`] maps the request to the site's path before routing, so
//!   nothing else of the gateway is reachable there. Pages run unsandboxed, isolated by their origin, and
//!   browsers cache them across visits.
//! - **a path of the gateway's origin**, `/v1/sites/{siteId}/…`, which every site shares: pages run sandboxed
//!   without `allow-same-origin`, so scripts run in an opaque origin of their own and can neither read another
//!   site's storage nor write through the gateway as a page of its origin. An opaque origin has no cache of its
//!   own between visits, which is the price.
//!
//! Either way pages read the swarm, since reads are open to every origin (CORS).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use floe_protocol::BlobId;
use floe_protocol::name::{NAME_TEXT_LEN, Name};

use super::AppState;
use super::blobs;
use super::errors::{bare, error};
use super::names;
use super::quilts::{self, PatchStyle};
use crate::site::{self, Manifest, Route};

/// A site page's policy: a sandbox that lets scripts, forms and popups run in an opaque origin.
const SITE_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads \
                        allow-presentation";
/// A page on its own origin: no policy beyond what the origin gives (a site may set its own in its manifest's
/// headers).
const OWN_ORIGIN_CSP: &str = "";
/// The caching of a site's files served by name: kept, but revalidated on every use.
const NAMED_CACHE_CONTROL: &str = "public, no-cache";
/// Manifests kept parsed.
const MANIFESTS_KEPT: usize = 256;

/// Marks a request that arrived on a site's own origin ([`site_hosts`]).
#[derive(Debug, Clone, Copy)]
pub struct OwnOrigin;

/// Before routing: a request whose host's first label names a site is that site's, on its own origin.
pub async fn site_hosts(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let site = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|host| host.split(['.', ':']).next())
        .and_then(|label| {
            site::site_of_label(label)
                .map(|id| id.to_string())
                .or_else(|| label.parse::<Name>().ok().map(|name| name.to_string()))
        });
    if let Some(site) = site {
        let rest = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        match format!("/v1/sites/{site}{rest}").parse() {
            Ok(uri) => {
                *request.uri_mut() = uri;
                request.extensions_mut().insert(OwnOrigin);
            }
            Err(_) => return error(StatusCode::BAD_REQUEST, "malformed request target"),
        }
    }
    next.run(request).await
}

/// Manifests read lately, parsed.
#[derive(Debug, Default)]
pub struct Manifests(Mutex<BTreeMap<BlobId, Arc<Manifest>>>);

impl Manifests {
    fn get(&self, site: &BlobId) -> Option<Arc<Manifest>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .cloned()
    }

    fn insert(&self, site: BlobId, manifest: Arc<Manifest>) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= MANIFESTS_KEPT {
            kept.pop_first();
        }
        kept.insert(site, manifest);
    }
}

/// `GET|HEAD /v1/sites/{siteId}`: to `…/`, so the home page's relative links resolve inside the site.
pub async fn site_root(Path(site): Path<String>) -> Response {
    redirect(&format!("/v1/sites/{site}/"), StatusCode::MOVED_PERMANENTLY)
}

/// `GET|HEAD /v1/sites/{siteId}/`: the home page.
pub async fn site_home(
    State(state): State<AppState>,
    method: Method,
    Path(site): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let own = extensions.get::<OwnOrigin>().is_some();
    serve(&state, &method, &headers, &site, "", own).await
}

/// `GET|HEAD /v1/sites/{siteId}/{path}`.
pub async fn site_file(
    State(state): State<AppState>,
    method: Method,
    Path((site, path)): Path<(String, String)>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let own = extensions.get::<OwnOrigin>().is_some();
    serve(&state, &method, &headers, &site, &path, own).await
}

fn redirect(to: &str, status: StatusCode) -> Response {
    let mut response = bare(status);
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A site's manifest: parsed before, or read whole (it is small) and checked.
async fn manifest(state: &AppState, site: &BlobId) -> Result<Arc<Manifest>, Response> {
    if let Some(manifest) = state.manifests.get(site) {
        return Ok(manifest);
    }
    let (cached, metadata, _) = blobs::resolve(state, site).await?;
    let len = metadata.params().blob_length();
    if len > u64::try_from(site::MAX_MANIFEST_LEN).unwrap_or(u64::MAX) {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "blob {site} is not a site manifest: {len} bytes, more than a manifest may hold"
            ),
        ));
    }
    let blob = match cached {
        Some(blob) => blob,
        None => state.node.get(site, None).await.map_err(blobs::get_error)?,
    };
    let manifest = Manifest::parse(&blob.bytes).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("blob {site} is not a site manifest: {e}"),
        )
    })?;
    let manifest = Arc::new(manifest);
    state.manifests.insert(*site, Arc::clone(&manifest));
    Ok(manifest)
}

async fn serve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    site: &str,
    path: &str,
    own_origin: bool,
) -> Response {
    // A name is resolved to the site it points at now; a site ID is the site itself.
    let named = site.len() == NAME_TEXT_LEN;
    let site_id = if named {
        let name = match site.parse::<Name>() {
            Ok(name) => name,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("bad site ID or name {site:?}: {e}"),
                );
            }
        };
        match names::site_of(state, &name).await {
            Ok(id) => id,
            Err(response) => return response,
        }
    } else {
        match blobs::parse_id(site) {
            Ok(id) => id,
            Err(response) => return *response,
        }
    };
    let manifest = match manifest(state, &site_id).await {
        Ok(manifest) => manifest,
        Err(response) => return response,
    };
    let (site_path, file, status) = match manifest.route(path) {
        Route::File(site_path, file) => (site_path, file, StatusCode::OK),
        Route::Redirect(to, code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
            let to = if to.starts_with('/') && !own_origin {
                format!("/v1/sites/{site}{to}")
            } else {
                to
            };
            return redirect(&to, status);
        }
        Route::NotFound(Some((site_path, file))) => (site_path, file, StatusCode::NOT_FOUND),
        Route::NotFound(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("site {site} has no page /{path}"),
            );
        }
    };
    let Some(quilt) = manifest.quilt_id() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the manifest names no quilt",
        );
    };
    let (index, whole) = match quilts::quilt_index(state, &quilt).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(patch) = index.iter().find(|p| p.identifier == file.patch) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "site {site}: {site_path} is patch {:?}, which quilt {quilt} does not have",
                file.patch
            ),
        );
    };
    // A site ID names fixed bytes, cached for good; a name moves, so a browser asks again each time (a 304 when
    // the name still points at the same bytes). The manifest's own headers come after, and win.
    let mut extra: Vec<(String, String)> = Vec::new();
    if named {
        extra.push(("cache-control".into(), NAMED_CACHE_CONTROL.into()));
    }
    extra.extend(
        manifest
            .headers
            .iter()
            .chain(&file.headers)
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
    );
    // The not-found page is an answer about a path, not the page's own resource: not cached for long.
    if status == StatusCode::NOT_FOUND {
        extra.push(("cache-control".into(), "public, max-age=60".into()));
    }
    let style = PatchStyle {
        status,
        content_type: Some(&file.content_type),
        // On its own origin a site is isolated by the origin; on the gateway's, by the sandbox.
        csp: if own_origin { OWN_ORIGIN_CSP } else { SITE_CSP },
        headers: &extra,
    };
    quilts::serve_patch(state, method, headers, &quilt, patch, whole, &style).await
}
