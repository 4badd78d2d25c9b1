//! The `ctp` source: the vendor market-data SDK (`thostmduserapi_se.so`) as the [`Fronts`] of the
//! primary and backup sessions, through ctp2rs's dynamic-library mode (nothing linked at build time;
//! the library is loaded at start from `source.ctp.sdk_path` and checked, see [`sdk`]).
//!
//! ```text
//!  session manager ──Op──▶ qilin-ctp thread: owns each session's MdApi (create, RegisterFront, Init,
//!        ▲                  ReqUserLogin, SubscribeMarketData, Release); calls that may wait (Release
//!        │                  joins the SDK's threads) never stall the manager or the hot thread
//!        │ SessionEvent
//!  SDK callback thread (one per session) ── Spi: OnRtnDepthMarketData → copy into the hand-off
//!                                                 everything else → SessionEvent / Op
//! ```
//!
//! Lifecycle of a session: `connect` creates the API with the session's flow directory
//! (`<flow_dir>/<primary|backup>/`), registers every front of the account, `Init`s. The SDK reports
//! `OnFrontConnected`, the manager asks for the login (`ReqUserLogin` with the credentials from
//! qilin-secrets), and on success the instruments in force (`core.subscribe` and those subscribed
//! over the control socket since) are subscribed. On `OnFrontDisconnected` the SDK reconnects by
//! itself; its next `OnFrontConnected` leads to a new login, and that login to a new subscription
//! (the SDK forgets subscriptions with the connection). `release` (a relogin, new credentials, or
//! shutdown) unregisters the SPI and calls `Release()`, the teardown the SDK documents; a
//! market-data front needs no logout.

mod ffi;
pub mod front;
pub mod sdk;
mod spi;
pub mod stdout;

use std::{collections::BTreeSet, panic::AssertUnwindSafe, path::PathBuf, thread::JoinHandle, time::Duration};

use crossbeam_channel::{Receiver, Sender};
use ctp2rs::v1alpha1::{CThostFtdcReqUserLoginField, MdApi, MdApiBuilder};
use secrecy::{ExposeSecret, SecretString, zeroize::Zeroize};

pub use self::sdk::{BUILT_FOR, Sdk, SdkError};
use self::{ffi::RegisteredSpi, front::FrontSet, spi::Spi};
use super::{Credentials, Fault, Fronts, Links, SessionEvent, Which, manager::Msg};
use crate::{config::CtpConfig, sim::MdCallback};

/// Instrument ids per `SubscribeMarketData` call. The vendor documents no limit; a login with a
/// whole product table's instruments goes out as several calls of this many, which keeps each
/// request small and a refused call (-2, -3: the SDK's request flow control) down to one batch.
pub const SUBSCRIBE_BATCH: usize = 100;

/// What the fronts' thread is asked to do (by [`CtpFronts`], and by the SPI after a login).
pub(crate) enum Op {
    Connect(Which, Vec<String>),
    Login(Which, Login),
    Release(Which),
    Subscription(String, bool),
    /// The SPI of connection `generation` logged in: subscribe.
    LoggedIn(Which, u64),
    Shutdown(Sender<()>),
}

/// A login request's fields; the password is zeroed when dropped.
pub(crate) struct Login {
    broker_id: String,
    user_id: String,
    password: SecretString,
}

/// The [`Fronts`] of the ctp source: a handle to the thread that owns both sessions' SDK objects.
#[derive(Debug)]
pub struct CtpFronts {
    ops: Sender<Op>,
    version: String,
}

/// Stops the fronts' thread at shutdown, releasing both sessions first.
#[derive(Debug)]
pub struct CtpShutdown {
    ops: Sender<Op>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Connect(w, fronts) => write!(f, "Connect({w:?}, {fronts:?})"),
            Op::Login(w, login) => write!(f, "Login({w:?}, {}/{}, <redacted>)", login.broker_id, login.user_id),
            Op::Release(w) => write!(f, "Release({w:?})"),
            Op::Subscription(id, on) => write!(f, "Subscription({id}, {on})"),
            Op::LoggedIn(w, g) => write!(f, "LoggedIn({w:?}, {g})"),
            Op::Shutdown(_) => write!(f, "Shutdown"),
        }
    }
}

impl CtpFronts {
    /// Starts the fronts' thread for the checked `sdk`. Ticks of each session go to its hand-off
    /// (`callbacks`, primary first); events to `events`; `subscribe` is subscribed at every login.
    pub fn start(
        sdk: Sdk,
        config: &CtpConfig,
        feed: &str,
        links: Links,
        events: Sender<Msg>,
        callbacks: [MdCallback; 2],
        subscribe: &[String],
    ) -> std::io::Result<(CtpFronts, CtpShutdown)> {
        let (ops, rx) = crossbeam_channel::unbounded();
        let version = sdk.version.clone();
        let [primary, backup] = callbacks;
        let player = Player {
            sdk,
            flow_root: config.flow_dir(feed),
            production_mode: config.production_mode(),
            slots: [Slot::new(primary), Slot::new(backup)],
            subscribed: subscribe.iter().cloned().collect(),
            links,
            events,
            ops: ops.clone(),
            request_id: 0,
            resident: None,
        };
        let thread = std::thread::Builder::new().name("qilin-ctp".into()).spawn(move || player.run(rx))?;
        Ok((CtpFronts { ops: ops.clone(), version }, CtpShutdown { ops, thread }))
    }
}

