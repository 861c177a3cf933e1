//! The host actor's timing and states with a paused clock and a scripted agent: the first poll
//! at the host's point of the interval, failures confirmed then backed off, unreachable and back,
//! intervals changed live, an on-demand refresh, a restart under its supervisor with its timers
//! re-armed, and retirement; a patch job's retries after 1, 5 and 30 minutes, each attempt with
//! its own idempotency key, and an attempt taken up after a restart with its key unchanged;
//! window-bound work that starts only inside a maintenance window, with one retry there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use patch_manager::agent_client::HEALTH_TIMEOUT;
use patch_manager::fleet::actor::{self, first_delay, Intervals, TargetReport, Update};
use patch_manager::fleet::connector::{Connector, Inventory, Target};
use patch_manager::fleet::supervisor::{self, FleetSupervisor};
use patch_manager::fleet::work::{DispatchError, Follow, Order, OrderKind, Progress};
use shared::agent::{
    AgentHealth, ApplyRequest, Job, JobEvent, JobKind, JobStatus, PackageList, PatchList,
    PatchSelection, SystemInfo,
};
use shared::jobs::TargetState;
use shared::vocab::HostStatus;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Default)]
struct Scripted {
    down: AtomicBool,
    /// Health polls hang until the client's limit and fail (a host gone from the network).
    hang: AtomicBool,
    health_calls: AtomicU64,
    inventory_calls: AtomicU64,
    /// How each agent job ends, in order of dispatch.
    outcomes: Mutex<VecDeque<JobStatus>>,
    /// The idempotency keys received, in order.
    keys: Mutex<Vec<String>>,
}

/// An agent job id (a ULID's shape) for the n-th dispatch.
fn agent_job(n: usize) -> String {
    format!("01JOB{n:021}")
}

fn agent_job_of(id: &str, status: JobStatus) -> Job {
    Job {
        id: id.to_owned(),
        kind: JobKind::ApplyPatches,
        request: serde_json::json!({}),
        status,
        progress: 100,
        results: Vec::new(),
        log_tail: vec!["done".into()],
        error: (status != JobStatus::Succeeded).then(|| "dpkg failed".to_owned()),
        noop: false,
        rollback_of: None,
        request_key: None,
        created_at: String::new(),
        started_at: None,
        finished_at: None,
    }
}

fn report() -> AgentHealth {
    AgentHealth {
        status: "ok".into(),
        version: "test".into(),
        backend: "apt".into(),
        jobs_running: 0,
        jobs_queued: 0,
        exclusive_mode: false,
        cert_not_after: "2027-01-01T00:00:00Z".into(),
        interrupted_jobs: Vec::new(),
        package_db_interrupted: false,
        job_file_problem: None,
    }
}

impl Connector for Scripted {
    fn health(&self, _: &Target) -> LocalBoxFuture<'static, Result<AgentHealth, String>> {
        self.health_calls.fetch_add(1, Ordering::SeqCst);
        let down = self.down.load(Ordering::SeqCst);
        let hang = self.hang.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                tokio::time::sleep(HEALTH_TIMEOUT).await;
                Err("no answer within 5 s".to_owned())
            } else if down {
                Err("connection refused".to_owned())
            } else {
                Ok(report())
            }
        })
    }

    fn dispatch(
        &self,
        _: &Target,
        order: &Order,
    ) -> LocalBoxFuture<'static, Result<String, DispatchError>> {
        let mut keys = self.keys.lock().unwrap();
        // The same key names the same agent job, as the agent answers it.
        let n = keys
            .iter()
            .position(|k| *k == order.key)
            .unwrap_or_else(|| {
                keys.push(order.key.clone());
                keys.len() - 1
            });
        Box::pin(async move { Ok(agent_job(n)) })
    }

    fn follow(&self, _: &Target, agent_job_id: &str) -> LocalBoxStream<'static, Follow> {
        let status = self
            .outcomes
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(JobStatus::Succeeded);
        let id = agent_job_id.to_owned();
        Box::pin(futures_util::stream::iter(vec![
            Follow::Event(JobEvent::Started { job_id: id.clone() }),
            Follow::Event(JobEvent::Output {
                job_id: id.clone(),
                line: "Setting up".into(),
            }),
            Follow::Done(Box::new(agent_job_of(&id, status))),
        ]))
    }

    fn inventory(&self, _: &Target) -> LocalBoxFuture<'static, Result<Inventory, String>> {
        self.inventory_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Inventory {
                info: SystemInfo {
                    hostname: "h".into(),
                    os_id: "debian".into(),
                    os_version: "12".into(),
                    os_pretty_name: "Debian 12".into(),
                    kernel: "6.1".into(),
                    arch: "x86_64".into(),
                    uptime_seconds: 1,
                    package_manager: "apt".into(),
                    last_update: None,
                    reboot_required: false,
                    agent_version: "test".into(),
                },
                packages: PackageList {
                    total: 0,
                    packages: Vec::new(),
                },
                patches: PatchList {
                    total: 0,
                    security: 0,
                    patches: Vec::new(),
                },
            })
        })
    }
}

