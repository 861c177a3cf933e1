//! The web UI's WebAssembly bundle under `/pkg`: the files `scripts/lib.sh` (`build_wasm`)
//! wrote, named by their content's hash and listed in `pkg/bundle.json`. Only the listed files
//! are served; each as the precompressed variant the browser accepts (`.br`, then `.gz`,
//! negotiated from `Accept-Encoding`), marked immutable for a year (a new build has new names),
//! with `Vary: Accept-Encoding`. The manifest's `name` is the base name the pages load.

use actix_files::NamedFile;
use actix_web::http::header::{self, AcceptEncoding, ContentEncoding, Encoding, Header};
use actix_web::mime;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The manifest's file name inside the `pkg` directory.
pub const MANIFEST: &str = "bundle.json";

/// One built bundle, as its manifest describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Base name of the bundle: `<name>.js` and `<name>_bg.wasm`.
    pub name: String,
    /// The cargo profile it was built with (`dev`, `wasm-release`).
    pub profile: String,
    /// SHA-256 of the compiler's `.wasm` the bundle was made from (lets the build skip
    /// wasm-bindgen, wasm-opt and compression when nothing changed).
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
    files: BTreeSet<String>,
    brotli: bool,
    gzip: bool,
}

impl Bundle {
    /// Reads `dir/bundle.json`. A missing manifest is no bundle (the pages then load nothing and
    /// say so in the log); a malformed one, or one naming a file that is not a plain file name in
    /// `dir`, is an error.
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
        let (mut brotli, mut gzip) = (false, false);
        if let Some(m) = &manifest {
            for name in m.files.iter().chain(std::iter::once(&m.name)) {
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
            let suffixes = [("", true), (".br", brotli), (".gz", gzip)];
            for f in &m.files {
                for (suffix, listed) in suffixes {
                    if listed && !dir.join(format!("{f}{suffix}")).is_file() {
                        return Err(format!("{}: {f}{suffix} is missing", path.display()));
                    }
                }
            }
            files = m.files.iter().cloned().collect();
        }
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            files,
            brotli,
            gzip,
        })
    }

    /// The base name the pages load (`<name>.js`, `<name>_bg.wasm`).
    pub fn output_name(&self) -> Option<&str> {
        self.manifest.as_ref().map(|m| m.name.as_str())
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

/// `GET /pkg/{file}`.
pub async fn serve(
    req: HttpRequest,
    file: web::Path<String>,
    bundle: web::Data<Bundle>,
) -> actix_web::Result<HttpResponse> {
    let name = file.into_inner();
    if !bundle.files.contains(&name) {
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
        assert!(Bundle::load(dir.path()).unwrap().manifest.is_none());
        write(r#"{"name":"ui.1","profile":"dev","source":"x","files":["../../etc/passwd"]}"#);
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("not a plain file name"));
        write(r#"{"name":"ui.1","profile":"dev","source":"x","files":["ui.1.js"]}"#);
        assert!(Bundle::load(dir.path()).unwrap_err().contains("missing"));
        std::fs::write(dir.path().join("ui.1.js"), "x").unwrap();
        write(
            r#"{"name":"ui.1","profile":"dev","source":"x","files":["ui.1.js"],"encodings":["zz"]}"#,
        );
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("unknown encoding"));
        write(
            r#"{"name":"ui.1","profile":"dev","source":"x","files":["ui.1.js"],"encodings":["gzip"]}"#,
        );
        assert!(Bundle::load(dir.path())
            .unwrap_err()
            .contains("ui.1.js.gz is missing"));
        write(r#"{"name":"ui.1","profile":"dev","source":"x","files":["ui.1.js"]}"#);
        assert_eq!(
            Bundle::load(dir.path()).unwrap().output_name(),
            Some("ui.1")
        );
    }
}
