//! Departure evidence (docs/protocol.md §13, decision 0020): a repair leader asks the blob's holders which of the
//! holders it found gone are gone for them too, and sends their signed statements with its new list; holders
//! answer such requests; every peer checks the evidence a repaired list arrives with. What to sign and what a
//! list may take is `floe_protocol::departure` and `holders::evidenced`; this file asks, signs and verifies.

use std::time::Duration;

use floe_protocol::departure::{self, Statement};

use super::*;
use crate::service::PeerSignatures;

/// How long a leader waits for the holders' statements (each may challenge an accused holder first).
const ATTEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most accused holders one statement request makes this node challenge: a leader rarely names more reachable
/// ones, and a hostile one cannot make this node challenge the whole list.
const MAX_ATTEST_CHALLENGES: usize = 4;

/// A repaired list on its way to the blob's new holders, with the evidence for the holders it replaces.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    /// The new list.
    pub record: HolderRecord,
    /// Evidence that the holders it takes indexes from are gone; `None` when it takes none.
    pub departures: Option<pb::Departures>,
}

/// Why a statement request was not answered with a statement.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttestError {
    #[error("bad blob ID")]
    BlobId,
    #[error("{0}")]
    Peers(#[from] departure::DepartureError),
    #[error("a named peer is not a peer ID")]
    NotAPeer,
    #[error("no holder list of this blob here")]
    NotHeld,
    #[error("only a holder of the blob may ask")]
    NotAHolder,
    #[error("signing: {0}")]
    Sign(#[from] libp2p::identity::SigningError),
}

/// The peers `departures` proves gone against `held`, for a list of `offered_epoch` (`departure::proven`); a
/// malformed piece of evidence or statement proves nothing, and neither does any about a peer in `reached`
/// (live for this node: [`Node::reached_holders`]).
pub(crate) fn proven_departures(
    blob_id: &BlobId,
    departures: Option<&pb::Departures>,
    held: &HolderRecord,
    offered_epoch: u64,
    reached: &BTreeSet<PeerKey>,
) -> BTreeSet<PeerKey> {
    let Some(departures) = departures else {
        return BTreeSet::new();
    };
    let peers: Vec<PeerKey> = departures.peers.iter().map(|p| p.to_vec()).collect();
    if departure::check_peers(&peers).is_err() {
        return BTreeSet::new();
    }
    let digest = departure::peers_digest(&peers);
    let statements: Vec<Statement<PeerKey>> = departures
        .statements
        .iter()
        .filter_map(|s| departure::check(&PeerSignatures, blob_id, &digest, peers.len(), s).ok())
        .map(|s| Statement {
            signer: s.signer.to_bytes(),
            epoch: s.epoch,
            gone: s.gone,
        })
        .collect();
    departure::proven(
        &held.as_list(),
        offered_epoch,
        &peers,
        &statements,
        |peer| reached.contains(peer),
    )
}

fn attest_refused(error: AttestError) -> pb::Response {
    pb::Response {
        kind: Some(pb::response::Kind::Error(error.to_string())),
    }
}

impl Node {
    /// The holders of `holders` live for this node: connected now (`connected`) and not failing for the blob
    /// (challenges, an undelivered repair, a challenge asked for by a leader). No departure evidence proves one
    /// of them gone here. None when this node holds no index of `holders` (a former holder keeping the record,
    /// or a new holder receiving its first sliver): it is not asked for statements, so its own view would keep
    /// it on a list the holders left behind; it follows the statements alone.
    pub(crate) fn reached_holders(
        &self,
        blob_id: &BlobId,
        holders: &[PeerKey],
        connected: &BTreeSet<PeerId>,
    ) -> BTreeSet<PeerKey> {
        if !holders.contains(&peer_key(&self.inner.peer_id)) {
            return BTreeSet::new();
        }
        let failing = self.failing_holders(blob_id, holders);
        holders
            .iter()
            .filter(|h| !failing.contains(*h))
            .filter(|h| PeerId::from_bytes(h).is_ok_and(|p| connected.contains(&p)))
            .cloned()
            .collect()
    }

    /// Challenges `accused` (holders of `record` a repair leader named gone, reachable and not failing here,
    /// or holders this node noted as holding nothing), at most [`MAX_ATTEST_CHALLENGES`], once each on one of
    /// its listed indexes; returns those that failed, which are noted as holding nothing of the blob
    /// (`RepairState::held_nothing`); those that pass are no longer noted. A holder that keeps its
    /// connection but lost its slivers is found so by every holder the leader asks, not by the leader alone.
    pub(super) async fn challenge_accused(
        &self,
        blob_id: BlobId,
        record: &HolderRecord,
        accused: Vec<PeerKey>,
    ) -> BTreeSet<PeerKey> {
        let node = self.clone();
        let Ok(Ok((metadata, _))) =
            tokio::task::spawn_blocking(move || node.inner.store.metadata(&blob_id)).await
        else {
            return BTreeSet::new();
        };
        let segments = metadata.params().segment_count().max(1);
        let challenges = accused
            .into_iter()
            .take(MAX_ATTEST_CHALLENGES)
            .filter_map(|holder| {
                let index = record.holders.iter().position(|h| *h == holder)?;
                let peer = PeerId::from_bytes(&holder).ok()?;
                let challenge = Challenge {
                    holder,
                    index: u16::try_from(index).ok()?,
                    segment: rand::random::<u64>() % segments,
                    segments,
                    nonce: rand::random(),
                };
                Some((peer, challenge))
            })
            .map(|(peer, challenge)| {
                let node = self.clone();
                async move {
                    let request = pb::Request {
                        kind: Some(pb::request::Kind::Challenge(challenge.request(&blob_id))),
                    };
                    let response = node.inner.net.request(peer, request).await.ok();
                    let verdict = challenge.judge_response(&blob_id, response.as_ref());
                    (challenge.holder, verdict)
                }
            });
        let verdicts = futures::future::join_all(challenges).await;
        let mut failed = BTreeSet::new();
        let mut state = self.state();
        for (holder, verdict) in verdicts {
            match verdict {
                challenge::Verdict::Failed(_) => {
                    state
                        .held_nothing
                        .insert((blob_id, holder.clone()), Instant::now());
                    failed.insert(holder);
                }
                // It holds its sliver now (a later delivery or hand-off reached it): no longer noted.
                challenge::Verdict::Passed => {
                    state.held_nothing.remove(&(blob_id, holder));
                }
                challenge::Verdict::NoVerdict(_) => {}
            }
        }
        drop(state);
        if !failed.is_empty() {
            tracing::info!(%blob_id, failed = failed.len(), "holders a repair leader named gone failed our challenge");
        }
        failed
    }

    /// Signs this node's statement about `asked` for `blob_id`: which of them are gone for it, over its own
    /// list (`departure::attest`). Gone: out of reach past the grace period in its scans and not connected
    /// now, failing its challenges, or announced leaving; itself, when it holds nothing of its listed indexes.
    pub(crate) async fn attest(
        &self,
        blob_id: BlobId,
        asked: &[PeerKey],
    ) -> Result<pb::DepartureStatement, AttestError> {
        departure::check_peers(asked)?;
        if asked.iter().any(|p| PeerId::from_bytes(p).is_err()) {
            return Err(AttestError::NotAPeer);
        }
        let view = self.inner.net.view().await;
        let node = self.clone();
        let me = peer_key(&self.inner.peer_id);
        let (record, holds_nothing) = tokio::task::spawn_blocking(move || {
            let store = &node.inner.store;
            let (_, record) = store.metadata_record(&blob_id).ok()?;
            let holds_nothing = record
                .holders
                .iter()
                .enumerate()
                .filter(|(_, h)| **h == peer_key(&node.inner.peer_id))
                .filter_map(|(i, _)| u16::try_from(i).ok())
                .all(|i| store.segments_held(&blob_id, i) == 0);
            Some((record, holds_nothing))
        })
        .await
        .ok()
        .flatten()
        .ok_or(AttestError::NotHeld)?;
        let mut failing = self.failing_holders(&blob_id, &record.holders);
        // Holders named gone that this node still reaches and finds nothing wrong with: challenged first.
        let connected_now = |peer: &PeerKey| {
            PeerId::from_bytes(peer).is_ok_and(|p| view.connected_peers.contains(&p))
        };
        let accused: Vec<PeerKey> = asked
            .iter()
            .filter(|p| **p != me && record.holders.contains(p))
            .filter(|p| !failing.contains(*p) && connected_now(p))
            .cloned()
            .collect();
        if !accused.is_empty() {
            failing.extend(self.challenge_accused(blob_id, &record, accused).await);
        }
        let now = self.now();
        let gone = |peer: &PeerKey| {
            if failing.contains(peer) {
                return true;
            }
            let leaving = self
                .state()
                .departed
                .get(peer)
                .is_some_and(|at| at.elapsed() < DEPARTED_FOR);
            let connected =
                PeerId::from_bytes(peer).is_ok_and(|p| view.connected_peers.contains(&p));
            leaving || (!connected && self.state().steward.out_of_reach_past_grace(peer, now))
        };
        let bits = departure::attest(&record.holders, &me, asked, holds_nothing, gone);
        self.sign_departure(&blob_id, record.epoch, asked, bits)
    }

    fn sign_departure(
        &self,
        blob_id: &BlobId,
        epoch: u64,
        peers: &[PeerKey],
        gone: Vec<u8>,
    ) -> Result<pb::DepartureStatement, AttestError> {
        let digest = departure::peers_digest(peers);
        let signature = self
            .inner
            .sign(&departure::signing_bytes(blob_id, epoch, &digest, &gone))?;
        Ok(pb::DepartureStatement {
            epoch,
            gone: gone.into(),
            signer_public_key: self.inner.public_key().into(),
            signature: signature.into(),
        })
    }

    /// Answers a repair leader's `AttestRequest` with this node's signed statement; only a holder of the blob
    /// by this node's list may ask (the statement may cost this node challenges).
    pub(crate) async fn handle_attest(
        &self,
        from: PeerId,
        request: pb::AttestRequest,
    ) -> pb::Response {
        let Ok(blob_id) = BlobId::from_slice(&request.blob_id) else {
            return attest_refused(AttestError::BlobId);
        };
        let node = self.clone();
        let holder = tokio::task::spawn_blocking(move || {
            node.inner
                .store
                .metadata_record(&blob_id)
                .is_ok_and(|(_, record)| record.holders.contains(&from.to_bytes()))
        })
        .await
        .unwrap_or(false);
        if !holder {
            return attest_refused(AttestError::NotAHolder);
        }
        let asked: Vec<PeerKey> = request.peers.iter().map(|p| p.to_vec()).collect();
        match self.attest(blob_id, &asked).await {
            Ok(statement) => pb::Response {
                kind: Some(pb::response::Kind::Attested(statement)),
            },
            Err(error) => attest_refused(error),
        }
    }

    /// Gathers the evidence a repair of `record` needs for `departed`, the holders whose indexes its plan moves:
    /// this node's own statement and those of the blob's other holders connected now (asked at once,
    /// [`ATTEST_TIMEOUT`] at most), the departed peers themselves included (one that holds nothing lets its
    /// indexes go). Returns the
    /// evidence worth sending (`departure::enough`) and the peers it proves gone.
    pub(super) async fn gather_departures(
        &self,
        blob_id: BlobId,
        record: &HolderRecord,
        departed: &[PeerKey],
    ) -> (pb::Departures, BTreeSet<PeerKey>) {
        let me = peer_key(&self.inner.peer_id);
        // Only holders connected now: one out of reach could not answer before the timeout anyway, and waiting
        // for it would delay every repair of a departure by the timeout.
        let connected = self.inner.net.view().await.connected_peers;
        let asked: BTreeSet<PeerId> = record
            .holders
            .iter()
            .filter(|h| **h != me)
            .filter_map(|h| PeerId::from_bytes(h).ok())
            .filter(|p| connected.contains(p))
            .collect();
        let request = pb::Request {
            kind: Some(pb::request::Kind::Attest(pb::AttestRequest {
                blob_id: Bytes::copy_from_slice(blob_id.as_bytes()),
                peers: departed.iter().map(|p| Bytes::from(p.clone())).collect(),
            })),
        };
        let asks = asked.into_iter().map(|peer| {
            let (node, request) = (self.clone(), request.clone());
            async move {
                match tokio::time::timeout(ATTEST_TIMEOUT, node.inner.net.request(peer, request))
                    .await
                {
                    Ok(Ok(pb::Response {
                        kind: Some(pb::response::Kind::Attested(statement)),
                    })) => Some(statement),
                    _ => None,
                }
            }
        });
        let mut statements: Vec<pb::DepartureStatement> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        match self.attest(blob_id, departed).await {
            Ok(own) => statements.push(own),
            Err(error) => {
                tracing::warn!(%blob_id, %error, "could not sign our own departure statement")
            }
        }
        let digest = departure::peers_digest(departed);
        let verified: Vec<(usize, Statement<PeerKey>)> = statements
            .iter()
            .enumerate()
            .filter_map(|(at, s)| {
                departure::check(&PeerSignatures, &blob_id, &digest, departed.len(), s)
                    .ok()
                    .map(|v| {
                        let signer = v.signer.to_bytes();
                        (
                            at,
                            Statement {
                                signer,
                                epoch: v.epoch,
                                gone: v.gone,
                            },
                        )
                    })
            })
            .collect();
        let checked: Vec<Statement<PeerKey>> = verified.iter().map(|(_, s)| s.clone()).collect();
        let offered_epoch = record.epoch.saturating_add(1);
        let held = record.as_list();
        let reached = self.reached_holders(&blob_id, &record.holders, &connected);
        let proven = departure::proven(&held, offered_epoch, departed, &checked, |peer| {
            reached.contains(peer)
        });
        let kept = departure::enough(&held, offered_epoch, departed, &checked);
        let evidence = pb::Departures {
            peers: departed.iter().map(|p| Bytes::from(p.clone())).collect(),
            statements: kept
                .iter()
                .filter_map(|&i| verified.get(i))
                .filter_map(|(at, _)| statements.get(*at).cloned())
                .collect(),
        };
        tracing::debug!(%blob_id, departed = departed.len(), proven = proven.len(), statements = checked.len(), "gathered departure evidence");
        (evidence, proven)
    }
}
