//! Records in object storage, JSON under a prefix, each written conditionally: created only if absent, updated
//! only if still the version this process last read or wrote. The ledger ([`crate::ledger`]) and the published
//! marks ([`crate::marks`]) are both kept as records.

use crate::store::{ObjectStore, Precondition, StoreError, StoreErrorKind};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A ledger record that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record is not what this build writes.
    #[error("ledger record {key} is unreadable: {detail}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// Records under a prefix of a bucket.
#[derive(Clone)]
pub(crate) struct Records {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    /// The version of each record this process last read or wrote (`None`: read as absent): the condition of its
    /// next write. A record not here is written only if absent; a stale version makes the write a conflict.
    versions: Arc<Mutex<HashMap<String, Option<String>>>>,
}

/// Records whose versions a process remembers; past this the memory is cleared (a forgotten version costs a
/// conflict and a read, never a lost write).
const VERSIONS_KEPT: usize = 10_000;

impl Records {
    /// The records under `prefix` (ending in `/`) of `bucket`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self { store, bucket: bucket.into(), prefix: prefix.into(), versions: Arc::default() }
    }

    /// Names (relative to the prefix) of the records under `under`.
    pub(crate) async fn list(&self, under: &str) -> Result<Vec<String>, LedgerError> {
        let keys = self.store.list(&self.bucket, &format!("{}{under}", self.prefix)).await?;
        Ok(keys.into_iter().filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_owned)).collect())
    }

    /// A record, remembering the version read for the next write of it.
    pub(crate) async fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, LedgerError> {
        let key = format!("{}{name}", self.prefix);
        let tagged = self.store.get_tagged(&self.bucket, &key).await?;
        self.remember(name, tagged.as_ref().map(|t| t.tag.clone()));
        let Some(tagged) = tagged else { return Ok(None) };
        serde_json::from_slice(&tagged.body).map(Some).map_err(|e| LedgerError::Corrupt { key, detail: e.to_string() })
    }

    /// Writes a record if it is still the version this process last read or wrote (absent, if it never did).
    pub(crate) async fn write<T: Serialize>(&self, name: &str, record: &T) -> Result<(), LedgerError> {
        let known = self.versions().get(name).cloned().flatten();
        let condition = match known {
            Some(tag) => Precondition::Tagged(tag),
            None => Precondition::Absent,
        };
        let written = self.put(name, record, &condition).await;
        match &written {
            Ok(tag) => self.remember(name, Some(tag.clone())),
            // The version remembered is not the store's: forget it (the next try reads the record again).
            Err(_) => {
                self.versions().remove(name);
            }
        }
        written.map(|_| ())
    }

    /// Writes a record that is written once and never changed (a published mark); writing it again is a no-op.
    pub(crate) async fn write_once<T: Serialize>(&self, name: &str, record: &T) -> Result<(), LedgerError> {
        match self.put(name, record, &Precondition::Absent).await {
            Err(LedgerError::Store(e)) if e.is_conflict() => Ok(()),
            written => written.map(|_| ()),
        }
    }

    /// Proves the store honours the two conditions every record's write relies on, under `probe/` of the prefix:
    /// a create (`If-None-Match: *`) over an existing object and an update (`If-Match`) of a version that is not
    /// the object's must both be refused. A store that takes either (Garage 2.5 takes both) would let two writers
    /// overwrite each other's records: `Err` names the store and the condition it ignored.
    pub(crate) async fn prove_conditional_writes(&self) -> Result<(), LedgerError> {
        const PROBE: &str = "probe/conditional-writes.json";
        let key = format!("{}{PROBE}", self.prefix);
        let body = || Bytes::from_static(b"{\"probe\":\"conditional writes\"}");
        let refused = |condition: &str| {
            let mut error = StoreError::transient(
                "PutObject",
                &self.bucket,
                &key,
                format!(
                    "the store ignores {condition}: a conditional write that must be refused was taken, so two \
                     writers of the ledger would overwrite each other; point the ledger at a store that honours \
                     conditional writes (Amazon S3 does)"
                ),
            );
            error.kind = StoreErrorKind::Permanent;
            error
        };
        // Created now, or by an earlier start: either way it exists after this.
        match self.store.put_if(&self.bucket, &key, body(), &Precondition::Absent).await {
            Err(e) if !e.is_conflict() => return Err(e.into()),
            _ => {}
        }
        for (condition, name) in [
            (Precondition::Absent, "If-None-Match"),
            (Precondition::Tagged("\"zle-probe-not-a-version\"".to_owned()), "If-Match"),
        ] {
            match self.store.put_if(&self.bucket, &key, body(), &condition).await {
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
                Ok(_) => return Err(refused(name).into()),
            }
        }
        Ok(())
    }

    async fn put<T: Serialize>(&self, name: &str, record: &T, condition: &Precondition) -> Result<String, LedgerError> {
        let key = format!("{}{name}", self.prefix);
        let body = serde_json::to_vec_pretty(record)
            .map_err(|e| LedgerError::Corrupt { key: key.clone(), detail: e.to_string() })?;
        Ok(self.store.put_if(&self.bucket, &key, Bytes::from(body), condition).await?)
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, name: &str, tag: Option<String>) {
        let mut versions = self.versions();
        if versions.len() >= VERSIONS_KEPT {
            versions.clear();
        }
        versions.insert(name.to_owned(), tag);
    }
}
