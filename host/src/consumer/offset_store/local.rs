//! The BROADCASTING store: every client keeps its own offsets in
//! `<dir>/<clientId>/<group>/offsets.json` (reference 4.9), in the fastjson form Java writes
//! (`{"offsetTable":{{"brokerName":…,"queueId":…,"topic":…}:offset}}`), so Java tools can read it.
//!
//! # Writing
//! A write goes to `offsets.json.tmp`, is fsynced, the current file is renamed to
//! `offsets.json.bak`, and the temporary file is renamed over `offsets.json`. At every instant
//! at least one of `offsets.json` and `offsets.json.bak` is complete, and a crash can only leave
//! an *older* offset behind, which means redelivery, never loss. `load` prefers the main file and
//! falls back to the backup when the main one is missing or corrupt.
//!
//! File work runs on tokio's blocking pool (`spawn_blocking`): the file is small, but an fsync can
//! stall for a long time on a busy disk, and on a two-core runtime that would freeze the pull loops
//! and heartbeats sharing the worker thread. The blocking closure finishes even if the caller's
//! future is dropped, so a cancelled persist still leaves a whole file.
//!
//! # What is on disk
//! The store keeps a copy of what it last wrote (or loaded): a write for one queue merges into it
//! instead of replacing the file with memory, a queue briefly absent from memory (between
//! `remove` and the rebalance reading it back) keeps its durable offset, a round that changes
//! nothing writes nothing, and reading "from the store" needs no I/O — this client is the file's
//! only writer, so that copy *is* the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::table::{OffsetTable, SharedTable};
use super::{OffsetStoreError, lock};
use crate::protocol::body::OffsetSerializeWrapper;
use crate::protocol::{MessageQueue, QueueOffset};

/// Java's default directory name under the user's home (`rocketmq.client.localOffsetStoreDir`).
pub const DEFAULT_DIR_NAME: &str = ".rocketmq_offsets";

type Offsets = BTreeMap<MessageQueue, QueueOffset>;

/// Offsets in memory, persisted to a local file. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalOffsetStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: OffsetFiles,
    table: SharedTable,
    /// The file's content as last written or loaded; `None` until `load`.
    durable: Mutex<Option<Offsets>>,
    /// Serializes loads and writes (held on the blocking pool only, never across an `.await`),
    /// so two persists cannot interleave their renames or publish `durable` out of order.
    write_lock: Mutex<()>,
}

impl LocalOffsetStore {
    /// A store for `group` on client `client_id` under `dir` (see [`default_dir`](Self::default_dir)).
    /// Nothing is read until [`OffsetStore::load`](super::OffsetStore::load).
    pub fn new(dir: &Path, client_id: &str, group: &str) -> Result<Self, OffsetStoreError> {
        let folder =
            dir.join(path_component("client id", client_id)?).join(path_component("group", group)?);
        Ok(Self {
            inner: Arc::new(Inner {
                files: OffsetFiles::new(&folder),
                table: SharedTable::default(),
                durable: Mutex::new(None),
                write_lock: Mutex::new(()),
            }),
        })
    }

    /// `~/.rocketmq_offsets`, Java's default; `None` when the home directory is unknown.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::home_dir().map(|home| home.join(DEFAULT_DIR_NAME))
    }

    /// The offsets file (`…/offsets.json`).
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.inner.files.main
    }

    pub(super) fn table(&self) -> &SharedTable {
        &self.inner.table
    }

    pub(super) async fn load(&self) -> Result<(), OffsetStoreError> {
        self.blocking(|inner| {
            let _writing = lock(&inner.write_lock);
            let offsets = inner.files.read()?;
            inner.table.with(|t| {
                for (mq, offset) in &offsets {
                    t.update(mq, *offset, false);
                }
            });
            tracing::debug!(path = %inner.files.main.display(), queues = offsets.len(), "offsets loaded");
            *lock(&inner.durable) = Some(offsets);
            Ok(())
        })
        .await
    }

    /// The durable offset; found values also update memory, as in Java.
    pub(super) fn read_store(
        &self,
        mq: &MessageQueue,
    ) -> Result<Option<QueueOffset>, OffsetStoreError> {
        let found = match &*lock(&self.inner.durable) {
            Some(durable) => durable.get(mq).copied(),
            None => return Err(self.inner.not_loaded()),
        };
        if let Some(offset) = found {
            self.inner.table.with(|t| t.update(mq, offset, false));
        }
        Ok(found)
    }

    /// Writes this queue's in-memory offset into the file, keeping every other entry. (Java's
    /// local `persist` does nothing; a queue removed on rebalance would then be re-read from a
    /// stale file.)
    pub(super) async fn persist(&self, mq: &MessageQueue) -> Result<(), OffsetStoreError> {
        let mq = mq.clone();
        self.blocking(move |inner| {
            inner.write_next(|durable, table| {
                let mut next = durable.clone();
                if let Some(offset) = table.get(&mq) {
                    next.insert(mq, offset);
                }
                next
            })
        })
        .await
    }

    /// Rewrites the file with exactly the owned queues: the in-memory offset, or the durable one
    /// when memory has none. Other queues are forgotten in memory and dropped from the file.
    pub(super) async fn persist_all(
        &self,
        owned: &BTreeSet<MessageQueue>,
    ) -> Result<(), OffsetStoreError> {
        let owned = owned.clone();
        self.blocking(move |inner| {
            inner.write_next(|durable, table| {
                let memory = table.keep_owned(&owned);
                owned
                    .into_iter()
                    .filter_map(|mq| {
                        let offset = memory.get(&mq).or_else(|| durable.get(&mq)).copied()?;
                        Some((mq, offset))
                    })
                    .collect()
            })
        })
        .await
    }

    /// Runs file work on the blocking pool (see the module docs).
    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<R, OffsetStoreError> + Send + 'static,
    ) -> Result<R, OffsetStoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner)).await.map_err(|source| {
            OffsetStoreError::Task { path: self.inner.files.main.clone(), source }
        })?
    }
}

