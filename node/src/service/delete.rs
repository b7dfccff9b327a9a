//! Deletion at this node: a deleter's `DELETE` (find the blob, check the token, reach every holder, gossip), a
//! peer's `DeleteRequest` and a gossiped one (release the claims the tokens make, drop a deleted blob's slivers).
//!
//! What a token releases and when a blob is deleted are `floe_protocol::deletion`'s rules; this module only
//! applies them to the store and moves messages. Passing a deletion on to holders that missed it is the scan's
//! (`repair::deletions`).

use super::*;
use crate::store::StoreError;
use floe_protocol::deletion::{self, DeletionError, Standing, Token};
use floe_protocol::wire;

/// Why a deletion failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Neither this node nor the peers asked know the blob.
    #[error("no peer knows blob {0}")]
    UnknownBlob(BlobId),
    /// The token is wrong, the blob cannot be deleted, or a message was malformed.
    #[error("{0}")]
    Claims(#[from] DeletionError),
    /// A malformed request or gossip message.
    #[error("{0}")]
    Malformed(#[from] WireError),
    /// A peer sent a blob ID that is not one.
    #[error("{0}")]
    BlobId(#[from] floe_protocol::ParseBlobIdError),
    /// No holder acknowledged the deletion (none reachable): it has reached no one yet.
    #[error(
        "none of the blob's {holders} holders answered; the deletion has not reached any of them, try again"
    )]
    NoHolderReached {
        /// Distinct holders asked.
        holders: usize,
    },
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking task did not finish (the node is shutting down).
    #[error("deletion task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a deletion did, as the deleter is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The blob.
    pub blob_id: BlobId,
    /// Whether the blob is now deleted (every claim released, no permanent write keeping it).
    pub deleted: bool,
    /// Claims on the blob, as the holders that answered know them.
    pub claims: usize,
    /// Claims not yet released (other writers' copies).
    pub unreleased: usize,
    /// When every claim is released but a permanent write keeps the blob: the epoch it is kept until.
    pub kept_until: Option<u64>,
    /// Distinct holders that acknowledged the deletion, of `holders`.
    pub holders_reached: usize,
    /// Distinct holders in the blob's holder list.
    pub holders: usize,
}

/// What releasing tokens on a blob held here did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReleasedHere {
    pub claims: usize,
    pub unreleased: usize,
    pub standing: Standing,
}

impl ReleasedHere {
    fn answer(self) -> pb::DeleteAnswer {
        pb::DeleteAnswer {
            claims: u32::try_from(self.claims).unwrap_or(u32::MAX),
            unreleased: u32::try_from(self.unreleased).unwrap_or(u32::MAX),
            deleted: self.standing == Standing::Deleted,
            kept_until: match self.standing {
                Standing::ReleasedKeptUntil(until) => until,
                _ => 0,
            },
        }
    }
}

/// The tokens of a `DeleteRequest`, checked: 1 to `MAX_CLAIMS` of 32 bytes each.
fn tokens_of(request: &pb::DeleteRequest) -> Result<Vec<Token>, DeletionError> {
    if request.tokens.is_empty() {
        return Err(DeletionError::WrongToken);
    }
    if request.tokens.len() > deletion::MAX_CLAIMS {
        return Err(DeletionError::TooMany(request.tokens.len()));
    }
    request
        .tokens
        .iter()
        .map(|t| {
            <[u8; deletion::TOKEN_LEN]>::try_from(&t[..])
                .map(Token)
                .map_err(|_| DeletionError::Length(t.len()))
        })
        .collect()
}

/// A `DeleteRequest` for `tokens` on `blob_id`.
pub(crate) fn delete_request<'a>(
    blob_id: &BlobId,
    tokens: impl IntoIterator<Item = &'a Token>,
) -> pb::DeleteRequest {
    pb::DeleteRequest {
        blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
        tokens: tokens
            .into_iter()
            .take(deletion::MAX_CLAIMS)
            .map(|t| Bytes::copy_from_slice(&t.0))
            .collect(),
    }
}

