//! The pages. Each reads its data through [`crate::ui::data`] (resolved on the server while the
//! page renders, so it arrives with the HTML) and changes data through [`crate::api`] once it is
//! in the browser.
//!
//! Every page is a lazily loaded route ([`LazyRoute`]): in the browser its code is a WebAssembly
//! chunk of its own (split off the main module by the build, `scripts/lib.sh` `build_wasm`),
//! fetched when the page is first shown, so a page load downloads the shared runtime and that
//! page, not the whole UI. On the server the routes render directly, and leptos names the modules
//! of the lazy routes a page rendered in its `<head>` (`<link rel="preload">`, from the split
//! manifest the manager provides as `WasmSplitManifest`), so they download beside the main
//! module.

use leptos::prelude::*;
use leptos_router::{lazy_route, LazyRoute};

pub mod account;
pub mod admin;
pub mod audit;
pub mod enroll;
pub mod fleet;
pub mod home;
pub mod jobs;
pub mod settings;
pub mod signin;
pub mod windows;

/// Declares a page's lazily loaded route: `lazy_page!(Route, Page)` makes the unit struct `Route`
/// whose view, in its own chunk, is the component `Page`. The pages start their reads themselves
/// (in the chunk): the server has already sent their data with the HTML, and a page shown by
/// client-side navigation reads it once its chunk is in (a chunk is small and loads once).
macro_rules! lazy_page {
    ($(#[$doc:meta])* $route:ident, $page:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(this: Self) -> AnyView {
                let _ = this;
                view! { <$page/> }.into_any()
            }
        }
    };
}

lazy_page!(
    /// `/`: the overview.
    HomeRoute,
    home::HomePage
);
lazy_page!(
    /// `/setup`: first-run setup.
    SetupRoute,
    signin::SetupPage
);
lazy_page!(
    /// `/login`: sign-in.
    LoginRoute,
    signin::LoginPage
);
lazy_page!(
    /// `/account`: the signed-in user's account.
    AccountRoute,
    account::AccountPage
);
lazy_page!(
    /// `/hosts`: the fleet.
    HostsRoute,
    fleet::HostsPage
);
lazy_page!(
    /// `/hosts/add`: enrollment tokens and discovery (Admins).
    AddHostsRoute,
    enroll::AddHostsPage
);
lazy_page!(
    /// `/hosts/:id`: one host.
    HostRoute,
    fleet::HostPage
);
lazy_page!(
    /// `/jobs`: patch deployment.
    JobsRoute,
    jobs::JobsPage
);
lazy_page!(
    /// `/jobs/:id`: one deployment.
    JobRoute,
    jobs::JobPage
);
lazy_page!(
    /// `/windows`: maintenance windows.
    WindowsRoute,
    windows::WindowsPage
);
lazy_page!(
    /// `/certificates`: agent certificates.
    CertificatesRoute,
    fleet::CertificatesPage
);
lazy_page!(
    /// `/users`: user administration.
    UsersRoute,
    admin::UsersPage
);
lazy_page!(
    /// `/settings`: settings.
    SettingsRoute,
    settings::SettingsPage
);
lazy_page!(
    /// `/audit`: the audit log.
    AuditRoute,
    audit::AuditPage
);
