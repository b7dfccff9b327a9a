//! Blob lifetimes: epochs of wall-clock time, the end epoch a blob is stored until, and when a blob stops being
//! served and when its holders drop it.
//!
//! An epoch is a fixed span of time (the node's `--epoch-duration`, one day by default); epoch e covers Unix time
//! [e·d, (e+1)·d). Every node of a swarm must use the same duration, and clocks a few seconds apart move the
//! boundaries by as much. A blob written with `epochs = N` at epoch c is stored **until the end of epoch c + N**,
//! its end epoch: it is served while the current epoch is at most its end ([`is_live`]), and its holders drop it
//! once the current epoch is more than [`GRACE_EPOCHS`] past it ([`is_expired`]), so a holder whose clock runs a
//! little ahead never drops a blob another still serves. The end epoch travels with the holder record, not the
//! blob ID (the same bytes stored twice are one blob); storing a blob again with a later end epoch extends it,
//! and nothing shortens one: records merge by [`extend`]. Blobs stored before lifetimes existed have no end
//! ([`FOREVER`]).
//!
//! The module decides; the driver reads the clock and deletes.

/// The end epoch of a blob that never expires: blobs stored before lifetimes existed (an end epoch of 0 on the
/// wire or in a record).
pub const FOREVER: u64 = u64::MAX;
/// Epochs a holder keeps an expired blob before dropping it.
pub const GRACE_EPOCHS: u64 = 1;

/// Why a lifetime is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    /// `epochs` of 0: a blob must live at least until the end of the current epoch and one more.
    #[error("epochs must be at least 1")]
    Zero,
    /// More epochs ahead than this node accepts.
    #[error("epochs must be at most {max} (this node's --max-epochs), got {asked}")]
    TooMany {
        /// Epochs asked.
        asked: u64,
        /// The most accepted.
        max: u64,
    },
}

/// The epoch at Unix time `unix_ms` for epochs of `duration_ms` (at least 1 ms).
pub fn epoch_at(unix_ms: u64, duration_ms: u64) -> u64 {
    unix_ms / duration_ms.max(1)
}

/// Unix time, in ms, at which `epoch` ends (the next one starts).
pub fn end_of(epoch: u64, duration_ms: u64) -> u64 {
    epoch.saturating_add(1).saturating_mul(duration_ms.max(1))
}

/// The end epoch of a blob stored at `current` for `epochs` more epochs, at most `max` ahead.
pub fn end_epoch(current: u64, epochs: u64, max: u64) -> Result<u64, LifetimeError> {
    if epochs == 0 {
        return Err(LifetimeError::Zero);
    }
    if epochs > max {
        return Err(LifetimeError::TooMany { asked: epochs, max });
    }
    Ok(current.saturating_add(epochs))
}

/// An end epoch as read from the wire or a record: 0 (absent) means [`FOREVER`].
pub fn from_wire(end_epoch: u64) -> u64 {
    if end_epoch == 0 { FOREVER } else { end_epoch }
}

/// Whether a blob ending at `end` is served at `current`.
pub fn is_live(end: u64, current: u64) -> bool {
    current <= end
}

/// Whether a holder drops a blob ending at `end` at `current`: [`GRACE_EPOCHS`] after it stopped being live.
pub fn is_expired(end: u64, current: u64) -> bool {
    current > end.saturating_add(GRACE_EPOCHS)
}

/// Whether a live blob ends within `within` epochs of `current` (for warnings).
pub fn expires_within(end: u64, current: u64, within: u64) -> bool {
    is_live(end, current) && end.saturating_sub(current) < within
}

/// The end epoch of two records of one blob: the later one. Anyone may extend a blob; nobody shortens one.
pub fn extend(a: u64, b: u64) -> u64 {
    a.max(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epochs_follow_the_clock() {
        let day = 86_400_000;
        assert_eq!(epoch_at(0, day), 0);
        assert_eq!(epoch_at(day - 1, day), 0);
        assert_eq!(epoch_at(day, day), 1);
        assert_eq!(end_of(0, day), day);
        assert_eq!(epoch_at(5, 0), 5, "a zero duration counts as 1 ms");
    }

    #[test]
    fn a_blob_lives_through_its_end_epoch_and_goes_one_grace_epoch_later() {
        let end = end_epoch(100, 3, 10).unwrap();
        assert_eq!(end, 103);
        assert!(is_live(end, 100) && is_live(end, 103) && !is_live(end, 104));
        assert!(!is_expired(end, 104) && is_expired(end, 105));
        assert!(expires_within(end, 102, 2) && !expires_within(end, 101, 2));
        assert!(
            !expires_within(end, 104, 2),
            "an ended blob is not about to end"
        );
        assert_eq!(end_epoch(100, 0, 10), Err(LifetimeError::Zero));
        assert_eq!(
            end_epoch(100, 11, 10),
            Err(LifetimeError::TooMany { asked: 11, max: 10 })
        );
        assert_eq!(from_wire(0), FOREVER);
        assert_eq!(from_wire(7), 7);
        assert!(is_live(FOREVER, u64::MAX) && !is_expired(FOREVER, u64::MAX));
    }

    proptest! {
        /// Extensions commute and never shorten: whatever order two records meet in, the later end wins, and a
        /// blob live under either is live under the merge.
        #[test]
        fn extensions_commute_and_never_shorten(a in any::<u64>(), b in any::<u64>(), now in any::<u64>()) {
            prop_assert_eq!(extend(a, b), extend(b, a));
            prop_assert!(extend(a, b) >= a && extend(a, b) >= b);
            if is_live(a, now) || is_live(b, now) {
                prop_assert!(is_live(extend(a, b), now));
            }
            prop_assert!(!(is_expired(a, now) && is_live(a, now)));
        }
    }
}
