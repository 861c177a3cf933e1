//! Small pieces every page uses: API data as resources, the one message of a form or action,
//! confirmations, role gates, empty states and times.

use crate::api::{self, ApiError};
use crate::app::Session;
use leptos::prelude::*;
use leptos::task::spawn_local;
use send_wrapper::SendWrapper;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::api::{Endpoint, NoBody};

/// Data read from the API: `None` while loading. A Leptos resource: on the server it is read
/// (in-process, with the request's cookies) while the page renders, and its outcome travels with
/// the HTML, so the page shows its data on first paint and the browser does not ask again.
pub type Loaded<T> = Resource<Result<T, ApiError>>;

/// Reads endpoint `E` with the parameters `params` gives; read again when they change or the
/// session is renewed (a page that found its access token expired).
pub fn data<E>(params: impl Fn() -> E::Params + Send + Sync + 'static) -> Loaded<E::Response>
where
    E: Endpoint<Request = NoBody>,
    E::Params: PartialEq + Clone + Send + Sync + 'static,
    E::Response: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    data_with_query::<E>(params, String::new)
}

/// [`data`] with a query string (`?…`) after the path.
pub fn data_with_query<E>(
    params: impl Fn() -> E::Params + Send + Sync + 'static,
    query: impl Fn() -> String + Send + Sync + 'static,
) -> Loaded<E::Response>
where
    E: Endpoint<Request = NoBody>,
    E::Params: PartialEq + Clone + Send + Sync + 'static,
    E::Response: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let epoch = use_context::<Session>().map(|s| s.epoch);
    let resource = Resource::new(
        move || (epoch.map(|e| e.get()), params(), query()),
        // The future is not `Send` (browser fetch; the manager's in-process API on the server),
        // and needs not be: both sides poll it on the thread that made it.
        |(_, p, q)| SendWrapper::new(async move { api::call_with_query::<E>(p, &q).await }),
    );
    reread_if_renewed(resource, epoch);
    resource
}

/// A resource made while the page hydrates starts from the server's answer, which the server
/// read with the session the request carried. Pages are lazily loaded, so a page hydrates only
/// once its code has arrived, and by then the session guard may already have renewed an expired
/// session (the epoch moved on from the server's 0): such a resource would keep the server's
/// "sign-in required" forever, as the epoch it follows will not change again. It reads again once
/// hydration is over.
fn reread_if_renewed<T>(resource: Resource<T>, epoch: Option<RwSignal<u64>>)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let renewed = epoch.is_some_and(|e| e.get_untracked() > 0);
    let hydrating = Owner::current_shared_context().is_some_and(|sc| sc.during_hydration());
    if renewed && hydrating {
        Effect::new(move |_| untrack(|| resource.refetch()));
    }
}

/// [`data`] for a page whose address may not name anything (`/hosts/abc`): with no parameters
/// nothing is asked, and the outcome says so.
pub fn data_if<E>(
    params: impl Fn() -> Option<E::Params> + Send + Sync + 'static,
) -> Loaded<E::Response>
where
    E: Endpoint<Request = NoBody>,
    E::Params: PartialEq + Clone + Send + Sync + 'static,
    E::Response: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let epoch = use_context::<Session>().map(|s| s.epoch);
    let resource = Resource::new(
        move || (epoch.map(|e| e.get()), params()),
        |(_, p)| {
            SendWrapper::new(async move {
                match p {
                    Some(p) => api::call::<E>(p, &NoBody).await,
                    None => Err(ApiError::local("The address names nothing.", None)),
                }
            })
        },
    );
    reread_if_renewed(resource, epoch);
    resource
}

/// Reads endpoint `E` (a read without parameters).
pub fn load_on_mount<E>() -> Loaded<E::Response>
where
    E: Endpoint<Params = (), Request = NoBody>,
    E::Response: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    data::<E>(|| ())
}

