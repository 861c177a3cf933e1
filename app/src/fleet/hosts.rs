//! Hosts and groups, always within the caller's [`Scope`]: Operators see the hosts of their
//! groups and nothing else (not even other groups' names), Admins everything.

use crate::audit::Requester;
use crate::auth::access::Scope;
use crate::clock::rfc3339;
use crate::db::hosts::{self as store, HostRow, MembershipName, NewHostGroup};
use crate::db::{certificates, DbConnection, DbError};
use crate::error::AppError;
use crate::state::AppState;
use shared::fleet::{
    GroupInfo, GroupUpdate, HostDetail, HostGroups, HostPackage, HostPage, HostPatch, HostQuery,
    HostSort, HostSummary,
};

/// The summary of a host row, with the group names the caller may see.
fn summary(row: HostRow, memberships: &[MembershipName]) -> HostSummary {
    HostSummary {
        groups: memberships
            .iter()
            .filter(|m| m.host_id == row.id)
            .map(|m| m.group.clone())
            .collect(),
        id: row.id,
        display_name: row.display_name,
        fqdn: row.fqdn,
        ip_address: row.ip_address,
        agent_port: row.agent_port,
        status: row.status,
        os: match (row.os_id, row.os_version) {
            (Some(id), Some(v)) => Some(format!("{id} {v}")),
            (Some(id), None) => Some(id),
            _ => None,
        },
        pending_patches: row.pending_patches,
        pending_security_patches: row.pending_security_patches,
        reboot_required: row.reboot_required,
        last_seen_at: row.last_seen_at.map(rfc3339),
    }
}

/// Visible hosts (only `only` when given) with their visible groups.
fn visible_hosts(
    c: &mut DbConnection,
    scope: &Scope,
    only: Option<i64>,
) -> Result<Vec<(HostRow, Vec<MembershipName>)>, DbError> {
    let visible = scope.host_ids(c)?;
    let rows = store::list(c, visible.as_deref(), only)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id.into()).collect();
    let memberships = store::memberships(c, &ids, scope.groups())?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mine = memberships
                .iter()
                .filter(|m| m.host_id == r.id)
                .cloned()
                .collect();
            (r, mine)
        })
        .collect())
}

/// Hosts per page when the query names none.
pub const DEFAULT_PER_PAGE: u32 = 100;
/// Most hosts per page.
pub const MAX_PER_PAGE: u32 = 500;

/// One page of the hosts the caller may see, filtered and sorted in the database (the hosts page
/// stays fast at 10,000 hosts).
pub async fn list(state: &AppState, scope: Scope, query: HostQuery) -> Result<HostPage, AppError> {
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(AppError::invalid(
            "per_page",
            format!("per_page must be 1 to {MAX_PER_PAGE}"),
        ));
    }
    let page = query.page.unwrap_or(1);
    if page == 0 {
        return Err(AppError::invalid("page", "pages count from 1"));
    }
    let text = query
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if text.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(AppError::invalid(
            "q",
            "search text is limited to 200 characters",
        ));
    }
    // A group outside an Operator's scope matches nothing (and says nothing about its members).
    let group = query.group.map(i64::from);
    if group.is_some_and(|g| !scope.allows_group(g)) {
        return Ok(HostPage {
            total: 0,
            page,
            per_page,
            hosts: Vec::new(),
        });
    }
    let filter = store::HostFilter {
        text,
        status: query.status.map(|s| s.as_str().to_owned()),
        group,
        os: query.os.filter(|o| !o.is_empty()),
        security: query.security,
    };
    let order = match query.sort.unwrap_or_default() {
        HostSort::Name => store::HostOrder::Name,
        HostSort::Status => store::HostOrder::Status,
        HostSort::Updates => store::HostOrder::Updates,
        HostSort::LastSeen => store::HostOrder::LastSeen,
    };
    let desc = query.desc.unwrap_or(false);
    let offset = i64::from(page - 1) * i64::from(per_page);
    let (total, rows, memberships) = state
        .db
        .run(move |c| {
            let visible = scope.host_ids(c)?;
            let (total, rows) = store::search(
                c,
                visible.as_deref(),
                &filter,
                order,
                desc,
                offset,
                i64::from(per_page),
            )?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id.into()).collect();
            let memberships = store::memberships(c, &ids, scope.groups())?;
            Ok((total, rows, memberships))
        })
        .await?;
    Ok(HostPage {
        total,
        page,
        per_page,
        hosts: rows.into_iter().map(|r| summary(r, &memberships)).collect(),
    })
}

