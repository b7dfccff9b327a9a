//! Storage challenges: this node, as a blob's leader or deputy, asks holders for random segments and tallies
//! the answers with `floe_protocol::challenge`'s rules.

use super::*;

impl Node {
    /// Runs one round of challenges (`challenge::round`) for a blob, as `role`, and counts each outcome for its
    /// holder.
    pub(super) async fn challenge(
        &self,
        blob_id: BlobId,
        record: HolderRecord,
        gone: BTreeSet<PeerKey>,
        role: Role,
    ) {
        let me = peer_key(&self.inner.peer_id);
        let node = self.clone();
        let Ok(Ok((metadata, _))) =
            tokio::task::spawn_blocking(move || node.inner.store.metadata(&blob_id)).await
        else {
            return;
        };
        let segments = metadata.params().segment_count();
        let suspects = self
            .state()
            .challenge_failures
            .suspects(&blob_id, holder_at(&record.holders));
        let round = challenge::round(
            &record.holders,
            &gone,
            &me,
            &role,
            segments,
            &suspects,
            rand::random(),
        );
        for challenge in round {
            let Ok(peer) = PeerId::from_bytes(&challenge.holder) else {
                continue;
            };
            self.challenge_one(blob_id, &challenge, peer).await;
        }
    }

    pub(super) async fn challenge_one(&self, blob_id: BlobId, challenge: &Challenge, peer: PeerId) {
        let request = pb::Request {
            kind: Some(pb::request::Kind::Challenge(challenge.request(&blob_id))),
        };
        let response = match self.inner.net.request(peer, request).await {
            Ok(response) => Some(response),
            Err(why) => {
                tracing::debug!(%peer, %why, "challenge not delivered");
                None
            }
        };
        let verdict = challenge.judge_response(&blob_id, response.as_ref());
        let threshold = self.inner.repair.challenge_failures;
        let m = &self.inner.metrics;
        let recorded = self
            .state()
            .challenge_failures
            .record(&peer, &blob_id, challenge, &verdict, threshold);
        match (recorded, verdict) {
            (Recorded::Passed, _) => {
                m.challenges_passed.fetch_add(1, Ordering::Relaxed);
            }
            (
                Recorded::Failed {
                    failures,
                    sliver_failures,
                    ..
                },
                Verdict::Failed(why),
            ) => {
                m.challenges_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, %blob_id, index = challenge.index, segment = challenge.segment, %why, failures, sliver_failures, "holder failed a storage challenge");
            }
            (_, verdict) => {
                tracing::debug!(%peer, %blob_id, ?verdict, "challenge proved nothing");
            }
        }
    }
}
