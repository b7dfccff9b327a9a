//! `floe put`, `floe get` and `floe status`: a client of a node's HTTP gateway.
//!
//! Data goes in from files, pipes, FIFOs and standard input, and out to files (written beside the target and
//! renamed, so a failed download leaves nothing) or standard output. A source whose length is not known up front
//! (anything but a regular file) is sent with chunked encoding: the client never announces a length the source
//! does not have. Errors say which side failed: the local file, the connection, or the gateway (with its answer).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The default gateway.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:31415";

/// Transfers at least this large show a progress bar (on a terminal only; indicatif hides it elsewhere).
const PROGRESS_MIN_BYTES: u64 = 8 << 20;
/// Largest JSON answer read from a gateway.
const MAX_ANSWER: u64 = 16 << 20;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `--gateway` value is not an address.
    #[error("--gateway {0:?} is not a gateway address: give host:port or http://host:port")]
    BadGateway(String),
    /// The blob ID is malformed.
    #[error("bad blob ID {id:?}: {source}")]
    BadBlobId {
        /// What was given.
        id: String,
        /// Why it is not one.
        source: floe_protocol::ParseBlobIdError,
    },
    /// A local file could not be used.
    #[error("{what} {}: {source}", path.display())]
    Local {
        /// What was being done ("reading", "creating", …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A command-line argument is malformed.
    #[error("{0}")]
    BadArgument(String),
    /// The path is a directory.
    #[error("{} is a directory, not a file", .0.display())]
    IsDirectory(PathBuf),
    /// The gateway could not be reached, or the connection broke.
    #[error("{url}: {source}; is a floe node running there?")]
    Connection {
        /// The URL asked.
        url: String,
        /// The cause.
        source: Box<ureq::Error>,
    },
    /// The gateway answered with an error.
    #[error("gateway answered {status}: {message}")]
    Gateway {
        /// HTTP status.
        status: u16,
        /// The error's message.
        message: String,
        /// The gateway's whole error object, if it sent one.
        error: Option<Value>,
    },
    /// The gateway's answer is not what a floe gateway sends.
    #[error("the gateway's answer is not what a floe gateway sends: {0}")]
    BadAnswer(String),
    /// Writing to standard output failed.
    #[error("writing to standard output: {0}")]
    Stdout(std::io::Error),
}

impl ClientError {
    /// The error as the JSON `--json` prints: `{"error":{…}}`, the gateway's own object when it sent one.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Gateway {
                error: Some(error), ..
            } => serde_json::json!({ "error": error }),
            Self::Gateway {
                status, message, ..
            } => {
                serde_json::json!({"error": {"code": status, "message": message}})
            }
            other => {
                serde_json::json!({"error": {"message": other.to_string(), "kind": other.kind()}})
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::BadGateway(_) | Self::BadBlobId { .. } | Self::BadArgument(_) => "usage",
            Self::Local { .. } | Self::IsDirectory(_) | Self::Stdout(_) => "local",
            Self::Connection { .. } => "connection",
            Self::Gateway { .. } | Self::BadAnswer(_) => "gateway",
        }
    }
}

/// A gateway given as `host:port`, `http://host:port` or `https://…`, without a trailing slash.
pub fn gateway_url(gateway: &str) -> Result<String, ClientError> {
    let given = gateway.trim();
    let bad = || ClientError::BadGateway(given.to_owned());
    let (scheme, rest) = match given.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some(_) => return Err(bad()),
        None => ("http", given),
    };
    let rest = rest.trim_end_matches('/');
    let host_ok = !rest.is_empty()
        && !rest.starts_with(':')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]/%".contains(&b));
    let url = format!("{scheme}://{rest}");
    if host_ok && url.parse::<ureq::http::Uri>().is_ok() {
        Ok(url)
    } else {
        Err(bad())
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn check_blob_id(blob_id: &str) -> Result<(), ClientError> {
    blob_id
        .parse::<floe_protocol::BlobId>()
        .map(|_| ())
        .map_err(|source| ClientError::BadBlobId {
            id: blob_id.to_owned(),
            source,
        })
}

pub(crate) fn gateway_error(status: u16, body: &str) -> ClientError {
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .map(|v| v["error"].clone())
        .filter(Value::is_object);
    let message = error
        .as_ref()
        .and_then(|e| e["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(1024).collect());
    ClientError::Gateway {
        status,
        message,
        error,
    }
}

/// A gateway's JSON answer: the parsed body of a 200, else the gateway's error.
pub(crate) fn json_answer(
    url: &str,
    response: &mut ureq::http::Response<ureq::Body>,
) -> Result<Value, ClientError> {
    let status = response.status().as_u16();
    let body = read_answer(url, response)?;
    if status != 200 {
        return Err(gateway_error(status, &body));
    }
    serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))
}

pub(crate) fn read_answer(
    url: &str,
    response: &mut ureq::http::Response<ureq::Body>,
) -> Result<String, ClientError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| ClientError::Connection {
            url: url.to_owned(),
            source: Box::new(e),
        })
}

