//! The audit chain on both engines: append through the single writer, verify, tamper, and see the
//! verifier name the first broken record; cut the tail and see the signed checkpoints count what
//! is missing; append while a verification runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::audit::checkpoint::{self, CheckpointFile, Signer};
use patch_manager::audit::{AuditLog, AuditOptions, ChainVerifier};
use patch_manager::db::audit::{compute_row_hash, AuditRow, NewAuditEntry, Outcome};
use patch_manager::db::schema::audit_log;
use shared::status::AuditChainState;
use std::sync::Arc;

fn entry(i: usize) -> NewAuditEntry {
    NewAuditEntry {
        actor: format!("user{i}"),
        action: "test.event".into(),
        target: Some(format!("host:{i}")),
        outcome: if i.is_multiple_of(2) {
            Outcome::Success
        } else {
            Outcome::Denied
        },
        details: serde_json::json!({ "n": i, "text": "quote \" and\nnewline" }),
        source_ip: Some("127.0.0.1".into()),
        request_id: Some(ulid::Ulid::new().to_string()),
    }
}

async fn fill(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.record(entry(i)).await.unwrap();
    }
}

#[actix_rt::test]
async fn appended_chain_verifies_and_edits_are_named() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let log = AuditLog::start(database.clone(), Default::default());
        fill(&log, 5).await;
        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 5 },
            "{engine:?}"
        );

        let mut conn = database.conn().unwrap();
        diesel::update(audit_log::table.filter(audit_log::id.eq(3)))
            .set(audit_log::actor.eq("mallory"))
            .execute(&mut *conn)
            .unwrap();
        match log.verify().await.unwrap() {
            AuditChainState::Broken { id, reason } => {
                assert_eq!(id, 3, "{engine:?}: {reason}");
                assert!(reason.contains("altered"), "{reason}");
            }
            other => panic!("{engine:?}: tampering not detected: {other:?}"),
        }
        assert_eq!(
            log.last_verdict()
                .map(|v| matches!(v, AuditChainState::Broken { id: 3, .. })),
            Some(true)
        );
    }
}

/// An attacker who edits a record and recomputes its hash still breaks the link to the next one.
#[actix_rt::test]
async fn recomputed_hash_breaks_the_next_link() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let log = AuditLog::start(database.clone(), Default::default());
        fill(&log, 4).await;
        let mut conn = database.conn().unwrap();
        let mut row: AuditRow = audit_log::table
            .filter(audit_log::id.eq(2))
            .select(AuditRow::as_select())
            .first(&mut *conn)
            .unwrap();
        row.details_json = "{\"n\":99}".into();
        row.row_hash = compute_row_hash(&row);
        diesel::update(audit_log::table.filter(audit_log::id.eq(2)))
            .set((
                audit_log::details_json.eq(&row.details_json),
                audit_log::row_hash.eq(&row.row_hash),
            ))
            .execute(&mut *conn)
            .unwrap();
        match log.verify().await.unwrap() {
            AuditChainState::Broken { id, reason } => {
                assert_eq!(id, 3, "{engine:?}: {reason}");
                assert!(reason.contains("prev_hash"), "{reason}");
            }
            other => panic!("{engine:?}: relinking not detected: {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn deleted_record_is_named() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let log = AuditLog::start(database.clone(), Default::default());
        fill(&log, 4).await;
        let mut conn = database.conn().unwrap();
        diesel::delete(audit_log::table.filter(audit_log::id.eq(2)))
            .execute(&mut *conn)
            .unwrap();
        match log.verify().await.unwrap() {
            AuditChainState::Broken { id, reason } => {
                assert_eq!(id, 2, "{engine:?}: {reason}");
                assert!(reason.contains("missing"), "{reason}");
            }
            other => panic!("{engine:?}: deletion not detected: {other:?}"),
        }
    }
}

/// Many writers at once still produce one linear chain: the single writer serialises them.
#[actix_rt::test]
async fn concurrent_appends_stay_linear() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let log = AuditLog::start(database.clone(), Default::default());
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let log = log.clone();
                actix_rt::spawn(async move { log.record(entry(i)).await.unwrap().id })
            })
            .collect();
        let mut ids = Vec::new();
        for h in handles {
            ids.push(h.await.unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=40).collect::<Vec<i64>>(), "{engine:?}");
        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 40 },
            "{engine:?}"
        );
    }
}

#[actix_rt::test]
async fn empty_log_is_intact() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let log = AuditLog::start(db.open(), Default::default());
        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 0 },
            "{engine:?}"
        );
    }
}

