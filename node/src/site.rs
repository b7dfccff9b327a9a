//! Sites: a directory published as one quilt (its files, as patches) plus a manifest blob that maps URL paths
//! to patches with their media types and headers, a not-found page and redirects. The site ID is the manifest's
//! blob ID, so a site ID always names the same pages (`GET /v1/sites/{siteId}/…` answers are immutable).
//!
//! This module owns the manifest format and the routing rule, shared by `floe site publish` (which builds it)
//! and the gateway (which serves by it); it does no IO. docs/operators.md, "Sites", describes both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use floe_protocol::BlobId;
use floe_protocol::quilt;

/// The media type a manifest blob is stored with.
pub const MANIFEST_CONTENT_TYPE: &str = "application/vnd.floe.site+json";
/// The optional file in a site's directory that sets its not-found page, redirects and headers; not published.
pub const CONFIG_FILE: &str = "floe-site.json";
/// Largest manifest accepted.
pub const MAX_MANIFEST_LEN: usize = 4 << 20;
/// Most redirects in a manifest.
pub const MAX_REDIRECTS: usize = 1000;
/// Most headers one file (or the whole site) may set.
pub const MAX_HEADERS: usize = 32;

/// Why a manifest or a site configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// Not JSON of the manifest's shape.
    #[error("not a floe site manifest: {0}")]
    Json(#[from] serde_json::Error),
    /// Larger than [`MAX_MANIFEST_LEN`].
    #[error("the manifest is {0} bytes, more than the {MAX_MANIFEST_LEN} accepted")]
    TooLarge(usize),
    /// A field that breaks the rules.
    #[error("{0}")]
    Invalid(String),
}

/// A site's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format: 1.
    #[serde(rename = "floeSite")]
    pub version: u32,
    /// The quilt holding the files.
    pub quilt: String,
    /// URL path (from `/`) → the file.
    pub files: BTreeMap<String, FileEntry>,
    /// The path of the page answered, with 404, for paths the site does not have.
    #[serde(rename = "notFound", default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<String>,
    /// URL path → where it moved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redirects: BTreeMap<String, Redirect>,
    /// Headers of every file (a file's own win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// One file of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Its patch's identifier in the quilt.
    pub patch: String,
    /// Its media type.
    #[serde(rename = "contentType")]
    pub content_type: String,
    /// Its own headers (`Cache-Control`, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A redirect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// Where to: a path of the site (from `/`) or an absolute `https://` or `http://` URL.
    pub to: String,
    /// 301, 302, 307 or 308 (302 when absent).
    #[serde(default = "found")]
    pub status: u16,
}

fn found() -> u16 {
    302
}

/// A site's host label: its ID in lower-case base32 without padding (52 characters, a valid DNS label, since
/// hostnames ignore case and blob IDs' base64 does not). `{label}.localhost:{port}` reaches a local gateway in
/// any browser; a public gateway needs a wildcard DNS name.
pub fn host_label(site: &BlobId) -> String {
    data_encoding::BASE32_NOPAD
        .encode(site.as_bytes())
        .to_ascii_lowercase()
}

/// The site a host label names, if it is one.
pub fn site_of_label(label: &str) -> Option<BlobId> {
    if label.len() != 52 {
        return None;
    }
    let bytes = data_encoding::BASE32_NOPAD
        .decode(label.to_ascii_uppercase().as_bytes())
        .ok()?;
    BlobId::from_slice(&bytes).ok()
}

/// What a request path of a site leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// A file, by its site path.
    File(&'a str, &'a FileEntry),
    /// A redirect: where, and the status.
    Redirect(String, u16),
    /// Nothing: the not-found page if the site has one.
    NotFound(Option<(&'a str, &'a FileEntry)>),
}

fn invalid(why: String) -> SiteError {
    SiteError::Invalid(why)
}

