//! Reunions: asks a blob's former holders, reachable again, which list they hold, and adopts what
//! `floe_protocol::holders::reunite` says (docs/protocol.md §13, "Reunions"). Whom to ask and when is the
//! steward's (`steward::Reunions`); this file only asks, stores and reports back.

use super::*;

impl Node {
    /// Starts a comparison of `blob_id`'s list with the lists of `asked`, former holders the steward named.
    pub(super) fn spawn_reunion(
        &self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        record: HolderRecord,
        asked: Vec<PeerKey>,
    ) {
        let node = self.clone();
        tokio::spawn(async move {
            let (settled, unsettled) = node.reunite(blob_id, &metadata, &record, &asked).await;
            let now = node.now();
            node.state()
                .steward
                .handle_compared(now, blob_id, settled, unsettled);
        });
    }

    /// Asks each of `asked` for its record of the blob and adopts the list two of them agree on if it
    /// supersedes ours. Returns the peers whose answers were settled (older, equal to or now ours, or no
    /// record) and whether anything was left unsettled (a newer list without support, or no answer).
    async fn reunite(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        current: &HolderRecord,
        asked: &[PeerKey],
    ) -> (Vec<PeerKey>, bool) {
        let shards = metadata.params().shards();
        let mut answers: Vec<(PeerKey, HolderRecord)> = Vec::new();
        let mut settled: Vec<PeerKey> = Vec::new();
        let mut unanswered = false;
        for peer_key in asked {
            let Ok(peer) = PeerId::from_bytes(peer_key) else {
                settled.push(peer_key.clone());
                continue;
            };
            let request = crate::service::metadata_request(&blob_id);
            let answer = match self.inner.net.request(peer, request).await {
                Ok(pb::Response {
                    kind: Some(pb::response::Kind::Metadata(answer)),
                }) => answer,
                // Answered, but not with a record: nothing to compare.
                Ok(_) => {
                    settled.push(peer_key.clone());
                    continue;
                }
                Err(_) => {
                    unanswered = true;
                    continue;
                }
            };
            // A peer without a record of the blob answers none; a malformed list counts as none.
            let usable = answer
                .metadata
                .as_ref()
                .and_then(|_| HolderRecord::from_answer(&blob_id, &answer).ok())
                .filter(|r| check_holders(&r.holders, shards).is_ok());
            match usable {
                Some(record) => answers.push((peer_key.clone(), record)),
                None => settled.push(peer_key.clone()),
            }
        }
        let lists: Vec<_> = answers.iter().map(|(_, r)| r.as_list()).collect();
        let reunion = holders::reunite(&current.as_list(), &lists);
        let adopted = reunion.adopt.and_then(|list| {
            answers
                .iter()
                .find(|(_, r)| r.as_list() == list)
                .map(|(_, r)| r.clone().keeping_label_of(current).merged_with(current))
        });
        let held = adopted.as_ref().unwrap_or(current);
        let newer = |r: &HolderRecord| {
            holders::supersedes(r.epoch, &r.repairer, held.epoch, &held.repairer)
        };
        settled.extend(
            answers
                .iter()
                .filter(|(_, r)| !newer(r))
                .map(|(peer, _)| peer.clone()),
        );
        if let Some(record) = adopted.clone() {
            let (node, metadata) = (self.clone(), metadata.clone());
            let epoch = record.epoch;
            let stored = tokio::task::spawn_blocking(move || {
                node.inner.store.put_record(&metadata, &record)
            })
            .await;
            match stored {
                Ok(Ok(true)) => {
                    let m = &self.inner.metrics;
                    m.holder_lists_adopted.fetch_add(1, Ordering::Relaxed);
                    m.reunions_adopted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%blob_id, epoch, "adopted the list former holders agree on");
                }
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%blob_id, %error, "could not store the list former holders agree on");
                    return (settled, true);
                }
                Err(_) => return (settled, true),
            }
        }
        self.inner.metrics.reunions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%blob_id, asked = asked.len(), settled = settled.len(), unsettled = reunion.unsettled, unanswered, "compared lists with former holders");
        (settled, reunion.unsettled || unanswered)
    }
}
