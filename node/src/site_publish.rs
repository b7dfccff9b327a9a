//! `floe site publish DIR`: stores a directory as one quilt (`PUT /v1/quilts`, a part per file with its media
//! type) and then its manifest (`crate::site`) as a blob; the manifest's blob ID is the site ID.
//!
//! Files whose name starts with `.` (`.git`, `.DS_Store`) and the directory's own `floe-site.json` are not
//! published. The whole site is sent as one request body, so it is read into memory first; the node's
//! `--max-body` bounds it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::client::{ClientError, PutParams, agent, gateway_url, json_answer};
use crate::site::{self, SiteConfig};
use floe_protocol::quilt;

const BOUNDARY: &str = "floe-site-publish-6c0f1e2d";

/// The files of `dir` to publish: (identifier, path), sorted by identifier.
fn site_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ClientError> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let entries = std::fs::read_dir(&at).map_err(|source| ClientError::Local {
            what: "reading the directory",
            path: at.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ClientError::Local {
                what: "reading the directory",
                path: at.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(ClientError::BadArgument(format!(
                    "{} is not UTF-8: a site path must be",
                    path.display()
                )));
            };
            if name.starts_with('.') || (at == dir && name == site::CONFIG_FILE) {
                continue;
            }
            let kind = std::fs::metadata(&path).map_err(|source| ClientError::Local {
                what: "reading",
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).map_err(|_| {
                ClientError::BadArgument(format!("{} is outside the site", path.display()))
            })?;
            let identifier = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            quilt::check_identifier(&identifier)
                .map_err(|e| ClientError::BadArgument(format!("{}: {e}", path.display())))?;
            files.push((identifier, path));
        }
    }
    if files.is_empty() {
        return Err(ClientError::BadArgument(format!(
            "{} has no files to publish",
            dir.display()
        )));
    }
    if files.len() > quilt::MAX_PATCHES {
        return Err(ClientError::BadArgument(format!(
            "{} has {} files; a site holds at most {}",
            dir.display(),
            files.len(),
            quilt::MAX_PATCHES
        )));
    }
    files.sort();
    Ok(files)
}

fn query(params: PutParams) -> String {
    let mut query = Vec::new();
    if let Some(epochs) = params.epochs {
        query.push(format!("epochs={epochs}"));
    }
    if params.permanent {
        query.push("permanent=true".to_owned());
    }
    query.join("&")
}

fn send(url: &str, content_type: &str, body: &[u8]) -> Result<Value, ClientError> {
    let mut response = agent()
        .put(url)
        .header("Content-Type", content_type)
        .send(body)
        .map_err(|e| ClientError::Connection {
            url: url.to_owned(),
            source: Box::new(e),
        })?;
    json_answer(url, &mut response)
}

/// The stored blob's ID and deletion token in a Walrus store answer.
fn stored(answer: &Value) -> Result<(String, Option<String>), ClientError> {
    let shape = if answer["newlyCreated"].is_object() {
        &answer["newlyCreated"]
    } else {
        &answer["alreadyCertified"]
    };
    let id = shape["blobObject"]["blobId"]
        .as_str()
        .or_else(|| shape["blobId"].as_str())
        .ok_or_else(|| ClientError::BadAnswer("the store answer has no blob ID".into()))?;
    Ok((
        id.to_owned(),
        shape["deletionToken"].as_str().map(str::to_owned),
    ))
}

/// The epoch a store answer says the blob is kept until, as a name record carries it: 0 for no end (Walrus'
/// answer says u32::MAX), and 0 if the answer has none.
fn end_epoch(answer: &Value) -> u64 {
    let end = answer["newlyCreated"]["blobObject"]["storage"]["endEpoch"]
        .as_u64()
        .or_else(|| answer["alreadyCertified"]["endEpoch"].as_u64())
        .unwrap_or(0);
    if end == u64::from(u32::MAX) { 0 } else { end }
}

