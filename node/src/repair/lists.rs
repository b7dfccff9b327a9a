//! Asking peers which list they hold for a blob, as catch-ups and reunions do: each asked peer answers the list's
//! digest (`holders::digest`) with its epoch and repairer, and each distinct list newer than the held one is
//! fetched whole once, from a peer that answered it, and checked against its digest (docs/protocol.md §13, "List
//! digests"). Hundreds of answers then cost about 100 bytes each rather than a record naming n peers. What the
//! answers come to is the protocol's (`holders::caught_up`, `holders::reunite`); this file only asks and sorts.

use futures::StreamExt;

use super::*;

/// What peers answered for a blob's list, each newer list resolved to a whole record.
pub(super) struct ListAnswers {
    /// Whole records by digest: the held one, and each newer one fetched.
    records: BTreeMap<[u8; 32], HolderRecord>,
    /// The held list's epoch and repairer: what "newer" is measured against.
    held: (u64, Vec<u8>),
    /// Peers whose list is newer than the held one, with its digest (a key of `records`).
    newer: Vec<(PeerKey, [u8; 32])>,
    /// Peers that answered a list not newer than the held one, no list, or a list that did not match the
    /// digest it answered.
    pub(super) settled: Vec<PeerKey>,
    /// Some asked peer did not answer.
    pub(super) unanswered: bool,
}

/// One peer's answer to a digest request.
enum Digest {
    /// The digest of its list, with the list's epoch and repairer.
    Of {
        digest: [u8; 32],
        epoch: u64,
        repairer: Vec<u8>,
    },
    /// An answer carrying the whole record (a peer that does not answer digests).
    Whole(Box<HolderRecord>),
    /// It holds no list of the blob, or answered something else.
    NoList,
    /// No answer.
    None,
}

impl ListAnswers {
    /// No answers yet; `current` is the list held.
    pub(super) fn new(current: &HolderRecord) -> Self {
        Self {
            records: BTreeMap::from([(current.digest(), current.clone())]),
            held: (current.epoch, current.repairer.clone()),
            newer: Vec::new(),
            settled: Vec::new(),
            unanswered: false,
        }
    }

    /// Whether some peer answered a list newer than the held one.
    pub(super) fn any_newer(&self) -> bool {
        !self.newer.is_empty()
    }

    /// The newer lists answered, each with the peer that answered it, as the protocol weighs them.
    pub(super) fn lists(&self) -> Vec<(&PeerKey, holders::List<'_, PeerKey>)> {
        self.newer
            .iter()
            .filter_map(|(peer, digest)| Some((peer, self.records.get(digest)?.as_list())))
            .collect()
    }

    /// The whole record of an answered list.
    pub(super) fn record(&self, list: &holders::List<'_, PeerKey>) -> Option<&HolderRecord> {
        self.records.values().find(|r| r.as_list() == *list)
    }

    /// Peers that answered a newer list which is not newer than (`epoch`, `repairer`), the list held after
    /// the answers were weighed: settled.
    pub(super) fn settled_by(&self, epoch: u64, repairer: &[u8]) -> impl Iterator<Item = &PeerKey> {
        self.newer
            .iter()
            .filter(move |(_, digest)| {
                self.records
                    .get(digest)
                    .is_some_and(|r| !holders::supersedes(r.epoch, &r.repairer, epoch, repairer))
            })
            .map(|(peer, _)| peer)
    }

    fn is_newer(&self, epoch: u64, repairer: &[u8]) -> bool {
        holders::supersedes(epoch, repairer, self.held.0, &self.held.1)
    }
}

