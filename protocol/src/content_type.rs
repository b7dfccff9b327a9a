//! A blob's media type: the label its writer gave it (`Content-Type` on the gateway's PUT), kept by holders beside
//! the holder list and handed to readers with the metadata.
//!
//! The label is not part of the blob ID: the same bytes stored as `text/plain` and as `application/json` are one
//! blob, and the first label a holder records sticks. It is therefore not verified the way slivers are: a hostile
//! holder can change it, which is why gateways serve blobs with `X-Content-Type-Options: nosniff` and a sandbox
//! policy (docs/protocol.md §13). This module owns only the rule for which labels are well formed; it must not
//! guess types from content or file names.

/// Longest accepted label, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// Why a content type is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    /// Longer than [`MAX_CONTENT_TYPE_LEN`].
    #[error("a content type has at most {MAX_CONTENT_TYPE_LEN} bytes, got {0}")]
    TooLong(usize),
    /// Not of the form `type/subtype[; parameters]` in visible ASCII.
    #[error(
        "a content type is type/subtype in visible ASCII (for example text/html; charset=utf-8)"
    )]
    Malformed,
}

/// Checks a content type; returns it trimmed. An empty label means "none" and is accepted.
///
/// Accepted: visible ASCII plus spaces and tabs, a non-empty type and subtype of RFC 9110 token characters
/// separated by one `/`, optionally followed by `;` and parameters. That is what every browser and HTTP stack
/// accepts as a header value, so a stored label can always be sent back.
pub fn check(label: &str) -> Result<&str, ContentTypeError> {
    let label = label.trim_matches([' ', '\t']);
    if label.len() > MAX_CONTENT_TYPE_LEN {
        return Err(ContentTypeError::TooLong(label.len()));
    }
    if label.is_empty() {
        return Ok(label);
    }
    if !label
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(ContentTypeError::Malformed);
    }
    let essence = label.split(';').next().unwrap_or_default().trim_end();
    let (kind, subtype) = essence.split_once('/').ok_or(ContentTypeError::Malformed)?;
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if is_token(kind) && is_token(subtype) {
        Ok(label)
    } else {
        Err(ContentTypeError::Malformed)
    }
}

/// A label from a peer or the disk, kept if well formed: a malformed one is a peer's fault (or rot), not the
/// blob's, so the blob is served without it.
pub fn or_none(label: &str) -> &str {
    check(label).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_types_pass_and_broken_ones_do_not() {
        for good in [
            "text/html",
            "text/html; charset=utf-8",
            "video/webm",
            "application/vnd.api+json",
            "  image/png ",
            "",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        assert_eq!(check(" text/plain\t"), Ok("text/plain"));
        for bad in [
            "text",
            "/html",
            "text/",
            "text/html\r\nSet-Cookie: x=1",
            "text/h tml",
            "tëxt/html",
            "a/b/c",
        ] {
            assert_eq!(check(bad), Err(ContentTypeError::Malformed), "{bad:?}");
        }
        assert_eq!(or_none(" text/plain "), "text/plain");
        assert_eq!(or_none("text/html\r\nX: y"), "");
        let long = format!("text/{}", "x".repeat(300));
        assert_eq!(check(&long), Err(ContentTypeError::TooLong(305)));
    }

    proptest! {
        /// Whatever passes is a valid HTTP header value: no control characters, no line breaks, no non-ASCII.
        #[test]
        fn accepted_labels_are_header_safe(label in "\\PC{0,40}") {
            if let Ok(ok) = check(&label) {
                prop_assert!(ok.len() <= MAX_CONTENT_TYPE_LEN);
                prop_assert!(ok.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)));
            }
        }
    }
}
