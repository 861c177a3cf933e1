//! Access tokens on both engines: round trip, expiry, tampering, a foreign key under our kid,
//! algorithm swaps (HS256 with the public key as secret, and "none"), unknown kid, and rotation
//! with overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::{TestDb, BACKENDS};
use patch_manager::auth::tokens::{TokenError, TokenKeys, ACCESS_TTL, KEY_SIGNING_LIFETIME};
use patch_manager::db::{DbConnection, DbError};
use patch_manager::secrets::SecretBox;

/// The manager's secrets key for a test database (kept in its data directory).
fn secrets(db: &TestDb) -> SecretBox {
    SecretBox::load_or_create(db.dir.path()).unwrap()
}

fn load_keys(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    now: chrono::NaiveDateTime,
) -> Result<TokenKeys, DbError> {
    patch_manager::auth::tokens::load_keys(conn, secrets, now)
}

fn b64(bytes: &[u8]) -> String {
    // base64url without padding, enough for crafting test tokens.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn tokens_verify_only_when_untouched_unexpired_and_ours() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let now = Utc::now().naive_utc();
        let keys = load_keys(&mut conn, &secrets(&db), now).unwrap();
        let token = keys.issue(7, "operator", "family-1", now).unwrap();
        let claims = keys.verify(&token, now).unwrap();
        assert_eq!(
            (claims.user_id(), claims.role.as_str(), claims.sid.as_str()),
            (Some(7), "operator", "family-1")
        );

        // Expired.
        assert_eq!(
            keys.verify(&token, now + ACCESS_TTL),
            Err(TokenError::Expired)
        );
        // Tampered payload (role raised to admin), signature unchanged.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = serde_json::json!({ "sub": "7", "role": "admin", "sid": "family-1", "iat": claims.iat,
            "exp": claims.exp, "iss": "patch-manager", "aud": "patch-manager" });
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(forged_claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            keys.verify(&tampered, now),
            Err(TokenError::Invalid),
            "{engine:?}"
        );
        // Garbage and truncation.
        assert_eq!(keys.verify("not.a.token", now), Err(TokenError::Invalid));
        assert_eq!(
            keys.verify(&token[..token.len() - 3], now),
            Err(TokenError::Invalid)
        );

        // A token signed by another key but claiming our kid.
        let other_db = TestDb::new(engine);
        let other = load_keys(
            &mut other_db.open().conn().unwrap(),
            &secrets(&other_db),
            now,
        )
        .unwrap();
        let foreign = other.issue(7, "admin", "x", now).unwrap();
        let fparts: Vec<&str> = foreign.split('.').collect();
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": keys.signing_kid() });
        let relabelled = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            fparts[1],
            fparts[2]
        );
        assert_eq!(
            keys.verify(&relabelled, now),
            Err(TokenError::Invalid),
            "wrong key"
        );

        // Algorithm swap: HS256 "signed" with the public key, and alg none.
        use diesel::prelude::*;
        use patch_manager::db::schema::signing_keys as k;
        let public: Vec<u8> = k::table
            .filter(k::kid.eq(keys.signing_kid()))
            .select(k::public_key)
            .first(&mut *conn)
            .unwrap();
        let hs = jsonwebtoken::encode(
            &{
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some(keys.signing_kid().to_owned());
                h
            },
            &forged_claims,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            keys.verify(&hs, now),
            Err(TokenError::Invalid),
            "HS256 with the public key"
        );
        let none_header = serde_json::json!({ "alg": "none", "kid": keys.signing_kid() });
        let none = format!(
            "{}.{}.",
            b64(none_header.to_string().as_bytes()),
            b64(forged_claims.to_string().as_bytes())
        );
        assert_eq!(
            keys.verify(&none, now),
            Err(TokenError::Invalid),
            "alg none"
        );
        // Unknown kid.
        let unknown = format!(
            "{}.{}.{}",
            b64(serde_json::json!({ "alg": "EdDSA", "kid": "nope" })
                .to_string()
                .as_bytes()),
            parts[1],
            parts[2]
        );
        assert_eq!(keys.verify(&unknown, now), Err(TokenError::Invalid));
    }
}

