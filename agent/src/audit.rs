//! The agent's audit log: append-only JSON lines, each carrying the previous line's hash.
//!
//! A record is `{"seq":N,"ts":…,"event":…,…,"prev_hash":H(N-1),"hash":H(N)}` where `H(N)` is the
//! SHA-256 (hex) of the record serialised without its `hash` field (serde_json writes object keys
//! in sorted order, so that text is canonical). One writer thread owns the file; callers send
//! events over a channel, so request handlers never wait on disk and the order is the order of
//! arrival. `patch-agent verify-audit` re-reads the file with [`verify_file`].

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

enum Msg {
    Event(Map<String, Value>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread. Cheap to clone; dropping every handle ends the thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating if needed, mode 0600) and verifies the file, then starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let (records, head) = match verify_file(path) {
            Ok(Verdict::Intact { records, head }) => (records, head),
            Ok(Verdict::Broken { line, reason }) => {
                return Err(AuditError::Broken {
                    path: path.to_owned(),
                    line,
                    reason,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, GENESIS_HASH.to_owned()),
            Err(e) => return Err(io(e)),
        };
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?
        };
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            file,
            path: path.to_owned(),
            seq: records,
            head,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Self { tx })
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
        if self.tx.send(Msg::Event(map)).is_err() {
            tracing::error!(event, "audit writer is gone; event not recorded");
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

struct Writer {
    file: File,
    path: PathBuf,
    seq: u64,
    head: String,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        for msg in rx {
            match msg {
                Msg::Event(fields) => {
                    if let Err(e) = self.append(fields) {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
                    }
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
        self.file.write_all(line.as_bytes())?;
        self.seq = seq;
        self.head = hash;
        Ok(())
    }
}

fn hash_of(fields_without_hash: &Map<String, Value>) -> String {
    let text = Value::Object(fields_without_hash.clone()).to_string();
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Reads the file and checks every line: valid JSON object, `seq` contiguous from 1, `prev_hash`
/// equal to the previous `hash`, and `hash` equal to the hash of the rest of the record.
pub fn verify_file(path: &Path) -> std::io::Result<Verdict> {
    let reader = BufReader::new(File::open(path)?);
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut line_no = 0_u64;
    for line in reader.lines() {
        let line = line?;
        line_no += 1;
        let broken = |reason: &str| Verdict::Broken {
            line: line_no,
            reason: reason.to_owned(),
        };
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&line) else {
            return Ok(broken("not a JSON object"));
        };
        if fields.get("seq").and_then(Value::as_u64) != Some(line_no) {
            return Ok(broken(
                "sequence number out of order (record removed or inserted)",
            ));
        }
        if fields.get("prev_hash").and_then(Value::as_str) != Some(expected_prev.as_str()) {
            return Ok(broken(
                "prev_hash does not match the previous record's hash",
            ));
        }
        let Some(Value::String(stored)) = fields.remove("hash") else {
            return Ok(broken("hash missing"));
        };
        if hash_of(&fields) != stored {
            return Ok(broken("content does not match its hash (record altered)"));
        }
        expected_prev = stored;
    }
    Ok(Verdict::Intact {
        records: line_no,
        head: expected_prev,
    })
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
}
