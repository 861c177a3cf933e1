//! Backup → wipe → restore, on SQLite and on PostgreSQL: the manager comes back with the same
//! users, hosts, audit chain (verified) and CA, and a real agent enrolled before the backup still
//! accepts it. Damaged archives (a flipped byte, a cut tail) and mismatched ones (another
//! database engine) are refused and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{https, Engine};
use diesel::prelude::*;
use patch_manager::backup::{self, BackupError, RestoreOptions};
use patch_manager::config::DatabaseTarget;
use patch_manager::db::schema::{audit_log, hosts, users};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What must survive: user names, host names, audit record count.
fn snapshot(state: &patch_manager::state::AppState) -> (Vec<String>, Vec<String>, i64) {
    let mut c = state.db.conn().unwrap();
    let u = users::table
        .select(users::username)
        .order(users::username)
        .load(&mut *c)
        .unwrap();
    let h = hosts::table
        .select(hosts::display_name)
        .order(hosts::display_name)
        .load(&mut *c)
        .unwrap();
    let n = audit_log::table.count().get_result(&mut *c).unwrap();
    (u, h, n)
}

fn wipe(config: &patch_manager::config::Config) {
    std::fs::remove_dir_all(&config.data.dir).unwrap();
    match config.database_target().unwrap() {
        DatabaseTarget::Sqlite(p) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
        DatabaseTarget::Postgres(url) => {
            let mut c = PgConnection::establish(&url).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut c,
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            )
            .unwrap();
        }
    }
}

