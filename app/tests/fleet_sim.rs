//! The fleet simulator end to end: agents enrolled through the real path, supervised, one killed
//! (unreachable) and revived (healthy), the events seen by an Admin's WebSocket and not by an
//! Operator outside that host's groups; discovery finds exactly the agents listening in a range,
//! tells managed from adoptable, is cancelled on demand, and an adopted agent becomes a host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https::{api, client, first_admin, open_stream, sign_in, Socket};
use common::{test_config, Engine, TestDb};
use futures_util::{SinkExt, StreamExt};
use patch_agent::sim::{self, Behaviour, SimFleet};
use patch_manager::fleet::supervisor::{Forget, RefreshHost};
use serde_json::{json, Value};
use shared::fleet::HostStateEvent;
use shared::vocab::HostStatus;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The next host-state message on a stream, as (host, status).
async fn next_state(socket: &mut impl Socket) -> (i64, String) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("no event within a minute")
            .expect("stream closed")
            .unwrap();
        match frame {
            awc::ws::Frame::Text(t) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                if v["type"] == "host_state" {
                    return (
                        v["host_id"].as_i64().unwrap(),
                        v["status"].as_str().unwrap().to_owned(),
                    );
                }
            }
            awc::ws::Frame::Ping(p) => socket.send(awc::ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

/// Waits on the hub for `host` reaching `status`.
async fn hub_state(
    events: &mut tokio::sync::broadcast::Receiver<HostStateEvent>,
    host: i64,
    status: HostStatus,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.unwrap();
            if i64::from(e.host_id) == host && e.status == status {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("host {host} never became {status:?}"));
}

/// Polls a discovery run until it ends (each answer is an event of the run: its progress).
async fn finished(c: &awc::Client, url: &str, bearer: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (status, run) = api(c, "GET", url, Some(bearer), None).await;
            assert_eq!(status, 200, "{run}");
            if run["state"] != "running" {
                return run;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the discovery run never ended")
}

/// A TCP listener that takes connections and never answers (holds them open).
fn silent_listener(addr: std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().map_while(Result::ok) {
            held.push(s);
        }
    });
}

