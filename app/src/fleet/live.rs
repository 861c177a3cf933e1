//! The live event stream to browsers: a signed-in user asks for a single-use ticket (30 s), then
//! opens `/api/v1/events/ws?ticket=…`; WebSocket handshakes carry no `Authorization` header and
//! cookies would make the socket open to cross-site pages, so the ticket is the credential. The
//! socket forwards the event hub's host state changes and patch jobs' events, filtered to the
//! hosts the ticket's user may see. Whenever access rights change (a sign-out, an account, role or group change:
//! [`super::Fleet::access_changed`]), and at least every [`SCOPE_REFRESH`], the stream checks
//! again that the session is alive and the account enabled, and reads the user's role and groups
//! anew, so a sign-out, disabling or demotion closes or narrows it at once. It closes after
//! [`MAX_LIFETIME`], and the page asks for a new ticket with its session. Users who still owe a
//! second factor get no ticket.

use crate::auth::access::Scope;
use crate::auth::identity::Identity;
use crate::state::AppState;
use actix_ws::Message;
use sha2::{Digest, Sha256};
use shared::fleet::{EventTicket, LiveEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How long a ticket opens the stream.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);
/// How often an open stream reads its user's scope again.
pub const SCOPE_REFRESH: Duration = Duration::from_secs(30);
/// Longest life of one stream (an access token's).
pub const MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Tickets outstanding at most (older ones are dropped first).
const MAX_TICKETS: usize = 10_000;

/// Outstanding tickets, by SHA-256 of the ticket.
#[derive(Debug, Default)]
pub struct Tickets(Mutex<HashMap<[u8; 32], (Identity, Instant)>>);

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A new ticket for `identity`.
    pub fn issue(&self, identity: Identity) -> Result<EventTicket, String> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system random generator failed".to_owned())?;
        let ticket = hex::encode(bytes);
        let now = Instant::now();
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|_, (_, expires)| *expires > now);
        if map.len() >= MAX_TICKETS {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&ticket), (identity, now + TICKET_LIFETIME));
        Ok(EventTicket {
            ticket,
            expires_in_secs: TICKET_LIFETIME.as_secs(),
        })
    }

    /// The identity a valid ticket was issued to; the ticket is used up either way.
    pub fn redeem(&self, ticket: &str) -> Option<Identity> {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (identity, expires) = map.remove(&digest(ticket))?;
        (expires > Instant::now()).then_some(identity)
    }
}

/// The hosts the ticket's user may see now (`Some(None)`: all), or `None` when they may see
/// nothing any more: the session ended, the account was disabled or deleted. The role is read
/// from the database, so a demotion applies at the next check, as on every request.
async fn visible(state: &AppState, identity: &Identity) -> Option<Option<HashSet<i64>>> {
    let (user_id, session, now) = (
        identity.user_id,
        identity.session.clone(),
        state.clock.now(),
    );
    let role = state
        .db
        .run(move |c| {
            let alive = crate::db::sessions::is_active_for(c, &session, user_id, now)?;
            let user = crate::db::users::find(c, user_id)?;
            Ok(user.filter(|u| alive && !u.is_disabled).map(|u| u.role))
        })
        .await
        .ok()??;
    let mut current = identity.clone();
    current.role = role;
    let scope: Scope = crate::auth::access::scope_of(&state.db, &current)
        .await
        .ok()?;
    let ids = state.db.run(move |c| scope.host_ids(c)).await.ok()?;
    Some(ids.map(|v| v.into_iter().collect()))
}

/// The event to send from a hub's answer: a `Resync` when the stream fell behind, `None` when
/// the hub is gone.
fn received(event: Result<LiveEvent, RecvError>) -> Option<LiveEvent> {
    match event {
        Ok(e) => Some(e),
        Err(RecvError::Lagged(_)) => Some(LiveEvent::Resync),
        Err(RecvError::Closed) => None,
    }
}

/// Sends one event; `false` when the socket is gone.
async fn send(session: &mut actix_ws::Session, live: &LiveEvent) -> bool {
    match serde_json::to_string(live) {
        Ok(text) => session.text(text).await.is_ok(),
        Err(_) => true,
    }
}

/// Whether a user who may see `hosts` (`None`: all) may see an event: a host's state or its row
/// of a job when they see the host, a job's state when they see one of its hosts.
fn may_see(hosts: Option<&HashSet<i64>>, event: &LiveEvent) -> bool {
    let Some(hosts) = hosts else { return true };
    match event {
        LiveEvent::JobTarget(e) => hosts.contains(&i64::from(e.host_id)),
        LiveEvent::JobState(e) => e.host_ids.iter().any(|h| hosts.contains(&i64::from(*h))),
        LiveEvent::HostState(e) => hosts.contains(&i64::from(e.host_id)),
        LiveEvent::Resync => true,
    }
}

/// Forwards `events` and `jobs` (subscribed, like `access`, before the upgrade was answered, so nothing
/// published after the handshake is missed) to one socket until either side closes, the user may
/// see nothing any more, or the stream's lifetime ends.
pub async fn forward(
    state: AppState,
    identity: Identity,
    mut events: tokio::sync::broadcast::Receiver<shared::fleet::HostStateEvent>,
    mut jobs: tokio::sync::broadcast::Receiver<LiveEvent>,
    mut access: tokio::sync::watch::Receiver<u64>,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let Some(mut hosts) = visible(&state, &identity).await else {
        let _ = session.close(None).await;
        return;
    };
    // The stream's subscriptions were taken before the handshake was answered, but the page read
    // what it shows before it asked for the stream: a change in between is on neither. The first
    // frame says so (a page reads again on a `Resync`), so nothing falls into that gap.
    if !send(&mut session, &LiveEvent::Resync).await {
        return;
    }
    let ends = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(ends);
    let mut refresh = tokio::time::interval(SCOPE_REFRESH);
    refresh.tick().await;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(live) = received(event.map(LiveEvent::HostState)) else { break };
                if may_see(hosts.as_ref(), &live) && !send(&mut session, &live).await {
                    return;
                }
            }
            event = jobs.recv() => {
                let Some(live) = received(event) else { break };
                if may_see(hosts.as_ref(), &live) && !send(&mut session, &live).await {
                    return;
                }
            }
            _ = refresh.tick() => match visible(&state, &identity).await {
                Some(h) => hosts = h,
                None => break,
            },
            changed = access.changed() => match (changed, visible(&state, &identity).await) {
                (Ok(()), Some(h)) => hosts = h,
                _ => break,
            },
            () = &mut ends => break,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> Identity {
        Identity {
            user_id: 1,
            role: "admin".into(),
            session: "s".into(),
            via_cookie: true,
            mfa_enrolment_pending: false,
        }
    }

    #[test]
    fn a_ticket_opens_once() {
        let tickets = Tickets::default();
        let t = tickets.issue(someone()).unwrap();
        assert_eq!(t.ticket.len(), 64);
        assert_eq!(tickets.redeem(&t.ticket).map(|i| i.user_id), Some(1));
        assert!(tickets.redeem(&t.ticket).is_none(), "used up");
        assert!(tickets.redeem("forged").is_none());
    }
}
