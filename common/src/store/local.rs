//! [`ObjectStore`] on a local directory: `s3://BUCKET/KEY` is the file `ROOT/BUCKET/KEY`. The quick start's lake.
//!
//! Objects appear whole or not at all, as on S3: every write goes to a hidden temporary file in the target's
//! directory and is renamed into place. A multipart upload keeps its parts under `ROOT/.uploads/ID/` (no S3
//! bucket name starts with a dot) until it is completed (parts concatenated, renamed into place) or aborted.

use super::{
    ByteChunks, ChecksumAlgorithm, ObjectStore, Precondition, StoreError, StoreErrorKind, Tagged, Upload, UploadedPart,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::path::{Component, Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory of buckets.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

const UPLOADS: &str = ".uploads";

impl LocalStore {
    /// A store rooted at `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        std::fs::read_dir(self.root.join(UPLOADS)).map(|dir| dir.count()).unwrap_or(0)
    }

    /// The file of `s3://bucket/key`; refuses names that would leave the bucket's directory.
    fn path(&self, operation: &'static str, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let plain = |p: &Path| p.components().all(|c| matches!(c, Component::Normal(_)));
        if bucket.is_empty() || bucket.starts_with('.') || bucket.contains('/') || key.is_empty() || !plain(relative) {
            return Err(failure(operation, bucket, key, "not a bucket and key this store can hold"));
        }
        Ok(self.root.join(bucket).join(relative))
    }

    /// Holds every other conditional write on this directory back, in this process and in others (`producer
    /// submit` beside `producer serve` on the quick start's lake): the check and the write are one step.
    async fn conditional_write_lock(&self) -> Result<ConditionalWriteLock, StoreError> {
        let in_process = CONDITIONAL_WRITES.lock().await;
        let (root, path) = (self.root.clone(), self.root.join(CONDITIONAL_WRITES_LOCK));
        let locked = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await;
        let unlockable = |e: &dyn std::fmt::Display| failure("PutObject", "", CONDITIONAL_WRITES_LOCK, e.to_string());
        let file = locked.map_err(|e| unlockable(&e))?.map_err(|e| unlockable(&e))?;
        Ok(ConditionalWriteLock { _in_process: in_process, _across_processes: file })
    }

    fn upload_dir(&self, upload: &Upload) -> PathBuf {
        self.root.join(UPLOADS).join(&upload.id)
    }
}

/// Conditional writes in this process, one at a time; [`LocalStore::conditional_write_lock`] adds the other
/// processes sharing the directory.
static CONDITIONAL_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The file whose advisory lock makes a conditional write one step across processes.
const CONDITIONAL_WRITES_LOCK: &str = ".conditional-writes.lock";

/// A conditional write's hold on the store: released when dropped.
struct ConditionalWriteLock {
    _in_process: tokio::sync::MutexGuard<'static, ()>,
    _across_processes: std::fs::File,
}

/// A version tag for an object: its CRC-64, so that equal bytes are the same version.
fn tag_of(body: &Bytes) -> String {
    let algorithm = ChecksumAlgorithm::Crc64Nvme;
    format!("\"{}\"", algorithm.encode(algorithm.of(std::slice::from_ref(body))))
}

fn failure(operation: &'static str, bucket: &str, key: &str, message: impl ToString) -> StoreError {
    StoreError::transient(operation, bucket, key, message)
}

/// A hidden sibling of `path` to write before renaming onto it.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// Writes `chunks` to `path` atomically (temporary file, then rename).
async fn write_atomically(path: &Path, chunks: impl IntoIterator<Item = Bytes>) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let temp = temporary(path);
    let written = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        for chunk in chunks {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
}

/// Every file under `dir`, as `/`-separated paths relative to `base`, hidden files left out.
fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, base, out)?;
        } else if let Ok(relative) = path.strip_prefix(base) {
            let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

impl ObjectStore for LocalStore {
    fn put<'a>(&'a self, bucket: &'a str, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let path = self.path("PutObject", bucket, key)?;
            write_atomically(&path, [body]).await.map_err(|e| failure("PutObject", bucket, key, e))
        }
        .boxed()
    }

    fn get_stream<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<ByteChunks>, StoreError>> {
        async move {
            let path = self.path("GetObject", bucket, key)?;
            let file = match tokio::fs::File::open(&path).await {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(failure("GetObject", bucket, key, e)),
            };
            let (bucket, key) = (bucket.to_owned(), key.to_owned());
            let chunks = futures::stream::unfold(Some(file), move |file| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move {
                    let mut file = file?;
                    let mut chunk = bytes::BytesMut::with_capacity(64 * 1024);
                    match file.read_buf(&mut chunk).await {
                        Ok(0) => None,
                        Ok(_) => Some((Ok(chunk.freeze()), Some(file))),
                        Err(e) => Some((Err(failure("GetObject", &bucket, &key, e)), None)),
                    }
                }
            });
            Ok(Some(chunks.boxed()))
        }
        .boxed()
    }

    fn get_tagged<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Tagged>, StoreError>> {
        async move {
            let body = self.get(bucket, key).await?;
            Ok(body.map(|body| Tagged { tag: tag_of(&body), body }))
        }
        .boxed()
    }

    fn put_if<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: Bytes,
        condition: &'a Precondition,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        async move {
            let _one_at_a_time = self.conditional_write_lock().await?;
            let current = self.get(bucket, key).await?.map(|current| tag_of(&current));
            let holds = match condition {
                Precondition::Absent => current.is_none(),
                Precondition::Tagged(tag) => current.as_ref() == Some(tag),
            };
            if !holds {
                let mut error = failure("PutObject", bucket, key, format!("PreconditionFailed: {condition:?}"));
                error.kind = StoreErrorKind::Conflict;
                return Err(error);
            }
            let tag = tag_of(&body);
            self.put(bucket, key, body).await?;
            Ok(tag)
        }
        .boxed()
    }

    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        async move {
            let path = self.path("GetObject", bucket, key)?;
            match tokio::fs::read(&path).await {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failure("GetObject", bucket, key, e)),
            }
        }
        .boxed()
    }

    fn list<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        async move {
            let base = self.root.join(bucket);
            let listed = tokio::task::spawn_blocking(move || {
                let mut keys = Vec::new();
                walk(&base, &base, &mut keys).map(|()| keys)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|listed| listed);
            let mut keys = listed.map_err(|e| failure("ListObjectsV2", bucket, prefix, e))?;
            keys.retain(|k| k.starts_with(prefix));
            keys.sort();
            Ok(keys)
        }
        .boxed()
    }

    fn copy<'a>(&'a self, bucket: &'a str, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let (source, target) = (self.path("CopyObject", bucket, from)?, self.path("CopyObject", bucket, to)?);
            let copied = async {
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                let temp = temporary(&target);
                tokio::fs::copy(&source, &temp).await?;
                tokio::fs::rename(&temp, &target).await
            };
            copied.await.map_err(|e| failure("CopyObject", bucket, to, e))
        }
        .boxed()
    }

    fn create_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        _content_type: &'a str,
        checksum: ChecksumAlgorithm,
    ) -> BoxFuture<'a, Result<Upload, StoreError>> {
        async move {
            self.path("CreateMultipartUpload", bucket, key)?;
            let upload = Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                id: format!("{:032x}", rand::random::<u128>()),
                checksum,
            };
            tokio::fs::create_dir_all(self.upload_dir(&upload))
                .await
                .map_err(|e| failure("CreateMultipartUpload", bucket, key, e))?;
            Ok(upload)
        }
        .boxed()
    }

    fn upload_part<'a>(
        &'a self,
        upload: &'a Upload,
        number: i32,
        body: Vec<Bytes>,
        checksum: u64,
    ) -> BoxFuture<'a, Result<UploadedPart, StoreError>> {
        async move {
            let fail = |e| failure("UploadPart", &upload.bucket, &upload.key, e);
            let dir = self.upload_dir(upload);
            if !tokio::fs::try_exists(&dir).await.map_err(fail)? {
                return Err(failure("UploadPart", &upload.bucket, &upload.key, "NoSuchUpload"));
            }
            if upload.checksum.of(&body) != checksum {
                return Err(failure(
                    "UploadPart",
                    &upload.bucket,
                    &upload.key,
                    "BadDigest: the part's checksum differs",
                ));
            }
            write_atomically(&dir.join(format!("{number:05}")), body).await.map_err(fail)?;
            Ok(UploadedPart { number, etag: None, checksum: upload.checksum.encode(checksum) })
        }
        .boxed()
    }

    fn complete_upload<'a>(
        &'a self,
        upload: &'a Upload,
        parts: Vec<UploadedPart>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let fail = |e: std::io::Error| failure("CompleteMultipartUpload", &upload.bucket, &upload.key, e);
            let target = self.path("CompleteMultipartUpload", &upload.bucket, &upload.key)?;
            let dir = self.upload_dir(upload);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(fail)?;
            }
            let temp = temporary(&target);
            let joined = async {
                let mut file = tokio::fs::File::create(&temp).await?;
                for part in &parts {
                    let mut source = tokio::fs::File::open(dir.join(format!("{:05}", part.number))).await?;
                    tokio::io::copy(&mut source, &mut file).await?;
                }
                file.flush().await?;
                tokio::fs::rename(&temp, &target).await
            };
            if let Err(e) = joined.await {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(fail(e));
            }
            tokio::fs::remove_dir_all(&dir).await.map_err(fail)
        }
        .boxed()
    }

    fn abort_upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            match tokio::fs::remove_dir_all(self.upload_dir(upload)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(failure("AbortMultipartUpload", &upload.bucket, &upload.key, e)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uploads a part with its checksum, as the relay does.
    async fn part(store: &LocalStore, upload: &Upload, number: i32, chunks: &[&'static [u8]]) -> UploadedPart {
        let body: Vec<Bytes> = chunks.iter().map(|c| Bytes::from_static(c)).collect();
        let checksum = upload.checksum.of(&body);
        store.upload_part(upload, number, body, checksum).await.unwrap()
    }

    #[tokio::test]
    async fn a_conditional_write_holds_the_directory_against_other_processes_too() {
        let (store, _dir) = store();
        let lock_file = store.root().join(CONDITIONAL_WRITES_LOCK);
        // Another process (util-linux's flock) trying the lock without waiting.
        let other_process_gets_it = || {
            let status = std::process::Command::new("flock").arg("-n").arg(&lock_file).arg("true").status();
            status.expect("flock (util-linux) runs").success()
        };
        let held = store.conditional_write_lock().await.unwrap();
        assert!(!other_process_gets_it(), "held by this process: another cannot take it");
        drop(held);
        assert!(other_process_gets_it(), "released");
        store.put_if("b", "k", Bytes::from_static(b"1"), &Precondition::Absent).await.unwrap();
        assert!(other_process_gets_it(), "released after the write");
    }

    /// A store in a new directory (removed when the second value is dropped).
    fn store() -> (LocalStore, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        (LocalStore::new(root.path()), root)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn objects_are_files_and_uploads_appear_only_when_complete() {
        let (store, _root) = store();
        store.put("raw", "Account/a.metadata.json", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(std::fs::read(store.root().join("raw/Account/a.metadata.json")).unwrap(), b"{}");
        assert_eq!(store.get("raw", "missing").await.unwrap(), None);

        let upload = store.create_upload("raw", "Account/a.csv", "text/csv", ChecksumAlgorithm::Crc32c).await.unwrap();
        let second = part(&store, &upload, 2, &[b"c\n"]).await;
        let first = part(&store, &upload, 1, &[b"a,", b"b\n"]).await;
        let wrong = store.upload_part(&upload, 3, vec![Bytes::from_static(b"d\n")], 0).await.unwrap_err();
        assert!(wrong.message.contains("BadDigest"), "{wrong}");
        assert_eq!(store.get("raw", "Account/a.csv").await.unwrap(), None, "invisible before completion");
        assert_eq!(store.list("raw", "Account/").await.unwrap(), ["Account/a.metadata.json"]);
        store.complete_upload(&upload, vec![first, second]).await.unwrap();
        assert_eq!(store.get("raw", "Account/a.csv").await.unwrap().unwrap(), "a,b\nc\n");
        assert_eq!(store.open_uploads(), 0);

        store.copy("raw", "Account/a.csv", "Account.csv").await.unwrap();
        assert_eq!(store.list("raw", "").await.unwrap(), ["Account.csv", "Account/a.csv", "Account/a.metadata.json"]);

        let aborted = store.create_upload("raw", "b.csv", "text/csv", ChecksumAlgorithm::Crc32c).await.unwrap();
        part(&store, &aborted, 1, &[b"x"]).await;
        store.abort_upload(&aborted).await.unwrap();
        assert_eq!(store.open_uploads(), 0);
        assert!(store.upload_part(&aborted, 2, vec![Bytes::from_static(b"y")], 0).await.is_err(), "no such upload");
        assert_eq!(store.get("raw", "b.csv").await.unwrap(), None);
        assert!(store.put("raw", "../escape", Bytes::new()).await.is_err());
        assert!(store.put(".uploads", "x", Bytes::new()).await.is_err());
    }
}
