//! `/jobs` (Operators and Admins, within their groups): patch deployment — pick hosts or groups,
//! review their pending patches, apply now in waves; the list of jobs; and `/jobs/:id`, one job
//! followed live host by host (state, output, per-package results), cancelled or rolled back.

use crate::api;
use crate::ui::{
    data_if, data_with_query, load_on_mount, maybe_time, short_time, Empty, ErrorLine, Submit,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::agent::{PackageOutcome, PatchSelection};
use shared::api::{self as ep, NoBody};
use shared::fleet::{HostPatch, HostQuery, LiveEvent};
use shared::ids::{GroupId, HostId, JobId};
use shared::jobs::{JobMode, JobRollback, JobState, NewJob, TargetState, WavePlan};

/// A CSS class for a job's state.
fn job_class(s: JobState) -> &'static str {
    match s {
        JobState::Succeeded => "ok",
        JobState::Partial | JobState::Halted | JobState::Failed => "bad",
        _ => "muted",
    }
}

/// A CSS class for a host's state in a job.
fn target_class(s: TargetState) -> &'static str {
    match s {
        TargetState::Succeeded | TargetState::RolledBack => "ok",
        TargetState::Partial
        | TargetState::Failed
        | TargetState::RollbackFailed
        | TargetState::RetryWait => "bad",
        _ => "muted",
    }
}

/// A human name of a host's state in a job.
fn target_label(s: TargetState) -> &'static str {
    match s {
        TargetState::Waiting => "waiting for its wave",
        TargetState::Scheduled => "waiting for its window",
        TargetState::Dispatching => "starting",
        TargetState::Queued => "queued on the agent",
        TargetState::Running => "patching",
        TargetState::RetryWait => "failed, will retry",
        TargetState::Succeeded => "succeeded",
        TargetState::Partial => "partly failed",
        TargetState::Failed => "failed",
        TargetState::Cancelled => "not started",
        TargetState::RollingBack => "rolling back",
        TargetState::RolledBack => "rolled back",
        TargetState::RollbackFailed => "rollback failed",
    }
}

/// Adds `x` to `v`, or takes it out if it is there.
fn toggle<T: PartialEq>(v: &mut Vec<T>, x: T) {
    match v.iter().position(|y| *y == x) {
        Some(i) => {
            v.remove(i);
        }
        None => v.push(x),
    }
}

/// Parses "5, 30, 100" into wave shares.
fn parse_percents(text: &str) -> Result<Vec<u8>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('%')
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("{p} is not a share from 1 to 100."))
        })
        .collect()
}