fn with_checkpoints(db: &TestDb, every: u64) -> (patch_manager::db::Database, AuditLog) {
    let database = db.open();
    let signer = Signer::load_or_create(db.dir.path()).unwrap();
    let log = AuditLog::start_with(
        database.clone(),
        Default::default(),
        AuditOptions {
            checkpoints: Some(Arc::new(signer)),
            checkpoint_every_records: every,
            metrics: None,
        },
    );
    (database, log)
}

/// `verify-audit`'s way: the checkpoint file and public key as found in the data directory.
fn cli_verdict(db: &TestDb, database: &patch_manager::db::Database) -> AuditChainState {
    let file = CheckpointFile::open(db.dir.path()).unwrap();
    assert!(file.is_some(), "the public key is written next to the key");
    let mut conn = database.conn().unwrap();
    ChainVerifier::new(file).full(&mut conn).unwrap().state
}

fn assert_truncated(verdict: &AuditChainState, tail: i64, checkpoint: i64, what: &str) {
    match verdict {
        AuditChainState::Broken { id, reason } => {
            assert_eq!(*id, tail + 1, "{what}: {reason}");
            let missing = checkpoint - tail;
            assert!(
                reason.starts_with(&format!(
                    "TRUNCATED: the chain ends at record {tail} but checkpoint at record {checkpoint} (signed "
                )),
                "{what}: {reason}"
            );
            assert!(
                reason.contains(&format!("— {missing} records missing")),
                "{what}: {reason}"
            );
        }
        other => panic!("{what}: truncation not detected: {other:?}"),
    }
}

/// Deleting the newest records leaves a chain that links up; the signed checkpoint outside the
/// database shows it, with the number of records missing since.
#[actix_rt::test]
async fn truncated_tail_is_counted_from_the_last_checkpoint() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let (database, log) = with_checkpoints(&db, 1000);
        fill(&log, 54).await;
        let cp = log
            .checkpoint()
            .await
            .unwrap()
            .expect("a checkpoint of record 54");
        assert_eq!(cp.id, 54);
        assert_eq!(
            log.checkpoint().await.unwrap(),
            None,
            "same head: no second line"
        );
        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 54 }
        );
        assert_eq!(
            log.verify_incremental().await.unwrap(),
            AuditChainState::Intact { records: 54 }
        );

        let mut conn = database.conn().unwrap();
        let deleted = diesel::delete(audit_log::table.filter(audit_log::id.gt(50)))
            .execute(&mut *conn)
            .unwrap();
        assert_eq!(deleted, 4);
        drop(conn);
        // The hash chain alone still links up: this is what went unnoticed.
        let mut conn = database.conn().unwrap();
        assert_eq!(
            patch_manager::db::audit::verify(&mut conn).unwrap(),
            AuditChainState::Intact { records: 50 }
        );
        drop(conn);

        let what = format!("{engine:?} incremental");
        assert_truncated(&log.verify_incremental().await.unwrap(), 50, 54, &what);
        let what = format!("{engine:?} full");
        assert_truncated(&log.verify().await.unwrap(), 50, 54, &what);
        let what = format!("{engine:?} verify-audit");
        assert_truncated(&cli_verdict(&db, &database), 50, 54, &what);

        // Refilling the gap through the writer does not hide it: record 54 is now another one.
        fill(&log, 4).await;
        match log.verify().await.unwrap() {
            AuditChainState::Broken { id, reason } => {
                assert_eq!(id, 54, "{engine:?}: {reason}");
                assert!(reason.contains("checkpoint"), "{reason}");
            }
            other => panic!("{engine:?}: replaced tail not detected: {other:?}"),
        }
    }
}

/// A line of the checkpoint file that the manager's key did not sign is tampering.
#[actix_rt::test]
async fn forged_checkpoint_line_is_reported() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let (database, log) = with_checkpoints(&db, 1000);
        fill(&log, 6).await;
        let mut cp = log.checkpoint().await.unwrap().unwrap();
        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 6 }
        );
        // Claims a head of 9 records (so that a restored, shorter copy would look truncated),
        // with the signature of the real line.
        cp.id = 9;
        let path = db.dir.path().join(checkpoint::CHECKPOINT_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        text.push_str(&serde_json::to_string(&cp).unwrap());
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        for (what, verdict) in [
            ("incremental", log.verify_incremental().await.unwrap()),
            ("full", log.verify().await.unwrap()),
            ("verify-audit", cli_verdict(&db, &database)),
        ] {
            match verdict {
                AuditChainState::Broken { id, reason } => {
                    assert_eq!(id, 9, "{engine:?} {what}: {reason}");
                    assert!(reason.contains("line 2"), "{what}: {reason}");
                    assert!(
                        reason.contains("signature does not verify"),
                        "{what}: {reason}"
                    );
                    assert!(reason.contains("tampered"), "{what}: {reason}");
                }
                other => panic!("{engine:?} {what}: forged checkpoint not reported: {other:?}"),
            }
        }
    }
}

