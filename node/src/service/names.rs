//! Names at this node (`floe_protocol::name`): keeping the records of names whose neighbourhood includes this
//! node (a peer's put or get), publishing an owner's signed record to a name's neighbourhood, resolving a name by
//! asking it, and passing records on to neighbourhood peers that have not confirmed them (each scan).
//!
//! Which record wins is the protocol's rule and the compare-and-replace is the store's; this module moves
//! records between them and the network. It never signs: owners sign with keys this node does not see.

use super::inbound::error_response;
use super::*;
use crate::store::StoreError;
use floe_protocol::name::{self, Keep, NAME_REPLICAS, Name, NameError, NameKeys, NameRecord};

/// ed25519 public keys as names' signature scheme.
pub struct NameSignatures;

impl NameKeys for NameSignatures {
    fn verifies(&self, name: &Name, message: &[u8], signature: &[u8; name::SIGNATURE_LEN]) -> bool {
        libp2p::identity::ed25519::PublicKey::try_from_bytes(name.as_bytes())
            .is_ok_and(|key| key.verify(message, signature))
    }
}

/// Why publishing or resolving a name failed.
#[derive(Debug, thiserror::Error)]
pub enum NameServiceError {
    /// A malformed or forged record.
    #[error("{0}")]
    Invalid(#[from] NameError),
    /// No peer asked keeps a record of the name.
    #[error("no peer keeps a record of name {0}")]
    Unknown(Name),
    /// The name's neighbourhood keeps a record that supersedes the one offered.
    #[error(
        "name {name} is at sequence {kept}; a new record needs a higher sequence than that (this one has \
         {offered})"
    )]
    Stale {
        /// The name.
        name: Name,
        /// The sequence kept.
        kept: u64,
        /// The sequence offered.
        offered: u64,
    },
    /// None of the name's neighbourhood answered.
    #[error("none of the {asked} peers closest to the name answered; try again")]
    NoneReached {
        /// Peers asked.
        asked: usize,
    },
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking task did not finish (the node is shutting down).
    #[error("name task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What publishing a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePublished {
    /// The record, as kept.
    pub record: NameRecord,
    /// Peers of the name's neighbourhood that keep it now, of `asked`.
    pub kept_by: usize,
    /// Peers asked (the neighbourhood by this node's view, itself included when it is in it).
    pub asked: usize,
}

/// Records this node passed on, and to whom: a peer that confirmed a record (or a greater one) is not sent it
/// again. In memory: after a restart every record goes out once more, which is cheap.
#[derive(Debug, Default)]
pub(crate) struct NamesPassed(BTreeMap<Name, (u64, BTreeSet<PeerId>)>);

fn name_answer(record: Option<&NameRecord>) -> pb::Response {
    pb::Response {
        kind: Some(pb::response::Kind::Name(pb::NameAnswer {
            record: record.map(NameRecord::to_wire),
        })),
    }
}

/// The record a peer answered with, checked to be of `name`; `None` if it keeps none or answered otherwise.
fn answered_record(name: &Name, response: pb::Response) -> Option<NameRecord> {
    match response.kind {
        Some(pb::response::Kind::Name(pb::NameAnswer {
            record: Some(record),
        })) => match NameRecord::from_wire_for(name, &record, &NameSignatures) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::debug!(%name, %error, "a peer answered a name with a bad record");
                None
            }
        },
        _ => None,
    }
}

impl Node {
    /// The peers that keep `name`'s record by this node's view: the [`NAME_REPLICAS`] closest to it.
    async fn name_neighbourhood(&self, name: &Name) -> Vec<PeerId> {
        let replicas = u16::try_from(NAME_REPLICAS).unwrap_or(u16::MAX);
        let mut peers = self.neighbourhood(&name.location(), replicas).await;
        peers.truncate(NAME_REPLICAS);
        peers
    }

    /// Why this node does not keep `record`'s name, if it does not: by its view it is not among the peers that keep
    /// it (`name::keeps_at`). A malformed record passes here and is refused by [`Self::handle_put_name`].
    pub(super) async fn name_outside_view(&self, record: &pb::NameRecord) -> Option<String> {
        let name = Name::from_slice(&record.name).ok()?;
        let view = self.inner.net.view().await;
        let replicas = u16::try_from(NAME_REPLICAS).unwrap_or(u16::MAX);
        let order = neighbourhood_in(&view, &self.inner.peer_id, &name.location(), replicas);
        let position = order.iter().position(|p| *p == self.inner.peer_id)?;
        (!name::keeps_at(position)).then(|| {
            format!(
                "not keeping records of name {name}: by my view of {} peers I am {} from it, and only the {} \
                 closest keep it",
                order.len(),
                position + 1,
                name::KEEP_WITHIN
            )
        })
    }