impl CtpShutdown {
    /// Releases both sessions (`RegisterSpi(NULL)`, `Release()`) and stops the thread; gives up
    /// waiting after `within` (the process is exiting anyway; the error says so).
    pub fn shutdown(self, within: Duration) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.ops.send(Op::Shutdown(tx)).is_err() {
            return Err("the CTP fronts' thread had already stopped".into());
        }
        rx.recv_timeout(within)
            .map_err(|_| format!("the CTP SDK did not release its sessions within {} ms", within.as_millis()))?;
        let _ = self.thread.join();
        Ok(())
    }
}

impl Fronts for CtpFronts {
    fn connect(&mut self, which: Which, creds: &Credentials) {
        let _ = self.ops.send(Op::Connect(which, creds.md_fronts.clone()));
    }

    fn login(&mut self, which: Which, creds: &Credentials) {
        let login = Login {
            broker_id: creds.broker_id.clone(),
            user_id: creds.user_id.clone(),
            password: SecretString::from(creds.password.expose_secret().to_owned()),
        };
        let _ = self.ops.send(Op::Login(which, login));
    }

    fn release(&mut self, which: Which) {
        let _ = self.ops.send(Op::Release(which));
    }

    fn inject(&mut self, _which: Which, _fault: Fault) -> Result<(), String> {
        Err("fault injection is for the simulated sessions; the ctp source talks to real fronts".into())
    }

    fn api_version(&self) -> &str {
        &self.version
    }

    fn subscription(&mut self, instrument: &str, subscribed: bool) {
        let _ = self.ops.send(Op::Subscription(instrument.to_string(), subscribed));
    }
}

/// One session's live SDK objects.
struct Conn {
    api: MdApi,
    spi: RegisteredSpi<Spi>,
    generation: u64,
    logged_in: bool,
}

struct Slot {
    conn: Option<Conn>,
    /// The hand-off's producer while no connection holds it (there is one producer per session).
    idle_callback: Option<MdCallback>,
    generation: u64,
}

impl Slot {
    fn new(callback: MdCallback) -> Slot {
        Slot { conn: None, idle_callback: Some(callback), generation: 0 }
    }
}

struct Player {
    sdk: Sdk,
    flow_root: PathBuf,
    production_mode: bool,
    slots: [Slot; 2],
    subscribed: BTreeSet<String>,
    links: Links,
    events: Sender<Msg>,
    ops: Sender<Op>,
    request_id: i32,
    /// One handle of the SDK library kept for the life of the process: releasing every API must
    /// not unload the SDK (its static state does not expect to be loaded twice).
    resident: Option<libloading::Library>,
}

impl Player {
    fn run(mut self, ops: Receiver<Op>) {
        while let Ok(op) = ops.recv() {
            let done = matches!(op, Op::Shutdown(_));
            let shown = format!("{op:?}");
            // A panic in ctp2rs (it unwraps on some inputs) must not take the sessions down silently.
            if std::panic::catch_unwind(AssertUnwindSafe(|| self.apply(op))).is_err() {
                tracing::error!(op = %shown, "the CTP fronts' thread caught a panic in this operation");
            }
            if done {
                return;
            }
        }
        self.release(Which::Primary);
        self.release(Which::Backup);
    }

