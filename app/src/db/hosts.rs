//! The `hosts`, `host_groups` and `host_group_members` tables.
//!
//! Visibility is given by the caller as plain ids (`None`: no restriction); who may see what is
//! decided by `crate::auth::access::Scope`, not here.

use super::schema::{host_group_members as m, host_groups as g, hosts as h};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A host as the inventory pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = h)]
pub struct HostRow {
    /// Row id.
    #[diesel(deserialize_as = i64)]
    pub id: shared::ids::HostId,
    /// Name shown.
    pub display_name: String,
    /// Fully qualified name, when known.
    pub fqdn: Option<String>,
    /// Primary address.
    pub ip_address: String,
    /// Agent's TCP port.
    pub agent_port: i32,
    /// `unknown`, `healthy`, `degraded`, `unreachable`.
    #[diesel(deserialize_as = String)]
    pub status: shared::vocab::HostStatus,
    /// Why, when not healthy.
    pub status_reason: Option<String>,
    /// Since when.
    pub status_changed_at: Option<NaiveDateTime>,
    /// Last health poll.
    pub last_health_at: Option<NaiveDateTime>,
    /// Last inventory.
    pub last_patch_scan_at: Option<NaiveDateTime>,
    /// OS id (`debian`).
    pub os_id: Option<String>,
    /// OS version (`12`).
    pub os_version: Option<String>,
    /// Pending updates.
    pub pending_patches: i64,
    /// Pending security updates.
    pub pending_security_patches: i64,
    /// A reboot is pending.
    pub reboot_required: bool,
    /// Last contact.
    pub last_seen_at: Option<NaiveDateTime>,
    /// Running kernel.
    pub kernel: Option<String>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// When it was registered.
    pub created_at: NaiveDateTime,
}

/// Where the manager reaches a host's agent.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = h)]
pub struct AgentAddressRow {
    /// Row id.
    pub id: i64,
    /// Fully qualified name, when known.
    pub fqdn: Option<String>,
    /// Name shown.
    pub display_name: String,
    /// Primary address.
    pub ip_address: String,
    /// Agent's TCP port.
    pub agent_port: i32,
    /// SHA-256 (hex) of the agent certificate pinned for the host.
    pub cert_fingerprint: Option<String>,
}

/// Insert form of a newly enrolled host.
#[derive(Debug, Insertable)]
#[diesel(table_name = h)]
pub struct NewHost<'a> {
    /// Fully qualified name.
    pub fqdn: Option<&'a str>,
    /// Primary address.
    pub ip_address: &'a str,
    /// Name shown.
    pub display_name: &'a str,
    /// Agent's TCP port.
    pub agent_port: i32,
    /// Initial status.
    pub status: &'a str,
    /// A reboot is pending.
    pub reboot_required: bool,
    /// Pending updates.
    pub pending_patches: i64,
    /// Pending security updates.
    pub pending_security_patches: i64,
    /// Fingerprint of its certificate.
    pub cert_fingerprint: Option<&'a str>,
    /// Now.
    pub created_at: NaiveDateTime,
    /// Now.
    pub updated_at: NaiveDateTime,
}

/// Update form: a host's new certificate.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = h)]
pub struct HostCertificateUpdate<'a> {
    /// Fingerprint of the new certificate.
    pub cert_fingerprint: &'a str,
    /// Now.
    pub updated_at: NaiveDateTime,
}

/// A host group.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = g)]
pub struct GroupRow {
    /// Row id.
    #[diesel(deserialize_as = i64)]
    pub id: shared::ids::GroupId,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Made at.
    pub created_at: NaiveDateTime,
    /// Changed at.
    pub updated_at: NaiveDateTime,
}

/// Insert form of a group.
#[derive(Debug, Insertable)]
#[diesel(table_name = g)]
pub struct NewHostGroup<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Free text.
    pub description: &'a str,
    /// Now.
    pub created_at: NaiveDateTime,
    /// Now.
    pub updated_at: NaiveDateTime,
}

/// Insert form of a membership.
#[derive(Debug, Insertable)]
#[diesel(table_name = m)]
pub struct NewMembership {
    /// Host.
    pub host_id: i64,
    /// Group.
    pub group_id: i64,
    /// Now.
    pub created_at: NaiveDateTime,
}

/// A host's membership, with the group's name.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct MembershipName {
    /// Host.
    #[diesel(deserialize_as = i64)]
    pub host_id: shared::ids::HostId,
    /// Group name.
    pub group: String,
}

