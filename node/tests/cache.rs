//! The hot-blob cache and streamed reads of a real `floe node` process on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod common;
use common::*;

#[test]
fn hot_blobs_come_from_memory_and_large_ones_stream() {
    let mut swarm = TestSwarm::start_with(4, &["--cache-size", "16MiB"]);
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 249) as u8).collect();
    let id = put(&swarm.nodes[0], &data);
    let reader = &swarm.nodes[1];
    // First read: from the holders. Second: from memory, with no read request sent.
    assert_eq!(get(reader, &id).unwrap(), data);
    let requests = metric(reader, "floe_read_requests_total");
    assert!(requests > 0);
    assert_eq!(get(reader, &id).unwrap(), data);
    assert_eq!(metric(reader, "floe_read_requests_total"), requests);
    assert!(metric(reader, "floe_cache_hits_total") >= 1);
    assert!(metric(reader, "floe_cache_bytes") >= data.len() as u64);
    let mut response = agent()
        .get(&format!("{}/v1/blobs/{id}", reader.http))
        .header("Range", "bytes=1000-1999")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 206);
    let body = response.body_mut().read_to_vec().unwrap();
    assert_eq!(body, &data[1000..2000]);
    assert_eq!(metric(reader, "floe_read_requests_total"), requests);
    // The writer cached what it wrote.
    assert_eq!(get(&swarm.nodes[0], &id).unwrap(), data);
    assert_eq!(metric(&swarm.nodes[0], "floe_read_requests_total"), 0);

    // A blob of two segments (more than the gateway reads whole) streams, whole and in ranges, byte-identical.
    let large: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    let id = put(&swarm.nodes[2], &large);
    assert_eq!(get(&swarm.nodes[3], &id).unwrap(), large);
    let mut response = agent()
        .get(&format!("{}/v1/blobs/{id}", swarm.nodes[1].http))
        .header("Range", "bytes=1000-18000000")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 206);
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    assert_eq!(body.len(), 18_000_000 - 1000 + 1);
    assert!(body == large[1000..=18_000_000]);
    // Not cached (larger than an eighth of the cache): a second read streams again from the holders.
    let before = metric(&swarm.nodes[3], "floe_read_requests_total");
    assert_eq!(get(&swarm.nodes[3], &id).unwrap(), large);
    assert!(metric(&swarm.nodes[3], "floe_read_requests_total") > before);
    // Over 16 MiB, the body was spooled and written run by run: two runs (one per segment) per index.
    assert_eq!(metric(&swarm.nodes[2], "floe_streamed_puts_total"), 1);
    assert!(metric(&swarm.nodes[2], "floe_write_requests_total") >= 6);
    assert_eq!(
        std::fs::read_dir(swarm.nodes[2].dir.join("spool"))
            .unwrap()
            .count(),
        0,
        "spool removed"
    );

    // A leaving node hands its index of the large blob off run by run; the new holder signs its receipt only
    // once the whole index is there.
    let received: u64 = swarm.nodes[..3]
        .iter()
        .map(|n| metric(n, "floe_slivers_received_total"))
        .sum();
    swarm.terminate(3);
    let survivors = swarm.total("floe_slivers_received_total");
    assert!(
        survivors >= received + 2,
        "both blobs' slivers of the leaving node arrived complete ({received} -> {survivors})"
    );
    assert_eq!(get(&swarm.nodes[0], &id).unwrap(), large);
}
