//! The `certificates` table: every certificate the CA issued, and its revocation.

use super::schema::certificates;
use super::{DbConnection, DbError};
use crate::pki::{CertKind, Issued};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored certificate.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = certificates)]
pub struct CertificateRow {
    /// Row id.
    #[diesel(deserialize_as = i64)]
    pub id: shared::ids::CertificateId,
    /// Serial, hex.
    pub serial: String,
    /// What it is for (a stored word that is not a kind fails the read).
    #[diesel(deserialize_as = String)]
    pub kind: shared::vocab::CertKind,
    /// Subject common name.
    pub subject: String,
    /// Subject alternative names as a JSON array of strings.
    pub sans_json: String,
    /// Host the certificate belongs to, for agent certificates.
    pub host_id: Option<i64>,
    /// SHA-256 of the DER, hex.
    pub fingerprint_sha256: String,
    /// Start of validity.
    pub not_before: NaiveDateTime,
    /// End of validity.
    pub not_after: NaiveDateTime,
    /// The certificate (public).
    pub cert_pem: String,
    /// When it was revoked.
    pub revoked_at: Option<NaiveDateTime>,
    /// Why.
    pub revocation_reason: Option<String>,
    /// When it was recorded.
    pub created_at: NaiveDateTime,
}

/// Insert form of a certificate.
#[derive(Debug, Insertable)]
#[diesel(table_name = certificates)]
pub struct NewCertificate<'a> {
    /// Serial, hex.
    pub serial: &'a str,
    /// Kind (stored form of [`CertKind`]).
    pub kind: &'a str,
    /// Subject common name.
    pub subject: &'a str,
    /// Subject alternative names as a JSON array of strings.
    pub sans_json: String,
    /// Host, for agent certificates.
    pub host_id: Option<i64>,
    /// SHA-256 of the DER, hex.
    pub fingerprint_sha256: &'a str,
    /// Start of validity.
    pub not_before: NaiveDateTime,
    /// End of validity.
    pub not_after: NaiveDateTime,
    /// The certificate.
    pub cert_pem: &'a str,
    /// When it was recorded.
    pub created_at: NaiveDateTime,
}

impl<'a> NewCertificate<'a> {
    /// The record of `issued`.
    pub fn of(
        issued: &'a Issued,
        kind: CertKind,
        host_id: Option<i64>,
        now: NaiveDateTime,
    ) -> Result<Self, DbError> {
        Ok(Self {
            serial: &issued.serial,
            kind: kind.as_str(),
            subject: &issued.subject,
            sans_json: serde_json::to_string(&issued.sans)
                .map_err(|e| DbError::Inconsistent(e.to_string()))?,
            host_id,
            fingerprint_sha256: &issued.fingerprint_sha256,
            not_before: issued.not_before,
            not_after: issued.not_after,
            cert_pem: &issued.cert_pem,
            created_at: now,
        })
    }
}

/// Update form of a revocation.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = certificates)]
struct Revocation<'a> {
    revoked_at: NaiveDateTime,
    revocation_reason: &'a str,
}

/// A revoked serial, as the CRL lists it.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = certificates)]
struct RevokedRow {
    serial: String,
    revoked_at: Option<NaiveDateTime>,
}

/// Holder and end of validity of an agent certificate.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = certificates)]
struct ExpiryRow {
    host_id: Option<i64>,
    not_after: NaiveDateTime,
}

/// Records an issued certificate; answers its row id.
pub fn insert(
    conn: &mut DbConnection,
    issued: &Issued,
    kind: CertKind,
    host_id: Option<i64>,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    Ok(diesel::insert_into(certificates::table)
        .values(NewCertificate::of(issued, kind, host_id, now)?)
        .returning(certificates::id)
        .get_result(conn)?)
}

/// One certificate by row id.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<CertificateRow>, DbError> {
    Ok(certificates::table
        .filter(certificates::id.eq(id))
        .select(CertificateRow::as_select())
        .first(conn)
        .optional()?)
}

/// Records that certificate `id` belongs to host `host_id` (an adopted host).
pub fn assign_host(conn: &mut DbConnection, id: i64, host_id: i64) -> Result<(), DbError> {
    diesel::update(certificates::table.find(id))
        .set(certificates::host_id.eq(host_id))
        .execute(conn)?;
    Ok(())
}

/// One certificate by SHA-256 fingerprint.
pub fn find_by_fingerprint(
    conn: &mut DbConnection,
    fingerprint: &str,
) -> Result<Option<CertificateRow>, DbError> {
    Ok(certificates::table
        .filter(certificates::fingerprint_sha256.eq(fingerprint))
        .select(CertificateRow::as_select())
        .first(conn)
        .optional()?)
}

/// The host's newest unrevoked agent certificate.
pub fn current_for_host(
    conn: &mut DbConnection,
    host_id: i64,
) -> Result<Option<CertificateRow>, DbError> {
    Ok(certificates::table
        .filter(certificates::host_id.eq(host_id))
        .filter(certificates::kind.eq(CertKind::Agent.as_str()))
        .filter(certificates::revoked_at.is_null())
        .order(certificates::id.desc())
        .select(CertificateRow::as_select())
        .first(conn)
        .optional()?)
}

