//! Blob lifetimes in the node: the epoch clock (wall-clock time over `--epoch-duration`), the end epoch a put
//! asks for, and what a put of a blob already certified here does with a later one. The rules (when a blob is
//! served, when it is dropped, how records merge) are `floe_protocol::lifetime`'s; the scan drops expired
//! slivers (`repair::scan`).

use super::*;
use floe_protocol::deletion::{self, Claims, Token};
use floe_protocol::lifetime::{self, LifetimeError};

/// How long blobs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// The length of an epoch (`--epoch-duration`); every node of a swarm must use the same.
    pub epoch_duration: Duration,
    /// Epochs a put that does not say keeps its blob (`--default-epochs`).
    pub default_epochs: u64,
    /// The most epochs ahead a put may ask for (`--max-epochs`; also what `epochs=max` means).
    pub max_epochs: u64,
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        Self {
            epoch_duration: Duration::from_secs(24 * 60 * 60),
            default_epochs: 30,
            max_epochs: 365,
        }
    }
}

/// How many epochs a put asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochsAsked {
    /// This many from now.
    Count(u64),
    /// As many as this node accepts (`--max-epochs`).
    Max,
}

/// Unix time in ms, as this node's clock says (epochs are wall-clock time; docs/operators.md asks for NTP).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Node {
    /// The lifetime settings.
    pub fn lifetimes(&self) -> LifetimeConfig {
        self.inner.lifetimes
    }

    /// The current epoch, by this machine's clock.
    pub fn current_epoch(&self) -> u64 {
        lifetime::epoch_at(unix_ms(), self.epoch_ms())
    }

    /// Time until the next epoch begins, plus a little so that [`Self::current_epoch`] has moved on by then.
    pub(crate) fn until_next_epoch(&self) -> std::time::Duration {
        let (now, duration) = (unix_ms(), self.epoch_ms());
        let next = lifetime::end_of(lifetime::epoch_at(now, duration), duration);
        std::time::Duration::from_millis(next.saturating_sub(now).saturating_add(50))
    }

    fn epoch_ms(&self) -> u64 {
        u64::try_from(self.inner.lifetimes.epoch_duration.as_millis()).unwrap_or(u64::MAX)
    }

    /// The end epoch of a put asking for `asked` (the default lifetime if it does not say).
    pub fn end_epoch_for(&self, asked: Option<EpochsAsked>) -> Result<u64, LifetimeError> {
        let config = self.inner.lifetimes;
        let epochs = match asked {
            None => config.default_epochs,
            Some(EpochsAsked::Count(n)) => n,
            Some(EpochsAsked::Max) => config.max_epochs,
        };
        lifetime::end_epoch(self.current_epoch(), epochs, config.max_epochs)
    }

    /// The end epoch this node holds for a blob, if it has a record of it.
    pub(crate) fn held_end_epoch(&self, blob_id: &BlobId) -> Option<u64> {
        self.inner
            .store
            .metadata_record(blob_id)
            .ok()
            .map(|(_, record)| record.end_epoch)
    }

    /// What a put of a blob with a certificate here answers without writing, if anything: the certificate,
    /// unless `end_epoch` is later than the one held, which takes a write (an extension; holders keep the later
    /// end epoch, and slivers they hold already are not stored again).
    pub(crate) fn already_certified(
        &self,
        blob_id: &BlobId,
        options: &PutOptions,
        end_epoch: u64,
    ) -> Option<(pb::Certificate, u64)> {
        // A deletable write always goes out: its new claim must reach the holders.
        if options.force || !options.permanent {
            return None;
        }
        let certificate = self.certificate(blob_id)?;
        let (_, record) = self.inner.store.metadata_record(blob_id).ok()?;
        let held = record.end_epoch;
        let permanent = record.claims.permanent_until().unwrap_or(0);
        (held >= end_epoch && permanent >= end_epoch).then_some((certificate, held))
    }

    /// The claims a put gives its blob, and the writer's token if it is deletable (drawn here: the protocol has
    /// no randomness). A permanent write keeps the blob until `end_epoch` whatever is released.
    pub(crate) fn write_claims(
        blob_id: &BlobId,
        options: &PutOptions,
        end_epoch: u64,
    ) -> (Claims, Option<Token>) {
        if options.permanent {
            return (Claims::permanent(end_epoch), None);
        }
        let token = Token(rand::random());
        (
            Claims::deletable(deletion::claim_of(blob_id, &token)),
            Some(token),
        )
    }
}
