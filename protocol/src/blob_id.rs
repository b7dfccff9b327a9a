//! The blob ID: 32 bytes of BLAKE3 that commit to a blob's encoding and to every one of its slivers.
//!
//! This module owns the ID type and its text form (URL-safe base64 without padding, 43 characters, the form
//! Walrus prints). How the ID is computed lives in [`crate::metadata`].

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of a blob ID in bytes.
pub const BLOB_ID_LEN: usize = 32;
/// Length of a blob ID's text form in characters.
pub const BLOB_ID_TEXT_LEN: usize = 43;

/// A blob ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(pub [u8; BLOB_ID_LEN]);

impl BlobId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; BLOB_ID_LEN] {
        &self.0
    }

    /// Parses the raw 32-byte form, as carried on the wire.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseBlobIdError> {
        let array: [u8; BLOB_ID_LEN] = bytes
            .try_into()
            .map_err(|_| ParseBlobIdError::WrongByteLength(bytes.len()))?;
        Ok(Self(array))
    }
}

/// Why a blob ID failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseBlobIdError {
    /// The text is not 43 characters long.
    #[error(
        "a blob ID is {BLOB_ID_TEXT_LEN} characters of URL-safe base64 without padding; this one has {0} characters"
    )]
    WrongTextLength(usize),
    /// A character outside the URL-safe base64 alphabet.
    #[error(
        "a blob ID uses only A-Z, a-z, 0-9, '-' and '_'; found {found:?} at position {position}"
    )]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its character position (0-based).
        position: usize,
    },
    /// The last character carries bits beyond the 32 bytes (not the canonical encoding of any ID).
    #[error("the last character of a blob ID must encode trailing zero bits; {0:?} does not")]
    NonCanonical(char),
    /// Raw bytes of the wrong length.
    #[error("a blob ID is {BLOB_ID_LEN} bytes; got {0}")]
    WrongByteLength(usize),
}

impl FromStr for BlobId {
    type Err = ParseBlobIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let chars = text.chars().count();
        if chars != BLOB_ID_TEXT_LEN || text.len() != BLOB_ID_TEXT_LEN {
            return Err(ParseBlobIdError::WrongTextLength(chars));
        }
        if let Some((position, found)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(ParseBlobIdError::BadCharacter { found, position });
        }
        let mut bytes = [0u8; BLOB_ID_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(BLOB_ID_LEN) => Ok(Self(bytes)),
            Ok(other) => Err(ParseBlobIdError::WrongByteLength(other)),
            // 43 characters of the right alphabet only fail on non-zero trailing bits.
            Err(_) => Err(ParseBlobIdError::NonCanonical(
                text.chars().last().unwrap_or('?'),
            )),
        }
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_form_round_trips(bytes in any::<[u8; 32]>()) {
            let id = BlobId(bytes);
            let text = id.to_string();
            prop_assert_eq!(text.len(), BLOB_ID_TEXT_LEN);
            prop_assert_eq!(text.parse::<BlobId>(), Ok(id));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,64}") {
            let _ = text.parse::<BlobId>();
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            "abc".parse::<BlobId>(),
            Err(ParseBlobIdError::WrongTextLength(3))
        );
        let padded = format!("{}=", BlobId([7; 32]));
        assert_eq!(
            padded.parse::<BlobId>(),
            Err(ParseBlobIdError::WrongTextLength(44))
        );
        let mut bad = BlobId([7; 32]).to_string();
        bad.replace_range(5..6, "+");
        assert_eq!(
            bad.parse::<BlobId>(),
            Err(ParseBlobIdError::BadCharacter {
                found: '+',
                position: 5
            })
        );
        // 'B' in the last place sets a bit past the 256th.
        let mut non_canonical = BlobId([0; 32]).to_string();
        non_canonical.replace_range(42..43, "B");
        assert_eq!(
            non_canonical.parse::<BlobId>(),
            Err(ParseBlobIdError::NonCanonical('B'))
        );
        let multibyte = "é".repeat(22);
        assert!(multibyte.parse::<BlobId>().is_err());
    }
}
