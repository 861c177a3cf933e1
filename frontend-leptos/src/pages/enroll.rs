//! `/hosts/add` (Admins): the two ways a host joins the fleet. A one-time enrollment token and the
//! command that installs and enrolls the agent with it; or a range probed for agents that this
//! fleet's CA certified but no host record names (after a restore from an older backup), adopted.
//!
//! A page of its own rather than panels of the Hosts page: only Admins use it, and the Hosts
//! page, the one everybody opens, does not download its code.

use crate::api;
use crate::pages::signin::Field;
use crate::ui::{
    notice, refuse, report, short_time, AdminOnly, Confirm, FieldError, GroupOptions, Note,
    NoticeLine, Submit,
};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{self as ep, NoBody};
use shared::fleet::{
    AdoptRequest, CreatedEnrollmentToken, DiscoveryRequest, DiscoveryRun, DiscoveryState,
    GroupInfo, NewEnrollmentToken, ProbeOutcome,
};
use shared::ids::{DiscoveryRunId, EnrollmentTokenId};

/// The page: a new host's token first (the common case), then discovery.
#[component]
pub fn AddHostsPage() -> impl IntoView {
    let groups = crate::ui::load_on_mount::<ep::ListGroups>();
    view! {
        <AdminOnly title="Add hosts">
        <section class="page">
            <div class="row">
                <h1>"Add hosts"</h1>
                <a href="/hosts" id="back-to-hosts">"← Hosts"</a>
            </div>
            <AddHost groups/>
            <Discovery/>
        </section>
        </AdminOnly>
    }
    .into_any()
}

