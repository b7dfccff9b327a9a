//! Passing a deletion on: each scan, a holder of a deleted blob's record (its tombstone) sends the released
//! tokens to the next holders in list order that are connected now (`deletion::pass_on_to`) and have not
//! acknowledged them, so a holder that was down or cut off when the blob was deleted drops its slivers within a
//! scan of coming back.
//!
//! Acknowledgements are kept in memory only: after a restart a tombstone is passed on once more, and answered at
//! once (releasing is idempotent). A deletion costs about `deletion::PASS_ON_REACH · n` messages across the
//! holders, and a holder that never returns costs nothing (it is never connected).

use super::*;
use crate::service::delete_request;

impl Node {
    /// Sends a deleted blob's released tokens to its holders that have not acknowledged them, if connected.
    pub(super) fn pass_on_deletion(
        &self,
        blob_id: BlobId,
        record: &HolderRecord,
        connected: impl Fn(&PeerKey) -> bool,
    ) {
        let me = peer_key(&self.inner.peer_id);
        let due: BTreeSet<PeerKey> = {
            let state = self.state();
            let acked = state.deletion_acks.get(&blob_id);
            floe_protocol::deletion::pass_on_to(&record.holders, &me, |h| *h != me && connected(h))
                .into_iter()
                .filter(|h| acked.is_none_or(|a| !a.contains(h)))
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let request = delete_request(&blob_id, record.claims.released());
        for holder in due {
            let Ok(peer) = PeerId::from_bytes(&holder) else {
                continue;
            };
            let (node, request) = (self.clone(), request.clone());
            tokio::spawn(async move {
                let asked = pb::Request {
                    kind: Some(pb::request::Kind::Delete(request)),
                };
                // Any answer but "busy" settles it: the holder released, or has nothing the tokens release.
                let answered = matches!(
                    node.inner.net.request(peer, asked).await,
                    Ok(pb::Response { kind: Some(kind) }) if !matches!(kind, pb::response::Kind::Busy(_))
                );
                if answered {
                    node.inner
                        .metrics
                        .deletions_passed_on
                        .fetch_add(1, Ordering::Relaxed);
                    node.state()
                        .deletion_acks
                        .entry(blob_id)
                        .or_default()
                        .insert(holder);
                }
            });
        }
    }
}
