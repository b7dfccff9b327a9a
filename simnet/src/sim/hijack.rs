//! List hijacks (`byzantine.behaviour = "hijack"`, scenario `list-hijack`): a byzantine holder withholds its
//! slivers and, at every scan of a blob it holds, announces a list giving every honest holder's index to
//! itself, with departure statements from every byzantine holder of the blob naming each honest holder gone.
//! Each live honest holder judges it by the node's rule (`departure::proven` with what it reaches now,
//! `holders::evidenced`, docs/protocol.md §13). The simulator keeps one list per blob: if any honest holder
//! would adopt the forged list, it replaces the blob's list and every honest index goes to the hijacker (which
//! withholds it), the worst case for the rule.

use floe_protocol::departure::{self, Statement};

use super::stewarding::SimPeer;
use super::*;

impl Sim {
    /// One hijack attempt by `node` on blob `b`.
    pub(super) fn hijack(&mut self, b: u32, node: u32) {
        let bi = ix(b);
        if self.blobs[bi].status != Status::Certified {
            return;
        }
        let byzantine = |sim: &Sim, h: u32| sim.nodes[ix(h)].byzantine.is_some();
        let holders: Vec<SimPeer> = self.blobs[bi]
            .holders
            .iter()
            .map(|&h| SimPeer::of(h))
            .collect();
        let mut honest: Vec<SimPeer> = holders
            .iter()
            .copied()
            .filter(|h| h.node() != NO_NODE && !byzantine(self, h.node()))
            .collect();
        honest.sort_unstable();
        honest.dedup();
        if honest.is_empty() || !holders.contains(&SimPeer::of(node)) {
            return;
        }
        let mut accomplices: Vec<SimPeer> = holders
            .iter()
            .copied()
            .filter(|h| h.node() != NO_NODE && byzantine(self, h.node()))
            .collect();
        accomplices.sort_unstable();
        accomplices.dedup();
        let epoch = u64::from(self.blobs[bi].epoch);
        let statements: Vec<Statement<SimPeer>> = accomplices
            .iter()
            .map(|&signer| Statement {
                signer,
                epoch,
                gone: departure::bitmap(honest.len(), |_| true),
            })
            .collect();
        let me = SimPeer::of(node);
        let forged: Vec<SimPeer> = holders
            .iter()
            .map(|h| if honest.contains(h) { me } else { *h })
            .collect();
        let repairer = SimPeer::of(self.blobs[bi].repairer);
        let held = holders::List {
            holders: &holders,
            epoch,
            repairer: repairer.as_ref(),
        };
        let offered = holders::List {
            holders: &forged,
            epoch: epoch + 1,
            repairer: me.as_ref(),
        };
        self.s.forged_lists_announced += 1;
        // The statements are the same for every judge: what they prove before each judge's own view.
        let by_statements = departure::proven(&held, epoch + 1, &honest, &statements, |_| false);
        if holders::evidenced(&held, &offered, &by_statements).is_err() {
            self.s.forged_lists_refused += 1;
            return;
        }
        // The byzantine holders hold k indexes or more: their statements alone would do. Each live honest holder
        // still judges with what it reaches now (`departure::proven`'s `reached`): the list counts as adopted
        // if one of them would take it.
        self.s.forged_lists_stopped_by_reach += 1;
        let adopted_somewhere = honest.iter().any(|judge| {
            self.nodes[ix(judge.node())].alive && {
                let proven: BTreeSet<SimPeer> = by_statements
                    .iter()
                    .copied()
                    .filter(|peer| {
                        *peer != *judge
                            && self.out_of_reach_since(judge.node(), peer.node()).is_some()
                    })
                    .collect();
                holders::evidenced(&held, &offered, &proven).is_ok()
            }
        });
        if !adopted_somewhere {
            self.s.forged_lists_refused += 1;
            return;
        }
        self.s.forged_lists_stopped_by_reach -= 1;
        self.s.forged_lists_adopted += 1;
        for (index, was) in holders.iter().enumerate() {
            if honest.contains(was)
                && let Ok(index) = u16::try_from(index)
            {
                self.slot_change(b, index, node, GOOD);
            }
        }
        let blob = &mut self.blobs[bi];
        blob.epoch = blob.epoch.saturating_add(1);
        blob.repairer = node;
        blob.list_version += 1;
    }
}
