//! Site names: a stable name that its owner moves from one version of a site to the next.
//!
//! A **name** is an ed25519 public key, and whoever holds its secret key owns it: only the owner can sign a
//! **name record** (a sequence number, the site it points at, an end epoch), and a record without the owner's
//! signature is refused by everyone, so a gateway, a holder or a peer on the path can withhold a name but never
//! move it. The records are kept by the name's **neighbourhood**, the [`NAME_REPLICAS`] peers closest to the key
//! (the key is its own position, as a blob ID is), like IPNS records in the DHT.
//!
//! Which record a holder keeps is a total order ([`NameRecord::supersedes`]): the higher sequence, and between
//! two records of one sequence (an owner that signed twice) the greater signing bytes. Keeping the greatest
//! record seen is a merge that commutes, so every holder that has seen the same records keeps the same one,
//! whatever order they arrived in, and a reader that asks several holders takes the greatest answer ([`best`]).
//! A replayed old record never rolls a name back.
//!
//! This module decides what is signed, what makes a record valid and which record wins; it holds no keys, signs
//! nothing and does no I/O. The driver checks signatures ([`NameKeys`]).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::blob_id::{BLOB_ID_LEN, BlobId};
use crate::lifetime;
use crate::wire::pb;

/// Length of a name: an ed25519 public key.
pub const NAME_LEN: usize = 32;
/// Length of a record's signature: an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Domain separation: a name record's signature can never be mistaken for a signature over anything else.
pub const NAME_CONTEXT: &[u8; 19] = b"floe name record v1";
/// Length of [`signing_bytes`].
pub const SIGNING_BYTES_LEN: usize = NAME_CONTEXT.len() + NAME_LEN + 8 + BLOB_ID_LEN + 8;
/// Peers that keep a name's record: its neighbourhood. More than a blob's k, since a name is one record that
/// every reader of the site needs, and cheap to keep.
pub const NAME_REPLICAS: usize = 8;
/// How far from a name a peer still keeps its record, in places by its own view: twice the neighbourhood, since
/// views differ while peers come and go. Further out a peer refuses records, so nobody can fill every peer's disk
/// with names of keys they generate.
pub const KEEP_WITHIN: usize = 2 * NAME_REPLICAS;

/// Whether a peer at `position` (0: the closest) by its view of the peers ordered by distance to a name keeps the
/// name's record.
pub fn keeps_at(position: usize) -> bool {
    position < KEEP_WITHIN
}

/// The first character of a name's text form; site IDs (base64url, 43 characters) never have 53.
pub const NAME_PREFIX: char = 'n';
/// Length of a name's text form: [`NAME_PREFIX`] and the key in lower-case base32 without padding, 53
/// characters, which is also a valid DNS label (a site's own origin).
pub const NAME_TEXT_LEN: usize = 53;

/// A name: an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name([u8; NAME_LEN]);

impl Name {
    /// The name of a 32-byte public key.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, NameError> {
        <[u8; NAME_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| NameError::NameLength(bytes.len()))
    }

    /// The public key.
    pub fn as_bytes(&self) -> &[u8; NAME_LEN] {
        &self.0
    }

    /// The name's position in the keyspace, as a blob ID: its neighbourhood keeps its record.
    pub fn location(&self) -> BlobId {
        BlobId(self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = data_encoding::BASE32_NOPAD
            .encode(&self.0)
            .to_ascii_lowercase();
        write!(f, "{NAME_PREFIX}{text}")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl FromStr for Name {
    type Err = NameError;

    /// Parses the text form; case does not matter (a host name's label may arrive in either).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != NAME_TEXT_LEN {
            return Err(NameError::TextLength(text.chars().count()));
        }
        let Some(key) = text
            .strip_prefix(NAME_PREFIX)
            .or_else(|| text.strip_prefix(NAME_PREFIX.to_ascii_uppercase()))
        else {
            return Err(NameError::NotAName);
        };
        let bytes = data_encoding::BASE32_NOPAD
            .decode(key.to_ascii_uppercase().as_bytes())
            .map_err(|_| NameError::NotAName)?;
        Self::from_slice(&bytes)
    }
}

