//! Backup and restore of everything a manager needs to come back as itself: the database (a
//! consistent online copy: `VACUUM INTO` for SQLite, `pg_dump` for PostgreSQL), the data
//! directory (fleet and web CA keys, the secrets key, the audit checkpoint key and file, the
//! manager's certificates) and the configuration file, in one gzip-compressed tar archive written
//! with mode 0600.
//!
//! The archive's first member is `manifest.json`: format, manager version, time, database engine
//! and schema version, the fleet CA's fingerprint, and every other member with its size, mode and
//! SHA-256. Restore reads the whole archive into a staging directory and checks all of it (every
//! member listed and present once, every digest, safe relative paths, the engine of this
//! configuration, a schema this binary knows) before it changes anything; a corrupted, truncated
//! or mismatched archive is refused with the reason and the target is left as it was. The
//! database goes in first (PostgreSQL: `pg_restore --single-transaction`), the files after.
//!
//! The archive holds the CA keys unencrypted: keep it where the data directory itself may be
//! kept (the runbook, docs/backup.md, says how).

use crate::config::{Config, DatabaseTarget};
use crate::db::audit::{self as audit_store, NewAuditEntry, Outcome};
use crate::db::backup as copy;
use crate::db::{Database, DbError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The archive format this build writes and reads.
pub const FORMAT: &str = "linux-patch-manager-backup/1";
/// Name of the manifest member.
pub const MANIFEST: &str = "manifest.json";
/// Largest manifest read (a manifest lists a few dozen files).
const MANIFEST_LIMIT: u64 = 1 << 20;
/// Files of the data directory that are not part of a backup: the database itself (copied
/// consistently instead), its journals, and the one-time setup token.
const SKIPPED: &[&str] = &[
    "patch-manager.db",
    "patch-manager.db-wal",
    "patch-manager.db-shm",
    "patch-manager.db-journal",
    "setup-token",
];

/// Why a backup or a restore did not happen. Nothing was changed when one is returned, except
/// where the text says so.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The database could not be copied or restored.
    #[error(transparent)]
    Database(#[from] DbError),
    /// `pg_dump` or `pg_restore` failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// Program.
        tool: &'static str,
        /// What it printed.
        message: String,
    },
    /// The archive is damaged: it does not decompress, ends early, or a member's digest differs.
    #[error("the archive is corrupted or truncated: {0}; nothing was restored")]
    Corrupt(String),
    /// The archive is intact but does not fit this manager.
    #[error("the archive does not fit this manager: {0}; nothing was restored")]
    Mismatch(String),
    /// The target is not in a state a restore may overwrite.
    #[error("{0}; nothing was restored")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The archive's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Version of the manager that wrote it.
    pub manager_version: String,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// `sqlite` or `postgresql`.
    pub database_engine: String,
    /// Newest applied migration (its version string) at backup time.
    pub schema_version: String,
    /// SHA-256 of the fleet CA certificate (the identity agents trust).
    pub fleet_ca_fingerprint: String,
    /// Every other member.
    pub files: Vec<Member>,
}

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Path inside the archive: `database/…`, `data/…` or `config/manager.toml`.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// SHA-256, hex.
    pub sha256: String,
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The archive.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
}

/// What a restore put back.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Where the data directory that was replaced now is (`--replace`).
    pub replaced: Option<PathBuf>,
    /// Where the archive's configuration file was written, if anywhere.
    pub config_written: Option<PathBuf>,
}

const DB_SQLITE: &str = "database/patch-manager.sqlite";
const DB_PG: &str = "database/patch-manager.pgdump";
const CONFIG_MEMBER: &str = "config/manager.toml";

fn engine_word(target: &DatabaseTarget) -> &'static str {
    match target {
        DatabaseTarget::Sqlite(_) => "sqlite",
        DatabaseTarget::Postgres(_) => "postgresql",
    }
}

fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 16];
    let mut total = 0_u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// A directory that is removed when dropped (staging for both directions).
struct Staging(PathBuf);

