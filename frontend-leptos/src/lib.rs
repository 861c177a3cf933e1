//! The patch-manager web UI.
//!
//! One set of Leptos components serves both sides: with feature `ssr` the manager renders them to
//! HTML on the server (through `leptos_actix`); with feature `hydrate` the same components are
//! compiled to WebAssembly and attach to that HTML in the browser, so the page is readable before
//! any script runs and interactive once the bundle has loaded.
//!
//! Data the pages need from the server comes through server functions under [`SERVER_FN_PREFIX`];
//! on the server those read a [`ServerContext`] that the manager provides.

pub mod app;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "ssr")]
pub use app::shell;
pub use app::App;
#[cfg(feature = "ssr")]
pub use server::{OverviewFuture, ServerContext};

/// Path prefix under which the manager routes Leptos server-function calls.
pub const SERVER_FN_PREFIX: &str = "/sfn";

/// Base name of the wasm-bindgen output (`/pkg/<name>.js`, `/pkg/<name>_bg.wasm`); the build
/// script and `LeptosOptions::output_name` must agree on it or the page never hydrates.
pub const OUTPUT_NAME: &str = "patch_manager_ui";

/// Entry point called by the hydration script in the browser.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
