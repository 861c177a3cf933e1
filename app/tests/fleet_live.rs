//! A real agent under its host actor: enrolled, polled over mutual TLS, its inventory stored (and
//! not rewritten when unchanged), then killed, seen unreachable on the event hub, revived and
//! seen healthy again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use diesel::prelude::*;
use patch_manager::db::host_state::InventoryWrite;
use patch_manager::db::schema::{host_health, host_packages, hosts};
use patch_manager::fleet::supervisor::RefreshHost;
use shared::fleet::HostStateEvent;
use shared::vocab::HostStatus;
use std::time::Duration;

/// Waits for the host's next state event with `status`.
async fn state_event(
    events: &mut tokio::sync::broadcast::Receiver<HostStateEvent>,
    host_id: i64,
    status: HostStatus,
) -> HostStateEvent {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.unwrap();
            if i64::from(e.host_id) == host_id && e.status == status {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {status:?} event for host {host_id}"))
}

async fn inventory_event(
    inventories: &mut tokio::sync::broadcast::Receiver<(i64, Result<InventoryWrite, String>)>,
    host_id: i64,
) -> InventoryWrite {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let (id, written) = inventories.recv().await.unwrap();
            if id == host_id {
                return written.unwrap_or_else(|e| panic!("the inventory was not stored: {e}"));
            }
        }
    })
    .await
    .expect("no inventory recorded")
}

#[actix_rt::test]
async fn a_real_agent_is_polled_recorded_and_seen_going_down_and_up() {
    // The agent manages an isolated apt root over the project's test packages (never this
    // machine's, and nothing is fetched from outside).
    let apt = common::AptRoot::new();
    // Two packages installed, one of them with a pending security update.
    apt.install(&["lpm-test-app", "lpm-test-secure=1.0-1"]);
    let fleet = common::fleet_with(Some(apt.apt_config.clone())).await;
    let state = fleet.server.state.clone();
    let host = fleet.host_id;
    let mut events = state.fleet.events.subscribe();
    let mut inventories = state.fleet.inventories.subscribe();

    // Enrollment started the host's actor; ask it to poll now rather than at its point of the
    // interval.
    assert!(state
        .fleet
        .supervisor
        .send(RefreshHost(host))
        .await
        .unwrap());
    state_event(&mut events, host, HostStatus::Healthy).await;
    assert_eq!(
        inventory_event(&mut inventories, host).await,
        InventoryWrite::Replaced
    );
    let mut conn = state.db.conn().unwrap();
    let (status, os_id, seen): (String, Option<String>, Option<chrono::NaiveDateTime>) =
        hosts::table
            .filter(hosts::id.eq(host))
            .select((hosts::status, hosts::os_id, hosts::last_seen_at))
            .first(&mut *conn)
            .unwrap();
    assert_eq!(status, "healthy");
    assert!(os_id.is_some_and(|o| !o.is_empty()) && seen.is_some());
    // The packages stored are the root's dpkg database, as dpkg itself lists it.
    let mut stored: Vec<(String, String)> = host_packages::table
        .filter(host_packages::host_id.eq(host))
        .select((host_packages::name, host_packages::version))
        .load(&mut *conn)
        .unwrap();
    stored.sort();
    let dpkg = std::process::Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            apt.root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package}\t${Version}\n"])
        .output()
        .unwrap();
    let mut listed: Vec<(String, String)> = String::from_utf8(dpkg.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    listed.sort();
    assert_eq!(stored.len(), 3, "{stored:?}"); // lpm-test-app, its lib, lpm-test-secure
    assert_eq!(stored, listed);
    // And its pending updates, security first, with the counters on the host row.
    let patches = {
        let mut c = state.db.conn().unwrap();
        patch_manager::db::host_state::patches(&mut c, host).unwrap()
    };
    let (pending, security): (i64, i64) = hosts::table
        .filter(hosts::id.eq(host))
        .select((hosts::pending_patches, hosts::pending_security_patches))
        .first(&mut *conn)
        .unwrap();
    assert_eq!(usize::try_from(pending).unwrap(), patches.len());
    assert!(
        security > 0,
        "the test repository carries a security update"
    );
    assert!(patches[0].is_security);
    let health_rows: i64 = host_health::table
        .filter(host_health::host_id.eq(host))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(health_rows, 1);
    drop(conn);

    // The dashboard counts it: healthy, a security update pending, so not compliant.
    let admin = patch_manager::auth::identity::Identity {
        user_id: 0,
        role: "admin".into(),
        session: String::new(),
        via_cookie: false,
        mfa_enrolment_pending: false,
    };
    let scope = patch_manager::auth::access::scope_of(&state.db, &admin)
        .await
        .unwrap();
    let fleet_summary = state.overview(&scope).await.unwrap().fleet;
    assert_eq!(
        (
            fleet_summary.healthy,
            fleet_summary.with_security_updates,
            fleet_summary.compliant
        ),
        (1, 1, 0),
        "{fleet_summary:?}"
    );

    // The same inventory again is recognised by its hash and not rewritten.
    assert!(state
        .fleet
        .supervisor
        .send(RefreshHost(host))
        .await
        .unwrap());
    assert_eq!(
        inventory_event(&mut inventories, host).await,
        InventoryWrite::Unchanged
    );

    // The agent dies: two failed polls (the second confirms the first) make it unreachable.
    fleet.agent.stop().await;
    state.fleet.supervisor.do_send(RefreshHost(host));
    state.fleet.supervisor.do_send(RefreshHost(host));
    let down = state_event(&mut events, host, HostStatus::Unreachable).await;
    assert!(down.reason.is_some_and(|r| !r.is_empty()));

    // Revived: healthy at the next poll.
    let agent = common::run_agent(&fleet.agent_config, fleet.apt.as_deref());
    state.fleet.supervisor.do_send(RefreshHost(host));
    state_event(&mut events, host, HostStatus::Healthy).await;
    let status: String = hosts::table
        .filter(hosts::id.eq(host))
        .select(hosts::status)
        .first(&mut *state.db.conn().unwrap())
        .unwrap();
    assert_eq!(status, "healthy");

    // Removed: the actor stops, the certificate is revoked (a new CRL says so), the rows go.
    let crl_before = patch_manager::pki::crl::status(&state)
        .await
        .unwrap()
        .number;
    patch_manager::fleet::hosts::remove(
        &state,
        &patch_manager::audit::Requester::named("test", None),
        host,
    )
    .await
    .unwrap();
    use patch_manager::fleet::supervisor::Count;
    assert_eq!(state.fleet.supervisor.send(Count).await.unwrap(), 0);
    let mut conn = state.db.conn().unwrap();
    let left: i64 = host_packages::table
        .filter(host_packages::host_id.eq(host))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(left, 0);
    use patch_manager::db::schema::certificates;
    let live: i64 = certificates::table
        .filter(certificates::kind.eq("agent"))
        .filter(certificates::revoked_at.is_null())
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(live, 0, "the removed host's certificate is revoked");
    drop(conn);
    let crl = patch_manager::pki::crl::status(&state).await.unwrap();
    assert!(crl.number > crl_before && crl.revoked >= 1, "{crl:?}");
    assert!(patch_manager::fleet::hosts::remove(
        &state,
        &patch_manager::audit::Requester::named("test", None),
        host
    )
    .await
    .is_err());
    agent.stop().await;
    fleet.server.stop().await;
}
