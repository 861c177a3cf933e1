//! Certificates and enrollment tokens in the database, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::{TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::db::{certificates, schema};
use patch_manager::pki::enrollment::{self, EnrollmentToken, TokenError};
use patch_manager::pki::{Ca, CertKind, San};

#[test]
fn issued_certificates_are_recorded_and_revoked_once() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let (ca, _) = Ca::load_or_create(&db.dir.path().join("ca"), "Fleet CA").unwrap();
        let now = Utc::now().naive_utc();
        let (a, _) = ca
            .issue_with_new_key(CertKind::ManagerClient, "patch-manager", &[], 90)
            .unwrap();
        let (b, _) = ca
            .issue_with_new_key(
                CertKind::Web,
                "manager.example",
                &[San::Dns("manager.example".into())],
                30,
            )
            .unwrap();
        certificates::insert(&mut conn, &a, CertKind::ManagerClient, None, now).unwrap();
        certificates::insert(&mut conn, &b, CertKind::Web, None, now).unwrap();
        // The same serial twice is refused by the database.
        assert!(
            certificates::insert(&mut conn, &a, CertKind::ManagerClient, None, now).is_err(),
            "{engine:?}"
        );

        let list = certificates::list(&mut conn).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].serial, b.serial, "soonest expiry first");
        assert_eq!(list[0].kind, patch_manager::pki::CertKind::Web);
        assert_eq!(list[0].sans_json, r#"["DNS:manager.example"]"#);

        assert!(certificates::revoke(&mut conn, &a.serial, "key compromise", now).unwrap());
        assert!(
            !certificates::revoke(&mut conn, &a.serial, "again", now).unwrap(),
            "revoked once"
        );
        assert!(!certificates::revoke(&mut conn, "00", "unknown", now).unwrap());
        let revoked = certificates::revoked(&mut conn, now).unwrap();
        assert_eq!(
            revoked.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            [a.serial.as_str()]
        );
        let crl = ca.crl(1, &revoked, chrono::Duration::days(7)).unwrap().pem;
        assert!(crl.contains("BEGIN X509 CRL"));
    }
}

fn group(conn: &mut patch_manager::db::DbConnection) -> i64 {
    use schema::host_groups as g;
    let now = Utc::now().naive_utc();
    diesel::insert_into(g::table)
        .values((
            g::name.eq("web"),
            g::description.eq(""),
            g::created_at.eq(now),
            g::updated_at.eq(now),
        ))
        .returning(g::id)
        .get_result(conn)
        .unwrap()
}

#[test]
fn enrollment_tokens_are_single_use_expiring_and_unforgeable() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let fp = "ab".repeat(32);
        let now = Utc::now().naive_utc();
        let gid = group(&mut conn);
        let token = enrollment::create(
            &mut conn,
            &fp,
            &patch_manager::pki::enrollment::TokenRequest {
                group_id: Some(gid),
                ..Default::default()
            },
            now + Duration::hours(1),
            now,
        )
        .unwrap();
        let text = token.encode();
        assert_eq!(EnrollmentToken::parse(&text), Some(token.clone()));
        for bad in [
            "",
            "lpm1",
            "lpm2.1.aa.bb",
            &text.replace("lpm1.", "lpm1.x"),
            &format!("{text}.extra"),
            &text.to_uppercase(),
        ] {
            assert_eq!(EnrollmentToken::parse(bad), None, "{bad}");
        }

        // Forged secret, wrong CA, unknown id: all "unknown", and the real token still works.
        let mut forged = token.clone();
        forged.secret = "00".repeat(32);
        assert_eq!(
            enrollment::consume(&mut conn, &forged, &fp, now).unwrap(),
            Err(TokenError::Unknown)
        );
        assert_eq!(
            enrollment::consume(&mut conn, &token, &"cd".repeat(32), now).unwrap(),
            Err(TokenError::Unknown)
        );
        let mut other = token.clone();
        other.id += 1000;
        assert_eq!(
            enrollment::consume(&mut conn, &other, &fp, now).unwrap(),
            Err(TokenError::Unknown)
        );

        assert_eq!(
            enrollment::consume(&mut conn, &token, &fp, now).unwrap(),
            Ok(enrollment::Consumed {
                group_id: Some(gid),
                addresses: Vec::new(),
                hostname: None,
            }),
            "{engine:?}"
        );
        assert_eq!(
            enrollment::consume(&mut conn, &token, &fp, now).unwrap(),
            Err(TokenError::Used),
            "replay"
        );

        let short = enrollment::create(
            &mut conn,
            &fp,
            &patch_manager::pki::enrollment::TokenRequest {
                group_id: None,
                ..Default::default()
            },
            now + Duration::minutes(5),
            now,
        )
        .unwrap();
        let later = now + Duration::minutes(6);
        assert_eq!(
            enrollment::consume(&mut conn, &short, &fp, later).unwrap(),
            Err(TokenError::Expired)
        );
    }
}

/// Hosts racing with one token: exactly one wins.
#[test]
fn concurrent_use_of_one_token_enrolls_once() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let fp = "ef".repeat(32);
        let now = Utc::now().naive_utc();
        let token = {
            let mut conn = database.conn().unwrap();
            enrollment::create(
                &mut conn,
                &fp,
                &patch_manager::pki::enrollment::TokenRequest {
                    group_id: None,
                    ..Default::default()
                },
                now + Duration::hours(1),
                now,
            )
            .unwrap()
        };
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let database = database.clone();
                    let (token, fp) = (token.clone(), fp.clone());
                    s.spawn(move || {
                        let mut conn = database.conn().unwrap();
                        // SQLite may answer "database is locked" under contention: a refusal, not a win.
                        matches!(enrollment::consume(&mut conn, &token, &fp, now), Ok(Ok(_)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1, "{engine:?}");
    }
}
