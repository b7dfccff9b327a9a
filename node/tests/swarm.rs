//! Real `floe node` processes on 127.0.0.1: writes, reads, corruption, restarts and mass kills.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

/// Flips a byte every 4 KiB of every sliver log a node holds, so every record of more than 4 KiB is hit.
fn corrupt_node(node: &NodeProc) -> usize {
    let mut corrupted = 0;
    for file in std::fs::read_dir(node.dir.join("store/log"))
        .unwrap()
        .flatten()
    {
        let mut bytes = std::fs::read(file.path()).unwrap();
        for at in (2048..bytes.len()).step_by(4096) {
            bytes[at] ^= 0x55;
            corrupted += 1;
        }
        std::fs::write(file.path(), bytes).unwrap();
    }
    corrupted
}

#[test]
fn twelve_nodes_survive_corruption_restarts_and_losing_two_thirds() {
    let mut swarm = TestSwarm::start(12);
    let sizes = [
        0usize,
        1,
        2,
        3,
        100,
        1000,
        4095,
        4096,
        65_535,
        65_536,
        100_000,
        262_144,
        1 << 20,
        (1 << 20) + 1,
        3_000_000,
        5 << 20,
        8 << 20,
        10_000_000,
        (16 << 20) - 1,
        16 << 20,
    ];
    let mut blobs = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = blob(*size, i as u64 + 1);
        let writer = &swarm.nodes[i % 12];
        let id = put(writer, &data);
        blobs.push((id, data));
    }
    // Every blob reads back through a node that did not write it.
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(
            &get(&swarm.nodes[(i + 5) % 12], id).unwrap(),
            data,
            "blob {i} before faults"
        );
    }

    // A third of the nodes (8..12) get every sliver file corrupted on disk. Reads still return the right bytes.
    for node in &swarm.nodes[8..] {
        assert!(corrupt_node(node) > 0);
    }
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(
            &get(&swarm.nodes[i % 4], id).unwrap(),
            data,
            "blob {i} with corrupt holders"
        );
    }
    let corrupt_seen: u64 = swarm.nodes[8..]
        .iter()
        .map(|n| metric(n, "floe_corrupt_slivers_found_total"))
        .sum();
    assert!(corrupt_seen > 0, "corruption must show in metrics");
    let log = std::fs::read_to_string(swarm.nodes[8].dir.join("node.log")).unwrap()
        + &std::fs::read_to_string(swarm.nodes[9].dir.join("node.log")).unwrap()
        + &std::fs::read_to_string(swarm.nodes[10].dir.join("node.log")).unwrap()
        + &std::fs::read_to_string(swarm.nodes[11].dir.join("node.log")).unwrap();
    assert!(
        log.contains("corrupt sliver record found"),
        "corruption must show in logs"
    );

    // A node killed with SIGKILL and restarted serves every sliver it acknowledged.
    let before = json(&format!("{}/v1/node/status", swarm.nodes[3].http))["sliversStored"].clone();
    swarm.kill(3);
    swarm.restart(3);
    swarm.wait_formed(12);
    assert_eq!(
        json(&format!("{}/v1/node/status", swarm.nodes[3].http))["sliversStored"],
        before
    );

    // Kill eight of twelve (every corrupt node among them): the four survivors rebuild every blob.
    for index in 4..12 {
        swarm.kill(index);
    }
    for (i, (id, data)) in blobs.iter().enumerate() {
        let reader = &swarm.nodes[i % 4];
        assert_eq!(
            &get(reader, id).unwrap(),
            data,
            "blob {i} after losing two thirds"
        );
    }
    // Those survivors had read these blobs before (with corrupt holders) and remember that the writers encoded
    // them consistently: the reads above decoded without the re-encode check, and still returned the right bytes.
    let skipped: u64 = swarm.nodes[..4]
        .iter()
        .map(|n| metric(n, "floe_segment_checks_skipped_total"))
        .sum();
    assert!(skipped > 0, "re-reads must reuse the consistency check");
}