/// An untouched chain with checkpoints (written every N records and on demand) verifies, fully,
/// incrementally and from the data directory; the key is private and the public key beside it.
#[actix_rt::test]
async fn intact_chain_with_checkpoints_verifies() {
    use std::os::unix::fs::PermissionsExt;
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let (database, log) = with_checkpoints(&db, 10);
        fill(&log, 25).await;
        let path = db.dir.path().join(checkpoint::CHECKPOINT_FILE);
        let ids = |path: &std::path::Path| -> Vec<i64> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<checkpoint::Checkpoint>(l)
                        .unwrap()
                        .id
                })
                .collect()
        };
        assert_eq!(ids(&path), vec![10, 20], "{engine:?}: one every 10 records");
        assert_eq!(log.checkpoint().await.unwrap().map(|c| c.id), Some(25));
        assert_eq!(ids(&path), vec![10, 20, 25]);
        let key = db.dir.path().join(checkpoint::KEY_FILE);
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(db.dir.path().join(checkpoint::PUBLIC_KEY_FILE).exists());

        assert_eq!(
            log.verify().await.unwrap(),
            AuditChainState::Intact { records: 25 }
        );
        fill(&log, 5).await;
        assert_eq!(
            log.verify_incremental().await.unwrap(),
            AuditChainState::Intact { records: 30 }
        );
        assert_eq!(
            cli_verdict(&db, &database),
            AuditChainState::Intact { records: 30 }
        );

        // What the incremental run reads is checked: an edit after the last verified record.
        fill(&log, 3).await;
        let mut conn = database.conn().unwrap();
        diesel::update(audit_log::table.filter(audit_log::id.eq(32)))
            .set(audit_log::actor.eq("mallory"))
            .execute(&mut *conn)
            .unwrap();
        drop(conn);
        assert!(
            matches!(
                log.verify_incremental().await.unwrap(),
                AuditChainState::Broken { id: 32, .. }
            ),
            "{engine:?}"
        );

        // A restart with the same data directory reuses the key: the old lines still verify.
        let (_, again) = with_checkpoints(&db, 10);
        let mut conn = database.conn().unwrap();
        diesel::update(audit_log::table.filter(audit_log::id.eq(32)))
            .set(audit_log::actor.eq("user1"))
            .execute(&mut *conn)
            .unwrap();
        drop(conn);
        assert_eq!(
            again.verify().await.unwrap(),
            AuditChainState::Intact { records: 33 }
        );
    }
}

/// Verification runs on its own thread and connection: appends sent while a full verification
/// of a long chain runs are stored before that verification ends. (With verification on the
/// writer, they queued behind it.)
#[actix_rt::test]
async fn appends_do_not_wait_for_verification() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let (database, log) = with_checkpoints(&db, 1000);
        let mut conn = database.conn().unwrap();
        patch_manager::db::audit::append_batch(
            &mut conn,
            (0..20_000).map(entry),
            chrono::Utc::now().naive_utc(),
        )
        .unwrap();
        drop(conn);
        let verifying = {
            let log = log.clone();
            actix_rt::spawn(async move { log.verify().await.unwrap() })
        };
        // Let the spawned task send its request to the verifier first.
        tokio::task::yield_now().await;
        // Appends go on while the verification runs. Were they queued behind it, at most the
        // one that slipped in before it began (and the one waiting at its end) would be counted.
        let mut stored_meanwhile = 0;
        while !verifying.is_finished() {
            log.record(entry(1)).await.unwrap();
            stored_meanwhile += 1;
        }
        assert!(
            stored_meanwhile >= 10,
            "{engine:?}: appends waited for the verification ({stored_meanwhile} stored while it ran)"
        );
        let verdict = verifying.await.unwrap();
        assert!(
            matches!(verdict, AuditChainState::Intact { records } if records >= 20_000),
            "{engine:?}: {verdict:?}"
        );
    }
}