/// Number of hosts in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct GroupSize {
    /// Group.
    #[diesel(deserialize_as = i64)]
    pub group_id: shared::ids::GroupId,
    /// Member hosts.
    pub hosts: i64,
}

/// Hosts by display name, among `visible` (`None`: all), optionally only the one with id `only`.
pub fn list(
    conn: &mut DbConnection,
    visible: Option<&[i64]>,
    only: Option<i64>,
) -> Result<Vec<HostRow>, DbError> {
    let mut q = h::table
        .select(HostRow::as_select())
        .order(h::display_name)
        .into_boxed();
    if let Some(ids) = visible {
        q = q.filter(h::id.eq_any(ids.to_vec()));
    }
    if let Some(id) = only {
        q = q.filter(h::id.eq(id));
    }
    Ok(q.load(conn)?)
}

/// Filters of a host search (`None`: no filter).
#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// Part of the name, DNS name or address.
    pub text: Option<String>,
    /// State.
    pub status: Option<String>,
    /// Members of this group.
    pub group: Option<i64>,
    /// OS id.
    pub os: Option<String>,
    /// With (true) or without (false) pending security updates.
    pub security: Option<bool>,
}

/// Sort key of a host search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOrder {
    /// Name.
    Name,
    /// State, then name.
    Status,
    /// Pending security updates, then pending updates, then name.
    Updates,
    /// Last contact, then name.
    LastSeen,
}