impl Inner {
    fn not_loaded(&self) -> OffsetStoreError {
        OffsetStoreError::NotLoaded { path: self.files.main.clone() }
    }

    /// Computes the next file content from the durable copy and memory (one short table lock),
    /// writes it if it differs, then publishes it as the durable copy. Blocking.
    fn write_next(
        &self,
        next: impl FnOnce(&Offsets, &mut OffsetTable) -> Offsets,
    ) -> Result<(), OffsetStoreError> {
        let _writing = lock(&self.write_lock);
        let Some(durable) = lock(&self.durable).clone() else {
            return Err(self.not_loaded());
        };
        let next = self.table.with(|t| next(&durable, t));
        if next == durable {
            return Ok(());
        }
        let body = OffsetSerializeWrapper { offset_table: next };
        self.files.write(&body.encode())?;
        tracing::debug!(path = %self.files.main.display(), queues = body.offset_table.len(), "offsets written");
        *lock(&self.durable) = Some(body.offset_table);
        Ok(())
    }
}

/// A client id or group as one directory name. They come from our own configuration, but a
/// separator or `..` would still put the file somewhere unexpected, so they are refused.
fn path_component<'a>(what: &'static str, value: &'a str) -> Result<&'a str, OffsetStoreError> {
    let bad = value.is_empty()
        || value == "."
        || value == ".."
        || value.contains(['/', '\\', '\0'])
        || Path::new(value).is_absolute();
    if bad {
        return Err(OffsetStoreError::InvalidPathComponent { what, value: value.to_owned() });
    }
    Ok(value)
}

/// The three paths of one offsets file.
#[derive(Debug)]
struct OffsetFiles {
    main: PathBuf,
    bak: PathBuf,
    tmp: PathBuf,
}

impl OffsetFiles {
    fn new(folder: &Path) -> Self {
        Self {
            main: folder.join("offsets.json"),
            bak: folder.join("offsets.json.bak"),
            tmp: folder.join("offsets.json.tmp"),
        }
    }

    fn folder(&self) -> &Path {
        self.main.parent().unwrap_or(Path::new("."))
    }

    /// The main file, else the backup; empty when neither exists (a first start). A leftover
    /// `.tmp` is never read: it may be the half-written file of a crashed write.
    fn read(&self) -> Result<Offsets, OffsetStoreError> {
        let main_error = match read_file(&self.main) {
            Ok(Some(offsets)) => return Ok(offsets),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        match (read_file(&self.bak), main_error) {
            (Ok(None), None) => Ok(Offsets::new()),
            (Ok(Some(offsets)), main_error) => {
                match main_error {
                    Some(e) => {
                        tracing::warn!(error = %e, backup = %self.bak.display(), "offsets file unusable; loading the backup")
                    }
                    None => {
                        tracing::warn!(missing = %self.main.display(), backup = %self.bak.display(), "offsets file missing; loading the backup")
                    }
                }
                Ok(offsets)
            }
            (Ok(None), Some(main)) => Err(OffsetStoreError::NoUsableFile {
                main: Box::new(main),
                bak: Box::new(not_found(&self.bak)),
            }),
            (Err(bak), main) => Err(OffsetStoreError::NoUsableFile {
                main: Box::new(main.unwrap_or_else(|| not_found(&self.main))),
                bak: Box::new(bak),
            }),
        }
    }

    /// Replaces the file atomically, keeping the previous one as `.bak` (see the module docs).
    fn write(&self, content: &[u8]) -> Result<(), OffsetStoreError> {
        let folder = self.folder();
        fs::create_dir_all(folder).map_err(io_error(folder, "creating the directory"))?;
        if let Err(e) = write_synced(&self.tmp, content) {
            // Best effort: the next write truncates it anyway, and load never reads it.
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        match fs::rename(&self.main, &self.bak) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&self.main, "moving to the backup")(e)),
        }
        fs::rename(&self.tmp, &self.main).map_err(io_error(&self.tmp, "renaming into place"))?;
        sync_dir(folder);
        Ok(())
    }
}