#[test]
fn rotation_keeps_old_tokens_valid_until_they_expire() {
    for engine in BACKENDS {
        let db = TestDb::new(engine);
        let database = db.open();
        let mut conn = database.conn().unwrap();
        let t0 = Utc::now().naive_utc();
        let first = load_keys(&mut conn, &secrets(&db), t0).unwrap();
        assert_eq!(
            load_keys(&mut conn, &secrets(&db), t0 + Duration::hours(1))
                .unwrap()
                .signing_kid(),
            first.signing_kid(),
            "no rotation yet"
        );
        // Just before the first key stops signing, it signs a token.
        let late = t0 + KEY_SIGNING_LIFETIME - Duration::seconds(1);
        let token = first.issue(1, "admin", "s", late).unwrap();
        // After it: a new key signs, and the old token still verifies until its own expiry.
        let after = t0 + KEY_SIGNING_LIFETIME + Duration::seconds(1);
        let rotated = load_keys(&mut conn, &secrets(&db), after).unwrap();
        assert_ne!(rotated.signing_kid(), first.signing_kid(), "{engine:?}");
        assert!(
            rotated.verify(&token, after).is_ok(),
            "token cut short by the rotation"
        );
        let new_token = rotated.issue(1, "admin", "s", after).unwrap();
        assert!(rotated.verify(&new_token, after).is_ok());
        // Once every token of the old key has expired, the old key is no longer loaded.
        let much_later = t0 + KEY_SIGNING_LIFETIME + ACCESS_TTL + Duration::seconds(2);
        let later_keys = load_keys(&mut conn, &secrets(&db), much_later).unwrap();
        assert_eq!(
            later_keys.verify(&token, much_later),
            Err(TokenError::Invalid)
        );
    }
}

#[test]
fn signing_keys_are_sealed_at_rest_and_legacy_ones_sealed_in_place() {
    use diesel::prelude::*;
    use patch_manager::db::schema::signing_keys as k;
    let db = TestDb::new(common::Engine::Sqlite);
    let database = db.open();
    let mut conn = database.conn().unwrap();
    let now = Utc::now().naive_utc();
    let box_ = secrets(&db);
    let keys = load_keys(&mut conn, &box_, now).unwrap();
    let token = keys.issue(1, "admin", "f", now).unwrap();
    let (kid, stored): (String, Vec<u8>) = k::table
        .select((k::kid, k::private_key))
        .first(&mut *conn)
        .unwrap();
    assert!(stored.starts_with(b"v1."), "the private key is sealed");
    // Another secrets key cannot open it: the database alone does not give the key away.
    let other_dir = tempfile::tempdir().unwrap();
    let foreign = SecretBox::load_or_create(other_dir.path()).unwrap();
    assert!(load_keys(&mut conn, &foreign, now).is_err());
    // A key stored in the clear by an earlier version still signs, and is sealed on load.
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    diesel::update(k::table.filter(k::kid.eq(&kid)))
        .set((
            k::private_key.eq(pkcs8.as_ref()),
            k::public_key.eq(pair.public_key().as_ref()),
        ))
        .execute(&mut *conn)
        .unwrap();
    let legacy = load_keys(&mut conn, &box_, now).unwrap();
    assert_eq!(legacy.signing_kid(), kid);
    let stored: Vec<u8> = k::table.select(k::private_key).first(&mut *conn).unwrap();
    assert!(stored.starts_with(b"v1."), "sealed in place");
    let fresh = legacy.issue(1, "admin", "f", now).unwrap();
    assert!(legacy.verify(&fresh, now).is_ok());
    // The token of the replaced key no longer verifies: the public key changed with it.
    assert!(legacy.verify(&token, now).is_err());
}