#[actix_rt::test]
async fn a_simulated_fleet_is_supervised_discovered_and_adopted() {
    let db = TestDb::new(Engine::Sqlite);
    let mut config = test_config(&db);
    config.server.tls = patch_manager::config::TlsMode::Internal;
    config.server.public_names = vec!["localhost".into(), "127.0.0.1".into()];
    config.fleet.discovery_concurrency = 2;
    config.fleet.discovery_timeout_ms = 500;
    let server = patch_manager::server::start(config.clone()).await.unwrap();
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let c = client(&server);
    let admin = first_admin(&c, &base, &config.data.dir).await;

    // Five simulated agents at 127.31.0.1 .. 127.31.0.5, on a port free on this machine.
    let first = Ipv4Addr::new(127, 31, 0, 1);
    let port = std::net::TcpListener::bind((first, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = common::enrollment_tokens(&server, 5);
    let dir = tempfile::tempdir().unwrap();
    let addresses = sim::enroll(dir.path(), &base, &tokens, first, port, 3)
        .await
        .unwrap();
    assert_eq!(addresses.len(), 5);
    // Enrolled agents are kept: no token, nothing enrolled again.
    assert_eq!(
        sim::enroll(dir.path(), &base, &[], first, port, 3)
            .await
            .unwrap(),
        Vec::<Ipv4Addr>::new()
    );
    let mut fleet = SimFleet::start(dir.path(), &Behaviour::default())
        .await
        .unwrap();
    assert_eq!(fleet.len(), 5);
    let host_of = |ip: Ipv4Addr| {
        use diesel::prelude::*;
        use patch_manager::db::schema::hosts;
        hosts::table
            .filter(hosts::ip_address.eq(ip.to_string()))
            .select(hosts::id)
            .first::<i64>(&mut server.state.db.conn().unwrap())
            .unwrap()
    };
    let hosts: Vec<i64> = addresses.iter().map(|ip| host_of(*ip)).collect();

    // An Operator of the group holding only the first host.
    let (status, group) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/groups"),
        Some(&admin),
        Some(json!({ "name": "web" })),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let (status, body) = api(
        &c,
        "PUT",
        &format!("{base}/api/v1/hosts/{}/groups", hosts[0]),
        Some(&admin),
        Some(json!({ "group_ids": [group["id"]] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &c,
        "POST",
        &format!("{base}/api/v1/users"),
        Some(&admin),
        Some(json!({ "username": "webop", "display_name": "Web operator",
                     "password": "Correct-Horse-77-battery", "role": "operator",
                     "group_ids": [group["id"]] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let operator = sign_in(&c, &base, "webop", "Correct-Horse-77-battery").await;
    let mut admin_ws = open_stream(&c, &base, &admin).await;
    let mut operator_ws = open_stream(&c, &base, &operator).await;
    let mut hub = server.state.fleet.events.subscribe();
    let refresh = |i: usize| server.state.fleet.supervisor.do_send(RefreshHost(hosts[i]));

    // Every agent is polled and seen healthy.
    for (i, host) in hosts.iter().enumerate() {
        refresh(i);
        hub_state(&mut hub, *host, HostStatus::Healthy).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 5 {
        let (host, status) = next_state(&mut admin_ws).await;
        assert_eq!(status, "healthy");
        seen.insert(host);
    }
    assert_eq!(seen, hosts.iter().copied().collect());
    let (status, page) = api(
        &c,
        "GET",
        &format!("{base}/api/v1/hosts/{}/packages", hosts[2]),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        page.as_array().unwrap().len(),
        600,
        "the simulated inventory"
    );

    // The third agent goes down, then comes back.
    assert!(fleet.kill(2).await);
    refresh(2);
    assert_eq!(
        next_state(&mut admin_ws).await,
        (hosts[2], "unreachable".into())
    );
    fleet.revive(2).await.unwrap();
    refresh(2);
    assert_eq!(
        next_state(&mut admin_ws).await,
        (hosts[2], "healthy".into())
    );
    // The Operator saw their host come up, then nothing of the others: the first host's own
    // outage, published after all of those events, is the next thing their stream carries.
    assert_eq!(
        next_state(&mut operator_ws).await,
        (hosts[0], "healthy".into())
    );
    assert!(fleet.kill(0).await);
    refresh(0);
    assert_eq!(
        next_state(&mut operator_ws).await,
        (hosts[0], "unreachable".into())
    );
    fleet.revive(0).await.unwrap();

    // A restore from an old backup: the fifth host is unknown to the database again, its agent
    // still holds its certificate. The fourth agent is down. Something else listens on .9.
    server.state.fleet.supervisor.do_send(Forget(hosts[4]));
    {
        use diesel::prelude::*;
        use patch_manager::db::schema::{certificates, hosts as h};
        let mut conn = server.state.db.conn().unwrap();
        diesel::delete(certificates::table.filter(certificates::host_id.eq(hosts[4])))
            .execute(&mut conn)
            .unwrap();
        diesel::delete(h::table.find(hosts[4]))
            .execute(&mut conn)
            .unwrap();
    }
    assert!(fleet.kill(3).await);
    let other = Ipv4Addr::new(127, 31, 0, 9);
    let closer = std::net::TcpListener::bind((other, port)).unwrap();
    std::thread::spawn(move || {
        for s in closer.incoming().map_while(Result::ok) {
            drop(s);
        }
    });

    let discovery = format!("{base}/api/v1/discovery");
    let (status, body) = api(
        &c,
        "POST",
        &discovery,
        Some(&operator),
        Some(json!({ "cidr": "127.31.0.0/28", "port": port })),
    )
    .await;
    assert_eq!(status, 403, "discovery is for Admins: {body}");
    for (cidr, field) in [
        ("127.0.0.0/8", "cidr"),
        ("127.31.0.0/33", "cidr"),
        ("x; id", "cidr"),
    ] {
        let (status, body) = api(
            &c,
            "POST",
            &discovery,
            Some(&admin),
            Some(json!({ "cidr": cidr, "port": port })),
        )
        .await;
        assert_eq!(status, 400, "{cidr}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    let (status, run) = api(
        &c,
        "POST",
        &discovery,
        Some(&admin),
        Some(json!({ "cidr": "127.31.0.0/28", "port": port })),
    )
    .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["total"], 14);
    let run_url = format!("{discovery}/{}", run["id"]);
    let run = finished(&c, &run_url, &admin).await;
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["probed"], 14);
    let found: Vec<(String, String, Value, bool)> = run["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["address"].as_str().unwrap().to_owned(),
                f["outcome"].as_str().unwrap().to_owned(),
                f["host_id"].clone(),
                f["adoptable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("127.31.0.1".into(), "agent".into(), json!(hosts[0]), false),
            ("127.31.0.2".into(), "agent".into(), json!(hosts[1]), false),
            ("127.31.0.3".into(), "agent".into(), json!(hosts[2]), false),
            ("127.31.0.5".into(), "agent".into(), Value::Null, true),
            (
                "127.31.0.9".into(),
                "no_handshake".into(),
                Value::Null,
                false
            ),
        ],
        "{run}"
    );
    let fifth = &run["found"][3];
    assert_eq!(fifth["subject"], "sim-127-31-0-5.fleet.test");
    assert_eq!(fifth["fingerprint"].as_str().unwrap().len(), 64);

    // Adoption: the unknown agent becomes a host again; the others are refused with reasons.
    let (status, adopted) = api(
        &c,
        "POST",
        &format!("{run_url}/adopt"),
        Some(&admin),
        Some(
            json!({ "addresses": ["127.31.0.5", "127.31.0.1", "127.31.0.200"],
                     "group_id": group["id"] }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["adopted"].as_array().unwrap().len(), 1, "{adopted}");
    let refused: Vec<&str> = adopted["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["127.31.0.1", "127.31.0.200"], "{adopted}");
    let new_host = adopted["adopted"][0].as_i64().unwrap();
    server.state.fleet.supervisor.do_send(RefreshHost(new_host));
    hub_state(&mut hub, new_host, HostStatus::Healthy).await;
    let (status, detail) = api(
        &c,
        "GET",
        &format!("{base}/api/v1/hosts/{new_host}"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, 200, "adopted into the Operator's group: {detail}");
    // Adopting the same agent again is refused: it is managed now.
    let (_, again) = api(
        &c,
        "POST",
        &format!("{run_url}/adopt"),
        Some(&admin),
        Some(json!({ "addresses": ["127.31.0.5"] })),
    )
    .await;
    assert_eq!(again["adopted"], json!([]), "{again}");

    // Cancelling: both probe slots are held by listeners that never answer, so the run cannot
    // end before the cancel; it stops without probing the rest of the range.
    silent_listener((Ipv4Addr::new(127, 31, 16, 1), port).into());
    silent_listener((Ipv4Addr::new(127, 31, 16, 2), port).into());
    let (status, run) = api(
        &c,
        "POST",
        &discovery,
        Some(&admin),
        Some(json!({ "cidr": "127.31.16.0/22", "port": port })),
    )
    .await;
    assert_eq!(status, 202, "{run}");
    let run_url = format!("{discovery}/{}", run["id"]);
    let (status, _) = api(&c, "POST", &format!("{run_url}/cancel"), Some(&admin), None).await;
    assert_eq!(status, 200);
    let run = finished(&c, &run_url, &admin).await;
    assert_eq!(run["state"], "cancelled", "{run}");
    assert!(run["probed"].as_u64().unwrap() < 1022, "{run}");
    let (_, runs) = api(&c, "GET", &discovery, Some(&admin), None).await;
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert_eq!(runs[0]["state"], "cancelled", "newest first");

    drop(fleet);
    server.stop().await;
}