const HOST: i64 = 7;

/// Equal up to tokio's timer resolution (deadlines are rounded up to the next millisecond).
#[track_caller]
fn same(a: Duration, b: Duration) {
    assert!(a.abs_diff(b) <= Duration::from_millis(1), "{a:?} != {b:?}");
}

fn target() -> Target {
    Target {
        host_id: HOST,
        addr: "127.0.0.1:12443".parse().unwrap(),
        pin: None,
    }
}

fn intervals(health: u64) -> Intervals {
    Intervals {
        health: Duration::from_secs(health),
        inventory: Duration::from_secs(600),
    }
}

/// The next health update and when it came (inventory updates are counted apart).
async fn next_health(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Update>,
    inventories: &mut u32,
) -> (Instant, HostStatus, bool, Duration) {
    loop {
        match rx.recv().await.expect("the actor stopped reporting") {
            Update::Health {
                status,
                changed,
                next_poll_in,
                ..
            } => return (Instant::now(), status, changed, next_poll_in),
            Update::Inventory { outcome, .. } => {
                assert!(outcome.is_ok());
                *inventories += 1;
            }
            Update::Target(r) => panic!("no job was assigned: {r:?}"),
        }
    }
}

/// The next change of a job's row on this host, and when it came (polls are skipped).
async fn next_row(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Update>,
) -> (Instant, TargetReport) {
    loop {
        if let Update::Target(r) = rx.recv().await.expect("the actor stopped reporting") {
            if r.changed {
                return (Instant::now(), *r);
            }
        }
    }
}

fn apply_all() -> OrderKind {
    OrderKind::Apply(ApplyRequest {
        selection: PatchSelection::All,
        packages: Vec::new(),
    })
}

async fn supervised(
    agent: Arc<Scripted>,
) -> (
    Addr<FleetSupervisor>,
    tokio::sync::mpsc::UnboundedReceiver<Update>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = FleetSupervisor::new(agent, tx, intervals(300)).start();
    supervisor
        .send(supervisor::Supervise {
            target: target(),
            status: HostStatus::Healthy,
        })
        .await
        .unwrap();
    (supervisor, rx)
}

#[actix_rt::test]
async fn a_failed_host_retries_after_one_five_and_thirty_minutes() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    agent.outcomes.lock().unwrap().extend([
        JobStatus::Failed,
        JobStatus::Partial,
        JobStatus::Failed,
        JobStatus::Succeeded,
    ]);
    let (supervisor, mut rx) = supervised(agent.clone()).await;
    supervisor
        .send(supervisor::Assign {
            host_id: HOST,
            job_id: 3,
            kind: apply_all(),
            progress: Progress::waiting(),
            in_window: false,
        })
        .await
        .unwrap();
    let mut failed_at = Vec::new();
    let mut started_at = Vec::new();
    let end = loop {
        let (at, r) = next_row(&mut rx).await;
        let p = r.progress;
        match p.state {
            TargetState::Dispatching => started_at.push((at, p.attempt)),
            TargetState::RetryWait => {
                assert!(p
                    .error
                    .as_deref()
                    .unwrap()
                    .contains(&format!("Attempt {} failed", p.attempt)));
                assert!(p.next_retry_at.is_some());
                failed_at.push(at);
            }
            TargetState::Queued | TargetState::Running => {
                assert_eq!(
                    p.agent_job_id,
                    Some(agent_job(usize::try_from(p.attempt).unwrap() - 1))
                );
            }
            s if s.is_final() => break p,
            s => panic!("unexpected {s:?}"),
        }
    };
    assert_eq!(end.state, TargetState::Succeeded, "{end:?}");
    assert_eq!(end.attempt, 4);
    assert_eq!(
        started_at.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // Each retry starts its backoff after the failure: 1, 5 and 30 minutes.
    let waits: Vec<Duration> = failed_at
        .iter()
        .zip(started_at.iter().skip(1))
        .map(|(f, (s, _))| *s - *f)
        .collect();
    assert_eq!(waits.len(), 3);
    for (w, expected) in waits.iter().zip([60, 300, 1800]) {
        same(*w, Duration::from_secs(expected));
    }
    // One key per attempt, so no attempt ran twice and none was mistaken for another.
    assert_eq!(
        *agent.keys.lock().unwrap(),
        [
            "lpm-j3-h7-a1",
            "lpm-j3-h7-a2",
            "lpm-j3-h7-a3",
            "lpm-j3-h7-a4"
        ]
    );
}