/// Reads endpoint `E` again now into `target` (after a change the page made).
pub fn load<E>(params: E::Params, target: Loaded<E::Response>)
where
    E: Endpoint<Request = NoBody>,
    E::Params: 'static,
    E::Response: Send + Sync + 'static,
{
    spawn_local(async move {
        let r = api::call::<E>(params, &NoBody).await;
        let _ = target.try_set(Some(r));
    });
}

/// `true` once the WebAssembly bundle runs the page.
pub fn hydrated() -> ReadSignal<bool> {
    let (get, set) = signal(false);
    Effect::new(move |_| set.set(true));
    get
}

/// A form's submit button. It stays disabled until the page is hydrated, so a form typed into
/// before the bundle loads cannot fall back to a native submission (which would put a password in
/// the URL), and while a request is running.
#[component]
pub fn Submit(
    id: &'static str,
    label: &'static str,
    #[prop(into, optional)] busy: Option<Signal<bool>>,
) -> impl IntoView {
    let ready = hydrated();
    view! {
        <button
            id=id
            type="submit"
            disabled=move || !ready.get() || busy.is_some_and(|b| b.get())
        >
            {label}
        </button>
    }
}

/// The error line of a sign-in form (which has nothing else to say); empty when there is none.
#[component]
pub fn ErrorLine(error: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <p class="error" role="alert" data-testid="error">{move || error.get().unwrap_or_default()}</p>
    }
}

/// The outcome of the last thing a form or an action did: one message at a time, so a success
/// never stays beside a later failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// It worked; what happened.
    Done(String),
    /// It failed; why (and about which field, when the manager said).
    Failed(ApiError),
}

/// The message slot of one form or action.
pub type Notice = RwSignal<Option<Note>>;

/// A new, empty [`Notice`].
pub fn notice() -> Notice {
    RwSignal::new(None)
}

/// Sets `notice` from an API outcome: `done` on success, the error on failure.
pub fn report<T>(notice: Notice, outcome: &Result<T, ApiError>, done: impl FnOnce(&T) -> String) {
    notice.set(Some(match outcome {
        Ok(v) => Note::Done(done(v)),
        Err(e) => Note::Failed(e.clone()),
    }));
}

/// Sets `notice` to a failure the page found itself (before asking the manager).
pub fn refuse(notice: Notice, message: impl Into<String>, field: Option<&str>) {
    notice.set(Some(Note::Failed(ApiError::local(message, field))));
}

/// The message of a form or action, placed right under it. A failure about one of `fields` is
/// shown beside that field instead (by [`FieldError`]).
#[component]
pub fn NoticeLine(
    notice: Notice,
    #[prop(default = "")] id: &'static str,
    #[prop(default = &[])] fields: &'static [&'static str],
) -> impl IntoView {
    move || {
        match notice.get() {
        Some(Note::Done(text)) => {
            view! { <p class="ok notice-line" role="status" id=id data-testid="notice">{text}</p> }
                .into_any()
        }
        Some(Note::Failed(e))
            if !e
                .field
                .as_deref()
                .is_some_and(|f| fields.iter().any(|x| field_matches(x, f))) =>
        {
            view! { <p class="error notice-line" role="alert" id=id data-testid="error">{e.message}</p> }
                .into_any()
        }
        _ => ().into_any(),
    }
    }
}

/// A failure about `field`, shown beside it.
#[component]
pub fn FieldError(notice: Notice, field: &'static str) -> impl IntoView {
    move || {
        match notice.get() {
        Some(Note::Failed(e)) if e.field.as_deref().is_some_and(|f| field_matches(field, f)) => {
            view! { <span class="error field-error" role="alert" data-field=field>{e.message}</span> }
                .into_any()
        }
        _ => ().into_any(),
    }
    }
}

/// `entries` covers `entries[3]` and `group_ids` covers `group_ids[0]`.
fn field_matches(field: &str, reported: &str) -> bool {
    reported == field
        || reported
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
}

