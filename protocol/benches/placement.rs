//! Placement and repair-planning benchmarks: the per-blob work a write (`Placement::new`) and a departure
//! (`repair::plan`) cost, at the simulator's scale point (n = 100 holders out of a neighbourhood of 100 peers,
//! a third of them gone), with one BLAKE3 derive-key hash per peer measured in the same run as the reference.
//!
//! Run: `cargo bench -p floe-protocol --bench placement`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use floe_protocol::blob_id::BlobId;
use floe_protocol::placement::{PeerKey, Placement};
use floe_protocol::repair;

const SHARDS: u16 = 100;

/// Peer keys as the simulator makes them (4 bytes); a node's are 38-byte libp2p peer IDs, which only changes
/// the cost of the hashes.
fn peers(range: std::ops::Range<u32>) -> Vec<PeerKey> {
    range.map(|id| id.to_be_bytes().to_vec()).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.measurement_time(Duration::from_secs(3));
    let id = BlobId([7; 32]);
    let neighbourhood = peers(0..u32::from(SHARDS));
    group.bench_function("reference: 100 derive-key hashes", |b| {
        b.iter(|| {
            for peer in &neighbourhood {
                black_box(
                    blake3::Hasher::new_derive_key("floe bench")
                        .update(peer)
                        .finalize(),
                );
            }
        })
    });
    group.bench_function("Placement::new n=100 over 100 peers", |b| {
        b.iter(|| Placement::new(black_box(&id), SHARDS, black_box(&neighbourhood)))
    });
    let holders = Placement::new(&id, SHARDS, &neighbourhood)
        .unwrap()
        .holder_list();
    // A third of the holders gone; the candidates are the surviving neighbourhood plus 40 fresh peers.
    let gone: BTreeSet<PeerKey> = holders.iter().step_by(3).cloned().collect();
    let candidates: Vec<PeerKey> = neighbourhood
        .iter()
        .filter(|p| !gone.contains(*p))
        .cloned()
        .chain(peers(1000..1040))
        .collect();
    group.bench_function("repair::plan n=100, 34 gone", |b| {
        b.iter(|| repair::plan(black_box(&id), &holders, &gone, &candidates))
    });
    // The same plan with fixed-size keys, as the simulator asks for it.
    let array = |key: &PeerKey| -> [u8; 4] { key.as_slice().try_into().unwrap() };
    let holders: Vec<[u8; 4]> = holders.iter().map(array).collect();
    let gone: BTreeSet<[u8; 4]> = gone.iter().map(array).collect();
    let candidates: Vec<[u8; 4]> = candidates.iter().map(array).collect();
    group.bench_function("repair::plan n=100, 34 gone, [u8; 4] keys", |b| {
        b.iter(|| repair::plan(black_box(&id), &holders, &gone, &candidates))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
