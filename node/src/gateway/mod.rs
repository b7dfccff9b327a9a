//! The HTTP gateway every node serves, compatible with the Walrus aggregator/publisher routes so that dApp
//! code and browsers can point at any floe peer.
//!
//! [`ROUTES`] lists every route; the router is built from it and `/v1/api` (the OpenAPI document) is tested
//! against it. Layers, outermost first: the request timer, CORS and nosniff ([`cors`]), per-client budgets
//! ([`fair_use`]), the error envelope for whatever answers without one ([`errors`]), request-size checks (414,
//! 431). The server under the router
//! ([`serve`]) enforces the connection, header, idle and body-rate limits. The module owns HTTP only: what a
//! blob, a range or a put means is the node's business.

mod blobs;
pub mod cors;
mod deletion;
pub mod errors;
pub mod fair_use;
pub mod http_cache;
mod metrics;
pub mod names;
mod quilts;
pub mod serve;
mod sites;
mod verifiable;
pub mod walrus;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, put};
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::service::Node;
use errors::error;

pub use cors::WriteOrigins;
pub use fair_use::{FairUse, FairUseConfig};
pub use serve::ServeLimits;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest accepted blob body, in bytes.
    pub max_body: usize,
    /// libp2p's metrics registry (the network's event loop records into it).
    pub registry: Arc<Registry>,
    /// Origins whose pages may write (`--cors-write-origins`).
    pub write_origins: WriteOrigins,
    /// Per-client budgets (`--http-client-*`).
    pub fair_use: Arc<FairUse>,
}

#[derive(Clone)]
struct AppState {
    node: Node,
    /// Largest accepted blob body.
    max_body: u64,
    /// libp2p's metrics; floe's own are read from the node at each scrape.
    registry: Arc<Registry>,
    /// KiB of request bodies held in memory at once, across requests ([`BODY_MEMORY_BUDGET`]).
    body_budget: Arc<tokio::sync::Semaphore>,
    /// Per-client budgets, for the metrics.
    fair_use: Arc<FairUse>,
    /// Indexes of large quilts read lately.
    quilt_indexes: Arc<quilts::QuiltIndexes>,
    /// Site manifests read lately.
    manifests: Arc<sites::Manifests>,
    /// Names resolved lately.
    names: Arc<names::NameCache>,
}

/// Memory for request bodies received and not yet encoded, across all requests: 1,024 connections each sending
/// up to 16 MiB could otherwise hold 16 GiB. Beyond it a put gets a 503 with `Retry-After`.
const BODY_MEMORY_BUDGET: usize = 512 << 20;

/// Every route: path and the methods it answers (`OPTIONS` is answered for every path by [`cors`]).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET", "HEAD"]),
    ("/v1/api", &["GET", "HEAD"]),
    ("/v1/blobs", &["PUT"]),
    ("/v1/blobs/{blobId}", &["GET", "HEAD", "DELETE"]),
    ("/v1/blobs/{blobId}/byte-range", &["GET", "HEAD"]),
    ("/v1/blobs/{blobId}/status", &["GET"]),
    ("/v1/blobs/{blobId}/metadata", &["GET"]),
    ("/v1/blobs/{blobId}/slivers/{index}", &["GET"]),
    ("/v1/blobs/by-object-id/{objectId}", &["GET", "HEAD"]),
    ("/v1/quilts", &["PUT"]),
    ("/v1/quilts/{quiltId}/patches", &["GET"]),
    (
        "/v1/blobs/by-quilt-patch-id/{quiltPatchId}",
        &["GET", "HEAD"],
    ),
    (
        "/v1/blobs/by-quilt-id/{quiltId}/{identifier}",
        &["GET", "HEAD"],
    ),
    ("/v1/sites/{siteId}", &["GET", "HEAD"]),
    ("/v1/sites/{siteId}/", &["GET", "HEAD"]),
    ("/v1/sites/{siteId}/{*path}", &["GET", "HEAD"]),
    ("/v1/names/{name}", &["GET", "PUT"]),
    ("/v1/node/status", &["GET"]),
    ("/metrics", &["GET"]),
];