fn check_headers(what: &str, headers: &BTreeMap<String, String>) -> Result<(), SiteError> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!("{what}: more than {MAX_HEADERS} headers")));
    }
    for (name, value) in headers {
        let name_ok = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !name_ok || axum::http::HeaderValue::from_str(value).is_err() {
            return Err(invalid(format!(
                "{what}: header {name:?} is not a valid header"
            )));
        }
        // The gateway decides these: a site must not break ranges, validators or framing.
        if [
            "content-length",
            "content-range",
            "etag",
            "transfer-encoding",
            "connection",
        ]
        .contains(&name.to_ascii_lowercase().as_str())
        {
            return Err(invalid(format!("{what}: a site cannot set {name}")));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), SiteError> {
    if !path.starts_with('/')
        || path.split('/').any(|part| part == ".." || part == ".")
        || path.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "site path {path:?} must start with '/' and have no '.' or '..' parts"
        )));
    }
    Ok(())
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self, SiteError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(SiteError::TooLarge(bytes.len()));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks the rules [`Self::parse`] applies.
    pub fn check(&self) -> Result<(), SiteError> {
        if self.version != 1 {
            return Err(invalid(format!(
                "manifest version {} is not 1",
                self.version
            )));
        }
        self.quilt
            .parse::<BlobId>()
            .map_err(|e| invalid(format!("quilt {:?}: {e}", self.quilt)))?;
        if self.files.is_empty() {
            return Err(invalid("a site needs at least one file".into()));
        }
        if self.files.len() > quilt::MAX_PATCHES || self.redirects.len() > MAX_REDIRECTS {
            return Err(invalid("too many files or redirects".into()));
        }
        check_headers("the site", &self.headers)?;
        for (path, file) in &self.files {
            check_path(path)?;
            quilt::check_identifier(&file.patch).map_err(|e| invalid(e.to_string()))?;
            floe_protocol::content_type::check(&file.content_type)
                .map_err(|e| invalid(format!("{path}: {e}")))?;
            check_headers(path, &file.headers)?;
        }
        if let Some(page) = &self.not_found
            && !self.files.contains_key(page)
        {
            return Err(invalid(format!(
                "notFound {page:?} is not a file of the site"
            )));
        }
        for (from, redirect) in &self.redirects {
            check_path(from)?;
            let target_ok = (redirect.to.starts_with('/') && check_path(&redirect.to).is_ok())
                || redirect.to.starts_with("https://")
                || redirect.to.starts_with("http://");
            if !target_ok || axum::http::HeaderValue::from_str(&redirect.to).is_err() {
                return Err(invalid(format!(
                    "redirect {from:?}: {:?} is neither a site path nor an http(s) URL",
                    redirect.to
                )));
            }
            if ![301, 302, 307, 308].contains(&redirect.status) {
                return Err(invalid(format!(
                    "redirect {from:?}: status {} is not 301, 302, 307 or 308",
                    redirect.status
                )));
            }
        }
        Ok(())
    }

    /// The quilt's blob ID (checked by [`Self::parse`]).
    pub fn quilt_id(&self) -> Option<BlobId> {
        self.quilt.parse().ok()
    }

    /// Where `path` (what follows the site ID in the URL, percent-decoded, without the leading `/`) leads: a
    /// redirect first, then the file, then `path/index.html` for a directory (`/dir/` serves it; `/dir`
    /// redirects to `/dir/` so the page's relative links work), else not found.
    pub fn route(&self, path: &str) -> Route<'_> {
        let wanted = format!("/{path}");
        if let Some(redirect) = self.redirects.get(&wanted) {
            return Route::Redirect(redirect.to.clone(), redirect.status);
        }
        let file_path = if wanted.ends_with('/') {
            format!("{wanted}index.html")
        } else {
            wanted.clone()
        };
        if let Some((path, file)) = self.files.get_key_value(&file_path) {
            return Route::File(path, file);
        }
        if !wanted.ends_with('/') && self.files.contains_key(&format!("{wanted}/index.html")) {
            return Route::Redirect(format!("{wanted}/"), 301);
        }
        Route::NotFound(
            self.not_found
                .as_ref()
                .and_then(|page| self.files.get_key_value(page))
                .map(|(path, file)| (path.as_str(), file)),
        )
    }
}

/// A site directory's optional [`CONFIG_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The not-found page's path (e.g. `/404.html`).
    #[serde(rename = "notFound", default)]
    pub not_found: Option<String>,
    /// Redirects, as in the manifest.
    #[serde(default)]
    pub redirects: BTreeMap<String, Redirect>,
    /// Headers by site path, or `*` for every file.
    #[serde(default)]
    pub headers: BTreeMap<String, BTreeMap<String, String>>,
}

