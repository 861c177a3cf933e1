//! `/hosts` (everyone, within their groups) and `/certificates` (Admins): the fleet, its
//! certificates with expiry, renewal, rotation and revocation, and enrollment tokens for new hosts.

use crate::api;
use crate::app::Session;
use crate::pages::signin::Field;
use crate::ui::{load, loaded, maybe_time, short_time, ErrorLine, Submit};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use shared::api::{self as ep, NoBody};
use shared::fleet::{
    AdoptRequest, CertificateInfo, CreatedEnrollmentToken, CrlStatus, DiscoveryRequest,
    DiscoveryRun, DiscoveryState, EnrollmentTokenInfo, GroupInfo, HostDetail, HostGroups,
    HostPackage, HostPage, HostPatch, HostQuery, HostSort, LiveEvent, NewEnrollmentToken,
    ProbeOutcome, RevokeRequest,
};
use shared::ids::{CertificateId, DiscoveryRunId, EnrollmentTokenId, GroupId, HostId};
use shared::vocab::{CertKind, CertState, HostStatus};

/// The hosts page.
#[component]
pub fn HostsPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let hosts = loaded::<HostPage>();
    let query = RwSignal::new(HostQuery::default());
    let text = RwSignal::new(String::new());
    let os_text = RwSignal::new(String::new());
    let groups = crate::ui::load_on_mount::<ep::ListGroups>();
    let reload = move || {
        let q = query.get_untracked().to_query_string();
        spawn_local(async move {
            let r = api::call_with_query::<ep::ListHosts>((), &q).await;
            let _ = hosts.try_set(Some(r));
        });
    };
    // The page is read again whenever a filter, the sort or the page changes.
    Effect::new(move |_| {
        query.track();
        reload();
    });
    // States change in place as the host actors see them; no reload needed.
    crate::live::subscribe(move |event| match event {
        LiveEvent::HostState(e) => hosts.update(|page| {
            if let Some(Ok(page)) = page {
                if let Some(row) = page.hosts.iter_mut().find(|h| h.id == e.host_id) {
                    row.status = e.status;
                }
            }
        }),
        LiveEvent::Resync => reload(),
        LiveEvent::JobTarget(_) | LiveEvent::JobState(_) => {}
    });
    let search = move |ev: SubmitEvent| {
        ev.prevent_default();
        let t = text.get_untracked();
        let os = os_text.get_untracked();
        query.update(|q| {
            q.q = (!t.trim().is_empty()).then(|| t.trim().to_owned());
            q.os = (!os.trim().is_empty()).then(|| os.trim().to_ascii_lowercase());
            q.page = None;
        });
    };
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let renew = move |id: HostId| renew_host(id, notice, error, || ());
    view! {
        <section class="page">
            <div class="row">
                <h1>"Hosts"</h1>
                <Show when=move || session.is_admin()>
                    <a href="/certificates#add-host" id="add-host-link">"Add a host"</a>
                </Show>
            </div>
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            <ErrorLine error/>
            <form class="form inline" id="host-filters" on:submit=search>
                <input id="host-search" type="search" placeholder="Name or address" aria-label="Search hosts"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))/>
                <select id="host-status" aria-label="State" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    query.update(|q| { q.status = v.parse().ok(); q.page = None; });
                }>
                    <option value="">"Any state"</option>
                    <option value="healthy">"Healthy"</option>
                    <option value="degraded">"Degraded"</option>
                    <option value="unreachable">"Unreachable"</option>
                    <option value="unknown">"Not polled yet"</option>
                </select>
                <select id="host-group" aria-label="Group" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    query.update(|q| { q.group = v.parse::<i64>().ok().map(GroupId); q.page = None; });
                }>
                    <option value="">"Any group"</option>
                    {move || match groups.get() {
                        Some(Ok(g)) => g.into_iter().map(|g| view! { <option value=g.id.to_string()>{g.name}</option> }).collect_view().into_any(),
                        _ => ().into_any(),
                    }}
                </select>
                <input id="host-os" type="search" class="narrow" placeholder="OS (debian, rocky…)" aria-label="Operating system"
                    prop:value=move || os_text.get() on:input=move |ev| os_text.set(event_target_value(&ev))/>
                <label class="check">
                    <input type="checkbox" id="host-security" on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        query.update(|q| { q.security = on.then_some(true); q.page = None; });
                    }/>
                    "Security updates pending"
                </label>
                <select id="host-sort" aria-label="Sort" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    query.update(|q| {
                        let (sort, desc) = match v.as_str() {
                            "updates" => (HostSort::Updates, true),
                            "status" => (HostSort::Status, false),
                            "last_seen" => (HostSort::LastSeen, true),
                            _ => (HostSort::Name, false),
                        };
                        q.sort = Some(sort);
                        q.desc = Some(desc);
                    });
                }>
                    <option value="name">"By name"</option>
                    <option value="updates">"Most security updates first"</option>
                    <option value="status">"By state"</option>
                    <option value="last_seen">"Recently seen first"</option>
                </select>
                <button type="submit">"Search"</button>
            </form>
            {move || match hosts.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                Some(Ok(page)) if page.total == 0 => view! {
                    <p class="muted">"No hosts to show. Admins add hosts with an enrollment token from the Certificates page."</p>
                }.into_any(),
                Some(Ok(page)) => {
                    let pages = (page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page);
                    let current = page.page;
                    let list = page.hosts;
                    view! {
                    <p class="muted" id="host-total">{format!("{} host(s); page {current} of {pages}", page.total)}</p>
                    <table class="table" id="hosts">
                        <thead><tr>
                            <th>"Host"</th><th>"Address"</th><th>"Status"</th><th>"OS"</th>
                            <th>"Updates"</th><th>"Groups"</th><th>"Last seen"</th><th>"Certificate"</th>
                        </tr></thead>
                        <tbody>
                        {list.into_iter().map(|h| {
                            let id = h.id;
                            view! {
                                <tr data-host=id.to_string() data-status=h.status.as_str()>
                                    <td>
                                        <a href=format!("/hosts/{id}")><strong>{h.display_name}</strong></a><br/>
                                        <span class="muted">{h.fqdn.unwrap_or_default()}</span>
                                    </td>
                                    <td>{format!("{}:{}", h.ip_address, h.agent_port)}</td>
                                    <td class=status_class(h.status)>{h.status.as_str()}</td>
                                    <td>{h.os.unwrap_or_else(|| "—".into())}</td>
                                    <td>
                                        {h.pending_patches} {(h.pending_security_patches > 0).then(|| view! {
                                            <span class="bad">{format!(" ({} security)", h.pending_security_patches)}</span>
                                        })}
                                        {h.reboot_required.then_some(" · reboot")}
                                    </td>
                                    <td>{h.groups.join(", ")}</td>
                                    <td>{maybe_time(h.last_seen_at.as_deref())}</td>
                                    <td class="actions">
                                        <a href=format!("/api/v1/hosts/{id}/certificate-bundle") download="">"Bundle (public)"</a>
                                        <Show when=move || session.is_admin()>
                                            <button type="button" on:click=move |_| renew(id)>"Renew"</button>
                                        </Show>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    <p class="row">
                        {(current > 1).then(|| view! {
                            <button type="button" id="page-prev" on:click=move |_| query.update(|q| q.page = Some(current - 1))>"← Previous"</button>
                        })}
                        {(i64::from(current) < pages).then(|| view! {
                            <button type="button" id="page-next" on:click=move |_| query.update(|q| q.page = Some(current + 1))>"Next →"</button>
                        })}
                    </p>
                }.into_any()
                }
            }}
            <Show when=move || session.is_admin()>
                <Discovery on_adopted=reload/>
            </Show>
        </section>
    }
}

/// Admins: a range probed for agents, followed live, cancelled, and what was found adopted.
#[component]
fn Discovery(on_adopted: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let cidr = RwSignal::new(String::new());
    let port = RwSignal::new(String::from("12443"));
    let run = RwSignal::new(None::<DiscoveryRun>);
    let chosen = RwSignal::new(Vec::<String>::new());
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    // Follows a run until it ends (its progress is read twice a second).
    let follow = move |id: DiscoveryRunId| {
        spawn_local(async move {
            loop {
                crate::live::pause(500).await;
                match api::call::<ep::GetDiscovery>(id, &NoBody).await {
                    Ok(r) => {
                        let running = r.state == DiscoveryState::Running;
                        if run.try_set(Some(r)).is_some() || !running {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = error.try_set(Some(e.message));
                        break;
                    }
                }
            }
        });
    };
    let start = move |ev: SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        notice.set(None);
        chosen.set(Vec::new());
        let port = match port.get_untracked().trim() {
            "" => None,
            p => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    error.set(Some("The port is a number from 1 to 65535.".into()));
                    return;
                }
            },
        };
        let body = DiscoveryRequest {
            cidr: cidr.get_untracked(),
            port,
        };
        spawn_local(async move {
            match api::call::<ep::StartDiscovery>((), &body).await {
                Ok(r) => {
                    let id = r.id;
                    run.set(Some(r));
                    follow(id);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let cancel = move |id: DiscoveryRunId| {
        spawn_local(async move {
            if let Err(e) = api::call::<ep::CancelDiscovery>(id, &NoBody).await {
                error.set(Some(e.message));
            }
        });
    };
    let adopt = move |id: DiscoveryRunId| {
        let body = AdoptRequest {
            addresses: chosen.get_untracked(),
            group_id: None,
        };
        spawn_local(async move {
            match api::call::<ep::AdoptDiscovered>(id, &body).await {
                Ok(r) => {
                    let refused: Vec<String> = r
                        .refused
                        .iter()
                        .map(|x| format!("{}: {}", x.address, x.reason))
                        .collect();
                    notice.set(Some(format!(
                        "{} host(s) adopted.{}",
                        r.adopted.len(),
                        if refused.is_empty() {
                            String::new()
                        } else {
                            format!(" Not adopted: {}", refused.join("; "))
                        }
                    )));
                    chosen.set(Vec::new());
                    on_adopted();
                    if let Ok(r) = api::call::<ep::GetDiscovery>(id, &NoBody).await {
                        run.set(Some(r));
                    }
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <div class="card" id="discovery">
            <h2>"Discover agents"</h2>
            <p class="muted">"Probes a range for agents on their port (TCP, then TLS with the manager's certificate). Agents certified by this fleet's CA but registered to no host (enrolled after the backup a database was restored from) can be adopted."</p>
            <form class="form inline" on:submit=start>
                <input id="discovery-cidr" placeholder="10.0.8.0/22" aria-label="Range (CIDR)"
                    prop:value=move || cidr.get() on:input=move |ev| cidr.set(event_target_value(&ev))/>
                <input id="discovery-port" class="narrow" aria-label="Port" inputmode="numeric"
                    prop:value=move || port.get() on:input=move |ev| port.set(event_target_value(&ev))/>
                <Submit id="discovery-start" label="Probe"/>
            </form>
            <ErrorLine error/>
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            {move || run.get().map(|r| {
                let id = r.id;
                let running = r.state == DiscoveryState::Running;
                let any_adoptable = r.found.iter().any(|f| f.adoptable);
                view! {
                    <p id="discovery-progress" data-state=format!("{:?}", r.state).to_lowercase()>
                        {format!("{}: {} of {} addresses probed, {} answered, {:.1} s — {}",
                            r.cidr, r.probed, r.total, r.found.len(), r.elapsed_ms as f64 / 1000.0,
                            match r.state {
                                DiscoveryState::Running => "running",
                                DiscoveryState::Done => "done",
                                DiscoveryState::Cancelled => "cancelled",
                                DiscoveryState::Interrupted => "interrupted",
                            })}
                        {running.then(|| view! { " " <button type="button" id="discovery-cancel" on:click=move |_| cancel(id)>"Cancel"</button> })}
                    </p>
                    <table class="table" id="discovery-results">
                        <thead><tr><th></th><th>"Address"</th><th>"What answered"</th><th>"Certificate"</th><th>"Note"</th></tr></thead>
                        <tbody>
                        {r.found.into_iter().map(|f| {
                            let address = f.address.clone();
                            let a2 = f.address.clone();
                            view! {
                                <tr data-address=f.address.clone()>
                                    <td>{f.adoptable.then(|| view! {
                                        <input type="checkbox" aria-label="Adopt"
                                            prop:checked=move || chosen.get().contains(&a2)
                                            on:change=move |ev| {
                                                let on = event_target_checked(&ev);
                                                let a = address.clone();
                                                chosen.update(|c| { c.retain(|x| *x != a); if on { c.push(a); } });
                                            }/>
                                    })}</td>
                                    <td>{format!("{}:{}", f.address, f.port)}</td>
                                    <td>{match f.outcome {
                                        ProbeOutcome::Agent => "agent of this fleet",
                                        ProbeOutcome::Foreign => "TLS, another CA",
                                        ProbeOutcome::NoHandshake => "open port, no handshake",
                                    }}</td>
                                    <td>{f.subject.unwrap_or_else(|| "—".into())}<br/>
                                        <span class="muted mono">{f.fingerprint.map(|x| x.chars().take(16).collect::<String>()).unwrap_or_default()}</span></td>
                                    <td>{match f.host_id {
                                        Some(h) => view! { <a href=format!("/hosts/{h}")>{f.note}</a> }.into_any(),
                                        None => view! { <span>{f.note}</span> }.into_any(),
                                    }}</td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    {any_adoptable.then(|| view! {
                        <button type="button" id="discovery-adopt" disabled=move || chosen.get().is_empty()
                            on:click=move |_| adopt(id)>"Adopt selected"</button>
                    })}
                }.into_any()
            })}
        </div>
    }
}

/// `/hosts/:id`: one host, its certificate, the public bundle and (Admins) renewal.
#[component]
pub fn HostPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<HostId>().ok()));
    let host = loaded::<HostDetail>();
    let packages = loaded::<Vec<HostPackage>>();
    let patches = loaded::<Vec<HostPatch>>();
    let reload = move || {
        if let Some(id) = id() {
            load::<ep::GetHost>(id, host);
            load::<ep::HostPackages>(id, packages);
            load::<ep::HostPatches>(id, patches);
        }
    };
    Effect::new(move |_| reload());
    crate::live::subscribe(move |event| match event {
        LiveEvent::HostState(e)
            if Some(e.host_id)
                == params
                    .with_untracked(|p| p.get("id").and_then(|v| v.parse::<HostId>().ok())) =>
        {
            reload()
        }
        LiveEvent::HostState(_) | LiveEvent::JobState(_) => {}
        // A job that ended on this host changed its packages: the inventory poll that follows
        // brings them; the page reloads with it.
        LiveEvent::JobTarget(e)
            if e.state.is_final()
                && Some(e.host_id)
                    == params
                        .with_untracked(|p| p.get("id").and_then(|v| v.parse::<HostId>().ok())) =>
        {
            reload()
        }
        LiveEvent::JobTarget(_) => {}
        LiveEvent::Resync => reload(),
    });
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let search = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let removed = RwSignal::new(false);
    // Membership (Admins): every group, with this host's ticked.
    let all_groups = loaded::<Vec<GroupInfo>>();
    Effect::new(move |_| {
        if session.is_admin() {
            load::<ep::ListGroups>((), all_groups);
        }
    });
    let member_of = RwSignal::new(Vec::<GroupId>::new());
    Effect::new(move |_| {
        if let (Some(Ok(h)), Some(Ok(g))) = (host.get(), all_groups.get()) {
            member_of.set(
                g.iter()
                    .filter(|g| h.summary.groups.contains(&g.name))
                    .map(|g| g.id)
                    .collect(),
            );
        }
    });
    let save_groups = move |hid: HostId| {
        let body = HostGroups {
            group_ids: member_of.get_untracked(),
        };
        spawn_local(async move {
            match api::call::<ep::SetHostGroups>(hid, &body).await {
                Ok(_) => {
                    error.set(None);
                    notice.set(Some("Groups saved.".into()));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let remove = move |hid: HostId| {
        spawn_local(async move {
            match api::call::<ep::DeleteHost>(hid, &NoBody).await {
                Ok(NoBody) => removed.set(true),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let refresh = move |hid: HostId| {
        spawn_local(async move {
            match api::call::<ep::RefreshHost>(hid, &NoBody).await {
                Ok(NoBody) => {
                    error.set(None);
                    notice.set(Some("Asked the agent; the page follows its answer.".into()));
                    // The inventory may take a moment longer than the health answer.
                    set_timeout(reload, std::time::Duration::from_secs(3));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section class="page">
            <p><a href="/hosts">"← Hosts"</a></p>
            {move || removed.get().then(|| view! { <leptos_router::components::Redirect path="/hosts"/> })}
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            <ErrorLine error/>
            {move || match host.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                Some(Ok(h)) => {
                    let hid = h.summary.id;
                    view! {
                        <h1 id="host-name">{h.summary.display_name.clone()}</h1>
                        <div class="grid">
                            <section class="card">
                                <h2>"Host"</h2>
                                <dl>
                                    <dt>"Name"</dt><dd>{h.summary.fqdn.clone().unwrap_or_default()}</dd>
                                    <dt>"Agent"</dt><dd>{format!("{}:{}", h.summary.ip_address, h.summary.agent_port)}</dd>
                                    <dt>"Status"</dt>
                                    <dd id="host-status" data-status=h.summary.status.as_str() class=status_class(h.summary.status)>
                                        {h.summary.status.as_str()}
                                        {h.status_since.as_deref().map(|s| format!(" since {}", short_time(s)))}
                                        {h.status_reason.clone().map(|r| view! { <br/><span class="muted">{r}</span> })}
                                    </dd>
                                    <dt>"Last poll"</dt><dd>{maybe_time(h.last_health_at.as_deref())}</dd>
                                    <dt>"Last inventory"</dt><dd>{maybe_time(h.last_patch_scan_at.as_deref())}</dd>
                                    <dt>"OS"</dt><dd>{h.summary.os.clone().unwrap_or_else(|| "—".into())}</dd>
                                    <dt>"Kernel"</dt><dd>{h.kernel.clone().unwrap_or_else(|| "—".into())}</dd>
                                    <dt>"Agent version"</dt><dd>{h.agent_version.clone().unwrap_or_else(|| "—".into())}</dd>
                                    <dt>"Groups"</dt><dd>{h.summary.groups.join(", ")}</dd>
                                    <dt>"Enrolled"</dt><dd>{short_time(&h.created_at)}</dd>
                                    <dt>"Last seen"</dt><dd>{maybe_time(h.summary.last_seen_at.as_deref())}</dd>
                                </dl>
                                <button type="button" id="refresh" on:click=move |_| refresh(hid)>"Poll now"</button>
                                <Show when=move || session.is_admin()>
                                    <fieldset class="groups" id="host-groups">
                                        <legend>"Groups"</legend>
                                        {move || match all_groups.get() {
                                            Some(Ok(list)) if !list.is_empty() => list.into_iter().map(|g| {
                                                let gid = g.id;
                                                view! {
                                                    <label class="check">
                                                        <input type="checkbox" prop:checked=move || member_of.get().contains(&gid)
                                                            on:change=move |ev| {
                                                                let on = event_target_checked(&ev);
                                                                member_of.update(|m| { m.retain(|x| *x != gid); if on { m.push(gid); } });
                                                            }/>
                                                        {g.name}
                                                    </label>
                                                }
                                            }).collect_view().into_any(),
                                            _ => view! { <span class="muted">"No groups yet (Users page)."</span> }.into_any(),
                                        }}
                                        <button type="button" id="save-groups" on:click=move |_| save_groups(hid)>"Save groups"</button>
                                    </fieldset>
                                </Show>
                                <Show when=move || session.is_admin()>
                                    {move || if confirming.get() {
                                        view! {
                                            <p class="warn">"Remove this host from the fleet? Its certificate is revoked and its inventory deleted; the audit log keeps its history. The agent must be enrolled again to come back."</p>
                                            <button type="button" class="danger" id="remove-confirm" on:click=move |_| remove(hid)>"Remove"</button>
                                            <button type="button" on:click=move |_| confirming.set(false)>"Cancel"</button>
                                        }.into_any()
                                    } else {
                                        view! { <button type="button" class="danger" id="remove" on:click=move |_| confirming.set(true)>"Remove host…"</button> }.into_any()
                                    }}
                                </Show>
                            </section>
                            <section class="card">
                                <h2>"Certificate"</h2>
                                {match h.certificate.clone() {
                                    Some(c) => view! {
                                        <dl>
                                            <dt>"Serial"</dt><dd><code>{c.serial.clone()}</code></dd>
                                            <dt>"Names"</dt><dd>{c.sans.join(", ")}</dd>
                                            <dt>"Valid until"</dt><dd>{format!("{} ({} days)", short_time(&c.not_after), c.expires_in_days)}</dd>
                                            <dt>"State"</dt><dd class=if c.state == CertState::Valid { "ok" } else { "warn" }>{c.state.as_str()}</dd>
                                            <dt>"SHA-256"</dt><dd><code class="wrap">{c.fingerprint_sha256.clone()}</code></dd>
                                        </dl>
                                        <p class="row">
                                            <a id="bundle" href=format!("/api/v1/hosts/{hid}/certificate-bundle") download="">
                                                "Download the certificate bundle (public parts)"
                                            </a>
                                        </p>
                                    }.into_any(),
                                    None => view! { <p class="warn">"No valid certificate."</p> }.into_any(),
                                }}
                                <Show when=move || session.is_admin()>
                                    <button type="button" id="renew" on:click=move |_| renew_host(hid, notice, error, reload)>
                                        "Renew certificate now"
                                    </button>
                                </Show>
                            </section>
                        </div>
                        <section class="card">
                            <h2>"Pending updates"</h2>
                            {move || match patches.get() {
                                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                                Some(Ok(list)) if list.is_empty() => view! { <p class="muted">"None reported."</p> }.into_any(),
                                Some(Ok(list)) => view! {
                                    <table class="table" id="patches">
                                        <thead><tr><th>"Package"</th><th>"Installed"</th><th>"Update"</th><th>"Kind"</th><th>"CVE"</th></tr></thead>
                                        <tbody>
                                        {list.into_iter().map(|p| view! {
                                            <tr data-security=p.security.to_string()>
                                                <td>{p.name}<span class="muted">{format!(" {}", p.arch)}</span></td>
                                                <td>{p.installed_version.unwrap_or_default()}</td>
                                                <td>{p.candidate_version}</td>
                                                <td class=if p.security { "bad" } else { "" }>
                                                    {if p.security { "security" } else { "update" }}
                                                    {p.reboot_likely.then_some(" · reboot")}
                                                </td>
                                                <td>{p.cves.join(", ")}</td>
                                            </tr>
                                        }).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any(),
                            }}
                        </section>
                        <section class="card">
                            <div class="row">
                                <h2>"Installed packages"</h2>
                                <input id="package-search" type="search" placeholder="Search" aria-label="Search packages"
                                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev))/>
                            </div>
                            {move || match packages.get() {
                                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                                Some(Ok(list)) => {
                                    let needle = search.get().to_lowercase();
                                    let total = list.len();
                                    let shown: Vec<HostPackage> = list.into_iter().filter(|p| needle.is_empty() || p.name.to_lowercase().contains(&needle)).collect();
                                    view! {
                                        <p class="muted" id="package-count">{format!("{} of {total}", shown.len())}</p>
                                        <table class="table" id="packages">
                                            <thead><tr><th>"Package"</th><th>"Version"</th><th>"Architecture"</th><th>"State"</th></tr></thead>
                                            <tbody>
                                            {shown.into_iter().take(500).map(|p| view! {
                                                <tr><td>{p.name}</td><td>{p.version}</td><td>{p.arch}</td><td>{p.status}</td></tr>
                                            }).collect_view()}
                                            </tbody>
                                        </table>
                                    }.into_any()
                                }
                            }}
                        </section>
                    }.into_any()
                }
            }}
        </section>
    }
}

/// Renews a host's certificate through its agent and reports the outcome.
fn renew_host(
    id: HostId,
    notice: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    then: impl Fn() + 'static,
) {
    notice.set(Some("Renewing…".into()));
    spawn_local(async move {
        match api::call::<ep::RenewHostCertificate>(id, &NoBody).await {
            Ok(c) => {
                error.set(None);
                notice.set(Some(format!(
                    "New certificate {} until {}",
                    c.serial,
                    short_time(&c.not_after)
                )));
                then();
            }
            Err(e) => {
                notice.set(None);
                error.set(Some(e.message));
            }
        }
    });
}

/// The CSS class of a host state.
fn status_class(status: HostStatus) -> &'static str {
    match status {
        HostStatus::Healthy => "ok",
        HostStatus::Degraded => "warn",
        HostStatus::Unreachable => "bad",
        HostStatus::Unknown => "muted",
    }
}

fn kind_label(kind: CertKind) -> &'static str {
    match kind {
        CertKind::Ca => "Root CA",
        CertKind::Agent => "Agent",
        CertKind::ManagerClient => "Manager client",
        CertKind::Web => "Web UI",
        CertKind::WebCa => "Web root CA",
        CertKind::Enrollment => "Enrollment (manager)",
    }
}

/// The certificates page.
#[component]
pub fn CertificatesPage() -> impl IntoView {
    let certs = loaded::<Vec<CertificateInfo>>();
    let tokens = loaded::<Vec<EnrollmentTokenInfo>>();
    let groups = loaded::<Vec<GroupInfo>>();
    let crl = loaded::<CrlStatus>();
    let reload = move || {
        load::<ep::GetCrlStatus>((), crl);
        load::<ep::ListCertificates>((), certs);
        load::<ep::ListEnrollmentTokens>((), tokens);
        load::<ep::ListGroups>((), groups);
    };
    Effect::new(move |_| reload());
    // While agents still lack the CRL, look again every few seconds (the courier keeps trying).
    Effect::new(move |_| {
        if let Some(Ok(s)) = crl.get() {
            if !s.pending.is_empty() {
                set_timeout(
                    move || {
                        spawn_local(async move {
                            let r = api::call::<ep::GetCrlStatus>((), &NoBody).await;
                            let _ = crl.try_set(Some(r));
                        });
                    },
                    std::time::Duration::from_secs(3),
                );
            }
        }
    });
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let show_all = RwSignal::new(false);
    let revoking = RwSignal::new(None::<CertificateId>);
    let reason = RwSignal::new(String::new());

    let revoke = move |id: CertificateId| {
        let body = RevokeRequest {
            reason: reason.get_untracked(),
        };
        spawn_local(async move {
            match api::call::<ep::RevokeCertificate>(id, &body).await {
                Ok(r) => {
                    error.set(None);
                    revoking.set(None);
                    reason.set(String::new());
                    notice.set(Some(format!(
                        "Revoked. Revocation list #{} is on its way to {} agent(s); its delivery shows below.",
                        r.number, r.agents
                    )));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let rotate = move |_| {
        spawn_local(async move {
            match api::call::<ep::RotateManagerClient>((), &NoBody).await {
                Ok(r) => {
                    error.set(None);
                    notice.set(Some(format!("The manager's client certificate was replaced (serial {}); new agent connections use it, and the previous one is revoked.", r.serial)));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let renew = move |host: HostId| renew_host(host, notice, error, reload);
    let retry_crl = move |_| {
        spawn_local(async move {
            match api::call::<ep::RetryCrlDelivery>((), &NoBody).await {
                Ok(s) => {
                    error.set(None);
                    crl.set(Some(Ok(s)));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    // Enrollment tokens.
    let created = RwSignal::new(None::<CreatedEnrollmentToken>);
    let minutes = RwSignal::new("60".to_owned());
    let group = RwSignal::new(String::new());
    let vouched = RwSignal::new(String::new());
    let new_host = RwSignal::new(String::new());
    let make_token = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Ok(m) = minutes.get_untracked().trim().parse::<i64>() else {
            error.set(Some("Minutes must be a whole number.".into()));
            return;
        };
        let body = NewEnrollmentToken {
            group_id: group.get_untracked().parse().ok(),
            minutes: Some(m),
            addresses: vouched
                .get_untracked()
                .split([',', ' '])
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            host: Some(new_host.get_untracked()).filter(|h| !h.trim().is_empty()),
        };
        spawn_local(async move {
            match api::call::<ep::CreateEnrollmentToken>((), &body).await {
                Ok(t) => {
                    error.set(None);
                    created.set(Some(t));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let withdraw = move |id: EnrollmentTokenId| {
        spawn_local(async move {
            match api::call::<ep::DeleteEnrollmentToken>(id, &NoBody).await {
                Ok(NoBody) => {
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    view! {
        <section class="page">
            <h1>"Certificates"</h1>
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            <ErrorLine error/>
            <section class="card">
                <div class="row">
                    <h2>"Issued by the manager's CA"</h2>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || show_all.get() on:change=move |ev| show_all.set(event_target_checked(&ev))/>
                        "Show superseded and revoked"
                    </label>
                    <button type="button" id="rotate-client" on:click=rotate>"Rotate manager client certificate"</button>
                    <a href="/api/v1/ca/root.crt" download="patch-manager-web-root-ca.crt" title="The root to trust in browsers for this web UI">"Web root CA"</a>
                    <a href="/api/v1/ca/fleet.crt" download="patch-manager-fleet-ca.crt" title="Signs agents' certificates; not for browsers">"Fleet CA"</a>
                </div>
                {move || match certs.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                    Some(Ok(list)) => view! {
                        <table class="table" id="certificates">
                            <thead><tr>
                                <th>"Kind"</th><th>"Subject"</th><th>"Serial"</th><th>"Expires"</th>
                                <th>"State"</th><th>"Actions"</th>
                            </tr></thead>
                            <tbody>
                            {list.into_iter()
                                .filter(|c| show_all.get() || !matches!(c.state, CertState::Superseded | CertState::Revoked))
                                .map(|c| {
                                let id = c.id;
                                let host = c.host_id;
                                let class = match c.state {
                                    CertState::Expiring => "warn",
                                    CertState::Expired | CertState::Revoked => "bad",
                                    CertState::Valid => "ok",
                                    CertState::Superseded => "muted",
                                };
                                let revocable = c.kind != CertKind::Ca && c.state != CertState::Revoked;
                                view! {
                                    <tr data-kind=c.kind.as_str() data-state=c.state.as_str()>
                                        <td>{kind_label(c.kind)}</td>
                                        <td>{c.subject}<br/><span class="muted">{c.sans.join(", ")}</span></td>
                                        <td><code title=c.fingerprint_sha256>{c.serial.chars().take(16).collect::<String>()}</code></td>
                                        <td>{short_time(&c.not_after)}<br/><span class="muted">{format!("{} days", c.expires_in_days)}</span></td>
                                        <td class=class>{c.state.as_str()}{c.revocation_reason.map(|r| format!(": {r}"))}</td>
                                        <td class="actions">
                                            {(c.kind == CertKind::Agent && c.state != CertState::Revoked).then(|| host.map(|h| view! {
                                                <button type="button" on:click=move |_| renew(h)>"Renew"</button>
                                            }))}
                                            {revocable.then(|| view! {
                                                {move || if revoking.get() == Some(id) {
                                                    view! {
                                                        <input class="reason" placeholder="Reason" aria-label="Reason for revocation"
                                                            prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                                                        <button type="button" class="danger" on:click=move |_| revoke(id)>"Revoke now"</button>
                                                    }.into_any()
                                                } else {
                                                    view! { <button type="button" class="danger" on:click=move |_| revoking.set(Some(id))>"Revoke…"</button> }.into_any()
                                                }}
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }}
            </section>

            <section class="card" id="crl">
                <div class="row">
                    <h2>"Revocation list"</h2>
                    <button type="button" id="crl-retry" on:click=retry_crl>"Retry delivery now"</button>
                    <a href="/api/v1/ca/crl" download="patch-manager-fleet.crl">"Download CRL"</a>
                </div>
                {move || match crl.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                    Some(Ok(s)) => {
                        let complete = s.pending.is_empty();
                        view! {
                            <p>{format!("#{} ({}), issued {}, lists {} certificate(s). Agents refuse every client after {} unless a newer list reaches them; the manager issues one daily.",
                                s.number, s.reason, short_time(&s.this_update), s.revoked, short_time(&s.next_update))}</p>
                            <p id="crl-progress" class=if complete { "ok" } else { "warn" } data-delivered=s.delivered data-agents=s.agents>
                                {format!("Delivered to {} of {} agent(s).", s.delivered, s.agents)}
                            </p>
                            {(!complete).then(|| view! {
                                <table class="table" id="crl-pending">
                                    <thead><tr><th>"Host"</th><th>"Holds"</th><th>"Attempts"</th><th>"Last error"</th><th>"Next attempt"</th></tr></thead>
                                    <tbody>
                                    {s.pending.into_iter().map(|p| view! {
                                        <tr>
                                            <td><a href=format!("/hosts/{}", p.host_id)>{p.host}</a></td>
                                            <td>{p.acked_number.map_or_else(|| "none".to_owned(), |n| format!("#{n}"))}</td>
                                            <td>{p.attempts}</td>
                                            <td>{p.last_error.unwrap_or_else(|| "not tried yet".to_owned())}</td>
                                            <td>{p.next_attempt_at.as_deref().map_or_else(|| "now".to_owned(), short_time)}</td>
                                        </tr>
                                    }).collect_view()}
                                    </tbody>
                                </table>
                            })}
                        }.into_any()
                    }
                }}
            </section>

            <section class="card" id="add-host">
                <h2>"Add a host"</h2>
                <p class="muted">"Make a one-time token, then run the command it shows on the new host as root. The token is shown once. Given a DNS name, the manager resolves it now and the host must enroll under that name; given an address, the host enrolls for that address."</p>
                <form class="form inline" on:submit=make_token>
                    <label for="token-group">"Group"</label>
                    <select id="token-group" on:change=move |ev| group.set(event_target_value(&ev))>
                        <option value="">"(none)"</option>
                        {move || match groups.get() {
                            Some(Ok(g)) => g.into_iter().map(|g| view! { <option value=g.id.to_string()>{g.name}</option> }).collect_view().into_any(),
                            _ => ().into_any(),
                        }}
                    </select>
                    <Field id="token-host" label="Host name or address (optional)" value=new_host kind="text"/>
                    <Field id="token-minutes" label="Valid for (minutes)" value=minutes kind="number"/>
                    <Field id="token-addresses" label="Host addresses, if behind NAT" value=vouched kind="text"/>
                    <Submit id="make-token" label="Make token"/>
                </form>
                {move || created.get().map(|t| view! {
                    <div class="notice">
                        {t.hostname.clone().map(|h| view! {
                            <p id="token-resolved">{format!("For {h}, resolved to {}.", t.addresses.join(", "))}</p>
                        })}
                        <p>"Valid until " {short_time(&t.expires_at)} ", once:"</p>
                        <pre id="enroll-command">{t.command}</pre>
                    </div>
                })}
                {move || match tokens.get() {
                    Some(Ok(list)) if !list.is_empty() => view! {
                        <table class="table" id="tokens">
                            <thead><tr><th>"Token"</th><th>"Created"</th><th>"Expires"</th><th>"Addresses"</th><th>"Used"</th><th></th></tr></thead>
                            <tbody>
                            {list.into_iter().map(|t| {
                                let id = t.id;
                                let unused = t.used_at.is_none();
                                view! {
                                    <tr>
                                        <td>{format!("#{id}")}</td>
                                        <td>{short_time(&t.created_at)}</td>
                                        <td>{short_time(&t.expires_at)}</td>
                                        <td>{t.hostname.clone().map(|h| format!("{h}: ")).unwrap_or_default()}{if t.addresses.is_empty() { "from the host itself".to_owned() } else { t.addresses.join(", ") }}</td>
                                        <td>{t.used_at.as_deref().map_or_else(|| "unused".to_owned(), |u| match t.used_by_host_id { Some(h) => format!("{} (host {h})", short_time(u)), None => short_time(u) })}</td>
                                        <td>{unused.then(|| view! { <button type="button" on:click=move |_| withdraw(id)>"Withdraw"</button> })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    _ => ().into_any(),
                }}
            </section>
        </section>
    }
}