/// The site's own-origin address on the gateway `base`: `{label}.localhost` for a gateway on an IP address or
/// localhost (browsers resolve every `*.localhost` to the loopback), else `{label}.{host}` (which needs a
/// wildcard DNS name for the gateway).
pub(crate) fn origin_url(base: &str, label: &str) -> String {
    let uri = base.parse::<ureq::http::Uri>().ok();
    let scheme = uri.as_ref().and_then(|u| u.scheme_str()).unwrap_or("http");
    let host = uri.as_ref().and_then(|u| u.host()).unwrap_or("localhost");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        "localhost"
    } else {
        host
    };
    match uri.as_ref().and_then(|u| u.port_u16()) {
        Some(port) => format!("{scheme}://{label}.{host}:{port}/"),
        None => format!("{scheme}://{label}.{host}/"),
    }
}

/// Publishes `dir` through `gateway`; returns `{siteId, quiltId, files, url, …DeletionToken}`.
pub fn publish(gateway: &str, dir: &Path, params: PutParams) -> Result<Value, ClientError> {
    let base = gateway_url(gateway)?;
    let config = match std::fs::read(dir.join(site::CONFIG_FILE)) {
        Ok(bytes) => serde_json::from_slice::<SiteConfig>(&bytes).map_err(|e| {
            ClientError::BadArgument(format!("{}: {e}", dir.join(site::CONFIG_FILE).display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SiteConfig::default(),
        Err(source) => {
            return Err(ClientError::Local {
                what: "reading",
                path: dir.join(site::CONFIG_FILE),
                source,
            });
        }
    };
    let files = site_files(dir)?;
    let mut body = Vec::new();
    for (identifier, path) in &files {
        let data = std::fs::read(path).map_err(|source| ClientError::Local {
            what: "reading",
            path: path.clone(),
            source,
        })?;
        // Identifiers are UTF-8 without control characters; quotes and backslashes are escaped for the header.
        let name = identifier.replace('\\', "\\\\").replace('"', "\\\"");
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: {}\r\n\r\n",
                site::content_type_for(identifier)
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let query = query(params);
    let answer = send(
        &format!("{base}/v1/quilts?{query}"),
        &format!("multipart/form-data; boundary={BOUNDARY}"),
        &body,
    )?;
    let (quilt_id, quilt_token) = stored(&answer["blobStoreResult"])?;
    let quilt = quilt_id
        .parse()
        .map_err(|_| ClientError::BadAnswer(format!("bad quilt ID {quilt_id:?}")))?;
    let paths: Vec<String> = files
        .iter()
        .map(|(identifier, _)| identifier.clone())
        .collect();
    let manifest = site::manifest_for(&quilt, &paths, config)
        .map_err(|e| ClientError::BadArgument(e.to_string()))?;
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    let separator = if query.is_empty() { "" } else { "&" };
    let answer = send(
        &format!(
            "{base}/v1/blobs?content_type=application%2Fvnd.floe.site%2Bjson{separator}{query}"
        ),
        "application/octet-stream",
        &manifest,
    )?;
    let (site_id, manifest_token) = stored(&answer)?;
    let end_epoch = end_epoch(&answer);
    let label = site_id
        .parse()
        .map(|id| site::host_label(&id))
        .map_err(|_| ClientError::BadAnswer(format!("bad site ID {site_id:?}")))?;
    Ok(json!({
        "siteId": site_id,
        "quiltId": quilt_id,
        "files": files.len(),
        "url": format!("{base}/v1/sites/{site_id}/"),
        "originUrl": origin_url(&base, &label),
        "endEpoch": end_epoch,
        "manifestDeletionToken": manifest_token,
        "quiltDeletionToken": quilt_token,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_origins_use_localhost_for_addresses() {
        let label = "x".repeat(52);
        assert_eq!(
            super::origin_url("http://127.0.0.1:31415", &label),
            format!("http://{label}.localhost:31415/")
        );
        assert_eq!(
            super::origin_url("http://[::1]:8080", &label),
            format!("http://{label}.localhost:8080/")
        );
        assert_eq!(
            super::origin_url("https://gw.example", &label),
            format!("https://{label}.gw.example/")
        );
    }
}