/// One host, with its current certificate, if the caller may see it.
pub async fn detail(state: &AppState, scope: Scope, id: i64) -> Result<HostDetail, AppError> {
    let (row, groups, certificate) = state
        .db
        .run(move |c| {
            let Some((row, groups)) = visible_hosts(c, &scope, Some(id))?.pop() else {
                return Ok(None);
            };
            let certificate = certificates::current_for_host(c, id)?;
            Ok(Some((row, groups, certificate)))
        })
        .await?
        .ok_or_else(|| AppError::NotFound("no such host".into()))?;
    let (kernel, agent_version, created_at) = (
        row.kernel.clone(),
        row.agent_version.clone(),
        row.created_at,
    );
    let status_reason = row.status_reason.clone();
    let (since, health_at, scan_at) = (
        row.status_changed_at,
        row.last_health_at,
        row.last_patch_scan_at,
    );
    let renew_days = state.config.pki.renew_before_days;
    let now = state.clock.now();
    Ok(HostDetail {
        summary: summary(row, &groups),
        kernel,
        agent_version,
        status_reason,
        status_since: since.map(rfc3339),
        last_health_at: health_at.map(rfc3339),
        last_patch_scan_at: scan_at.map(rfc3339),
        certificate: certificate
            .map(|row| crate::pki::certificates::info(row, renew_days, None, now)),
        created_at: rfc3339(created_at),
    })
}

/// A host's certificate bundle: its current certificate and the CA certificate as one PEM file,
/// with a file name. Public parts only: private keys never leave the hosts. Audited.
pub async fn certificate_bundle(
    state: &AppState,
    by: &Requester,
    id: i64,
) -> Result<(String, String), AppError> {
    let row = state
        .db
        .run(move |c| certificates::current_for_host(c, id))
        .await?
        .ok_or_else(|| AppError::NotFound("this host has no valid certificate".into()))?;
    let entry = by
        .success("certificate.downloaded")
        .target(format!("host:{id}"))
        .details(serde_json::json!({ "serial": row.serial, "bundle": true }));
    state.audit.note(entry).await;
    let file = format!("host-{id}-{}.pem", row.serial);
    let mut body = row.cert_pem.trim_end().to_owned();
    body.push('\n');
    body.push_str(state.pki.ca.cert_pem().trim_end());
    body.push('\n');
    Ok((file, body))
}

/// A host's installed packages as last reported (the gate checked the host is in scope).
pub async fn packages(state: &AppState, id: i64) -> Result<Vec<HostPackage>, AppError> {
    let rows = state
        .db
        .run(move |c| crate::db::host_state::packages(c, id))
        .await?;
    Ok(rows
        .into_iter()
        .map(|p| HostPackage {
            name: p.name,
            arch: p.arch,
            version: p.version,
            status: p.status,
        })
        .collect())
}

/// A host's pending updates as last reported, security first (the gate checked the scope).
pub async fn patches(state: &AppState, id: i64) -> Result<Vec<HostPatch>, AppError> {
    let rows = state
        .db
        .run(move |c| crate::db::host_state::patches(c, id))
        .await?;
    Ok(rows
        .into_iter()
        .map(|p| HostPatch {
            cves: serde_json::from_str(&p.cves_json).unwrap_or_default(),
            name: p.name,
            arch: p.arch,
            installed_version: p.installed_version,
            candidate_version: p.candidate_version,
            security: p.is_security,
            severity: p.severity,
            reboot_likely: p.reboot_likely,
        })
        .collect())
}