/// The handlers of a path in [`ROUTES`].
fn handlers(path: &str) -> Option<MethodRouter<AppState>> {
    Some(match path {
        "/" => get(status_page),
        "/v1/api" => get(openapi),
        "/v1/blobs" => put(blobs::put_blob),
        "/v1/blobs/{blobId}" => get(blobs::get_blob).delete(deletion::delete_blob),
        "/v1/blobs/{blobId}/byte-range" => get(blobs::get_byte_range),
        "/v1/blobs/{blobId}/status" => get(blobs::blob_status),
        "/v1/blobs/{blobId}/metadata" => get(verifiable::metadata),
        "/v1/blobs/{blobId}/slivers/{index}" => get(verifiable::slivers),
        "/v1/blobs/by-object-id/{objectId}" => get(blobs::get_by_object_id),
        "/v1/quilts" => put(quilts::put_quilt),
        "/v1/quilts/{quiltId}/patches" => get(quilts::list_patches),
        "/v1/blobs/by-quilt-patch-id/{quiltPatchId}" => get(quilts::get_by_patch_id),
        "/v1/blobs/by-quilt-id/{quiltId}/{identifier}" => get(quilts::get_by_identifier),
        "/v1/sites/{siteId}" => get(sites::site_root),
        "/v1/sites/{siteId}/" => get(sites::site_home),
        "/v1/sites/{siteId}/{*path}" => get(sites::site_file),
        "/v1/names/{name}" => get(names::get_name).put(names::put_name),
        "/v1/node/status" => get(node_status),
        "/metrics" => get(metrics::metrics),
        _ => return None,
    })
}

/// Longest request target accepted (414 beyond).
const MAX_URI_LEN: usize = 8 << 10;
/// Most bytes of request header names and values accepted (431 beyond).
const MAX_HEADER_BYTES: usize = 16 << 10;

/// The router.
pub fn router(node: Node, config: GatewayConfig) -> Router {
    // A site's own origin (`{label}.host`) is mapped to its path before the routes are matched: an outer router
    // whose only route is the fallback, with the mapping as its middleware.
    Router::new()
        .fallback_service(routes(node, config))
        .layer(axum::middleware::from_fn(sites::site_hosts))
}

fn routes(node: Node, config: GatewayConfig) -> Router {
    let latency = node.metrics().latencies.http_request.clone();
    let mut router = Router::new();
    for (path, _) in ROUTES {
        if let Some(handlers) = handlers(path) {
            router = router.route(path, handlers);
        }
    }
    router
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; /v1/api lists them (docs/operators.md)",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(AppState {
            node,
            max_body: u64::try_from(config.max_body).unwrap_or(u64::MAX),
            registry: config.registry,
            body_budget: Arc::new(tokio::sync::Semaphore::new(BODY_MEMORY_BUDGET / 1024)),
            fair_use: Arc::clone(&config.fair_use),
            quilt_indexes: Arc::default(),
            manifests: Arc::default(),
            names: Arc::default(),
        })
        .layer(axum::middleware::from_fn(check_request_size))
        .layer(axum::middleware::from_fn(errors::envelope_errors))
        // Inside CORS, so a browser can read a 429; outside everything that does work.
        .layer(axum::middleware::from_fn_with_state(
            config.fair_use,
            fair_use::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.write_origins,
            cors::browser_headers,
        ))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let latency = latency.clone();
                async move {
                    let started = Instant::now();
                    let response = next.run(request).await;
                    latency.observe(started.elapsed().as_secs_f64());
                    response
                }
            },
        ))
}