diesel::define_sql_function! {
    /// SQL `lower()` (the same on SQLite and PostgreSQL for ASCII).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

diesel::define_sql_function! {
    /// SQL `lower()` of a nullable column.
    #[sql_name = "lower"]
    fn lower_opt(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// One page of the hosts in `visible` (all when `None`) that match `filter`, and how many match
/// in all. Text is matched case-insensitively and literally; every order ends on the id, so pages
/// neither repeat nor skip a host, and hosts never seen sort last on both engines.
pub fn search(
    conn: &mut DbConnection,
    visible: Option<&[i64]>,
    filter: &HostFilter,
    order: HostOrder,
    desc: bool,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<HostRow>), DbError> {
    let build = || {
        let mut q = h::table.into_boxed();
        if let Some(ids) = visible {
            q = q.filter(h::id.eq_any(ids.to_vec()));
        }
        if let Some(text) = &filter.text {
            let pattern = format!(
                "%{}%",
                text.to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            q = q.filter(
                lower(h::display_name)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower_opt(h::fqdn).like(pattern.clone()).escape('\\'))
                    .or(h::ip_address.like(pattern).escape('\\')),
            );
        }
        if let Some(status) = &filter.status {
            q = q.filter(h::status.eq(status.clone()));
        }
        if let Some(group) = filter.group {
            q = q.filter(h::id.eq_any(m::table.filter(m::group_id.eq(group)).select(m::host_id)));
        }
        if let Some(os) = &filter.os {
            q = q.filter(h::os_id.eq(os.clone()));
        }
        match filter.security {
            Some(true) => q = q.filter(h::pending_security_patches.gt(0)),
            Some(false) => q = q.filter(h::pending_security_patches.eq(0)),
            None => {}
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let q = build().select(HostRow::as_select());
    let q = match (order, desc) {
        (HostOrder::Name, false) => q.order((h::display_name.asc(), h::id.asc())),
        (HostOrder::Name, true) => q.order((h::display_name.desc(), h::id.desc())),
        (HostOrder::Status, false) => {
            q.order((h::status.asc(), h::display_name.asc(), h::id.asc()))
        }
        (HostOrder::Status, true) => {
            q.order((h::status.desc(), h::display_name.asc(), h::id.asc()))
        }
        (HostOrder::Updates, false) => q.order((
            h::pending_security_patches.asc(),
            h::pending_patches.asc(),
            h::display_name.asc(),
            h::id.asc(),
        )),
        (HostOrder::Updates, true) => q.order((
            h::pending_security_patches.desc(),
            h::pending_patches.desc(),
            h::display_name.asc(),
            h::id.asc(),
        )),
        (HostOrder::LastSeen, false) => q.order((
            h::last_seen_at.is_null().asc(),
            h::last_seen_at.asc(),
            h::display_name.asc(),
            h::id.asc(),
        )),
        (HostOrder::LastSeen, true) => q.order((
            h::last_seen_at.is_null().asc(),
            h::last_seen_at.desc(),
            h::display_name.asc(),
            h::id.asc(),
        )),
    };
    let rows = q.offset(offset).limit(limit).load(conn)?;
    Ok((total, rows))
}

/// Group memberships of `hosts`, by group name, only in `groups` when given.
pub fn memberships(
    conn: &mut DbConnection,
    hosts: &[i64],
    groups: Option<&[i64]>,
) -> Result<Vec<MembershipName>, DbError> {
    let mut q = m::table
        .inner_join(g::table)
        .filter(m::host_id.eq_any(hosts.to_vec()))
        .order(g::name)
        .select((m::host_id, g::name))
        .into_boxed();
    if let Some(groups) = groups {
        q = q.filter(m::group_id.eq_any(groups.to_vec()));
    }
    Ok(q.load(conn)?)
}

/// Where to reach the host's agent.
pub fn agent_address(conn: &mut DbConnection, id: i64) -> Result<Option<AgentAddressRow>, DbError> {
    Ok(h::table
        .filter(h::id.eq(id))
        .select(AgentAddressRow::as_select())
        .first(conn)
        .optional()?)
}

/// Where to reach every agent.
pub fn agent_addresses(conn: &mut DbConnection) -> Result<Vec<AgentAddressRow>, DbError> {
    Ok(h::table
        .order(h::id.asc())
        .select(AgentAddressRow::as_select())
        .load(conn)?)
}

impl<'a> NewHost<'a> {
    /// A host joining with its agent's certificate (enrollment, adoption): not polled yet,
    /// nothing pending, pinned to `fingerprint`.
    pub fn joining(
        fqdn: Option<&'a str>,
        ip_address: &'a str,
        display_name: &'a str,
        agent_port: i32,
        fingerprint: &'a str,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            fqdn,
            ip_address,
            display_name,
            agent_port,
            status: "unknown",
            reboot_required: false,
            pending_patches: 0,
            pending_security_patches: 0,
            cert_fingerprint: Some(fingerprint),
            created_at: now,
            updated_at: now,
        }
    }
}

/// Inserts `host` and, with `group`, its membership; answers its id.
pub fn register(
    conn: &mut DbConnection,
    host: &NewHost<'_>,
    group: Option<i64>,
) -> Result<i64, DbError> {
    let host_id = insert(conn, host)?;
    if let Some(group_id) = group {
        add_member(
            conn,
            &NewMembership {
                host_id,
                group_id,
                created_at: host.created_at,
            },
        )?;
    }
    Ok(host_id)
}

/// The host pinned to the certificate with this SHA-256, if any.
pub fn by_fingerprint(conn: &mut DbConnection, fingerprint: &str) -> Result<Option<i64>, DbError> {
    Ok(h::table
        .filter(h::cert_fingerprint.eq(fingerprint))
        .select(h::id)
        .first(conn)
        .optional()?)
}

/// The host registered at `ip`:`port`, if any.
pub fn find_by_address(
    conn: &mut DbConnection,
    ip: &str,
    port: i32,
) -> Result<Option<i64>, DbError> {
    Ok(h::table
        .filter(h::ip_address.eq(ip))
        .filter(h::agent_port.eq(port))
        .select(h::id)
        .first(conn)
        .optional()?)
}

/// Replaces the pin of the host pinned to `fingerprint` by [`crate::agent_client::REVOKED_PIN`]
/// (its certificate was revoked); answers the host, if one was pinned to it.
pub fn unpin_revoked(conn: &mut DbConnection, fingerprint: &str) -> Result<Option<i64>, DbError> {
    let host: Option<i64> = h::table
        .filter(h::cert_fingerprint.eq(fingerprint))
        .select(h::id)
        .first(conn)
        .optional()?;
    if let Some(id) = host {
        diesel::update(h::table.filter(h::id.eq(id)))
            .set(h::cert_fingerprint.eq(crate::agent_client::REVOKED_PIN))
            .execute(conn)?;
    }
    Ok(host)
}

/// Removes a host; its memberships, inventory, health and CRL delivery rows go with it, its
/// certificates stay (for history) without it. Answers whether it existed.
pub fn delete(conn: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(h::table.filter(h::id.eq(id))).execute(conn)? == 1)
}

/// Registers a host; answers its id.
pub fn insert(conn: &mut DbConnection, host: &NewHost<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(h::table)
        .values(host)
        .returning(h::id)
        .get_result(conn)?)
}

/// Records the host's new certificate.
pub fn set_certificate(
    conn: &mut DbConnection,
    id: i64,
    update: &HostCertificateUpdate<'_>,
) -> Result<(), DbError> {
    diesel::update(h::table.filter(h::id.eq(id)))
        .set(update)
        .execute(conn)?;
    Ok(())
}

/// Puts a host into a group.
pub fn add_member(conn: &mut DbConnection, member: &NewMembership) -> Result<(), DbError> {
    diesel::insert_into(m::table).values(member).execute(conn)?;
    Ok(())
}

/// Groups by name, only `visible` ones when given.
pub fn groups(conn: &mut DbConnection, visible: Option<&[i64]>) -> Result<Vec<GroupRow>, DbError> {
    let mut q = g::table
        .order(g::name)
        .select(GroupRow::as_select())
        .into_boxed();
    if let Some(ids) = visible {
        q = q.filter(g::id.eq_any(ids.to_vec()));
    }
    Ok(q.load(conn)?)
}

/// Member count of every non-empty group.
pub fn group_sizes(conn: &mut DbConnection) -> Result<Vec<GroupSize>, DbError> {
    Ok(m::table
        .group_by(m::group_id)
        .select((m::group_id, diesel::dsl::count(m::host_id)))
        .load(conn)?)
}

/// Whether the group exists.
pub fn group_exists(conn: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    let n: i64 = g::table.filter(g::id.eq(id)).count().get_result(conn)?;
    Ok(n > 0)
}

/// Id of the group named `name`.
pub fn group_id_by_name(conn: &mut DbConnection, name: &str) -> Result<Option<i64>, DbError> {
    Ok(g::table
        .filter(g::name.eq(name))
        .select(g::id)
        .first(conn)
        .optional()?)
}

/// Renames a group and/or changes its description; answers whether it exists.
pub fn update_group(
    conn: &mut DbConnection,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let target = g::table.filter(g::id.eq(id));
    let mut n = diesel::update(target)
        .set(g::updated_at.eq(now))
        .execute(conn)?;
    if let Some(name) = name {
        n = diesel::update(g::table.filter(g::id.eq(id)))
            .set(g::name.eq(name))
            .execute(conn)?;
    }
    if let Some(d) = description {
        n = diesel::update(g::table.filter(g::id.eq(id)))
            .set(g::description.eq(d))
            .execute(conn)?;
    }
    Ok(n == 1)
}

/// Deletes a group (its memberships and Operator assignments go with it); answers how many
/// hosts were in it, or `None` when there is no such group.
pub fn delete_group(conn: &mut DbConnection, id: i64) -> Result<Option<i64>, DbError> {
    let members: i64 = m::table
        .filter(m::group_id.eq(id))
        .count()
        .get_result(conn)?;
    let n = diesel::delete(g::table.filter(g::id.eq(id))).execute(conn)?;
    Ok((n == 1).then_some(members))
}

/// Replaces the groups of host `host_id`.
pub fn set_memberships(
    conn: &mut DbConnection,
    host_id: i64,
    groups: &[i64],
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::delete(m::table.filter(m::host_id.eq(host_id))).execute(conn)?;
    for &group_id in groups {
        add_member(
            conn,
            &NewMembership {
                host_id,
                group_id,
                created_at: now,
            },
        )?;
    }
    Ok(())
}

/// Creates a group; answers its id.
pub fn insert_group(conn: &mut DbConnection, group: &NewHostGroup<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(g::table)
        .values(group)
        .returning(g::id)
        .get_result(conn)?)
}

/// Which of `ids` are hosts.
pub fn existing(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<i64>, DbError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let part: Vec<i64> = h::table
            .filter(h::id.eq_any(chunk.to_vec()))
            .select(h::id)
            .load(conn)?;
        found.extend(part);
    }
    Ok(found)
}

/// The member hosts of a group, by name.
pub fn members_by_name(conn: &mut DbConnection, group_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(m::table
        .inner_join(h::table)
        .filter(m::group_id.eq(group_id))
        .select(h::id)
        .order((h::display_name.asc(), h::id.asc()))
        .load(conn)?)
}

/// A host's name.
pub fn name_of(conn: &mut DbConnection, id: i64) -> Result<Option<String>, DbError> {
    Ok(h::table
        .find(id)
        .select(h::display_name)
        .first(conn)
        .optional()?)
}
