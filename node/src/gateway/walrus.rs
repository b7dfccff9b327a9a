//! Walrus publisher compatibility: the query parameters of `PUT /v1/blobs`, checked, and the answer shapes
//! (`newlyCreated`, `alreadyCertified`) with every field Walrus clients read, each one true of floe.
//!
//! floe has no chain and no Sui objects. What the fields say, documented in docs/operators.md: epochs are floe's
//! own (`--epoch-duration`, `floe_protocol::lifetime`), and `endEpoch` is the epoch a blob is stored until, inclusive
//! (a blob stored before lifetimes existed answers the largest epoch Walrus can name, [`FOREVER_EPOCH`]); a blob's
//! object ID is its blob ID in hex (`0x…`, 32 bytes, the shape of a Sui object ID), which `GET
//! /v1/blobs/by-object-id/{id}` accepts; nothing costs anything. A write is deletable unless `permanent=true` (or
//! `deletable=false`): its answer then carries `deletable: true` and floe's `deletionToken`, which `DELETE
//! /v1/blobs/{id}` takes (`floe_protocol::deletion`). Parameters floe cannot honour get a 400 that says why.

use serde_json::{Value, json};

use floe_protocol::{BlobId, BlobParams, content_type};

use crate::service::{EpochsAsked, PutOutcome};

/// The end epoch answered for a blob without one: the largest a Walrus client can parse.
pub const FOREVER_EPOCH: u32 = u32::MAX;

/// An epoch as Walrus answers it (a u32); floe's are u64, and one past u32 (or none) answers [`FOREVER_EPOCH`].
fn walrus_epoch(epoch: u64) -> u32 {
    u32::try_from(epoch).unwrap_or(FOREVER_EPOCH)
}

/// The checked query of a `PUT /v1/blobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutQuery {
    /// Store even if this node already holds a certificate for the blob.
    pub force: bool,
    /// The media type from `?content_type=`, if given (the header's otherwise).
    pub content_type: Option<String>,
    /// `?epochs=` as asked (the node's `--default-epochs` if absent).
    pub epochs: Option<EpochsAsked>,
    /// `?permanent=true` (or `?deletable=false`): no deletion token, and nobody can delete the blob before its end
    /// epoch. The default is deletable, as in Walrus.
    pub permanent: bool,
}

/// Why a query is refused: a message for the 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

/// The query parameters floe knows, for the error that names an unknown one.
const KNOWN: &str =
    "epochs, deletable, permanent, force, send_object_to, share, encoding_type, content_type";