#[test]
fn malformed_http_and_hostile_peers_get_clear_errors_and_the_node_keeps_running() {
    // Scans every second, and a partial sliver index that does not grow for 2 s is deleted.
    let swarm = TestSwarm::start_with(4, &["--repair-interval", "1s", "--partial-ttl", "2s"]);
    let node = &swarm.nodes[0];
    let agent = agent();
    let status =
        |r: Result<ureq::http::Response<ureq::Body>, ureq::Error>| r.unwrap().status().as_u16();
    assert_eq!(
        status(
            agent
                .get(&format!("{}/v1/blobs/not-an-id", node.http))
                .call()
        ),
        400
    );
    assert_eq!(
        status(
            agent
                .get(&format!("{}/v1/blobs/{}", node.http, "A".repeat(43)))
                .call()
        ),
        404
    );
    assert_eq!(
        status(
            agent
                .get(&format!("{}/v1/blobs/{}/status", node.http, "A".repeat(43)))
                .call()
        ),
        404
    );
    assert_eq!(
        status(agent.get(&format!("{}/nowhere", node.http)).call()),
        404
    );
    // A declared length over the limit is refused before a byte of the body is sent.
    let addr = node.http.trim_start_matches("http://");
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::Read as _;
    write!(
        raw,
        "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        (64u64 << 20) + 1
    )
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"status\":\"INVALID_ARGUMENT\""),
        "{answer}"
    );
    let too_big = vec![0u8; (64 << 20) + 1];
    // The same without a length up front (chunked): counted as it arrives, refused past the limit, nothing kept.
    let mut reader = &too_big[..];
    assert_eq!(
        status(
            agent
                .put(&format!("{}/v1/blobs", node.http))
                .send(ureq::SendBody::from_reader(&mut reader))
        ),
        413
    );
    assert_eq!(
        std::fs::read_dir(node.dir.join("spool")).unwrap().count(),
        0
    );
    let id = put(node, b"hello floe");
    let range = |value: &str| {
        agent
            .get(&format!("{}/v1/blobs/{id}", node.http))
            .header("Range", value)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(range("bytes=100-"), 416);
    assert_eq!(range("bytes=0-4"), 206);
    assert_eq!(range("nonsense"), 200);

    // Garbage on the libp2p port: the handshake fails, nothing else happens.
    let port = node.listen.split('/').nth(4).unwrap();
    let mut raw = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    use std::io::Write;
    let _ = raw.write_all(&[0xff; 4096]);
    drop(raw);

    // Hostile but well-formed floe requests from a real libp2p peer.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ours_id = runtime.block_on(async {
        use floe_protocol::wire::pb;
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let (client, _inbound, _gossip, event_loop) = floe_node::net::start(
            keypair.clone(),
            floe_node::net::NetConfig {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: vec![node.listen.parse().unwrap()],
                request_timeout: Duration::from_secs(10),
                upnp: false,
                max_connections: 64,
                relay: None,
            },
            &mut prometheus_client::registry::Registry::default(),
        )
        .unwrap();
        tokio::spawn(event_loop.run());
        let peer: libp2p::PeerId = node.listen.rsplit('/').next().unwrap().parse().unwrap();
        let hostile = [
            pb::Request { kind: None },
            pb::Request {
                kind: Some(pb::request::Kind::Store(pb::StoreRequest::default())),
            },
            pb::Request {
                kind: Some(pb::request::Kind::Store(pb::StoreRequest {
                    slivers: vec![pb::Sliver {
                        data: vec![1u8; 1000].into(),
                        ..Default::default()
                    }],
                    metadata: Some(pb::BlobMetadata {
                        params: Some(pb::BlobParams {
                            encoding: 1,
                            shards: 4,
                            source_shards: 2,
                            segment_size: 1024,
                            blob_length: 10,
                        }),
                        segment_roots: vec![vec![0u8; 32].into()],
                    }),
                    holders: vec![],
                    ..Default::default()
                })),
            },
            pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: vec![0u8; 5].into(),
                    first_segment: u64::MAX,
                    index: u32::MAX,
                    segment_count: u64::MAX,
                    forward_to: vec![].into(),
                })),
            },
            // Forwarded reads: to a malformed peer ID, and to a peer the node has no connection with.
            pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: vec![1u8; 32].into(),
                    segment_count: 1,
                    forward_to: vec![9u8; 5].into(),
                    ..Default::default()
                })),
            },
            pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: vec![1u8; 32].into(),
                    segment_count: 1,
                    forward_to: libp2p::PeerId::random().to_bytes().into(),
                    ..Default::default()
                })),
            },
            pb::Request {
                kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
                    blob_id: vec![].into(),
                    list_digest: true,
                })),
            },
            // A real blob, segments far out of range: refused as not found, never mistaken for corruption.
            pb::Request {
                kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                    blob_id: id
                        .parse::<floe_protocol::BlobId>()
                        .unwrap()
                        .as_bytes()
                        .to_vec()
                        .into(),
                    first_segment: 0,
                    index: 0,
                    segment_count: u64::MAX,
                    forward_to: vec![].into(),
                })),
            },
            // A storage challenge for a segment the blob does not have, with an oversized nonce.
            pb::Request {
                kind: Some(pb::request::Kind::Challenge(pb::StorageChallenge {
                    blob_id: id
                        .parse::<floe_protocol::BlobId>()
                        .unwrap()
                        .as_bytes()
                        .to_vec()
                        .into(),
                    segment: u64::MAX,
                    index: 0,
                    nonce: vec![7u8; 1000].into(),
                })),
            },
        ];
        let mut answered = 0;
        let expected = hostile.len();
        for request in hostile {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match client.request(peer, request.clone()).await {
                    Ok(pb::Response {
                        kind: Some(pb::response::Kind::Error(_)),
                    })
                    | Ok(pb::Response {
                        kind:
                            Some(pb::response::Kind::Metadata(pb::MetadataResponse {
                                metadata: None,
                                ..
                            })),
                    })
                    | Ok(pb::Response {
                        kind: Some(pb::response::Kind::Read(_)),
                    }) => {
                        answered += 1;
                        break;
                    }
                    Ok(other) => panic!("hostile request got {other:?}"),
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(e) => panic!("no answer: {e}"),
                }
            }
        }
        assert_eq!(answered, expected);

        // Forged repair gossip: garbage, a takeover by a peer that holds nothing, and an announcement that
        // names the node itself as repairer while we sign it. None may change the node's holder lists.
        let blob = id.parse::<floe_protocol::BlobId>().unwrap();
        let me = client.local_peer_id().to_bytes();
        let takeover = |repairer: Vec<u8>| pb::RepairAnnouncement {
            blob_id: blob.as_bytes().to_vec().into(),
            indexes: vec![0, 1, 2],
            repairer: repairer.into(),
            epoch: u64::MAX,
            holders: vec![me.clone().into(); 4],
            departures: None,
        };
        // A real sliver of the blob (anyone may read one) sent back with a takeover holder list at the highest
        // epoch: the node may store the sliver but must not adopt the list.
        let metadata = match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
                        blob_id: blob.as_bytes().to_vec().into(),
                        list_digest: false,
                    })),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Metadata(m)) => m,
            other => panic!("no metadata: {other:?}"),
        };
        // Asked for the list's digest alone, the node answers the digest of that list and no holders.
        let digest = match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Metadata(pb::MetadataRequest {
                        blob_id: blob.as_bytes().to_vec().into(),
                        list_digest: true,
                    })),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Metadata(m)) => m,
            other => panic!("no digest: {other:?}"),
        };
        let full: Vec<Vec<u8>> = metadata.holders.iter().map(|h| h.to_vec()).collect();
        let list = floe_protocol::holders::List {
            holders: &full,
            epoch: metadata.holders_epoch,
            repairer: &metadata.holders_repairer,
        };
        assert!(digest.holders.is_empty() && digest.metadata.is_none());
        assert_eq!(digest.holders_epoch, metadata.holders_epoch);
        assert_eq!(
            digest.holders_digest.as_ref(),
            floe_protocol::holders::digest(&list).as_slice()
        );
        let held: u32 = metadata
            .holders
            .iter()
            .position(|h| h.as_ref() == peer.to_bytes().as_slice())
            .unwrap() as u32;
        let slivers = match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Read(pb::ReadRequest {
                        blob_id: blob.as_bytes().to_vec().into(),
                        first_segment: 0,
                        index: held,
                        segment_count: 1,
                        forward_to: vec![].into(),
                    })),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Read(pb::ReadResponse {
                result: Some(pb::read_response::Result::Slivers(set)),
            })) => set.slivers,
            other => panic!("no sliver: {other:?}"),
        };
        let _ = client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Store(pb::StoreRequest {
                        slivers,
                        metadata: metadata.metadata.clone(),
                        holders: vec![me.clone().into(); 4],
                        holders_epoch: u64::MAX,
                        holders_repairer: me.clone().into(),
                        content_type: String::new(),
                        end_epoch: 0,
                        ..Default::default()
                    })),
                },
            )
            .await
            .unwrap();

        // A write that stops after its first run: a blob of two segments, of which only segment 0 of one index
        // reaches the node. The node keeps it as progress, never receipts it, and deletes it once it stalls.
        let params = floe_protocol::BlobParams::new(
            floe_protocol::encoding::EncodingType::RsSimd,
            4,
            1024,
            2048,
        )
        .unwrap();
        let encoded = floe_protocol::encoder::EncodedBlob::encode(params, &[0x33u8; 2048]).unwrap();
        let holders: Vec<bytes::Bytes> = std::iter::once(peer.to_bytes().into())
            .chain(std::iter::repeat_n(me.clone().into(), 3))
            .collect();
        let first_run = pb::StoreRequest {
            slivers: vec![(&encoded.sliver(0, 0).unwrap()).into()],
            metadata: Some((&encoded.metadata).into()),
            holders,
            ..Default::default()
        };
        match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Store(first_run)),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Progress(progress)) => {
                assert_eq!((progress.index, progress.segments_held), (0, 1))
            }
            other => panic!("a first run got {other:?}"),
        }
        // Challenged meanwhile, the node produces the segment it holds and says it is still receiving the other:
        // a sliver on its way is not a lost one.
        let challenge = |segment: u64| pb::Request {
            kind: Some(pb::request::Kind::Challenge(pb::StorageChallenge {
                blob_id: encoded.metadata.blob_id().as_bytes().to_vec().into(),
                index: 0,
                segment,
                nonce: vec![9u8; 16].into(),
            })),
        };
        match client.request(peer, challenge(0)).await.unwrap().kind {
            Some(pb::response::Kind::Challenge(answer)) => {
                assert_eq!(answer.sliver.unwrap().segment, 0)
            }
            other => panic!("a challenge of a held segment got {other:?}"),
        }
        match client.request(peer, challenge(1)).await.unwrap().kind {
            Some(pb::response::Kind::Challenge(pb::ChallengeAnswer {
                sliver: None,
                receiving: Some(receiving),
                ..
            })) => assert_eq!((receiving.segments_held, receiving.segment_count), (1, 2)),
            other => panic!("a challenge of a segment on its way got {other:?}"),
        }

        // A flood of valid slivers whose holder list gives every index to this peer, not to the node: no write,
        // repair or hand-off sends that, so the node stores them only within this peer's small budget (1 MiB/s,
        // 10 MiB of burst) and then refuses them, saying why and when to retry.
        let (mut stored, mut refused) = (0, Vec::new());
        for b in 0..8u8 {
            let flood = floe_protocol::encoder::EncodedBlob::encode(
                floe_protocol::BlobParams::new(
                    floe_protocol::encoding::EncodingType::RsSimd,
                    4,
                    1 << 20,
                    1 << 20,
                )
                .unwrap(),
                &vec![b; 1 << 20],
            )
            .unwrap();
            for index in 0..4u16 {
                let request = pb::StoreRequest {
                    slivers: vec![(&flood.sliver(0, index).unwrap()).into()],
                    metadata: Some((&flood.metadata).into()),
                    holders: vec![me.clone().into(); 4],
                    ..Default::default()
                };
                match client
                    .request(
                        peer,
                        pb::Request {
                            kind: Some(pb::request::Kind::Store(request)),
                        },
                    )
                    .await
                    .unwrap()
                    .kind
                {
                    Some(pb::response::Kind::Receipt(_)) => stored += 1,
                    Some(pb::response::Kind::Error(why)) => refused.push(why),
                    other => panic!("an unexpected store got {other:?}"),
                }
            }
        }
        // 32 slivers of 512 KiB: the burst takes 20, the refill a few more while they go.
        assert!(
            (20..32).contains(&stored),
            "{stored} stored, refused: {refused:?}"
        );
        assert!(
            refused
                .iter()
                .all(|why| why.contains("over its budget") && why.contains("retry in")),
            "{refused:?}"
        );

        // A blob whose writer's list names this peer as a holder (of indexes 1 to 3; the node holds index 0):
        // as a holder it may announce lists, but one epoch far ahead is not taken from it alone. The node asks
        // the other holders (only this peer), finds no two that agree, and keeps its list: before, one holder
        // could jump the epoch to u64::MAX and freeze the blob's list for good.
        let ours = floe_protocol::encoder::EncodedBlob::encode(
            floe_protocol::BlobParams::new(
                floe_protocol::encoding::EncodingType::RsSimd,
                4,
                1024,
                100,
            )
            .unwrap(),
            &[0x44u8; 100],
        )
        .unwrap();
        let ours_id = ours.metadata.blob_id();
        let ours_holders: Vec<bytes::Bytes> = std::iter::once(peer.to_bytes().into())
            .chain(std::iter::repeat_n(me.clone().into(), 3))
            .collect();
        match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Store(pb::StoreRequest {
                        slivers: vec![(&ours.sliver(0, 0).unwrap()).into()],
                        metadata: Some((&ours.metadata).into()),
                        holders: ours_holders,
                        ..Default::default()
                    })),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Receipt(_)) => {}
            other => panic!("a writer's store got {other:?}"),
        }
        let far_ahead = pb::RepairAnnouncement {
            blob_id: ours_id.as_bytes().to_vec().into(),
            indexes: vec![0],
            repairer: me.clone().into(),
            epoch: u64::MAX,
            holders: vec![me.clone().into(); 4],
            departures: None,
        };

        // A blob whose writer's list gives this peer one index of four (under k = 2: a byzantine third), the
        // node index 0, and two peers that are not there the rest. As a holder this peer may announce lists,
        // but one that takes the node's index needs evidence that holders of k indexes found the node gone:
        // its own statement (one index), statements signed by strangers (no index) and a statement passed off
        // under another key are not that, by gossip or beside a sliver. Giving away its own index is.
        let third = floe_protocol::encoder::EncodedBlob::encode(
            floe_protocol::BlobParams::new(
                floe_protocol::encoding::EncodingType::RsSimd,
                4,
                1024,
                100,
            )
            .unwrap(),
            &[0x55u8; 100],
        )
        .unwrap();
        let third_id = third.metadata.blob_id();
        let (absent_a, absent_b) = (
            libp2p::PeerId::random().to_bytes(),
            libp2p::PeerId::random().to_bytes(),
        );
        let list = |holders: [&Vec<u8>; 4]| -> Vec<bytes::Bytes> {
            holders
                .iter()
                .map(|h| bytes::Bytes::from((*h).clone()))
                .collect()
        };
        let node_key = peer.to_bytes();
        let writers_list = list([&node_key, &me, &absent_a, &absent_b]);
        match client
            .request(
                peer,
                pb::Request {
                    kind: Some(pb::request::Kind::Store(pb::StoreRequest {
                        slivers: vec![(&third.sliver(0, 0).unwrap()).into()],
                        metadata: Some((&third.metadata).into()),
                        holders: writers_list,
                        ..Default::default()
                    })),
                },
            )
            .await
            .unwrap()
            .kind
        {
            Some(pb::response::Kind::Receipt(_)) => {}
            other => panic!("a writer's store got {other:?}"),
        }
        let departed = vec![bytes::Bytes::from(node_key.clone())];
        let digest = floe_protocol::departure::peers_digest(&departed);
        let gone = floe_protocol::departure::bitmap(1, |_| true);
        let statement = |signer: &libp2p::identity::Keypair,
                         claimed: &libp2p::identity::Keypair| {
            let signed = floe_protocol::departure::signing_bytes(&third_id, 0, &digest, &gone);
            pb::DepartureStatement {
                epoch: 0,
                gone: gone.clone().into(),
                signer_public_key: claimed.public().encode_protobuf().into(),
                signature: signer.sign(&signed).unwrap().into(),
            }
        };
        let strangers: Vec<libp2p::identity::Keypair> = (0..3)
            .map(|_| libp2p::identity::Keypair::generate_ed25519())
            .collect();
        let mut forged_statements = vec![statement(&keypair, &keypair)];
        forged_statements.extend(strangers.iter().map(|s| statement(s, s)));
        forged_statements.push(statement(&keypair, &strangers[0]));
        let forged_evidence = pb::Departures {
            peers: departed.clone(),
            statements: forged_statements,
        };
        let steal = |departures: Option<pb::Departures>| pb::RepairAnnouncement {
            blob_id: third_id.as_bytes().to_vec().into(),
            indexes: vec![0],
            repairer: me.clone().into(),
            epoch: 1,
            holders: list([&me, &me, &absent_a, &absent_b]),
            departures,
        };
        // Beside a sliver: the node keeps the sliver (it verifies) but not the list. The node is not listed in
        // it, so the store draws on this peer's budget for unexpected stores, which the flood above emptied.
        let beside_request = pb::Request {
            kind: Some(pb::request::Kind::Store(pb::StoreRequest {
                slivers: vec![(&third.sliver(0, 1).unwrap()).into()],
                metadata: Some((&third.metadata).into()),
                holders: list([&me, &me, &absent_a, &absent_b]),
                holders_epoch: 1,
                holders_repairer: me.clone().into(),
                departures: Some(forged_evidence.clone()),
                ..Default::default()
            })),
        };
        let mut beside = client.request(peer, beside_request.clone()).await.unwrap();
        for _ in 0..30 {
            match &beside.kind {
                Some(pb::response::Kind::Error(why)) if why.contains("over its budget") => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    beside = client.request(peer, beside_request.clone()).await.unwrap();
                }
                _ => break,
            }
        }
        assert!(
            matches!(beside.kind, Some(pb::response::Kind::Receipt(_))),
            "a sliver beside a stealing list got {beside:?}"
        );
        let own_only = pb::RepairAnnouncement {
            blob_id: third_id.as_bytes().to_vec().into(),
            indexes: vec![],
            repairer: me.clone().into(),
            epoch: 1,
            holders: list([&node_key, &absent_a, &absent_a, &absent_b]),
            departures: None,
        };

        tokio::time::sleep(Duration::from_secs(2)).await; // let the gossip subscription reach the node
        client
            .publish(prost::Message::encode_to_vec(&far_ahead))
            .await;
        client.publish(vec![0xff; 300]).await;
        client
            .publish(prost::Message::encode_to_vec(&takeover(me.clone())))
            .await;
        client
            .publish(prost::Message::encode_to_vec(&takeover(peer.to_bytes())))
            .await;
        client
            .publish(prost::Message::encode_to_vec(&steal(None)))
            .await;
        client
            .publish(prost::Message::encode_to_vec(&steal(Some(forged_evidence))))
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        client
            .publish(prost::Message::encode_to_vec(&own_only))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        (ours_id, third_id, absent_a)
    });
    let (ours_id, third_id, absent_a) = ours_id;
    wait_until(
        "the forged gossip to arrive",
        Duration::from_secs(15),
        || metric(node, "floe_announcements_refused_total") >= 5,
    );
    // Two stealing announcements and the stealing store request were refused for want of evidence; the list
    // that gives away only the sender's own index was adopted, and the node still holds index 0.
    assert_eq!(metric(node, "floe_holder_lists_unproven_total"), 3);
    wait_until(
        "the list giving away the sender's own index to be adopted",
        Duration::from_secs(15),
        || metric(node, "floe_holder_lists_adopted_total") >= 1,
    );
    assert_eq!(metric(node, "floe_holder_lists_adopted_total"), 1);
    let third = blob_status(node, &third_id.to_string());
    assert_eq!(third["holderListEpoch"].as_u64(), Some(1), "{third}");
    let absent_a = libp2p::PeerId::from_bytes(&absent_a).unwrap().to_string();
    assert_eq!(third["holderList"][0]["self"], true, "{third}");
    assert_eq!(
        third["holderList"][1]["peerId"],
        absent_a.as_str(),
        "{third}"
    );
    assert!(
        third["sliversHeldHere"]
            .as_array()
            .is_some_and(|held| held.contains(&serde_json::json!(0))),
        "{third}"
    );
    assert!(metric(node, "floe_unexpected_stores_refused_total") >= 1);
    // The node may have rebalanced the blob itself (this peer held three of its four indexes), but the far
    // epoch was not taken.
    let ours = blob_status(node, &ours_id.to_string());
    assert!(
        ours["holderListEpoch"].as_u64().is_some_and(|e| e < 100),
        "{ours}"
    );
    wait_until(
        "the stalled partial index to be deleted",
        Duration::from_secs(20),
        || metric(node, "floe_partial_indexes_reclaimed_total") >= 1,
    );
    let status = blob_status(node, &id);
    assert_eq!(status["holders"].as_u64(), Some(4), "{status}");
    assert_eq!(metric(node, "floe_corrupt_slivers_found_total"), 0);
    // Still serving.
    assert_eq!(get(node, &id).unwrap(), b"hello floe");
    assert_eq!(
        json(&format!("{}/v1/node/status", node.http))["connectedPeers"]
            .as_u64()
            .map(|c| c >= 3),
        Some(true)
    );
}

