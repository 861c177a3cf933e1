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
    pub id: i64,
    /// Serial, hex.
    pub serial: String,
    /// `ca`, `agent`, `manager_client` or `web`.
    pub kind: String,
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

/// Records an issued certificate; answers its row id.
pub fn insert(
    conn: &mut DbConnection,
    issued: &Issued,
    kind: CertKind,
    host_id: Option<i64>,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    let sans =
        serde_json::to_string(&issued.sans).map_err(|e| DbError::Inconsistent(e.to_string()))?;
    Ok(diesel::insert_into(certificates::table)
        .values((
            certificates::serial.eq(&issued.serial),
            certificates::kind.eq(kind.as_str()),
            certificates::subject.eq(&issued.subject),
            certificates::sans_json.eq(sans),
            certificates::host_id.eq(host_id),
            certificates::fingerprint_sha256.eq(&issued.fingerprint_sha256),
            certificates::not_before.eq(issued.not_before),
            certificates::not_after.eq(issued.not_after),
            certificates::cert_pem.eq(&issued.cert_pem),
            certificates::created_at.eq(now),
        ))
        .returning(certificates::id)
        .get_result(conn)?)
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
    .set((
        certificates::revoked_at.eq(now),
        certificates::revocation_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Serials and revocation times of every revoked certificate that has not expired (an expired
/// certificate is refused anyway, so the CRL need not carry it).
pub fn revoked(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> Result<Vec<(String, NaiveDateTime)>, DbError> {
    let rows: Vec<(String, Option<NaiveDateTime>)> = certificates::table
        .filter(certificates::revoked_at.is_not_null())
        .filter(certificates::not_after.gt(now))
        .order(certificates::id.asc())
        .select((certificates::serial, certificates::revoked_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, t)| Some((s, t?)))
        .collect())
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
    let rows: Vec<(Option<i64>, NaiveDateTime)> = certificates::table
        .filter(certificates::kind.eq(CertKind::Agent.as_str()))
        .filter(certificates::revoked_at.is_null())
        .filter(certificates::host_id.is_not_null())
        .select((certificates::host_id, certificates::not_after))
        .load(conn)?;
    let mut newest: std::collections::BTreeMap<i64, NaiveDateTime> =
        std::collections::BTreeMap::new();
    for (host, not_after) in rows {
        if let Some(h) = host {
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
