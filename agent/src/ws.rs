//! `GET /api/v1/ws/jobs`: live job events as JSON text frames (see `shared::agent::JobEvent`).
//! Kept thin on purpose: a subscription to the job manager's broadcast, forwarded frame by frame.

use crate::api::AgentState;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use tokio::sync::broadcast::error::RecvError;

/// Upgrades the connection and forwards every job event until either side closes.
pub async fn job_events(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AgentState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream.max_frame_size(64 * 1024);
    let mut events = state.jobs.subscribe();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => {
                    let text = match event {
                        Ok(e) => serde_json::to_string(&e).unwrap_or_default(),
                        // A slow reader is told how much it missed rather than silently skipped.
                        Err(RecvError::Lagged(n)) => serde_json::json!({ "type": "lagged", "missed": n }).to_string(),
                        Err(RecvError::Closed) => break,
                    };
                    if session.text(text).await.is_err() {
                        return;
                    }
                }
                msg = stream.recv() => match msg {
                    Some(Ok(Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
