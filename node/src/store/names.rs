//! Name records kept here (`floe_protocol::name`): at most one per name, the greatest seen, in the index's
//! `NAMES` table. Records are tiny and rare, so each change is its own durable transaction rather than going
//! through the sliver log, and the compare-and-replace runs inside it, so two records offered at once cannot
//! both win. This module applies the protocol's rule; it does not decide which record wins.

use floe_protocol::name::{self, Keep, Name, NameKeys, NameRecord};
use floe_protocol::wire::{self, pb};
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError};

/// Name → its record (an encoded `pb::NameRecord`).
pub(super) const NAMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("names");
/// Longest encoded record: 32 + 8 + 32 + 8 + 64 bytes and tags.
const MAX_RECORD_LEN: usize = 256;

/// A record as kept: checked again when read, since the disk is input too.
fn decode(bytes: &[u8], keys: &impl NameKeys) -> Option<NameRecord> {
    let record: pb::NameRecord = wire::decode_body(bytes, MAX_RECORD_LEN, "NameRecord").ok()?;
    NameRecord::from_wire(&record, keys).ok()
}

impl Store {
    /// The record kept for `name`, if any (one that no longer verifies counts as none).
    pub fn name_record(
        &self,
        name: &Name,
        keys: &impl NameKeys,
    ) -> Result<Option<NameRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMES)?;
        let found = table.get(name.as_bytes().as_slice())?;
        Ok(found.and_then(|bytes| decode(bytes.value(), keys)))
    }

    /// Keeps `offered` if it supersedes the record kept for its name (`name::keep`), durably; answers the record
    /// kept afterwards and whether it changed.
    pub fn keep_name_record(
        &self,
        offered: &NameRecord,
        keys: &impl NameKeys,
    ) -> Result<(NameRecord, Keep), StoreError> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut table = txn.open_table(NAMES)?;
            let key = offered.name.as_bytes().as_slice();
            let kept = table.get(key)?.and_then(|b| decode(b.value(), keys));
            match name::keep(kept.as_ref(), offered) {
                Keep::Replace => {
                    table.insert(key, offered.to_wire().encode_to_vec().as_slice())?;
                    (offered.clone(), Keep::Replace)
                }
                Keep::Unchanged => (kept.unwrap_or_else(|| offered.clone()), Keep::Unchanged),
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Every record kept (those that no longer verify are skipped), in name order.
    pub fn name_records(&self, keys: &impl NameKeys) -> Result<Vec<NameRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMES)?;
        let mut records = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            records.extend(decode(value.value(), keys));
        }
        Ok(records)
    }

    /// Forgets the record of `name` if it is still `record` (an expired one; a newer one that arrived meanwhile
    /// stays).
    pub fn forget_name_record(
        &self,
        record: &NameRecord,
        keys: &impl NameKeys,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(NAMES)?;
            let key = record.name.as_bytes().as_slice();
            let kept = table.get(key)?.and_then(|b| decode(b.value(), keys));
            if kept.is_none_or(|kept| kept == *record) {
                table.remove(key)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use floe_protocol::BlobId;
    use floe_protocol::name::{SIGNATURE_LEN, signing_bytes};

    /// Accepts a signature that is the first 64 bytes of the signing bytes' hash, twice: enough to test storage.
    struct Toy;

    fn toy_sign(message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let hash = blake3::hash(message);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature[..32].copy_from_slice(hash.as_bytes());
        signature[32..].copy_from_slice(hash.as_bytes());
        signature
    }

    impl NameKeys for Toy {
        fn verifies(&self, _: &Name, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
            toy_sign(message) == *signature
        }
    }

    fn record(sequence: u64, site: u8) -> NameRecord {
        let name = Name::from_slice(&[4; 32]).unwrap();
        let site_id = BlobId([site; 32]);
        NameRecord {
            name,
            sequence,
            site_id,
            end_epoch: 0,
            signature: toy_sign(&signing_bytes(&name, sequence, &site_id, 0)),
        }
    }

    #[test]
    fn keeps_the_greatest_record_across_reopen_and_forgets_only_what_it_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let name = record(1, 1).name;
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.name_record(&name, &Toy).unwrap(), None);
            assert_eq!(
                store.keep_name_record(&record(2, 2), &Toy).unwrap(),
                (record(2, 2), Keep::Replace)
            );
            // An older record is answered with the newer one kept.
            assert_eq!(
                store.keep_name_record(&record(1, 1), &Toy).unwrap(),
                (record(2, 2), Keep::Unchanged)
            );
            store.close();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.name_record(&name, &Toy).unwrap(), Some(record(2, 2)));
        assert_eq!(store.name_records(&Toy).unwrap(), vec![record(2, 2)]);
        // Forgetting an older record leaves the newer one.
        store.forget_name_record(&record(1, 1), &Toy).unwrap();
        assert_eq!(store.name_record(&name, &Toy).unwrap(), Some(record(2, 2)));
        store.forget_name_record(&record(2, 2), &Toy).unwrap();
        assert_eq!(store.name_record(&name, &Toy).unwrap(), None);
    }
}
