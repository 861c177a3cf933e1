//! The job file (`state_dir/jobs.json`): reading it at start, keeping an unreadable one aside, and
//! the one thread that writes it.
//!
//! Every change to a job marks the file dirty through a bounded channel; the writer thread
//! ([`Writer`]) alone serialises and writes it (temporary file, fsync, rename: see
//! [`shared::files::write_atomic`]). Changes are coalesced: the file is written at most once per
//! [`WRITE_INTERVAL`], except that an *urgent* change (a job's state, results or rollback record)
//! is written at once. Nothing is serialised or synced on the async event loop. A crash between
//! two writes loses at most the output lines of the last interval; the file on disk is always a
//! complete earlier version.

use serde::{Deserialize, Serialize};
use shared::agent::Job;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a non-urgent change (an output line, progress) waits before it is written.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(200);
/// After a failed write, the next attempt waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Capacity of the writer's channel; a full channel already guarantees a write, so senders
/// never wait for it.
const CHANNEL: usize = 64;
/// Version of the file format written now (files without it are version 1, jobs only).
const FORMAT: u32 = 2;

/// Versions before a job, for the packages it changed: `None` = was not installed.
pub type RollbackRecord = BTreeMap<String, Option<String>>;

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobFile {
    /// Format version.
    #[serde(default)]
    pub format: u32,
    /// Jobs, oldest first.
    pub jobs: Vec<Job>,
    /// Rollback records by job id.
    #[serde(default)]
    pub records: BTreeMap<String, RollbackRecord>,
}

impl JobFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&JobFile {
            format: FORMAT,
            ..self.clone()
        })
    }
}

/// A job file that could not be read, kept aside.
#[derive(Debug, Clone)]
pub struct SetAside {
    /// Where it was.
    pub file: PathBuf,
    /// Where it is now.
    pub set_aside_as: PathBuf,
    /// Why it did not parse.
    pub error: String,
}

impl SetAside {
    /// One sentence for `/health` and the log.
    pub fn describe(&self) -> String {
        format!(
            "the job file {} did not parse ({}); it was kept as {} and the agent started \
             without the jobs and rollback records it held",
            self.file.display(),
            self.error,
            self.set_aside_as.display()
        )
    }
}

/// Reads the job file. A missing file is an empty one; a file that does not parse is renamed to
/// `FILE.unreadable-TIMESTAMP` (never overwritten) and reported; a file that cannot be read at
/// all is an error, so that it is not replaced by an empty one either. Leftover temporary files
/// of writes cut short by a crash are removed.
pub fn load(path: &Path) -> std::io::Result<(JobFile, Option<SetAside>)> {
    remove_leftovers(path);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((JobFile::default(), None))
        }
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read the job file {}: {e}", path.display()),
            ))
        }
    };
    match serde_json::from_slice::<JobFile>(&bytes) {
        Ok(file) => Ok((file, None)),
        Err(parse) => {
            let set_aside_as = set_aside(path)?;
            Ok((
                JobFile::default(),
                Some(SetAside {
                    file: path.to_path_buf(),
                    set_aside_as,
                    error: parse.to_string(),
                }),
            ))
        }
    }
}

/// Renames `path` to a name that does not exist yet: `NAME.unreadable-YYYYMMDDTHHMMSSZ[-N]`.
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for n in 0..1000u32 {
        let candidate = path.with_file_name(match n {
            0 => format!("{name}.unreadable-{stamp}"),
            n => format!("{name}.unreadable-{stamp}-{n}"),
        });
        if std::fs::symlink_metadata(&candidate).is_ok() {
            continue;
        }
        std::fs::rename(path, &candidate).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the job file {} does not parse and cannot be kept aside as {}: {e}",
                    path.display(),
                    candidate.display()
                ),
            )
        })?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        return Ok(candidate);
    }
    Err(std::io::Error::other(format!(
        "the job file {} does not parse and no free name was found to keep it aside",
        path.display()
    )))
}

/// Removes `.NAME.*.tmp` files (temporary files of [`shared::files::write_atomic`]) next to
/// `path`: the writer that made them is gone.
fn remove_leftovers(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let n = file_name.to_string_lossy();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(error = %e, file = %entry.path().display(), "cannot remove a leftover temporary job file");
            }
        }
    }
}

/// Produces the file's current contents (called on the writer thread).
pub type Snapshot = Box<dyn Fn() -> serde_json::Result<Vec<u8>> + Send>;

