//! Byte ranges and conditional requests (RFC 9110 §13–14) for blob reads: pure functions of the request headers
//! and the blob's length and entity tag, so every rule is unit-tested here and the handlers only apply them.
//!
//! A blob ID commits to every byte, so a blob's representation never changes: its entity tag is the quoted blob
//! ID, always strong, and no `Last-Modified` exists. That makes `If-Modified-Since` and `If-Unmodified-Since`
//! moot (ignored, as RFC 9110 allows without a modification date) and an `If-Range` date never a match.

use axum::http::{HeaderMap, HeaderValue, Method, header};

/// The entity tag of a whole blob: its ID, quoted.
pub fn blob_etag(blob_id: &floe_protocol::BlobId) -> String {
    format!("\"{blob_id}\"")
}

/// What the preconditions of a request say to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the request.
    Proceed,
    /// 304 Not Modified (a GET or HEAD whose `If-None-Match` matched).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates `If-Match` and `If-None-Match` against a resource that exists with entity tag `etag`, in RFC 9110
/// §13.2.2's order.
pub fn evaluate(method: &Method, headers: &HeaderMap, etag: &str) -> Precondition {
    if let Some(value) = header_str(headers, header::IF_MATCH)
        && !matches_any(&value, etag, true)
    {
        return Precondition::Failed;
    }
    if let Some(value) = header_str(headers, header::IF_NONE_MATCH)
        && matches_any(&value, etag, false)
    {
        return if method == Method::GET || method == Method::HEAD {
            Precondition::NotModified
        } else {
            Precondition::Failed
        };
    }
    Precondition::Proceed
}

/// Whether a `Range` header is to be honoured: it is, unless an `If-Range` names another representation
/// (a different entity tag, a weak one, or a date, since blobs have no modification date).
pub fn range_applies(headers: &HeaderMap, etag: &str) -> bool {
    match headers
        .get(header::IF_RANGE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => true,
        Some(value) => {
            let value = value.trim();
            !value.starts_with("W/") && value == etag
        }
    }
}

/// A header's value; a list header (`If-Match`, `If-None-Match`) sent as several lines is one comma-separated list
/// (RFC 9110 §5.3). A value that is not visible ASCII cannot match any tag: it counts as a list of nothing.
fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    Some(
        lines
            .map(|v: &HeaderValue| v.to_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Whether a comma-separated list of entity tags (or `*`) matches `etag`; `strong` refuses weak tags.
fn matches_any(list: &str, etag: &str, strong: bool) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        match tag.strip_prefix("W/") {
            Some(weak) => !strong && weak == etag,
            None => tag == etag,
        }
    })
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against a blob of `len` bytes: `None` when the header
/// is to be ignored (not bytes, malformed, or several ranges: RFC 9110 lets a server send the whole blob),
/// `Some(Err(()))` when it cannot be satisfied (416), else `[start, end)`.
pub fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let value = value.trim();
    let spec = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .and_then(|_| value.get(6..))?;
    if spec.contains(',') {
        return None;
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

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"abc\"";

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=0-", 100), Some(Ok((0, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=50-1000", 100), Some(Ok((50, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-", 0), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("Bytes=0-1", 100), Some(Ok((0, 2))));
        assert_eq!(parse_range("bytes=x-1", 100), None);
        assert_eq!(parse_range("bytes=-", 100), None);
        assert_eq!(parse_range("bytes=5-3", 100), None);
    }

    #[test]
    fn if_none_match_gives_304_on_reads_and_412_on_writes() {
        let get = Method::GET;
        for value in [TAG, "\"x\", \"abc\"", "W/\"abc\"", "*"] {
            let h = headers(&[(header::IF_NONE_MATCH, value)]);
            assert_eq!(
                evaluate(&get, &h, TAG),
                Precondition::NotModified,
                "{value}"
            );
            assert_eq!(evaluate(&Method::PUT, &h, TAG), Precondition::Failed);
        }
        let h = headers(&[(header::IF_NONE_MATCH, "\"other\"")]);
        assert_eq!(evaluate(&get, &h, TAG), Precondition::Proceed);
        // The same list over two header lines.
        let mut h = headers(&[(header::IF_NONE_MATCH, "\"other\"")]);
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert_eq!(evaluate(&get, &h, TAG), Precondition::NotModified);
        assert_eq!(
            evaluate(&get, &HeaderMap::new(), TAG),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_needs_a_strong_match_and_comes_first() {
        let get = Method::GET;
        for (value, expected) in [
            (TAG, Precondition::Proceed),
            ("*", Precondition::Proceed),
            ("\"a\", \"abc\"", Precondition::Proceed),
            ("W/\"abc\"", Precondition::Failed),
            ("\"other\"", Precondition::Failed),
        ] {
            let h = headers(&[(header::IF_MATCH, value)]);
            assert_eq!(evaluate(&get, &h, TAG), expected, "{value}");
        }
        // A failing If-Match wins over a matching If-None-Match.
        let h = headers(&[
            (header::IF_MATCH, "\"other\""),
            (header::IF_NONE_MATCH, TAG),
        ]);
        assert_eq!(evaluate(&get, &h, TAG), Precondition::Failed);
    }

    #[test]
    fn if_range_honours_the_range_only_for_this_blobs_strong_tag() {
        assert!(range_applies(&HeaderMap::new(), TAG));
        assert!(range_applies(&headers(&[(header::IF_RANGE, TAG)]), TAG));
        assert!(!range_applies(
            &headers(&[(header::IF_RANGE, "\"old\"")]),
            TAG
        ));
        assert!(!range_applies(
            &headers(&[(header::IF_RANGE, "W/\"abc\"")]),
            TAG
        ));
        assert!(!range_applies(
            &headers(&[(header::IF_RANGE, "Wed, 21 Oct 2015 07:28:00 GMT")]),
            TAG
        ));
    }
}
