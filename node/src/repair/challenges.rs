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
        let verdict = match self.inner.net.request(peer, request).await {
            // Unreachable is the liveness check's business, not a failed proof.
            Err(why) => {
                tracing::debug!(%peer, why, "challenge not delivered");
                return;
            }
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Challenge(answer)),
            }) => challenge.judge(&blob_id, &answer),
            // A holder too busy to answer proved nothing either way.
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) if why == crate::net::BUSY => {
                tracing::debug!(%peer, "challenged holder busy");
                return;
            }
            // Still receiving the sliver (a repair or hand-off under way): it proves nothing yet, if the answer is
            // one an honest holder can give — some first segments held, the one asked for not among them.
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) if receiving_is_plausible(&why, challenge.segment) => {
                tracing::debug!(%peer, why, "challenged holder still receiving the sliver");
                return;
            }
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Error(why)),
            }) => Err(challenge::ChallengeFailure::Refused(why)),
            Ok(_) => Err(challenge::ChallengeFailure::Refused(
                "unexpected answer".into(),
            )),
        };
        let m = &self.inner.metrics;
        let mut state = self.state();
        match verdict {
            Ok(()) => {
                m.challenges_passed.fetch_add(1, Ordering::Relaxed);
                state
                    .challenge_failures
                    .passed(&peer, &blob_id, challenge.index);
            }
            Err(why) => {
                m.challenges_failed.fetch_add(1, Ordering::Relaxed);
                let (failures, sliver_failures) = state.challenge_failures.failed(
                    &peer,
                    &blob_id,
                    challenge.index,
                    challenge.segment,
                );
                tracing::warn!(%peer, %blob_id, index = challenge.index, segment = challenge.segment, %why, failures, sliver_failures, "holder failed a storage challenge");
            }
        }
    }
}
