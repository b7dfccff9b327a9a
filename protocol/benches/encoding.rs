//! Encoding benchmarks: floe's encode+commit, verification, systematic read and worst-case decode, with bare
//! reed-solomon-simd and memcpy measured in the same run as references.
//!
//! Run: `scripts/bench-encoding.sh` (prints the table), or `cargo bench -p floe-protocol --bench encoding`.
//! Filter with `FLOE_BENCH_N=100 FLOE_BENCH_SIZES=1M` to run a part.

// A benchmark is a driver, not the core: it reads its filters from the environment (protocol/clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use floe_protocol::decoder::{Consistency, SegmentDecoder, VerifiedSliver};
use floe_protocol::encoder::{BlobEncoder, EncodedBlob};
use floe_protocol::encoding::{BlobParams, DEFAULT_SEGMENT_SIZE, EncodingType};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

const SHARDS: [u16; 4] = [12, 100, 300, 1000];
const SIZES: [(&str, usize); 3] = [("64K", 64 << 10), ("1M", 1 << 20), ("64M", 64 << 20)];

fn wanted<T: PartialEq + std::fmt::Display>(var: &str, value: T) -> bool {
    std::env::var(var).map_or(true, |list| list.split(',').any(|v| v == value.to_string()))
}

fn data(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn params(encoding: EncodingType, shards: u16, len: usize) -> BlobParams {
    BlobParams::new(encoding, shards, DEFAULT_SEGMENT_SIZE, len as u64).unwrap()
}

fn segments(params: &BlobParams, data: &[u8]) -> Vec<(u64, std::ops::Range<usize>)> {
    (0..params.segment_count())
        .map(|s| {
            let start = params.segment_offset(s) as usize;
            (s, start..start + params.segment_len(s).unwrap())
        })
        .filter(|(_, r)| r.end <= data.len())
        .collect()
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
    len: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(len as u64));
    if len >= 16 << 20 {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
    } else {
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
    }
    group
}

/// Bare reed-solomon-simd over the same segments and shard sizes floe uses, encoder reused as floe does.
fn bare_simd_encode(
    params: &BlobParams,
    data: &[u8],
    encoder: &mut Option<ReedSolomonEncoder>,
    shards: &mut Vec<Vec<u8>>,
) {
    let k = usize::from(params.source_shards());
    let n = usize::from(params.shards());
    for (segment, range) in segments(params, data) {
        let len = params.sliver_len(segment).unwrap();
        let seg = &data[range];
        shards.resize_with(k, Vec::new);
        for (i, shard) in shards.iter_mut().enumerate() {
            shard.clear();
            // The same copy floe uses, so the ratio shows floe's overhead rather than glibc's (src/copy.rs).
            floe_protocol::copy::extend(
                shard,
                &seg[(i * len).min(seg.len())..((i + 1) * len).min(seg.len())],
            );
            shard.resize(len, 0);
        }
        let enc = match &mut *encoder {
            Some(e) => {
                e.reset(k, n - k, len).unwrap();
                e
            }
            slot => slot.insert(ReedSolomonEncoder::new(k, n - k, len).unwrap()),
        };
        for shard in shards.iter() {
            enc.add_original_shard(shard).unwrap();
        }
        let result = enc.encode().unwrap();
        black_box(result.recovery(0));
    }
}