/// Where a put reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Standard input (`-`).
    Stdin,
    /// A path: a file, a FIFO, `/dev/stdin`, a process substitution.
    Path(PathBuf),
}

impl Source {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            Self::Stdin
        } else {
            Self::Path(arg.to_owned())
        }
    }

    fn name(&self) -> PathBuf {
        match self {
            Self::Stdin => PathBuf::from("standard input"),
            Self::Path(path) => path.clone(),
        }
    }

    /// The reader, and the length when it is a regular file (known up front).
    fn open(&self) -> Result<(Box<dyn Read + Send>, Option<u64>), ClientError> {
        match self {
            // Standard input goes chunked even when it is a file: it may have been read from already.
            Self::Stdin => Ok((Box::new(std::io::stdin()), None)),
            Self::Path(path) => {
                let local = |what, source| ClientError::Local {
                    what,
                    path: path.clone(),
                    source,
                };
                let metadata = std::fs::metadata(path).map_err(|e| local("opening", e))?;
                if metadata.is_dir() {
                    return Err(ClientError::IsDirectory(path.clone()));
                }
                let file = File::open(path).map_err(|e| local("opening", e))?;
                // A size of 0 may be a lie (/proc and sysfs files report it): such files go chunked, read to
                // their end.
                match metadata.len() {
                    len if metadata.is_file() && len > 0 => {
                        Ok((Box::new(ExactLength::new(file, len)), Some(len)))
                    }
                    _ => Ok((Box::new(file), None)),
                }
            }
        }
    }
}

/// A regular file read for exactly the length announced: one that shrinks or grows while it is sent fails
/// instead of sending other bytes than announced (or waiting forever for bytes that never come).
struct ExactLength<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> ExactLength<R> {
    fn new(inner: R, len: u64) -> Self {
        Self {
            inner,
            remaining: len,
        }
    }
}

impl<R: Read> Read for ExactLength<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // Everything announced is sent: the file must end here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(
                    "the file grew while it was being sent; nothing was stored",
                )),
            };
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being sent; nothing was stored",
            ));
        }
        self.remaining = self
            .remaining
            .saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }
}

/// A reader that keeps its first error (so a failed upload blames the file, not the node) and tells the
/// progress display when the source is exhausted.
struct Watched<R> {
    inner: R,
    error: Arc<Mutex<Option<std::io::Error>>>,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                // Everything is sent: the node now encodes, stores and collects receipts.
                if !self.bar.is_hidden() {
                    self.bar.set_style(spinner_style());
                    self.bar.set_message("encoding, storing and certifying");
                }
                Ok(0)
            }
            Ok(n) => {
                self.bar.inc(u64::try_from(n).unwrap_or(0));
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                let message = e.to_string();
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                Err(std::io::Error::new(kind, message))
            }
        }
    }
}

fn spinner_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} {elapsed}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

