//! The web UI's WebAssembly bundle under `/pkg`: the files `scripts/lib.sh` (`build_wasm`)
//! wrote into `pkg/<dir>/`, a directory named by the hash of their content and listed with them in
//! `pkg/bundle.json`. Only the listed files are served; each as the precompressed variant the
//! browser accepts (`.br`, then `.gz`, negotiated from `Accept-Encoding`), marked immutable for a
//! year (a new build has a new directory), with `Vary: Accept-Encoding`.
//!
//! The bundle is split at the UI's lazy routes: a main module (`<name>.js`, `<name>_bg.wasm`),
//! one module per page and shared chunks, and a loader; `__wasm_split_manifest.json` in the
//! directory says which modules each page needs, so a rendered page can name them for preloading
//! ([`Bundle::split_manifest`]).

use actix_files::NamedFile;
use actix_web::http::header::{self, AcceptEncoding, ContentEncoding, Encoding, Header};
use actix_web::mime;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The manifest's file name inside the `pkg` directory.
pub const MANIFEST: &str = "bundle.json";

/// The split manifest's file name inside the bundle's directory (the name leptos reads).
pub const SPLIT_MANIFEST: &str = "__wasm_split_manifest.json";

/// The chunk loader's file name inside the bundle's directory (the name leptos preloads).
pub const SPLIT_LOADER: &str = "__wasm_split.______________________.js";

/// One built bundle, as its manifest describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The directory under `pkg/` holding the files (the hash of their content).
    pub dir: String,
    /// Base name of the main module: `<name>.js` and `<name>_bg.wasm`.
    pub name: String,
    /// The cargo profile it was built with (`dev`, `wasm-release`).
    pub profile: String,
    /// SHA-256 over the compiler's `.wasm` and the splitter's sources (lets the build skip
    /// splitting, wasm-bindgen, wasm-opt and compression when nothing changed).
    pub source: String,
    /// Every file the bundle consists of (without the compressed variants).
    pub files: Vec<String>,
    /// Which precompressed variants exist beside each file (`br`, `gzip`).
    #[serde(default)]
    pub encodings: Vec<String>,
}

/// The bundle the server serves.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    /// The manifest, or `None` when the site has no built bundle.
    pub manifest: Option<Manifest>,
    /// For each split point (a lazy route's view), the modules it needs, without `.wasm`.
    split: HashMap<String, Vec<String>>,
    files: BTreeSet<String>,
    brotli: bool,
    gzip: bool,
}

