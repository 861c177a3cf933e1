//! The patch-manager web UI.
//!
//! One set of Leptos components serves both sides: with feature `ssr` the manager renders them to
//! HTML on the server (through `leptos_actix`); with feature `hydrate` the same components are
//! compiled to WebAssembly and attach to that HTML in the browser, so the page is readable before
//! any script runs and interactive once the bundle has loaded.
//!
//! Pages read their data from the manager's JSON API ([`api`]) only, so the API's access rules are
//! the only ones. On the server the reads go to the API in-process with the cookies of the page
//! request ([`api::ServerApi`], provided by the manager), so a page arrives with its data and
//! hydrates from it; in the browser they go over HTTP.

pub mod api;
pub mod app;
pub mod live;
pub mod pages;
pub mod ui;
pub mod webauthn;

#[cfg(feature = "ssr")]
pub use app::shell;
pub use app::App;

/// Base name of the wasm-bindgen output (`/pkg/<name>.js`, `/pkg/<name>_bg.wasm`); the build
/// script and `LeptosOptions::output_name` must agree on it or the page never hydrates.
pub const OUTPUT_NAME: &str = "patch_manager_ui";

/// Entry point called by the hydration script in the browser.
///
/// Hydration is asynchronous: the routes are lazily loaded ([`pages`]), so the page's chunk must
/// be in before the router can attach to the server's HTML (the server named it for preloading,
/// so it is usually there already).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // `hydrate_from_async` sets up leptos' executor (wasm-bindgen-futures) before it renders.
    wasm_bindgen_futures::spawn_local(async {
        let Some(body) = leptos::prelude::document().body() else {
            return;
        };
        let owner = leptos::mount::hydrate_from_async(body, App).await;
        owner.forget();
        // The page is interactive from here: say so where tools can see it (a `lpm-hydrated`
        // performance mark for DevTools and scripts/bench-ui.sh, `data-hydrated` on <html>).
        if let Some(w) = web_sys::window() {
            if let Some(p) = w.performance() {
                let _ = p.mark("lpm-hydrated");
            }
            if let Some(html) = w.document().and_then(|d| d.document_element()) {
                let _ = html.set_attribute("data-hydrated", "true");
            }
        }
    });
}
