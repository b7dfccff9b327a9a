//! Reunions: asks a blob's former holders, reachable again, which list they hold, and adopts what
//! `floe_protocol::holders::reunite` says (docs/protocol.md §13, "Reunions"). Whom to ask and when is the
//! steward's (`steward::Reunions`); this file only asks, stores and reports back.

use futures::StreamExt;

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

    /// Asks the first `steward::REUNION_ASKED` of `asked` for their record of the blob, then the others in rounds
    /// (`holders::Reunion::next_round`) while a newer list lacks the support to adopt it, and adopts what
    /// `holders::reunite` says. Returns the peers whose answers were settled (older, equal to or now ours, or no
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
        let compare = |answers: &[(PeerKey, HolderRecord)]| {
            let reunion =
                holders::reunite(&current.as_list(), &current.former, &answer_lists(answers));
            let adopted = reunion.adopt.and_then(|list| {
                answers
                    .iter()
                    .find(|(_, r)| r.as_list() == list)
                    .map(|(_, r)| r.clone().keeping_label_of(current).merged_with(current))
            });
            (adopted, reunion.unsettled, reunion.next_round)
        };
        // The first `REUNION_ASKED`, then rounds of about as many as the indexes the best supported newer list
        // lacks, while no list is adopted and some answer is newer.
        let mut rest = asked;
        let mut size = steward::REUNION_ASKED;
        let (adopted, unsettled) = loop {
            let (round, later) = rest.split_at(size.min(rest.len()));
            rest = later;
            for (peer_key, answer) in self.former_records(&blob_id, round).await {
                match answer {
                    Answer::Record(record) if check_holders(&record.holders, shards).is_ok() => {
                        answers.push((peer_key, record))
                    }
                    // A peer without a record of the blob answers none; a malformed list counts as none.
                    Answer::Record(_) | Answer::NoRecord => settled.push(peer_key),
                    Answer::None => unanswered = true,
                }
            }
            let (adopted, unsettled, next_round) = compare(&answers);
            if adopted.is_some() || !unsettled || rest.is_empty() {
                break (adopted, unsettled);
            }
            size = next_round;
        };
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
        tracing::debug!(%blob_id, named = asked.len(), answers = answers.len(), settled = settled.len(), unsettled, unanswered, "compared lists with former holders");
        (settled, unsettled || unanswered)
    }

    /// What each of `asked` answers for `blob_id`: at most `CATCH_UP_CONCURRENCY` requests at once.
    async fn former_records(&self, blob_id: &BlobId, asked: &[PeerKey]) -> Vec<(PeerKey, Answer)> {
        let requests = asked.iter().cloned().map(|peer_key| async move {
            let Ok(peer) = PeerId::from_bytes(&peer_key) else {
                return (peer_key, Answer::NoRecord);
            };
            let answer = match self
                .inner
                .net
                .request(peer, crate::service::metadata_request(blob_id))
                .await
            {
                Ok(pb::Response {
                    kind: Some(pb::response::Kind::Metadata(answer)),
                }) => answer
                    .metadata
                    .as_ref()
                    .and_then(|_| HolderRecord::from_answer(blob_id, &answer).ok())
                    .map_or(Answer::NoRecord, Answer::Record),
                // Answered, but not with a record: nothing to compare.
                Ok(_) => Answer::NoRecord,
                Err(_) => Answer::None,
            };
            (peer_key, answer)
        });
        futures::stream::iter(requests)
            .buffer_unordered(CATCH_UP_CONCURRENCY)
            .collect()
            .await
    }
}

/// A former holder's answer.
enum Answer {
    /// Its record of the blob.
    Record(HolderRecord),
    /// It answered without one, or not with a record at all.
    NoRecord,
    /// No answer.
    None,
}