/// Asks the host's actor to poll now (starting one if the host has none yet); audited.
pub async fn refresh(state: &AppState, by: &Requester, id: i64) -> Result<(), AppError> {
    let ask = || async {
        state
            .fleet
            .supervisor
            .send(crate::fleet::supervisor::RefreshHost(id))
            .await
            .map_err(|e| AppError::Internal(format!("the fleet supervisor is gone: {e}")))
    };
    if !ask().await? {
        crate::fleet::supervise(state, id).await?;
        if !ask().await? {
            return Err(AppError::NotFound("no such host".into()));
        }
    }
    state
        .audit
        .note(
            by.success("host.refresh_requested")
                .target(format!("host:{id}")),
        )
        .await;
    Ok(())
}

/// Removes a host from the fleet: its actor stops, its certificates are revoked (so its name can
/// be enrolled again and its agent's key is worth nothing) with a new CRL, its inventory goes;
/// the certificates and the audit trail stay for history. Audited.
pub async fn remove(state: &AppState, by: &Requester, id: i64) -> Result<(), AppError> {
    let now = state.clock.now();
    let removed = state
        .db
        .run(move |c| {
            crate::db::transaction::transaction(c, |c| {
                let serials =
                    certificates::revoke_for_host(c, id, "host removed from the fleet", now)?;
                Ok::<_, DbError>(store::delete(c, id)?.then_some(serials))
            })
        })
        .await?;
    let Some(serials) = removed else {
        return Err(AppError::NotFound("no such host".into()));
    };
    let _ = state
        .fleet
        .supervisor
        .send(crate::fleet::supervisor::Forget(id))
        .await;
    state
        .audit
        .note(
            by.success("host.removed")
                .target(format!("host:{id}"))
                .details(serde_json::json!({ "revoked": serials })),
        )
        .await;
    if !serials.is_empty() {
        crate::pki::crl::issue(state, "revocation").await?;
    }
    Ok(())
}

/// The caller's groups (all for Admins), by name, with member counts.
pub async fn groups(state: &AppState, scope: Scope) -> Result<Vec<GroupInfo>, AppError> {
    let (rows, sizes) = state
        .db
        .run(move |c| Ok((store::groups(c, scope.groups())?, store::group_sizes(c)?)))
        .await?;
    Ok(rows.into_iter().map(|g| group_info(g, &sizes)).collect())
}

/// A group row as the API shows it, with its member count.
fn group_info(g: store::GroupRow, sizes: &[store::GroupSize]) -> GroupInfo {
    GroupInfo {
        hosts: sizes
            .iter()
            .find(|s| s.group_id == g.id)
            .map_or(0, |s| s.hosts),
        id: g.id,
        name: g.name,
        description: g.description,
    }
}

/// A group name as typed: trimmed, 1 to 64 printable characters.
fn group_name(name: &str) -> Result<String, AppError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name must be 1 to 64 printable characters",
        ));
    }
    Ok(name)
}

/// A group description: at most 500 characters.
fn group_description(description: &str) -> Result<(), AppError> {
    if description.chars().count() > 500 {
        return Err(AppError::invalid(
            "description",
            "description is limited to 500 characters",
        ));
    }
    Ok(())
}

/// Creates a group: a name of 1 to 64 printable characters, not taken, and a description of at
/// most 500 characters. Audited.
pub async fn create_group(
    state: &AppState,
    by: &Requester,
    name: &str,
    description: String,
) -> Result<GroupInfo, AppError> {
    let name = group_name(name)?;
    group_description(&description)?;
    let (n, d) = (name.clone(), description.clone());
    let now = state.clock.now();
    let id = state
        .db
        .run(move |c| {
            // The unique name also holds in the schema; this check gives the friendly answer.
            if store::group_id_by_name(c, &n)?.is_some() {
                return Ok(None);
            }
            let group = NewHostGroup {
                name: &n,
                description: &d,
                created_at: now,
                updated_at: now,
            };
            Ok(Some(store::insert_group(c, &group)?))
        })
        .await?
        .ok_or_else(|| AppError::Conflict(format!("a group named {name} exists")))?;
    let entry = by
        .success("group.created")
        .target(format!("group:{id}"))
        .details(serde_json::json!({ "name": name }));
    state.audit.note(entry).await;
    Ok(GroupInfo {
        id: id.into(),
        name,
        description,
        hosts: 0,
    })
}