#[actix_rt::test]
async fn after_three_retries_the_host_fails_and_the_next_task_runs() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    agent.outcomes.lock().unwrap().extend(
        [JobStatus::Failed; 4]
            .into_iter()
            .chain([JobStatus::Succeeded]),
    );
    let (supervisor, mut rx) = supervised(agent.clone()).await;
    for job_id in [1, 2] {
        supervisor
            .send(supervisor::Assign {
                host_id: HOST,
                job_id,
                kind: apply_all(),
                progress: Progress::waiting(),
                in_window: false,
            })
            .await
            .unwrap();
    }
    let mut ends = Vec::new();
    while ends.len() < 2 {
        let (_, r) = next_row(&mut rx).await;
        if r.progress.state.is_final() {
            ends.push((r.job_id, r.progress.state, r.progress.attempt));
        }
    }
    assert_eq!(
        ends,
        [(1, TargetState::Failed, 4), (2, TargetState::Succeeded, 1)],
        "job 2 waited for job 1 on this host, then ran"
    );
}

#[actix_rt::test]
async fn an_attempt_taken_up_after_a_restart_keeps_its_key() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    let (supervisor, mut rx) = supervised(agent.clone()).await;
    // The row as a stopped manager left it: attempt 2 was being handed to the agent.
    let mut progress = Progress::waiting();
    progress.state = TargetState::Dispatching;
    progress.attempt = 2;
    supervisor
        .send(supervisor::Assign {
            host_id: HOST,
            job_id: 9,
            kind: apply_all(),
            progress: progress.clone(),
            in_window: false,
        })
        .await
        .unwrap();
    // The same task assigned again (a second start) is not taken twice.
    supervisor
        .send(supervisor::Assign {
            host_id: HOST,
            job_id: 9,
            kind: apply_all(),
            progress,
            in_window: false,
        })
        .await
        .unwrap();
    loop {
        let (_, r) = next_row(&mut rx).await;
        if r.progress.state.is_final() {
            assert_eq!(r.progress.state, TargetState::Succeeded);
            assert_eq!(r.progress.attempt, 2);
            break;
        }
    }
    assert_eq!(*agent.keys.lock().unwrap(), ["lpm-j9-h7-a2"]);
}

