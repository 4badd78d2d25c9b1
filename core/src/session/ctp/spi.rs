//! The SPI: what the SDK's callback thread runs. Every callback returns at once: market data is
//! copied into the session's hand-off (a full hand-off is counted there, never waited on), and
//! everything else becomes a [`SessionEvent`] for the session manager (which logs and decides) or
//! an [`Op`] for the fronts' thread (which subscribes after a login). Nothing here logs, blocks or
//! panics (a panic cannot unwind through the SDK's C++ frames).

use crossbeam_channel::Sender;
use ctp2rs::v1alpha1::{
    CThostFtdcDepthMarketDataField, CThostFtdcRspInfoField, CThostFtdcRspUserLoginField,
    CThostFtdcSpecificInstrumentField, MdSpi,
};

use super::{Op, ffi, front::FrontSet, sdk};
use crate::{
    session::{Links, SessionEvent, Which, manager::Msg},
    sim::MdCallback,
};

/// One session's callbacks, for one `MdApi` (one connection generation).
pub struct Spi {
    pub(super) which: Which,
    pub(super) generation: u64,
    /// The session's fronts, to tell which one `OnFrontConnected` is about.
    pub(super) fronts: FrontSet,
    pub(super) callback: MdCallback,
    pub(super) links: Links,
    pub(super) events: Sender<Msg>,
    pub(super) ops: Sender<Op>,
}

impl Spi {
    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(Msg::Event(self.which, event));
    }

    /// The error in `info`, if it reports one.
    fn error(info: Option<&CThostFtdcRspInfoField>) -> Option<(i32, String)> {
        info.filter(|i| i.ErrorID != 0).map(|i| (i.ErrorID, sdk::c_text(&i.ErrorMsg)))
    }
}

impl MdSpi for Spi {
    fn on_front_connected(&mut self) {
        self.emit(SessionEvent::Connected { front: self.fronts.in_use() });
    }

    fn on_front_disconnected(&mut self, reason: i32) {
        // At once, before the manager hears of it: the hot thread may take the standby's ticks now.
        self.links.set(self.which, false);
        self.emit(SessionEvent::Disconnected { reason });
    }

    fn on_heart_beat_warning(&mut self, seconds: i32) {
        self.emit(SessionEvent::HeartbeatWarning { seconds });
    }

    fn on_rsp_user_login(
        &mut self,
        rsp: Option<&CThostFtdcRspUserLoginField>,
        info: Option<&CThostFtdcRspInfoField>,
        _request_id: i32,
        _is_last: bool,
    ) {
        match Self::error(info) {
            Some((error_id, message)) => self.emit(SessionEvent::LoginFailed { error_id, message }),
            None => {
                let trading_day = rsp.map_or(0, |r| sdk::c_date(&r.TradingDay));
                let _ = self.ops.send(Op::LoggedIn(self.which, self.generation));
                self.emit(SessionEvent::LoggedIn { trading_day });
            }
        }
    }

    fn on_rsp_error(&mut self, info: Option<&CThostFtdcRspInfoField>, _request_id: i32, _is_last: bool) {
        let (error_id, message) = Self::error(info).unwrap_or((0, "(no error information)".into()));
        self.emit(SessionEvent::RspError { request: "OnRspError", error_id, message });
    }

    fn on_rsp_sub_market_data(
        &mut self,
        instrument: Option<&CThostFtdcSpecificInstrumentField>,
        info: Option<&CThostFtdcRspInfoField>,
        _request_id: i32,
        _is_last: bool,
    ) {
        if let Some((error_id, message)) = Self::error(info) {
            let instrument = instrument.map_or_else(String::new, |i| sdk::c_text(&i.InstrumentID));
            self.emit(SessionEvent::SubscriptionRefused { instrument, error_id, message });
        }
    }

    #[inline]
    fn on_rtn_depth_market_data(&mut self, field: Option<&CThostFtdcDepthMarketDataField>) {
        if let Some(field) = field {
            self.callback.on_rtn_depth_market_data(ffi::depth_bytes(field));
        }
    }
}
