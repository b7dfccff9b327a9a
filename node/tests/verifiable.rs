//! Reads a client can verify, with real processes: the metadata route gives what the blob ID commits to (a
//! client recomputes the ID from it), the sliver route gives slivers with proofs that verify against the ID,
//! any k of them rebuild the bytes, a flipped byte fails verification, and bad requests get clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prost::Message as _;

use floe_protocol::wire::pb;
use floe_protocol::{
    BlobId, BlobMetadata, BlobParams, Consistency, EncodingType, SegmentDecoder, Sliver,
    VerifiedSliver,
};

mod common;
use common::*;

fn unhex(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let mut response = agent().get(url).call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_vec().unwrap())
}

#[test]
fn a_client_verifies_slivers_against_the_blob_id_and_rebuilds_the_bytes() {
    let swarm = TestSwarm::start(4);
    let data = blob(3_000_000, 7);
    let id = put(&swarm.nodes[0], &data);
    let blob_id: BlobId = id.parse().unwrap();
    let reader = &swarm.nodes[2];

    // The metadata, checked the way a browser would: the ID recomputed from what the route says.
    let meta = json(&format!("{}/v1/blobs/{id}/metadata", reader.http));
    assert_eq!(meta["encodingType"], "rs-simd", "{meta}");
    let params = BlobParams::new(
        EncodingType::RsSimd,
        u16::try_from(meta["shards"].as_u64().unwrap()).unwrap(),
        meta["segmentSize"].as_u64().unwrap(),
        meta["blobLength"].as_u64().unwrap(),
    )
    .unwrap();
    let roots: Vec<[u8; 32]> = meta["segmentRoots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| unhex(r.as_str().unwrap()))
        .collect();
    let metadata = BlobMetadata::new(params, roots).unwrap();
    assert_eq!(
        metadata.blob_id(),
        blob_id,
        "the metadata does not hash to the blob ID"
    );

    // k slivers of segment 0, each verified alone, rebuild the segment (the whole blob here). As a client
    // should, it moves on to the next index when a holder does not give its sliver (503): the put returned
    // once two thirds of the holders had theirs, and the rest may still be receiving.
    let k = params.source_shards();
    let mut verified = Vec::new();
    for index in 0..params.shards() {
        if verified.len() == usize::from(k) {
            break;
        }
        let (status, body) = get_bytes(&format!(
            "{}/v1/blobs/{id}/slivers/{index}?segments=0..1",
            reader.http
        ));
        if status == 503 {
            continue;
        }
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let set = pb::SliverSet::decode(&body[..]).unwrap();
        assert_eq!(set.slivers.len(), 1);
        let (for_blob, sliver): (BlobId, Sliver) = set.slivers[0].clone().try_into().unwrap();
        assert_eq!(
            (for_blob, sliver.index, sliver.segment),
            (blob_id, index, 0)
        );
        // A flipped byte does not verify.
        let mut tampered = sliver.clone();
        let mut bytes = tampered.data.to_vec();
        bytes[0] ^= 1;
        tampered.data = bytes.into();
        assert!(VerifiedSliver::new(tampered, &blob_id).is_err());
        verified.push(VerifiedSliver::new(sliver, &blob_id).unwrap());
    }
    assert_eq!(
        verified.len(),
        usize::from(k),
        "fewer than k holders gave a sliver"
    );
    let mut decoder = SegmentDecoder::new(params);
    let rebuilt = decoder.decode(0, &verified, Consistency::Full).unwrap();
    assert_eq!(rebuilt, data);

    // What is wrong says so.
    for (query, code) in [
        (format!("{}/slivers/9999?segments=0..1", id), 400),
        (format!("{}/slivers/0?segments=1..0", id), 400),
        (format!("{}/slivers/0?segments=0..65", id), 400),
        (format!("{}/slivers/0?nope=1", id), 400),
        (format!("{}/slivers/x", id), 400),
    ] {
        let (status, body) = get_bytes(&format!("{}/v1/blobs/{query}", reader.http));
        assert_eq!(status, code, "{query}: {}", String::from_utf8_lossy(&body));
    }
    let (status, _) = get_bytes(&format!(
        "{}/v1/blobs/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/metadata",
        reader.http
    ));
    assert_eq!(status, 404);
}