/// A button for an action that cannot be undone: the first click names what will happen and
/// offers the action and Cancel; nothing runs until the second.
#[component]
pub fn Confirm<F>(
    /// `data-action` of the button (`renew`, `revoke`…); the confirming buttons get
    /// `<action>-confirm` and `<action>-cancel`.
    action: &'static str,
    /// The button's text.
    label: &'static str,
    /// What will happen, asked as a question.
    #[prop(into)]
    question: String,
    /// The confirming button's text.
    confirm: &'static str,
    /// Runs on confirmation.
    on_confirm: F,
    /// A destructive action (red buttons).
    #[prop(optional)]
    danger: bool,
) -> impl IntoView
where
    F: Fn() + Copy + Send + Sync + 'static,
{
    let asking = RwSignal::new(false);
    let class = if danger { "danger" } else { "" };
    move || {
        if asking.get() {
            let question = question.clone();
            view! {
                <span class="confirm" role="group">
                    <span class="warn">{question}</span>
                    <button type="button" class=class data-action=format!("{action}-confirm")
                        on:click=move |_| { asking.set(false); on_confirm(); }>{confirm}</button>
                    <button type="button" data-action=format!("{action}-cancel")
                        on:click=move |_| asking.set(false)>"Cancel"</button>
                </span>
            }
            .into_any()
        } else {
            view! {
                <button type="button" class=class data-action=action on:click=move |_| asking.set(true)>
                    {label}
                </button>
            }
            .into_any()
        }
    }
}

/// An Admin's page: shown to Admins; anyone else is told it is not for them and given the way
/// back. (The API refuses them anyway; this spares them a page of forms that cannot work.)
#[component]
pub fn AdminOnly(
    /// The page's title, for the refusal.
    title: &'static str,
    children: ChildrenFn,
) -> impl IntoView {
    let session = expect_context::<Session>();
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || match session.user() {
                Some(m) if m.role == shared::vocab::Role::Admin => children().into_any(),
                Some(_) => view! {
                    <section class="page narrow" id="admins-only">
                        <h1>{title}</h1>
                        <p>"This page is for Admins. Your account is an Operator's: it works with the hosts, deployments and maintenance windows of its groups."</p>
                        <p><a href="/">"Back to the overview"</a></p>
                    </section>
                }.into_any(),
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            }}
        </Transition>
    }
}

/// The `<option>`s of a group `<select>`, one per group, once the groups are read (the select's
/// own first option, "none" or "any", stays the caller's).
#[component]
pub fn GroupOptions(groups: Loaded<Vec<shared::fleet::GroupInfo>>) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || match groups.get() {
                Some(Ok(g)) => g.into_iter().map(|g| view! { <option value=g.id.to_string()>{g.name}</option> }).collect_view().into_any(),
                _ => ().into_any(),
            }}
        </Transition>
    }
}

/// What an empty list is for, and the one action that fills it (when the user may take it).
#[component]
pub fn Empty(
    /// What the list holds and why it is empty.
    #[prop(into)]
    text: String,
    /// The action's link and its text.
    #[prop(optional)]
    action: Option<(&'static str, &'static str)>,
) -> impl IntoView {
    view! {
        <div class="empty" data-testid="empty">
            <p>{text}</p>
            {action.map(|(href, label)| view! { <p><a class="button" href=href>{label}</a></p> })}
        </div>
    }
}

/// `2026-11-24T10:00:00+00:00` → `2026-11-24 10:00 UTC`.
pub fn short_time(rfc3339: &str) -> String {
    let t = rfc3339.replace('T', " ");
    match t.get(..16) {
        Some(head) => format!("{head} UTC"),
        None => t,
    }
}

/// `short_time` of an optional time, or a dash.
pub fn maybe_time(t: Option<&str>) -> String {
    t.map_or_else(|| "—".to_owned(), short_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_short() {
        assert_eq!(
            short_time("2026-11-24T10:05:09+00:00"),
            "2026-11-24 10:05 UTC"
        );
        assert_eq!(maybe_time(None), "—");
    }

    #[test]
    fn field_errors_cover_their_items() {
        assert!(field_matches("entries", "entries[3]"));
        assert!(field_matches("username", "username"));
        assert!(!field_matches("user", "username"));
    }
}
