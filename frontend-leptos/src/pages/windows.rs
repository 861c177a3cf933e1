//! `/windows` (Operators and Admins, within their groups): maintenance windows of hosts and
//! groups, when each opens next, and new ones (one-time, daily, weekly or monthly, in a time
//! zone).

use crate::api;
use crate::ui::{data_with_query, load_on_mount, short_time, ErrorLine, Submit};
use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{self as ep, NoBody};
use shared::fleet::HostQuery;
use shared::ids::{GroupId, HostId, WindowId};
use shared::windows::{NewWindow, Recurrence, WindowSpec};

/// "Monday" … "Sunday" for 1 … 7.
fn weekday_name(d: u8) -> &'static str {
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    .get(usize::from(d.saturating_sub(1)))
    .copied()
    .unwrap_or("?")
}

/// How a window recurs, in words.
fn describe(w: &WindowSpec) -> String {
    let when = match w.recurrence {
        Recurrence::Once => format!("on {}", w.start_date),
        Recurrence::Daily => "every day".to_owned(),
        Recurrence::Weekly => format!("every {}", weekday_name(w.weekday.unwrap_or(1))),
        Recurrence::Monthly => format!("on day {} of every month", w.day_of_month.unwrap_or(1)),
    };
    format!(
        "{when} at {} ({}) for {} min",
        w.start_time, w.time_zone, w.duration_minutes
    )
}

