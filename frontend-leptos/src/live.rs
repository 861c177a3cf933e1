//! The live event stream in the browser: a page subscribes while it is shown; the stream is opened
//! with a fresh single-use ticket (the session's cookie is never sent to the socket), and opened
//! again with a new ticket a few seconds after it closes (the manager ends each stream after
//! fifteen minutes). On the server this does nothing: pages render their data, events come later.

use shared::fleet::LiveEvent;

/// Calls `on_event` for every live event while the calling component is mounted.
pub fn subscribe(on_event: impl Fn(LiveEvent) + 'static) {
    #[cfg(feature = "hydrate")]
    browser::subscribe(std::rc::Rc::new(on_event));
    #[cfg(not(feature = "hydrate"))]
    let _ = on_event;
}

/// Waits `ms` milliseconds in the browser (a page following a long operation); on the server it
/// returns at once.
pub async fn pause(ms: i32) {
    #[cfg(feature = "hydrate")]
    browser::sleep(ms).await;
    #[cfg(not(feature = "hydrate"))]
    let _ = ms;
}

#[cfg(feature = "hydrate")]
mod browser {
    use crate::api;
    use futures_util::StreamExt;
    use gloo_net::websocket::{futures::WebSocket, Message};
    use leptos::prelude::*;
    use leptos::task::spawn_local;
    use shared::api::{self as ep, NoBody};
    use shared::fleet::LiveEvent;
    use std::rc::Rc;

    /// Wait before opening the stream again.
    const RECONNECT_MS: i32 = 3000;

    pub fn subscribe(on_event: Rc<dyn Fn(LiveEvent)>) {
        let (task, handle) = futures_util::future::abortable(run(on_event));
        // Leaving the page drops the task, and with it the socket (closed on drop).
        on_cleanup(move || handle.abort());
        spawn_local(async move {
            let _ = task.await;
        });
    }

    fn url(ticket: &str) -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = match location.protocol().ok()?.as_str() {
            "https:" => "wss",
            _ => "ws",
        };
        Some(format!(
            "{scheme}://{}/api/v1/events/ws?ticket={ticket}",
            location.host().ok()?
        ))
    }

    pub async fn sleep(ms: i32) {
        let promise = wasm_bindgen_futures::js_sys::Promise::new(&mut |resolve, _| {
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }

    async fn run(on_event: Rc<dyn Fn(LiveEvent)>) {
        loop {
            let ticket = api::call::<ep::IssueEventTicket>((), &NoBody).await;
            if let Some(mut socket) = ticket
                .ok()
                .and_then(|t| url(&t.ticket))
                .and_then(|u| WebSocket::open(&u).ok())
            {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        if let Ok(event) = serde_json::from_str::<LiveEvent>(&text) {
                            on_event(event);
                        }
                    }
                }
                // Events may have been missed while the stream was down.
                on_event(LiveEvent::Resync);
            }
            sleep(RECONNECT_MS).await;
        }
    }
}
