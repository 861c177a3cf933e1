//! Access control, decided in one place.
//!
//! Every JSON route is declared in [`crate::api::ROUTES`] with an [`Access`] rule, and
//! [`crate::api::configure`] wraps each resource in the gate ([`crate::http::gate`]), which
//! applies the rule before any handler or body extractor runs. Handlers receive the outcome as a
//! [`Caller`]: who is calling and the [`Scope`] of hosts they may see. Database queries that list
//! or touch hosts take that `Scope`, and only this module makes one ([`scope_of`]), so an
//! Operator's view is limited to their groups by construction rather than by each handler
//! remembering to filter.
//!
//! Hosts outside an Operator's groups answer 404, like hosts that do not exist, so their
//! existence is not revealed.

use crate::auth::identity::Identity;
use crate::db::{scope as membership, Database, DbConnection, DbError};
use std::sync::Arc;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, root CA, sign-in, token-protected first-run and enrollment).
    Public,
    /// Any signed-in user, even one who still has to enrol the second factor their account
    /// requires (who am I, sign out, MFA enrolment).
    Session,
    /// Any signed-in user; what they see is limited to their [`Scope`].
    Operator,
    /// Any signed-in user whose scope contains the host named by the `{host_id}` path segment.
    Host,
    /// Admins only.
    Admin,
}

/// The hosts a caller may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(ScopeInner);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScopeInner {
    All,
    Groups(Arc<[i64]>),
}

impl Scope {
    /// Every host: the scope of an Admin, and of the manager's own work (after a check of the
    /// caller's scope).
    pub fn all() -> Self {
        Self(ScopeInner::All)
    }

    /// Every host (Admins).
    pub fn is_all(&self) -> bool {
        matches!(self.0, ScopeInner::All)
    }

    /// The groups an Operator belongs to; `None` for Admins (all groups).
    pub fn groups(&self) -> Option<&[i64]> {
        match &self.0 {
            ScopeInner::All => None,
            ScopeInner::Groups(g) => Some(g),
        }
    }

    /// Whether the group is visible.
    pub fn allows_group(&self, group_id: i64) -> bool {
        self.groups().is_none_or(|g| g.contains(&group_id))
    }

    /// Whether the host is visible: Admins see every host, Operators the members of their groups.
    pub fn allows_host(&self, c: &mut DbConnection, host_id: i64) -> Result<bool, DbError> {
        match self.groups() {
            None => Ok(true),
            Some(groups) => membership::host_in_groups(c, host_id, groups),
        }
    }

    /// Ids of the visible hosts among all hosts, for list queries (`None`: no restriction).
    pub fn host_ids(&self, c: &mut DbConnection) -> Result<Option<Vec<i64>>, DbError> {
        match self.groups() {
            None => Ok(None),
            Some(groups) => membership::hosts_in_groups(c, groups).map(Some),
        }
    }
}

/// The scope of a signed-in user: every host for an Admin, the members of their groups for an
/// Operator.
pub async fn scope_of(db: &Database, identity: &Identity) -> Result<Scope, DbError> {
    if identity.is_admin() {
        return Ok(Scope(ScopeInner::All));
    }
    let uid = identity.user_id;
    let groups = db.run(move |c| membership::groups_of_user(c, uid)).await?;
    Ok(Scope(ScopeInner::Groups(groups.into())))
}

/// The caller of a route that passed its [`Access`] rule. Only the gate ([`crate::http::gate`]) makes one; a handler
/// asking for it on a route the gate does not cover gets a 500, never access.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is signed in.
    pub identity: Identity,
    /// What they may see.
    pub scope: Scope,
}

impl Caller {
    /// Audit actor name: `user:<id>`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.identity.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;
    use crate::db::hosts::{self, NewHost, NewHostGroup, NewMembership};
    use crate::db::users;

    fn identity(user_id: i64, role: &str) -> Identity {
        Identity {
            user_id,
            role: role.into(),
            session: "s".into(),
            via_cookie: false,
            mfa_enrolment_pending: false,
        }
    }

    /// Two groups with one host each; an Operator in the first. Answers (db, operator, hosts).
    fn fleet(dir: &tempfile::TempDir) -> (Database, i64, [i64; 2]) {
        let db = Database::open(
            &DatabaseTarget::Sqlite(dir.path().join("t.db")),
            2,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        let c = &mut *db.conn().unwrap();
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let mut host_ids = [0; 2];
        let mut group_ids = [0; 2];
        for (i, name) in ["a", "b"].iter().enumerate() {
            group_ids[i] = hosts::insert_group(
                c,
                &NewHostGroup {
                    name,
                    description: "",
                    created_at: now,
                    updated_at: now,
                },
            )
            .unwrap();
            let ip = format!("192.0.2.{}", i + 1);
            host_ids[i] = hosts::insert(
                c,
                &NewHost {
                    fqdn: None,
                    ip_address: &ip,
                    display_name: name,
                    agent_port: 12443,
                    status: "unknown",
                    reboot_required: false,
                    pending_patches: 0,
                    pending_security_patches: 0,
                    cert_fingerprint: None,
                    created_at: now,
                    updated_at: now,
                },
            )
            .unwrap();
            hosts::add_member(
                c,
                &NewMembership {
                    host_id: host_ids[i],
                    group_id: group_ids[i],
                    created_at: now,
                },
            )
            .unwrap();
        }
        let op =
            users::insert(c, &users::NewUser::local("op", "op", "x", "operator", now)).unwrap();
        users::replace_groups(c, op, &[group_ids[0]], now).unwrap();
        (db, op, host_ids)
    }

    #[actix_rt::test]
    async fn operators_see_their_groups_hosts_and_admins_see_all() {
        let dir = tempfile::tempdir().unwrap();
        let (db, op, [mine, theirs]) = fleet(&dir);
        let c = &mut *db.conn().unwrap();

        let scope = scope_of(&db, &identity(op, "operator")).await.unwrap();
        assert!(!scope.is_all());
        assert!(scope.allows_host(c, mine).unwrap());
        assert!(
            !scope.allows_host(c, theirs).unwrap(),
            "another group's host"
        );
        assert!(
            !scope.allows_host(c, 999).unwrap(),
            "a host that does not exist"
        );
        assert_eq!(scope.host_ids(c).unwrap(), Some(vec![mine]));

        let admin = scope_of(&db, &identity(1, "admin")).await.unwrap();
        assert!(admin.is_all());
        assert!(admin.allows_host(c, theirs).unwrap());
        assert_eq!(admin.host_ids(c).unwrap(), None, "no restriction");

        // An Operator in no group sees nothing.
        let none = scope_of(&db, &identity(12345, "operator")).await.unwrap();
        assert_eq!(none.host_ids(c).unwrap(), Some(vec![]));
        assert!(!none.allows_host(c, mine).unwrap());
    }
}