/// 414 and 431 in the envelope (hyper itself answers bare ones only past its buffer, about 400 KiB).
async fn check_request_size(request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_LEN {
        return error(
            StatusCode::URI_TOO_LONG,
            format!("the request target has {uri_len} bytes; at most {MAX_URI_LEN}"),
        );
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request headers have {header_bytes} bytes; at most {MAX_HEADER_BYTES}"),
        );
    }
    next.run(request).await
}

/// The OpenAPI document of the routes above.
const OPENAPI: &str = include_str!("openapi.json");
/// The status page (self-contained: no external assets).
const STATUS_PAGE: &str = include_str!("status_page.html");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads nothing from elsewhere and talks only to this node.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        STATUS_PAGE,
    )
        .into_response()
}

async fn node_status(State(state): State<AppState>) -> Response {
    let view = state.node.net().view().await;
    let counters = state.node.store().counters();
    let m = state.node.metrics();
    let recent: Vec<_> = crate::recent::snapshot()
        .into_iter()
        .map(|e| json!({"atMs": e.at_ms, "level": e.level, "message": e.message}))
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "peerId": state.node.peer_id().to_string(),
        "listenAddresses": view.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "connectedPeers": view.connected,
        "knownPeers": view.peers.len(),
        // The networks (/24 or /48) the per-network cap of a blob's slivers counts (docs/protocol.md §9).
        "networks": {
            "own": view.own_network.map(|n| n.to_string()),
            "known": floe_protocol::diversity::count_networks(
                view.networks.values().copied().map(Some).chain(std::iter::once(view.own_network)),
            ),
        },
        // Reachability across NAT (docs/operators.md, "Behind NAT").
        "reachability": {
            "dhtMode": if view.dht_server { "server" } else { "client" },
            "externalAddresses": view.external_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "directPeers": view.direct_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "relayedOnlyPeers": view.relayed_only_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
        "sliversStored": counters.slivers.load(Ordering::Relaxed),
        "bytesStored": counters.bytes.load(Ordering::Relaxed),
        "capacityBytes": state.node.capacity(),
        "freeBytes": state.node.free_bytes(),
        // Blob lifetimes (docs/operators.md, "Lifetimes").
        "epoch": state.node.current_epoch(),
        "epochDurationSeconds": state.node.lifetimes().epoch_duration.as_secs(),
        "blobsExpiringSoon": m.blobs_expiring_soon.load(Ordering::Relaxed),
        // Peers that said they have no room left (docs/operators.md, "Capacity").
        "peersWithoutRoom": state.node.peers_without_room(),
        "uptimeSeconds": state.node.uptime().as_secs(),
        "corruptSliversFound": counters.corrupt_found.load(Ordering::Relaxed),
        "repair": {
            "repairsStarted": m.repairs_started.load(Ordering::Relaxed),
            "repairsDone": m.repairs_done.load(Ordering::Relaxed),
            "repairsFailed": m.repairs_failed.load(Ordering::Relaxed),
            "sliversRebuilt": m.slivers_rebuilt.load(Ordering::Relaxed),
            "sliversHandedOff": m.slivers_handed_off.load(Ordering::Relaxed),
            "holderListsAdopted": m.holder_lists_adopted.load(Ordering::Relaxed),
            "reunions": m.reunions.load(Ordering::Relaxed),
            "reunionListsAdopted": m.reunions_adopted.load(Ordering::Relaxed),
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
        "recentErrors": recent,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document lists exactly the routes and methods the router has.
    #[test]
    fn the_openapi_document_matches_the_router() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if ["get", "head", "put", "post", "delete", "patch", "options"]
                    .contains(&method.as_str())
                {
                    documented.push((path.clone(), method.to_uppercase()));
                }
            }
        }
        // A wildcard segment (`{*path}` for the router) is `{path}` in OpenAPI.
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .map(|m| (path.replace("{*", "{"), (*m).to_owned()))
            })
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
        for (path, _) in ROUTES {
            assert!(handlers(path).is_some(), "{path} has no handlers");
        }
    }
}