fn benches(c: &mut Criterion) {
    for (size_name, len) in SIZES {
        if !wanted("FLOE_BENCH_SIZES", size_name) {
            continue;
        }
        let blob = data(len);
        {
            let mut group = configure(c, "memcpy", len);
            let mut dst = vec![0u8; len];
            group.bench_function(BenchmarkId::from_parameter(size_name), |b| {
                b.iter(|| {
                    dst.copy_from_slice(black_box(&blob));
                    black_box(&dst);
                })
            });
        }
        {
            // BLAKE3 over the blob's bytes: the commitment hashes 3× this, a read verifies 1×.
            let mut group = configure(c, "blake3", len);
            group.bench_function(BenchmarkId::from_parameter(size_name), |b| {
                b.iter(|| black_box(floe_protocol::merkle::sliver_leaf(black_box(&blob))))
            });
        }
        for shards in SHARDS {
            if !wanted("FLOE_BENCH_N", shards) {
                continue;
            }
            let id = format!("{shards}/{size_name}");
            let simd = params(EncodingType::RsSimd, shards, len);
            // References: bare reed-solomon-simd encode and worst-case decode on the same segments.
            {
                let mut group = configure(c, "bare-rs-simd-encode", len);
                let (mut encoder, mut scratch) = (None, Vec::new());
                group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    b.iter(|| bare_simd_encode(&simd, &blob, &mut encoder, &mut scratch))
                });
            }
            {
                let encoded = EncodedBlob::encode(simd, &blob).unwrap();
                let k = simd.source_shards();
                let n = simd.shards();
                let parity: Vec<Vec<(u16, bytes::Bytes)>> = segments(&simd, &blob)
                    .iter()
                    .map(|(s, _)| {
                        (n - k..n)
                            .map(|i| (i, encoded.sliver(*s, i).unwrap().data))
                            .collect()
                    })
                    .collect();
                let mut group = configure(c, "bare-rs-simd-decode", len);
                let mut decoder: Option<ReedSolomonDecoder> = None;
                group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    b.iter(|| {
                        for (segment, slivers) in parity.iter().enumerate() {
                            let shard_len = simd.sliver_len(segment as u64).unwrap();
                            let (k, n) = (usize::from(k), usize::from(n));
                            let dec = match &mut decoder {
                                Some(d) => {
                                    d.reset(k, n - k, shard_len).unwrap();
                                    d
                                }
                                slot => slot
                                    .insert(ReedSolomonDecoder::new(k, n - k, shard_len).unwrap()),
                            };
                            for (i, data) in slivers {
                                dec.add_recovery_shard(usize::from(*i) - k, data).unwrap();
                            }
                            let result = dec.decode().unwrap();
                            black_box(result.restored_original(0));
                        }
                    })
                });
            }
            for encoding in [EncodingType::RsSimd, EncodingType::NovelPoly] {
                // novelpoly at 64 MiB takes seconds per iteration; cover it at n=100 only.
                if encoding == EncodingType::NovelPoly && len > (1 << 20) && shards != 100 {
                    continue;
                }
                let p = params(encoding, shards, len);
                let tag = format!("{}/{id}", encoding.name());
                // A long-lived encoder, as a node keeps one: buffers are reused across blobs.
                for threads in [1usize, 2] {
                    if threads == 2 && encoding == EncodingType::NovelPoly {
                        continue;
                    }
                    let name = if threads == 1 {
                        "encode+commit"
                    } else {
                        "encode+commit-2t"
                    };
                    let mut group = configure(c, name, len);
                    let mut encoder = BlobEncoder::new(p).with_hash_threads(threads);
                    group.bench_function(BenchmarkId::from_parameter(&tag), |b| {
                        b.iter(|| {
                            encoder.restart(p);
                            for (_, range) in segments(&p, &blob) {
                                black_box(encoder.encode_next(&blob[range]).unwrap().root());
                            }
                            black_box(encoder.take_metadata().unwrap().blob_id())
                        })
                    });
                }
                let encoded = EncodedBlob::encode(p, &blob).unwrap();
                let blob_id = encoded.metadata.blob_id();
                let k = p.source_shards();
                let n = p.shards();
                let pick = |indexes: std::ops::Range<u16>| -> Vec<Vec<floe_protocol::Sliver>> {
                    segments(&p, &blob)
                        .iter()
                        .map(|(s, _)| {
                            indexes
                                .clone()
                                .map(|i| encoded.sliver(*s, i).unwrap())
                                .collect()
                        })
                        .collect()
                };
                let sources = pick(0..k);
                let parity = pick(n - k..n);
                if encoding == EncodingType::RsSimd {
                    let mut group = configure(c, "verify", len);
                    group.bench_function(BenchmarkId::from_parameter(&tag), |b| {
                        b.iter(|| {
                            for slivers in &sources {
                                for sliver in slivers {
                                    black_box(sliver.verify(&blob_id).unwrap());
                                }
                            }
                        })
                    });
                }
                for (name, slivers, consistency, threads) in [
                    ("systematic-read", &sources, Consistency::SliversOnly, 1),
                    ("systematic-read-checked", &sources, Consistency::Full, 1),
                    ("worst-case-decode", &parity, Consistency::Full, 1),
                    ("worst-case-decode-2t", &parity, Consistency::Full, 2),
                ] {
                    if encoding == EncodingType::NovelPoly
                        && matches!(name, "systematic-read-checked" | "worst-case-decode-2t")
                    {
                        continue;
                    }
                    let mut group = configure(c, name, len);
                    let mut decoder = SegmentDecoder::new(p).with_hash_threads(threads);
                    group.bench_function(BenchmarkId::from_parameter(&tag), |b| {
                        b.iter(|| {
                            for (segment, slivers) in slivers.iter().enumerate() {
                                let verified: Vec<VerifiedSliver> = slivers
                                    .iter()
                                    .map(|s| VerifiedSliver::new(s.clone(), &blob_id).unwrap())
                                    .collect();
                                black_box(
                                    decoder
                                        .decode(segment as u64, &verified, consistency)
                                        .unwrap(),
                                );
                            }
                        })
                    });
                }
            }
        }
    }
}

criterion_group!(encoding, benches);
criterion_main!(encoding);
