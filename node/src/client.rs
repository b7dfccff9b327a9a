//! `floe put`, `floe get` and `floe status`: a client of a node's HTTP gateway.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// The default gateway.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:31415";

/// Transfers at least this large show a progress bar (on a terminal only; indicatif hides it elsewhere).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

fn progress_bar(len: u64, verb: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet || len < PROGRESS_MIN_BYTES {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(verb.to_owned());
    bar
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn error_of(status: u16, body: &str) -> anyhow::Error {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    anyhow::anyhow!("gateway answered {status}: {message}")
}

/// Uploads `file`; returns the gateway's JSON answer. `quiet` hides the progress bar.
pub fn put(gateway: &str, file: &Path, quiet: bool) -> anyhow::Result<Value> {
    let handle = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let len = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let url = format!("{}/v1/blobs", gateway.trim_end_matches('/'));
    let bar = progress_bar(len, "uploading", quiet);
    let mut reader = bar.wrap_read(handle);
    let mut response = agent()
        .put(&url)
        .header("Content-Length", len.to_string())
        .send(ureq::SendBody::from_reader(&mut reader))
        .with_context(|| format!("sending to {url}; is a node running there?"))?;
    bar.finish_and_clear();
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()?;
    if status != 200 {
        return Err(error_of(status, &body));
    }
    serde_json::from_str(&body).context("the gateway's answer is not JSON")
}

/// The blob ID in a put answer (`newlyCreated.blobObject.blobId` or `alreadyCertified.blobId`).
pub fn blob_id_of(answer: &Value) -> Option<&str> {
    answer["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .or_else(|| answer["alreadyCertified"]["blobId"].as_str())
}

/// Downloads a blob into `out` (or standard output); returns the byte count. A bar shows for large downloads
/// to a file.
pub fn get(gateway: &str, blob_id: &str, out: Option<&Path>) -> anyhow::Result<u64> {
    blob_id
        .parse::<floe_protocol::BlobId>()
        .context("bad blob ID")?;
    let url = format!("{}/v1/blobs/{blob_id}", gateway.trim_end_matches('/'));
    let mut response = agent()
        .get(&url)
        .call()
        .with_context(|| format!("asking {url}; is a node running there?"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        return Err(error_of(status, &body));
    }
    let len = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bar = progress_bar(len, "downloading", out.is_none());
    let mut reader = bar.wrap_read(response.body_mut().with_config().limit(u64::MAX).reader());
    let copied = match out {
        Some(path) => {
            // Write beside the target and rename, so a failed download leaves no partial file.
            let tmp = path.with_extension("floe-partial");
            let mut file =
                File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let copied = std::io::copy(&mut reader, &mut file).context("downloading");
            match copied {
                Ok(n) => {
                    file.sync_all()?;
                    std::fs::rename(&tmp, path)?;
                    n
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        None => std::io::copy(&mut reader, &mut std::io::stdout().lock())?,
    };
    bar.finish_and_clear();
    Ok(copied)
}

/// A blob's status as JSON.
pub fn status(gateway: &str, blob_id: &str) -> anyhow::Result<Value> {
    blob_id
        .parse::<floe_protocol::BlobId>()
        .context("bad blob ID")?;
    let url = format!(
        "{}/v1/blobs/{blob_id}/status",
        gateway.trim_end_matches('/')
    );
    let mut response = agent()
        .get(&url)
        .call()
        .with_context(|| format!("asking {url}"))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        return Err(error_of(status, &body));
    }
    serde_json::from_str(&body).context("the gateway's answer is not JSON")
}

/// Writes `value` to standard output, pretty.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