    /// A peer's `NameRecord` put (blocking): kept if it supersedes the record kept here; answered with the
    /// record kept afterwards. Whether this node is near enough the name to keep it was checked before.
    pub(super) fn handle_put_name(&self, record: pb::NameRecord) -> pb::Response {
        let result = NameRecord::from_wire(&record, &NameSignatures)
            .map_err(NameServiceError::from)
            .and_then(|offered| self.keep_here(&offered).map_err(NameServiceError::from));
        match result {
            Ok((kept, _)) => name_answer(Some(&kept)),
            Err(error) => error_response(error.to_string()),
        }
    }

    /// A peer's `GetName` (blocking).
    pub(super) fn handle_get_name(&self, request: pb::GetName) -> pb::Response {
        match Name::from_slice(&request.name) {
            Ok(name) => match self.inner.store.name_record(&name, &NameSignatures) {
                Ok(kept) => name_answer(kept.as_ref()),
                Err(error) => error_response(error.to_string()),
            },
            Err(error) => error_response(error.to_string()),
        }
    }

    fn keep_here(&self, offered: &NameRecord) -> Result<(NameRecord, Keep), StoreError> {
        let outcome = self
            .inner
            .store
            .keep_name_record(offered, &NameSignatures)?;
        if outcome.1 == Keep::Replace {
            self.inner
                .metrics
                .names_kept
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(name = %offered.name, sequence = offered.sequence, site = %offered.site_id, "keeping a name record");
        }
        Ok(outcome)
    }

    /// Offers `record` to `peer` (this node's own store when it is `me`); the record it keeps afterwards.
    async fn offer_name(&self, peer: PeerId, record: NameRecord) -> Option<NameRecord> {
        if peer == self.inner.peer_id {
            let node = self.clone();
            return tokio::task::spawn_blocking(move || node.keep_here(&record).ok())
                .await
                .ok()
                .flatten()
                .map(|(kept, _)| kept);
        }
        let name = record.name;
        let request = pb::Request {
            kind: Some(pb::request::Kind::PutName(record.to_wire())),
        };
        let response = self.inner.net.request(peer, request).await.ok()?;
        answered_record(&name, response)
    }

    /// Asks `peer` (or this node's store) for its record of `name`.
    async fn ask_name(&self, peer: PeerId, name: Name) -> Option<NameRecord> {
        if peer == self.inner.peer_id {
            let node = self.clone();
            return tokio::task::spawn_blocking(move || {
                node.inner.store.name_record(&name, &NameSignatures)
            })
            .await
            .ok()?
            .ok()
            .flatten();
        }
        let request = pb::Request {
            kind: Some(pb::request::Kind::GetName(pb::GetName {
                name: Bytes::copy_from_slice(name.as_bytes()),
            })),
        };
        let response = self.inner.net.request(peer, request).await.ok()?;
        answered_record(&name, response)
    }

    /// Publishes an owner's signed record to the name's neighbourhood. Refused if a peer there keeps a record
    /// that supersedes it (the owner must sign a higher sequence), or if no peer answered.
    pub async fn publish_name(
        &self,
        record: &pb::NameRecord,
    ) -> Result<NamePublished, NameServiceError> {
        let record = NameRecord::from_wire(record, &NameSignatures)?;
        let peers = self.name_neighbourhood(&record.name).await;
        let mut asked = tokio::task::JoinSet::new();
        for peer in peers.iter().copied() {
            let (node, record) = (self.clone(), record.clone());
            asked.spawn(async move { node.offer_name(peer, record).await });
        }
        let (mut kept_by, mut greatest): (usize, Option<NameRecord>) = (0, None);
        while let Some(answer) = asked.join_next().await {
            let Ok(Some(kept)) = answer else { continue };
            if kept == record {
                kept_by += 1;
            } else if kept.supersedes(&record)
                && greatest.as_ref().is_none_or(|g| kept.supersedes(g))
            {
                greatest = Some(kept);
            }
        }
        if let Some(kept) = greatest {
            return Err(NameServiceError::Stale {
                name: record.name,
                kept: kept.sequence,
                offered: record.sequence,
            });
        }
        if kept_by == 0 {
            return Err(NameServiceError::NoneReached { asked: peers.len() });
        }
        self.note_passed(&record, &[]);
        Ok(NamePublished {
            record,
            kept_by,
            asked: peers.len(),
        })
    }