#[actix_rt::test]
async fn polls_back_off_while_unreachable_and_recover() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = FleetSupervisor::new(agent.clone(), tx, intervals(60)).start();
    let start = Instant::now();
    supervisor
        .send(supervisor::Supervise {
            target: target(),
            status: HostStatus::Unknown,
        })
        .await
        .unwrap();
    let mut inventories = 0;

    // The first poll falls at this host's point of the interval, and the host is healthy.
    let (at, status, changed, next) = next_health(&mut rx, &mut inventories).await;
    same(at - start, first_delay(Duration::from_secs(60), HOST));
    assert_eq!((status, changed), (HostStatus::Healthy, true));
    assert!(
        next >= Duration::from_secs(54) && next <= Duration::from_secs(60),
        "{next:?}"
    );

    // Steady state: one poll per interval (within the jitter), no change.
    let (later, status, changed, _) = next_health(&mut rx, &mut inventories).await;
    same(later - at, next);
    assert_eq!((status, changed), (HostStatus::Healthy, false));
    assert_eq!(
        inventories, 1,
        "one inventory after the first successful poll"
    );

    // The agent dies: the first failure is confirmed 5 s later, then the host is unreachable and
    // polls back off 15 s, 30 s, 60 s (the interval caps it).
    agent.down.store(true, Ordering::SeqCst);
    let (t1, status, changed, next) = next_health(&mut rx, &mut inventories).await;
    assert_eq!(
        (status, changed, next),
        (HostStatus::Healthy, false, Duration::from_secs(5))
    );
    let (t2, status, changed, next) = next_health(&mut rx, &mut inventories).await;
    same(t2 - t1, Duration::from_secs(5));
    assert_eq!(
        (status, changed, next),
        (HostStatus::Unreachable, true, Duration::from_secs(15))
    );
    let (t3, _, changed, next) = next_health(&mut rx, &mut inventories).await;
    same(t3 - t2, Duration::from_secs(15));
    assert_eq!((changed, next), (false, Duration::from_secs(30)));
    let (t4, _, _, next) = next_health(&mut rx, &mut inventories).await;
    same(t4 - t3, Duration::from_secs(30));
    assert_eq!(next, Duration::from_secs(60));

    // Back: healthy at the next poll.
    agent.down.store(false, Ordering::SeqCst);
    let (t5, status, changed, _) = next_health(&mut rx, &mut inventories).await;
    same(t5 - t4, Duration::from_secs(60));
    assert_eq!((status, changed), (HostStatus::Healthy, true));

    // An on-demand refresh polls at once, inventory included.
    let actor = supervisor
        .send(supervisor::ActorOf(HOST))
        .await
        .unwrap()
        .unwrap();
    let before = agent.inventory_calls.load(Ordering::SeqCst);
    let asked = Instant::now();
    actor.send(actor::Refresh).await.unwrap();
    let (t6, _, _, _) = next_health(&mut rx, &mut inventories).await;
    same(t6 - asked, Duration::ZERO);
    let (_, _, _, _) = next_health(&mut rx, &mut inventories).await;
    assert_eq!(agent.inventory_calls.load(Ordering::SeqCst), before + 1);

    // New intervals apply at once: the next poll comes within the new one.
    supervisor
        .send(supervisor::SetIntervals(intervals(20)))
        .await
        .unwrap();
    let changed_at = Instant::now();
    let (t7, _, _, next) = next_health(&mut rx, &mut inventories).await;
    assert!(
        t7 - changed_at <= Duration::from_secs(22),
        "{:?}",
        t7 - changed_at
    );
    assert!(next <= Duration::from_secs(22), "{next:?}");

    // A restart (as after a failure) re-arms the timers: polls go on, from the first-poll point.
    let restarted = Instant::now();
    actor.send(actor::Restart).await.unwrap();
    let (t8, status, _, _) = next_health(&mut rx, &mut inventories).await;
    assert_eq!(status, HostStatus::Healthy);
    assert!(
        t8 - restarted <= Duration::from_secs(20),
        "{:?}",
        t8 - restarted
    );
    let snapshot = actor.send(actor::Inspect).await.unwrap();
    assert_eq!(snapshot.failures, 0);

    // Retired: no more polls.
    assert!(supervisor.send(supervisor::Forget(HOST)).await.unwrap());
    let calls = agent.health_calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(agent.health_calls.load(Ordering::SeqCst), calls);
    assert_eq!(supervisor.send(supervisor::Count).await.unwrap(), 0);
}