/// The maintenance windows page.
#[component]
pub fn WindowsPage() -> impl IntoView {
    let windows = load_on_mount::<ep::ListWindows>();
    let reload = move || windows.refetch();
    let groups = load_on_mount::<ep::ListGroups>();
    let hosts = data_with_query::<ep::ListHosts>(
        || (),
        || {
            HostQuery {
                per_page: Some(500),
                ..HostQuery::default()
            }
            .to_query_string()
        },
    );
    // "host:<id>" or "group:<id>".
    let target = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let recurrence = RwSignal::new(String::from("weekly"));
    let time_zone = RwSignal::new(String::from("UTC"));
    let start_date = RwSignal::new(String::new());
    let start_time = RwSignal::new(String::from("02:00"));
    let duration = RwSignal::new(String::from("120"));
    let weekday = RwSignal::new(String::from("7"));
    let day_of_month = RwSignal::new(String::from("1"));
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let deleting = RwSignal::new(None::<WindowId>);
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        notice.set(None);
        let t = target.get_untracked();
        let (host_id, group_id) = match t.split_once(':') {
            Some(("host", id)) => (id.parse().ok().map(HostId), None),
            Some(("group", id)) => (None, id.parse().ok().map(GroupId)),
            _ => {
                error.set(Some("Choose the host or group the window is for.".into()));
                return;
            }
        };
        let Ok(duration_minutes) = duration.get_untracked().trim().parse::<u32>() else {
            error.set(Some("The duration is a number of minutes.".into()));
            return;
        };
        let recurrence = match recurrence.get_untracked().as_str() {
            "once" => Recurrence::Once,
            "daily" => Recurrence::Daily,
            "monthly" => Recurrence::Monthly,
            _ => Recurrence::Weekly,
        };
        let body = NewWindow {
            host_id,
            group_id,
            window: WindowSpec {
                name: name.get_untracked(),
                recurrence,
                time_zone: time_zone.get_untracked(),
                start_date: start_date.get_untracked(),
                start_time: start_time.get_untracked(),
                duration_minutes,
                weekday: (recurrence == Recurrence::Weekly)
                    .then(|| weekday.get_untracked().parse().ok())
                    .flatten(),
                day_of_month: (recurrence == Recurrence::Monthly)
                    .then(|| day_of_month.get_untracked().parse().ok())
                    .flatten(),
                enabled: true,
            },
        };
        spawn_local(async move {
            match api::call::<ep::CreateWindow>((), &body).await {
                Ok(w) => {
                    notice.set(Some(format!(
                        "Window \"{}\" created; it opens {}.",
                        w.window.name,
                        w.next_open
                            .as_deref()
                            .map_or_else(|| "—".into(), short_time)
                    )));
                    name.set(String::new());
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let remove = move |id: WindowId| {
        deleting.set(None);
        spawn_local(async move {
            match api::call::<ep::DeleteWindow>(id, &NoBody).await {
                Ok(NoBody) => {
                    notice.set(Some("Window deleted.".into()));
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <section class="page">
            <h1>"Maintenance windows"</h1>
            <p class="muted">"Jobs queued for maintenance windows start on each host only while one of its windows (its own or its groups') is open, and never after it closes."</p>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match windows.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e.message}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <p class="muted" id="no-windows">"No maintenance windows yet."</p>
                }.into_any(),
                Some(Ok(list)) => view! {
                    <table class="table" id="windows">
                        <thead><tr><th>"Window"</th><th>"For"</th><th>"When"</th><th>"Next"</th><th class="actions">""</th></tr></thead>
                        <tbody>
                        {list.into_iter().map(|w| {
                            let id = w.id;
                            view! {
                                <tr data-window=id.to_string() data-open=w.open_now.to_string()>
                                    <td>{w.window.name.clone()}</td>
                                    <td>{if w.group_id.is_some() { format!("group {}", w.applies_to) } else { w.applies_to.clone() }}</td>
                                    <td>{describe(&w.window)}</td>
                                    <td>{if w.open_now {
                                        format!("open until {}", w.next_close.as_deref().map_or_else(|| "—".into(), short_time))
                                    } else {
                                        w.next_open.as_deref().map_or_else(|| "never again".into(), short_time)
                                    }}</td>
                                    <td class="actions">
                                        <button type="button" on:click=move |_| deleting.set(Some(id))>"Delete…"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            </Transition>
            {move || deleting.get().map(|id| view! {
                <div class="card" role="dialog" aria-labelledby="window-confirm-title" id="window-confirm">
                    <h2 id="window-confirm-title">"Delete this window?"</h2>
                    <p>"Jobs queued for windows no longer start on its hosts in it."</p>
                    <p class="row">
                        <button type="button" id="window-confirm-yes" on:click=move |_| remove(id)>"Delete"</button>
                        <button type="button" on:click=move |_| deleting.set(None)>"Keep it"</button>
                    </p>
                </div>
            })}
            <p class="ok" role="status">{move || notice.get().unwrap_or_default()}</p>
            <form class="card form" id="new-window" on:submit=create>
                <h2>"New window"</h2>
                <label for="window-target">"For"</label>
                <select id="window-target" on:change=move |ev| target.set(event_target_value(&ev))>
                    <option value="">"Choose a host or group…"</option>
                    <Transition fallback=|| ()>
                    {move || groups.get().and_then(Result::ok).unwrap_or_default().into_iter().map(|g| view! {
                        <option value=format!("group:{}", g.id)>{format!("Group {}", g.name)}</option>
                    }).collect_view()}
                    {move || hosts.get().and_then(Result::ok).map(|p| p.hosts).unwrap_or_default().into_iter().map(|h| view! {
                        <option value=format!("host:{}", h.id)>{h.display_name}</option>
                    }).collect_view()}
                    </Transition>
                </select>
                <label for="window-name">"Name"</label>
                <input id="window-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                <label for="window-recurrence">"Repeats"</label>
                <select id="window-recurrence" on:change=move |ev| recurrence.set(event_target_value(&ev))>
                    <option value="once">"Once"</option>
                    <option value="daily">"Every day"</option>
                    <option value="weekly" selected=true>"Every week"</option>
                    <option value="monthly">"Every month"</option>
                </select>
                <Show when=move || recurrence.get() == "weekly">
                    <label for="window-weekday">"On"</label>
                    <select id="window-weekday" on:change=move |ev| weekday.set(event_target_value(&ev))>
                        {(1u8..=7).map(|d| view! {
                            <option value=d.to_string() selected=d == 7>{weekday_name(d)}</option>
                        }).collect_view()}
                    </select>
                </Show>
                <Show when=move || recurrence.get() == "monthly">
                    <label for="window-day">"Day of the month"</label>
                    <input id="window-day" inputmode="numeric" prop:value=move || day_of_month.get()
                        on:input=move |ev| day_of_month.set(event_target_value(&ev))/>
                </Show>
                <label for="window-date">"From (date)"</label>
                <input id="window-date" type="date" prop:value=move || start_date.get()
                    on:input=move |ev| start_date.set(event_target_value(&ev))/>
                <label for="window-time">"Opens at (local time)"</label>
                <input id="window-time" type="time" prop:value=move || start_time.get()
                    on:input=move |ev| start_time.set(event_target_value(&ev))/>
                <label for="window-tz">"Time zone (IANA, e.g. Europe/Berlin)"</label>
                <input id="window-tz" prop:value=move || time_zone.get()
                    on:input=move |ev| time_zone.set(event_target_value(&ev))/>
                <label for="window-duration">"Open for (minutes)"</label>
                <input id="window-duration" inputmode="numeric" prop:value=move || duration.get()
                    on:input=move |ev| duration.set(event_target_value(&ev))/>
                <ErrorLine error/>
                <Submit id="window-create" label="Create the window"/>
            </form>
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_as_a_sentence() {
        let w = WindowSpec {
            name: "n".into(),
            recurrence: Recurrence::Weekly,
            time_zone: "Europe/Berlin".into(),
            start_date: "2026-12-01".into(),
            start_time: "02:00".into(),
            duration_minutes: 90,
            weekday: Some(7),
            day_of_month: None,
            enabled: true,
        };
        assert_eq!(
            describe(&w),
            "every Sunday at 02:00 (Europe/Berlin) for 90 min"
        );
    }
}
