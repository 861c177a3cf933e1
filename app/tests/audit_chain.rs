//! The audit chain on both engines: append through the single writer, verify, tamper, and see the
//! verifier name the first broken record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::audit::AuditLog;
use patch_manager::db::audit::{compute_row_hash, AuditRow, NewAuditEntry, Outcome};
use patch_manager::db::schema::audit_log;
use shared::status::AuditChainState;

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
