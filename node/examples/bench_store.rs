//! The sliver store's benchmark: durable write throughput, disk use under turnover, peak RSS, reopen time, and
//! kill -9 survival, with the disk's own durable write speed measured in the same run as the reference.
//!
//! ```text
//! bench_store turnover DIR [LIVE_MIB] [ROUNDS] [WRITERS]   # fill, then ROUNDS × (delete a random half, refill)
//! bench_store crash-writer DIR                             # writes until killed; prints each acknowledged sliver
//! bench_store crash-verify DIR ACKS                        # every sliver listed in ACKS reads back verified
//! ```
//!
//! Records are real slivers (1 MiB blobs, n = 12, so 256 KiB per sliver) stored as the node stores them: the
//! blob's record and one sliver index per call, from several writer threads, so group commit works as it does
//! under concurrent store requests. `scripts/bench-store.sh` runs it at two data sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use floe_node::store::{HolderRecord, Store, StoreConfig};
use floe_protocol::encoder::EncodedBlob;
use floe_protocol::encoding::{DEFAULT_SEGMENT_SIZE, EncodingType};
use floe_protocol::{BlobId, BlobMetadata, BlobParams, Sliver};

const SHARDS: u16 = 12;
const BLOB_LEN: usize = 1 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn encode(seed: u64) -> EncodedBlob {
    let mut state = seed;
    let mut data = Vec::with_capacity(BLOB_LEN);
    while data.len() < BLOB_LEN {
        data.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    let params = BlobParams::new(
        EncodingType::RsSimd,
        SHARDS,
        DEFAULT_SEGMENT_SIZE,
        BLOB_LEN as u64,
    )
    .unwrap();
    EncodedBlob::encode(params, &data).unwrap()
}

fn slivers(encoded: &EncodedBlob, index: u16) -> Vec<Sliver> {
    (0..encoded.metadata.params().segment_count())
        .map(|s| encoded.sliver(s, index).unwrap())
        .collect()
}

fn holders() -> Vec<Vec<u8>> {
    (0..SHARDS)
        .map(|i| {
            let mut peer = vec![0u8; 38];
            peer[0] = u8::try_from(i).unwrap();
            peer
        })
        .collect()
}

type Work = (Arc<BlobMetadata>, u16, Vec<Sliver>);

/// Stores `blobs` blobs (all 12 indexes each) from `writers` threads; returns the stored keys and seconds taken.
fn fill(
    store: &Arc<Store>,
    first_seed: u64,
    blobs: u64,
    writers: usize,
    on_ack: impl Fn(&BlobId, u16) + Send + Sync + 'static,
) -> (Vec<(BlobId, u16)>, f64) {
    let (tx, rx) = mpsc::sync_channel::<Work>(4 * writers);
    let rx = Arc::new(Mutex::new(rx));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let on_ack = Arc::new(on_ack);
    let start = Instant::now();
    let producer = std::thread::spawn(move || {
        for seed in first_seed..first_seed + blobs {
            let encoded = encode(seed);
            let metadata = Arc::new(encoded.metadata.clone());
            for index in 0..SHARDS {
                tx.send((Arc::clone(&metadata), index, slivers(&encoded, index)))
                    .unwrap();
            }
        }
    });
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (rx, store, acked, on_ack) = (
                Arc::clone(&rx),
                Arc::clone(store),
                Arc::clone(&acked),
                Arc::clone(&on_ack),
            );
            std::thread::spawn(move || {
                let record = HolderRecord::initial(holders());
                loop {
                    let Ok((metadata, index, slivers)) = rx.lock().unwrap().recv() else {
                        break;
                    };
                    store
                        .put_record_and_slivers(&metadata, &record, index, &slivers)
                        .unwrap();
                    on_ack(&metadata.blob_id(), index);
                    acked.lock().unwrap().push((metadata.blob_id(), index));
                }
            })
        })
        .collect();
    producer.join().unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let keys = std::mem::take(&mut *acked.lock().unwrap());
    (keys, secs)
}

