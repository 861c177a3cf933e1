//! `/audit` (Admins): the hash-chained audit log, newest first, filtered by actor, action, host and
//! time, paged, with the chain's verification state — the same data as `GET /api/v1/audit`.

use crate::ui::{data_with_query, short_time, AdminOnly, Empty};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use shared::api as ep;
use shared::audit::AuditQuery;
use shared::ids::HostId;
use shared::status::AuditChainState;

/// The filters as they stand in the page's address (`/audit?actor=alice&page=2`), so a filtered
/// view can be bookmarked, shared and reloaded.
fn query_from(params: &leptos_router::params::ParamsMap) -> AuditQuery {
    let text = |k: &str| params.get(k).filter(|v| !v.trim().is_empty());
    AuditQuery {
        actor: text("actor"),
        action: text("action"),
        host: text("host").and_then(|h| h.trim().parse::<HostId>().ok()),
        since: text("since"),
        until: text("until"),
        page: text("page").and_then(|p| p.parse().ok()),
        per_page: None,
    }
}

/// The audit log page.
#[component]
pub fn AuditPage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| params.with(query_from));
    // Read for everyone, so server and browser make the same reads in the same order; the API
    // refuses an Operator, whom the page tells instead.
    let log = data_with_query::<ep::ListAudit>(|| (), move || query.get().to_query_string());
    view! {
        <AdminOnly title="Audit log">
            <AuditLog query log/>
        </AdminOnly>
    }
    .into_any()
}

/// The log, its filters and pages.
#[component]
fn AuditLog(
    query: Memo<AuditQuery>,
    log: crate::ui::Loaded<shared::audit::AuditPage>,
) -> impl IntoView {
    let navigate = StoredValue::new_local(use_navigate());
    let go = move |q: AuditQuery| {
        navigate.with_value(|n| {
            n(
                &format!("/audit{}", q.to_query_string()),
                Default::default(),
            )
        });
    };

    // The form's fields, filled from the address.
    let actor = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    Effect::new(move |_| {
        let q = query.get();
        actor.set(q.actor.unwrap_or_default());
        action.set(q.action.unwrap_or_default());
        host.set(q.host.map(|h| h.to_string()).unwrap_or_default());
        since.set(q.since.unwrap_or_default());
        until.set(q.until.unwrap_or_default());
    });
    let filter = {
        move |ev: SubmitEvent| {
            ev.prevent_default();
            let some = |s: RwSignal<String>| {
                Some(s.get_untracked().trim().to_owned()).filter(|v| !v.is_empty())
            };
            go(AuditQuery {
                actor: some(actor),
                action: some(action),
                host: some(host).and_then(|h| h.parse().ok()),
                since: some(since),
                until: some(until),
                page: None,
                per_page: None,
            });
        }
    };
    let clear = move |_| go(AuditQuery::default());
    let to_page = move |page: u32| {
        let mut q = query.get_untracked();
        q.page = Some(page);
        go(q);
    };
    let input = |id: &'static str,
                 label: &'static str,
                 value: RwSignal<String>,
                 kind: &'static str,
                 hint: &'static str| {
        view! {
            <span>
                <label for=id>{label}</label><br/>
                <input id=id type=kind placeholder=hint prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev))/>
            </span>
        }
    };
    view! {
        <section class="page">
            <h1>"Audit log"</h1>
            <p class="muted">"Every sign-in, change and action on hosts, in order. Each record carries the hash of the one before it, so an edited, removed or re-ordered record breaks the chain where it happened."</p>
            <form class="form inline" id="audit-filters" on:submit=filter>
                {input("audit-actor", "Who (user name or actor)", actor, "text", "alice, system")}
                {input("audit-action", "Action (or family ending in .)", action, "text", "user.login, host.")}
                {input("audit-host", "Host number", host, "text", "12")}
                {input("audit-since", "From (date or time, UTC)", since, "text", "2026-11-30")}
                {input("audit-until", "Until (date or time, UTC)", until, "text", "2026-12-01")}
                <button type="submit" id="audit-apply">"Filter"</button>
                <button type="button" id="audit-clear" on:click=clear>"Clear"</button>
            </form>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || log.get().map(|r| match r {
                Err(e) if e.is_unauthorized() => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Err(e) => view! { <p class="error" role="alert" id="audit-error">{e.message}</p> }.into_any(),
                Ok(page) => {
                    let pages = ((page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page)).max(1);
                    let current = page.page;
                    let chain = match &page.chain {
                        AuditChainState::Intact { records } => view! {
                            <p class="ok" id="audit-chain" data-state="intact">
                                {format!("Chain intact: records 1 to {records} verified, of {} in the log.", page.records)}
                            </p>
                        }.into_any(),
                        AuditChainState::Broken { id, reason } => view! {
                            <p class="bad" id="audit-chain" data-state="broken" role="alert">
                                {format!("Chain broken at record {id}: {reason}. Records from there on cannot be trusted; see the runbook.")}
                            </p>
                        }.into_any(),
                    };
                    let body = if page.entries.is_empty() {
                        view! { <Empty text="No record matches these filters. Widen the time range or clear a filter."/> }.into_any()
                    } else {
                        view! {
                            <p class="muted" id="audit-total">{format!("{} matching record(s); page {current} of {pages}", page.total)}</p>
                            <table class="table" id="audit">
                                <thead><tr><th>"#"</th><th>"When"</th><th>"Who"</th><th>"Action"</th><th>"On"</th><th>"Outcome"</th><th>"From"</th><th>"Details"</th></tr></thead>
                                <tbody>
                                {page.entries.into_iter().map(|e| {
                                    let outcome_class = match e.outcome.as_str() {
                                        "success" => "ok",
                                        "denied" | "failure" => "bad",
                                        _ => "",
                                    };
                                    let details = match &e.details {
                                        serde_json::Value::Object(m) if m.is_empty() => String::new(),
                                        serde_json::Value::Null => String::new(),
                                        v => v.to_string(),
                                    };
                                    view! {
                                        <tr data-id=e.id.to_string() data-action=e.action.clone()>
                                            <td>{e.id}</td>
                                            <td>{short_time(&e.at)}</td>
                                            <td>{e.actor_name.clone().unwrap_or_else(|| e.actor.clone())}
                                                {e.actor_name.is_some().then(|| view! { <br/><span class="muted">{e.actor.clone()}</span> })}</td>
                                            <td><code>{e.action.clone()}</code></td>
                                            <td>{match e.target.as_deref().and_then(|t| t.strip_prefix("host:")) {
                                                Some(h) => view! { <a href=format!("/hosts/{h}")>{format!("host {h}")}</a> }.into_any(),
                                                None => view! { <span>{e.target.clone().unwrap_or_default()}</span> }.into_any(),
                                            }}</td>
                                            <td class=outcome_class>{e.outcome.clone()}</td>
                                            <td>{e.source_ip.clone().unwrap_or_default()}</td>
                                            <td><code class="wrap">{details}</code></td>
                                        </tr>
                                    }
                                }).collect_view()}
                                </tbody>
                            </table>
                            <p class="pager">
                                {(current > 1).then(|| view! {
                                    <button type="button" id="audit-prev" on:click=move |_| to_page(current - 1)>"← Newer"</button>
                                })}
                                {(i64::from(current) < pages).then(|| view! {
                                    <button type="button" id="audit-next" on:click=move |_| to_page(current + 1)>"Older →"</button>
                                })}
                            </p>
                        }.into_any()
                    };
                    view! { {chain} {body} }.into_any()
                }
            })}
            </Transition>
        </section>
    }
    .into_any()
}