impl Node {
    /// Asks each of `asked` for its list of `blob_id` by digest (at most `CATCH_UP_CONCURRENCY` at once), then
    /// fetches each newer list not seen yet from a peer that answered it, and adds what they said to `answers`.
    /// Lists of another length than `shards`, malformed ones and ones that do not match their digest count as
    /// no list.
    pub(super) async fn ask_lists(
        &self,
        blob_id: &BlobId,
        shards: u16,
        asked: &[PeerKey],
        answers: &mut ListAnswers,
    ) {
        let requests = asked.iter().cloned().map(|peer_key| async move {
            let answer = match PeerId::from_bytes(&peer_key) {
                Ok(peer) => self.ask_digest(peer, blob_id).await,
                Err(_) => Digest::NoList,
            };
            (peer_key, answer)
        });
        let replies: Vec<(PeerKey, Digest)> = futures::stream::iter(requests)
            .buffer_unordered(CATCH_UP_CONCURRENCY)
            .collect()
            .await;
        // Newer digests not seen yet, each with the peers that answered it, in order of first answer.
        let mut to_fetch: Vec<([u8; 32], Vec<PeerKey>)> = Vec::new();
        for (peer, reply) in replies {
            match reply {
                Digest::Of {
                    digest,
                    epoch,
                    repairer,
                } if answers.is_newer(epoch, &repairer) => {
                    if answers.records.contains_key(&digest) {
                        answers.newer.push((peer, digest));
                    } else if let Some((_, peers)) = to_fetch.iter_mut().find(|(d, _)| *d == digest)
                    {
                        peers.push(peer);
                    } else {
                        to_fetch.push((digest, vec![peer]));
                    }
                }
                Digest::Whole(record)
                    if check_holders(&record.holders, shards).is_ok()
                        && answers.is_newer(record.epoch, &record.repairer) =>
                {
                    let digest = record.digest();
                    answers.records.entry(digest).or_insert(*record);
                    answers.newer.push((peer, digest));
                }
                Digest::None => answers.unanswered = true,
                Digest::Of { .. } | Digest::Whole(_) | Digest::NoList => answers.settled.push(peer),
            }
        }
        for (digest, peers) in to_fetch {
            let mut fetched = false;
            for peer in peers {
                if !fetched {
                    match self.fetch_list(&peer, blob_id, shards, &digest).await {
                        Some(record) => {
                            answers.records.insert(digest, record);
                            fetched = true;
                        }
                        // It answered a digest it cannot back with a list: its say counts for nothing.
                        None => {
                            answers.settled.push(peer);
                            continue;
                        }
                    }
                }
                answers.newer.push((peer, digest));
            }
        }
    }

    /// What `peer` answers when asked for its list of `blob_id` by digest.
    async fn ask_digest(&self, peer: PeerId, blob_id: &BlobId) -> Digest {
        let answer = match self
            .inner
            .net
            .request(peer, crate::service::list_digest_request(blob_id))
            .await
        {
            Ok(pb::Response {
                kind: Some(pb::response::Kind::Metadata(answer)),
            }) => answer,
            Ok(_) => return Digest::NoList,
            Err(_) => return Digest::None,
        };
        if let Ok(digest) = <[u8; 32]>::try_from(answer.holders_digest.as_ref()) {
            return Digest::Of {
                digest,
                epoch: answer.holders_epoch,
                repairer: answer.holders_repairer.to_vec(),
            };
        }
        match answer.metadata {
            Some(_) => HolderRecord::from_answer(blob_id, &answer)
                .map_or(Digest::NoList, |record| Digest::Whole(Box::new(record))),
            None => Digest::NoList,
        }
    }

    /// `peer`'s whole record of `blob_id`, if its list is well formed, of `shards` entries and matches `digest`.
    async fn fetch_list(
        &self,
        peer_key: &PeerKey,
        blob_id: &BlobId,
        shards: u16,
        digest: &[u8; 32],
    ) -> Option<HolderRecord> {
        let peer = PeerId::from_bytes(peer_key).ok()?;
        let answer = self.ask_metadata(peer, blob_id).await?;
        answer.metadata.as_ref()?;
        let record = HolderRecord::from_answer(blob_id, &answer).ok()?;
        (check_holders(&record.holders, shards).is_ok() && record.digest() == *digest)
            .then_some(record)
    }
}
