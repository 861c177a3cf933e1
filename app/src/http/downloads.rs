//! `/downloads/patch-agent.deb`: the agent package for the one-line install of "Add a host".
//! Public like the root CA download (a package is no secret, and a new host has no credentials);
//! its integrity comes from the SHA-256 the install command carries, shown to a signed-in Admin.

use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the package is served.
pub const AGENT_PACKAGE_PATH: &str = "/downloads/patch-agent.deb";

/// The package file and its digest, read once at start (a package upgrade restarts the manager).
#[derive(Debug, Clone)]
pub struct AgentPackage {
    /// File.
    pub path: PathBuf,
    /// SHA-256, hex.
    pub sha256: String,
}

impl AgentPackage {
    /// Reads `path` if it exists; a missing or unreadable file means no one-line install.
    pub fn load(path: &Path) -> Option<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e,
                    "the agent package cannot be read; Add a host shows the enroll command only");
                return None;
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        tracing::info!(file = %path.display(), %sha256, "agent package served at {AGENT_PACKAGE_PATH}");
        Some(Self {
            path: path.to_path_buf(),
            sha256,
        })
    }
}

/// `GET /downloads/patch-agent.deb`.
pub async fn agent_package(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let Some(pkg) = state.agent_package.as_ref() else {
        return Err(crate::error::AppError::NotFound(
            "this manager has no agent package to serve (server.agent_package)".into(),
        )
        .into());
    };
    let file = actix_files::NamedFile::open_async(&pkg.path)
        .await?
        .set_content_type(
            "application/vnd.debian.binary-package"
                .parse()
                .map_err(actix_web::error::ErrorInternalServerError)?,
        )
        .set_content_disposition(header::ContentDisposition::attachment("patch-agent.deb"));
    let mut res = file.into_response(&req);
    if let Ok(v) = header::HeaderValue::from_str(&format!("sha256={}", pkg.sha256)) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-content-sha256"), v);
    }
    Ok(res)
}