impl Bundle {
    /// Reads `dir/bundle.json` and the split manifest of the directory it names. A missing
    /// manifest is no bundle (the pages then load nothing and say so in the log); a malformed
    /// one, one naming a file that is not a plain file name or is missing, or a split manifest
    /// naming a module that is not in the bundle, is an error.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(MANIFEST);
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<Manifest>(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut files = BTreeSet::new();
        let mut split = HashMap::new();
        let (mut brotli, mut gzip) = (false, false);
        let mut bundle_dir = dir.to_owned();
        if let Some(m) = &manifest {
            for name in m.files.iter().chain([&m.name, &m.dir]) {
                if !plain_name(name) {
                    return Err(format!(
                        "{}: “{name}” is not a plain file name",
                        path.display()
                    ));
                }
            }
            for enc in &m.encodings {
                match enc.as_str() {
                    "br" => brotli = true,
                    "gzip" => gzip = true,
                    other => {
                        return Err(format!(
                            "{}: unknown encoding “{other}” (br, gzip)",
                            path.display()
                        ))
                    }
                }
            }
            bundle_dir = dir.join(&m.dir);
            let suffixes = [("", true), (".br", brotli), (".gz", gzip)];
            for f in &m.files {
                for (suffix, listed) in suffixes {
                    if listed && !bundle_dir.join(format!("{f}{suffix}")).is_file() {
                        return Err(format!(
                            "{}: {}/{f}{suffix} is missing",
                            path.display(),
                            m.dir
                        ));
                    }
                }
            }
            files = m.files.iter().cloned().collect();
            let split_path = bundle_dir.join(SPLIT_MANIFEST);
            match std::fs::read(&split_path) {
                Ok(bytes) => {
                    split = serde_json::from_slice::<HashMap<String, Vec<String>>>(&bytes)
                        .map_err(|e| format!("{}: {e}", split_path.display()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", split_path.display())),
            }
            for module in split.values().flatten() {
                if !files.contains(&format!("{module}.wasm")) {
                    return Err(format!(
                        "{}: module “{module}” is not in the bundle",
                        split_path.display()
                    ));
                }
            }
        }
        Ok(Self {
            dir: bundle_dir,
            manifest,
            split,
            files,
            brotli,
            gzip,
        })
    }

    /// The base name of the main module the pages load (`<name>.js`, `<name>_bg.wasm`).
    pub fn output_name(&self) -> Option<&str> {
        self.manifest.as_ref().map(|m| m.name.as_str())
    }

    /// The bundle's directory relative to the site root (`pkg/<dir>`), as the pages name it.
    pub fn pkg_dir(&self) -> Option<String> {
        self.manifest.as_ref().map(|m| format!("pkg/{}", m.dir))
    }

    /// What a rendered page needs to name the modules of the lazy routes it showed: the URL
    /// path of the bundle's directory, the modules each split point needs, and the loader.
    /// `None` without a bundle or when it was not split.
    pub fn split_manifest(&self) -> Option<(String, HashMap<String, Vec<String>>, String)> {
        let dir = self.pkg_dir()?;
        (!self.split.is_empty() && self.files.contains(SPLIT_LOADER)).then(|| {
            (
                format!("/{dir}"),
                self.split.clone(),
                SPLIT_LOADER.to_owned(),
            )
        })
    }
}

/// Letters, digits, `.`, `_` and `-`, not starting with a dot: nothing that leaves the directory.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn content_type(name: &str) -> mime::Mime {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("wasm") => "application/wasm"
            .parse()
            .unwrap_or(mime::APPLICATION_OCTET_STREAM),
        Some("js") => mime::TEXT_JAVASCRIPT,
        _ => mime::APPLICATION_OCTET_STREAM,
    }
}

/// `GET /pkg/{dir}/{file}`.
pub async fn serve(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    bundle: web::Data<Bundle>,
) -> actix_web::Result<HttpResponse> {
    let (dir, name) = path.into_inner();
    let current = bundle.manifest.as_ref().is_some_and(|m| m.dir == dir);
    if !current || !bundle.files.contains(&name) {
        return Err(actix_web::error::ErrorNotFound(
            "no such file in the web bundle",
        ));
    }
    let mut offered = vec![Encoding::identity()];
    if bundle.brotli {
        offered.push(Encoding::brotli());
    }
    if bundle.gzip {
        offered.push(Encoding::gzip());
    }
    let chosen = AcceptEncoding::parse(&req)
        .ok()
        .and_then(|accept| accept.negotiate(offered.iter()))
        .unwrap_or(Encoding::identity());
    let (path, encoding) = match chosen {
        e if e == Encoding::brotli() => (
            bundle.dir.join(format!("{name}.br")),
            Some(ContentEncoding::Brotli),
        ),
        e if e == Encoding::gzip() => (
            bundle.dir.join(format!("{name}.gz")),
            Some(ContentEncoding::Gzip),
        ),
        _ => (bundle.dir.join(&name), None),
    };
    let mut file = NamedFile::open_async(&path)
        .await?
        .set_content_type(content_type(&name))
        .disable_content_disposition()
        .use_last_modified(false);
    if let Some(enc) = encoding {
        file = file.set_content_encoding(enc);
    }
    let mut res = file.into_response(&req);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("accept-encoding"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_listed() {
        for ok in ["patch_manager_ui.0123abcd.js", "a-b_c.wasm"] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../secrets.key",
            "a/b.js",
            ".hidden",
            "a\\b",
            "x y",
            "%2e%2e",
        ] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_manifest_naming_a_path_or_a_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |json: &str| std::fs::write(dir.path().join(MANIFEST), json).unwrap();
        let manifest = |dir: &str, files: &str, extra: &str| {
            format!(
                r#"{{"dir":"{dir}","name":"ui","profile":"dev","source":"x","files":[{files}]{extra}}}"#
            )
        };
        assert!(Bundle::load(dir.path()).unwrap().manifest.is_none());
        write(&manifest("0a", r#""../../etc/passwd""#, ""));
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("not a plain file name"));
        write(&manifest("..", r#""ui.js""#, ""));
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("not a plain file name"));
        write(&manifest("0a", r#""ui.js""#, ""));
        assert!(Bundle::load(dir.path()).unwrap_err().contains("missing"));
        let bundle = dir.path().join("0a");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::write(bundle.join("ui.js"), "x").unwrap();
        write(&manifest("0a", r#""ui.js""#, r#","encodings":["zz"]"#));
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("unknown encoding"));
        write(&manifest("0a", r#""ui.js""#, r#","encodings":["gzip"]"#));
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("0a/ui.js.gz is missing"));
        write(&manifest("0a", r#""ui.js""#, ""));
        let loaded = Bundle::load(dir.path()).unwrap();
        assert_eq!(loaded.output_name(), Some("ui"));
        assert_eq!(loaded.pkg_dir().as_deref(), Some("pkg/0a"));
        assert!(loaded.split_manifest().is_none(), "not split");

        // A split manifest may name only modules of the bundle.
        std::fs::write(bundle.join(SPLIT_LOADER), "x").unwrap();
        std::fs::write(bundle.join("split_a.wasm"), "x").unwrap();
        std::fs::write(
            bundle.join(SPLIT_MANIFEST),
            r#"{"page_1":["split_a","chunk_0"]}"#,
        )
        .unwrap();
        let files = format!(r#""ui.js","{SPLIT_LOADER}","split_a.wasm""#);
        write(&manifest("0a", &files, ""));
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("module “chunk_0” is not in the bundle"));
        std::fs::write(bundle.join(SPLIT_MANIFEST), "{not json").unwrap();
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains(SPLIT_MANIFEST));
        std::fs::write(bundle.join(SPLIT_MANIFEST), r#"{"page_1":["split_a"]}"#).unwrap();
        let (path, split, loader) = Bundle::load(dir.path()).unwrap().split_manifest().unwrap();
        assert_eq!(path, "/pkg/0a");
        assert_eq!(split["page_1"], ["split_a"]);
        assert_eq!(loader, SPLIT_LOADER);
    }
}
