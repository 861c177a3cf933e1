//! `/hosts` (everyone, within their groups), `/hosts/:id` and `/certificates` (Admins): the fleet,
//! its certificates with expiry, renewal, rotation and revocation. Adding hosts: `enroll`.

use crate::api;
use crate::app::Session;
use crate::pages::home::BadId;
use crate::ui::{
    data_if, data_with_query, maybe_time, notice, report, short_time, AdminOnly, Confirm, Empty,
    GroupOptions, Note, Notice, NoticeLine,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use shared::api::{self as ep, NoBody};
use shared::fleet::{HostGroups, HostPackage, HostQuery, HostSort, LiveEvent, RevokeRequest};
use shared::ids::{CertificateId, GroupId, HostId};
use shared::vocab::{CertKind, CertState, HostStatus};

/// The hosts page.
#[component]
pub fn HostsPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let query = RwSignal::new(HostQuery::default());
    // Read again whenever a filter, the sort or the page changes.
    let hosts = data_with_query::<ep::ListHosts>(|| (), move || query.get().to_query_string());
    let text = RwSignal::new(String::new());
    let os_text = RwSignal::new(String::new());
    let groups = crate::ui::load_on_mount::<ep::ListGroups>();
    let reload = move || hosts.refetch();
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
    let row_notice = notice();
    let renew = move |id: HostId| renew_host(id, row_notice, || ());
    let filtered = move || {
        query.with(|q| {
            *q != HostQuery {
                page: q.page,
                sort: q.sort,
                desc: q.desc,
                ..HostQuery::default()
            }
        })
    };
    view! {
        <section class="page">
            <div class="row">
                <h1>"Hosts"</h1>
                <Transition fallback=|| ()>
                    <Show when=move || session.is_admin()>
                        <a href="/hosts/add" id="add-host-link" class="button">"Add hosts"</a>
                    </Show>
                </Transition>
            </div>
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
                    <GroupOptions groups/>
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
            <NoticeLine notice=row_notice id="hosts-notice"/>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match hosts.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(page)) if page.total == 0 && filtered() => view! {
                    <Empty text="No host matches these filters. Clear the search or choose another state, group or OS."/>
                }.into_any(),
                Some(Ok(page)) if page.total == 0 => if session.is_admin() {
                    view! {
                        <Empty text="No hosts yet. This list shows every managed host, its state and its pending updates; a host joins it when its patch agent enrolls with a one-time token."
                            action=("/hosts/add", "Add a host")/>
                    }.into_any()
                } else {
                    view! {
                        <Empty text="None of your groups holds a host yet. This list shows the hosts of your groups; an Admin adds hosts and puts them into groups."/>
                    }.into_any()
                },
                Some(Ok(page)) => {
                    let pages = (page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page);
                    let current = page.page;
                    let list = page.hosts;
                    view! {
                    <p class="muted" id="host-total">{format!("{} host(s); page {current} of {pages}", page.total)}</p>
                    <table class="table" id="hosts">
                        <thead><tr>
                            <th>"Host"</th><th>"Address"</th><th>"Status"</th><th>"OS"</th>
                            <th>"Updates"</th><th>"Groups"</th><th>"Last seen"</th><th>"Actions"</th>
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
                                            <Confirm action="renew" label="Renew certificate"
                                                question="Issue this host a new certificate now? The agent switches to it and the old one is superseded."
                                                confirm="Renew" on_confirm=move || renew(id)/>
                                        </Show>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                    <p class="pager">
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
            </Transition>
        </section>
    }
    .into_any()
}

/// `/hosts/:id`: one host, its certificate, the public bundle and (Admins) renewal.
#[component]
pub fn HostPage() -> impl IntoView {
    let session = expect_context::<Session>();
    let params = use_params_map();
    let raw_id = move || params.with(|p| p.get("id").unwrap_or_default());
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<HostId>().ok()));
    let host = data_if::<ep::GetHost>(id);
    let packages = data_if::<ep::HostPackages>(id);
    let patches = data_if::<ep::HostPatches>(id);
    let reload = move || {
        host.refetch();
        packages.refetch();
        patches.refetch();
    };
    let this_host = move |h: HostId| {
        Some(h) == params.with_untracked(|p| p.get("id").and_then(|v| v.parse::<HostId>().ok()))
    };
    crate::live::subscribe(move |event| match event {
        LiveEvent::HostState(e) if this_host(e.host_id) => reload(),
        LiveEvent::HostState(_) | LiveEvent::JobState(_) => {}
        // A job that ended on this host changed its packages: the inventory poll that follows
        // brings them; the page reloads with it.
        LiveEvent::JobTarget(e) if e.state.is_final() && this_host(e.host_id) => reload(),
        LiveEvent::JobTarget(_) => {}
        LiveEvent::Resync => reload(),
    });
    let note = notice();
    let groups_note = notice();
    let cert_note = notice();
    let search = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let removed = RwSignal::new(false);
    // Membership (Admins): every group, with this host's ticked. (Read for everyone so the page
    // reads the same things on the server and in the browser; an Operator's answer is unused.)
    let all_groups = crate::ui::load_on_mount::<ep::ListGroups>();
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
            let r = api::call::<ep::SetHostGroups>(hid, &body).await;
            report(groups_note, &r, |_| "Groups saved.".into());
            if r.is_ok() {
                reload();
            }
        });
    };
    let remove = move |hid: HostId| {
        spawn_local(async move {
            match api::call::<ep::DeleteHost>(hid, &NoBody).await {
                Ok(NoBody) => removed.set(true),
                Err(e) => note.set(Some(Note::Failed(e))),
            }
        });
    };
    let refresh = move |hid: HostId| {
        spawn_local(async move {
            let r = api::call::<ep::RefreshHost>(hid, &NoBody).await;
            report(note, &r, |_| {
                "Asked the agent; the page follows its answer.".into()
            });
            if r.is_ok() {
                // The inventory may take a moment longer than the health answer.
                set_timeout(reload, std::time::Duration::from_secs(3));
            }
        });
    };
    view! {
        <section class="page">
            <p><a href="/hosts">"← Hosts"</a></p>
            {move || removed.get().then(|| view! { <leptos_router::components::Redirect path="/hosts"/> })}
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match host.get() {
                _ if id().is_none() => view! {
                    <BadId what="host" given=raw_id() back=("/hosts", "Hosts")/>
                }.into_any(),
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert" id="host-error">{e.message}</p> }.into_any(),
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
                                <NoticeLine notice=note id="host-notice"/>
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
                                            _ => view! { <span class="muted">"No groups yet: groups are made on the Users page."</span> }.into_any(),
                                        }}
                                        <button type="button" id="save-groups" on:click=move |_| save_groups(hid)>"Save groups"</button>
                                        <NoticeLine notice=groups_note id="groups-notice"/>
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
                                    <span id="renew">
                                        <Confirm action="renew" label="Renew certificate now"
                                            question="Issue this host a new certificate now? The agent switches to it and the current one is superseded."
                                            confirm="Renew" on_confirm=move || renew_host(hid, cert_note, reload)/>
                                    </span>
                                    <NoticeLine notice=cert_note id="renew-notice"/>
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
            </Transition>
        </section>
    }
    .into_any()
}

