//! Spool files: a put body too large to hold in memory is written to `<data-dir>/spool/` as it arrives, and
//! deleted when the write is done (or at the next start, if a crash left it). This module owns the files and the
//! cap on streamed puts at once; the streamed write that reads them back is `stream_put`'s.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

/// Streamed puts at once, from the first spooled byte to the end of delivery: each holds up to `--max-body` of
/// disk and two runs of memory. Beyond it the gateway answers 503.
pub const MAX_STREAMED_PUTS: usize = 4;

/// A blob being received into a spool file; the file is deleted when this is dropped.
pub struct Spool {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    len: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

static SPOOL_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, empty spool file in `dir`, holding `permit` (one of [`MAX_STREAMED_PUTS`]) until it is dropped.
    pub async fn create(
        dir: &Path,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(dir).await?;
        let name = format!(
            "{}-{}.part",
            std::process::id(),
            SPOOL_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .await?;
        Ok(Self {
            path,
            file: Some(file),
            len: 0,
            _permit: permit,
        })
    }

    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("spool already closed"))?;
        file.write_all(bytes).await?;
        self.len = self
            .len
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes and closes the writing handle; the spool is then only read.
    pub async fn finish(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "removing a spool file failed");
        }
    }
}

/// Removes spool files a previous run left (a crash mid-put): nothing refers to them.
pub fn clear_spool_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "part") {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a spool file left by an earlier run")
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "removing an old spool file failed")
                }
            }
        }
    }
}
