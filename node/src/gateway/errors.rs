//! The gateway's one error shape, Walrus' envelope: `{"error":{"status":"NOT_FOUND","code":404,"message":…,
//! "details":[]}}`, for every error the gateway answers, its own and those of the HTTP stack under it.
//!
//! Handlers build errors with [`error`]; [`envelope_errors`] wraps whatever else answers with an error status and
//! no JSON (axum's rejections, 405 from the router, a path that is not UTF-8) in the same envelope, so a client
//! parses one shape. Every 503 carries `Retry-After`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client is told to wait after a 503 (busy, or too few holders reachable right now).
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// The envelope's `status`: the google.rpc code names Walrus uses, by HTTP status.
pub fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 414 | 431 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ALREADY_EXISTS",
        412 | 422 => "FAILED_PRECONDITION",
        416 => "OUT_OF_RANGE",
        429 | 507 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// An error answer in the envelope.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = json!({"error": {
        "status": status_name(status),
        "code": status.as_u16(),
        "message": message.to_string(),
        "details": [],
    }});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

/// The envelope as raw HTTP/1.1 bytes, for answers written before hyper runs (a refused connection).
pub fn raw_response(status: StatusCode, message: &str) -> Vec<u8> {
    let body = json!({"error": {
        "status": status_name(status),
        "code": status.as_u16(),
        "message": message,
        "details": [],
    }})
    .to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: {}\r\n\
         access-control-allow-origin: *\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        RETRY_AFTER_SECONDS,
    )
    .into_bytes()
}

/// Most bytes of a foreign error body kept as the envelope's message.
const MAX_FOREIGN_MESSAGE: usize = 1024;

/// Marks an error answer whose body is the answer itself (a site's not-found page): the envelope leaves it be.
#[derive(Debug, Clone, Copy)]
pub struct BodyIsTheAnswer;

/// Wraps every error answer without a JSON body in the envelope, keeping its text as the message.
pub async fn envelope_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<BodyIsTheAnswer>().is_some() {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_FOREIGN_MESSAGE * 4).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let mut message: String = text.chars().take(MAX_FOREIGN_MESSAGE).collect();
    if message.is_empty() {
        message = default_message(status).to_owned();
    }
    let mut wrapped = error(status, message);
    // Keep what the original answer said about the request (Allow on a 405, Content-Range on a 416, …).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            wrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    wrapped
}

fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        405 => "this route does not take that method; see /v1/api",
        413 => "the body is larger than this gateway accepts (--max-body)",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// An empty body with a status, for answers that must not carry one (304).
pub fn bare(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_errors_become_the_envelope_and_keep_their_headers() {
        let app = axum::Router::new()
            .route(
                "/x",
                axum::routing::get(|| async {
                    (StatusCode::BAD_REQUEST, [("x-kept", "1")], "bad thing")
                }),
            )
            .layer(axum::middleware::from_fn(envelope_errors));
        let response = tower::ServiceExt::oneshot(
            app,
            Request::builder().uri("/x").body(Body::empty()).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["x-kept"], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(value["error"]["code"], 400);
        assert_eq!(value["error"]["message"], "bad thing");
        assert_eq!(value["error"]["details"], json!([]));
    }

    #[test]
    fn every_503_says_when_to_retry() {
        let response = error(StatusCode::SERVICE_UNAVAILABLE, "busy");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let raw = String::from_utf8(raw_response(StatusCode::SERVICE_UNAVAILABLE, "full")).unwrap();
        assert!(raw.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(raw.contains("retry-after: 2\r\n"));
        let body = raw.split("\r\n\r\n").nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"]["message"], "full");
    }
}
