//! Maintenance windows through the API and the scheduler, with a real agent on the real apt
//! backend (an isolated apt root): bad windows refused field by field; a job queued for windows on
//! a host without one refused; a job whose host's window opens tomorrow waits (queued, its row
//! scheduled, nothing sent to the agent, both on the dashboard) and is cancelled; a job queued just before a window opens
//! starts when it opens — not before — and patches the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::https::{api, apt_fleet};
use serde_json::{json, Value};
use std::time::Duration;

fn window(name: &str, recurrence: &str, date: &str, time: &str, minutes: u32) -> Value {
    json!({ "name": name, "recurrence": recurrence, "time_zone": "UTC", "start_date": date,
            "start_time": time, "duration_minutes": minutes })
}

#[actix_rt::test]
async fn jobs_wait_for_their_window_and_start_when_it_opens() {
    let (apt, fleet, c, base, admin) = apt_fleet(&["lpm-test-secure=1.0-1"]).await;
    let host = fleet.host_id;
    let windows = format!("{base}/api/v1/windows");
    let jobs = format!("{base}/api/v1/jobs");
    let today = chrono::Utc::now().date_naive().to_string();

    // Bad windows, each refused naming its field; nothing stored.
    let mut weekly = window("w", "weekly", &today, "02:00", 60);
    weekly["weekday"] = json!(9);
    for (body, field) in [
        (
            json!({ "host_id": host, "window": { "name": "w", "recurrence": "daily",
            "time_zone": "Mars/Olympus", "start_date": today, "start_time": "02:00",
            "duration_minutes": 60 } }),
            "window.time_zone",
        ),
        (
            json!({ "host_id": host, "window": window("w", "daily", &today, "02:00", 0) }),
            "window.duration_minutes",
        ),
        (
            json!({ "host_id": host, "window": weekly }),
            "window.weekday",
        ),
        (
            json!({ "host_id": host, "window": window("w", "once", "2020-01-01", "02:00", 60) }),
            "window.start_date",
        ),
        (
            json!({ "host_id": host, "window": window("w", "daily", "2026-02-30", "02:00", 60) }),
            "window.start_date",
        ),
        (
            json!({ "window": window("w", "daily", &today, "02:00", 60) }),
            "host_id",
        ),
    ] {
        let (status, answer) = api(&c, "POST", &windows, Some(&admin), Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], field,
            "{body} → {answer}"
        );
    }
    let (status, _) = api(
        &c,
        "POST",
        &windows,
        Some(&admin),
        Some(json!({ "host_id": 987654, "window": window("w", "daily", &today, "02:00", 60) })),
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = api(&c, "GET", &windows, Some(&admin), None).await;
    assert_eq!(list, json!([]));

    // No window yet: a job queued for windows is refused, naming the host.
    let queued = json!({ "hosts": [host], "selection": "security", "mode": "next_window" });
    let (status, answer) = api(&c, "POST", &jobs, Some(&admin), Some(queued.clone())).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["details"]["field"], "mode");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("agent01.test"));
    // Waves are for jobs run now.
    let mut waved = queued.clone();
    waved["waves"] = json!({ "percents": [50, 100] });
    let (status, answer) = api(&c, "POST", &jobs, Some(&admin), Some(waved)).await;
    assert_eq!(
        (status, answer["error"]["details"]["field"].as_str()),
        (400, Some("waves"))
    );

    // A window twelve hours away: the job waits, nothing reaches the agent; cancelled.
    let later = chrono::Utc::now() + chrono::Duration::hours(12);
    let (status, w) = api(
        &c,
        "POST",
        &windows,
        Some(&admin),
        Some(
            json!({ "host_id": host, "window": window("nightly", "daily",
            &later.date_naive().to_string(), &later.format("%H:%M").to_string(), 60) }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    assert_eq!(w["open_now"], false);
    assert!(w["next_open"].is_string());
    let (status, created) = api(&c, "POST", &jobs, Some(&admin), Some(queued.clone())).await;
    assert_eq!(status, 201, "{created}");
    let waiting = created["job"]["id"].as_i64().unwrap();
    assert_eq!(created["job"]["state"], "queued");
    assert_eq!(created["job"]["mode"], "next_window");
    assert_eq!(created["targets"][0]["state"], "scheduled");
    // The dashboard shows the queued job and the window it waits for.
    let (_, overview) = api(
        &c,
        "GET",
        &format!("{base}/api/v1/overview"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(overview["active_jobs"], 1, "{overview}");
    assert_eq!(overview["upcoming_windows"][0]["window"]["name"], "nightly");
    assert_eq!(
        overview["upcoming_windows"][0]["applies_to"],
        "agent01.test"
    );
    let (status, detail) = api(
        &c,
        "POST",
        &format!("{jobs}/{waiting}/cancel"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let cancelled: Value = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, d) = api(&c, "GET", &format!("{jobs}/{waiting}"), Some(&admin), None).await;
            if d["targets"][0]["state"] == "cancelled" {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the scheduled host was not cancelled");
    assert_eq!(cancelled["job"]["state"], "cancelled");
    assert!(cancelled["targets"][0]["agent_job_id"].is_null());
    assert!(
        fleet.agent_jobs.list(None).is_empty(),
        "the agent was never asked"
    );

    // A one-time window opening in three seconds: the job queued now starts when it opens.
    let opens = chrono::Utc::now() + chrono::Duration::seconds(3);
    let (status, w) = api(
        &c,
        "POST",
        &windows,
        Some(&admin),
        Some(json!({ "host_id": host, "window": window("soon", "once",
            &opens.date_naive().to_string(), &opens.format("%H:%M:%S").to_string(), 5) })),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let (status, created) = api(&c, "POST", &jobs, Some(&admin), Some(queued)).await;
    assert_eq!(status, 201, "{created}");
    let job = created["job"]["id"].as_i64().unwrap();
    let done: Value = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (_, d) = api(&c, "GET", &format!("{jobs}/{job}"), Some(&admin), None).await;
            if d["job"]["state"] != "queued" && d["job"]["state"] != "running" {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the job did not run in its window");
    assert_eq!(done["job"]["state"], "succeeded", "{done}");
    let started: chrono::DateTime<chrono::Utc> = done["targets"][0]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Started no earlier than the window's opening (stored to the second).
    assert!(
        started >= chrono::Timelike::with_nanosecond(&opens, 0).unwrap(),
        "started {started}, the window opened {opens}"
    );
    assert_eq!(apt.version("lpm-test-secure").as_deref(), Some("1.0-2"));
    assert_eq!(fleet.agent_jobs.list(None).len(), 1);
}