/// Revokes a certificate by serial. `Ok(false)` if there is no such certificate or it was
/// revoked already (the first revocation time is kept).
pub fn revoke(
    conn: &mut DbConnection,
    serial: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let n = diesel::update(
        certificates::table
            .filter(certificates::serial.eq(serial))
            .filter(certificates::revoked_at.is_null()),
    )
    .set(Revocation {
        revoked_at: now,
        revocation_reason: reason,
    })
    .execute(conn)?;
    Ok(n == 1)
}

/// When the newest revocation happened, if any.
pub fn latest_revocation(conn: &mut DbConnection) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(certificates::table
        .select(diesel::dsl::max(certificates::revoked_at))
        .first(conn)?)
}

/// The SHA-256 fingerprint of the certificate with `serial`.
pub fn fingerprint_of(conn: &mut DbConnection, serial: &str) -> Result<Option<String>, DbError> {
    Ok(certificates::table
        .filter(certificates::serial.eq(serial))
        .select(certificates::fingerprint_sha256)
        .first(conn)
        .optional()?)
}

/// Revokes every unrevoked certificate of host `host_id`; answers their serials.
pub fn revoke_for_host(
    conn: &mut DbConnection,
    host_id: i64,
    reason: &str,
    now: NaiveDateTime,
) -> Result<Vec<String>, DbError> {
    let serials: Vec<String> = certificates::table
        .filter(certificates::host_id.eq(host_id))
        .filter(certificates::revoked_at.is_null())
        .select(certificates::serial)
        .load(conn)?;
    for serial in &serials {
        revoke(conn, serial, reason, now)?;
    }
    Ok(serials)
}

/// Serials of the unrevoked, unexpired certificates of `kind`.
pub fn live_of_kind(
    conn: &mut DbConnection,
    kind: CertKind,
    now: NaiveDateTime,
) -> Result<Vec<String>, DbError> {
    Ok(certificates::table
        .filter(certificates::kind.eq(kind.as_str()))
        .filter(certificates::revoked_at.is_null())
        .filter(certificates::not_after.gt(now))
        .select(certificates::serial)
        .load(conn)?)
}

/// Serials and revocation times of every revoked certificate that has not expired (an expired
/// certificate is refused anyway, so the CRL need not carry it).
pub fn revoked(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> Result<Vec<(String, NaiveDateTime)>, DbError> {
    let rows: Vec<RevokedRow> = certificates::table
        .filter(certificates::revoked_at.is_not_null())
        .filter(certificates::not_after.gt(now))
        .order(certificates::id.asc())
        .select(RevokedRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.serial, r.revoked_at?)))
        .collect())
}

/// Live (unrevoked, unexpired at `now`) certificates whose subject or a DNS name is `name`.
pub fn live_with_name(
    conn: &mut DbConnection,
    name: &str,
    now: NaiveDateTime,
) -> Result<Vec<CertificateRow>, DbError> {
    let san = serde_json::to_string(&format!("DNS:{name}"))
        .map_err(|e| DbError::Inconsistent(e.to_string()))?;
    Ok(certificates::table
        .filter(certificates::revoked_at.is_null())
        .filter(certificates::not_after.gt(now))
        .filter(
            certificates::subject
                .eq(name)
                .or(certificates::sans_json.like(format!("%{san}%"))),
        )
        .select(CertificateRow::as_select())
        .load(conn)?)
}

/// All certificates, soonest expiry first.
pub fn list(conn: &mut DbConnection) -> Result<Vec<CertificateRow>, DbError> {
    Ok(certificates::table
        .order((certificates::not_after.asc(), certificates::id.asc()))
        .select(CertificateRow::as_select())
        .load(conn)?)
}

/// Hosts whose newest, unrevoked agent certificate ends before `threshold`.
pub fn hosts_due_for_renewal(
    conn: &mut DbConnection,
    threshold: NaiveDateTime,
) -> Result<Vec<i64>, DbError> {
    let rows: Vec<ExpiryRow> = certificates::table
        .filter(certificates::kind.eq(CertKind::Agent.as_str()))
        .filter(certificates::revoked_at.is_null())
        .filter(certificates::host_id.is_not_null())
        .select(ExpiryRow::as_select())
        .load(conn)?;
    let mut newest: std::collections::BTreeMap<i64, NaiveDateTime> =
        std::collections::BTreeMap::new();
    for ExpiryRow { host_id, not_after } in rows {
        if let Some(h) = host_id {
            let e = newest.entry(h).or_insert(not_after);
            if not_after > *e {
                *e = not_after;
            }
        }
    }
    Ok(newest
        .into_iter()
        .filter(|(_, na)| *na < threshold)
        .map(|(h, _)| h)
        .collect())
}