/// The media type of a site file by its name's extension (`application/octet-stream` when unknown).
pub fn content_type_for(path: &str) -> &'static str {
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The manifest of a site whose files (site paths, each its patch's identifier without the leading `/`) are in
/// `quilt`, with `config` applied.
pub fn manifest_for(
    quilt: &BlobId,
    paths: &[String],
    config: SiteConfig,
) -> Result<Manifest, SiteError> {
    let mut files = BTreeMap::new();
    for path in paths {
        let site_path = format!("/{path}");
        let headers = config.headers.get(&site_path).cloned().unwrap_or_default();
        files.insert(
            site_path,
            FileEntry {
                patch: path.clone(),
                content_type: content_type_for(path).to_owned(),
                headers,
            },
        );
    }
    for path in config.headers.keys() {
        if path != "*" && !files.contains_key(path) {
            return Err(invalid(format!(
                "{CONFIG_FILE} sets headers of {path:?}, which is not a file of the site"
            )));
        }
    }
    let manifest = Manifest {
        version: 1,
        quilt: quilt.to_string(),
        files,
        not_found: config.not_found,
        redirects: config.redirects,
        headers: config.headers.get("*").cloned().unwrap_or_default(),
    };
    manifest.check()?;
    Ok(manifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn site() -> Manifest {
        let quilt = BlobId::from_slice(&[1; 32]).unwrap();
        let paths: Vec<String> = ["index.html", "docs/index.html", "404.html", "app.js"]
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        let config: SiteConfig = serde_json::from_str(
            r#"{"notFound": "/404.html",
                "redirects": {"/old": {"to": "/docs/", "status": 301}},
                "headers": {"*": {"cache-control": "public, max-age=60"}, "/app.js": {"x-extra": "1"}}}"#,
        )
        .unwrap();
        manifest_for(&quilt, &paths, config).unwrap()
    }

    #[test]
    fn paths_route_to_files_directories_redirects_and_the_not_found_page() {
        let site = site();
        let parsed = Manifest::parse(&serde_json::to_vec(&site).unwrap()).unwrap();
        assert_eq!(parsed, site);
        assert!(matches!(site.route(""), Route::File("/index.html", _)));
        assert!(matches!(
            site.route("docs/"),
            Route::File("/docs/index.html", _)
        ));
        assert_eq!(site.route("docs"), Route::Redirect("/docs/".into(), 301));
        assert_eq!(site.route("old"), Route::Redirect("/docs/".into(), 301));
        match site.route("app.js") {
            Route::File(_, file) => {
                assert_eq!(file.content_type, "text/javascript; charset=utf-8");
                assert_eq!(file.headers["x-extra"], "1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            site.route("nope"),
            Route::NotFound(Some(("/404.html", _)))
        ));
        assert_eq!(site.headers["cache-control"], "public, max-age=60");
    }

    #[test]
    fn bad_manifests_and_configs_say_what_is_wrong() {
        let good = site();
        for (change, needle) in [
            (r#"{"floeSite": 2}"#, "version"),
            (r#"{"quilt": "nope"}"#, "quilt"),
            (r#"{"notFound": "/missing.html"}"#, "notFound"),
            (
                r#"{"redirects": {"/a": {"to": "javascript:alert(1)"}}}"#,
                "neither",
            ),
            (
                r#"{"redirects": {"/a": {"to": "/b", "status": 200}}}"#,
                "status",
            ),
            (r#"{"headers": {"content-length": "5"}}"#, "cannot set"),
            (
                r#"{"files": {"/../x": {"patch": "x", "contentType": "text/plain"}}}"#,
                "'..'",
            ),
            (r#"{"surprise": 1}"#, "unknown field"),
        ] {
            let mut value = serde_json::to_value(&good).unwrap();
            for (k, v) in serde_json::from_str::<serde_json::Value>(change)
                .unwrap()
                .as_object()
                .unwrap()
            {
                value[k] = v.clone();
            }
            let error = Manifest::parse(&serde_json::to_vec(&value).unwrap())
                .unwrap_err()
                .to_string();
            assert!(error.contains(needle), "{change}: {error}");
        }
        let oversized = Manifest::parse(&vec![b' '; MAX_MANIFEST_LEN + 1])
            .unwrap_err()
            .to_string();
        assert!(oversized.contains("more than"), "{oversized}");
        let quilt = BlobId::from_slice(&[1; 32]).unwrap();
        let config: SiteConfig =
            serde_json::from_str(r#"{"headers": {"/ghost.html": {"x": "1"}}}"#).unwrap();
        let error = manifest_for(&quilt, &["index.html".into()], config)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ghost"), "{error}");
        assert_eq!(content_type_for("a/B.PNG"), "image/png");
        let label = host_label(&quilt);
        assert_eq!(label.len(), 52);
        assert_eq!(site_of_label(&label), Some(quilt));
        assert_eq!(site_of_label(&label.to_uppercase()), Some(quilt));
        assert_eq!(site_of_label("localhost"), None);
        assert_eq!(site_of_label(&"0".repeat(52)), None);
        assert_eq!(content_type_for("Makefile"), "application/octet-stream");
    }
}