/// `/jobs`: a new job, and the jobs so far.
#[component]
pub fn JobsPage() -> impl IntoView {
    let jobs = load_on_mount::<ep::ListJobs>();
    let reload = move || jobs.refetch();
    crate::live::subscribe(move |event| match event {
        LiveEvent::JobState(_) | LiveEvent::Resync => reload(),
        _ => {}
    });
    view! {
        <section class="page">
            <h1>"Patch deployment"</h1>
            <NewJobForm/>
            <h2>"Jobs"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match jobs.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <div id="no-jobs">
                        <Empty text="No jobs yet. A job installs updates on hosts or groups, in waves that stop when too many hosts fail, and can be rolled back; the form above starts one."/>
                    </div>
                }.into_any(),
                Some(Ok(list)) => view! {
                    <table class="table" id="jobs">
                        <thead><tr>
                            <th>"Job"</th><th>"State"</th><th>"Hosts"</th><th>"Created"</th><th>"Ended"</th>
                        </tr></thead>
                        <tbody>
                        {list.into_iter().map(|j| view! {
                            <tr data-job=j.id.to_string() data-state=j.state.as_str()>
                                <td><a href=format!("/jobs/{}", j.id)>{j.name}</a><br/>
                                    <span class="muted">{j.created_by.unwrap_or_default()}</span></td>
                                <td class=job_class(j.state)>{j.state.as_str()}
                                    {j.halt_reason.map(|r| view! { <br/><span class="muted">{r}</span> })}</td>
                                <td>{format!("{} of {} succeeded", j.counts.succeeded, j.counts.total)}
                                    {(j.counts.failed > 0).then(|| view! { <span class="bad">{format!(" · {} failed", j.counts.failed)}</span> })}</td>
                                <td>{short_time(&j.created_at)}</td>
                                <td>{maybe_time(j.finished_at.as_deref())}</td>
                            </tr>
                        }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            </Transition>
        </section>
    }
    .into_any()
}

/// The new-job form: hosts or groups, which patches, waves; a review of the chosen hosts'
/// pending patches; then apply now.
#[component]
fn NewJobForm() -> impl IntoView {
    let navigate = use_navigate();
    let groups = load_on_mount::<ep::ListGroups>();
    let hosts = data_with_query::<ep::ListHosts>(
        || (),
        || {
            HostQuery {
                per_page: Some(200),
                ..HostQuery::default()
            }
            .to_query_string()
        },
    );
    let chosen_hosts = RwSignal::new(Vec::<HostId>::new());
    let chosen_groups = RwSignal::new(Vec::<GroupId>::new());
    let selection = RwSignal::new(String::from("security"));
    let packages = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let waves = RwSignal::new(String::from("100"));
    let concurrency = RwSignal::new(String::from("0"));
    let threshold = RwSignal::new(String::from("20"));
    let rollback_on_halt = RwSignal::new(false);
    let mode = RwSignal::new(String::from("now"));
    let by_group = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // The review: the pending patches of the first 20 hosts the job would cover.
    let review = RwSignal::new(Vec::<(String, Result<Vec<HostPatch>, String>)>::new());
    let build = move || -> Result<NewJob, String> {
        let selection = match selection.get_untracked().as_str() {
            "all" => PatchSelection::All,
            "list" => PatchSelection::List,
            _ => PatchSelection::Security,
        };
        let packages: Vec<String> = if selection == PatchSelection::List {
            packages
                .get_untracked()
                .split([',', ' ', '\n'])
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        let percents = parse_percents(&waves.get_untracked())?;
        let max_concurrency = concurrency
            .get_untracked()
            .trim()
            .parse::<u32>()
            .map_err(|_| "Hosts at once is a whole number (0: no limit).".to_owned())?;
        let failure_threshold_pct = threshold
            .get_untracked()
            .trim()
            .trim_end_matches('%')
            .parse::<u8>()
            .map_err(|_| "The failure threshold is a share from 0 to 100.".to_owned())?;
        let in_windows = mode.get_untracked() == "next_window";
        Ok(NewJob {
            name: name.get_untracked(),
            hosts: chosen_hosts.get_untracked(),
            groups: chosen_groups.get_untracked(),
            selection,
            packages,
            mode: if in_windows {
                JobMode::NextWindow
            } else {
                JobMode::Now
            },
            // Waves apply to jobs run now only.
            waves: (!in_windows).then_some(WavePlan {
                percents,
                max_concurrency,
                failure_threshold_pct,
                rollback_on_halt: rollback_on_halt.get_untracked(),
                by_group: by_group.get_untracked(),
            }),
        })
    };
    // The chosen hosts and the (listed) members of the chosen groups, each once, with names.
    let review_targets = move || -> Vec<(HostId, String)> {
        let picked = chosen_hosts.get_untracked();
        let group_names: Vec<String> = groups.with_untracked(|g| match g {
            Some(Ok(list)) => chosen_groups.with_untracked(|chosen| {
                list.iter()
                    .filter(|g| chosen.contains(&g.id))
                    .map(|g| g.name.clone())
                    .collect()
            }),
            _ => Vec::new(),
        });
        hosts.with_untracked(|h| match h {
            Some(Ok(page)) => page
                .hosts
                .iter()
                .filter(|h| {
                    picked.contains(&h.id) || h.groups.iter().any(|g| group_names.contains(g))
                })
                .map(|h| (h.id, h.display_name.clone()))
                .collect(),
            _ => picked.iter().map(|id| (*id, id.to_string())).collect(),
        })
    };
    let show_review = move |_| {
        let targets: Vec<(HostId, String)> = review_targets().into_iter().take(20).collect();
        spawn_local(async move {
            let mut out = Vec::new();
            for (id, label) in targets {
                let r = api::call::<ep::HostPatches>(id, &NoBody)
                    .await
                    .map_err(|e| e.message);
                out.push((label, r));
            }
            review.set(out);
        });
    };
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        let body = match build() {
            Ok(b) => b,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            let r = api::call::<ep::CreateJob>((), &body).await;
            busy.set(false);
            match r {
                Ok(job) => navigate(&format!("/jobs/{}", job.job.id), Default::default()),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let toggle_host = move |id: HostId| chosen_hosts.update(|v| toggle(v, id));
    let toggle_group = move |id: GroupId| chosen_groups.update(|v| toggle(v, id));
    view! {
        <form class="card form" id="new-job" on:submit=submit>
            <h2>"New job"</h2>
            <fieldset>
                <legend>"Groups"</legend>
                <Transition fallback=|| ()>
                {move || match groups.get() {
                    Some(Ok(list)) if !list.is_empty() => list.into_iter().map(|g| {
                        let id = g.id;
                        view! {
                            <label class="check">
                                <input type="checkbox" data-group=id.to_string()
                                    prop:checked=move || chosen_groups.with(|v| v.contains(&id))
                                    on:change=move |_| toggle_group(id)/>
                                {format!("{} ({} hosts)", g.name, g.hosts)}
                            </label>
                        }
                    }).collect_view().into_any(),
                    Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                    _ => view! { <p class="muted">"No groups."</p> }.into_any(),
                }}
                </Transition>
            </fieldset>
            <fieldset>
                <legend>"Hosts"</legend>
                <Transition fallback=|| ()>
                {move || match hosts.get() {
                    Some(Ok(page)) if !page.hosts.is_empty() => page.hosts.into_iter().map(|h| {
                        let id = h.id;
                        view! {
                            <label class="check">
                                <input type="checkbox" data-host=id.to_string()
                                    prop:checked=move || chosen_hosts.with(|v| v.contains(&id))
                                    on:change=move |_| toggle_host(id)/>
                                {format!("{} — {} update(s), {} security", h.display_name, h.pending_patches, h.pending_security_patches)}
                            </label>
                        }
                    }).collect_view().into_any(),
                    Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                    Some(Ok(_)) => view! { <p class="muted">"No hosts."</p> }.into_any(),
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                }}
                </Transition>
            </fieldset>
            <label for="job-selection">"Patches"</label>
            <select id="job-selection" on:change=move |ev| selection.set(event_target_value(&ev))>
                <option value="security" selected=true>"Security updates only"</option>
                <option value="all">"All updates"</option>
                <option value="list">"These packages…"</option>
            </select>
            <Show when=move || selection.get() == "list">
                <label for="job-packages">"Packages (separated by spaces or commas)"</label>
                <input id="job-packages" prop:value=move || packages.get()
                    on:input=move |ev| packages.set(event_target_value(&ev))/>
            </Show>
            <label for="job-mode">"When"</label>
            <select id="job-mode" on:change=move |ev| mode.set(event_target_value(&ev))>
                <option value="now" selected=true>"Now, in waves"</option>
                <option value="next_window">"In each host's next maintenance window"</option>
            </select>
            <label for="job-name">"Name (optional)"</label>
            <input id="job-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
            <Show when=move || mode.get() == "now">
            <label for="job-waves">"Waves: share of hosts done by the end of each wave (%)"</label>
            <input id="job-waves" prop:value=move || waves.get() on:input=move |ev| waves.set(event_target_value(&ev))
                placeholder="5, 30, 100"/>
            <label class="check">
                <input type="checkbox" id="job-by-group" prop:checked=move || by_group.get()
                    on:change=move |_| by_group.update(|v| *v = !*v)/>
                "Instead, one wave per group, in the order the groups were ticked"
            </label>
            <label for="job-concurrency">"Hosts at once (0: no limit)"</label>
            <input id="job-concurrency" inputmode="numeric" prop:value=move || concurrency.get()
                on:input=move |ev| concurrency.set(event_target_value(&ev))/>
            <label for="job-threshold">"Halt when a wave's failed hosts exceed (%)"</label>
            <input id="job-threshold" inputmode="numeric" prop:value=move || threshold.get()
                on:input=move |ev| threshold.set(event_target_value(&ev))/>
            <label class="check">
                <input type="checkbox" id="job-rollback-on-halt" prop:checked=move || rollback_on_halt.get()
                    on:change=move |_| rollback_on_halt.update(|v| *v = !*v)/>
                "Roll back the wave that halts the job"
            </label>
            </Show>
            <p class="row">
                <button type="button" id="job-review" on:click=show_review>"Review the chosen hosts' patches"</button>
            </p>
            <div id="job-review-list">
                {move || review.get().into_iter().map(|(host, r)| view! {
                    <h3>{host}</h3>
                    {match r {
                        Err(e) => view! { <p class="error">{e}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="muted">"Nothing pending."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul>{list.into_iter().map(|p| view! {
                                <li class=if p.security { "bad" } else { "" }>
                                    {format!("{} {} → {}{}", p.name, p.installed_version.unwrap_or_default(), p.candidate_version,
                                        if p.security { " (security)" } else { "" })}
                                </li>
                            }).collect_view()}</ul>
                        }.into_any(),
                    }}
                }).collect_view()}
            </div>
            <ErrorLine error/>
            <Submit id="job-apply" label="Create the job" busy=Signal::derive(move || busy.get())/>
        </form>
    }
    .into_any()
}

/// `/jobs/:id`: one job, followed live.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<JobId>().ok()));
    let job = data_if::<ep::GetJob>(id);
    let reload = move || job.refetch();
    // Live: a host's row changes in place (its output lines appended); the job's own state
    // brings a fresh read.
    crate::live::subscribe(move |event| {
        let Some(current) =
            params.with_untracked(|p| p.get("id").and_then(|v| v.parse::<JobId>().ok()))
        else {
            return;
        };
        match event {
            LiveEvent::JobTarget(e) if e.job_id == current => job.update(|j| {
                if let Some(Ok(j)) = j {
                    if let Some(t) = j.targets.iter_mut().find(|t| t.host_id == e.host_id) {
                        t.state = e.state;
                        if let Some(line) = e.line {
                            t.log_tail.push(line);
                            let excess = t.log_tail.len().saturating_sub(50);
                            t.log_tail.drain(..excess);
                        }
                        if let Some(p) = e.package {
                            t.results.push(p);
                        }
                        if e.error.is_some() {
                            t.error = e.error;
                        }
                    }
                }
            }),
            LiveEvent::JobState(e) if e.job_id == current => reload(),
            LiveEvent::Resync => reload(),
            _ => {}
        }
    });
    let error = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(None::<&'static str>);
    let act = move |what: &'static str| {
        let Some(id) = id() else { return };
        confirming.set(None);
        spawn_local(async move {
            let r = if what == "cancel" {
                api::call::<ep::CancelJob>(id, &NoBody).await
            } else {
                api::call::<ep::RollbackJob>(id, &JobRollback::default()).await
            };
            match r {
                Ok(j) => {
                    error.set(None);
                    job.set(Some(Ok(j)));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section class="page">
            <p><a href="/jobs">"← Jobs"</a></p>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match job.get() {
                _ if id().is_none() => view! {
                    <crate::pages::home::BadId what="job" given=params.with(|p| p.get("id").unwrap_or_default()) back=("/jobs", "Patch deployment")/>
                }.into_any(),
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(d)) => {
                    let j = d.job;
                    let running = !j.state.is_finished();
                    view! {
                        <h1>{j.name.clone()}</h1>
                        <p id="job-state" data-state=j.state.as_str() class=job_class(j.state)>
                            {j.state.as_str()}
                            {j.current_wave.map(|w| format!(" — wave {} of {}", w + 1, j.wave_count))}
                        </p>
                        {j.halt_reason.clone().map(|r| view! { <p class="bad" id="halt-reason">{r}</p> })}
                        <p class="muted">{format!(
                            "{} host(s): {} succeeded, {} failed, {} active, {} waiting, {} not started, {} rolled back. Created {}{}.",
                            j.counts.total, j.counts.succeeded, j.counts.failed, j.counts.active, j.counts.pending,
                            j.counts.cancelled, j.counts.rolled_back, short_time(&j.created_at),
                            j.created_by.map(|u| format!(" by {u}")).unwrap_or_default()
                        )}</p>
                        <p class="row">
                            {running.then(|| view! {
                                <button type="button" id="job-cancel" on:click=move |_| confirming.set(Some("cancel"))>"Cancel…"</button>
                            })}
                            {(!running).then(|| view! {
                                <button type="button" id="job-rollback" on:click=move |_| confirming.set(Some("rollback"))>"Roll back…"</button>
                            })}
                        </p>
                        <ErrorLine error/>
                        <table class="table" id="job-hosts">
                            <thead><tr><th>"Host"</th><th>"Wave"</th><th>"State"</th><th>"Attempt"</th><th>"Packages"</th><th>"Output"</th></tr></thead>
                            <tbody>
                            {d.targets.into_iter().map(|t| view! {
                                <tr data-host=t.host_id.to_string() data-state=t.state.as_str()>
                                    <td><a href=format!("/hosts/{}", t.host_id)>{t.hostname}</a></td>
                                    <td>{t.wave + 1}</td>
                                    <td class=target_class(t.state)>{target_label(t.state)}
                                        {t.error.map(|e| view! { <br/><span class="muted">{e}</span> })}
                                        {t.next_retry_at.map(|r| view! { <br/><span class="muted">{format!("next attempt {}", short_time(&r))}</span> })}</td>
                                    <td>{t.attempt}</td>
                                    <td><ul class="plain">{t.results.into_iter().map(|r| view! {
                                        <li class=if r.outcome == PackageOutcome::Failed { "bad" } else { "" }>
                                            {format!("{} {} → {}", r.name, r.from_version.unwrap_or_else(|| "—".into()), r.to_version.unwrap_or_else(|| "—".into()))}
                                        </li>
                                    }).collect_view()}</ul></td>
                                    <td><details><summary>{format!("{} line(s)", t.log_tail.len())}</summary>
                                        <pre class="log">{t.log_tail.join("\n")}</pre></details></td>
                                </tr>
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
            }}
            </Transition>
            {move || confirming.get().map(|what| view! {
                <div class="card" role="dialog" aria-labelledby="confirm-title" id="job-confirm">
                    <h2 id="confirm-title">{if what == "cancel" { "Cancel this job?" } else { "Roll this job back?" }}</h2>
                    <p>{if what == "cancel" {
                        "Hosts not yet started will not be patched. Hosts being patched now finish."
                    } else {
                        "Each host this job changed is returned to the package versions it had before, by its agent."
                    }}</p>
                    <p class="row">
                        <button type="button" id="job-confirm-yes" on:click=move |_| act(what)>
                            {if what == "cancel" { "Cancel the job" } else { "Roll back" }}</button>
                        <button type="button" id="job-confirm-no" on:click=move |_| confirming.set(None)>"Keep it"</button>
                    </p>
                </div>
            })}
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_shares_parse_with_or_without_percent_signs() {
        assert_eq!(parse_percents("5, 30%, 100"), Ok(vec![5, 30, 100]));
        assert!(parse_percents("5, x").is_err());
        assert_eq!(parse_percents("100"), Ok(vec![100]));
    }
}