/// From the last poll that found the host answering to the update that shows it unreachable.
/// The host is gone silently (`hang`) or its agent refuses connections.
async fn time_to_unreachable(hang: bool, host_id: i64) -> Duration {
    let agent = Arc::new(Scripted::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = FleetSupervisor::new(agent.clone(), tx, intervals(60)).start();
    supervisor
        .send(supervisor::Supervise {
            target: Target {
                host_id,
                ..target()
            },
            status: HostStatus::Unknown,
        })
        .await
        .unwrap();
    let mut inventories = 0;
    next_health(&mut rx, &mut inventories).await;
    // The host goes away right after a poll that found it answering: the worst moment.
    let (last_ok, status, _, _) = next_health(&mut rx, &mut inventories).await;
    assert_eq!(status, HostStatus::Healthy);
    let gone = if hang { &agent.hang } else { &agent.down };
    gone.store(true, Ordering::SeqCst);
    loop {
        let (at, status, _, _) = next_health(&mut rx, &mut inventories).await;
        if status == HostStatus::Unreachable {
            supervisor.send(supervisor::Forget(host_id)).await.unwrap();
            return at - last_ok;
        }
    }
}

#[actix_rt::test]
async fn a_host_that_stops_answering_is_shown_within_one_interval_and_ten_seconds() {
    tokio::time::pause();
    // Many hosts, so many jitter draws; each gone just after a good poll.
    for host_id in 1..=40 {
        let took = time_to_unreachable(false, host_id).await;
        assert!(took <= Duration::from_secs(65), "refused: {took:?}");
        assert!(took >= Duration::from_secs(54 + 5), "refused: {took:?}");
        let took = time_to_unreachable(true, host_id).await;
        assert!(took <= Duration::from_secs(70), "silent: {took:?}");
    }
}

#[actix_rt::test]
async fn ten_thousand_hosts_never_poll_in_one_burst() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = FleetSupervisor::new(agent.clone(), tx, intervals(60)).start();
    let start = Instant::now();
    for host_id in 1..=10_000 {
        supervisor.do_send(supervisor::Supervise {
            target: Target {
                host_id,
                ..target()
            },
            status: HostStatus::Unknown,
        });
    }
    // Count the first health polls per second of the first minute.
    let mut per_second = vec![0u32; 60];
    let mut seen = 0;
    while seen < 10_000 {
        if let Update::Health { .. } = rx.recv().await.unwrap() {
            let s = usize::try_from((Instant::now() - start).as_secs()).unwrap();
            per_second[s] += 1;
            seen += 1;
        }
    }
    // 167 a second if perfectly even; never more than twice that.
    let busiest = per_second.iter().max().unwrap();
    assert!(*busiest < 334, "{per_second:?}");
    assert_eq!(supervisor.send(supervisor::Count).await.unwrap(), 10_000);
}

/// New intervals from Settings spread a fleet's next polls over the new interval, as at start:
/// re-arming every host one interval ahead would make the whole fleet poll within a tenth of it.
#[actix_rt::test]
async fn a_live_interval_change_keeps_the_fleet_spread() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // A day-long interval: nobody polls before the change.
    let supervisor = FleetSupervisor::new(agent.clone(), tx, intervals(86_400)).start();
    const HOSTS: i64 = 200;
    for host_id in 1..=HOSTS {
        supervisor
            .send(supervisor::Supervise {
                target: Target {
                    host_id,
                    addr: "127.0.0.1:12443".parse().unwrap(),
                    pin: None,
                },
                status: HostStatus::Healthy,
            })
            .await
            .unwrap();
    }
    supervisor
        .send(supervisor::SetIntervals(intervals(60)))
        .await
        .unwrap();
    let changed_at = Instant::now();
    // Each host's first poll under the new interval, in sixths of the interval.
    let mut seen = std::collections::BTreeSet::new();
    let mut buckets = [0u32; 6];
    while seen.len() < usize::try_from(HOSTS).unwrap() {
        match rx.recv().await.unwrap() {
            Update::Health { host_id, .. } => {
                if seen.insert(host_id) {
                    let at = Instant::now() - changed_at;
                    assert!(at < Duration::from_secs(60), "{at:?}");
                    buckets[usize::try_from(at.as_secs() / 10).unwrap()] += 1;
                }
            }
            Update::Inventory { .. } | Update::Target(_) => {}
        }
    }
    // About 33 per sixth if even; every sixth has its share.
    assert!(
        buckets.iter().all(|&n| (15..=55).contains(&n)),
        "{buckets:?}"
    );
}