/// Why a name or a name record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A name's text is not 53 characters.
    #[error("a name is {NAME_TEXT_LEN} characters (\"n\" and base32), not {0}")]
    TextLength(usize),
    /// A name's text is not `n` and base32.
    #[error("not a name: a name is \"n\" followed by 52 base32 characters")]
    NotAName,
    /// A name is not 32 bytes.
    #[error("a name is a {NAME_LEN}-byte ed25519 public key, not {0} bytes")]
    NameLength(usize),
    /// The key is not an ed25519 public key, or the signature does not verify under it.
    #[error("the record's signature does not verify under its name")]
    BadSignature,
    /// A signature is not 64 bytes.
    #[error("a name record's signature is {SIGNATURE_LEN} bytes, not {0}")]
    SignatureLength(usize),
    /// The site ID is not 32 bytes.
    #[error("a name record's site ID is {BLOB_ID_LEN} bytes, not {0}")]
    SiteLength(usize),
    /// A record for another name than the one asked.
    #[error("a record of name {found}, not of {asked}")]
    OtherName {
        /// The name asked for.
        asked: Name,
        /// The name the record is for.
        found: Name,
    },
    /// The name's sequence cannot grow any more.
    #[error("the name's sequence number is at its maximum; it cannot move again")]
    SequenceExhausted,
}

/// What the driver's signature scheme answers for a name.
pub trait NameKeys {
    /// Whether `signature` over `message` verifies under the ed25519 public key `name`.
    fn verifies(&self, name: &Name, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool;
}

/// The bytes a name's owner signs: the context, the name, the sequence (u64 LE), the site ID, the end epoch (u64
/// LE). They also order records of one sequence ([`NameRecord::supersedes`]).
pub fn signing_bytes(
    name: &Name,
    sequence: u64,
    site_id: &BlobId,
    end_epoch: u64,
) -> [u8; SIGNING_BYTES_LEN] {
    let mut bytes = [0u8; SIGNING_BYTES_LEN];
    let parts: [&[u8]; 5] = [
        NAME_CONTEXT,
        name.as_bytes(),
        &sequence.to_le_bytes(),
        site_id.as_bytes(),
        &end_epoch.to_le_bytes(),
    ];
    let mut at = 0;
    for part in parts {
        if let Some(slot) = bytes.get_mut(at..at + part.len()) {
            slot.copy_from_slice(part);
        }
        at += part.len();
    }
    bytes
}

/// A name record whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    /// The name.
    pub name: Name,
    /// Grows with every move.
    pub sequence: u64,
    /// The site the name points at (its manifest's blob ID).
    pub site_id: BlobId,
    /// The epoch after which holders forget it; 0: no end.
    pub end_epoch: u64,
    /// The owner's signature over [`signing_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl NameRecord {
    /// A record from the wire, if well formed and signed by its name.
    pub fn from_wire(record: &pb::NameRecord, keys: &impl NameKeys) -> Result<Self, NameError> {
        let name = Name::from_slice(&record.name)?;
        let site_id = BlobId::from_slice(&record.site_id)
            .map_err(|_| NameError::SiteLength(record.site_id.len()))?;
        let signature = <[u8; SIGNATURE_LEN]>::try_from(&record.signature[..])
            .map_err(|_| NameError::SignatureLength(record.signature.len()))?;
        let checked = Self {
            name,
            sequence: record.sequence,
            site_id,
            end_epoch: record.end_epoch,
            signature,
        };
        if !keys.verifies(&name, &checked.signing_bytes(), &signature) {
            return Err(NameError::BadSignature);
        }
        Ok(checked)
    }

    /// A record of `name` from the wire: [`Self::from_wire`], and for that name.
    pub fn from_wire_for(
        name: &Name,
        record: &pb::NameRecord,
        keys: &impl NameKeys,
    ) -> Result<Self, NameError> {
        let checked = Self::from_wire(record, keys)?;
        if checked.name != *name {
            return Err(NameError::OtherName {
                asked: *name,
                found: checked.name,
            });
        }
        Ok(checked)
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::NameRecord {
        pb::NameRecord {
            name: Bytes::copy_from_slice(self.name.as_bytes()),
            sequence: self.sequence,
            site_id: Bytes::copy_from_slice(self.site_id.as_bytes()),
            end_epoch: self.end_epoch,
            signature: Bytes::copy_from_slice(&self.signature),
        }
    }

    /// The bytes its owner signed.
    pub fn signing_bytes(&self) -> [u8; SIGNING_BYTES_LEN] {
        signing_bytes(&self.name, self.sequence, &self.site_id, self.end_epoch)
    }

    /// Whether this record wins over `other` (of the same name): a higher sequence, or at an equal one greater
    /// signing bytes. A strict total order on a name's distinct records, so keeping the greatest converges.
    pub fn supersedes(&self, other: &NameRecord) -> bool {
        (self.sequence, self.signing_bytes()) > (other.sequence, other.signing_bytes())
    }

    /// Whether the name points at its site at epoch `current` (readers ignore a record past its end).
    pub fn is_live(&self, current: u64) -> bool {
        lifetime::is_live(lifetime::from_wire(self.end_epoch), current)
    }

    /// Whether a holder forgets the record at epoch `current` (after the same grace as a blob's slivers).
    pub fn is_expired(&self, current: u64) -> bool {
        lifetime::is_expired(lifetime::from_wire(self.end_epoch), current)
    }
}

/// What a holder does with a record offered for a name it may keep one of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The offered record supersedes the kept one (or none was kept): keep it instead.
    Replace,
    /// The kept record is the same or supersedes the offered one: keep it, and answer with it.
    Unchanged,
}