impl Node {
    /// Releases the claims `tokens` make on a blob held here and, if it is now deleted, drops its slivers
    /// (blocking: call it off the async threads). Tokens whose claim is not kept here are skipped, as long as one
    /// matches: a holder that never heard of a second writer still takes the first writer's release.
    pub(crate) fn release_here(
        &self,
        blob_id: &BlobId,
        tokens: &[Token],
    ) -> Result<ReleasedHere, DeleteError> {
        let store = &self.inner.store;
        let (metadata, held) = store
            .metadata_record(blob_id)
            .map_err(|_| DeleteError::UnknownBlob(*blob_id))?;
        let mut record = held.clone();
        let mut matched = None;
        let mut newly = 0u64;
        for token in tokens {
            match record.claims.release(blob_id, *token) {
                Ok(released) => {
                    newly += u64::from(released.newly);
                    matched = Some(Ok(()));
                }
                Err(error) => {
                    matched.get_or_insert(Err(error));
                }
            }
        }
        if let Some(Err(error)) = matched {
            return Err(error.into());
        }
        if record != held {
            store.put_record(&metadata, &record)?;
        }
        self.inner
            .metrics
            .claims_released
            .fetch_add(newly, Ordering::Relaxed);
        // Re-read: a store or release that ran meanwhile merged in (claims only grow).
        let (_, now_held) = store.metadata_record(blob_id)?;
        let standing = now_held.claims.standing(self.current_epoch());
        if standing == Standing::Deleted {
            self.inner.cache.remove(blob_id);
            self.drop_deleted_slivers(blob_id, &metadata);
        }
        Ok(ReleasedHere {
            claims: now_held.claims.count(),
            unreleased: now_held.claims.unreleased(),
            standing,
        })
    }

    /// Deletes every sliver of a deleted blob held here (blocking). Its record stays as the tombstone that
    /// answers readers "deleted", refuses stores without a new claim, and passes the deletion on.
    pub(crate) fn drop_deleted_slivers(&self, blob_id: &BlobId, metadata: &BlobMetadata) {
        let store = &self.inner.store;
        let (index_bytes, segments) = (
            metadata.params().index_bytes(),
            metadata.params().segment_count().max(1),
        );
        let (mut dropped, mut bytes) = (0u64, 0u64);
        for index in store.indexes(blob_id) {
            let held = store.segments_held(blob_id, index).min(segments);
            if store.remove_sliver(blob_id, index).is_ok() {
                dropped += 1;
                let share = u128::from(index_bytes) * u128::from(held) / u128::from(segments);
                bytes = bytes.saturating_add(u64::try_from(share).unwrap_or(u64::MAX));
            }
        }
        if dropped > 0 {
            let m = &self.inner.metrics;
            m.deleted_slivers_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            m.deleted_bytes_reclaimed
                .fetch_add(bytes, Ordering::Relaxed);
            tracing::info!(%blob_id, dropped, bytes, "dropped the slivers of a deleted blob");
        }
    }

    /// A peer's `DeleteRequest` (blocking).
    pub(super) fn handle_delete(&self, request: pb::DeleteRequest) -> pb::Response {
        let result = BlobId::from_slice(&request.blob_id)
            .map_err(DeleteError::from)
            .and_then(|blob_id| {
                let tokens = tokens_of(&request)?;
                self.release_here(&blob_id, &tokens)
            });
        match result {
            Ok(released) => pb::Response {
                kind: Some(pb::response::Kind::Deleted(released.answer())),
            },
            Err(error) => pb::Response {
                kind: Some(pb::response::Kind::Error(error.to_string())),
            },
        }
    }

