//! Small pieces every page uses: loading API data into a signal, showing errors and times.

use crate::api::{self, ApiError};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::api::{Endpoint, NoBody};

/// Data loaded from the API: `None` while loading.
pub type Loaded<T> = RwSignal<Option<Result<T, ApiError>>>;

/// A new, empty [`Loaded`].
pub fn loaded<T: Send + Sync + 'static>() -> Loaded<T> {
    RwSignal::new(None)
}

/// Calls endpoint `E` (a read) into `target` (in the browser; the server renders the loading
/// state).
pub fn load<E>(params: E::Params, target: Loaded<E::Response>)
where
    E: Endpoint<Request = NoBody>,
    E::Params: 'static,
    E::Response: Send + Sync + 'static,
{
    spawn_local(async move {
        let r = api::call::<E>(params, &NoBody).await;
        target.set(Some(r));
    });
}

/// Loads endpoint `E` (a read without parameters) once the page is in the browser.
pub fn load_on_mount<E>() -> Loaded<E::Response>
where
    E: Endpoint<Params = (), Request = NoBody>,
    E::Response: Send + Sync + 'static,
{
    let target = loaded();
    Effect::new(move |_| load::<E>((), target));
    target
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

/// An error line, announced to screen readers; empty when there is none.
#[component]
pub fn ErrorLine(error: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <p class="error" role="alert" data-testid="error">{move || error.get().unwrap_or_default()}</p>
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
}