/// Whether a holder that keeps `kept` replaces it with `offered` (both verified, of one name).
pub fn keep(kept: Option<&NameRecord>, offered: &NameRecord) -> Keep {
    match kept {
        Some(kept) if !offered.supersedes(kept) => Keep::Unchanged,
        _ => Keep::Replace,
    }
}

/// The greatest of several holders' answers for one name, which every holder converges on.
pub fn best<'a>(records: impl IntoIterator<Item = &'a NameRecord>) -> Option<&'a NameRecord> {
    records.into_iter().fold(None, |best, record| match best {
        Some(b) if !record.supersedes(b) => Some(b),
        _ => Some(record),
    })
}

/// The sequence of the owner's next record, after the greatest it found (`None`: a new name starts at 1).
pub fn next_sequence(current: Option<&NameRecord>) -> Result<u64, NameError> {
    match current {
        None => Ok(1),
        Some(record) => record
            .sequence
            .checked_add(1)
            .ok_or(NameError::SequenceExhausted),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A toy scheme: a signature is the message's BLAKE3 hash keyed by the name, twice. Enough to test the
    /// rules, not a real signature.
    struct Toy;

    fn toy_sign(name: &Name, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let hash = blake3::keyed_hash(name.as_bytes(), message);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature[..32].copy_from_slice(hash.as_bytes());
        signature[32..].copy_from_slice(hash.as_bytes());
        signature
    }

    impl NameKeys for Toy {
        fn verifies(&self, name: &Name, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
            toy_sign(name, message) == *signature
        }
    }

    fn record(name: u8, sequence: u64, site: u8, end_epoch: u64) -> NameRecord {
        let name = Name([name; NAME_LEN]);
        let site_id = BlobId([site; BLOB_ID_LEN]);
        NameRecord {
            name,
            sequence,
            site_id,
            end_epoch,
            signature: toy_sign(&name, &signing_bytes(&name, sequence, &site_id, end_epoch)),
        }
    }

    #[test]
    fn text_form_round_trips_and_is_a_dns_label() {
        let name = Name([0xa7; NAME_LEN]);
        let text = name.to_string();
        assert_eq!(text.len(), NAME_TEXT_LEN);
        assert!(text.starts_with('n'));
        assert!(text.len() <= 63);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(text.parse::<Name>().unwrap(), name);
        assert_eq!(text.to_ascii_uppercase().parse::<Name>().unwrap(), name);
    }

    #[test]
    fn malformed_names_are_refused_with_the_reason() {
        assert_eq!("nabc".parse::<Name>(), Err(NameError::TextLength(4)));
        let wrong_prefix = format!("x{}", &Name([1; 32]).to_string()[1..]);
        assert_eq!(wrong_prefix.parse::<Name>(), Err(NameError::NotAName));
        let not_base32 = format!("n{}", "1".repeat(52));
        assert_eq!(not_base32.parse::<Name>(), Err(NameError::NotAName));
        // A site ID (43 characters) is never a name.
        let site = BlobId([3; 32]).to_string();
        assert!(site.parse::<Name>().is_err());
        assert_eq!(Name::from_slice(&[0; 31]), Err(NameError::NameLength(31)));
    }

    #[test]
    fn signing_bytes_are_context_name_sequence_site_and_end() {
        let name = Name([1; 32]);
        let bytes = signing_bytes(&name, 0x0102, &BlobId([2; 32]), 0x0304);
        assert_eq!(&bytes[..19], NAME_CONTEXT);
        assert_eq!(&bytes[19..51], &[1; 32]);
        assert_eq!(&bytes[51..59], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[59..91], &[2; 32]);
        assert_eq!(&bytes[91..], &0x0304u64.to_le_bytes());
    }

    #[test]
    fn only_the_owners_signature_is_accepted() {
        let good = record(1, 5, 9, 0);
        assert_eq!(NameRecord::from_wire(&good.to_wire(), &Toy).unwrap(), good);
        // Moved to another site, or rolled forward, without the owner: refused.
        for forged in [
            pb::NameRecord {
                site_id: Bytes::from(vec![8; 32]),
                ..good.to_wire()
            },
            pb::NameRecord {
                sequence: 6,
                ..good.to_wire()
            },
            pb::NameRecord {
                end_epoch: 1,
                ..good.to_wire()
            },
            // Signed by another name's owner, claiming this name.
            pb::NameRecord {
                name: Bytes::from(vec![1; 32]),
                ..record(2, 5, 9, 0).to_wire()
            },
        ] {
            assert_eq!(
                NameRecord::from_wire(&forged, &Toy),
                Err(NameError::BadSignature)
            );
        }
        let short = pb::NameRecord {
            signature: Bytes::from(vec![0; 10]),
            ..good.to_wire()
        };
        assert_eq!(
            NameRecord::from_wire(&short, &Toy),
            Err(NameError::SignatureLength(10))
        );
        let other = NameRecord::from_wire_for(&Name([2; 32]), &good.to_wire(), &Toy);
        assert!(matches!(other, Err(NameError::OtherName { .. })));
    }

    #[test]
    fn a_higher_sequence_wins_and_old_records_never_roll_back() {
        let (old, new) = (record(1, 1, 1, 0), record(1, 2, 2, 0));
        assert_eq!(keep(None, &old), Keep::Replace);
        assert_eq!(keep(Some(&old), &new), Keep::Replace);
        assert_eq!(keep(Some(&new), &old), Keep::Unchanged);
        assert_eq!(keep(Some(&new), &new), Keep::Unchanged);
        assert_eq!(next_sequence(None), Ok(1));
        assert_eq!(next_sequence(Some(&new)), Ok(3));
        assert_eq!(
            next_sequence(Some(&record(1, u64::MAX, 1, 0))),
            Err(NameError::SequenceExhausted)
        );
    }

    #[test]
    fn peers_keep_names_near_them_only() {
        assert!(keeps_at(0) && keeps_at(NAME_REPLICAS) && keeps_at(KEEP_WITHIN - 1));
        assert!(!keeps_at(KEEP_WITHIN));
    }

    #[test]
    fn a_record_lives_as_long_as_its_end_epoch_says() {
        let forever = record(1, 1, 1, 0);
        assert!(forever.is_live(u64::MAX - 10) && !forever.is_expired(u64::MAX - 10));
        let ending = record(1, 1, 1, 10);
        assert!(ending.is_live(10));
        assert!(!ending.is_live(11));
        assert!(!ending.is_expired(11));
        assert!(ending.is_expired(10 + lifetime::GRACE_EPOCHS + 1));
    }

    proptest! {
        /// Whatever order a holder sees a name's records in, it keeps the same one, the one `best` picks: the
        /// highest sequence, an equivocation settled by the signing bytes.
        #[test]
        fn holders_converge_whatever_the_order(
            records in proptest::collection::vec((0u64..4, 0u8..4, 0u64..3), 1..12),
            seed in any::<u64>(),
        ) {
            let records: Vec<NameRecord> =
                records.iter().map(|&(seq, site, end)| record(7, seq, site, end)).collect();
            let mut shuffled = records.clone();
            // A deterministic shuffle from the seed.
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(state >> 33).unwrap() % (i + 1);
                shuffled.swap(i, j);
            }
            let mut kept: Option<NameRecord> = None;
            for offered in &shuffled {
                if keep(kept.as_ref(), offered) == Keep::Replace {
                    kept = Some(offered.clone());
                }
            }
            let kept = kept.unwrap();
            prop_assert_eq!(Some(&kept), best(&records));
            let top = records.iter().map(|r| r.sequence).max().unwrap();
            prop_assert_eq!(kept.sequence, top);
            // Nothing offered afterwards that it has seen replaces it.
            for offered in &records {
                prop_assert_eq!(keep(Some(&kept), offered), Keep::Unchanged);
            }
        }

        /// Any bytes on the wire are refused or accepted without panicking, and a tampered record never passes.
        #[test]
        fn tampered_records_are_refused(
            name in proptest::collection::vec(any::<u8>(), 0..40),
            site in proptest::collection::vec(any::<u8>(), 0..40),
            signature in proptest::collection::vec(any::<u8>(), 0..80),
            sequence in any::<u64>(),
            end_epoch in any::<u64>(),
        ) {
            let wire = pb::NameRecord {
                name: Bytes::from(name),
                sequence,
                site_id: Bytes::from(site),
                end_epoch,
                signature: Bytes::from(signature),
            };
            prop_assert!(NameRecord::from_wire(&wire, &Toy).is_err());
        }
    }
}
