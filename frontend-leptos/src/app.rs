//! The application root: the HTML shell (server only), the session, navigation and the router.
//!
//! The session is whatever `GET /api/v1/auth/me` says, read in the browser. Without one the
//! browser goes to the sign-in page (or to first-run setup while no Admin exists); an account
//! that must enrol a second factor goes to its account page. The server enforces all of this
//! anyway: the UI only spares the user a page of errors.

use crate::api;
use crate::pages::{
    home::NotFound, AccountRoute, AddHostsRoute, AuditRoute, CertificatesRoute, HomeRoute,
    HostRoute, HostsRoute, JobRoute, JobsRoute, LoginRoute, SettingsRoute, SetupRoute, UsersRoute,
    WindowsRoute,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::{provide_meta_context, Title};
use leptos_router::{
    components::{FlatRoutes, Route, Router, A},
    hooks::{use_location, use_navigate},
    path, Lazy, SsrMode,
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
                <link rel="icon" href="/favicon.ico" sizes="32x32"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in: `GET /api/v1/auth/me` as a resource, so the server renders the navigation
/// for the user's role and the browser starts from the same answer.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The answer of `/auth/me` (`None` while it loads).
    pub me: Resource<Result<Me, api::ApiError>>,
    /// Bumped when the session is renewed after the page found it expired: every resource of the
    /// page reads again.
    pub epoch: RwSignal<u64>,
}

impl Session {
    /// The signed-in user, once known.
    pub fn user(&self) -> Option<Me> {
        self.me.get().and_then(Result::ok)
    }

    /// Whether the signed-in user is an Admin.
    pub fn is_admin(&self) -> bool {
        self.me
            .with(|m| matches!(m, Some(Ok(m)) if m.role == shared::vocab::Role::Admin))
    }

    /// Reads the session again (after sign-in or enrolment).
    pub async fn reload(&self) -> Option<Me> {
        let me = api::fetch::<ep::GetMe>().await;
        let user = me.clone().ok();
        self.me.set(Some(me));
        user
    }

    /// Forgets the session here (signed out).
    pub fn forget(&self) {
        self.me
            .set(Some(Err(api::ApiError::local("Signed out.", None))));
    }
}

/// Answers the page request with a redirect to `to` (302 with `Location`), whatever the client
/// accepts: the UI has no server functions, so every request here is a page load.
/// (`leptos_actix::redirect` answers 200 when the request lacks `Accept: text/html`.)
/// A path no page answers stays a 404: "Page not found" is the truer answer.
#[cfg(feature = "ssr")]
pub fn server_redirect(to: &'static str) {
    use actix_web::http::{header, StatusCode};
    if let Some(res) = use_context::<leptos_actix::ResponseOptions>() {
        let not_found = res
            .0
            .read()
            .is_ok_and(|p| p.status == Some(StatusCode::NOT_FOUND));
        if not_found {
            return;
        }
        res.insert_header(header::LOCATION, header::HeaderValue::from_static(to));
        res.set_status(StatusCode::FOUND);
    }
}

/// Root component: header, navigation and the routed page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let epoch = RwSignal::new(0u64);
    let me = Resource::new(
        move || epoch.get(),
        |_| send_wrapper::SendWrapper::new(async move { api::fetch::<ep::GetMe>().await }),
    );
    provide_context(Session { me, epoch });
    view! {
        <Title text="Linux Patch Manager"/>
        <Router>
            <SessionGuard/>
            <header class="topbar">
                <a class="brand" href="/">"Linux Patch Manager"</a>
                <Transition fallback=|| ()>
                    <Nav/>
                </Transition>
            </header>
            <main class="content">
                // Every page renders on the server with its data before the HTML is sent: each
                // read of a page (its role checks included) sits inside a Transition of that page,
                // which the server waits for (the routes are Async) and the browser hydrates from.
                // No boundary wraps the Routes themselves: the route listing renders the app
                // without loading any resource and must reach the Routes to see them.
                <FlatRoutes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("") view={Lazy::<HomeRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("setup") view={Lazy::<SetupRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("login") view={Lazy::<LoginRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("account") view={Lazy::<AccountRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("hosts") view={Lazy::<HostsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("hosts/add") view={Lazy::<AddHostsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("hosts/:id") view={Lazy::<HostRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("jobs") view={Lazy::<JobsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("jobs/:id") view={Lazy::<JobRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("windows") view={Lazy::<WindowsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("certificates") view={Lazy::<CertificatesRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("users") view={Lazy::<UsersRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("settings") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("audit") view={Lazy::<AuditRoute>::new()} ssr=SsrMode::Async/>
                </FlatRoutes>
            </main>
        </Router>
    }
}

/// Sends the user where they must go once the session is known: to Sign in (or first-run setup)
/// without one, after one refresh when the browser holds a session whose access token expired;
/// to the account page while a second factor must be enrolled. On the server, a request with no
/// session at all is redirected before any page is sent.
#[component]
fn SessionGuard() -> impl IntoView {
    let session = expect_context::<Session>();
    let location = use_location();
    let public = move || {
        let p = location.pathname.get_untracked();
        p == "/login" || p == "/setup"
    };
    // Server: a page for signed-in users, asked for without a session cookie, is a redirect (the
    // same empty boundary renders on both sides, so hydration finds what the server sent).
    let redirect = move || {
        let refused = matches!(session.me.get(), Some(Err(e)) if e.is_unauthorized());
        #[cfg(feature = "ssr")]
        if refused && !public() && !api::has_session_cookie() {
            server_redirect("/login");
        }
        let _ = refused;
    };
    let navigate = use_navigate();
    // The refresh tried for this epoch, so a session that stays refused goes to Sign in.
    let tried = RwSignal::new(None::<u64>);
    Effect::new(move |_| {
        let me = session.me.get();
        let navigate = navigate.clone();
        let path = location.pathname.get_untracked();
        match me {
            Some(Err(e)) if e.is_unauthorized() && !public() => {
                let epoch = session.epoch.get_untracked();
                if api::has_session_cookie() && tried.get_untracked() != Some(epoch) {
                    tried.set(Some(epoch));
                    spawn_local(async move {
                        if api::refresh_session().await {
                            session.epoch.update(|e| *e += 1);
                        } else {
                            to_sign_in(navigate).await;
                        }
                    });
                } else {
                    spawn_local(to_sign_in(navigate));
                }
            }
            Some(Ok(m)) if m.mfa_enrolment_pending && path != "/account" => {
                navigate("/account", Default::default());
            }
            _ => {}
        }
    });
    view! {
        <Transition fallback=|| ()>{redirect}</Transition>
    }
}

/// Goes to first-run setup while no Admin exists, else to Sign in.
async fn to_sign_in(navigate: impl Fn(&str, leptos_router::NavigateOptions)) {
    let setup = api::fetch::<ep::GetSetup>().await.ok();
    let to = if setup.is_some_and(|s| s.required) {
        "/setup"
    } else {
        "/login"
    };
    navigate(to, Default::default());
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
            session.forget();
            navigate("/login", Default::default());
        });
    };
    move || {
        let sign_out = sign_out.clone();
        session.user().map(|me| {
            let admin = me.role == shared::vocab::Role::Admin;
            view! {
                <nav class="nav" aria-label="Main">
                    <A href="/">"Overview"</A>
                    <A href="/hosts">"Hosts"</A>
                    <A href="/jobs">"Patch deployment"</A>
                    <A href="/windows">"Maintenance windows"</A>
                    {admin.then(|| view! {
                        <A href="/certificates">"Certificates"</A>
                        <A href="/users">"Users"</A>
                        <A href="/audit">"Audit log"</A>
                        <A href="/settings">"Settings"</A>
                    })}
                    <A href="/account">"Account"</A>
                    <span class="muted" id="signed-in-as" title=me.role.as_str()>{me.username.clone()}</span>
                    <button id="sign-out" type="button" on:click=sign_out>"Sign out"</button>
                </nav>
            }
        })
    }
}
