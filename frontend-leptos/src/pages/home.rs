//! The overview: what the installation holds today (for the signed-in user's scope), live.

use crate::app::Session;
use crate::ui::data;
use leptos::prelude::*;
use shared::api as ep;
use shared::fleet::LiveEvent;
use shared::status::{AuditChainState, FleetSummary, ServiceState, SystemOverview};

/// Front page: installation status, the fleet's compliance, deployments and the audit chain.
#[component]
pub fn HomePage() -> impl IntoView {
    let session = expect_context::<Session>();
    let overview = data::<ep::Overview>(|| ());
    // Host states change live; the summary is read again, at most once every few seconds.
    let pending = RwSignal::new(false);
    crate::live::subscribe(move |event| {
        if matches!(event, LiveEvent::HostState(_) | LiveEvent::Resync) && !pending.get_untracked()
        {
            pending.set(true);
            set_timeout(
                move || {
                    pending.set(false);
                    overview.refetch();
                },
                std::time::Duration::from_secs(3),
            );
        }
    });
    let hydrated = crate::ui::hydrated();
    view! {
        <section class="page" data-hydrated=move || hydrated.get().to_string()>
            <h1>"Overview"</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading status…"</p> }>
                {move || {
                    // Read here so the server waits for the role too before it sends the page.
                    let admin = session.is_admin();
                    overview.get().map(|o| match o {
                    Ok(o) => view! { <OverviewCards overview=o admin/> }.into_any(),
                    Err(e) if e.is_unauthorized() => view! { <p class="muted">"Loading status…"</p> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{format!("Status unavailable: {}", e.message)}</p> }.into_any(),
                })}}
            </Transition>
            <p>
                <a id="root-ca-download" href="/api/v1/ca/root.crt" download="patch-manager-web-root-ca.crt">
                    "Download the web root certificate"
                </a>
                <span class="muted">" — trust it in your browser for this web UI (it signs nothing else)."</span>
            </p>
        </section>
    }
    .into_any()
}

