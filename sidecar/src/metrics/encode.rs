//! A thin layer over prometheus-client's descriptor encoder for values read at scrape time:
//! one call per metric family (HELP and TYPE once, then one sample per label set). Names are given
//! without the registry prefix (`qilin`), the unit suffix or `_total`; the encoder adds them. Also the
//! small value helpers every part of a scrape shares (`flag`, `label`, `age_s`).

use std::fmt;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Unit,
};

use super::hist::Hist;

/// The unit `seconds`.
pub static SECONDS: Unit = Unit::Seconds;
/// The unit `bytes`.
pub static BYTES: Unit = Unit::Bytes;

/// Label set of a sample: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Writes metric families into one scrape.
pub struct Out<'a> {
    enc: DescriptorEncoder<'a>,
}

impl<'a> Out<'a> {
    /// Wraps the encoder a collector is handed.
    pub fn new(enc: DescriptorEncoder<'a>) -> Out<'a> {
        Out { enc }
    }

    /// A gauge without labels (besides the registry's `feed`).
    pub fn gauge(&mut self, name: &str, help: &str, unit: Option<&Unit>, value: impl EncodeGaugeValue) -> fmt::Result {
        let m = self.enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        ConstGauge::new(value).encode(m)
    }

    /// A gauge family: one sample per label set.
    pub fn gauges<V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        samples: impl IntoIterator<Item = (Labels, V)>,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, unit: Option<&Unit>, value: u64) -> fmt::Result {
        let m = self.enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
        ConstCounter::new(value).encode(m)
    }

    /// A counter family.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram in seconds from an hdrhistogram of nanoseconds, with the given `le` bounds.
    pub fn histogram(&mut self, name: &str, help: &str, hist: &Hist, bounds_s: &[f64]) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, Some(&SECONDS), MetricType::Histogram)?;
        m.encode_histogram::<Labels>(hist.sum_seconds(), hist.count(), &hist.buckets(bounds_s), None)
    }
}

/// `true` → 1, `false` → 0.
pub fn flag(b: bool) -> u32 {
    u32::from(b)
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

/// Seconds from `then_ns` to `now_ns`, never negative (the core may stamp a heartbeat or a tick a
/// moment after the scrape read the clock).
pub(crate) fn age_s(now_ns: i64, then_ns: i64) -> f64 {
    now_ns.saturating_sub(then_ns).max(0) as f64 / 1e9
}