enum Msg {
    Changed,
    Flush(tokio::sync::oneshot::Sender<()>),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// Handle of the thread that owns the job file. Dropping every handle writes what is pending and
/// ends the thread.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Msg>,
    urgent: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread for `path`.
    pub fn spawn(path: PathBuf, snapshot: Snapshot) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
        let urgent = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (u, w) = (urgent.clone(), writes.clone());
        std::thread::Builder::new()
            .name("job-file-writer".into())
            .spawn(move || writer_loop(&path, &snapshot, &rx, &u, &w))?;
        Ok(Self { tx, urgent, writes })
    }

    /// Marks the file dirty: written within [`WRITE_INTERVAL`], or at once if `urgent`. Never
    /// blocks.
    pub fn changed(&self, urgent: bool) {
        if urgent {
            self.urgent.store(true, Ordering::SeqCst);
        }
        match self.tx.try_send(Msg::Changed) {
            // A full channel holds messages that will cause a write of the latest state.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                tracing::debug!("job file writer closed; change not written");
            }
        }
    }

    /// Waits until everything changed so far is on disk (or the writer is gone).
    pub async fn flush(&self) {
        self.send_and_wait(Msg::Flush).await;
    }

    /// Writes what is pending and ends the writer; later changes are not written.
    pub async fn close(&self) {
        self.send_and_wait(Msg::Close).await;
    }

    async fn send_and_wait(&self, msg: fn(tokio::sync::oneshot::Sender<()>) -> Msg) {
        let (ack, done) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        // `send` may wait for room in the channel: not on the event loop.
        let sent = tokio::task::spawn_blocking(move || tx.send(msg(ack)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = done.await;
        }
    }

    /// Files written so far by this writer.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

fn writer_loop(
    path: &Path,
    snapshot: &Snapshot,
    rx: &Receiver<Msg>,
    urgent: &AtomicBool,
    writes: &AtomicU64,
) {
    let mut dirty = false;
    // Earliest time of the next non-urgent write.
    let mut next = Instant::now();
    let write = |dirty: &mut bool, next: &mut Instant| {
        urgent.store(false, Ordering::SeqCst);
        let result = snapshot()
            .map_err(std::io::Error::other)
            .and_then(|bytes| shared::files::write_atomic(path, &bytes, 0o600));
        match result {
            Ok(()) => {
                writes.fetch_add(1, Ordering::SeqCst);
                *dirty = false;
                *next = Instant::now() + WRITE_INTERVAL;
            }
            Err(e) => {
                tracing::error!(error = %e, file = %path.display(), "cannot write the job file; retrying");
                *next = Instant::now() + RETRY_AFTER;
            }
        }
    };
    loop {
        let msg = if dirty {
            let now = Instant::now();
            if urgent.load(Ordering::SeqCst) || now >= next {
                write(&mut dirty, &mut next);
                continue;
            }
            match rx.recv_timeout(next - now) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    write(&mut dirty, &mut next);
                    return;
                }
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            }
        };
        match msg {
            Msg::Changed => dirty = true,
            Msg::Flush(ack) => {
                if dirty {
                    write(&mut dirty, &mut next);
                }
                let _ = ack.send(());
            }
            Msg::Close(ack) => {
                if dirty {
                    write(&mut dirty, &mut next);
                }
                let _ = ack.send(());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Mutex;

    /// 20,000 changes (an output line each) in a burst are written a handful of times, not
    /// 20,000; the last state is on disk after a flush.
    #[actix_rt::test]
    async fn changes_are_coalesced_and_flush_writes_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.json");
        let state = Arc::new(Mutex::new(0u64));
        let s = state.clone();
        let writer = Writer::spawn(
            path.clone(),
            Box::new(move || serde_json::to_vec(&*s.lock().unwrap())),
        )
        .unwrap();
        let start = Instant::now();
        for i in 1..=20_000u64 {
            *state.lock().unwrap() = i;
            writer.changed(false);
        }
        writer.flush().await;
        let elapsed = start.elapsed();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "20000");
        let allowed = elapsed.as_millis() as u64 / WRITE_INTERVAL.as_millis() as u64 + 2;
        assert!(
            writer.writes() <= allowed,
            "{} writes in {elapsed:?} (at most {allowed})",
            writer.writes()
        );
        // An urgent change is written without a flush.
        *state.lock().unwrap() = 7;
        writer.changed(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap() != "7" {
            assert!(Instant::now() < deadline, "urgent change not written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.close().await;
        *state.lock().unwrap() = 8;
        writer.changed(true);
        writer.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7", "closed");
    }

    #[test]
    fn unreadable_files_are_kept_aside_under_a_new_name_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.json");
        assert_eq!(load(&path).unwrap().0, JobFile::default());
        std::fs::write(dir.path().join(".jobs.json.0123456789abcdef.tmp"), b"{").unwrap();
        for round in 0..2 {
            std::fs::write(&path, b"not json").unwrap();
            let (file, aside) = load(&path).unwrap();
            assert_eq!(file, JobFile::default());
            let aside = aside.unwrap();
            assert!(!path.exists());
            assert_eq!(std::fs::read(&aside.set_aside_as).unwrap(), b"not json");
            assert!(aside
                .describe()
                .contains(&*aside.set_aside_as.to_string_lossy()));
            let n = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(
                n,
                round + 1,
                "two set-aside files, no leftover temporary file"
            );
        }
        // The format before rollback records were kept: jobs only.
        std::fs::write(&path, br#"{"jobs":[]}"#).unwrap();
        let (file, aside) = load(&path).unwrap();
        assert!(aside.is_none());
        assert!(file.jobs.is_empty() && file.records.is_empty());
    }
}