    fn emit(&self, which: Which, event: SessionEvent) {
        let _ = self.events.send(Msg::Event(which, event));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect(which, fronts) => self.connect(which, &fronts),
            Op::Login(which, login) => self.login(which, &login),
            Op::Release(which) => self.release(which),
            Op::Subscription(id, on) => {
                if on {
                    self.subscribed.insert(id.clone())
                } else {
                    self.subscribed.remove(&id)
                };
                for which in Which::BOTH {
                    self.subscribe(which, std::slice::from_ref(&id), on);
                }
            }
            Op::LoggedIn(which, generation) => {
                let Some(conn) = self.slots[which.index()].conn.as_mut().filter(|c| c.generation == generation) else {
                    return;
                };
                conn.logged_in = true;
                let all: Vec<String> = self.subscribed.iter().cloned().collect();
                self.subscribe(which, &all, true);
            }
            Op::Shutdown(done) => {
                self.release(Which::Primary);
                self.release(Which::Backup);
                let _ = done.send(());
            }
        }
    }

    fn connect(&mut self, which: Which, fronts: &[String]) {
        self.release(which);
        if let Some(bad) = fronts.iter().find(|f| f.contains('\0')) {
            let message = format!("front {bad:?} contains a NUL byte");
            self.emit(which, SessionEvent::RspError { request: "RegisterFront", error_id: -1, message });
            return;
        }
        let flow = self.flow_root.join(which.name());
        if let Err(e) = std::fs::create_dir_all(&flow) {
            let message = format!("cannot create the flow directory {}: {e}", flow.display());
            self.emit(which, SessionEvent::RspError { request: "CreateFtdcMdApi", error_id: -1, message });
            return;
        }
        // The SDK appends file names to the flow path as given: it must end with '/'.
        let flow = format!("{}/", flow.display());
        let mut api = match MdApiBuilder::new()
            .with_dynlib(&self.sdk.path)
            .flow_path(&flow)
            .using_udp(false)
            .multicast(false)
            .production_mode(self.production_mode)
            .build()
        {
            Ok(api) if !api.api_ptr.is_null() => api,
            _ => {
                let message = format!("CreateFtdcMdApi failed (flow path {flow})");
                self.emit(which, SessionEvent::RspError { request: "CreateFtdcMdApi", error_id: -1, message });
                return;
            }
        };
        if self.resident.is_none() {
            self.resident = api.dynlib.take();
        }
        let slot = &mut self.slots[which.index()];
        let Some(callback) = slot.idle_callback.take() else {
            tracing::error!(session = which.name(), "no hand-off producer for a new connection");
            return;
        };
        slot.generation += 1;
        let fronts_set = FrontSet::resolve(fronts);
        let spi = Spi {
            which,
            generation: slot.generation,
            fronts: fronts_set,
            callback,
            links: self.links.clone(),
            events: self.events.clone(),
            ops: self.ops.clone(),
        };
        let spi = RegisteredSpi::register(&api, spi);
        for front in fronts {
            api.register_front(front);
        }
        api.init();
        tracing::info!(session = which.name(), fronts = fronts.len(), flow = %flow, "CTP API created, fronts registered, Init");
        slot.conn = Some(Conn { api, spi, generation: slot.generation, logged_in: false });
    }

    fn login(&mut self, which: Which, login: &Login) {
        self.request_id = self.request_id.wrapping_add(1);
        let Some(conn) = &self.slots[which.index()].conn else {
            self.emit(which, SessionEvent::LoginFailed { error_id: -1, message: "not connected".into() });
            return;
        };
        let mut field = CThostFtdcReqUserLoginField::default();
        ctp2rs::ffi::copy_str_to_i8_array(&mut field.BrokerID, &login.broker_id);
        ctp2rs::ffi::copy_str_to_i8_array(&mut field.UserID, &login.user_id);
        ctp2rs::ffi::copy_str_to_i8_array(&mut field.Password, login.password.expose_secret());
        ctp2rs::ffi::copy_str_to_i8_array(&mut field.UserProductInfo, "qilin");
        let rc = conn.api.req_user_login(&mut field, self.request_id);
        field.Password.zeroize();
        if rc != 0 {
            let message = format!("ReqUserLogin was not sent: {}", request_refused(rc));
            self.emit(which, SessionEvent::LoginFailed { error_id: rc, message });
        }
    }

    /// Subscribes (or unsubscribes) `ids` on `which` if it is logged in, [`SUBSCRIBE_BATCH`] ids
    /// per call.
    fn subscribe(&mut self, which: Which, ids: &[String], on: bool) {
        let Some(conn) = self.slots[which.index()].conn.as_ref().filter(|c| c.logged_in) else { return };
        let ids: Vec<&String> = ids.iter().filter(|id| !id.is_empty() && !id.contains('\0')).collect();
        let request = if on { "SubscribeMarketData" } else { "UnSubscribeMarketData" };
        let mut failed = Vec::new();
        for batch in ids.chunks(SUBSCRIBE_BATCH) {
            let rc = if on { conn.api.subscribe_market_data(batch) } else { conn.api.unsubscribe_market_data(batch) };
            if rc != 0 {
                let first = batch.first().map_or("", |s| s.as_str());
                let message = format!(
                    "{} ({} instruments from {first}): {}",
                    request_refused(rc),
                    batch.len(),
                    batch.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                );
                failed.push(SessionEvent::RspError { request, error_id: rc, message });
            }
        }
        if !ids.is_empty() {
            tracing::info!(
                session = which.name(),
                instruments = ids.len(),
                calls = ids.len().div_ceil(SUBSCRIBE_BATCH),
                failed = failed.len(),
                request,
                "sent"
            );
        }
        for event in failed {
            self.emit(which, event);
        }
    }

    fn release(&mut self, which: Which) {
        let slot = &mut self.slots[which.index()];
        let Some(conn) = slot.conn.take() else { return };
        self.links.set(which, false);
        let spi = conn.spi.release(conn.api);
        slot.idle_callback = Some(spi.callback);
        tracing::info!(session = which.name(), "CTP API released");
    }
}

/// A request call's non-zero return code in words.
fn request_refused(rc: i32) -> &'static str {
    match rc {
        -1 => "the network connection failed",
        -2 => "too many requests waiting to be processed",
        -3 => "too many requests per second",
        _ => "refused by the SDK",
    }
}
