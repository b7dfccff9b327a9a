//! The simulator's events, and the compact description of each that goes into the run's trace hash.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Ev {
    Sample,
    WriteStart(u32),
    ReadArrival,
    /// Blob b's holders drop it: its end epoch and the grace epoch are over.
    Expire(u32),
    /// Blob b's writer deletes it (`workload.delete_fraction`).
    Delete(u32),
    /// A tombstone's pass-on reaches a holder that was down when the blob was deleted.
    DeletionReaches {
        blob: u32,
        node: u32,
    },
    LookupDone(OpRef),
    Timer(OpRef),
    RebuildDone(OpRef),
    Msg(Msg),
    CrashFault(u16),
    Restart(u32),
    DepartureCheck {
        node: u32,
        incarnation: u32,
    },
    ChurnArrival,
    ChurnDeparture(u32),
    PartitionStart(u16),
    PartitionCheck(u16),
    PartitionEnd(u16),
    OutageStart(u16),
    OutageEnd(u16),
    Reevaluate(u32),
    BitRot,
    ChallengeRound(u32),
    /// Every live holder of divided blob b holds one list: its sides' versions merge (`sim::sides`).
    Reunite(u32),
}

impl Ev {
    /// A compact, complete description for the trace hash.
    pub(super) fn words(&self) -> (u8, u64, u64, u64) {
        match *self {
            Ev::Sample => (0, 0, 0, 0),
            Ev::WriteStart(b) => (1, b.into(), 0, 0),
            Ev::ReadArrival => (2, 0, 0, 0),
            Ev::LookupDone(r) => (3, r.word(), 0, 0),
            Ev::Timer(r) => (4, r.word(), 0, 0),
            Ev::RebuildDone(r) => (5, r.word(), 0, 0),
            Ev::Msg(m) => (
                6 + m.kind.code(),
                (u64::from(m.from) << 32) | u64::from(m.to),
                (u64::from(m.blob) << 32) | (u64::from(m.index) << 16) | u64::from(m.attempt),
                (u64::from(m.epoch) << 1) | u64::from(m.valid) | (m.op.word() << 33),
            ),
            Ev::CrashFault(i) => (20, i.into(), 0, 0),
            Ev::Restart(n) => (21, n.into(), 0, 0),
            Ev::DepartureCheck { node, incarnation } => (22, node.into(), incarnation.into(), 0),
            Ev::ChurnArrival => (23, 0, 0, 0),
            Ev::ChurnDeparture(n) => (24, n.into(), 0, 0),
            Ev::PartitionStart(i) => (25, i.into(), 0, 0),
            Ev::PartitionCheck(i) => (26, i.into(), 0, 0),
            Ev::PartitionEnd(i) => (27, i.into(), 0, 0),
            Ev::OutageStart(i) => (28, i.into(), 0, 0),
            Ev::OutageEnd(i) => (29, i.into(), 0, 0),
            Ev::Reevaluate(b) => (30, b.into(), 0, 0),
            Ev::BitRot => (31, 0, 0, 0),
            Ev::ChallengeRound(b) => (32, b.into(), 0, 0),
            Ev::Expire(b) => (33, b.into(), 0, 0),
            Ev::Delete(b) => (34, b.into(), 0, 0),
            Ev::DeletionReaches { blob, node } => (35, blob.into(), node.into(), 0),
            Ev::Reunite(b) => (36, b.into(), 0, 0),
        }
    }
}
