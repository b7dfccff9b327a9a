//! Deletion: writers' claims on a blob, their release, and when a blob counts as deleted.
//!
//! A deletable write (the default, as in Walrus) gives its writer a secret [`Token`]; the holders keep only its
//! [`Claim`], a BLAKE3 hash of the token bound to the blob ID ([`claim_of`]). To delete, the writer shows the
//! token: it releases the claim it hashes to. Holders keep the released tokens themselves beside the claims, so
//! any peer can check a release against the claims: nobody releases a claim without its token, and a release
//! learnt from a peer needs no trust in that peer.
//!
//! Claims and released tokens only grow and merge by union (a two-phase set, [`Claims::merged`]), so holders that
//! hear of writes, extensions and deletions in any order, from any path (a store, a metadata answer, gossip),
//! agree once they have heard the same things. Two writers of the same bytes each hold a claim; the blob is
//! deleted when **every** claim is released ([`Claims::standing`]): the writer who deletes does not take the
//! other's copy with it. A permanent write adds no claim and sets [`Claims::permanent_until`] instead: nobody can
//! delete the blob before the end of that epoch, whatever is released. A blob with no claim at all (stored
//! permanent, or before deletion existed) cannot be deleted.
//!
//! A released claim is never un-released: a writer who wants the blob again writes it again, which adds a new
//! claim under a new token.
//!
//! The module decides; the node draws tokens (this crate has no randomness) and removes slivers.

use std::collections::BTreeSet;

use crate::BlobId;
use crate::lifetime;

/// Bytes in a token and in a claim.
pub const TOKEN_LEN: usize = 32;
/// Claims a blob may carry. A write that would add one more is refused by the holders ([`DeletionError::TooMany`]):
/// dropping a claim could delete a blob while its writer still holds an unreleased one.
pub const MAX_CLAIMS: usize = 64;

const CLAIM_CONTEXT: &str = "floe 2026-12-03 deletion claim v1";

/// A writer's secret: shown once, to delete. Its `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What holders keep of a token: `BLAKE3(blob ID ‖ token)` in derive-key mode ([`claim_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim(pub [u8; TOKEN_LEN]);

/// The claim `token` makes on `blob_id`. Bound to the blob, so one token cannot release another blob's claim.
pub fn claim_of(blob_id: &BlobId, token: &Token) -> Claim {
    let mut hasher = blake3::Hasher::new_derive_key(CLAIM_CONTEXT);
    hasher.update(blob_id.as_bytes());
    hasher.update(&token.0);
    Claim(*hasher.finalize().as_bytes())
}

/// Why claims, a release or a deletion are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeletionError {
    /// A claim or token that is not [`TOKEN_LEN`] bytes.
    #[error("a deletion claim or token must be {TOKEN_LEN} bytes, got {0}")]
    Length(usize),
    /// More claims (or released tokens) than [`MAX_CLAIMS`].
    #[error("a blob carries at most {MAX_CLAIMS} deletion claims; this would make {0}")]
    TooMany(usize),
    /// A released token whose claim is not among the blob's claims.
    #[error("a released token matches none of the blob's claims")]
    UnknownRelease,
    /// A token shown to delete that matches none of the blob's claims.
    #[error("the deletion token does not match any claim on this blob")]
    WrongToken,
    /// The blob has no claim at all: it was stored permanent (or before deletion existed).
    #[error("the blob was stored without a deletion token (permanent): it cannot be deleted")]
    NotDeletable,
}

/// A blob's claims, released tokens and permanence, as a holder record carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    claims: BTreeSet<Claim>,
    released: BTreeSet<Token>,
    permanent_until: Option<u64>,
}

/// What a blob's claims make of it at an epoch ([`Claims::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Served, repaired and kept as its end epoch says.
    Kept,
    /// Every claim is released, but a permanent write keeps the blob until the end of this epoch (then it is
    /// deleted, or expires first if its end epoch comes first).
    ReleasedKeptUntil(u64),
    /// Every claim is released and nothing keeps it: not served, not repaired; holders drop its slivers now.
    Deleted,
}

/// What releasing a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// False when the token was released before (releasing is idempotent).
    pub newly: bool,
    /// Claims still unreleased afterwards.
    pub unreleased: usize,
}

impl Claims {
    /// The claims of one deletable write.
    pub fn deletable(claim: Claim) -> Self {
        Self {
            claims: BTreeSet::from([claim]),
            ..Self::default()
        }
    }

    /// The claims of one permanent write, which nobody can delete before the end of `end_epoch`.
    pub fn permanent(end_epoch: u64) -> Self {
        Self {
            permanent_until: Some(end_epoch),
            ..Self::default()
        }
    }