fn flag(name: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

/// Checks the query pairs of a `PUT /v1/blobs`.
pub fn parse_put_query(pairs: &[(String, String)]) -> Result<PutQuery, QueryError> {
    let mut query = PutQuery::default();
    let (mut deletable, mut permanent, mut explicit_permanent) = (None, false, false);
    for (name, value) in pairs {
        match name.as_str() {
            "epochs" => {
                query.epochs = Some(if value == "max" {
                    EpochsAsked::Max
                } else {
                    match value.parse::<u64>() {
                        Ok(n) if n >= 1 => EpochsAsked::Count(n),
                        _ => {
                            return Err(QueryError(format!(
                                "epochs must be a whole number of epochs from 1 (this node's --max-epochs at \
                                 most) or \"max\", got {value:?}; see docs/operators.md, \"Lifetimes\""
                            )));
                        }
                    }
                });
            }
            "deletable" => deletable = Some(flag(name, value)?),
            "permanent" => {
                permanent = flag(name, value)?;
                explicit_permanent = true;
            }
            "force" => query.force = flag(name, value)?,
            "send_object_to" => {
                return Err(QueryError(
                    "floe has no Sui objects to send: leave send_object_to out (the blob ID is all there is)".into(),
                ));
            }
            "share" => {
                if flag(name, value)? {
                    return Err(QueryError(
                        "floe has no Sui objects to share: leave share out or set it to false"
                            .into(),
                    ));
                }
            }
            "encoding_type" => {
                if value != "rs-simd" {
                    return Err(QueryError(format!(
                        "floe encodes with rs-simd (Reed-Solomon over GF(2^16)); encoding_type {value:?} is not \
                         available"
                    )));
                }
            }
            "content_type" => {
                let checked = content_type::check(value)
                    .map_err(|e| QueryError(format!("content_type: {e}")))?;
                query.content_type = Some(checked.to_owned());
            }
            other => {
                return Err(QueryError(format!(
                    "unknown query parameter {other:?}; known: {KNOWN}"
                )));
            }
        }
    }
    match (deletable, permanent) {
        (Some(true), true) => {
            return Err(QueryError(
                "a blob cannot be both deletable and permanent".into(),
            ));
        }
        (Some(false), false) if explicit_permanent => {
            return Err(QueryError(
                "deletable=false with permanent=false leaves no kind of blob: a blob is deletable or permanent"
                    .into(),
            ));
        }
        _ => {}
    }
    query.permanent = permanent || deletable == Some(false);
    Ok(query)
}

/// The object ID floe gives a blob: its ID in hex, the shape of a Sui object ID.
pub fn object_id(blob_id: &BlobId) -> String {
    format!("0x{}", hex(blob_id.as_bytes()))
}

/// The blob ID behind an object ID from [`object_id`], if it is one.
pub fn blob_id_of_object(object: &str) -> Option<BlobId> {
    let hex = object.strip_prefix("0x")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    BlobId::from_slice(&bytes?).ok()
}

/// Bytes the holders store for a blob: every sliver of every segment.
pub fn encoded_length(params: &BlobParams) -> u64 {
    params
        .index_bytes()
        .saturating_mul(u64::from(params.shards()))
}

/// The Walrus answer to a put: `newlyCreated` or `alreadyCertified`, plus floe's certificate.
pub fn put_answer(outcome: &PutOutcome, encoded_length: u64) -> Value {
    let certificate: Vec<Value> = outcome
        .certificate
        .receipts
        .iter()
        .map(|r| {
            json!({"index": r.index, "holderPublicKey": hex(&r.holder_public_key), "signature": hex(&r.signature)})
        })
        .collect();
    let id = outcome.blob_id.to_string();
    let object = object_id(&outcome.blob_id);
    let token = outcome.deletion_token.map(|t| hex(&t.0));
    if outcome.already_certified {
        let mut answer = json!({"alreadyCertified": {
            "blobId": id,
            "endEpoch": walrus_epoch(outcome.end_epoch),
            "object": object,
            "certificate": certificate,
        }});
        // A deletable put of a blob certified before still adds its writer's claim, with its own token.
        if let Some(token) = token {
            answer["alreadyCertified"]["deletionToken"] = Value::String(token);
        }
        return answer;
    }
    let mut answer = json!({
        "newlyCreated": {
            "blobObject": {
                "id": object,
                "registeredEpoch": walrus_epoch(outcome.epoch),
                "blobId": id,
                "size": outcome.size,
                "encodingType": "rs-simd",
                "certifiedEpoch": walrus_epoch(outcome.epoch),
                "storage": {
                    "id": object,
                    "startEpoch": walrus_epoch(outcome.epoch),
                    "endEpoch": walrus_epoch(outcome.end_epoch),
                    "storageSize": encoded_length,
                },
                "deletable": token.is_some(),
                "shards": outcome.shards,
                "certificate": certificate,
            },
            "resourceOperation": {"registerFromScratch": {
                "encodedLength": encoded_length,
                "epochsAhead": outcome.end_epoch.saturating_sub(outcome.epoch),
            }},
            "cost": 0,
        }
    });
    // floe's own field, beside Walrus' (whose clients ignore what they do not know): shown once, never stored
    // by this node.
    if let Some(token) = token {
        answer["newlyCreated"]["deletionToken"] = Value::String(token);
    }
    answer
}

/// A deletion token as `deletionToken` shows it (64 hex digits), read back.
pub fn parse_token(text: &str) -> Option<floe_protocol::deletion::Token> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut token = [0u8; 32];
    for (i, byte) in token.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(floe_protocol::deletion::Token(token))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn good_queries_pass_and_bad_values_are_named() {
        let ok = parse_put_query(&pairs(&[
            ("epochs", "5"),
            ("deletable", "true"),
            ("force", "true"),
            ("encoding_type", "rs-simd"),
            ("content_type", "text/html"),
            ("share", "false"),
        ]))
        .unwrap();
        assert!(ok.force);
        assert_eq!(ok.epochs, Some(EpochsAsked::Count(5)));
        assert_eq!(ok.content_type.as_deref(), Some("text/html"));
        assert_eq!(
            parse_put_query(&pairs(&[("epochs", "max")]))
                .unwrap()
                .epochs,
            Some(EpochsAsked::Max)
        );
        for (query, needle) in [
            (vec![("epochs", "notanumber")], "epochs must be"),
            (vec![("epochs", "0")], "epochs must be"),
            (vec![("epochs", "-1")], "epochs must be"),
            (
                vec![("deletable", "yes")],
                "deletable must be true or false",
            ),
            (vec![("permanent", "1")], "permanent must be"),
            (
                vec![("permanent", "true"), ("deletable", "true")],
                "both deletable and permanent",
            ),
            (vec![("send_object_to", "0x1")], "no Sui objects"),
            (vec![("share", "true")], "no Sui objects"),
            (vec![("encoding_type", "RS2")], "rs-simd"),
            (vec![("content_type", "nope")], "content_type"),
            (vec![("epoch", "3")], "unknown query parameter \"epoch\""),
        ] {
            let error = parse_put_query(&pairs(&query)).unwrap_err().to_string();
            assert!(error.contains(needle), "{query:?}: {error}");
        }
    }

    #[test]
    fn blobs_are_deletable_unless_asked_permanent() {
        let permanent = |list: &[(&str, &str)]| parse_put_query(&pairs(list)).unwrap().permanent;
        assert!(!permanent(&[]));
        assert!(!permanent(&[("deletable", "true")]));
        assert!(!permanent(&[("permanent", "false")]));
        assert!(permanent(&[("permanent", "true")]));
        assert!(permanent(&[("deletable", "false")]));
        assert!(permanent(&[("deletable", "false"), ("permanent", "true")]));
        let error = parse_put_query(&pairs(&[("deletable", "false"), ("permanent", "false")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("deletable or permanent"), "{error}");
    }

    #[test]
    fn tokens_read_back_as_answered() {
        let token = floe_protocol::deletion::Token([0xab; 32]);
        assert_eq!(parse_token(&hex(&token.0)), Some(token));
        assert_eq!(parse_token(&hex(&token.0).to_uppercase()), Some(token));
        assert_eq!(parse_token("ab"), None);
        assert_eq!(parse_token(&"zz".repeat(32)), None);
        assert_eq!(parse_token(&"é".repeat(32)), None);
    }

    #[test]
    fn object_ids_round_trip_and_strangers_are_refused() {
        let id: BlobId = "A".repeat(43).parse().unwrap();
        let object = object_id(&id);
        assert_eq!(object.len(), 66);
        assert_eq!(blob_id_of_object(&object), Some(id));
        assert_eq!(blob_id_of_object("0x12"), None);
        assert_eq!(blob_id_of_object(&format!("0x{}", "zz".repeat(32))), None);
        assert_eq!(blob_id_of_object(&"é".repeat(33)), None);
    }

    #[test]
    fn the_encoded_length_counts_every_sliver() {
        let params = BlobParams::new(
            floe_protocol::EncodingType::RsSimd,
            10,
            1 << 20,
            (3 << 20) + 5,
        )
        .unwrap();
        let expected: u64 = (0..params.segment_count())
            .map(|s| u64::try_from(params.sliver_len(s).unwrap()).unwrap() * 10)
            .sum();
        assert_eq!(encoded_length(&params), expected);
        let empty = BlobParams::new(floe_protocol::EncodingType::RsSimd, 10, 1 << 20, 0).unwrap();
        let expected: u64 = (0..empty.segment_count())
            .map(|s| u64::try_from(empty.sliver_len(s).unwrap()).unwrap() * 10)
            .sum();
        assert_eq!(encoded_length(&empty), expected);
    }
}
