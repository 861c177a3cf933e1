//! Writing files that must never be seen half-written or with loose permissions (keys,
//! certificates, configuration): a fresh temporary file with the final mode, synced, renamed into
//! place.
//! Native builds only (feature `config`).

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Temporary names tried before giving up (each collision is an existing entry we never touch).
const ATTEMPTS: usize = 16;

/// Replaces `path` with `contents` atomically, creating parent directories; the file has exactly
/// `mode` from the moment it exists.
///
/// The contents go to a new file with a random name in the same directory, created exclusively
/// (`O_CREAT|O_EXCL`) and without following symlinks (`O_NOFOLLOW`), so nothing planted in the
/// directory (a symlink, a file left world-readable) is written through or reused. Its mode is
/// set on the open file before any byte is written, then file and directory are synced around the
/// rename over `path` (which replaces a symlink at `path` itself, never its target).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let (tmp, mut file) = create_temporary(&dir, name, mode)?;
    let written = (|| {
        // `mode` above is filtered through the umask; this sets it exactly, still before content.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir)?.sync_all()
}

/// Creates `.NAME.RANDOM.tmp` in `dir`, exclusively and without following symlinks.
fn create_temporary(
    dir: &Path,
    name: &std::ffi::OsStr,
    mode: u32,
) -> std::io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", random_u64()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name available")))
}

/// 64 unpredictable bits: the kernel's random source, or (if unreadable) std's randomly keyed
/// hasher over the time, process and a counter.
fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_ne_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// The secret bytes kept hex-encoded in `path` (mode 0600), made by `make` and written when the
/// file does not exist yet. A file that group or others can read is refused, never used.
pub fn load_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!("mode {mode:o} lets others read it; chmod 600"));
            }
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            decode_hex(text.trim())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make()?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_atomic(path, hex.as_bytes(), 0o600).map_err(|e| e.to_string())?;
            Ok(bytes)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("not hex: odd length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "not hex".to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_made_once_kept_private_and_refused_when_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let first = super::load_or_create_secret(&p, || Ok(vec![1, 2, 0xab])).unwrap();
        assert_eq!(first, vec![1, 2, 0xab]);
        let again = super::load_or_create_secret(&p, || Ok(vec![9])).unwrap();
        assert_eq!(again, first, "made once, then read");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(super::load_or_create_secret(&p, || Ok(vec![9])).is_err());
    }

    use super::write_atomic;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/key.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    /// Someone who can write into the directory plants symlinks where the temporary file was (the
    /// old fixed name) or might be, and leaves a world-readable file at the target: the write
    /// neither follows the links nor inherits the loose mode.
    #[test]
    fn planted_symlinks_are_not_followed_and_the_mode_is_exact() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();

        let target = dir.path().join("key.pem");
        std::fs::write(&target, b"old secret").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let planted = [
            dir.path().join("key.pem.tmp"),
            dir.path().join(".key.pem.0000000000000000.tmp"),
        ];
        for p in &planted {
            symlink(&victim, p).unwrap();
        }

        for (contents, mode) in [(&b"new secret"[..], 0o600), (&b"newer secret"[..], 0o640)] {
            write_atomic(&target, contents, mode).unwrap();
            assert_eq!(
                std::fs::read(&victim).unwrap(),
                b"untouched",
                "symlink followed"
            );
            let meta = std::fs::symlink_metadata(&target).unwrap();
            assert!(meta.file_type().is_file(), "the target is not a plain file");
            assert_eq!(meta.permissions().mode() & 0o777, mode);
            assert_eq!(std::fs::read(&target).unwrap(), contents);
        }
        assert_eq!(
            std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o644
        );
        for p in &planted {
            assert!(std::fs::symlink_metadata(p)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1 + planted.len(),
            "no temporary file left"
        );
    }
}
