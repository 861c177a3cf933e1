//! Signed checkpoints of the audit chain's head, kept outside the database.
//!
//! The hash chain alone shows an edited or removed record in the middle, but not a cut tail: a
//! chain whose newest records were deleted still links up. So the manager signs the head (record
//! id and `row_hash`) with an Ed25519 key of its own (`<data>/audit-checkpoint.key`, 0600, public
//! part in `audit-checkpoint.pub`) and appends it to `<data>/audit-checkpoints.jsonl`, one JSON
//! object `{id, hash, at, signature}` a line, and to the log. Someone who can rewrite the database
//! but not the data directory (a database administrator, a restored or copied dump) can no longer
//! shorten the chain unnoticed: the verifier finds a checkpoint naming a record that is gone.
//!
//! The signed message is `lpm-audit-checkpoint-v1\n{id}\n{hash}\n{at}\n`.

use chrono::NaiveDateTime;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Private key file (PKCS#8, hex) in the data directory.
pub const KEY_FILE: &str = "audit-checkpoint.key";
/// Public key file (32 bytes, hex) in the data directory.
pub const PUBLIC_KEY_FILE: &str = "audit-checkpoint.pub";
/// The checkpoints, one JSON object a line.
pub const CHECKPOINT_FILE: &str = "audit-checkpoints.jsonl";

/// One signed checkpoint: record `id` had `hash` when it was the head of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Record id of the head.
    pub id: i64,
    /// Its `row_hash`.
    pub hash: String,
    /// When the checkpoint was signed (RFC 3339, UTC).
    pub at: String,
    /// Ed25519 signature (hex) of the message above.
    pub signature: String,
}

impl Checkpoint {
    fn message(id: i64, hash: &str, at: &str) -> Vec<u8> {
        format!("lpm-audit-checkpoint-v1\n{id}\n{hash}\n{at}\n").into_bytes()
    }

    /// Whether the signature verifies under `public_key`.
    pub fn signature_valid(&self, public_key: &[u8]) -> bool {
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&Self::message(self.id, &self.hash, &self.at), &sig)
            .is_ok()
    }
}

/// Why checkpoints could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The key file is missing, malformed or readable by others.
    #[error("audit checkpoint key {path}: {reason}")]
    Key {
        /// Path of the key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint file could not be read or written.
    #[error("audit checkpoint file {path}: {source}")]
    Io {
        /// Path of the file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The manager's checkpoint key: signs heads and appends them to the checkpoint file.
pub struct Signer {
    key: Ed25519KeyPair,
    reader: CheckpointFile,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("file", &self.reader.path)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads `<dir>/audit-checkpoint.key`, creating it (0600) and its public key when absent.
    /// Refuses a key file that group or others can read.
    pub fn load_or_create(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(KEY_FILE);
        let err = |reason: String| CheckpointError::Key {
            path: path.display().to_string(),
            reason,
        };
        let pkcs8 = shared::files::load_or_create_secret(&path, || {
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|_| "random generator failed".to_owned())
        })
        .map_err(err)?;
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| err(e.to_string()))?;
        let public = key.public_key().as_ref().to_vec();
        // The public half, for `verify-audit` and for copies kept elsewhere. Rewritten when it
        // does not match the key (so a replaced public key cannot make forged lines verify).
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        let wanted = format!("{}\n", hex::encode(&public));
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(wanted.as_str()) {
            shared::files::write_atomic(&pub_path, wanted.as_bytes(), 0o644).map_err(|e| {
                CheckpointError::Key {
                    path: pub_path.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(Self {
            key,
            reader: CheckpointFile {
                path: dir.join(CHECKPOINT_FILE),
                public_key: public,
            },
        })
    }

    /// The reader of the file this signer appends to, with its public key.
    pub fn file(&self) -> &CheckpointFile {
        &self.reader
    }

    /// Signs "record `id` has `hash`" at `now`, appends it to the file (synced) and logs it.
    pub fn checkpoint(
        &self,
        id: i64,
        hash: &str,
        now: NaiveDateTime,
    ) -> Result<Checkpoint, CheckpointError> {
        let at = now
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let signature = hex::encode(self.key.sign(&Checkpoint::message(id, hash, &at)).as_ref());
        let checkpoint = Checkpoint {
            id,
            hash: hash.to_owned(),
            at,
            signature,
        };
        let path = &self.reader.path;
        let io = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(io(std::io::Error::other("is a symbolic link; refusing it")));
        }
        let mut line = serde_json::to_string(&checkpoint).map_err(|e| io(e.into()))?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // One write of one short line with O_APPEND: lines never interleave.
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        tracing::info!(
            audit_checkpoint_id = checkpoint.id,
            hash = %checkpoint.hash,
            at = %checkpoint.at,
            signature = %checkpoint.signature,
            "audit checkpoint"
        );
        Ok(checkpoint)
    }
}

/// A checkpoint file and the public key its lines must verify under.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
    public_key: Vec<u8>,
}

/// A line of the checkpoint file that is not a valid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Line number, from 1.
    pub line: usize,
    /// The record id it names, if it parses.
    pub id: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

/// What [`CheckpointFile::scan`] found after an offset.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Lines whose signature verifies.
    pub valid: Vec<Checkpoint>,
    /// Lines that do not parse or whose signature does not verify.
    pub bad: Vec<BadLine>,
    /// Offset after the last complete line (scan from here next time).
    pub end: u64,
    /// Lines before `end`, counted from the start of the file.
    pub lines: usize,
    /// The file is shorter than the offset asked for: lines were removed.
    pub shrank: bool,
}

impl CheckpointFile {
    /// The checkpoints in `<dir>`, verified under the public key in `<dir>/audit-checkpoint.pub`;
    /// `None` when there is no public key (no manager ever ran with checkpoints there).
    pub fn open(dir: &Path) -> Result<Option<Self>, CheckpointError> {
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        let text = match std::fs::read_to_string(&pub_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CheckpointError::Key {
                    path: pub_path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let public_key = hex::decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| CheckpointError::Key {
                path: pub_path.display().to_string(),
                reason: "not a hex Ed25519 public key".into(),
            })?;
        Ok(Some(Self {
            path: dir.join(CHECKPOINT_FILE),
            public_key,
        }))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the lines after byte `from` (line number `lines_before` + 1 on) and checks each
    /// signature. A last line without its newline (a write cut by a crash) is left for the next
    /// scan; a missing file is empty.
    pub fn scan(&self, from: u64, lines_before: usize) -> Result<Scan, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Scan {
                    end: 0,
                    shrank: from > 0,
                    ..Scan::default()
                })
            }
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len < from {
            return Ok(Scan {
                end: len,
                shrank: true,
                ..Scan::default()
            });
        }
        file.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut scan = Scan {
            end: from,
            lines: lines_before,
            ..Scan::default()
        };
        let mut rest = bytes.as_slice();
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            scan.end += u64::try_from(nl + 1).unwrap_or(u64::MAX);
            scan.lines += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Checkpoint>(line) {
                Ok(cp) if cp.signature_valid(&self.public_key) => scan.valid.push(cp),
                Ok(cp) => scan.bad.push(BadLine {
                    line: scan.lines,
                    id: Some(cp.id),
                    reason: "its signature does not verify under the manager's checkpoint key"
                        .into(),
                }),
                Err(e) => scan.bad.push(BadLine {
                    line: scan.lines,
                    id: None,
                    reason: format!("not a checkpoint ({e})"),
                }),
            }
        }
        Ok(scan)
    }
}
