//! The application root: the HTML shell (server only), the session, navigation and the router.
//!
//! The session is whatever `GET /api/v1/auth/me` says, read in the browser. Without one the
//! browser goes to the sign-in page (or to first-run setup while no Admin exists); an account
//! that must enrol a second factor goes to its account page. The server enforces all of this
//! anyway: the UI only spares the user a page of errors.

use crate::api;
use crate::pages::{
    account::AccountPage,
    admin::UsersPage,
    fleet::{CertificatesPage, HostPage, HostsPage},
    home::{HomePage, NotFound},
    jobs::{JobPage, JobsPage},
    settings::SettingsPage,
    signin::{LoginPage, SetupPage},
    windows::WindowsPage,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::{provide_meta_context, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    hooks::{use_location, use_navigate},
    path,
};
use shared::api::{self as ep, NoBody};
use shared::auth::Me;

/// The full HTML document the server sends; the hydration scripts load `/pkg/<OUTPUT_NAME>.js`.
#[cfg(feature = "ssr")]
pub fn shell(options: leptos::config::LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    // A fresh nonce per page: the hydration scripts carry it, and the page's
    // Content-Security-Policy allows inline scripts with that nonce only.
    #[cfg(feature = "ssr")]
    {
        leptos::nonce::provide_nonce();
        if let (Some(nonce), Some(res)) = (
            leptos::nonce::use_nonce(),
            use_context::<leptos_actix::ResponseOptions>(),
        ) {
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&shared::csp::policy(
                Some(&nonce.to_string()),
            )) {
                res.insert_header(actix_web::http::header::CONTENT_SECURITY_POLICY, v);
            }
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="stylesheet" href="/assets/style.css"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in, as far as the browser knows.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The signed-in user; `None` before the check or when signed out.
    pub me: RwSignal<Option<Me>>,
    /// The check has answered.
    pub checked: RwSignal<bool>,
}

impl Session {
    /// Whether the signed-in user is an Admin.
    pub fn is_admin(&self) -> bool {
        self.me.with(|m| {
            m.as_ref()
                .is_some_and(|m| m.role == shared::vocab::Role::Admin)
        })
    }

    /// Reads the session again (after sign-in or enrolment).
    pub async fn reload(&self) -> Option<Me> {
        let me = api::fetch::<ep::GetMe>().await.ok();
        self.me.set(me.clone());
        self.checked.set(true);
        me
    }
}

/// Root component: header, navigation and the routed page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_context(Session {
        me: RwSignal::new(None),
        checked: RwSignal::new(false),
    });
    view! {
        <Title text="Linux Patch Manager"/>
        <Router>
            <SessionGuard/>
            <header class="topbar">
                <a class="brand" href="/">"Linux Patch Manager"</a>
                <Nav/>
            </header>
            <main class="content">
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("") view=HomePage/>
                    <Route path=path!("setup") view=SetupPage/>
                    <Route path=path!("login") view=LoginPage/>
                    <Route path=path!("account") view=AccountPage/>
                    <Route path=path!("hosts") view=HostsPage/>
                    <Route path=path!("hosts/:id") view=HostPage/>
                    <Route path=path!("jobs") view=JobsPage/>
                    <Route path=path!("jobs/:id") view=JobPage/>
                    <Route path=path!("windows") view=WindowsPage/>
                    <Route path=path!("certificates") view=CertificatesPage/>
                    <Route path=path!("users") view=UsersPage/>
                    <Route path=path!("settings") view=SettingsPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Checks the session once the page is in the browser and sends the user where they must go.
#[component]
fn SessionGuard() -> impl IntoView {
    let session = expect_context::<Session>();
    let navigate = use_navigate();
    let location = use_location();
    Effect::new(move |_| {
        let navigate = navigate.clone();
        let path = location.pathname.get_untracked();
        spawn_local(async move {
            let me = session.reload().await;
            let public = path == "/login" || path == "/setup";
            match me {
                None if !public => {
                    let setup = api::fetch::<ep::GetSetup>().await.ok();
                    let to = if setup.is_some_and(|s| s.required) {
                        "/setup"
                    } else {
                        "/login"
                    };
                    navigate(to, Default::default());
                }
                Some(m) if m.mfa_enrolment_pending && path != "/account" => {
                    navigate("/account", Default::default());
                }
                _ => {}
            }
        });
    });
}

/// Links for the signed-in user, by role, and sign-out.
#[component]
fn Nav() -> impl IntoView {
    let session = expect_context::<Session>();
    let navigate = use_navigate();
    let sign_out = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            // Even if the manager cannot be reached, forget the session here.
            let _ = api::call::<ep::Logout>((), &NoBody).await;
            session.me.set(None);
            navigate("/login", Default::default());
        });
    };
    view! {
        <Show when=move || session.me.with(Option::is_some)>
            <nav class="nav" aria-label="Main">
                <A href="/">"Overview"</A>
                <A href="/hosts">"Hosts"</A>
                <A href="/jobs">"Patch deployment"</A>
                <A href="/windows">"Maintenance windows"</A>
                <Show when=move || session.is_admin()>
                    <A href="/certificates">"Certificates"</A>
                    <A href="/users">"Users"</A>
                    <A href="/settings">"Settings"</A>
                </Show>
                <A href="/account">"Account"</A>
                <span class="muted" id="signed-in-as">
                    {move || session.me.with(|m| m.as_ref().map(|m| m.username.clone()).unwrap_or_default())}
                </span>
                <button id="sign-out" type="button" on:click=sign_out.clone()>"Sign out"</button>
            </nav>
        </Show>
    }
}