fn transfer_bar(len: Option<u64>, verb: &str, quiet: bool) -> indicatif::ProgressBar {
    let bar = match len {
        _ if quiet => return indicatif::ProgressBar::hidden(),
        Some(len) if len < PROGRESS_MIN_BYTES => return indicatif::ProgressBar::hidden(),
        Some(len) => {
            let bar = indicatif::ProgressBar::new(len);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(spinner_style());
            bar
        }
    };
    bar.set_message(verb.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// How a put asks the node to keep a blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutParams {
    /// Epochs to keep it for (the node's default if `None`).
    pub epochs: Option<u64>,
    /// Permanent (no deletion token) rather than deletable.
    pub permanent: bool,
}

/// Uploads `source`, with `content_type` as the blob's media type, kept as `params` say; returns the gateway's
/// JSON answer. `quiet` hides the progress display.
pub fn put(
    gateway: &str,
    source: &Source,
    content_type: Option<&str>,
    params: PutParams,
    quiet: bool,
) -> Result<Value, ClientError> {
    let base = gateway_url(gateway)?;
    let (reader, len) = source.open()?;
    let mut query: Vec<String> = Vec::new();
    if let Some(epochs) = params.epochs {
        query.push(format!("epochs={epochs}"));
    }
    if params.permanent {
        query.push("permanent=true".into());
    }
    let url = if query.is_empty() {
        format!("{base}/v1/blobs")
    } else {
        format!("{base}/v1/blobs?{}", query.join("&"))
    };
    let bar = transfer_bar(len, "uploading", quiet);
    let error = Arc::new(Mutex::new(None));
    let mut reader = Watched {
        inner: reader,
        error: Arc::clone(&error),
        bar: bar.clone(),
    };
    // Waiting for "100 Continue" lets a refusal (413 over --max-body, 403, 400 for a bad type) arrive before
    // the body is sent, so the user reads the node's answer rather than a broken connection.
    let mut request = agent().put(&url).header("Expect", "100-continue");
    if let Some(len) = len {
        request = request.header("Content-Length", len.to_string());
    }
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let sent = request.send(ureq::SendBody::from_reader(&mut reader));
    bar.finish_and_clear();
    if let Some(source_error) = error.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(ClientError::Local {
            what: "reading",
            path: source.name(),
            source: source_error,
        });
    }
    let mut response = sent.map_err(|e| ClientError::Connection {
        url: url.clone(),
        source: Box::new(e),
    })?;
    json_answer(&url, &mut response)
}

/// The blob ID in a put answer (`newlyCreated.blobObject.blobId` or `alreadyCertified.blobId`).
pub fn blob_id_of(answer: &Value) -> Option<&str> {
    answer["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .or_else(|| answer["alreadyCertified"]["blobId"].as_str())
}

/// Where a get writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, written beside its path and renamed into place once whole.
    File(PathBuf),
}

/// Downloads a blob into `sink`; returns the byte count. A bar shows for large downloads to a file.
pub fn get(gateway: &str, blob_id: &str, sink: &Sink) -> Result<u64, ClientError> {
    check_blob_id(blob_id)?;
    let base = gateway_url(gateway)?;
    // Refuse an unusable target before asking anyone for the blob.
    let target = match sink {
        Sink::Stdout => None,
        Sink::File(path) => Some(Target::open(path)?),
    };
    let url = format!("{base}/v1/blobs/{blob_id}");
    let connection = |e: std::io::Error| ClientError::Connection {
        url: url.clone(),
        source: Box::new(ureq::Error::Io(e)),
    };
    let mut response = agent()
        .get(&url)
        .call()
        .map_err(|e| ClientError::Connection {
            url: url.clone(),
            source: Box::new(e),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = read_answer(&url, &mut response).unwrap_or_default();
        return Err(gateway_error(status, &body));
    }
    let len = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bar = transfer_bar(len, "downloading", target.is_none());
    let mut reader = FailureNoted {
        inner: bar.wrap_read(response.body_mut().with_config().limit(u64::MAX).reader()),
        failed: false,
    };
    let copied = match (sink, target) {
        (Sink::File(path), Some(mut target)) => {
            let local = |what, source| ClientError::Local {
                what,
                path: path.clone(),
                source,
            };
            // A failure anywhere below drops `target`, which deletes a partial download.
            let copied = std::io::copy(&mut reader, target.writer()).map_err(|e| {
                if reader.failed {
                    connection(e)
                } else {
                    local("writing", e)
                }
            })?;
            target.finish().map_err(|e| local("writing", e))?;
            copied
        }
        _ => {
            let mut out = std::io::stdout().lock();
            let copied = std::io::copy(&mut reader, &mut out).map_err(|e| {
                if reader.failed {
                    connection(e)
                } else {
                    ClientError::Stdout(e)
                }
            })?;
            out.flush().map_err(ClientError::Stdout)?;
            copied
        }
    };
    bar.finish_and_clear();
    Ok(copied)
}

/// A reader that notes whether it failed, so an error while copying is blamed on the right side.
struct FailureNoted<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for FailureNoted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}