    /// Claims as read from the wire (a store request, a metadata answer, a record): each claim and token
    /// [`TOKEN_LEN`] bytes, at most `max` of each (`MAX_CLAIMS` from peers; more from this node's own store,
    /// where merges may have gone past it), and every released token matching a claim. `permanent_until` 0 is none.
    pub fn from_wire<B: AsRef<[u8]>>(
        blob_id: &BlobId,
        claims: &[B],
        released: &[B],
        permanent_until: u64,
        max: usize,
    ) -> Result<Self, DeletionError> {
        if claims.len() > max || released.len() > max {
            return Err(DeletionError::TooMany(claims.len().max(released.len())));
        }
        let fixed = |bytes: &B| -> Result<[u8; TOKEN_LEN], DeletionError> {
            let bytes = bytes.as_ref();
            <[u8; TOKEN_LEN]>::try_from(bytes).map_err(|_| DeletionError::Length(bytes.len()))
        };
        let claims = claims
            .iter()
            .map(|c| fixed(c).map(Claim))
            .collect::<Result<BTreeSet<Claim>, _>>()?;
        let released = released
            .iter()
            .map(|t| fixed(t).map(Token))
            .collect::<Result<BTreeSet<Token>, _>>()?;
        if released
            .iter()
            .any(|token| !claims.contains(&claim_of(blob_id, token)))
        {
            return Err(DeletionError::UnknownRelease);
        }
        Ok(Self {
            claims,
            released,
            permanent_until: (permanent_until != 0).then_some(permanent_until),
        })
    }

    /// The claims, in order (for the wire).
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.claims.iter()
    }

    /// The released tokens, in order (for the wire).
    pub fn released(&self) -> impl Iterator<Item = &Token> {
        self.released.iter()
    }

    /// The epoch a permanent write keeps the blob until, if any.
    pub fn permanent_until(&self) -> Option<u64> {
        self.permanent_until
    }

    /// `permanent_until` as the wire carries it (0: none).
    pub fn permanent_until_wire(&self) -> u64 {
        self.permanent_until.unwrap_or(0)
    }

    /// How many claims there are.
    pub fn count(&self) -> usize {
        self.claims.len()
    }

    /// How many claims are not released.
    pub fn unreleased(&self) -> usize {
        self.claims.len().saturating_sub(self.released.len())
    }

    /// Whether a writer can delete this blob at all (it has a claim).
    pub fn is_deletable(&self) -> bool {
        !self.claims.is_empty()
    }

    /// Whether every claim is released (and there is one).
    pub fn all_released(&self) -> bool {
        self.is_deletable() && self.unreleased() == 0
    }

    /// The union of two views of one blob's claims: every claim and release either knows, and the later
    /// permanence. Commutative, associative and idempotent, so holders converge whatever order they hear in.
    pub fn merged(&self, other: &Claims) -> Claims {
        Claims {
            claims: self.claims.union(&other.claims).copied().collect(),
            released: self.released.union(&other.released).copied().collect(),
            permanent_until: self.permanent_until.max(other.permanent_until),
        }
    }

    /// Whether merging `other` in would take the blob past [`MAX_CLAIMS`] (a holder refuses such a store).
    pub fn merge_exceeds_limit(&self, other: &Claims) -> bool {
        self.claims.union(&other.claims).count() > MAX_CLAIMS
    }

    /// Releases the claim `token` makes on `blob_id`.
    pub fn release(&mut self, blob_id: &BlobId, token: Token) -> Result<Released, DeletionError> {
        if !self.is_deletable() {
            return Err(DeletionError::NotDeletable);
        }
        if !self.claims.contains(&claim_of(blob_id, &token)) {
            return Err(DeletionError::WrongToken);
        }
        let newly = self.released.insert(token);
        Ok(Released {
            newly,
            unreleased: self.unreleased(),
        })
    }

    /// What the claims make of the blob at epoch `current`. Only a blob whose every claim is released can be
    /// anything but [`Standing::Kept`]; its end epoch still applies on top ([`lifetime`]).
    pub fn standing(&self, current: u64) -> Standing {
        if !self.all_released() {
            return Standing::Kept;
        }
        match self.permanent_until {
            Some(until) if lifetime::is_live(until, current) => Standing::ReleasedKeptUntil(until),
            _ => Standing::Deleted,
        }
    }

    /// The end epoch the blob is served until, given its record's `end_epoch`: a permanent write's end caps a
    /// blob whose every claim is released (what is kept after a deletion is only what the permanent write paid for).
    pub fn effective_end(&self, end_epoch: u64) -> u64 {
        match (self.all_released(), self.permanent_until) {
            (true, Some(until)) => end_epoch.min(until),
            _ => end_epoch,
        }
    }
}