    /// The record a name points by now: the greatest its neighbourhood answers with (`name::best`). Peers that
    /// answered with an older record or none are sent the greatest (read repair), without waiting.
    pub async fn resolve_name(&self, name: &Name) -> Result<NameRecord, NameServiceError> {
        let peers = self.name_neighbourhood(name).await;
        let mut asked = tokio::task::JoinSet::new();
        for peer in peers.iter().copied() {
            let (node, name) = (self.clone(), *name);
            asked.spawn(async move { (peer, node.ask_name(peer, name).await) });
        }
        let mut answers: Vec<(PeerId, Option<NameRecord>)> = Vec::new();
        while let Some(answer) = asked.join_next().await {
            if let Ok(answer) = answer {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|(peer, _)| *peer);
        let Some(best) = name::best(answers.iter().filter_map(|(_, r)| r.as_ref())).cloned() else {
            return Err(NameServiceError::Unknown(*name));
        };
        let behind: Vec<PeerId> = answers
            .iter()
            .filter(|(_, r)| r.as_ref() != Some(&best))
            .map(|(peer, _)| *peer)
            .collect();
        if !behind.is_empty() {
            let node = self.clone();
            let record = best.clone();
            tokio::spawn(async move {
                for peer in behind {
                    node.offer_name(peer, record.clone()).await;
                }
            });
        }
        Ok(best)
    }

    /// Remembers that `peers` keep `record` (or a greater one).
    fn note_passed(&self, record: &NameRecord, peers: &[PeerId]) {
        let mut passed = self
            .inner
            .names_passed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = passed
            .0
            .entry(record.name)
            .or_insert_with(|| (record.sequence, BTreeSet::new()));
        if entry.0 != record.sequence {
            *entry = (record.sequence, BTreeSet::new());
        }
        entry.1.extend(peers.iter().copied());
    }

    /// Once per scan: forgets expired records, and sends each record kept here to the peers of its name's
    /// neighbourhood that have not confirmed it, so a name outlives the peers that first kept it.
    pub(crate) async fn pass_on_names(&self) {
        let node = self.clone();
        let epoch = self.current_epoch();
        let Ok(Ok(records)) = tokio::task::spawn_blocking(move || {
            let store = &node.inner.store;
            let records = store.name_records(&NameSignatures)?;
            let (ended, live): (Vec<_>, Vec<_>) =
                records.into_iter().partition(|r| r.is_expired(epoch));
            for record in &ended {
                store.forget_name_record(record, &NameSignatures)?;
                tracing::info!(name = %record.name, end_epoch = record.end_epoch, "forgot an expired name record");
            }
            Ok::<_, StoreError>(live)
        })
        .await
        else {
            return;
        };
        {
            let kept: BTreeSet<Name> = records.iter().map(|r| r.name).collect();
            let mut passed = self
                .inner
                .names_passed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            passed.0.retain(|name, _| kept.contains(name));
        }
        for record in records {
            let confirmed = {
                let passed = self
                    .inner
                    .names_passed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                passed
                    .0
                    .get(&record.name)
                    .filter(|(sequence, _)| *sequence == record.sequence)
                    .map(|(_, peers)| peers.clone())
                    .unwrap_or_default()
            };
            let to: Vec<PeerId> = self
                .name_neighbourhood(&record.name)
                .await
                .into_iter()
                .filter(|p| *p != self.inner.peer_id && !confirmed.contains(p))
                .collect();
            let mut confirmed_now = Vec::new();
            for peer in to {
                let Some(kept) = self.offer_name(peer, record.clone()).await else {
                    continue;
                };
                if kept == record || kept.supersedes(&record) {
                    confirmed_now.push(peer);
                    self.inner
                        .metrics
                        .names_passed_on
                        .fetch_add(1, Ordering::Relaxed);
                }
                if kept.supersedes(&record) {
                    // A newer record exists: keep it here too, so this node stops offering the old one.
                    let node = self.clone();
                    let _ = tokio::task::spawn_blocking(move || node.keep_here(&kept)).await;
                }
            }
            self.note_passed(&record, &confirmed_now);
        }
    }
}
