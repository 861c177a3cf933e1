//! The agent's audit log: append-only JSON lines, each carrying the previous line's hash.
//!
//! A record is `{"seq":N,"ts":…,"event":…,…,"prev_hash":H(N-1),"hash":H(N)}` where `H(N)` is the
//! SHA-256 (hex) of the record serialised without its `hash` field (serde_json writes object keys
//! in sorted order, so that text is canonical). One writer thread owns the file; callers send
//! events over a bounded channel, so request handlers never wait on disk and the order is the
//! order of arrival. When the channel is full an event is dropped and counted, never queued
//! without bound; the count is written as an `audit.dropped` record before the next event.
//!
//! The file is capped in size: when the next record would take it past
//! [`Limits::max_file_bytes`] it is renamed to `PATH.1` (older ones shift to `PATH.2`, …; beyond
//! [`Limits::keep_files`] the oldest is deleted) and a new file is started. The chain runs on
//! across files: `seq` continues and the first record of a new file carries the last hash of the
//! previous one. `patch-agent verify-audit` re-reads every file with [`verify_file`]; the oldest
//! file kept may begin after record 1 only when it is a rotated one (its predecessors were
//! deleted by retention), and it then anchors the chain.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// Size, retention and queue limits of the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A file is rotated before a record would take it past this size (bytes).
    pub max_file_bytes: u64,
    /// Rotated files kept (`PATH.1` … `PATH.N`); the oldest beyond that is deleted.
    pub keep_files: u32,
    /// Events waiting for the writer; more are dropped and counted.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 32 * 1024 * 1024,
            keep_files: 8,
            queue: 8192,
        }
    }
}

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Failure to open or verify the audit file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File-system error.
    #[error("audit log {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The existing file does not verify; the agent refuses to extend a broken chain.
    #[error("audit log {path} is broken at line {line}: {reason}")]
    Broken {
        /// File.
        path: PathBuf,
        /// 1-based line number of the first bad record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Result of verifying a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line verifies.
    Intact {
        /// Records checked.
        records: u64,
        /// Hash of the last record (the chain head).
        head: String,
    },
    /// The first line that does not verify.
    Broken {
        /// The file it is in.
        file: PathBuf,
        /// 1-based line number within that file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

enum Msg {
    Event(Map<String, Value>),
    Flush(mpsc::Sender<()>),
    /// Holds the writer until the sender side is dropped (tests fill the queue with it).
    #[cfg(test)]
    Hold(mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// Handle to the writer thread. Cheap to clone; dropping every handle ends the thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating if needed, mode 0600) and verifies the file, then starts the writer thread;
    /// default [`Limits`].
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_with(path, Limits::default())
    }

    /// Opens the log with the given limits: verifies the chain across the current and rotated
    /// files (a broken chain is never extended), then starts the writer thread.
    pub fn open_with(path: &Path, limits: Limits) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let (last_seq, head) = match verify_chain(path).map_err(io)? {
            Chain::Empty => (0, GENESIS_HASH.to_owned()),
            Chain::Intact { last_seq, head, .. } => (last_seq, head),
            Chain::Broken { file, line, reason } => {
                return Err(AuditError::Broken {
                    path: file,
                    line,
                    reason,
                })
            }
        };
        let file = open_append(path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        let (tx, rx) = mpsc::sync_channel(limits.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            file,
            path: path.to_owned(),
            seq: last_seq,
            head,
            bytes,
            limits,
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Self { tx, dropped })
    }

    /// Queues an event: `event` names it, `fields` carry its details (an object).
    pub fn record(&self, event: &str, fields: Value) {
        let mut map = match fields {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("detail".into(), other);
                m
            }
        };
        map.insert("event".into(), Value::String(event.to_owned()));
        match self.tx.try_send(Msg::Event(map)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                // Counted; the writer records the count before its next event.
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(event, "audit queue full; events are dropped and counted");
                }
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!(event, "audit writer is gone; event not recorded");
            }
        }
    }

    /// Waits until every event queued before this call is written and flushed to disk.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `PATH.n`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