/// Renews a host's certificate through its agent and reports the outcome in `notice`.
fn renew_host(id: HostId, notice: Notice, then: impl Fn() + 'static) {
    notice.set(Some(Note::Done("Renewing…".into())));
    spawn_local(async move {
        let r = api::call::<ep::RenewHostCertificate>(id, &NoBody).await;
        report(notice, &r, |c| {
            format!(
                "New certificate {} until {}.",
                c.serial,
                short_time(&c.not_after)
            )
        });
        if r.is_ok() {
            then();
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
    let certs = crate::ui::load_on_mount::<ep::ListCertificates>();
    let crl = crate::ui::load_on_mount::<ep::GetCrlStatus>();
    let reload = move || {
        crl.refetch();
        certs.refetch();
    };
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
    let table_notice = notice();
    let rotate_notice = notice();
    let crl_notice = notice();
    let show_all = RwSignal::new(false);
    let revoking = RwSignal::new(None::<CertificateId>);
    let reason = RwSignal::new(String::new());

    let revoke = move |id: CertificateId| {
        let body = RevokeRequest {
            reason: reason.get_untracked(),
        };
        spawn_local(async move {
            let r = api::call::<ep::RevokeCertificate>(id, &body).await;
            report(table_notice, &r, |r| {
                format!(
                "Revoked. Revocation list #{} is on its way to {} agent(s); its delivery shows below.",
                r.number, r.agents
            )
            });
            if r.is_ok() {
                revoking.set(None);
                reason.set(String::new());
                reload();
            }
        });
    };
    let rotate = move || {
        spawn_local(async move {
            let r = api::call::<ep::RotateManagerClient>((), &NoBody).await;
            report(rotate_notice, &r, |r| {
                format!("The manager's client certificate was replaced (serial {}); new agent connections use it, and the previous one is revoked.", r.serial)
            });
            if r.is_ok() {
                reload();
            }
        });
    };
    let renew = move |host: HostId| renew_host(host, table_notice, reload);
    let retry_crl = move |_| {
        spawn_local(async move {
            let r = api::call::<ep::RetryCrlDelivery>((), &NoBody).await;
            report(crl_notice, &r, |_| "Delivery tried again now.".into());
            if let Ok(s) = r {
                crl.set(Some(Ok(s)));
            }
        });
    };

    view! {
        <AdminOnly title="Certificates">
        <section class="page">
            <div class="row">
                <h1>"Certificates"</h1>
                <a href="/hosts/add" id="add-host-link">"Add a host"</a>
            </div>
            <section class="card">
                <div class="row">
                    <h2>"Issued by the manager's CA"</h2>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || show_all.get() on:change=move |ev| show_all.set(event_target_checked(&ev))/>
                        "Show superseded and revoked"
                    </label>
                    <span id="rotate-client">
                        <Confirm action="rotate" label="Rotate manager client certificate"
                            question="Replace the manager's client certificate now? Agents accept the new one at once; the current one is revoked."
                            confirm="Rotate" on_confirm=rotate/>
                    </span>
                    <a href="/api/v1/ca/root.crt" download="patch-manager-web-root-ca.crt" title="The root to trust in browsers for this web UI">"Web root CA"</a>
                    <a href="/api/v1/ca/fleet.crt" download="patch-manager-fleet-ca.crt" title="Signs agents' certificates; not for browsers">"Fleet CA"</a>
                </div>
                <NoticeLine notice=rotate_notice id="rotate-notice"/>
                <NoticeLine notice=table_notice id="certificates-notice"/>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || match certs.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
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
                                                <Confirm action="renew" label="Renew"
                                                    question="Issue this host a new certificate now? The agent switches to it and this one is superseded."
                                                    confirm="Renew" on_confirm=move || renew(h)/>
                                            }))}
                                            {revocable.then(|| view! {
                                                {move || if revoking.get() == Some(id) {
                                                    view! {
                                                        <span class="confirm" role="group">
                                                            <span class="warn">"Revoke for good? Whoever holds it is refused from the next revocation list on."</span>
                                                            <input class="reason" placeholder="Reason" aria-label="Reason for revocation"
                                                                prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                                                            <button type="button" class="danger" data-action="revoke-confirm" on:click=move |_| revoke(id)>"Revoke now"</button>
                                                            <button type="button" data-action="revoke-cancel" on:click=move |_| { revoking.set(None); reason.set(String::new()); }>"Cancel"</button>
                                                        </span>
                                                    }.into_any()
                                                } else {
                                                    view! { <button type="button" class="danger" data-action="revoke" on:click=move |_| revoking.set(Some(id))>"Revoke…"</button> }.into_any()
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
                </Transition>
            </section>

            <section class="card" id="crl">
                <div class="row">
                    <h2>"Revocation list"</h2>
                    <button type="button" id="crl-retry" on:click=retry_crl>"Retry delivery now"</button>
                    <a href="/api/v1/ca/crl" download="patch-manager-fleet.crl">"Download CRL"</a>
                </div>
                <NoticeLine notice=crl_notice id="crl-notice"/>
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || match crl.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
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
                </Transition>
            </section>
        </section>
        </AdminOnly>
    }
    .into_any()
}
