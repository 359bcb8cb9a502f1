//! The state root (`--root`, default /run/runvm) holds one directory per container:
//! `state.json`, and `exec.fifo` while the container waits for `start`.
//!
//! Every command that touches a container holds an exclusive `flock` on its directory, so
//! concurrent commands on one id serialize. `mkdir` is the atomic claim of an id: of many
//! parallel `create`s with one id, exactly one wins.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use runvm_oci::{validate_id, ContainerState, OciError};

const STATE_FILE: &str = "state.json";
const FIFO_FILE: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container id {0:?} already exists")]
    AlreadyExists(String),
    #[error("state root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    State(#[from] OciError),
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Claims `id`: creates its directory (failing if it exists) and locks it.
    pub fn create(&self, id: &str) -> Result<ContainerDir, StoreError> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(|source| StoreError::Root {
                path: self.root.clone(),
                source,
            })?;
        let path = self.root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists(id.to_string()))
            }
            Err(source) => return Err(StoreError::Io { path, source }),
        }
        ContainerDir::lock(id, path)
    }

    /// Opens and locks an existing container's directory.
    pub fn open(&self, id: &str) -> Result<ContainerDir, StoreError> {
        // Every id from the command line passes here: an id like ".." must never name a path
        // outside the root (delete removes what it names).
        validate_id(id)?;
        let path = self.root.join(id);
        if !path.is_dir() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let dir = ContainerDir::lock(id, path)?;
        // The previous lock holder may have deleted the container while we waited.
        if dir.is_removed() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(dir)
    }

    /// Ids of all containers under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Root {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(STATE_FILE).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A locked container directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct ContainerDir {
    id: String,
    path: PathBuf,
    lock: Flock<fs::File>,
}

impl ContainerDir {
    fn lock(id: &str, path: PathBuf) -> Result<Self, StoreError> {
        // O_CLOEXEC (std's default) keeps the lock out of hooks; init closes it explicitly.
        let file = fs::File::open(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| StoreError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }

    pub fn state_path(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO_FILE)
    }

    fn is_removed(&self) -> bool {
        self.lock.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }

    pub fn load(&self) -> Result<ContainerState, StoreError> {
        Ok(ContainerState::load(&self.state_path())?)
    }

    pub fn save(&self, state: &ContainerState) -> Result<(), StoreError> {
        Ok(state.save(&self.state_path())?)
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<(), StoreError> {
        fs::remove_dir_all(&self.path).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_claims_an_id_once() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(&root.path().join("state"));
        let dir = store.create("a").unwrap();
        assert!(matches!(
            store.create("a"),
            Err(StoreError::AlreadyExists(_))
        ));
        drop(dir);
        assert!(store.ids().unwrap().is_empty(), "no state.json yet");
    }

    #[test]
    fn open_of_missing_or_removed_container_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        assert!(matches!(store.open("nope"), Err(StoreError::NotFound(_))));
        let dir = store.create("b").unwrap();
        dir.remove().unwrap();
        assert!(matches!(store.open("b"), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn path_like_ids_never_leave_the_root() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(&root.path().join("state"));
        fs::create_dir_all(root.path().join("state")).unwrap();
        for id in ["..", ".", "../state", "a/../..", ""] {
            assert!(matches!(store.open(id), Err(StoreError::State(_))), "{id}");
            assert!(
                matches!(store.create(id), Err(StoreError::State(_))),
                "{id}"
            );
        }
        assert!(root.path().join("state").is_dir());
    }

    #[test]
    fn ids_lists_containers_with_state() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        for id in ["z", "a"] {
            let dir = store.create(id).unwrap();
            fs::write(dir.state_path(), "{}").unwrap();
        }
        assert_eq!(store.ids().unwrap(), vec!["a", "z"]);
    }
}
