//! What the figures were measured on, reported with every run: CPU model, CPU count, isolated CPUs,
//! kernel, whether it is a virtual machine, and the load average before and after.

use serde_json::{Value, json};

/// A snapshot of the machine.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs online.
    pub cpus: usize,
    /// /sys/devices/system/cpu/isolated ("" = none).
    pub isolated: String,
    /// Kernel release.
    pub kernel: String,
    /// The `hypervisor` CPU flag is set.
    pub virtual_machine: bool,
    /// /proc/loadavg's first three fields.
    pub load: String,
    /// UTC time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub utc: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

impl Machine {
    /// Reads it now.
    pub fn now() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            cpu_model: field("model name"),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            isolated: read("/sys/devices/system/cpu/isolated"),
            kernel: read("/proc/sys/kernel/osrelease"),
            virtual_machine: field("flags").split_whitespace().any(|f| f == "hypervisor"),
            load: load_average(),
            utc: utc_now(),
        }
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "{} | {} CPUs | isolated: {} | {} | kernel {} | load {} | {}",
            self.cpu_model,
            self.cpus,
            if self.isolated.is_empty() { "none" } else { &self.isolated },
            if self.virtual_machine { "virtual machine" } else { "no hypervisor flag" },
            self.kernel,
            self.load,
            self.utc
        )
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({
            "cpu_model": self.cpu_model, "cpus": self.cpus, "isolated_cpus": self.isolated,
            "kernel": self.kernel, "virtual_machine": self.virtual_machine, "load_average": self.load, "utc": self.utc,
        })
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// UTC now as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, H. Hinnant's algorithm).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    qilin_market::date::rfc3339_secs(secs)
}
