//! The simulator's two sessions (`[source.sim.sessions] enabled = true`): a thread that imitates
//! what the CTP SDK does for each account (connect to a front, answer a login after `login_ms`,
//! drop the connection and reconnect after `reconnect_ms`, report heartbeat warnings) and sets the
//! [`Links`] flags the simulated market reads to decide which sessions get its ticks. Faults arrive
//! through [`Fronts::inject`]. Login succeeds with any well-formed credentials unless failures were
//! injected (a simulated broker has no password database).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Credentials, Fault, Fronts, Links, SessionEvent, Which, manager::Msg};
use crate::config::SimSessionsConfig;

/// The version string the simulated sessions report (as `GetApiVersion()` would).
pub const SIM_API_VERSION: &str = "qilin-sim (CTP 6.7.11 sessions)";

/// CTP's ErrorID for a refused login ("CTP:不合法的登录").
pub const LOGIN_REFUSED: i32 = 3;

#[derive(Debug)]
enum Op {
    Connect(Which, String),
    Login(Which),
    Release(Which),
    Inject(Which, Fault, Sender<Result<(), String>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Connected,
    LoginAnswer,
}

/// The [`Fronts`] of the simulator: a handle to the thread that plays both sessions' fronts.
#[derive(Debug)]
pub struct SimFronts {
    ops: Sender<Op>,
}

impl SimFronts {
    /// Starts the fronts' thread. Events go to `events`; `trading_day` is what a login reports.
    pub fn start(
        config: &SimSessionsConfig,
        links: Links,
        events: Sender<Msg>,
        trading_day: u32,
    ) -> std::io::Result<SimFronts> {
        let (ops, rx) = crossbeam_channel::unbounded();
        let player = Player {
            login: Duration::from_millis(config.login_ms),
            reconnect: Duration::from_millis(config.reconnect_ms),
            links,
            events,
            trading_day,
            sessions: Default::default(),
            timers: Vec::new(),
        };
        std::thread::Builder::new().name("qilin-sim-fronts".into()).spawn(move || player.run(rx))?;
        Ok(SimFronts { ops })
    }
}

impl Fronts for SimFronts {
    fn connect(&mut self, which: Which, creds: &Credentials) {
        let front = creds.md_fronts.first().cloned().unwrap_or_default();
        let _ = self.ops.send(Op::Connect(which, front));
    }

    fn login(&mut self, which: Which, _creds: &Credentials) {
        let _ = self.ops.send(Op::Login(which));
    }

    fn release(&mut self, which: Which) {
        let _ = self.ops.send(Op::Release(which));
    }

    fn inject(&mut self, which: Which, fault: Fault) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.ops.send(Op::Inject(which, fault, tx)).map_err(|_| "the simulated fronts have stopped".to_string())?;
        rx.recv_timeout(Duration::from_secs(2)).map_err(|_| "the simulated fronts did not answer".to_string())?
    }

    fn api_version(&self) -> &str {
        SIM_API_VERSION
    }
}

#[derive(Debug, Default)]
struct FrontState {
    /// Bumped by every connect/release/disconnect so that timers of an older connection are void.
    generation: u64,
    /// Between connect and release.
    wanted: bool,
    connected: bool,
    logged_in: bool,
    front: String,
    failures_pending: u32,
}

struct Player {
    login: Duration,
    reconnect: Duration,
    links: Links,
    events: Sender<Msg>,
    trading_day: u32,
    sessions: [FrontState; 2],
    timers: Vec<(Instant, Which, u64, Timer)>,
}

impl Player {
    fn run(mut self, ops: Receiver<Op>) {
        loop {
            let wait = self
                .timers
                .iter()
                .map(|(at, ..)| at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_millis(100));
            match ops.recv_timeout(wait) {
                Ok(op) => self.apply(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            let due: Vec<_> = self.timers.iter().copied().filter(|(at, ..)| *at <= now).collect();
            self.timers.retain(|(at, ..)| *at > now);
            for (_, which, generation, timer) in due {
                if self.sessions[which.index()].generation == generation {
                    self.fire(which, timer);
                }
            }
        }
    }

    fn emit(&self, which: Which, event: SessionEvent) {
        let _ = self.events.send(Msg::Event(which, event));
    }

    fn schedule(&mut self, which: Which, after: Duration, timer: Timer) {
        let generation = self.sessions[which.index()].generation;
        self.timers.push((Instant::now() + after, which, generation, timer));
    }

    fn drop_link(&mut self, which: Which) {
        let s = &mut self.sessions[which.index()];
        s.generation += 1;
        s.connected = false;
        s.logged_in = false;
        self.links.set(which, false);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect(which, front) => {
                self.drop_link(which);
                let s = &mut self.sessions[which.index()];
                s.wanted = true;
                s.front = front;
                self.schedule(which, Duration::from_millis(1), Timer::Connected);
            }
            Op::Login(which) => {
                let s = &self.sessions[which.index()];
                if s.connected {
                    self.schedule(which, self.login, Timer::LoginAnswer);
                } else if !s.wanted {
                    self.emit(which, SessionEvent::LoginFailed { error_id: -1, message: "not connected".into() });
                }
                // Else a connection is being made (a connect just asked for, or a reconnect after a
                // drop): the manager logs in on its Connected event. A login asked before that
                // comes from the Connected event of a connection that was replaced since (a
                // credentials hand-over reconnects, a relogin right after reconnects again), and
                // failing it would fail the relogin that is about to succeed.
            }
            Op::Release(which) => {
                self.drop_link(which);
                self.sessions[which.index()].wanted = false;
            }
            Op::Inject(which, fault, reply) => {
                let _ = reply.send(self.inject(which, fault));
            }
        }
    }

    fn inject(&mut self, which: Which, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Disconnect => {
                if !self.sessions[which.index()].connected {
                    return Err(format!("the {} session is not connected", which.name()));
                }
                self.drop_link(which);
                self.emit(which, SessionEvent::Disconnected { reason: 0x1001 });
                self.schedule(which, self.reconnect, Timer::Connected);
            }
            Fault::LoginFailures(n) => self.sessions[which.index()].failures_pending += n,
            Fault::HeartbeatWarning(seconds) => {
                if !self.sessions[which.index()].connected {
                    return Err(format!("the {} session is not connected", which.name()));
                }
                self.emit(which, SessionEvent::HeartbeatWarning { seconds });
            }
        }
        Ok(())
    }

    fn fire(&mut self, which: Which, timer: Timer) {
        let s = &mut self.sessions[which.index()];
        match timer {
            Timer::Connected if s.wanted => {
                s.connected = true;
                let front = s.front.clone();
                self.emit(which, SessionEvent::Connected { front });
            }
            Timer::Connected => {}
            Timer::LoginAnswer if s.failures_pending > 0 => {
                s.failures_pending -= 1;
                self.emit(
                    which,
                    SessionEvent::LoginFailed {
                        error_id: LOGIN_REFUSED,
                        message: "CTP:不合法的登录 (invalid login)".into(),
                    },
                );
            }
            Timer::LoginAnswer => {
                s.logged_in = true;
                self.links.set(which, true);
                let trading_day = self.trading_day;
                self.emit(which, SessionEvent::LoggedIn { trading_day });
            }
        }
    }
}
