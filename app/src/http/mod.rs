//! The HTTP edge: everything between a TCP connection and a handler, written once. The server
//! ([`build_server`]) applies, outermost first: the request context ([`middleware`]: request id,
//! log line, security headers, JSON envelope for bare errors, draining of unread bodies), the
//! source-address allow-list ([`allow_list`]), compression, then routing; each JSON resource sits
//! behind the access gate ([`gate`]). Every refusal on the way is a response, so it passes back
//! through the request context like any other answer. [`errors`] maps [`crate::error::AppError`]
//! to the envelope; [`extract`] reads JSON bodies naming the field a refusal concerns; [`rate`] is
//! the one rate-limiter type.

pub mod allow_list;
pub mod bundle;
pub mod client;
pub mod downloads;
pub mod errors;
pub mod extract;
pub mod gate;
pub mod middleware;
pub mod rate;
pub mod ssr;

use crate::api;
use crate::state::AppState;
use actix_files::Files;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use leptos::config::{Env, LeptosOptions};
use leptos_actix::{generate_route_list, LeptosRoutes};
use middleware::request_context;
use std::net::{SocketAddr, TcpListener};

/// Builds the HTTP server on `listener`: JSON API, static bundle and assets, server-rendered
/// pages, behind the edge middleware. HTTPS when `tls` is given (HTTP/1.1 and HTTP/2 by ALPN).
pub fn build_server(
    state: AppState,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let server_cfg = state.config.server.clone();
    let pkg_dir = server_cfg.site_root.join("pkg");
    let bundle = bundle::Bundle::load(&pkg_dir).map_err(std::io::Error::other)?;
    match &bundle.manifest {
        Some(m) => tracing::info!(bundle = %m.dir, profile = %m.profile, "web UI bundle"),
        None => tracing::warn!(
            dir = %pkg_dir.display(),
            "no web UI bundle (pkg/bundle.json): pages render but do not become interactive; \
             build it with scripts/run.sh or scripts/lib.sh build_wasm"
        ),
    }
    let leptos_options = LeptosOptions::builder()
        .output_name(bundle.output_name().unwrap_or(frontend_leptos::OUTPUT_NAME))
        .site_root(server_cfg.site_root.to_string_lossy().into_owned())
        .site_pkg_dir(bundle.pkg_dir().unwrap_or_else(|| "pkg".to_owned()))
        .env(Env::PROD)
        .site_addr(addr)
        .build();
    // Which modules each lazy route needs: a page names those of the routes it rendered. Built
    // once; each page gets a handle to it.
    let split_manifest = bundle
        .split_manifest()
        .map(|split| leptos::WasmSplitManifest(leptos::prelude::ArcStoredValue::new(split)));
    let bundle = web::Data::new(bundle);
    let assets_dir = server_cfg.assets_dir.clone();
    let body_limit = server_cfg.body_limit_bytes;

    // Pages read their data through the API in-process while they render (see `ssr`).
    let server_api = ssr::server_api(state.clone(), body_limit);
    let mut server = HttpServer::new(move || {
        let routes = generate_route_list(frontend_leptos::App);
        let page_context = {
            let server_api = server_api.clone();
            let split_manifest = split_manifest.clone();
            move || {
                leptos::prelude::provide_context(server_api.clone());
                if let Some(split) = split_manifest.clone() {
                    leptos::prelude::provide_context(split);
                }
            }
        };
        let opts = leptos_options.clone();
        let not_found_opts = leptos_options.clone();
        let favicon = assets_dir.join("favicon.ico");
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(leptos_options.clone()))
            .wrap(from_fn(allow_list::guard))
            .wrap(Compress::default())
            .wrap(from_fn(request_context))
            .configure(|cfg| api::configure(cfg, body_limit))
            .app_data(bundle.clone())
            .route("/pkg/{dir}/{file}", web::get().to(bundle::serve))
            .route(
                downloads::AGENT_PACKAGE_PATH,
                web::get().to(downloads::agent_package),
            )
            .service(Files::new("/assets", &assets_dir).use_etag(true))
            .route(
                "/favicon.ico",
                web::get().to(move || {
                    let favicon = favicon.clone();
                    async move { actix_files::NamedFile::open_async(favicon).await }
                }),
            )
            .leptos_routes_with_context(routes, page_context.clone(), move || {
                frontend_leptos::shell(opts.clone())
            })
            // An unknown API path is a JSON 404; any other unknown path is the UI's "Page not
            // found" (also a 404).
            .service(web::scope("/api").default_service(web::to(api::not_found)))
            .default_service(leptos_actix::render_app_async_with_context(
                page_context,
                move || frontend_leptos::shell(not_found_opts.clone()),
                leptos_router::Method::Get,
            ))
    })
    .shutdown_timeout(10);
    server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    if server_cfg.workers > 0 {
        server = server.workers(server_cfg.workers);
    }
    Ok(server.run())
}
