//! Test harness: a fresh database per test on each engine, and a real manager on 127.0.0.1:0.
//!
//! PostgreSQL tests create their own database (`lpm_test_<ulid>`) on the server named by
//! `LPM_TEST_PG_ADMIN_URL` (default: the local trust-auth server) and drop it afterwards, so tests
//! run in parallel without sharing state. A PostgreSQL that cannot be reached fails the test: the
//! README's test command starts it; nothing is skipped silently.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod https;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use patch_manager::config::{Config, DatabaseTarget};
use patch_manager::db::Database;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// Both engines, for tests that must hold on each.
pub const BACKENDS: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

/// A database engine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

fn admin_url() -> String {
    std::env::var("LPM_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Loopback test databases are reached without TLS: libpq would otherwise set up OpenSSL, whose
/// clean-up at process exit races pool threads still closing connections (a test binary that
/// passed then died with SIGSEGV on exit).
const NO_TLS: &str = "sslmode=disable";

fn without_tls(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&{NO_TLS}")
    } else {
        format!("{url}?{NO_TLS}")
    }
}

/// A throw-away database and data directory, removed on drop.
pub struct TestDb {
    pub engine: Engine,
    pub target: DatabaseTarget,
    pub dir: TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn new(engine: Engine) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match engine {
            Engine::Sqlite => Self {
                engine,
                target: DatabaseTarget::Sqlite(dir.path().join("test.db")),
                dir,
                pg_name: None,
            },
            Engine::Postgres => {
                let name = format!("lpm_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut admin =
                    PgConnection::establish(&without_tls(&admin_url())).unwrap_or_else(|e| {
                        panic!(
                        "PostgreSQL at {} is not reachable ({e}); start it (scripts/test.sh does)",
                        admin_url()
                    )
                    });
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                let base = admin_url();
                let base = base.split('?').next().unwrap_or_default();
                let url = match base.rfind('/') {
                    Some(i) => without_tls(&format!("{}/{name}", &base[..i])),
                    None => panic!("bad admin url {base}"),
                };
                Self {
                    engine,
                    target: DatabaseTarget::Postgres(url),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// `database.url` value for this database.
    pub fn url(&self) -> String {
        match &self.target {
            DatabaseTarget::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseTarget::Postgres(u) => u.clone(),
        }
    }

    /// Opens (and migrates) the database.
    pub fn open(&self) -> Database {
        Database::open(&self.target, 4, Duration::from_secs(10)).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut admin) = PgConnection::establish(&without_tls(&admin_url())) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Directory holding the built web bundle: `LPM_SITE_ROOT`, set by scripts/test.sh.
pub fn site_root() -> PathBuf {
    std::env::var_os("LPM_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/site"))
}

/// The built web bundle in [`site_root`] (its `pkg/bundle.json`), if built: the URL path of its
/// main JS (as the pages load it) and the file of its main WebAssembly module.
pub fn bundle() -> Option<(String, PathBuf)> {
    let bundle = patch_manager::http::bundle::Bundle::load(&site_root().join("pkg")).unwrap();
    let (dir, name) = (bundle.pkg_dir()?, bundle.output_name()?);
    Some((
        format!("/{dir}/{name}.js"),
        site_root().join(&dir).join(format!("{name}_bg.wasm")),
    ))
}

/// A configuration for a manager on 127.0.0.1:0 over `db`.
pub fn test_config(db: &TestDb) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics.listen = "127.0.0.1:0".into();
    c.server.workers = 1;
    c.server.tls = patch_manager::config::TlsMode::Off;
    c.server.site_root = site_root();
    c.server.assets_dir = workspace().join("assets");
    c.data.dir = db.dir.path().join("data");
    c.database.url = db.url();
    c.database.pool_size = 4;
    c.log.level = "warn".into();
    // Host actors poll on demand in tests (RefreshHost): a host's first scheduled poll falls
    // hours into the day-long interval, so no test's agent is polled behind its back.
    c.fleet.health_interval_secs = 86_400;
    c
}

/// A manager serving HTTPS with its internal CA, and a real agent enrolled into it with a
/// one-time token and started from the files enrollment wrote.
pub struct Fleet {
    pub db: TestDb,
    pub server: patch_manager::server::RunningServer,
    pub agent: patch_agent::server::RunningAgent,
    /// The agent's job manager.
    pub agent_jobs: patch_agent::jobs::Jobs,
    pub host_id: i64,
    pub agent_config: patch_agent::config::AgentConfig,
    pub agent_dir: TempDir,
    /// The agent's apt configuration (`None`: this machine's).
    pub apt: Option<std::path::PathBuf>,
}

/// The agent tests' isolated apt root over the project's test packages.
#[path = "../../../agent/tests/common/apt_root.rs"]
mod apt_root;
#[allow(unused_imports)] // not every test binary uses it
pub use apt_root::AptRoot;

/// Starts an agent (in process) from its configuration, on its configured address, over the
/// apt configuration `apt` (an isolated root; `None`: this machine's own package database, for
/// tests that never ask for packages or patches).
pub fn run_agent(
    agent_config: &patch_agent::config::AgentConfig,
    apt: Option<&std::path::Path>,
) -> patch_agent::server::RunningAgent {
    run_agent_with_jobs(agent_config, apt).0
}

/// [`run_agent`], answering the agent's job manager too (to see what the agent was asked).
pub fn run_agent_with_jobs(
    agent_config: &patch_agent::config::AgentConfig,
    apt: Option<&std::path::Path>,
) -> (patch_agent::server::RunningAgent, patch_agent::jobs::Jobs) {
    let audit = patch_agent::audit::AuditLog::open(&agent_config.audit.path).unwrap();
    let backend = std::sync::Arc::new(
        patch_agent::backend::apt::AptBackend::new(apt.map(std::path::Path::to_path_buf)).unwrap(),
    );
    let jobs = patch_agent::jobs::Jobs::new(
        backend.clone(),
        audit.clone(),
        agent_config.jobs.state_dir.clone(),
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    let running =
        patch_agent::server::start(agent_config, backend, jobs.clone(), audit, None).unwrap();
    (running, jobs)
}

/// One manager and one agent enrolled through the real path; the agent reads this machine's
/// package database (tests that use it never ask for packages or patches).
pub async fn fleet_of_one() -> Fleet {
    fleet_with(None).await
}

/// One manager and one agent over the apt configuration `apt`.
pub async fn fleet_with(apt: Option<std::path::PathBuf>) -> Fleet {
    fleet_on(Engine::Sqlite, apt).await
}

/// [`fleet_with`] on the database engine `engine`.
pub async fn fleet_on(engine: Engine, apt: Option<std::path::PathBuf>) -> Fleet {
    let db = TestDb::new(engine);
    let mut config = test_config(&db);
    config.server.tls = patch_manager::config::TlsMode::Internal;
    config.server.public_names = vec!["localhost".into(), "127.0.0.1".into()];
    let server = patch_manager::server::start(config).await.unwrap();
    let token = {
        let mut conn = server.state.db.conn().unwrap();
        let now = server.state.clock.now();
        patch_manager::pki::enrollment::create(
            &mut conn,
            server.state.pki.ca.fingerprint(),
            &patch_manager::pki::enrollment::TokenRequest {
                group_id: None,
                ..Default::default()
            },
            now + chrono::Duration::hours(1),
            now,
        )
        .unwrap()
    };
    let agent_dir = tempfile::tempdir().unwrap();
    let config_path = agent_dir.path().join("agent.toml");
    let mut base = patch_agent::config::AgentConfig::default();
    base.server.listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    base.tls.cert = agent_dir.path().join("tls/agent.crt");
    base.tls.key = agent_dir.path().join("tls/agent.key");
    base.tls.client_ca = agent_dir.path().join("tls/ca.crt");
    base.audit.path = agent_dir.path().join("audit.jsonl");
    base.jobs.state_dir = agent_dir.path().join("state");
    std::fs::write(&config_path, toml::to_string(&base).unwrap()).unwrap();
    let done = patch_agent::enroll::enroll(&patch_agent::enroll::EnrollOptions {
        manager: format!("https://127.0.0.1:{}", server.addr.port()),
        token: token.encode(),
        hostname: "agent01.test".into(),
        addresses: vec!["127.0.0.1".parse().unwrap()],
        config_path: config_path.clone(),
        source: None,
    })
    .await
    .unwrap();
    let agent_config = done.config;
    let (agent, agent_jobs) = run_agent_with_jobs(&agent_config, apt.as_deref());
    Fleet {
        db,
        server,
        agent,
        agent_jobs,
        host_id: done.host_id,
        agent_config,
        agent_dir,
        apt,
    }
}

/// A decoded HTTP answer.
pub struct Answer {
    pub status: u16,
    pub cookies: Vec<String>,
    pub body: Value,
}

/// One request with optional JSON body.
pub async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Answer {
    let c = awc::Client::builder()
        .disable_redirects()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let mut req = c.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.insert_header((*k, v.as_str()));
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let cookies = res
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = res.body().await.unwrap();
    Answer {
        status: res.status().as_u16(),
        cookies,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Value of a `Set-Cookie` by name.
pub fn cookie_value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|r| r.split(';').next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

/// Creates the first Admin `admin` / `tangerine-Orbit-42` with the setup token.
pub async fn setup_admin(base: &str, data: &std::path::Path) {
    let token = std::fs::read_to_string(data.join("setup-token")).unwrap();
    let a = call(
        "POST",
        &format!("{base}/api/v1/setup"),
        &[],
        Some(json!({
        "token": token.trim(), "username": "admin", "password": "tangerine-Orbit-42" })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Signs in over the API (`client: api`) and answers the `Authorization: Bearer` header to use.
pub async fn bearer_for(base: &str, user: &str, password: &str) -> [(&'static str, String); 1] {
    let a = call(
        "POST",
        &format!("{base}/api/v1/auth/login"),
        &[],
        Some(json!({ "username": user, "password": password, "client": "api" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    [(
        "authorization",
        format!("Bearer {}", a.body["access_token"].as_str().unwrap()),
    )]
}

/// A raw HTTP/1.1 GET from another loopback source address (`127.0.0.2` stands in for a foreign
/// host); answers (status, headers, body).
pub async fn get_from(
    source: std::net::Ipv4Addr,
    addr: std::net::SocketAddr,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    request_from(source, addr, "GET", path, &[], None).await
}

/// A raw HTTP/1.1 request from a chosen loopback source address, with extra headers and an
/// optional JSON body; answers (status, headers, body).
pub async fn request_from(
    source: std::net::Ipv4Addr,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: manager\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Waits (for delivery rounds, not for time) until every agent holds the CRL in force; answers
/// the status then. Fails after 60 s.
pub async fn crl_delivered(state: &patch_manager::state::AppState) -> shared::fleet::CrlStatus {
    let mut rounds = state.crl.rounds();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = patch_manager::pki::crl::status(state).await.unwrap();
        if status.pending.is_empty() {
            return status;
        }
        tokio::time::timeout_at(deadline, rounds.changed())
            .await
            .unwrap_or_else(|_| panic!("the CRL did not reach every agent: {status:?}"))
            .unwrap();
    }
}

/// Registers a host row directly (no agent behind it; nothing listens on low ports such as 9),
/// named `name` with FQDN `name.test`; answers its id.
/// Two hosts, `web-1` and `db-1`, written straight into the database: (web, db) ids.
pub async fn web_and_db_hosts(state: &patch_manager::state::AppState) -> (i64, i64) {
    let now = state.clock.now();
    state
        .db
        .run(move |c| {
            Ok((
                insert_host(c, "web-1", 9, now),
                insert_host(c, "db-1", 10, now),
            ))
        })
        .await
        .unwrap()
}

pub fn insert_host(
    conn: &mut patch_manager::db::DbConnection,
    name: &str,
    port: i32,
    now: chrono::NaiveDateTime,
) -> i64 {
    use diesel::prelude::*;
    use patch_manager::db::schema::hosts;
    diesel::insert_into(hosts::table)
        .values((
            hosts::display_name.eq(name),
            hosts::fqdn.eq(format!("{name}.test")),
            hosts::ip_address.eq("127.0.0.1"),
            hosts::agent_port.eq(port),
            hosts::status.eq("unknown"),
            hosts::reboot_required.eq(false),
            hosts::pending_patches.eq(0_i64),
            hosts::pending_security_patches.eq(0_i64),
            hosts::created_at.eq(now),
            hosts::updated_at.eq(now),
        ))
        .returning(hosts::id)
        .get_result(conn)
        .unwrap()
}

/// A child process killed when the test ends, whatever happens.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` one-time enrollment tokens (an hour long), encoded.
pub fn enrollment_tokens(server: &patch_manager::server::RunningServer, n: usize) -> Vec<String> {
    let mut conn = server.state.db.conn().unwrap();
    let now = server.state.clock.now();
    (0..n)
        .map(|_| {
            patch_manager::pki::enrollment::create(
                &mut conn,
                server.state.pki.ca.fingerprint(),
                &Default::default(),
                now + chrono::Duration::hours(1),
                now,
            )
            .unwrap()
            .encode()
        })
        .collect()
}

/// Asks the host's actor to poll now and answers the next state change announced for the host.
/// `events` is subscribed by the caller beforehand, so the change cannot be missed.
pub async fn refresh_and_await(
    state: &patch_manager::state::AppState,
    host_id: i64,
    events: &mut tokio::sync::broadcast::Receiver<shared::fleet::HostStateEvent>,
) -> shared::fleet::HostStateEvent {
    assert!(state
        .fleet
        .supervisor
        .send(patch_manager::fleet::supervisor::RefreshHost(host_id))
        .await
        .unwrap());
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("no host state change within 60 s")
            .unwrap();
        if i64::from(e.host_id) == host_id {
            return e;
        }
    }
}