/// Admins: a one-time enrollment token for a new host, the command that enrolls it, and the tokens
/// made so far.
#[component]
fn AddHost(groups: crate::ui::Loaded<Vec<GroupInfo>>) -> impl IntoView {
    let tokens = crate::ui::load_on_mount::<ep::ListEnrollmentTokens>();
    let created = RwSignal::new(None::<CreatedEnrollmentToken>);
    let minutes = RwSignal::new("60".to_owned());
    let group = RwSignal::new(String::new());
    let vouched = RwSignal::new(String::new());
    let new_host = RwSignal::new(String::new());
    let form = notice();
    let list_notice = notice();
    let make_token = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Ok(m) = minutes.get_untracked().trim().parse::<i64>() else {
            refuse(
                form,
                "Valid for: a whole number of minutes.",
                Some("minutes"),
            );
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
            let r = api::call::<ep::CreateEnrollmentToken>((), &body).await;
            report(form, &r, |_| {
                "Token made: run the command below on the new host.".into()
            });
            if let Ok(t) = r {
                created.set(Some(t));
                // A fresh form for the next host.
                new_host.set(String::new());
                vouched.set(String::new());
                minutes.set("60".into());
                tokens.refetch();
            }
        });
    };
    let withdraw = move |id: EnrollmentTokenId| {
        spawn_local(async move {
            let r = api::call::<ep::DeleteEnrollmentToken>(id, &NoBody).await;
            report(list_notice, &r, |_| format!("Token #{id} withdrawn."));
            tokens.refetch();
        });
    };
    view! {
        <section class="card" id="add-host">
            <h2>"Add a host"</h2>
            <p class="muted">"Make a one-time token, then run the command it shows on the new host as root. The token is shown once. Given a DNS name, the manager resolves it now and the host must enroll under that name; given an address, the host enrolls for that address."</p>
            <form class="form inline" on:submit=make_token>
                <span>
                    <label for="token-group">"Group"</label><br/>
                    <select id="token-group" on:change=move |ev| group.set(event_target_value(&ev))>
                        <option value="">"(none)"</option>
                        <GroupOptions groups/>
                    </select>
                </span>
                <span>
                    <Field id="token-host" label="Host name or address (optional)" value=new_host kind="text"/>
                    <FieldError notice=form field="host"/>
                </span>
                <span>
                    <Field id="token-minutes" label="Valid for (minutes)" value=minutes kind="number"/>
                    <FieldError notice=form field="minutes"/>
                </span>
                <span>
                    <Field id="token-addresses" label="Host addresses, if behind NAT" value=vouched kind="text"/>
                    <FieldError notice=form field="addresses"/>
                </span>
                <Submit id="make-token" label="Make token"/>
            </form>
            <NoticeLine notice=form id="token-notice" fields=&["host", "minutes", "addresses"]/>
            {move || created.get().map(|t| view! {
                <div class="notice" id="token-created">
                    {t.hostname.clone().map(|h| view! {
                        <p id="token-resolved">{format!("For {h}, resolved to {}.", t.addresses.join(", "))}</p>
                    })}
                    <p>"Valid until " {short_time(&t.expires_at)} ", once."</p>
                    {t.install_command.clone().map(|c| view! {
                        <p>"On a Debian or Ubuntu host without the agent, as root: this installs the agent package from this manager (its checksum checked), enrolls and starts it."</p>
                        <pre id="install-command">{c}</pre>
                    })}
                    <p>{if t.install_command.is_some() { "Where the agent is installed already, as root:" } else { "On the new host, with the agent installed, as root:" }}</p>
                    <pre id="enroll-command">{t.command.clone()}</pre>
                    {t.manager_url_is_local.then(|| view! {
                        <p class="warn" id="enroll-local-warning">"This command names the manager by a loopback address, which other hosts cannot reach. Set server.public_url (or server.public_names) in the manager's configuration to the address hosts use."</p>
                    })}
                </div>
            })}
            <NoticeLine notice=list_notice id="tokens-notice"/>
            <Transition fallback=|| ()>
                {move || match tokens.get() {
                    Some(Ok(list)) if !list.is_empty() => view! {
                        <table class="table" id="tokens">
                            <thead><tr><th>"Token"</th><th>"Created"</th><th>"Expires"</th><th>"Addresses"</th><th>"Used"</th><th>"Actions"</th></tr></thead>
                            <tbody>
                            {list.into_iter().map(|t| {
                                let id = t.id;
                                let unused = t.used_at.is_none();
                                view! {
                                    <tr data-token=id.to_string()>
                                        <td>{format!("#{id}")}</td>
                                        <td>{short_time(&t.created_at)}</td>
                                        <td>{short_time(&t.expires_at)}</td>
                                        <td>{t.hostname.clone().map(|h| format!("{h}: ")).unwrap_or_default()}{if t.addresses.is_empty() { "from the host itself".to_owned() } else { t.addresses.join(", ") }}</td>
                                        <td>{t.used_at.as_deref().map_or_else(|| "unused".to_owned(), |u| match t.used_by_host_id { Some(h) => format!("{} (host {h})", short_time(u)), None => short_time(u) })}</td>
                                        <td class="actions">{unused.then(|| view! {
                                            <Confirm action="withdraw" label="Withdraw"
                                                question="Withdraw this token? A host that has not enrolled with it yet cannot."
                                                confirm="Withdraw" danger=true on_confirm=move || withdraw(id)/>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    _ => ().into_any(),
                }}
            </Transition>
        </section>
    }
    .into_any()
}

/// Admins: a range probed for agents, followed live, cancelled, and what was found adopted.
#[component]
fn Discovery() -> impl IntoView {
    let cidr = RwSignal::new(String::new());
    let port = RwSignal::new(String::from("12443"));
    let run = RwSignal::new(None::<DiscoveryRun>);
    let chosen = RwSignal::new(Vec::<String>::new());
    let note = notice();
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
                        let _ = note.try_set(Some(Note::Failed(e)));
                        break;
                    }
                }
            }
        });
    };
    let start = move |ev: SubmitEvent| {
        ev.prevent_default();
        note.set(None);
        chosen.set(Vec::new());
        let port = match port.get_untracked().trim() {
            "" => None,
            p => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    refuse(note, "The port is a number from 1 to 65535.", Some("port"));
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
                Err(e) => note.set(Some(Note::Failed(e))),
            }
        });
    };
    let cancel = move |id: DiscoveryRunId| {
        spawn_local(async move {
            if let Err(e) = api::call::<ep::CancelDiscovery>(id, &NoBody).await {
                note.set(Some(Note::Failed(e)));
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
                    note.set(Some(Note::Done(format!(
                        "{} host(s) adopted.{}",
                        r.adopted.len(),
                        if refused.is_empty() {
                            String::new()
                        } else {
                            format!(" Not adopted: {}", refused.join("; "))
                        }
                    ))));
                    chosen.set(Vec::new());
                    if let Ok(r) = api::call::<ep::GetDiscovery>(id, &NoBody).await {
                        run.set(Some(r));
                    }
                }
                Err(e) => note.set(Some(Note::Failed(e))),
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
            <NoticeLine notice=note id="discovery-notice"/>
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
    .into_any()
}