struct Writer {
    file: File,
    path: PathBuf,
    seq: u64,
    head: String,
    /// Size of the current file.
    bytes: u64,
    limits: Limits,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        for msg in rx {
            match msg {
                Msg::Event(fields) => {
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let mut note = Map::new();
                        note.insert("event".into(), Value::from("audit.dropped"));
                        note.insert("count".into(), Value::from(dropped));
                        note.insert(
                            "reason".into(),
                            Value::from("audit queue full; events dropped uncounted otherwise"),
                        );
                        self.write(note);
                    }
                    self.write(fields);
                }
                #[cfg(test)]
                Msg::Hold(held, release) => {
                    let _ = held.send(());
                    let _ = release.recv();
                }
                Msg::Flush(done) => {
                    if let Err(e) = self.file.sync_data() {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot sync the audit log");
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, fields: Map<String, Value>) {
        if let Err(e) = self.append(fields) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Renames the current file to `PATH.1` (shifting older ones, deleting the oldest beyond the
    /// retention) and starts a new one; the chain continues in it.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        let keep = self.limits.keep_files.max(1);
        match std::fs::remove_file(rotated(&self.path, keep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..keep).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.bytes = 0;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        tracing::info!(path = %self.path.display(), seq = self.seq, "audit log rotated");
        Ok(())
    }

    fn append(&mut self, mut fields: Map<String, Value>) -> std::io::Result<()> {
        let seq = self.seq + 1;
        fields.insert("seq".into(), Value::from(seq));
        fields.insert(
            "ts".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        fields.insert("prev_hash".into(), Value::String(self.head.clone()));
        fields.remove("hash");
        let hash = hash_of(&fields);
        fields.insert("hash".into(), Value::String(hash.clone()));
        let mut line = Value::Object(fields).to_string();
        line.push('\n');
        if self.bytes > 0 && self.bytes + line.len() as u64 > self.limits.max_file_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.bytes += line.len() as u64;
        self.seq = seq;
        self.head = hash;
        Ok(())
    }
}

fn hash_of(fields_without_hash: &Map<String, Value>) -> String {
    let text = Value::Object(fields_without_hash.clone()).to_string();
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What the whole chain (rotated files, then the current one) looks like.
enum Chain {
    /// No file at all.
    Empty,
    /// Every record verifies.
    Intact {
        /// Records checked.
        records: u64,
        /// `seq` of the last record.
        last_seq: u64,
        /// Hash of the last record.
        head: String,
    },
    /// The first record that does not verify.
    Broken {
        file: PathBuf,
        line: u64,
        reason: String,
    },
}

/// The chain's files, oldest first: every `PATH.n` there is (highest `n` first, so that a file
/// missing in between shows as a gap in the sequence), then `PATH` if it exists.
fn chain_files(path: &Path) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let mut numbers = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut prefix = name.to_owned();
        prefix.push(".");
        let prefix = prefix.to_string_lossy().into_owned();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let n = entry
                        .file_name()
                        .to_str()
                        .and_then(|f| f.strip_prefix(&prefix))
                        .filter(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|rest| rest.parse::<u32>().ok());
                    numbers.extend(n.filter(|n| *n > 0));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let mut files: Vec<(PathBuf, bool)> = numbers
        .into_iter()
        .map(|n| (rotated(path, n), true))
        .collect();
    if path.exists() {
        files.push((path.to_owned(), false));
    }
    Ok(files)
}

fn verify_chain(path: &Path) -> std::io::Result<Chain> {
    let files = chain_files(path)?;
    if files.is_empty() {
        return Ok(Chain::Empty);
    }
    // (seq, hash) of the previous record; `None` before the first record of the chain.
    let mut prev: Option<(u64, String)> = None;
    let mut records = 0_u64;
    for (file, is_rotated) in &files {
        let reader = BufReader::new(File::open(file)?);
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            let line_no = index as u64 + 1;
            let broken = |reason: &str| Chain::Broken {
                file: file.clone(),
                line: line_no,
                reason: reason.to_owned(),
            };
            let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&line) else {
                return Ok(broken("not a JSON object"));
            };
            let Some(seq) = fields.get("seq").and_then(Value::as_u64) else {
                return Ok(broken("sequence number missing"));
            };
            let Some(prev_hash) = fields.get("prev_hash").and_then(Value::as_str) else {
                return Ok(broken("prev_hash missing"));
            };
            match &prev {
                Some((prev_seq, prev_head)) => {
                    if seq != prev_seq + 1 {
                        return Ok(broken(
                            "sequence number out of order (record removed or inserted)",
                        ));
                    }
                    if prev_hash != prev_head {
                        return Ok(broken(
                            "prev_hash does not match the previous record's hash",
                        ));
                    }
                }
                // The start of the chain: record 1 from genesis, or (only in a rotated file, whose
                // predecessors retention deleted) a later record that anchors the chain.
                None if seq == 1 => {
                    if prev_hash != GENESIS_HASH {
                        return Ok(broken("the first record does not start from genesis"));
                    }
                }
                None if *is_rotated => {}
                None => {
                    return Ok(broken(
                        "sequence number out of order (record removed or inserted)",
                    ))
                }
            }
            let Some(Value::String(stored)) = fields.remove("hash") else {
                return Ok(broken("hash missing"));
            };
            if hash_of(&fields) != stored {
                return Ok(broken("content does not match its hash (record altered)"));
            }
            prev = Some((seq, stored));
            records += 1;
        }
    }
    Ok(match prev {
        Some((last_seq, head)) => Chain::Intact {
            records,
            last_seq,
            head,
        },
        None => Chain::Intact {
            records: 0,
            last_seq: 0,
            head: GENESIS_HASH.to_owned(),
        },
    })
}

/// Checks the chain of `path` and its rotated files (`PATH.1`, `PATH.2`, …): every line a JSON
/// object, `seq` contiguous across files, `prev_hash` equal to the previous record's `hash` (the
/// first record of a file links to the last of the previous file), and `hash` equal to the hash
/// of the rest of the record. The chain starts at record 1 from [`GENESIS_HASH`], or, when the
/// oldest file kept is a rotated one, at its first record. `NotFound` when no file exists.
pub fn verify_file(path: &Path) -> std::io::Result<Verdict> {
    match verify_chain(path)? {
        Chain::Empty => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no audit file", path.display()),
        )),
        Chain::Intact { records, head, .. } => Ok(Verdict::Intact { records, head }),
        Chain::Broken { file, line, reason } => Ok(Verdict::Broken { file, line, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_some(path: &Path, n: usize) {
        let log = AuditLog::open(path).unwrap();
        for i in 0..n {
            log.record(
                "request",
                json!({"path": format!("/api/v1/x{i}"), "status": 200}),
            );
        }
        log.flush();
    }

    #[test]
    fn chain_verifies_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_some(&path, 3);
        write_some(&path, 2);
        match verify_file(&path).unwrap() {
            Verdict::Intact { records, head } => {
                assert_eq!(records, 5);
                assert_eq!(head.len(), 64);
            }
            v => panic!("{v:?}"),
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn edits_deletions_and_garbage_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_some(&path, 4);
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();

        let edited = original.replacen("/api/v1/x2", "/api/v1/zz", 1);
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Broken { line: 3, .. }
        ));

        let without_second = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        std::fs::write(&path, without_second).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Broken { line: 2, .. }
        ));

        std::fs::write(&path, format!("{}\nnot json\n", lines[0])).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Broken { line: 2, .. }
        ));

        // A broken file is not extended.
        assert!(matches!(
            AuditLog::open(&path),
            Err(AuditError::Broken { line: 2, .. })
        ));
    }

    fn records_of(path: &Path) -> Vec<Map<String, Value>> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Value::Object(m) => m,
                v => panic!("{v}"),
            })
            .collect()
    }

    #[test]
    fn rotation_keeps_the_chain_verifiable_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let limits = Limits {
            max_file_bytes: 2048,
            keep_files: 3,
            queue: 1024,
        };
        let log = AuditLog::open_with(&path, limits).unwrap();
        for i in 0..60 {
            log.record(
                "request",
                json!({"path": format!("/api/v1/x{i}"), "status": 200}),
            );
        }
        log.flush();
        drop(log);
        // A restart continues the chain in the current file.
        let log = AuditLog::open_with(&path, limits).unwrap();
        for i in 60..80 {
            log.record(
                "request",
                json!({"path": format!("/api/v1/x{i}"), "status": 200}),
            );
        }
        log.flush();
        drop(log);

        let files = [
            rotated(&path, 3),
            rotated(&path, 2),
            rotated(&path, 1),
            path.clone(),
        ];
        assert!(
            !rotated(&path, 4).exists(),
            "retention: at most 3 rotated files"
        );
        let mut kept = 0;
        let mut prev: Option<Map<String, Value>> = None;
        for f in &files {
            assert!(
                std::fs::metadata(f).unwrap().len() <= 2048,
                "{f:?} over the cap"
            );
            let recs = records_of(f);
            assert!(!recs.is_empty(), "{f:?} empty");
            if let Some(p) = &prev {
                assert_eq!(recs[0]["prev_hash"], p["hash"], "{f:?} does not link");
                assert_eq!(
                    recs[0]["seq"].as_u64().unwrap(),
                    p["seq"].as_u64().unwrap() + 1
                );
            }
            kept += recs.len() as u64;
            prev = recs.last().cloned();
        }
        assert_eq!(prev.unwrap()["seq"].as_u64(), Some(80));
        assert!(
            records_of(&files[0])[0]["seq"].as_u64().unwrap() > 1,
            "the oldest files went to retention"
        );
        match verify_file(&path).unwrap() {
            Verdict::Intact { records, .. } => assert_eq!(records, kept),
            v => panic!("{v:?}"),
        }

        // Tampering in an old file is caught, and named.
        let old = std::fs::read_to_string(&files[1]).unwrap();
        let victim = records_of(&files[1])[1]["path"]
            .as_str()
            .unwrap()
            .to_owned();
        std::fs::write(&files[1], old.replacen(&victim, "/api/v1/zz", 1)).unwrap();
        match verify_file(&path).unwrap() {
            Verdict::Broken { file, line, .. } => assert_eq!((file, line), (files[1].clone(), 2)),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            AuditLog::open_with(&path, limits),
            Err(AuditError::Broken { .. })
        ));
        std::fs::write(&files[1], &old).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Intact { .. }
        ));

        // A whole rotated file removed (not the oldest): the gap is caught.
        std::fs::remove_file(&files[1]).unwrap();
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Broken { line: 1, .. }
        ));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let limits = Limits {
            queue: 4,
            ..Limits::default()
        };
        let log = AuditLog::open_with(&path, limits).unwrap();
        // Hold the writer (with the queue empty), then fill the queue and overflow it.
        let (release, hold) = mpsc::channel();
        let (held_tx, held) = mpsc::channel();
        log.tx.send(Msg::Hold(held_tx, hold)).unwrap();
        held.recv().unwrap();
        for i in 0..10 {
            log.record("request", json!({ "n": i }));
        }
        drop(release);
        log.flush();
        let recs = records_of(&path);
        let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
        // 4 fit in the queue; the 6 dropped are counted in a record written as soon as the
        // writer runs again, before the queued events.
        assert_eq!(
            events,
            ["audit.dropped", "request", "request", "request", "request"]
        );
        assert_eq!(recs[0]["count"], 6);
        assert_eq!(recs[4]["n"], 3);
        assert!(matches!(
            verify_file(&path).unwrap(),
            Verdict::Intact { .. }
        ));
    }
}
