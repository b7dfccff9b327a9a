//! What browsers need of the gateway: CORS and `X-Content-Type-Options: nosniff` on every answer.
//!
//! Reads of blobs (and of `/v1/api`) are open to every origin with `Access-Control-Allow-Origin: *` (no
//! `Vary: Origin`, so shared caches keep one copy for all sites); writes only from the origins the operator lists
//! (`--cors-write-origins`, default none, `*` for all), which get their own origin back with `Vary: Origin`. A
//! browser write from another origin is refused with a 403 before its body is read. The node's own routes
//! (`/v1/node/status`, `/metrics`, the status page) carry no CORS headers: they describe the operator's machine
//! (peer ID, addresses, recent errors), which no website a node's owner visits should be able to read. Written here rather than with tower-http's CorsLayer because that
//! layer applies one origin policy to every method, and floe needs two.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::errors::{bare, error};

/// Headers a page on another origin may read from an answer (beyond the CORS-safelisted ones).
const EXPOSED: &str =
    "ETag, Content-Range, Content-Length, Accept-Ranges, Retry-After, X-Content-Type-Options";
/// Methods the gateway serves.
const ALLOWED_METHODS: &str = "GET, HEAD, PUT, DELETE, OPTIONS";
/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// The origins allowed to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteOrigins {
    /// None (the default): browsers on other origins only read.
    #[default]
    None,
    /// Every origin.
    Any,
    /// These origins (`scheme://host[:port]`).
    List(Arc<Vec<String>>),
}

/// A `--cors-write-origins` value that is not `*` or a comma-separated list of origins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--cors-write-origins takes * or origins like https://app.example:8443 separated by commas; {0:?} is not one"
)]
pub struct WriteOriginsError(String);

impl WriteOrigins {
    /// Parses `*`, an empty string (none) or `origin[,origin…]`.
    pub fn parse(value: &str) -> Result<Self, WriteOriginsError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Self::None);
        }
        if value == "*" {
            return Ok(Self::Any);
        }
        let mut origins = Vec::new();
        for origin in value.split(',').map(str::trim) {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains('/')
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
            if !valid {
                return Err(WriteOriginsError(origin.to_owned()));
            }
            origins.push(normalize_origin(origin));
        }
        Ok(Self::List(Arc::new(origins)))
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::List(list) => {
                let origin = normalize_origin(origin);
                list.contains(&origin)
            }
        }
    }
}

/// Whether other origins may use `path` at all: blobs, quilts, sites and the API description.
fn is_shared(path: &str) -> bool {
    path == "/v1/blobs"
        || path.starts_with("/v1/blobs/")
        || path == "/v1/api"
        || path == "/v1/quilts"
        || path.starts_with("/v1/quilts/")
        || path.starts_with("/v1/sites/")
        || path.starts_with("/v1/names/")
}