impl Staging {
    fn new_beside(target: &Path, what: &str) -> Result<Self, BackupError> {
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let name = format!(
            ".{}-{what}-{}",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ulid::Ulid::new()
        );
        let dir = parent.join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The URL without its password, and the password (for `PGPASSWORD`, so it never shows in the
/// process list).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{host}{tail}"),
            Some(percent_decode(password)),
        ),
        None => (url.to_owned(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pg_command(tool: &'static str, url: &str) -> (Command, String) {
    let (url, password) = split_password(url);
    let mut cmd = Command::new(tool);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    (cmd, url)
}

fn run_tool(tool: &'static str, mut cmd: Command) -> Result<(), BackupError> {
    let out = cmd.output().map_err(|e| BackupError::Tool {
        tool,
        message: format!("cannot run it ({e}); install the PostgreSQL client programs"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BackupError::Tool {
            tool,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The data directory's files that belong in a backup (relative paths), skipping the database,
/// `skip_dirs` (the backup directory, staging) and anything that is not a regular file.
fn data_files(dir: &Path, skip_dirs: &[PathBuf]) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                if !name.starts_with('.') && !skip_dirs.iter().any(|s| s == &path) {
                    stack.push(path);
                }
            } else if kind.is_file()
                && !(d == dir && SKIPPED.contains(&name.as_str()))
                && !name.starts_with('.')
            {
                if let Ok(rel) = path.strip_prefix(dir) {
                    out.push(rel.to_path_buf());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The default file name of a backup made now.
pub fn default_name(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("patch-manager-{}.tar.gz", now.format("%Y%m%dT%H%M%SZ"))
}

/// Writes a backup of the manager `config` describes to `output` (which must not exist). The
/// manager may be running: the database copy is consistent, the files are read as they are.
/// `config_file` is the configuration file in effect, if any. Appends a `backup.created` audit
/// record.
pub fn create(
    config: &Config,
    config_file: Option<&Path>,
    output: &Path,
) -> Result<Written, BackupError> {
    if output.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists already",
            output.display()
        )));
    }
    let target = config.database_target().map_err(|e| {
        BackupError::Refused(format!("the configuration names no usable database: {e}"))
    })?;
    let db = Database::open(&target, 1, Duration::from_secs(30))?;
    let staging = Staging::new_beside(output, "staging")?;
    let engine = engine_word(&target);

    // The database, consistently, while the manager may be writing.
    let (db_member, db_file) = match &target {
        DatabaseTarget::Sqlite(_) => {
            let file = staging.0.join("db.sqlite");
            copy::sqlite_copy(&mut *db.conn()?, &file)?;
            (DB_SQLITE, file)
        }
        DatabaseTarget::Postgres(url) => {
            let file = staging.0.join("db.pgdump");
            let (mut cmd, url) = pg_command("pg_dump", url);
            cmd.arg("--format=custom")
                .arg("--no-owner")
                .arg("--no-privileges")
                .arg("--file")
                .arg(&file)
                .arg("--dbname")
                .arg(url);
            run_tool("pg_dump", cmd)?;
            (DB_PG, file)
        }
    };
    let schema_version = copy::schema_version(&mut *db.conn()?)?;

    // Members: (path in archive, file on disk).
    let mut members: Vec<(String, PathBuf)> = vec![(db_member.to_owned(), db_file)];
    let data_dir = &config.data.dir;
    let mut skip = vec![config.backup.directory(data_dir), staging.0.clone()];
    if let DatabaseTarget::Sqlite(p) = &target {
        skip.push(p.clone());
    }
    for rel in data_files(data_dir, &skip)? {
        let on_disk = data_dir.join(&rel);
        if let DatabaseTarget::Sqlite(p) = &target {
            if on_disk == *p {
                continue;
            }
        }
        members.push((format!("data/{}", rel.to_string_lossy()), on_disk));
    }
    if let Some(c) = config_file.filter(|c| c.is_file()) {
        members.push((CONFIG_MEMBER.to_owned(), c.to_path_buf()));
    }

    // Digest everything first: the manifest leads the archive.
    let mut files = Vec::with_capacity(members.len());
    for (path, on_disk) in &members {
        let (sha256, size) = sha256_file(on_disk)?;
        let mode = fs::metadata(on_disk)
            .map_err(io(on_disk))?
            .permissions()
            .mode()
            & 0o777;
        files.push(Member {
            path: path.clone(),
            size,
            mode,
            sha256,
        });
    }
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format: FORMAT.into(),
        manager_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        database_engine: engine.into(),
        schema_version,
        fleet_ca_fingerprint: fleet_ca_fingerprint(data_dir).unwrap_or_default(),
        files,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Refused(format!("manifest: {e}")))?;

    let partial = staging.0.join("archive.partial");
    {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io(&partial))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest_json.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(u64::try_from(now.timestamp()).unwrap_or(0));
        header.set_cksum();
        tar.append_data(&mut header, MANIFEST, manifest_json.as_slice())
            .map_err(io(&partial))?;
        for ((path, on_disk), m) in members.iter().zip(&manifest.files) {
            let f = File::open(on_disk).map_err(io(on_disk))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(m.size);
            header.set_mode(m.mode);
            header.set_mtime(u64::try_from(now.timestamp()).unwrap_or(0));
            header.set_cksum();
            // Exactly the digested bytes: a file that grew since is cut at its digested size.
            tar.append_data(&mut header, path, f.take(m.size))
                .map_err(io(on_disk))?;
        }
        let gz = tar.into_inner().map_err(io(&partial))?;
        let file = gz.finish().map_err(io(&partial))?;
        file.sync_all().map_err(io(&partial))?;
    }
    fs::rename(&partial, output).map_err(io(output))?;
    let bytes = fs::metadata(output).map_err(io(output))?.len();

    let mut conn = db.conn()?;
    audit_store::append(
        &mut conn,
        NewAuditEntry::new("system", "backup.created", Outcome::Success).details(
            serde_json::json!({
                "archive": output.display().to_string(),
                "bytes": bytes,
                "files": manifest.files.len(),
                "database": engine,
            }),
        ),
        chrono::Utc::now().naive_utc(),
    )?;
    Ok(Written {
        path: output.to_path_buf(),
        bytes,
        manifest,
    })
}

fn fleet_ca_fingerprint(data_dir: &Path) -> Option<String> {
    let pem = fs::read_to_string(data_dir.join("ca/ca.crt")).ok()?;
    crate::pki::ca::fingerprint_of_pem(&pem).ok()
}

/// A member's path inside the staging directory, refusing anything that could leave it.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && (path.starts_with("data/") || path.starts_with("database/") || path == CONFIG_MEMBER);
    ok.then(|| p.to_path_buf())
}

/// Reads and checks the whole archive into `staging`: answers its manifest when every member is
/// listed, present once, within its size and equal to its digest.
fn unpack_checked(archive: &Path, staging: &Path) -> Result<Manifest, BackupError> {
    let file = File::open(archive).map_err(io(archive))?;
    let corrupt = |what: String| BackupError::Corrupt(what);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut entries = tar.entries().map_err(|e| corrupt(e.to_string()))?;
    let first = entries
        .next()
        .ok_or_else(|| corrupt("the archive is empty".into()))?
        .map_err(|e| corrupt(e.to_string()))?;
    let first_path = first
        .path()
        .map_err(|e| corrupt(e.to_string()))?
        .to_string_lossy()
        .into_owned();
    if first_path != MANIFEST {
        return Err(BackupError::Mismatch(format!(
            "its first member is {first_path:?}, not {MANIFEST}: not a Linux Patch Manager backup"
        )));
    }
    let mut text = Vec::new();
    first
        .take(MANIFEST_LIMIT)
        .read_to_end(&mut text)
        .map_err(|e| corrupt(e.to_string()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| corrupt(format!("the manifest does not read: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Mismatch(format!(
            "format {:?}; this manager reads {FORMAT:?}",
            manifest.format
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let member = manifest
            .files
            .iter()
            .find(|m| m.path == path)
            .ok_or_else(|| corrupt(format!("{path:?} is not in the manifest")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(corrupt(format!("{path:?} is not a regular file")));
        }
        let rel = safe_relative(&path)
            .ok_or_else(|| corrupt(format!("{path:?} is not a path a backup holds")))?;
        if !seen.insert(path.clone()) {
            return Err(corrupt(format!("{path:?} appears twice")));
        }
        let dest = staging.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(io(&dest))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; 1 << 16];
        let mut total = 0_u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > member.size {
                return Err(corrupt(format!("{path} is longer than the manifest says")));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(&dest))?;
        }
        if total != member.size || hex::encode(hasher.finalize()) != member.sha256 {
            return Err(corrupt(format!("{path} does not match its checksum")));
        }
        out.sync_all().map_err(io(&dest))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(member.mode & 0o700))
            .map_err(io(&dest))?;
    }
    // The gzip trailer (its CRC and length) is checked only when the stream is read to its end.
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| corrupt(e.to_string()))?;
    if let Some(missing) = manifest.files.iter().find(|m| !seen.contains(&m.path)) {
        return Err(corrupt(format!(
            "{} is missing (the archive ends early)",
            missing.path
        )));
    }
    Ok(manifest)
}

/// Checks an archive completely without restoring it.
pub fn verify(archive: &Path) -> Result<Manifest, BackupError> {
    let staging = Staging::new_beside(archive, "verify")?;
    unpack_checked(archive, &staging.0)
}

/// How a restore may treat what is already there.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Move an existing data directory aside (kept as `<dir>.replaced-<time>`) and, on
    /// PostgreSQL, replace the tables of a database that has some.
    pub replace: bool,
}

fn is_empty_dir(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Restores `archive` into the manager `config` describes. The manager must be stopped. Checks
/// the whole archive and the target first; then the database, then the data directory, then the
/// configuration file (written to `config_file` only when none is there; else beside it as
/// `.restored`).
pub fn restore(
    config: &Config,
    config_file: Option<&Path>,
    archive: &Path,
    options: RestoreOptions,
) -> Result<Restored, BackupError> {
    let data_dir = &config.data.dir;
    let mut probe = config.server.listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    if probe.port() != 0
        && std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(500)).is_ok()
    {
        return Err(BackupError::Refused(format!(
            "something answers on {} (the manager?): stop it first",
            config.server.listen
        )));
    }
    let target = config.database_target().map_err(|e| {
        BackupError::Refused(format!("the configuration names no usable database: {e}"))
    })?;
    let staging = Staging::new_beside(data_dir, "restore")?;
    let manifest = unpack_checked(archive, &staging.0)?;

    let engine = engine_word(&target);
    if manifest.database_engine != engine {
        return Err(BackupError::Mismatch(format!(
            "it holds a {} database and this configuration uses {engine}",
            manifest.database_engine
        )));
    }
    let known = copy::newest_known_migration(&target);
    if manifest.schema_version > known {
        return Err(BackupError::Mismatch(format!(
            "its database schema ({}) is newer than this manager knows ({known}); restore it \
             with manager {} or later",
            manifest.schema_version, manifest.manager_version
        )));
    }

    // The target must be empty unless told to replace it.
    let data_empty = is_empty_dir(data_dir)?;
    let db_present = match &target {
        DatabaseTarget::Sqlite(p) => p.exists() && !p.starts_with(data_dir),
        DatabaseTarget::Postgres(url) => copy::postgres_has_tables(url)?,
    };
    if !options.replace && (!data_empty || db_present) {
        return Err(BackupError::Refused(format!(
            "{} holds data already{}: pass --replace to move it aside and restore over it",
            if data_empty {
                "the database".to_owned()
            } else {
                data_dir.display().to_string()
            },
            if db_present && !data_empty {
                " and so does the database"
            } else {
                ""
            }
        )));
    }

    // Database first: the one step that can fail on its own.
    let replaced = if data_empty {
        None
    } else {
        let aside = PathBuf::from(format!(
            "{}.replaced-{}",
            data_dir.display(),
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        Some(aside)
    };
    match &target {
        DatabaseTarget::Postgres(url) => {
            let (mut cmd, url) = pg_command("pg_restore", url);
            cmd.arg("--single-transaction")
                .arg("--exit-on-error")
                .arg("--no-owner")
                .arg("--no-privileges");
            if options.replace {
                cmd.arg("--clean").arg("--if-exists");
            }
            cmd.arg("--dbname").arg(url).arg(staging.0.join(DB_PG));
            run_tool("pg_restore", cmd)?;
        }
        DatabaseTarget::Sqlite(_) => {}
    }
    if let Some(aside) = &replaced {
        fs::rename(data_dir, aside).map_err(io(data_dir))?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(io(data_dir))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io(data_dir))?;
    for m in &manifest.files {
        let Some(rel) = m.path.strip_prefix("data/") else {
            continue;
        };
        let from = staging.0.join(&m.path);
        let to = data_dir.join(rel);
        if let Some(parent) = to.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        fs::rename(&from, &to).map_err(io(&to))?;
        // Owner bits only (the data directory is the service user's alone): an archive cannot
        // plant a set-user-id or world-writable file.
        fs::set_permissions(&to, fs::Permissions::from_mode(m.mode & 0o700)).map_err(io(&to))?;
    }
    if let DatabaseTarget::Sqlite(path) = &target {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        if path.exists() {
            // Outside the data directory and --replace given: keep the old file beside it.
            let aside = PathBuf::from(format!("{}.replaced", path.display()));
            fs::rename(path, &aside).map_err(io(path))?;
        }
        let from = staging.0.join(DB_SQLITE);
        fs::rename(&from, path)
            .or_else(|_| fs::copy(&from, path).map(|_| ()))
            .map_err(io(path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }

    let mut config_written = None;
    if let (Some(dest), Some(_)) = (
        config_file,
        manifest.files.iter().find(|m| m.path == CONFIG_MEMBER),
    ) {
        let from = staging.0.join(CONFIG_MEMBER);
        let restored = fs::read(&from).map_err(io(&from))?;
        let current = fs::read(dest).ok();
        if current.as_deref() != Some(restored.as_slice()) {
            let to = if current.is_none() {
                dest.to_path_buf()
            } else {
                PathBuf::from(format!("{}.restored", dest.display()))
            };
            fs::write(&to, &restored).map_err(io(&to))?;
            config_written = Some(to);
        }
    }

    // On record in the restored chain itself.
    let db = Database::open(&target, 1, Duration::from_secs(30))?;
    let mut conn = db.conn()?;
    audit_store::append(
        &mut conn,
        NewAuditEntry::new("system", "backup.restored", Outcome::Success).details(
            serde_json::json!({
                "archive": archive.display().to_string(),
                "created_at": manifest.created_at,
                "manager_version": manifest.manager_version,
                "replaced": replaced.as_ref().map(|p| p.display().to_string()),
            }),
        ),
        chrono::Utc::now().naive_utc(),
    )?;
    Ok(Restored {
        manifest,
        replaced,
        config_written,
    })
}

/// The `patch-manager-*.tar.gz` archives in `dir`, oldest first (names carry the time).
fn archives(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("patch-manager-") && n.ends_with(".tar.gz"))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Deletes the oldest archives in `dir` beyond the newest `keep`.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let found = archives(dir)?;
    let excess = found.len().saturating_sub(keep);
    let old: Vec<PathBuf> = found.into_iter().take(excess).collect();
    for p in &old {
        fs::remove_file(p).map_err(io(p))?;
    }
    Ok(old)
}

/// The newest archive in `dir` and when it was written.
pub fn newest(dir: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let p = archives(dir).ok()?.pop()?;
    let t = fs::metadata(&p).and_then(|m| m.modified()).ok()?;
    Some((p, t))
}

/// Runs the scheduled backups of a running manager (`backup.interval_hours`, 0: none): the first
/// one interval after the newest backup there is (five minutes after start when that is past or
/// there is none), keeping `backup.keep`. Failures are logged and audited, and retried an hour
/// later.
pub fn spawn_schedule(state: crate::state::AppState, config_file: Option<PathBuf>) {
    let hours = state.config.backup.interval_hours;
    if hours == 0 {
        return;
    }
    let every = Duration::from_secs(hours * 3600);
    actix::spawn(async move {
        let dir = state.config.backup.directory(&state.config.data.dir);
        let first = newest(&dir)
            .and_then(|(_, t)| t.elapsed().ok())
            .and_then(|age| every.checked_sub(age))
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(300));
        let mut wait = first;
        loop {
            tokio::time::sleep(wait).await;
            let config = state.config.clone();
            let file = config_file.clone();
            let dir = dir.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(io(&dir))?;
                let out = dir.join(default_name(chrono::Utc::now()));
                let written = create(&config, file.as_deref(), &out)?;
                let pruned = prune(&dir, config.backup.keep.max(1) as usize)?;
                Ok::<_, BackupError>((written, pruned))
            })
            .await;
            wait = match outcome {
                Ok(Ok((written, pruned))) => {
                    tracing::info!(archive = %written.path.display(), bytes = written.bytes,
                        pruned = pruned.len(), "scheduled backup written");
                    every
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "scheduled backup failed; retrying in an hour");
                    state
                        .audit
                        .note(
                            NewAuditEntry::new("system", "backup.created", Outcome::Failure)
                                .details(serde_json::json!({ "error": e.to_string() })),
                        )
                        .await;
                    Duration::from_secs(3600).min(every)
                }
                Err(e) => {
                    tracing::error!(error = %e, "scheduled backup task failed");
                    Duration::from_secs(3600).min(every)
                }
            };
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_leave_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://lpm:s%40cret@db:5432/lpm?sslmode=require"),
            (
                "postgres://lpm@db:5432/lpm?sslmode=require".to_owned(),
                Some("s@cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://root@127.0.0.1/test"),
            ("postgres://root@127.0.0.1/test".to_owned(), None)
        );
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=5 {
            fs::write(
                dir.path()
                    .join(format!("patch-manager-2026120{day}T000000Z.tar.gz")),
                "x",
            )
            .unwrap();
        }
        fs::write(dir.path().join("unrelated.tar.gz"), "x").unwrap();
        let gone = prune(dir.path(), 2).unwrap();
        assert_eq!(gone.len(), 3);
        assert!(gone[0].ends_with("patch-manager-20261201T000000Z.tar.gz"));
        assert!(dir.path().join("unrelated.tar.gz").exists());
        let (newest, _) = newest(dir.path()).unwrap();
        assert!(newest.ends_with("patch-manager-20261205T000000Z.tar.gz"));
    }

    #[test]
    fn member_paths_cannot_leave_the_staging_directory() {
        assert!(safe_relative("data/ca/ca.key").is_some());
        assert!(safe_relative("config/manager.toml").is_some());
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "data/../../x",
            "other/x",
            "",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}