/// The offsets in `path`, `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<Offsets>, OffsetStoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "reading")(e)),
    };
    let body = OffsetSerializeWrapper::decode(&bytes)
        .map_err(|source| OffsetStoreError::Corrupt { path: path.to_owned(), source })?;
    Ok(Some(body.offset_table))
}

fn write_synced(path: &Path, content: &[u8]) -> Result<(), OffsetStoreError> {
    let mut file = File::create(path).map_err(io_error(path, "creating"))?;
    file.write_all(content).map_err(io_error(path, "writing"))?;
    file.sync_all().map_err(io_error(path, "syncing"))
}

/// Makes the renames durable. Best effort: some file systems refuse to sync a directory, and the
/// data itself is already synced.
fn sync_dir(folder: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(folder).and_then(|d| d.sync_all()) {
        tracing::debug!(folder = %folder.display(), error = %e, "could not sync the directory");
    }
    #[cfg(not(unix))]
    let _ = folder;
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> OffsetStoreError {
    let path = path.to_owned();
    move |source| OffsetStoreError::Io { path, action, source }
}

fn not_found(path: &Path) -> OffsetStoreError {
    io_error(path, "reading")(io::Error::from(io::ErrorKind::NotFound))
}

#[cfg(test)]
mod tests {
    use super::super::{OffsetStore, ReadFrom};
    use super::*;
    use crate::protocol::QueueId;

    fn mq(id: i32) -> MessageQueue {
        MessageQueue::new("T", "broker-a", QueueId(id))
    }

    fn open(dir: &Path) -> OffsetStore {
        LocalOffsetStore::new(dir, "10.0.0.1@4242#77", "G").unwrap().into()
    }

    async fn loaded(dir: &Path) -> OffsetStore {
        let store = open(dir);
        store.load().await.unwrap();
        store
    }

    fn files(dir: &Path) -> Vec<String> {
        let folder = dir.join("10.0.0.1@4242#77").join("G");
        let mut names: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn owned(ids: impl IntoIterator<Item = i32>) -> BTreeSet<MessageQueue> {
        ids.into_iter().map(mq).collect()
    }

    fn main_file(store: &OffsetStore) -> PathBuf {
        let OffsetStore::Local(local) = store else { unreachable!() };
        local.path().to_owned()
    }

    #[tokio::test]
    async fn offsets_survive_a_restart_in_the_java_file_form() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded(dir.path()).await;
        assert!(store.snapshot().is_empty(), "a first start has no offsets");
        store.update(&mq(0), QueueOffset(10), false);
        store.update(&mq(1), QueueOffset(9_007_199_254_740_993), false);
        store.persist_all(&owned([0, 1])).await.unwrap();

        let path = main_file(&store);
        assert_eq!(path, dir.path().join("10.0.0.1@4242#77/G/offsets.json"));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:10,{"brokerName":"broker-a","queueId":1,"topic":"T"}:9007199254740993}}"#
        );

        let again = loaded(dir.path()).await;
        assert_eq!(again.snapshot(), store.snapshot());
        assert_eq!(
            again.read(&mq(1), ReadFrom::Store).await.unwrap(),
            Some(QueueOffset(9_007_199_254_740_993))
        );
        assert_eq!(again.read(&mq(2), ReadFrom::Store).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_corrupt_main_file_falls_back_to_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded(dir.path()).await;
        store.update(&mq(0), QueueOffset(1), false);
        store.persist_all(&owned([0])).await.unwrap();
        store.update(&mq(0), QueueOffset(2), false);
        store.persist_all(&owned([0])).await.unwrap();
        assert_eq!(files(dir.path()), ["offsets.json", "offsets.json.bak"]);

        // A torn write by some other tool: the backup (the previous version) is used.
        let path = main_file(&store);
        fs::write(&path, br#"{"offsetTable":{{"brokerName":"broker-a","#).unwrap();
        let again = loaded(dir.path()).await;
        assert_eq!(again.snapshot(), BTreeMap::from([(mq(0), QueueOffset(1))]));

        // A missing main file too.
        fs::remove_file(&path).unwrap();
        let again = loaded(dir.path()).await;
        assert_eq!(again.snapshot(), BTreeMap::from([(mq(0), QueueOffset(1))]));
    }

    #[tokio::test]
    async fn both_files_bad_is_an_error_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let path = main_file(&store);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"").unwrap();
        fs::write(path.with_extension("json.bak"), b"{\"offsetTable\":[]}").unwrap();
        let err = store.load().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OffsetStoreError::NoUsableFile { .. }), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("offsets.json.bak"), "{text}");
        assert!(text.contains("corrupt"), "{text}");

        // A corrupt main file and no backup is an error too, not a silent fresh start.
        fs::remove_file(path.with_extension("json.bak")).unwrap();
        let err = store.load().await.unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("offsets.json.bak"), "{err}");
    }

    #[tokio::test]
    async fn writes_are_atomic_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded(dir.path()).await;
        // A crashed earlier write left a half-written temporary file behind; it is never read.
        let path = main_file(&store);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path.with_extension("json.tmp"), b"{\"offsetTa").unwrap();
        assert!(loaded(dir.path()).await.snapshot().is_empty());

        for i in 0..5 {
            store.update(&mq(0), QueueOffset(i), false);
            store.persist_all(&owned([0])).await.unwrap();
            assert_eq!(
                files(dir.path()),
                if i == 0 {
                    vec!["offsets.json"]
                } else {
                    vec!["offsets.json", "offsets.json.bak"]
                },
                "after write {i}"
            );
            let on_disk = OffsetSerializeWrapper::decode(&fs::read(&path).unwrap()).unwrap();
            assert_eq!(on_disk.offset_table, BTreeMap::from([(mq(0), QueueOffset(i))]));
            let bak = fs::read(path.with_extension("json.bak"))
                .ok()
                .map(|b| OffsetSerializeWrapper::decode(&b).unwrap());
            if i > 0 {
                assert_eq!(
                    bak.unwrap().offset_table,
                    BTreeMap::from([(mq(0), QueueOffset(i - 1))]),
                    "the backup is the previous file"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_unchanged_round_does_not_rewrite_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded(dir.path()).await;
        store.update(&mq(0), QueueOffset(3), false);
        store.persist_all(&owned([0])).await.unwrap();
        store.persist_all(&owned([0])).await.unwrap();
        assert_eq!(files(dir.path()), ["offsets.json"], "a second write would have made a .bak");
    }

    #[tokio::test]
    async fn persist_all_keeps_owned_queues_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = loaded(dir.path()).await;
        for i in 0..3 {
            store.update(&mq(i), QueueOffset(i64::from(i) + 10), false);
        }
        store.persist_all(&owned([0, 1, 2])).await.unwrap();
        // Queue 1 is momentarily out of memory (removed, not yet re-read): its durable offset
        // stays. Queue 2 is no longer owned: forgotten in memory and on disk.
        store.remove(&mq(1));
        store.update(&mq(0), QueueOffset(20), false);
        store.persist_all(&owned([0, 1])).await.unwrap();
        assert_eq!(store.snapshot(), BTreeMap::from([(mq(0), QueueOffset(20))]));
        let again = loaded(dir.path()).await;
        assert_eq!(
            again.snapshot(),
            BTreeMap::from([(mq(0), QueueOffset(20)), (mq(1), QueueOffset(11))])
        );

        // Owning nothing (not rebalanced yet) must not wipe the file.
        store.persist_all(&BTreeSet::new()).await.unwrap();
        assert_eq!(loaded(dir.path()).await.snapshot().len(), 2);
    }

    #[tokio::test]
    async fn using_the_store_before_load_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.update(&mq(0), QueueOffset(1), false);
        let err = store.persist_all(&owned([0])).await.unwrap_err();
        assert!(matches!(err, OffsetStoreError::NotLoaded { .. }), "{err}");
        assert!(store.read(&mq(0), ReadFrom::Store).await.is_err());
        assert!(!main_file(&store).exists());
    }

    #[test]
    fn client_ids_and_groups_must_be_single_directory_names() {
        let dir = Path::new("/tmp/offsets");
        for (client, group) in [("..", "G"), ("a/b", "G"), ("c", ""), ("c", "x\\y"), ("c", ".")] {
            let err = LocalOffsetStore::new(dir, client, group).unwrap_err();
            assert!(
                matches!(err, OffsetStoreError::InvalidPathComponent { .. }),
                "{client:?} {group:?}"
            );
        }
        let ok = LocalOffsetStore::new(dir, "192.168.1.2@123#456", "%RETRY%G|x").unwrap();
        assert_eq!(
            ok.path(),
            Path::new("/tmp/offsets/192.168.1.2@123#456/%RETRY%G|x/offsets.json")
        );
    }
}