/// Successors each tombstone holder passes a deletion on to ([`pass_on_to`]).
pub const PASS_ON_REACH: usize = 2;

/// The holders `me` passes a deleted blob's released tokens on to: walking the blob's distinct holders in list
/// order from `me` (a ring), the first [`PASS_ON_REACH`] that are `connected`. Holders that are not connected
/// are passed over, so a holder that was down is covered, once back, by its nearest live predecessors; and each
/// holder sends to at most `PASS_ON_REACH` others, so a deletion costs about `PASS_ON_REACH · n` messages across
/// the holders, not n². Empty when `me` is not a holder.
pub fn pass_on_to<K: Clone + Eq>(holders: &[K], me: &K, connected: impl Fn(&K) -> bool) -> Vec<K> {
    let mut ring: Vec<&K> = Vec::with_capacity(holders.len());
    for holder in holders {
        if !ring.contains(&holder) {
            ring.push(holder);
        }
    }
    let Some(at) = ring.iter().position(|h| *h == me) else {
        return Vec::new();
    };
    ring.iter()
        .cycle()
        .skip(at + 1)
        .take(ring.len().saturating_sub(1))
        .filter(|h| connected(h))
        .take(PASS_ON_REACH)
        .map(|h| (*h).clone())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob() -> BlobId {
        BlobId::from_slice(&[9u8; 32]).unwrap()
    }

    fn token(byte: u8) -> Token {
        Token([byte; TOKEN_LEN])
    }

    #[test]
    fn the_writers_token_deletes_and_no_other_does() {
        let mut claims = Claims::deletable(claim_of(&blob(), &token(1)));
        assert_eq!(claims.standing(5), Standing::Kept);
        assert_eq!(
            claims.release(&blob(), token(2)),
            Err(DeletionError::WrongToken)
        );
        // A token is bound to its blob: the same token does not release another blob's claim.
        let other = BlobId::from_slice(&[8u8; 32]).unwrap();
        assert_eq!(
            claims.release(&other, token(1)),
            Err(DeletionError::WrongToken)
        );
        let released = claims.release(&blob(), token(1)).unwrap();
        assert_eq!(
            released,
            Released {
                newly: true,
                unreleased: 0
            }
        );
        assert_eq!(claims.standing(5), Standing::Deleted);
        // Again: idempotent.
        assert!(!claims.release(&blob(), token(1)).unwrap().newly);
    }

    #[test]
    fn two_writers_each_keep_their_copy_until_both_delete() {
        let a = Claims::deletable(claim_of(&blob(), &token(1)));
        let b = Claims::deletable(claim_of(&blob(), &token(2)));
        let mut both = a.merged(&b);
        both.release(&blob(), token(1)).unwrap();
        assert_eq!(both.standing(0), Standing::Kept);
        assert_eq!(both.unreleased(), 1);
        both.release(&blob(), token(2)).unwrap();
        assert_eq!(both.standing(0), Standing::Deleted);
    }

    #[test]
    fn a_permanent_write_keeps_the_blob_until_its_end() {
        let mut claims =
            Claims::deletable(claim_of(&blob(), &token(1))).merged(&Claims::permanent(10));
        claims.release(&blob(), token(1)).unwrap();
        assert_eq!(claims.standing(10), Standing::ReleasedKeptUntil(10));
        assert_eq!(claims.standing(11), Standing::Deleted);
        assert_eq!(claims.effective_end(30), 10);
        assert_eq!(Claims::permanent(10).effective_end(30), 30);
        assert_eq!(
            Claims::permanent(10).release(&blob(), token(1)),
            Err(DeletionError::NotDeletable)
        );
        assert_eq!(Claims::default().standing(0), Standing::Kept);
    }

    #[test]
    fn the_wire_form_is_checked() {
        let claim = claim_of(&blob(), &token(1)).0.to_vec();
        let good = Claims::from_wire(
            &blob(),
            std::slice::from_ref(&claim),
            &[token(1).0.to_vec()],
            0,
            MAX_CLAIMS,
        );
        assert_eq!(good.unwrap().standing(0), Standing::Deleted);
        assert_eq!(
            Claims::from_wire(
                &blob(),
                std::slice::from_ref(&claim),
                &[token(2).0.to_vec()],
                0,
                MAX_CLAIMS
            ),
            Err(DeletionError::UnknownRelease)
        );
        assert_eq!(
            Claims::from_wire(&blob(), &[vec![0u8; 31]], &[], 0, MAX_CLAIMS),
            Err(DeletionError::Length(31))
        );
        let many: Vec<Vec<u8>> = (0..=MAX_CLAIMS)
            .map(|i| vec![u8::try_from(i).unwrap(); 32])
            .collect();
        assert_eq!(
            Claims::from_wire(&blob(), &many, &[], 0, MAX_CLAIMS),
            Err(DeletionError::TooMany(MAX_CLAIMS + 1))
        );
        let permanent = Claims::from_wire::<Vec<u8>>(&blob(), &[], &[], 7, MAX_CLAIMS).unwrap();
        assert_eq!(permanent.permanent_until(), Some(7));
    }

    #[test]
    fn a_deletion_is_passed_on_to_the_next_connected_holders() {
        let holders = [1, 2, 3, 2, 4, 5];
        assert_eq!(pass_on_to(&holders, &1, |_| true), vec![2, 3]);
        assert_eq!(pass_on_to(&holders, &5, |_| true), vec![1, 2]);
        // Holders that are away are passed over.
        assert_eq!(pass_on_to(&holders, &1, |h| *h != 2), vec![3, 4]);
        assert_eq!(pass_on_to(&holders, &9, |_| true), Vec::<i32>::new());
        assert_eq!(pass_on_to(&[1], &1, |_| true), Vec::<i32>::new());
    }

    proptest! {
        /// Whichever holders are up, every one that is up is passed the deletion by some other holder that is up
        /// (when two or more are), and nobody sends to more than `PASS_ON_REACH`.
        #[test]
        fn every_holder_that_is_up_hears_of_a_deletion(
            holders in proptest::collection::vec(0u8..12, 1..24),
            up in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let connected = |h: &u8| up[usize::from(*h)];
            let distinct: BTreeSet<u8> = holders.iter().copied().collect();
            let live: Vec<u8> = distinct.iter().copied().filter(connected).collect();
            let mut told: BTreeSet<u8> = BTreeSet::new();
            for me in &live {
                let to = pass_on_to(&holders, me, connected);
                prop_assert!(to.len() <= PASS_ON_REACH);
                prop_assert!(!to.contains(me));
                told.extend(to);
            }
            if live.len() >= 2 {
                prop_assert_eq!(told, live.into_iter().collect::<BTreeSet<u8>>());
            }
        }
    }

    fn claims_from(writes: &[u8], released: &[u8], permanent: Option<u64>) -> Claims {
        let mut claims = writes.iter().fold(Claims::default(), |c, &w| {
            c.merged(&Claims::deletable(claim_of(&blob(), &token(w))))
        });
        if let Some(until) = permanent {
            claims = claims.merged(&Claims::permanent(until));
        }
        for &r in released {
            if writes.contains(&r) {
                claims.release(&blob(), token(r)).unwrap();
            }
        }
        claims
    }

    type View = (Vec<u8>, Vec<u8>, Option<u64>);

    fn arb_view() -> impl Strategy<Value = View> {
        (
            proptest::collection::vec(0u8..8, 0..5),
            proptest::collection::vec(0u8..8, 0..5),
            proptest::option::of(0u64..20),
        )
    }

    fn claims_of(view: &View) -> Claims {
        claims_from(&view.0, &view.1, view.2)
    }

    proptest! {
        /// Holders that hear the same claims and releases in any order agree (a two-phase set).
        #[test]
        fn merging_is_a_semilattice(a in arb_view(), b in arb_view(), c in arb_view()) {
            let (a, b, c) = (claims_of(&a), claims_of(&b), claims_of(&c));
            prop_assert_eq!(a.merged(&b), b.merged(&a));
            prop_assert_eq!(a.merged(&b).merged(&c), a.merged(&b.merged(&c)));
            prop_assert_eq!(a.merged(&a), a.clone());
        }

        /// Two holders' views merged: the blob is deleted exactly when some write was deletable, every deletable
        /// write was released in a view that knew it, and no permanent write still keeps it.
        #[test]
        fn deleted_exactly_when_every_writer_released(a in arb_view(), b in arb_view(), epoch in 0u64..25) {
            let merged = claims_of(&a).merged(&claims_of(&b));
            let writes: BTreeSet<u8> = a.0.iter().chain(&b.0).copied().collect();
            let released = |w: &u8| {
                (a.0.contains(w) && a.1.contains(w)) || (b.0.contains(w) && b.1.contains(w))
            };
            let kept_by_permanent = a.2.max(b.2).is_some_and(|until| epoch <= until);
            let deleted = !writes.is_empty() && writes.iter().all(released) && !kept_by_permanent;
            prop_assert_eq!(merged.standing(epoch) == Standing::Deleted, deleted);
        }
    }
}
