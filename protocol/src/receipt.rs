//! Storage receipts: the bytes a holder signs to say it stores a sliver index, and the check every writer applies
//! before counting a receipt towards a blob's certificate.
//!
//! The signature scheme is the driver's (libp2p identity keys in the node): this module decides what is signed
//! and what makes a receipt valid, and asks a [`Signatures`] implementation only whether a signature verifies and
//! which peer a public key belongs to. It must not hold keys or sign.

use crate::blob_id::{BLOB_ID_LEN, BlobId};
use crate::wire::pb;

/// Domain separation: a receipt signature can never be mistaken for a signature over anything else.
pub const RECEIPT_CONTEXT: &[u8; 15] = b"floe receipt v1";

/// Length of [`signing_bytes`].
pub const SIGNING_BYTES_LEN: usize = RECEIPT_CONTEXT.len() + BLOB_ID_LEN + 2;

/// The bytes a holder signs to acknowledge sliver `index` of `blob_id`: the context, the blob ID, the index
/// (little-endian u16).
pub fn signing_bytes(blob_id: &BlobId, index: u16) -> [u8; SIGNING_BYTES_LEN] {
    let mut bytes = [0u8; SIGNING_BYTES_LEN];
    let (context, rest) = bytes.split_at_mut(RECEIPT_CONTEXT.len());
    context.copy_from_slice(RECEIPT_CONTEXT);
    let (id, index_bytes) = rest.split_at_mut(BLOB_ID_LEN);
    id.copy_from_slice(blob_id.as_bytes());
    index_bytes.copy_from_slice(&index.to_le_bytes());
    bytes
}

/// What the driver's signature scheme answers.
pub trait Signatures {
    /// A peer's identity, as the driver names peers.
    type Peer: PartialEq;
    /// The peer a public key (in the driver's encoding) belongs to, if the key is well formed.
    fn signer(&self, public_key: &[u8]) -> Option<Self::Peer>;
    /// Whether `signature` over `message` verifies under `public_key`.
    fn verifies(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool;
}

/// Why a receipt does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// It names another blob or sliver index.
    #[error("receipt for another sliver")]
    OtherSliver,
    /// Its public key is malformed.
    #[error("receipt with a malformed public key")]
    BadKey,
    /// It was signed by a peer other than the holder asked.
    #[error("receipt signed by another peer")]
    OtherSigner,
    /// The signature does not verify.
    #[error("bad receipt signature")]
    BadSignature,
}

/// Checks that `receipt` acknowledges sliver `index` of `blob_id`, is signed by `holder`, and verifies.
pub fn check<S: Signatures>(
    signatures: &S,
    receipt: &pb::StorageReceipt,
    blob_id: &BlobId,
    index: u16,
    holder: &S::Peer,
) -> Result<(), ReceiptError> {
    if receipt.blob_id.as_ref() != blob_id.as_bytes() || receipt.index != u32::from(index) {
        return Err(ReceiptError::OtherSliver);
    }
    let signer = signatures
        .signer(&receipt.holder_public_key)
        .ok_or(ReceiptError::BadKey)?;
    if signer != *holder {
        return Err(ReceiptError::OtherSigner);
    }
    if !signatures.verifies(
        &receipt.holder_public_key,
        &signing_bytes(blob_id, index),
        &receipt.signature,
    ) {
        return Err(ReceiptError::BadSignature);
    }
    Ok(())
}

/// A toy signature scheme for the tests of the rules that check signatures (receipts, departure statements):
/// the "public key" is the peer's one-byte name, and a signature is the message's BLAKE3 hash keyed by that
/// name. Enough to test a rule, not a real signature.
#[cfg(test)]
pub(crate) mod toy {
    use super::Signatures;

    /// The scheme.
    pub(crate) struct Toy;

    /// Peer `peer`'s signature over `message`.
    pub(crate) fn toy_sign(peer: u8, message: &[u8]) -> Vec<u8> {
        blake3::keyed_hash(&[peer; 32], message).as_bytes().to_vec()
    }

    impl Signatures for Toy {
        type Peer = u8;
        fn signer(&self, public_key: &[u8]) -> Option<u8> {
            match public_key {
                [peer] => Some(*peer),
                _ => None,
            }
        }
        fn verifies(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
            public_key.len() == 1 && toy_sign(public_key[0], message) == signature
        }
    }
}

#[cfg(test)]
mod tests {
    use super::toy::{Toy, toy_sign};
    use super::*;
    use bytes::Bytes;

    fn receipt(blob_id: &BlobId, index: u16, peer: u8) -> pb::StorageReceipt {
        pb::StorageReceipt {
            blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
            index: u32::from(index),
            holder_public_key: Bytes::from(vec![peer]),
            signature: Bytes::from(toy_sign(peer, &signing_bytes(blob_id, index))),
            note: String::new(),
            listed_elsewhere: false,
        }
    }

    #[test]
    fn signing_bytes_are_context_blob_and_index() {
        let id = BlobId::from_slice(&[7; 32]).unwrap();
        let bytes = signing_bytes(&id, 0x0102);
        assert_eq!(&bytes[..15], b"floe receipt v1");
        assert_eq!(&bytes[15..47], &[7; 32]);
        assert_eq!(&bytes[47..], &[0x02, 0x01]);
    }

    #[test]
    fn only_the_holders_valid_receipt_for_that_sliver_counts() {
        let id = BlobId::from_slice(&[1; 32]).unwrap();
        let other = BlobId::from_slice(&[2; 32]).unwrap();
        assert_eq!(check(&Toy, &receipt(&id, 3, 9), &id, 3, &9), Ok(()));
        assert_eq!(
            check(&Toy, &receipt(&id, 4, 9), &id, 3, &9),
            Err(ReceiptError::OtherSliver)
        );
        assert_eq!(
            check(&Toy, &receipt(&other, 3, 9), &id, 3, &9),
            Err(ReceiptError::OtherSliver)
        );
        assert_eq!(
            check(&Toy, &receipt(&id, 3, 8), &id, 3, &9),
            Err(ReceiptError::OtherSigner)
        );
        let mut forged = receipt(&id, 3, 9);
        forged.signature = Bytes::from(toy_sign(8, &signing_bytes(&id, 3)));
        assert_eq!(
            check(&Toy, &forged, &id, 3, &9),
            Err(ReceiptError::BadSignature)
        );
        let mut keyless = receipt(&id, 3, 9);
        keyless.holder_public_key = Bytes::new();
        assert_eq!(check(&Toy, &keyless, &id, 3, &9), Err(ReceiptError::BadKey));
    }
}