#[actix_rt::test]
async fn the_fleet_fetches_at_most_its_slots_of_inventories_until_they_are_written() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = FleetSupervisor::new(agent.clone(), tx, intervals(60)).start();
    let hosts = 3 * actor::INVENTORY_SLOTS;
    for host_id in 1..=i64::try_from(hosts).unwrap() {
        supervisor.do_send(supervisor::Supervise {
            target: Target {
                host_id,
                ..target()
            },
            status: HostStatus::Unknown,
        });
    }
    // Inventories are kept here, not written (not dropped): the slots stay taken.
    let mut unwritten = Vec::new();
    let mut polled = std::collections::BTreeSet::new();
    while polled.len() < hosts {
        match rx.recv().await.unwrap() {
            Update::Health { host_id, .. } => {
                polled.insert(host_id);
            }
            inventory @ Update::Inventory { .. } => unwritten.push(inventory),
            Update::Target(_) => {}
        }
    }
    // Every host answered a health poll and wants its inventory; only the slots' worth were
    // fetched, however long it waits.
    tokio::time::sleep(Duration::from_secs(300)).await;
    while let Ok(update) = rx.try_recv() {
        if let inventory @ Update::Inventory { .. } = update {
            unwritten.push(inventory);
        }
    }
    assert_eq!(unwritten.len(), actor::INVENTORY_SLOTS);
    assert_eq!(
        agent.inventory_calls.load(Ordering::SeqCst),
        u64::try_from(actor::INVENTORY_SLOTS).unwrap()
    );
    // Written (dropped): the next ones come, until every host has its inventory.
    unwritten.clear();
    let mut inventoried = 0;
    while inventoried < hosts - actor::INVENTORY_SLOTS {
        if let Update::Inventory { .. } = rx.recv().await.unwrap() {
            inventoried += 1;
        }
    }
    assert_eq!(
        agent.inventory_calls.load(Ordering::SeqCst),
        u64::try_from(hosts).unwrap()
    );
}

#[actix_rt::test]
async fn window_bound_work_starts_only_inside_a_window_and_retries_once_there() {
    tokio::time::pause();
    let agent = Arc::new(Scripted::default());
    agent
        .outcomes
        .lock()
        .unwrap()
        .extend([JobStatus::Failed, JobStatus::Failed]);
    let (supervisor, mut rx) = supervised(agent.clone()).await;
    let mut scheduled = Progress::waiting();
    scheduled.state = TargetState::Scheduled;
    supervisor
        .send(supervisor::Assign {
            host_id: HOST,
            job_id: 5,
            kind: apply_all(),
            progress: scheduled.clone(),
            in_window: true,
        })
        .await
        .unwrap();
    // No window: nothing is sent however long it waits.
    tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    assert!(agent.keys.lock().unwrap().is_empty());
    // A window opens for 30 minutes: the job starts at once.
    let opened = Instant::now();
    supervisor
        .send(supervisor::WindowOpened {
            window_id: 1,
            hosts: vec![HOST],
            closes_in: Duration::from_secs(1800),
        })
        .await
        .unwrap();
    let (at, first) = next_row(&mut rx).await;
    assert_eq!(first.progress.state, TargetState::Dispatching);
    same(at - opened, Duration::ZERO);
    // It fails; inside the window it is retried once (after 1 minute), fails again and ends.
    let end = loop {
        let (_, r) = next_row(&mut rx).await;
        if r.progress.state.is_final() {
            break r.progress;
        }
    };
    assert_eq!((end.state, end.attempt), (TargetState::Failed, 2));
    assert_eq!(agent.keys.lock().unwrap().len(), 2);

    // Another job after the window closed waits for the next one.
    supervisor
        .send(supervisor::WindowClosed {
            window_id: 1,
            hosts: vec![HOST],
        })
        .await
        .unwrap();
    supervisor
        .send(supervisor::Assign {
            host_id: HOST,
            job_id: 6,
            kind: apply_all(),
            progress: scheduled,
            in_window: true,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(
        agent.keys.lock().unwrap().len(),
        2,
        "nothing started after the close"
    );
    // The next window opens: the waiting job starts and succeeds.
    supervisor
        .send(supervisor::WindowOpened {
            window_id: 2,
            hosts: vec![HOST],
            closes_in: Duration::from_secs(600),
        })
        .await
        .unwrap();
    let end = loop {
        let (_, r) = next_row(&mut rx).await;
        if r.progress.state.is_final() {
            break r;
        }
    };
    assert_eq!(
        (end.job_id, end.progress.state),
        (6, TargetState::Succeeded)
    );
}