    /// A deletion gossiped on `floe/delete/1`: applied if the blob is held here; a cached copy is forgotten
    /// either way (a cache is only a cache: a forged message costs one read from the holders).
    pub async fn on_deletion_gossip(&self, data: &[u8]) -> Result<(), DeleteError> {
        let request: pb::DeleteRequest =
            wire::decode_body(data, crate::net::MAX_GOSSIP_LEN, "DeleteRequest")?;
        let blob_id = BlobId::from_slice(&request.blob_id)?;
        let tokens = tokens_of(&request)?;
        self.inner.cache.remove(&blob_id);
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            if node.inner.store.metadata_record(&blob_id).is_err() {
                return Ok(());
            }
            node.release_here(&blob_id, &tokens).map(|_| ())
        })
        .await?
    }

    /// Deletes the claim `token` makes on a blob, for its writer: checks the token against the blob's claims,
    /// sends the release to every holder and gossips it. Idempotent.
    pub async fn delete(
        &self,
        blob_id: &BlobId,
        token: Token,
    ) -> Result<DeleteOutcome, DeleteError> {
        let (_, record) = self
            .find_record_excluding(blob_id, &[])
            .await
            .map_err(|_| DeleteError::UnknownBlob(*blob_id))?;
        // Checked before anything is sent: a wrong token or a permanent blob is refused here, with the reason.
        let mut view = record.claims.clone();
        view.release(blob_id, token)?;
        let holders: BTreeSet<PeerKey> = record.holders.iter().cloned().collect();
        let me = self.inner.peer_id.to_bytes();
        let request = delete_request(blob_id, [&token]);
        let mut asked = tokio::task::JoinSet::new();
        for holder in &holders {
            let Ok(peer) = PeerId::from_bytes(holder) else {
                continue;
            };
            let node = self.clone();
            let request = request.clone();
            let (blob_id, local) = (*blob_id, *holder == me);
            asked.spawn(async move {
                if local {
                    let node = node.clone();
                    return tokio::task::spawn_blocking(move || {
                        node.release_here(&blob_id, &[token])
                            .ok()
                            .map(ReleasedHere::answer)
                    })
                    .await
                    .ok()
                    .flatten();
                }
                let asked = pb::Request {
                    kind: Some(pb::request::Kind::Delete(request)),
                };
                match node.inner.net.request(peer, asked).await {
                    Ok(pb::Response {
                        kind: Some(pb::response::Kind::Deleted(answer)),
                    }) => Some(answer),
                    _ => None,
                }
            });
        }
        // This node's own record (a writer's, or a reader's tombstone) takes the release too.
        if !holders.contains(&me) {
            let node = self.clone();
            let id = *blob_id;
            let _ = tokio::task::spawn_blocking(move || {
                if node.inner.store.metadata_record(&id).is_ok() {
                    let _ = node.release_here(&id, &[token]);
                }
            })
            .await;
        }
        let answers: Vec<pb::DeleteAnswer> = asked.join_all().await.into_iter().flatten().collect();
        self.inner.cache.remove(blob_id);
        if let Ok(mut certificates) = self.inner.certificates.lock() {
            certificates.remove(blob_id);
        }
        let body = prost::Message::encode_to_vec(&request);
        self.inner.net.publish_deletion(body).await;
        if answers.is_empty() && !holders.is_empty() {
            return Err(DeleteError::NoHolderReached {
                holders: holders.len(),
            });
        }
        // A holder may know a claim the record found here lacks (another writer's store reached it first).
        let claims = answers
            .iter()
            .map(|a| usize::try_from(a.claims).unwrap_or(usize::MAX))
            .chain([view.count()])
            .max()
            .unwrap_or(0);
        let unreleased = answers
            .iter()
            .map(|a| usize::try_from(a.unreleased).unwrap_or(usize::MAX))
            .chain([view.unreleased()])
            .max()
            .unwrap_or(0);
        let kept_until = answers
            .iter()
            .map(|a| a.kept_until)
            .filter(|&k| k != 0)
            .chain(match view.standing(self.current_epoch()) {
                Standing::ReleasedKeptUntil(until) => Some(until),
                _ => None,
            })
            .max();
        let deleted = unreleased == 0 && kept_until.is_none();
        tracing::info!(%blob_id, deleted, unreleased, reached = answers.len(), holders = holders.len(), "deletion sent");
        Ok(DeleteOutcome {
            blob_id: *blob_id,
            deleted,
            claims,
            unreleased,
            kept_until,
            holders_reached: answers.len(),
            holders: holders.len(),
        })
    }
}
