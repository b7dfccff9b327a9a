//! Domain-separated BLAKE3 Merkle trees: leaves, inner nodes, roots, inclusion paths and their verification.
//!
//! floe builds two trees per blob: one per segment over the hashes of its n slivers, and one over the segment
//! roots (see [`crate::metadata`]). This module knows nothing of blobs; it only hashes and checks paths.
//!
//! Shape: leaves are paired left to right; a level with an odd count carries its last node up unchanged (no
//! duplication, so no two leaf counts share a root shape). The leaf count is always known to the verifier
//! from the blob parameters, so a path is exactly as long as the shape demands, never longer.

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

const SLIVER_LEAF_CONTEXT: &str = "floe 2026-11 sliver leaf v1";
const SEGMENT_LEAF_CONTEXT: &str = "floe 2026-11 segment leaf v1";
const NODE_CONTEXT: &str = "floe 2026-11 merkle node v1";

/// The leaf hash of a sliver's bytes.
pub fn sliver_leaf(data: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(SLIVER_LEAF_CONTEXT);
    hasher.update(data);
    *hasher.finalize().as_bytes()
}

/// The leaf hash of a segment root in the blob-level tree.
pub fn segment_leaf(segment_root: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(SEGMENT_LEAF_CONTEXT);
    hasher.update(segment_root);
    *hasher.finalize().as_bytes()
}

/// An inner node over two children.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// The root over `leaves`, or `None` for an empty list (floe never builds an empty tree).
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    let mut level = leaves.to_vec();
    if level.is_empty() {
        return None;
    }
    while level.len() > 1 {
        level = next_level(&level);
    }
    level.first().copied()
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node(left, right),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// Every level of a tree, leaves first, so that paths for all leaves can be cut without re-hashing.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// Builds the tree over `leaves`; `None` when there are none.
    pub fn new(leaves: Vec<Hash>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|level| level.len() > 1) {
            let next = next_level(last);
            levels.push(next);
        }
        Some(Self { levels })
    }

    /// The root.
    pub fn root(&self) -> Hash {
        // `new` never builds an empty tree, and the last level has one node.
        self.levels
            .last()
            .and_then(|level| level.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// The leaves.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The sibling path of leaf `index`, bottom up; `None` when out of range.
    pub fn path(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.leaves().len() {
            return None;
        }
        let mut path = Vec::new();
        let mut position = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = position ^ 1;
            if let Some(hash) = level.get(sibling) {
                path.push(*hash);
            }
            position /= 2;
        }
        Some(path)
    }
}

/// How many sibling hashes the path of leaf `index` in a tree of `count` leaves holds.
pub fn path_len(index: usize, count: usize) -> usize {
    let mut len = 0;
    let (mut position, mut width) = (index, count);
    while width > 1 {
        if position ^ 1 < width {
            len += 1;
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    len
}

/// Recomputes the root from a leaf and its path; `None` when the path does not fit the shape.
pub fn root_from_path(leaf: Hash, index: usize, count: usize, path: &[Hash]) -> Option<Hash> {
    if index >= count {
        return None;
    }
    let mut hash = leaf;
    let mut siblings = path.iter();
    let (mut position, mut width) = (index, count);
    while width > 1 {
        if position ^ 1 < width {
            let sibling = siblings.next()?;
            hash = if position % 2 == 0 {
                node(&hash, sibling)
            } else {
                node(sibling, &hash)
            };
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    // A longer path than the shape needs is malformed, not ignorable.
    siblings.next().is_none().then_some(hash)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(count: usize) -> Vec<Hash> {
        (0..count).map(|i| sliver_leaf(&i.to_le_bytes())).collect()
    }

    proptest! {
        #[test]
        fn every_path_verifies_and_has_the_predicted_length(count in 1usize..300) {
            let tree = Tree::new(leaves(count)).expect("non-empty");
            prop_assert_eq!(Some(tree.root()), root(tree.leaves()));
            for index in 0..count {
                let path = tree.path(index).expect("in range");
                prop_assert_eq!(path.len(), path_len(index, count));
                prop_assert_eq!(root_from_path(tree.leaves()[index], index, count, &path), Some(tree.root()));
            }
        }

        #[test]
        fn a_wrong_leaf_index_count_or_path_fails(count in 2usize..100, pick in any::<prop::sample::Index>(), flip in 0usize..256) {
            let tree = Tree::new(leaves(count)).expect("non-empty");
            let index = pick.index(count);
            let path = tree.path(index).expect("in range");
            let leaf = tree.leaves()[index];
            let other = (index + 1) % count;
            prop_assert_ne!(root_from_path(leaf, other, count, &tree.path(other).expect("in range")), Some(tree.root()));
            let mut bad_leaf = leaf;
            bad_leaf[flip / 8] ^= 1 << (flip % 8);
            prop_assert_ne!(root_from_path(bad_leaf, index, count, &path), Some(tree.root()));
            if !path.is_empty() {
                let mut bad_path = path.clone();
                bad_path[0][flip / 8] ^= 1 << (flip % 8);
                prop_assert_ne!(root_from_path(leaf, index, count, &bad_path), Some(tree.root()));
            }
            let mut long_path = path;
            long_path.push([0; 32]);
            prop_assert_eq!(root_from_path(leaf, index, count, &long_path), None);
            prop_assert_eq!(root_from_path(leaf, count, count, &[]), None);
        }
    }

    #[test]
    fn domains_are_separated() {
        let data = [1u8; 32];
        assert_ne!(sliver_leaf(&data), segment_leaf(&data));
        assert_ne!(node(&data, &data), sliver_leaf(&[data, data].concat()));
        assert_eq!(root(&[]), None);
        assert!(Tree::new(Vec::new()).is_none());
    }
}