/// Where a download goes: a regular file (new or existing) is written beside itself and renamed into place once
/// whole, so a failed download leaves nothing and never half-replaces a file; anything else that exists (a
/// device such as /dev/null, a FIFO, /dev/fd/N) is written directly, never replaced.
enum Target {
    Replace {
        file: tempfile::NamedTempFile,
        path: PathBuf,
    },
    Direct(File),
}

impl Target {
    fn open(path: &Path) -> Result<Self, ClientError> {
        let local = |what, source| ClientError::Local {
            what,
            path: path.to_owned(),
            source,
        };
        let (path, permissions) = match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(ClientError::IsDirectory(path.to_owned()));
            }
            Ok(metadata) if !metadata.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| local("opening", e))?;
                return Ok(Self::Direct(file));
            }
            // An existing file: through any symlink, keeping its mode.
            Ok(metadata) => (
                std::fs::canonicalize(path).map_err(|e| local("resolving", e))?,
                metadata.permissions(),
            ),
            // A new file: the mode any new file gets (0666 less the umask).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (path.to_owned(), {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::Permissions::from_mode(0o666)
            }),
            Err(e) => return Err(local("opening", e)),
        };
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let file = tempfile::Builder::new()
            .prefix(".floe-partial-")
            .permissions(permissions)
            .tempfile_in(&parent)
            .map_err(|source| ClientError::Local {
                what: "creating a file in",
                path: parent.clone(),
                source,
            })?;
        Ok(Self::Replace { file, path })
    }

    fn writer(&mut self) -> &mut File {
        match self {
            Self::Replace { file, .. } => file.as_file_mut(),
            Self::Direct(file) => file,
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Replace { file, path } => {
                file.as_file().sync_all()?;
                file.persist(&path).map(|_| ()).map_err(|e| e.error)
            }
            Self::Direct(mut file) => file.flush(),
        }
    }
}

/// A blob's status as JSON.
pub fn status(gateway: &str, blob_id: &str) -> Result<Value, ClientError> {
    check_blob_id(blob_id)?;
    let base = gateway_url(gateway)?;
    let url = format!("{base}/v1/blobs/{blob_id}/status");
    let mut response = agent()
        .get(&url)
        .call()
        .map_err(|e| ClientError::Connection {
            url: url.clone(),
            source: Box::new(e),
        })?;
    json_answer(&url, &mut response)
}

/// Deletes this writer's claim on a blob with its deletion token; returns the gateway's JSON answer.
pub fn delete(gateway: &str, blob_id: &str, token: &str) -> Result<Value, ClientError> {
    check_blob_id(blob_id)?;
    let token = token.trim();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::BadArgument(
            "a deletion token is 64 hex digits: the one `floe put` printed".into(),
        ));
    }
    let base = gateway_url(gateway)?;
    let url = format!("{base}/v1/blobs/{blob_id}");
    let mut response = agent()
        .delete(&url)
        .header("X-Floe-Deletion-Token", token)
        .call()
        .map_err(|e| ClientError::Connection {
            url: url.clone(),
            source: Box::new(e),
        })?;
    json_answer(&url, &mut response)
}

/// Writes `value` to standard output, pretty.
pub fn print_json(value: &Value) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| ClientError::Stdout(e.into()))?;
    writeln!(out).map_err(ClientError::Stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateways_take_an_optional_scheme_and_refuse_nonsense() {
        assert_eq!(
            gateway_url("127.0.0.1:31415").unwrap(),
            "http://127.0.0.1:31415"
        );
        assert_eq!(
            gateway_url("http://127.0.0.1:1/").unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            gateway_url("https://node.example").unwrap(),
            "https://node.example"
        );
        assert_eq!(gateway_url("[::1]:8080").unwrap(), "http://[::1]:8080");
        for bad in ["", "ftp://x", "http://", "a b", "http://x\ny"] {
            assert!(gateway_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gateway_errors_keep_the_envelope() {
        let body = r#"{"error":{"status":"NOT_FOUND","code":404,"message":"no peer knows blob x","details":[]}}"#;
        let error = gateway_error(404, body);
        assert_eq!(
            error.to_string(),
            "gateway answered 404: no peer knows blob x"
        );
        assert_eq!(error.to_json()["error"]["status"], "NOT_FOUND");
        let plain = gateway_error(502, "bad gateway\n");
        assert_eq!(plain.to_json()["error"]["message"], "bad gateway");
        let local = ClientError::IsDirectory(PathBuf::from("/tmp"));
        assert_eq!(local.to_json()["error"]["kind"], "local");
    }
}
