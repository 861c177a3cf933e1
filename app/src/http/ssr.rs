//! The server-side renderer's way to the manager's own API: every read a page makes while it
//! renders (`/api/v1/hosts?…` for the Hosts page) is served by the same routes, access gate and
//! handlers as a browser's request, in-process, with the cookies and client address of the page
//! request. The page arrives with its data and hydrates from it without asking again; a user sees
//! exactly what the API would show them, because it is the API that answers.
//!
//! Each HTTP worker thread builds the API's service once per server (it is not `Send`, and a
//! worker's tasks all run on its thread) and keeps it for the server's life.

use crate::api;
use crate::state::AppState;
use actix_service::{boxed::RcService, IntoServiceFactory, Service, ServiceExt, ServiceFactory};
use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::{web, App};
use frontend_leptos::api::{ServerApi, ServerCall};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The API as one service on this thread.
type ApiService = RcService<actix_http::Request, ServiceResponse<BoxBody>, actix_web::Error>;

/// Distinguishes the servers of one process (tests run several).
static NEXT_SERVER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SERVICES: RefCell<HashMap<u64, ApiService>> = RefCell::new(HashMap::new());
}

/// The [`ServerApi`] of one server: `state` and the body limit its routes are configured with.
pub fn server_api(state: AppState, body_limit: usize) -> ServerApi {
    let server = NEXT_SERVER.fetch_add(1, Ordering::Relaxed);
    ServerApi(Arc::new(move |call: ServerCall| {
        let state = state.clone();
        Box::pin(async move { dispatch(server, state, body_limit, call).await })
    }))
}

async fn dispatch(
    server: u64,
    state: AppState,
    body_limit: usize,
    call: ServerCall,
) -> (u16, String) {
    let service = match SERVICES.with(|s| s.borrow().get(&server).cloned()) {
        Some(s) => s,
        None => match build(state, body_limit).await {
            Ok(s) => {
                SERVICES.with(|m| m.borrow_mut().insert(server, s.clone()));
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "the in-process API for page rendering cannot start");
                return answer_of_error(&e).await;
            }
        },
    };
    let mut req = actix_web::test::TestRequest::get()
        .uri(&call.path)
        .insert_header((header::ACCEPT, "application/json"));
    if let Some(cookie) = call.cookie {
        req = req.insert_header((header::COOKIE, cookie));
    }
    if let Some(forwarded) = call.forwarded_for {
        req = req.insert_header(("x-forwarded-for", forwarded));
    }
    if let Some(peer) = call.peer {
        req = req.peer_addr(peer);
    }
    match service.call(req.to_request()).await {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, body_text(res.into_body()).await)
        }
        Err(e) => answer_of_error(&e).await,
    }
}

async fn build(state: AppState, body_limit: usize) -> Result<ApiService, actix_web::Error> {
    let app = App::new()
        .app_data(web::Data::new(state))
        .configure(|cfg| api::configure(cfg, body_limit))
        .default_service(web::to(api::not_found));
    let service = app
        .into_factory()
        .new_service(actix_web::dev::AppConfig::default())
        .await
        .map_err(|()| {
            actix_web::error::ErrorInternalServerError("the API's routes could not be set up")
        })?;
    Ok(actix_service::boxed::rc_service(
        service.map(ServiceResponse::map_into_boxed_body),
    ))
}

async fn answer_of_error(e: &actix_web::Error) -> (u16, String) {
    let res = e.as_response_error().error_response();
    (res.status().as_u16(), body_text(res.into_body()).await)
}

async fn body_text(body: impl MessageBody) -> String {
    match to_bytes(body).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}
