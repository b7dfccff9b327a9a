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

    /// Asks the first `steward::REUNION_ASKED` of `asked` for their list of the blob (by digest, `lists`), then the
    /// others in rounds (`holders::Reunion::next_round`) while a newer list lacks the support to adopt it, and
    /// adopts what `holders::reunite` says. Returns the peers whose answers were settled (older, equal to or now
    /// ours, or no list) and whether anything was left unsettled (a newer list without support, or no answer).
    async fn reunite(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        current: &HolderRecord,
        asked: &[PeerKey],
    ) -> (Vec<PeerKey>, bool) {
        let shards = metadata.params().shards();
        let mut answers = ListAnswers::new(current);
        // The first `REUNION_ASKED`, then rounds of about as many as the indexes the best supported newer list
        // lacks, while no list is adopted and some answer is newer.
        let mut rest = asked;
        let mut size = steward::REUNION_ASKED;
        let (adopted, unsettled) = loop {
            let (round, later) = rest.split_at(size.min(rest.len()));
            rest = later;
            self.ask_lists(&blob_id, shards, round, &mut answers).await;
            let reunion = holders::reunite(&current.as_list(), &current.former, &answers.lists());
            let adopted = reunion
                .adopt
                .and_then(|list| answers.record(&list))
                .map(|r| r.clone().keeping_label_of(current).merged_with(current));
            if adopted.is_some() || !reunion.unsettled || rest.is_empty() {
                break (adopted, reunion.unsettled);
            }
            size = reunion.next_round;
        };
        let held = adopted.as_ref().unwrap_or(current);
        let mut settled = answers.settled.clone();
        settled.extend(answers.settled_by(held.epoch, &held.repairer).cloned());
        let unanswered = answers.unanswered;
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
        tracing::debug!(%blob_id, named = asked.len(), newer = answers.lists().len(), settled = settled.len(), unsettled, unanswered, "compared lists with former holders");
        (settled, unsettled || unanswered)
    }
}