#[component]
fn OverviewCards(overview: SystemOverview, admin: bool) -> impl IntoView {
    let h = overview.health;
    let (state_class, state_text) = match h.status {
        ServiceState::Ok => ("ok", "Healthy"),
        ServiceState::Degraded => ("bad", "Degraded"),
    };
    let total = u64::try_from(overview.audit_records).unwrap_or(0);
    let audit = match overview.audit_chain {
        AuditChainState::Intact { records } if records >= total => view! {
            <span class="ok">{format!("Intact: all {total} records verified")}</span>
        }
        .into_any(),
        // Records written after the check began are checked at the next one.
        AuditChainState::Intact { records } => view! {
            <span class="ok">{format!("Intact: records 1 to {records} verified; {} newer not yet checked", total - records)}</span>
        }
        .into_any(),
        AuditChainState::Broken { id, reason } => view! {
            <span class="bad">"Broken at record " {id} ": " {reason}</span>
        }
        .into_any(),
    };
    view! {
        <div class="grid">
            <section class="card">
                <h2>"Manager"</h2>
                <dl>
                    <dt>"State"</dt><dd id="service-state" class=state_class>{state_text}</dd>
                    <dt>"Version"</dt><dd>{h.version}</dd>
                    <dt>"Database"</dt><dd id="database-backend">{h.database.label()}</dd>
                    <dt>"Up for"</dt><dd>{format_uptime(h.uptime_seconds)}</dd>
                </dl>
            </section>
            <section class="card">
                <h2>"Fleet"</h2>
                <dl>
                    <dt>"Hosts"</dt><dd id="host-count">{overview.hosts}</dd>
                    <dt>"Groups"</dt><dd>{overview.groups}</dd>
                    <dt>"Users"</dt><dd>{overview.users}</dd>
                </dl>
                {(overview.hosts == 0).then(|| if admin {
                    view! {
                        <crate::ui::Empty
                            text="No hosts are enrolled yet. Each managed host runs the patch agent, enrolled with a one-time token."
                            action=("/hosts/add", "Add a host")/>
                    }.into_any()
                } else {
                    view! {
                        <crate::ui::Empty text="None of your groups holds a host yet. An Admin puts hosts into groups; you see those of your groups."/>
                    }.into_any()
                })}
            </section>
            {(overview.hosts > 0).then(|| view! { <Compliance fleet=overview.fleet.clone() hosts=overview.hosts/> }.into_any())}
            <section class="card" id="deployment-summary">
                <h2>"Patch deployment"</h2>
                <p><a href="/jobs">{format!("{} job(s) queued or running", overview.active_jobs)}</a></p>
                <h3>"Maintenance windows"</h3>
                {if overview.upcoming_windows.is_empty() {
                    view! { <p class="muted">"No window opens. "<a href="/windows">"Add one"</a></p> }.into_any()
                } else {
                    view! {
                        <ul class="plain" id="upcoming-windows">
                        {overview.upcoming_windows.clone().into_iter().map(|w| {
                            let when = if w.open_now {
                                format!("open until {}", w.next_close.as_deref().map(crate::ui::short_time).unwrap_or_default())
                            } else {
                                format!("opens {}", w.next_open.as_deref().map(crate::ui::short_time).unwrap_or_default())
                            };
                            view! { <li>{format!("{} ({}): {when}", w.window.name, w.applies_to)}</li> }
                        }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            </section>
            <section class="card">
                <h2>"Audit log"</h2>
                <dl>
                    <dt>"Records"</dt><dd id="audit-records">{overview.audit_records}</dd>
                    <dt>"Chain"</dt><dd id="audit-chain">{audit}</dd>
                </dl>
                {admin.then(|| view! { <p><a href="/audit">"Open the audit log"</a></p> })}
            </section>
        </div>
    }
    .into_any()
}

/// The dashboard: compliance, states and pending updates, overall and per group.
#[component]
fn Compliance(fleet: FleetSummary, hosts: i64) -> impl IntoView {
    let pct = |part: i64, whole: i64| {
        if whole == 0 {
            "—".to_owned()
        } else {
            format!("{:.0} %", 100.0 * part as f64 / whole as f64)
        }
    };
    view! {
        <section class="card" id="compliance">
            <h2>"Compliance"</h2>
            <p>
                <strong id="compliant-pct">{pct(fleet.compliant, hosts)}</strong>
                {format!(" compliant: {} of {hosts} host(s) inventoried with no security update pending", fleet.compliant)}
            </p>
            <dl>
                <dt>"Healthy"</dt><dd class="ok" id="hosts-healthy">{fleet.healthy}</dd>
                <dt>"Degraded"</dt><dd class="warn">{fleet.degraded}</dd>
                <dt>"Unreachable"</dt><dd class="bad" id="hosts-unreachable">{fleet.unreachable}</dd>
                <dt>"Not polled yet"</dt><dd class="muted">{fleet.unknown}</dd>
                <dt>"Pending updates"</dt><dd>{format!("{} ({} security, on {} host(s))", fleet.pending_updates, fleet.pending_security_updates, fleet.with_security_updates)}</dd>
                <dt>"Reboot needed"</dt><dd>{fleet.reboot_required}</dd>
            </dl>
            {(!fleet.groups.is_empty()).then(|| view! {
                <table class="table" id="group-compliance">
                    <thead><tr><th>"Group"</th><th>"Hosts"</th><th>"Compliant"</th><th>"Unreachable"</th></tr></thead>
                    <tbody>
                    {fleet.groups.into_iter().map(|g| {
                        let down = if g.unreachable > 0 { "bad" } else { "" };
                        view! {
                        <tr>
                            <td>{g.name}</td><td>{g.hosts}</td>
                            <td>{format!("{} ({})", g.compliant, pct(g.compliant, g.hosts))}</td>
                            <td class=down>{g.unreachable}</td>
                        </tr>
                    }}).collect_view()}
                    </tbody>
                </table>
            }.into_any())}
        </section>
    }
    .into_any()
}

/// Shown for paths no route matches; on the server it also sets the 404 status.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_actix::ResponseOptions>() {
        resp.set_status(actix_web::http::StatusCode::NOT_FOUND);
    }
    let path = leptos_router::hooks::use_location()
        .pathname
        .get_untracked();
    view! {
        <section class="page narrow" id="not-found">
            <h1>"Page not found"</h1>
            <p>{format!("Nothing lives at {path}. The address may be mistyped, or the page was moved.")}</p>
            <p><a href="/">"Back to the overview"</a>" · "<a href="/hosts">"Hosts"</a></p>
        </section>
    }
    .into_any()
}

/// A page about one thing whose address names it with something that is not an id (`/hosts/abc`).
#[component]
pub fn BadId(
    /// What the id names (`host`, `job`).
    what: &'static str,
    /// The text the address holds.
    given: String,
    /// The list to go back to, and its name.
    back: (&'static str, &'static str),
) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_actix::ResponseOptions>() {
        resp.set_status(actix_web::http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="page narrow" id="bad-id">
            <h1>"Page not found"</h1>
            <p>{format!("\u{201c}{given}\u{201d} is not a {what} number: {what} pages are at addresses such as {}/12.", back.0)}</p>
            <p><a href=back.0>{format!("Back to {}", back.1)}</a></p>
        </section>
    }
    .into_any()
}

fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::format_uptime;

    #[test]
    fn uptime_is_readable() {
        assert_eq!(format_uptime(5), "5 s");
        assert_eq!(format_uptime(125), "2 min 5 s");
        assert_eq!(format_uptime(3_700), "1 h 1 min");
        assert_eq!(format_uptime(90_000), "1 d 1 h");
    }
}