/// Repair timings short enough for tests: a peer is gone after 3 s out of reach; checks and challenges every
/// second, 5 s after a blob's sliver arrived or its holder list changed.
const REPAIR_FLAGS: [&str; 8] = [
    "--repair-grace",
    "3s",
    "--repair-interval",
    "1s",
    "--challenge-interval",
    "1s",
    "--challenge-settle",
    "5s",
];

fn blob_status(node: &NodeProc, id: &str) -> Value {
    json(&format!("{}/v1/blobs/{id}/status", node.http))
}

/// Whether `node`'s holder list for every blob has `holders` distinct live holders.
fn all_healthy(node: &NodeProc, blobs: &[(String, Vec<u8>)], holders: u64) -> bool {
    blobs.iter().all(|(id, _)| {
        let status = blob_status(node, id);
        status["health"]["full"] == true && status["holders"].as_u64() == Some(holders)
    })
}

#[test]
fn repair_rebuilds_what_departed_nodes_held() {
    let mut swarm = TestSwarm::start_with(12, &REPAIR_FLAGS);
    let sizes = [
        0usize,
        1,
        7,
        100,
        777,
        1000,
        4096,
        7777,
        65_536,
        77_777,
        100_000,
        262_144,
        500_000,
        1 << 20,
        (1 << 20) + 1,
        1_500_000,
        2_000_000,
        3_000_000,
        3 << 20,
        4 << 20,
    ];
    let blobs: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let data = blob(size, 100 + i as u64);
            (put(&swarm.nodes[i % 4], &data), data)
        })
        .collect();
    let total_bytes: usize = sizes.iter().sum();
    assert!(all_healthy(&swarm.nodes[0], &blobs, 12));

    // kill -9 four nodes and start four fresh ones: after the grace period the blobs' leaders rebuild the four
    // lost slivers of every blob and the fresh nodes end up holding them.
    for index in 8..12 {
        swarm.kill(index);
    }
    for _ in 0..4 {
        swarm.add_node();
    }
    let lost = 4 * blobs.len() as u64;
    wait_until("repair to settle", Duration::from_secs(180), || {
        swarm.total("floe_slivers_rebuilt_total") >= lost
            && all_healthy(&swarm.nodes[0], &blobs, 12)
    });
    std::thread::sleep(Duration::from_secs(3));
    let rebuilt = swarm.total("floe_slivers_rebuilt_total");
    assert_eq!(rebuilt, lost, "every lost sliver rebuilt exactly once");
    assert_eq!(swarm.total("floe_duplicate_slivers_received_total"), 0);
    let fetched = swarm.total("floe_repair_bytes_fetched_total");
    eprintln!(
        "repair fetched {fetched} bytes for {total_bytes} blob bytes ({:.3}x)",
        fetched as f64 / total_bytes as f64
    );
    // A repair reads k slivers: 1.0x the blob (0.75x over the network at k = 4). On a loaded two-core test
    // machine slow fetches are hedged (each blob's 8 surviving slivers, 2x, at most); more than that would mean
    // blobs repaired more than once. scripts/bench-repair.sh measures the real figure on a quiet machine.
    assert!(
        fetched as f64 <= 2.0 * total_bytes as f64 + 1e6,
        "repair traffic {fetched} exceeds 2x the blobs' {total_bytes} bytes"
    );

    // kill -9 four more of the original nodes and two of the fresh ones: six of twelve holders remain.
    for index in [4, 5, 6, 7, 12, 13] {
        swarm.kill(index);
    }
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(&get(&swarm.nodes[i % 4], id).unwrap(), data, "blob {i}");
    }
    // One more original gone leaves three original slivers, fewer than k = 4: reads need the rebuilt ones.
    swarm.kill(3);
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(
            &get(&swarm.nodes[i % 3], id).unwrap(),
            data,
            "blob {i} with only repaired slivers to spare"
        );
    }
}

