//! Refresh-token sessions on both engines: rotation on every use, reuse revokes the whole family,
//! idle and absolute expiry, sign-out and force-logout, and a race between two uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::{TestDb, BACKENDS};
use diesel::prelude::*;
use patch_manager::db::sessions::{self, RefreshError, IDLE_TIMEOUT, MAX_LIFETIME};
use patch_manager::db::{schema::users, DbConnection};

fn user(conn: &mut DbConnection, name: &str) -> i64 {
    let now = Utc::now().naive_utc();
    diesel::insert_into(users::table)
        .values((
            users::username.eq(name),
            users::display_name.eq(name),
            users::role.eq("operator"),
            users::is_disabled.eq(false),
            users::mfa_required.eq(false),
            users::failed_logins.eq(0_i64),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .returning(users::id)
        .get_result(conn)
        .unwrap()
}

#[test]
fn rotation_reuse_expiry_and_logout() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut c = database.conn().unwrap();
        let alice = user(&mut c, "alice");
        let now = Utc::now().naive_utc();

        let s = sessions::start(&mut c, alice, Some("test"), Some("127.0.0.1"), now).unwrap();
        assert!(sessions::is_active(&mut c, &s.family_id, now).unwrap());
        let t1 = now + Duration::minutes(10);
        let second = sessions::rotate(&mut c, &s.token, None, t1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.user_id, second.family_id.as_str()),
            (alice, s.family_id.as_str())
        );
        assert_ne!(second.token, s.token);

        // The first token comes back: theft assumed, the whole session ends.
        assert_eq!(
            sessions::rotate(&mut c, &s.token, None, t1).unwrap(),
            Err(RefreshError::Reused),
            "{engine:?}"
        );
        assert_eq!(
            sessions::rotate(&mut c, &second.token, None, t1).unwrap(),
            Err(RefreshError::Revoked)
        );
        assert!(!sessions::is_active(&mut c, &s.family_id, t1).unwrap());
        assert_eq!(
            sessions::rotate(&mut c, &"0".repeat(64), None, t1).unwrap(),
            Err(RefreshError::Unknown)
        );

        // Idle timeout.
        let idle = sessions::start(&mut c, alice, None, None, now).unwrap();
        assert_eq!(
            sessions::rotate(&mut c, &idle.token, None, now + IDLE_TIMEOUT).unwrap(),
            Err(RefreshError::Expired)
        );

        // Absolute lifetime, even when refreshed in time all along.
        let long = sessions::start(&mut c, alice, None, None, now).unwrap();
        let mut token = long.token;
        let mut t = now;
        loop {
            t += Duration::minutes(50);
            match sessions::rotate(&mut c, &token, None, t).unwrap() {
                Ok(next) => token = next.token,
                Err(e) => {
                    assert_eq!(e, RefreshError::Expired);
                    assert!(t >= now + MAX_LIFETIME, "ended early at {t}");
                    break;
                }
            }
            assert!(t < now + MAX_LIFETIME + Duration::hours(1), "never ended");
        }

        // Sign-out of one session, force-logout of all.
        let a = sessions::start(&mut c, alice, None, None, now).unwrap();
        let b = sessions::start(&mut c, alice, None, None, now).unwrap();
        assert_eq!(
            sessions::revoke_family(&mut c, &a.family_id, "logout", now).unwrap(),
            1
        );
        assert_eq!(
            sessions::rotate(&mut c, &a.token, None, now).unwrap(),
            Err(RefreshError::Revoked)
        );
        assert!(sessions::rotate(&mut c, &b.token, None, now)
            .unwrap()
            .is_ok());
        assert!(sessions::revoke_user(&mut c, alice, "force_logout", now).unwrap() >= 1);
        assert!(!sessions::is_active(&mut c, &b.family_id, now).unwrap());
    }
}

#[test]
fn two_racing_uses_of_one_token_exactly_one_wins() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let bob = user(&mut database.conn().unwrap(), "bob");
        let now = Utc::now().naive_utc();
        let s = sessions::start(&mut database.conn().unwrap(), bob, None, None, now).unwrap();
        const RACERS: usize = 4;
        // Every racer holds its connection before any of them starts, so the uses overlap.
        let start = std::sync::Barrier::new(RACERS);
        let outcomes: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..RACERS)
                .map(|_| {
                    let (database, token, start) = (database.clone(), s.token.clone(), &start);
                    scope.spawn(move || {
                        let mut c = database.conn().unwrap();
                        start.wait();
                        match sessions::rotate(&mut c, &token, None, now) {
                            Ok(Ok(_)) => "won".to_owned(),
                            Ok(Err(e)) => format!("{e:?}"),
                            Err(e) => format!("database: {e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = outcomes.iter().filter(|o| *o == "won").count();
        assert_eq!(
            wins, 1,
            "{engine:?}: {wins} uses of one token succeeded, not exactly one: {outcomes:?}"
        );
    }
}