fn remove(store: &Arc<Store>, keys: Vec<(BlobId, u16)>, writers: usize) -> f64 {
    let start = Instant::now();
    let keys = Arc::new(Mutex::new(keys));
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (keys, store) = (Arc::clone(&keys), Arc::clone(store));
            std::thread::spawn(move || {
                loop {
                    let Some((id, index)) = keys.lock().unwrap().pop() else {
                        break;
                    };
                    store.remove_sliver(&id, index).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// Waits until compaction has nothing left to do (no compaction for two seconds).
fn settle(store: &Store) {
    let mut last = store.counters().compactions.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = store.counters().compactions.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn row(step: &str, store: &Store, secs: Option<(f64, u64)>) {
    let live = store.counters().bytes.load(Ordering::Relaxed);
    let disk = store.disk_bytes();
    let rate = secs.map_or("–".to_string(), |(s, bytes)| {
        format!("{:.0}", bytes as f64 / s / 1e6)
    });
    println!(
        "| {step} | {:.0} MiB | {:.0} MiB | {:.3}× | {rate} | {:.0} MiB |",
        live as f64 / 1048576.0,
        disk as f64 / 1048576.0,
        disk as f64 / live.max(1) as f64,
        peak_rss_mib()
    );
}

/// The disk's durable write speed for the same values: 256 KiB appends, fdatasync every 64 (one group commit's
/// worth), and one file per value with an fsync each (floe's first store).
fn reference(dir: &Path, bytes: u64) {
    let value = vec![0xa5u8; 256 << 10];
    let path = dir.join("reference.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let count = bytes / (256 << 10);
    let start = Instant::now();
    for i in 1..=count {
        file.write_all(&value).unwrap();
        if i % 64 == 0 {
            file.sync_data().unwrap();
        }
    }
    file.sync_data().unwrap();
    let append = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_file(&path).unwrap();
    let files = dir.join("reference-files");
    std::fs::create_dir_all(&files).unwrap();
    let start = Instant::now();
    for i in 0..256 {
        let mut f = std::fs::File::create(files.join(i.to_string())).unwrap();
        f.write_all(&value).unwrap();
        f.sync_all().unwrap();
    }
    let per_file = 256.0 * 262_144.0 / start.elapsed().as_secs_f64() / 1e6;
    std::fs::remove_dir_all(&files).unwrap();
    println!(
        "reference: append + fdatasync per 64 values {append:.0} MB/s; file per value + fsync {per_file:.0} MB/s"
    );
}

fn turnover(dir: &Path, live_mib: u64, rounds: u64, writers: usize) {
    std::fs::create_dir_all(dir).unwrap();
    reference(dir, 512 << 20);
    let store = Arc::new(Store::open_with(dir, StoreConfig::default()).unwrap());
    let blobs = (live_mib * 4).div_ceil(u64::from(SHARDS));
    println!("| step | live | disk | disk ÷ live | MB/s | peak RSS |");
    println!("|---|---|---|---|---|---|");
    let (mut live, secs) = fill(&store, 0, blobs, writers, |_, _| {});
    let sliver_bytes = store.counters().bytes.load(Ordering::Relaxed);
    row("fill", &store, Some((secs, sliver_bytes)));
    let mut rng = 7u64;
    let mut next_seed = blobs;
    for round in 1..=rounds {
        // Delete a random half (random, not oldest-first: the pattern that defeats log-structured stores).
        for i in (1..live.len()).rev() {
            let j = usize::try_from(splitmix(&mut rng) % (i as u64 + 1)).unwrap();
            live.swap(i, j);
        }
        let gone = live.split_off(live.len() / 2);
        remove(&store, gone, writers);
        row(&format!("round {round}: deleted half"), &store, None);
        let before = store.counters().bytes.load(Ordering::Relaxed);
        let (added, secs) = fill(&store, next_seed, blobs / 2, writers, |_, _| {});
        next_seed += blobs / 2;
        live.extend(added);
        let written = store.counters().bytes.load(Ordering::Relaxed) - before;
        row(
            &format!("round {round}: refilled"),
            &store,
            Some((secs, written)),
        );
    }
    settle(&store);
    row("settled", &store, None);
    let compactions = store.counters().compactions.load(Ordering::Relaxed);
    let compacted = store.counters().compacted_bytes.load(Ordering::Relaxed);
    let commits = store.counters().commits.load(Ordering::Relaxed);
    drop(store);
    let start = Instant::now();
    let store = Store::open_with(dir, StoreConfig::default()).unwrap();
    let reopen = start.elapsed();
    // Read back a sample, each sliver verified against its blob ID.
    let start = Instant::now();
    let sample = 200.min(live.len());
    for _ in 0..sample {
        let (id, index) = live[usize::try_from(splitmix(&mut rng)).unwrap() % live.len()];
        store.read_slivers(&id, index, 0, 1).unwrap();
    }
    let read = start.elapsed();
    assert_eq!(store.counters().corrupt_found.load(Ordering::Relaxed), 0);
    println!(
        "reopen {:.1} ms; {sample} verified reads in {:.0} ms; {compactions} compactions copied {:.0} MiB; {commits} group commits",
        reopen.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        compacted as f64 / 1048576.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(1), arg(2)) {
        (Some("turnover"), Some(dir)) => turnover(
            Path::new(dir),
            arg(3).map_or(1024, |v| v.parse().unwrap()),
            arg(4).map_or(4, |v| v.parse().unwrap()),
            arg(5).map_or(16, |v| v.parse().unwrap()),
        ),
        (Some("crash-writer"), Some(dir)) => {
            let store = Arc::new(Store::open(Path::new(dir)).unwrap());
            let stdout = Arc::new(Mutex::new(std::io::stdout()));
            // Seeds from the clock's nanoseconds, so every crash round writes new blobs.
            let seed = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            ) << 20;
            fill(&store, seed, u64::MAX >> 24, 16, move |id, index| {
                let mut out = stdout.lock().unwrap();
                writeln!(out, "{id} {index} ok").unwrap();
                out.flush().unwrap();
            });
        }
        (Some("crash-verify"), Some(dir)) => {
            let acks = std::fs::File::open(arg(3).expect("ACKS file")).unwrap();
            let opening = Instant::now();
            let store = Store::open(Path::new(dir)).unwrap();
            let reopen = opening.elapsed();
            let mut checked = 0;
            for line in std::io::BufReader::new(acks).lines() {
                let line = line.unwrap();
                // A line cut short by the kill lacks its "ok": not an acknowledgement.
                let Some((id, index)) = line.strip_suffix(" ok").and_then(|l| l.split_once(' '))
                else {
                    continue;
                };
                let (Ok(id), Ok(index)) = (id.parse::<BlobId>(), index.parse::<u16>()) else {
                    continue;
                };
                if let Err(error) = store.read_slivers(&id, index, 0, 1) {
                    eprintln!("acknowledged sliver {id} {index} lost: {error}");
                    std::process::exit(1);
                }
                checked += 1;
            }
            println!(
                "{checked} acknowledged slivers verified; {} held; reopen {:.1} ms replayed {} logged records",
                store.counters().slivers.load(Ordering::Relaxed),
                reopen.as_secs_f64() * 1e3,
                store.counters().replayed.load(Ordering::Relaxed)
            );
        }
        _ => {
            eprintln!(
                "usage: bench_store turnover DIR [LIVE_MIB] [ROUNDS] [WRITERS] | crash-writer DIR | crash-verify DIR ACKS"
            );
            std::process::exit(2);
        }
    }
}