#[test]
fn sigterm_hands_off_without_decoding_and_lost_data_fails_challenges() {
    let mut swarm = TestSwarm::start_with(8, &REPAIR_FLAGS);
    let blobs: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            let data = blob(1000 + i * 200_000, 300 + i as u64);
            (put(&swarm.nodes[0], &data), data)
        })
        .collect();
    assert!(all_healthy(&swarm.nodes[0], &blobs, 8));

    // A planned departure: SIGTERM hands every sliver of node 7 to its next holder before it exits.
    swarm.terminate(7);
    let log = std::fs::read_to_string(swarm.nodes[7].dir.join("node.log")).unwrap();
    assert!(
        log.contains("handed_off=10 failed=0"),
        "node 7 must hand off its 10 slivers: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    wait_until(
        "the hand-off lists to spread",
        Duration::from_secs(30),
        || all_healthy(&swarm.nodes[0], &blobs, 7),
    );
    assert_eq!(
        swarm.total("floe_repair_segments_decoded_total"),
        0,
        "a hand-off decodes nothing"
    );
    assert_eq!(swarm.total("floe_slivers_rebuilt_total"), 0);
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(
            &get(&swarm.nodes[i % 7], id).unwrap(),
            data,
            "blob {i} after hand-off"
        );
    }

    // Node 6 loses its sliver data while it runs: it fails challenges, and its slivers are rebuilt elsewhere.
    for log in std::fs::read_dir(swarm.nodes[6].dir.join("store/log"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(log.path()).unwrap();
    }
    wait_until(
        "node 6's slivers to be repaired",
        Duration::from_secs(240),
        || swarm.total("floe_slivers_rebuilt_total") >= blobs.len() as u64,
    );
    assert!(swarm.total("floe_challenges_failed_total") >= 3);
    assert!(swarm.total("floe_challenges_passed_total") > 0);
    for (i, (id, data)) in blobs.iter().enumerate() {
        assert_eq!(
            &get(&swarm.nodes[i % 6], id).unwrap(),
            data,
            "blob {i} after repair"
        );
    }
}
