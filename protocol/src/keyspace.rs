//! The neighbourhood metric: which peers are closest to a blob. A blob lives on the peers closest to its ID
//! (§9 of docs/protocol.md), and the node finds them with Kademlia, so "closest" must be Kademlia's own
//! metric: both a peer and a blob ID are mapped to a point by SHA-256 of their bytes (libp2p's `KBucketKey`:
//! a peer's bytes are its peer ID in its binary form, a blob's its 32-byte ID), and the distance between two
//! points is their XOR, compared as a 256-bit big-endian number.
//!
//! The node ranks the peers it knows with [`by_distance`]; the simulator keeps the first 64 bits of each
//! point ([`Point::prefix`]) in a sorted array, which orders peers the same way except between points that
//! share those 64 bits (about one pair in 2^64 / n²). This module does no I/O and keeps no state.

use sha2::{Digest, Sha256};

use crate::blob_id::BlobId;

/// A position in the Kademlia keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point([u8; 32]);

impl Point {
    /// The point of a peer, from its peer ID bytes (or any key bytes, as the simulator's peers have).
    pub fn of_peer(peer: &[u8]) -> Self {
        Self(Sha256::digest(peer).into())
    }

    /// The point of a blob.
    pub fn of_blob(blob_id: &BlobId) -> Self {
        Self(Sha256::digest(blob_id.as_bytes()).into())
    }

    /// The XOR distance to `other`; distances compare as big-endian numbers, as arrays do.
    pub fn distance(&self, other: &Point) -> [u8; 32] {
        let mut distance = [0u8; 32];
        for (d, (a, b)) in distance.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *d = a ^ b;
        }
        distance
    }

    /// The first 64 bits, big-endian: XOR on prefixes orders distances as the full points do, up to ties.
    pub fn prefix(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Orders `peers` closest to `blob_id` first, each peer's bytes given by `bytes`. Peers at equal distance (the
/// same key) keep their order.
pub fn by_distance<P>(blob_id: &BlobId, peers: &mut [P], bytes: impl Fn(&P) -> Vec<u8>) {
    let target = Point::of_blob(blob_id);
    peers.sort_by_cached_key(|peer| Point::of_peer(&bytes(peer)).distance(&target));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn points_are_sha256_of_the_bytes() {
        // SHA-256("abc"), FIPS 180-2's first example.
        let point = Point::of_peer(b"abc");
        assert_eq!(
            point.as_bytes()[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "{:02x?}",
            point.as_bytes()
        );
        assert_eq!(point.prefix(), 0xba78_16bf_8f01_cfea);
        let blob = BlobId::from_slice(&[7; 32]).unwrap();
        assert_eq!(Point::of_blob(&blob), Point::of_peer(&[7; 32]));
        assert_eq!(point.distance(&point), [0; 32]);
    }

    proptest! {
        /// Distance is a metric in Kademlia's sense (symmetric, zero only to itself), and ranking by the
        /// 64-bit prefix agrees with ranking by the full distance whenever prefixes differ.
        #[test]
        fn prefixes_rank_as_full_distances(
            a in any::<[u8; 8]>(),
            b in any::<[u8; 8]>(),
            target in any::<[u8; 32]>(),
        ) {
            let (a, b) = (Point::of_peer(&a), Point::of_peer(&b));
            let target = Point::of_blob(&BlobId::from_slice(&target).unwrap());
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&b) == [0; 32], a == b);
            let (pa, pb) = (a.prefix() ^ target.prefix(), b.prefix() ^ target.prefix());
            if pa != pb {
                prop_assert_eq!(pa < pb, a.distance(&target) < b.distance(&target));
            }
        }

        #[test]
        fn by_distance_sorts_closest_first(
            peers in proptest::collection::vec(any::<[u8; 4]>(), 0..40),
            target in any::<[u8; 32]>(),
        ) {
            let blob = BlobId::from_slice(&target).unwrap();
            let mut ranked = peers.clone();
            by_distance(&blob, &mut ranked, |p| p.to_vec());
            let at = Point::of_blob(&blob);
            for pair in ranked.windows(2) {
                prop_assert!(
                    Point::of_peer(&pair[0]).distance(&at) <= Point::of_peer(&pair[1]).distance(&at)
                );
            }
            let (mut sorted, mut original) = (ranked, peers);
            sorted.sort();
            original.sort();
            prop_assert_eq!(sorted, original);
        }
    }
}
