//! `floe site publish --name-key KEY` and `floe site update DIR --name-key KEY`: points a site's name at a site,
//! and `floe site resolve NAME`.
//!
//! A name is the public half of an ed25519 key kept in a file on the publisher's machine (libp2p's key
//! encoding, as a node's `identity.key`); this module signs the record (`floe_protocol::name`) locally and
//! sends only the signed record to the gateway, so the gateway cannot move the name. The next sequence is the
//! one after the greatest the name's neighbourhood answers; a concurrent move (409) is retried after reading
//! again.

use std::io::Write as _;
use std::path::Path;

use libp2p::identity::{Keypair, ed25519};
use serde_json::{Value, json};

use crate::client::{ClientError, agent, gateway_error, gateway_url, json_answer, read_answer};
use crate::gateway::names::RecordJson;
use floe_protocol::BlobId;
use floe_protocol::name::{self, Name, NameRecord};

/// Tries of a move that lost a race with another move of the same name.
const MOVE_TRIES: usize = 3;

/// Whether a missing key file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    /// Create it if missing (`publish`).
    CreateIfMissing,
    /// It must exist (`update`).
    MustExist,
}

/// Loads the name key at `path`, creating it (mode 0600, never over an existing file) if asked.
pub fn load_key(path: &Path, create: KeyFile) -> Result<ed25519::Keypair, ClientError> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .ok()
            .and_then(|k| k.try_into_ed25519().ok())
            .ok_or_else(|| {
                ClientError::BadArgument(format!(
                    "{} is not an ed25519 name key (libp2p's key encoding)",
                    path.display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create == KeyFile::MustExist => {
            Err(ClientError::BadArgument(format!(
                "no name key at {}: `floe site publish DIR --name-key {}` creates one",
                path.display(),
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = ed25519::Keypair::generate();
            let bytes = Keypair::from(keypair.clone())
                .to_protobuf_encoding()
                .map_err(|e| ClientError::BadArgument(format!("encoding a new name key: {e}")))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let local = |source| ClientError::Local {
                what: "creating the name key",
                path: path.to_path_buf(),
                source,
            };
            let mut file = options.open(path).map_err(local)?;
            file.write_all(&bytes).map_err(local)?;
            file.sync_all().map_err(local)?;
            Ok(keypair)
        }
        Err(source) => Err(ClientError::Local {
            what: "reading the name key",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The name of a key.
pub fn name_of(key: &ed25519::Keypair) -> Result<Name, ClientError> {
    Name::from_slice(&key.public().to_bytes())
        .map_err(|e| ClientError::BadArgument(format!("name key: {e}")))
}

/// The name's record as the gateway resolves it; `None` if no peer keeps one.
fn current(base: &str, name: &Name) -> Result<Option<NameRecord>, ClientError> {
    let url = format!("{base}/v1/names/{name}");
    let mut response = agent()
        .get(&url)
        .call()
        .map_err(|e| ClientError::Connection {
            url: url.clone(),
            source: Box::new(e),
        })?;
    let status = response.status().as_u16();
    if status == 404 {
        // Drain the body so the connection can be reused.
        let _ = read_answer(&url, &mut response);
        return Ok(None);
    }
    let answer = json_answer(&url, &mut response)?;
    let record: RecordJson = serde_json::from_value(strip_extras(answer))
        .map_err(|e| ClientError::BadAnswer(format!("name record: {e}")))?;
    let wire = record
        .to_wire()
        .map_err(|e| ClientError::BadAnswer(format!("name record: {e}")))?;
    // The gateway is not trusted with the sequence either: the record must carry the owner's signature.
    NameRecord::from_wire_for(name, &wire, &crate::service::NameSignatures)
        .map(Some)
        .map_err(|e| ClientError::BadAnswer(format!("name record: {e}")))
}

/// A record answer without the gateway's extra fields.
fn strip_extras(mut answer: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.retain(|k, _| {
            matches!(
                k.as_str(),
                "name" | "sequence" | "siteId" | "endEpoch" | "signature"
            )
        });
    }
    answer
}

/// Signs a record moving `key`'s name to `site` until `end_epoch` (0: no end) and publishes it through
/// `gateway`; answers `{name, sequence, siteId, endEpoch, keptBy, asked, url}`.
pub fn point(
    gateway: &str,
    key: &ed25519::Keypair,
    site: &BlobId,
    end_epoch: u64,
) -> Result<Value, ClientError> {
    let base = gateway_url(gateway)?;
    let name = name_of(key)?;
    let mut last = None;
    for _ in 0..MOVE_TRIES {
        let found = current(&base, &name)?;
        let sequence = name::next_sequence(found.as_ref())
            .map_err(|e| ClientError::BadArgument(e.to_string()))?;
        let bytes = name::signing_bytes(&name, sequence, site, end_epoch);
        let signature: [u8; name::SIGNATURE_LEN] = key.sign(&bytes).try_into().map_err(|_| {
            ClientError::BadArgument("ed25519 signature of the wrong length".into())
        })?;
        let record = NameRecord {
            name,
            sequence,
            site_id: *site,
            end_epoch,
            signature,
        };
        let url = format!("{base}/v1/names/{name}");
        let body = serde_json::to_vec(&RecordJson::of(&record))
            .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let mut response = agent()
            .put(&url)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map_err(|e| ClientError::Connection {
                url: url.clone(),
                source: Box::new(e),
            })?;
        if response.status().as_u16() == 409 {
            // Another move of this name won meanwhile: sign again after the one kept.
            last = Some(gateway_error(409, &read_answer(&url, &mut response)?));
            continue;
        }
        let mut answer = json_answer(&url, &mut response)?;
        answer["url"] = json!(format!("{base}/v1/sites/{name}/"));
        answer["originUrl"] = json!(crate::site_publish::origin_url(&base, &name.to_string()));
        return Ok(answer);
    }
    Err(last.unwrap_or_else(|| ClientError::BadAnswer("the name did not move".into())))
}

/// `floe site resolve NAME`: the record the name's neighbourhood answers, checked here.
pub fn resolve(gateway: &str, name: &str) -> Result<Value, ClientError> {
    let base = gateway_url(gateway)?;
    let name: Name = name
        .parse()
        .map_err(|e| ClientError::BadArgument(format!("bad name {name:?}: {e}")))?;
    match current(&base, &name)? {
        Some(record) => {
            let mut answer = json!(RecordJson::of(&record));
            answer["url"] = json!(format!("{base}/v1/sites/{name}/"));
            answer["originUrl"] = json!(crate::site_publish::origin_url(&base, &name.to_string()));
            Ok(answer)
        }
        None => Err(ClientError::Gateway {
            status: 404,
            message: format!("no peer keeps a record of name {name}"),
            error: None,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.key");
        let missing = load_key(&path, KeyFile::MustExist).unwrap_err();
        assert!(missing.to_string().contains("creates one"), "{missing}");
        let created = load_key(&path, KeyFile::CreateIfMissing).unwrap();
        let loaded = load_key(&path, KeyFile::MustExist).unwrap();
        assert_eq!(created.public(), loaded.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "a name key is readable by its owner only");
        }
        std::fs::write(&path, b"not a key").unwrap();
        let bad = load_key(&path, KeyFile::CreateIfMissing).unwrap_err();
        assert!(bad.to_string().contains("not an ed25519 name key"), "{bad}");
    }

    #[test]
    fn records_signed_here_verify_as_the_node_checks_them() {
        let key = ed25519::Keypair::generate();
        let name = name_of(&key).unwrap();
        let site = BlobId([9; 32]);
        let bytes = name::signing_bytes(&name, 4, &site, 0);
        let record = floe_protocol::wire::pb::NameRecord {
            name: name.as_bytes().to_vec().into(),
            sequence: 4,
            site_id: site.as_bytes().to_vec().into(),
            end_epoch: 0,
            signature: key.sign(&bytes).into(),
        };
        NameRecord::from_wire(&record, &crate::service::NameSignatures).unwrap();
    }
}