fn damaged(archive: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(archive).unwrap();
    f(&mut bytes);
    let out = archive.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

async fn round_trip(engine: Engine) {
    let fleet = common::fleet_on(engine, None).await;
    let config = (*fleet.server.state.config).clone();
    let c = https::client(&fleet.server);
    let base = format!("https://127.0.0.1:{}", fleet.server.addr.port());
    let admin = https::first_admin(&c, &base, &config.data.dir).await;
    let (status, body) = https::api(
        &c,
        "POST",
        &format!("{base}/api/v1/users"),
        Some(&admin),
        Some(serde_json::json!({ "username": "olga", "password": "Quartz-Meadow-77", "role": "operator" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ca = fleet.server.state.pki.ca.fingerprint().to_owned();
    let web_ca = fleet.server.state.pki.web_ca.fingerprint().to_owned();

    // Online: the manager keeps running while the backup is taken.
    let out_dir = tempfile::tempdir().unwrap();
    let archive = out_dir.path().join("backup.tar.gz");
    let config_file = out_dir.path().join("manager.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let written = backup::create(&config, Some(&config_file), &archive).unwrap();
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<&str> = written
        .manifest
        .files
        .iter()
        .map(|m| m.path.as_str())
        .collect();
    for needed in [
        "data/ca/ca.key",
        "data/web-ca/ca.key",
        "config/manager.toml",
    ] {
        assert!(names.contains(&needed), "{needed} not in {names:?}");
    }
    assert_eq!(written.manifest.fleet_ca_fingerprint, ca);
    // The backup is on record (after it was taken, so it is not itself restored).
    let before = snapshot(&fleet.server.state);

    let common::Fleet {
        db,
        server,
        agent,
        host_id,
        agent_dir: _agent_dir,
        ..
    } = fleet;
    server.stop().await;
    wipe(&config);

    // Damaged archives: refused, and nothing is written.
    let flipped = damaged(&archive, "flipped.tar.gz", |b| {
        let i = b.len() / 2;
        b[i] ^= 0x01;
    });
    let cut = damaged(&archive, "cut.tar.gz", |b| b.truncate(b.len() * 2 / 3));
    for bad in [&flipped, &cut] {
        let e = backup::restore(&config, None, bad, RestoreOptions::default()).unwrap_err();
        assert!(
            matches!(e, BackupError::Corrupt(_)),
            "{}: {e}",
            bad.display()
        );
        assert!(e.to_string().contains("nothing was restored"), "{e}");
        assert!(!config.data.dir.exists(), "{e} left {:?}", config.data.dir);
        // The same from the command line: exit status 1 and the reason.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_patch-manager"))
            .args(["--data-dir"])
            .arg(&config.data.dir)
            .args(["--database-url", &db.url(), "--set", "metrics.listen="])
            .arg("restore")
            .arg(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("corrupted or truncated"), "{stderr}");
        assert!(!config.data.dir.exists());
    }
    // Another engine: refused as a mismatch.
    let other = common::TestDb::new(match engine {
        Engine::Sqlite => Engine::Postgres,
        Engine::Postgres => Engine::Sqlite,
    });
    let mut elsewhere = common::test_config(&other);
    elsewhere.data.dir = other.dir.path().join("data");
    let e = backup::restore(&elsewhere, None, &archive, RestoreOptions::default()).unwrap_err();
    assert!(matches!(e, BackupError::Mismatch(_)), "{e}");
    assert!(!elsewhere.data.dir.exists());

    // The real restore.
    let restored_config = out_dir.path().join("restored.toml");
    let done = backup::restore(
        &config,
        Some(&restored_config),
        &archive,
        RestoreOptions::default(),
    )
    .unwrap();
    assert!(done.replaced.is_none());
    assert_eq!(
        std::fs::read(&restored_config).unwrap(),
        std::fs::read(&config_file).unwrap()
    );
    assert_eq!(
        std::fs::metadata(config.data.dir.join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // A second restore over it is refused without --replace.
    let e = backup::restore(&config, None, &archive, RestoreOptions::default()).unwrap_err();
    assert!(matches!(e, BackupError::Refused(_)), "{e}");

    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let state = &server.state;
    let after = snapshot(state);
    assert_eq!(after.0, before.0, "users");
    assert_eq!(after.1, before.1, "hosts");
    // The restore and the new start are recorded on top of the restored chain.
    assert!(
        after.2 >= before.2,
        "audit records {} < {}",
        after.2,
        before.2
    );
    match state.audit.verify().await.unwrap() {
        shared::status::AuditChainState::Intact { .. } => {}
        broken => panic!("audit chain after restore: {broken:?}"),
    }
    assert_eq!(state.pki.ca.fingerprint(), ca);
    assert_eq!(state.pki.web_ca.fingerprint(), web_ca);

    // The agent enrolled before the backup accepts the restored manager's client certificate.
    let client = patch_manager::agent_client::AgentClient::new(
        state.pki.ca.cert_pem(),
        &state.pki.client_cert,
        &state.pki.client_key,
        agent.addr,
        None,
    )
    .unwrap();
    client.health().await.unwrap();
    // And the host actor reaches it: the host turns healthy.
    let mut events = state.fleet.events.subscribe();
    let e = common::refresh_and_await(state, host_id, &mut events).await;
    assert_eq!(e.status, shared::vocab::HostStatus::Healthy, "{e:?}");
    server.stop().await;
    drop(db);
}

#[actix_rt::test]
async fn sqlite_backup_restores_the_same_manager() {
    round_trip(Engine::Sqlite).await;
}

#[actix_rt::test]
async fn postgres_backup_restores_the_same_manager() {
    round_trip(Engine::Postgres).await;
}

#[actix_rt::test]
async fn replace_keeps_what_it_replaced() {
    let db = common::TestDb::new(Engine::Sqlite);
    let config = common::test_config(&db);
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("a.tar.gz");
    backup::create(&config, None, &archive).unwrap();
    // Refused while the manager runs on the configured address.
    let mut running = config.clone();
    running.server.listen = server.addr;
    let e =
        backup::restore(&running, None, &archive, RestoreOptions { replace: true }).unwrap_err();
    assert!(e.to_string().contains("stop it first"), "{e}");
    server.stop().await;
    std::fs::write(config.data.dir.join("marker"), "old").unwrap();
    let done = backup::restore(&config, None, &archive, RestoreOptions { replace: true }).unwrap();
    let aside = done.replaced.unwrap();
    assert_eq!(
        std::fs::read_to_string(aside.join("marker")).unwrap(),
        "old"
    );
    assert!(!config.data.dir.join("marker").exists());
    assert!(config.data.dir.join("ca/ca.key").exists());
}
