//! The systemd units in `config/systemd/` pass `systemd-analyze verify` (with `ExecStart` pointed at
//! this build's binaries, which verify requires to exist), with no warning at all, and state what
//! the operations guide promises: sidecars restart by themselves, the core may lock its memory and
//! keeps the control-socket directory across restarts, qilin-secrets dumps no core.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const UNITS: &[&str] = &[
    "qilin-feed.target",
    "qilin-core.service",
    "qilin-secrets.service",
    "qilin-nats.service",
    "qilin-recorder.service",
    "qilin-keys-rotate.service",
    "qilin-keys-rotate.timer",
    "qilin-mirror.service",
    "qilin-bars.service",
];

/// Not started by qilin-feed.target: by their timer, on another host (the mirror), or enabled
/// where wanted (bars).
const NOT_IN_TARGET: &[&str] =
    &["qilin-keys-rotate.service", "qilin-keys-rotate.timer", "qilin-mirror.service", "qilin-bars.service"];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/systemd")
}

/// The directory of this build's binaries, with every binary the units start built.
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_qilinctl")).parent().unwrap().to_owned();
    let missing = ["qilin-core", "qilin-secrets", "qilin-nats", "qilin-recorder", "qilin-mirror", "qilin-bars"]
        .iter()
        .any(|b| !dir.join(b).exists());
    if missing {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "qilin-core", "-p", "qilin-sidecar", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building the binaries failed");
    }
    dir
}

/// `systemd-analyze verify` on `files` in `dir`: (success, everything it printed).
fn verify(dir: &Path, files: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(files.iter().map(|f| dir.join(f)))
        .output()
        .expect("systemd-analyze (Debian's systemd package) is installed by .ci/run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The units copied to a temporary directory with `/usr/local/bin/` replaced by this build's.
fn staged() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bins = format!("{}/", bin_dir().display());
    for unit in UNITS {
        let text = fs::read_to_string(units_dir().join(unit)).unwrap();
        fs::write(dir.path().join(unit), text.replace("/usr/local/bin/", &bins)).unwrap();
    }
    dir
}

#[test]
fn the_units_verify_without_a_single_warning() {
    let dir = staged();
    let (ok, printed) = verify(dir.path(), UNITS);
    assert!(ok && printed.trim().is_empty(), "systemd-analyze verify:\n{printed}");
}

#[test]
fn verify_does_catch_a_broken_unit() {
    // The check above could pass by accident if verify printed nothing for anything: it does not.
    let dir = staged();
    let unit = dir.path().join("qilin-nats.service");
    let text = fs::read_to_string(&unit).unwrap().replace("Restart=always", "Restart=alwayz");
    fs::write(&unit, text).unwrap();
    let (_, printed) = verify(dir.path(), &["qilin-nats.service"]);
    assert!(printed.contains("restart specifier"), "a bad Restart= went unnoticed:\n{printed}");
}

#[test]
fn the_units_say_what_operations_rely_on() {
    let read = |unit: &str| fs::read_to_string(units_dir().join(unit)).unwrap();
    let has = |unit: &str, line: &str| {
        assert!(read(unit).lines().any(|l| l.trim() == line), "{unit} lacks `{line}`");
    };
    for sidecar in ["qilin-secrets.service", "qilin-nats.service", "qilin-recorder.service", "qilin-bars.service"] {
        has(sidecar, "Restart=always");
        let after = read(sidecar).lines().find(|l| l.starts_with("After=")).map(str::to_owned).unwrap_or_default();
        assert!(after.contains("qilin-core.service"), "{sidecar} is not ordered after the core: {after:?}");
    }
    has("qilin-core.service", "LimitMEMLOCK=infinity");
    has("qilin-core.service", "RuntimeDirectoryPreserve=yes");
    has("qilin-core.service", "Restart=on-failure");
    has("qilin-secrets.service", "LimitCORE=0");
    has("qilin-core.service", "LimitCORE=0");
    has("qilin-secrets.service", "User=qilin-secrets");
    // The mirror writes this host's segment as its own uid and does not retry what needs an operator.
    has("qilin-mirror.service", "User=qilin-mirror");
    has("qilin-mirror.service", "RestartPreventExitStatus=2 3");
    let target = read("qilin-feed.target");
    for unit in UNITS[1..].iter().filter(|u| !NOT_IN_TARGET.contains(u)) {
        assert!(target.contains(unit), "qilin-feed.target does not want {unit}");
    }
    // Key rotation: daily, catching up a missed run, as its own uid, never dumping the master key.
    has("qilin-keys-rotate.timer", "OnCalendar=daily");
    has("qilin-keys-rotate.timer", "Persistent=true");
    has("qilin-keys-rotate.service", "Type=oneshot");
    has("qilin-keys-rotate.service", "User=qilin-keys");
    has("qilin-keys-rotate.service", "LimitCORE=0");
    let exec = read("qilin-keys-rotate.service").lines().find(|l| l.starts_with("ExecStart=")).map(str::to_owned);
    assert!(
        exec.as_deref().is_some_and(|l| l.contains("qilinctl keys rotate --due --schedule-out ")),
        "qilin-keys-rotate.service does not rotate what is due and publish the schedule: {exec:?}"
    );
    // A rotation changes what runs only once it is rendered where the processes read it.
    let post = read("qilin-keys-rotate.service").lines().find(|l| l.starts_with("ExecStartPost=")).map(str::to_owned);
    assert!(
        post.as_deref()
            .is_some_and(|l| l.starts_with("ExecStartPost=+") && l.contains("qilinctl keys render-all --plan ")),
        "qilin-keys-rotate.service does not render the rotated keys (as root, for their owners): {post:?}"
    );
}
