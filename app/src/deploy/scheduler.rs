//! The scheduler actor: knows every maintenance window, computes its next opening and closing
//! ([`super::windows::Calendar`]) and tells the host actors concerned ("window opened until …",
//! "window closed") through the fleet supervisor. Host actors start queued work only inside an
//! open window and never after it closes (they hold the closing time themselves).
//!
//! Timers are armed at the next event or at most an hour ahead, then the window is evaluated
//! again from the clock, so a clock step or a long suspend cannot make a window open late by more
//! than that. Windows are read again on every change (a window created or deleted, a group's
//! membership changed) and at start, when windows already open are announced at once.

use super::windows::{timestamp_of, Calendar};
use crate::db::windows::WindowRow;
use crate::fleet::supervisor::{WindowClosed, WindowOpened};
use crate::state::AppState;
use actix::prelude::*;
use jiff::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// Longest a timer is armed before the window is evaluated again.
const RECHECK: Duration = Duration::from_secs(3600);

/// The calendar of a stored window, or why it has none.
pub fn calendar_of(row: &WindowRow) -> Result<Calendar, String> {
    let spec = super::maintenance::spec_of(row)?;
    Calendar::new(&spec).map_err(|e| format!("{}: {}", e.field, e.message))
}

#[derive(Debug)]
struct Known {
    row: WindowRow,
    calendar: Calendar,
    timer: Option<SpawnHandle>,
    /// Open until, with the hosts told.
    open: Option<(Timestamp, Vec<i64>)>,
}

/// The scheduler.
#[derive(Default)]
pub struct Scheduler {
    state: Option<AppState>,
    windows: HashMap<i64, Known>,
}

impl Actor for Scheduler {
    type Context = Context<Self>;
}

impl Scheduler {
    fn now(&self) -> Timestamp {
        self.state
            .as_ref()
            .map_or_else(Timestamp::now, |s| timestamp_of(s.clock.now()))
    }

    /// Looks at window `id` now: opens or closes it, and arms its next timer.
    fn evaluate(&mut self, id: i64, ctx: &mut Context<Self>) {
        let now = self.now();
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(k) = self.windows.get_mut(&id) else {
            return;
        };
        if let Some(t) = k.timer.take() {
            ctx.cancel_future(t);
        }
        let next = if k.row.enabled {
            k.calendar.next(now)
        } else {
            None
        };
        let wait = match next {
            Some((open, close)) if open <= now => {
                if k.open.as_ref().is_none_or(|(c, _)| *c != close) {
                    // Opening (or reopening at start): tell its hosts, with the closing time.
                    let row = k.row.clone();
                    let closes_in =
                        Duration::try_from(close.duration_since(now)).unwrap_or(Duration::ZERO);
                    k.open = Some((close, Vec::new()));
                    ctx.spawn(
                        actix::fut::wrap_future::<_, Self>(async move {
                            state
                                .db
                                .run(move |c| crate::db::windows::hosts_of(c, &row))
                                .await
                        })
                        .map(move |hosts, act, _| {
                            let Ok(hosts) = hosts else { return };
                            if let (Some(s), Some(k)) = (&act.state, act.windows.get_mut(&id)) {
                                tracing::info!(
                                    window = id,
                                    hosts = hosts.len(),
                                    "maintenance window open"
                                );
                                s.fleet.supervisor.do_send(WindowOpened {
                                    window_id: id,
                                    hosts: hosts.clone(),
                                    closes_in,
                                });
                                if let Some((_, told)) = k.open.as_mut() {
                                    *told = hosts;
                                }
                            }
                        }),
                    );
                }
                Duration::try_from(close.duration_since(now)).unwrap_or(Duration::ZERO)
            }
            other => {
                if let Some((_, hosts)) = k.open.take() {
                    tracing::info!(window = id, "maintenance window closed");
                    state.fleet.supervisor.do_send(WindowClosed {
                        window_id: id,
                        hosts,
                    });
                }
                match other {
                    Some((open, _)) => {
                        Duration::try_from(open.duration_since(now)).unwrap_or(Duration::ZERO)
                    }
                    None => return,
                }
            }
        };
        let wait = wait.min(RECHECK) + Duration::from_millis(1);
        k.timer = Some(ctx.run_later(wait, move |act, ctx| act.evaluate(id, ctx)));
    }

    /// Reads every window again and evaluates each.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else {
            return;
        };
        ctx.spawn(
            async move { state.db.run(crate::db::windows::all).await }
                .into_actor(self)
                .map(|rows, act, ctx| {
                    let rows = match rows {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "maintenance windows could not be read");
                            return;
                        }
                    };
                    let mut seen = Vec::with_capacity(rows.len());
                    for (row, _) in rows {
                        let id = row.id;
                        seen.push(id);
                        let calendar = match calendar_of(&row) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::error!(window = id, error = %e, "a stored maintenance window cannot be used");
                                continue;
                            }
                        };
                        match act.windows.get_mut(&id) {
                            Some(k) => {
                                k.row = row;
                                k.calendar = calendar;
                            }
                            None => {
                                act.windows.insert(
                                    id,
                                    Known {
                                        row,
                                        calendar,
                                        timer: None,
                                        open: None,
                                    },
                                );
                            }
                        }
                        // A window open already is announced again: members may have changed.
                        if let Some(k) = act.windows.get_mut(&id) {
                            k.open = None;
                        }
                        act.evaluate(id, ctx);
                    }
                    // Windows gone: closed for their hosts.
                    let gone: Vec<i64> = act
                        .windows
                        .keys()
                        .filter(|id| !seen.contains(id))
                        .copied()
                        .collect();
                    for id in gone {
                        if let Some(mut k) = act.windows.remove(&id) {
                            if let Some(t) = k.timer.take() {
                                ctx.cancel_future(t);
                            }
                            if let (Some((_, hosts)), Some(s)) = (k.open.take(), &act.state) {
                                s.fleet.supervisor.do_send(WindowClosed {
                                    window_id: id,
                                    hosts,
                                });
                            }
                        }
                    }
                }),
        );
    }
}

/// Gives the scheduler the application state and reads the windows.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub AppState);

impl Handler<Attach> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        self.state = Some(msg.0);
        self.reload(ctx);
    }
}

/// The windows changed (or who they apply to): read them again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

impl Handler<Reload> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Reload, ctx: &mut Context<Self>) {
        self.reload(ctx);
    }
}