/// Renames a group or changes its description (same rules as creation). Audited.
pub async fn update_group(
    state: &AppState,
    by: &Requester,
    id: i64,
    update: GroupUpdate,
) -> Result<GroupInfo, AppError> {
    let name = update.name.as_deref().map(group_name).transpose()?;
    if let Some(d) = &update.description {
        group_description(d)?;
    }
    let (n, d, now) = (name.clone(), update.description.clone(), state.clock.now());
    let outcome = state
        .db
        .run(move |c| {
            crate::db::transaction::transaction(c, |c| {
                if let Some(n) = &n {
                    if store::group_id_by_name(c, n)?.is_some_and(|other| other != id) {
                        return Ok(Err(AppError::Conflict(format!("a group named {n} exists"))));
                    }
                }
                if !store::update_group(c, id, n.as_deref(), d.as_deref(), now)? {
                    return Ok(Err(AppError::NotFound("no such group".into())));
                }
                Ok::<_, DbError>(Ok(()))
            })
        })
        .await?;
    outcome?;
    state
        .audit
        .note(
            by.success("group.updated")
                .target(format!("group:{id}"))
                .details(serde_json::json!({ "name": name, "description": update.description })),
        )
        .await;
    let (rows, sizes) = state
        .db
        .run(move |c| Ok((store::groups(c, Some(&[id]))?, store::group_sizes(c)?)))
        .await?;
    rows.into_iter()
        .next()
        .map(|g| group_info(g, &sizes))
        .ok_or_else(|| AppError::NotFound("no such group".into()))
}

/// Deletes a group; its hosts stay, its Operators lose access to them. Audited.
pub async fn delete_group(state: &AppState, by: &Requester, id: i64) -> Result<(), AppError> {
    let members = state
        .db
        .run(move |c| store::delete_group(c, id))
        .await?
        .ok_or_else(|| AppError::NotFound("no such group".into()))?;
    state
        .audit
        .note(
            by.success("group.deleted")
                .target(format!("group:{id}"))
                .details(serde_json::json!({ "hosts": members })),
        )
        .await;
    state.fleet.access_changed();
    Ok(())
}

/// Replaces the groups of a host; every group must exist. Audited with before and after.
pub async fn set_host_groups(
    state: &AppState,
    by: &Requester,
    host_id: i64,
    wanted: HostGroups,
) -> Result<HostGroups, AppError> {
    let mut ids: Vec<i64> = wanted.group_ids.iter().map(|g| i64::from(*g)).collect();
    ids.sort_unstable();
    ids.dedup();
    let now = state.clock.now();
    let ids_c = ids.clone();
    let before = state
        .db
        .run(move |c| {
            crate::db::transaction::transaction(c, |c| {
                if store::agent_address(c, host_id)?.is_none() {
                    return Ok(Err(AppError::NotFound("no such host".into())));
                }
                for g in &ids_c {
                    if !store::group_exists(c, *g)? {
                        return Ok(Err(AppError::invalid(
                            "group_ids",
                            format!("there is no group {g}"),
                        )));
                    }
                }
                let before: Vec<String> = store::memberships(c, &[host_id], None)?
                    .into_iter()
                    .map(|m| m.group)
                    .collect();
                store::set_memberships(c, host_id, &ids_c, now)?;
                Ok::<_, DbError>(Ok(before))
            })
        })
        .await??;
    state
        .audit
        .note(
            by.success("host.groups_changed")
                .target(format!("host:{host_id}"))
                .details(serde_json::json!({ "before": before, "after": ids })),
        )
        .await;
    state.fleet.access_changed();
    // Its groups' maintenance windows now apply to it (or no longer do).
    state
        .fleet
        .scheduler
        .do_send(crate::deploy::scheduler::Reload);
    Ok(HostGroups {
        group_ids: ids.into_iter().map(Into::into).collect(),
    })
}