/// An origin as browsers send it: lower case, without the scheme's default port.
fn normalize_origin(origin: &str) -> String {
    let origin = origin.trim().to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
        {
            return bare.to_owned();
        }
    }
    origin
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The middleware: answers preflights and plain `OPTIONS`, refuses writes from origins not listed, and adds the
/// CORS and nosniff headers to every answer.
pub async fn browser_headers(
    State(origins): State<WriteOrigins>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let method = request.method().clone();
    if !is_shared(request.uri().path()) {
        let mut response = if method == Method::OPTIONS {
            let mut response = bare(StatusCode::NO_CONTENT);
            set(response.headers_mut(), header::ALLOW, "GET, HEAD, OPTIONS");
            response
        } else {
            next.run(request).await
        };
        set(
            response.headers_mut(),
            header::X_CONTENT_TYPE_OPTIONS,
            "nosniff",
        );
        return response;
    }
    let mut response = if method == Method::OPTIONS {
        preflight(&origins, origin.as_deref(), request.headers())
    } else if !is_read(&method)
        && let Some(origin) = origin.as_deref()
        && !origins.allows(origin)
    {
        error(
            StatusCode::FORBIDDEN,
            format!(
                "this node does not accept writes from pages on {origin} (--cors-write-origins)"
            ),
        )
    } else {
        let mut response = next.run(request).await;
        let h = response.headers_mut();
        match origin.as_deref() {
            Some(origin) if !is_read(&method) => {
                set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            _ => set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        }
        set(h, header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
        response
    };
    set(
        response.headers_mut(),
        header::X_CONTENT_TYPE_OPTIONS,
        "nosniff",
    );
    response
}

/// The answer to an `OPTIONS` request: a CORS preflight when it carries `Origin` and
/// `Access-Control-Request-Method`, else the methods the gateway serves.
fn preflight(origins: &WriteOrigins, origin: Option<&str>, headers: &HeaderMap) -> Response {
    let wanted = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Method::from_bytes(v.trim().as_bytes()).ok());
    let (Some(origin), Some(wanted)) = (origin, wanted) else {
        let mut response = bare(StatusCode::NO_CONTENT);
        set(response.headers_mut(), header::ALLOW, ALLOWED_METHODS);
        return response;
    };
    let mut response = if is_read(&wanted) {
        let mut response = bare(StatusCode::NO_CONTENT);
        let h = response.headers_mut();
        set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        set(h, header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD");
        response
    } else if (wanted == Method::PUT || wanted == Method::DELETE) && origins.allows(origin) {
        let mut response = bare(StatusCode::NO_CONTENT);
        let h = response.headers_mut();
        set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        set(h, header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
        response
    } else {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{wanted} from pages on {origin} is not allowed here: reads are open to every origin, writes only \
                 to the origins in --cors-write-origins"
            ),
        );
    };
    let h = response.headers_mut();
    // Any request header may come along: the gateway reads only the ones it knows.
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    set(h, header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    fn app(origins: WriteOrigins) -> axum::Router {
        axum::Router::new()
            .route(
                "/v1/blobs",
                axum::routing::put(|| async { "stored" }).get(|| async { "read" }),
            )
            .layer(axum::middleware::from_fn_with_state(
                origins,
                browser_headers,
            ))
    }

    async fn send(app: axum::Router, method: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(method).uri("/v1/blobs");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn reads_are_open_to_every_origin() {
        let response = send(
            app(WriteOrigins::None),
            "GET",
            &[("origin", "https://a.example")],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("Content-Range")
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let preflight = send(
            app(WriteOrigins::None),
            "OPTIONS",
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range, if-none-match"),
            ],
        )
        .await;
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
        let h = preflight.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "range, if-none-match"
        );
    }

    #[tokio::test]
    async fn writes_only_from_listed_origins() {
        let listed = WriteOrigins::parse("https://app.example, http://127.0.0.1:8080").unwrap();
        let ask = |origin: &'static str| {
            vec![("origin", origin), ("access-control-request-method", "PUT")]
        };
        let ok = send(app(listed.clone()), "OPTIONS", &ask("https://app.example")).await;
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(ok.headers()[header::VARY], "Origin");
        let refused = send(app(listed.clone()), "OPTIONS", &ask("https://evil.example")).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            refused
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        // The write itself is refused too, whatever a browser did about the preflight.
        let put = send(
            app(listed.clone()),
            "PUT",
            &[("origin", "https://evil.example")],
        )
        .await;
        assert_eq!(put.status(), StatusCode::FORBIDDEN);
        let put = send(app(listed), "PUT", &[("origin", "http://127.0.0.1:8080")]).await;
        assert_eq!(put.status(), StatusCode::OK);
        assert_eq!(
            put.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://127.0.0.1:8080"
        );
        // No origin: not a browser's cross-origin request, nothing to refuse.
        assert_eq!(
            send(app(WriteOrigins::None), "PUT", &[]).await.status(),
            StatusCode::OK
        );
        let any = send(
            app(WriteOrigins::Any),
            "PUT",
            &[("origin", "https://x.example")],
        )
        .await;
        assert_eq!(any.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_plain_options_lists_the_methods() {
        let response = send(app(WriteOrigins::None), "OPTIONS", &[]).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[header::ALLOW], ALLOWED_METHODS);
    }

    #[tokio::test]
    async fn the_nodes_own_routes_are_not_shared_with_other_origins() {
        let app = axum::Router::new()
            .route("/v1/node/status", axum::routing::get(|| async { "{}" }))
            .layer(axum::middleware::from_fn_with_state(
                WriteOrigins::Any,
                browser_headers,
            ));
        let request = Request::builder()
            .uri("/v1/node/status")
            .header("origin", "https://a.example")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        let listed = WriteOrigins::parse("https://app.example:443,http://x.example:80").unwrap();
        assert!(listed.allows("https://app.example"));
        assert!(listed.allows("HTTP://X.example"));
        assert!(!listed.allows("https://app.example:8443"));
    }

    #[test]
    fn write_origins_parse_strictly() {
        assert_eq!(WriteOrigins::parse("").unwrap(), WriteOrigins::None);
        assert_eq!(WriteOrigins::parse("*").unwrap(), WriteOrigins::Any);
        for bad in [
            "app.example",
            "https://",
            "https://a.example/path",
            "ftp://a.example",
            "https://a b",
        ] {
            assert!(WriteOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
