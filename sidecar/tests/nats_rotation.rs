//! NATS credentials from the managed key store, rotated twice while ticks flow (issue 23): the real
//! `qilinctl keys` renders the nats-server users and qilin-nats' credentials file and SIGHUPs the
//! real nats-server; the real qilin-nats, publishing a real qilin-core's ticks to JetStream,
//! reconnects as the new version while the old one is still in grace; once the grace has ended the
//! old passwords are refused. Every sequence is in the stream exactly once.
//!
//! Positive signals only: which user qilin-nats is connected as comes from the server's own
//! monitoring endpoint (`/connz?auth=true`), never from a sleep.

mod common;

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Command,
};

use common::*;
use nix::sys::signal::Signal;

const MASTER: &str = "zq8-master-key-for-rotation-tests-0123456789";
const DAY: i64 = 86_400;
const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// `qilinctl keys …` at time `now` against the test's store and audit log.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn run(&self, args: &[&str], now: i64) -> String {
        let out = Command::new(workspace_bin("qilinctl"))
            .arg("keys")
            .args(args)
            .arg("--now-unix-s")
            .arg(now.to_string())
            .env("QILIN_KEY_STORE", self.dir.join("keys.json"))
            .env("QILIN_AUDIT_LOG", self.dir.join("keys-audit.jsonl"))
            .env("QILIN_MASTER_KEY", MASTER)
            .env("QILIN_KEYS_TEST_KDF_M_COST_KIB", "64")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "qilinctl keys {args:?}: {text}");
        text
    }

    fn render(&self, now: i64, reload: bool) -> String {
        let include = self.dir.join("nats-auth.conf");
        let client = self.dir.join("nats-credentials.env");
        let pid = self.dir.join("nats.pid");
        let mut args = vec![
            "render-nats",
            "nats-token",
            "--server-include",
            include.to_str().unwrap(),
            "--client-file",
            client.to_str().unwrap(),
        ];
        if reload {
            args.extend(["--reload-pid-file", pid.to_str().unwrap()]);
        }
        self.run(&args, now)
    }

    fn password(&self, version: u32, now: i64) -> String {
        self.run(&["show", "nats-token", "--reveal", "--version", &version.to_string()], now).trim().to_owned()
    }
}

/// The users of the server's client connections (its `/connz?auth=true`), by connection name.
fn connected_users(monitor_port: u16) -> Vec<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).unwrap();
    write!(stream, "GET /connz?auth=true HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("connz: {e}: {body}"));
    json["connections"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_owned(),
                        c["authorized_user"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until qilin-nats is connected as `user` and as nothing else.
fn await_sidecar_user(monitor_port: u16, user: &str) {
    wait_for(&format!("qilin-nats to be connected as {user} only"), || {
        let users: Vec<String> = connected_users(monitor_port)
            .into_iter()
            .filter(|(name, _)| name.starts_with("qilin-nats/"))
            .map(|(_, user)| user)
            .collect();
        (!users.is_empty() && users.iter().all(|u| u == user)).then_some(())
    });
}

/// Whether the server accepts `user` with `password` (a fresh connection).
fn accepted(url: &str, user: &str, password: &str) -> bool {
    runtime().block_on(async {
        async_nats::ConnectOptions::new()
            .user_and_password(user.into(), password.into())
            .max_reconnects(Some(1))
            .connect(url)
            .await
            .is_ok()
    })
}

#[test]
fn rotating_the_managed_nats_key_twice_changes_the_running_credentials_with_no_tick_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys { dir: dir.path().to_owned() };
    keys.run(&["add", "nats-token", "--type", "api"], T0);
    let out = keys.render(T0, false);
    assert!(out.contains("qilin-nats-v1 (version 1, active)"), "{out}");

    let monitor = free_port();
    // nats-server resolves an include against its config file's directory: the same one here.
    let extra = format!(
        "pid_file: {:?}\nhttp: \"127.0.0.1:{monitor}\"\ninclude \"nats-auth.conf\"\n",
        dir.path().join("nats.pid").display().to_string(),
    );
    let server = NatsServer::start_extra(dir.path(), None, &extra);
    wait_for("nats-server's pid file", || fs::metadata(dir.path().join("nats.pid")).ok());

    // A ring larger than anything the core publishes in this test: no tick can be lapped, so every
    // sequence must reach the stream as a tick.
    let feed = unique("nats-rotate");
    let mut core = Core::start(dir.path(), &feed, 1 << 20, 20_000, 0);
    let credentials = dir.path().join("nats-credentials.env");
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("credentials_file = {:?}\n", credentials.display().to_string()),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    await_sidecar_user(monitor, "qilin-nats-v1");
    let reader = core.reader();
    wait_for("ticks confirmed as v1", || status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(0)));

    // Rotation 1 (day 1) and 2 (day 2), while the core keeps publishing.
    let mut published_at_rotation = Vec::new();
    for (version, now) in [(2, T0 + DAY), (3, T0 + 2 * DAY)] {
        let out = keys.run(&["rotate", "nats-token"], now);
        assert!(out.contains(&format!("version {} -> version {version}", version - 1)), "{out}");
        let out = keys.render(now, true);
        assert!(out.contains(&format!("qilin-nats-v{version} (version {version}, active)")), "{out}");
        assert!(out.contains("told to reload"), "{out}");
        published_at_rotation.push(reader.write_cursor());
        await_sidecar_user(monitor, &format!("qilin-nats-v{version}"));
        let before = status(&core.segment, "nats").unwrap()["position"].as_u64().unwrap();
        wait_for(&format!("ticks confirmed as v{version}"), || {
            status(&core.segment, "nats").filter(|s| s["position"].as_u64() > Some(before))
        });
    }
    // Both older versions are still in grace: the server still takes them.
    let (p1, p2) = (keys.password(1, T0 + 2 * DAY), keys.password(2, T0 + 2 * DAY));
    assert!(accepted(&server.url(), "qilin-nats-v1", &p1), "version 1 is refused during its grace");
    assert!(accepted(&server.url(), "qilin-nats-v2", &p2), "version 2 is refused during its grace");

    // Day 10: both graces (7 days) have ended. The next render leaves them out; after the reload the
    // server refuses them, and qilin-nats, on version 3, goes on.
    let out = keys.render(T0 + 10 * DAY, true);
    assert!(out.contains("qilin-nats-v3 (version 3, active)") && !out.contains("qilin-nats-v2"), "{out}");
    wait_for("the server to refuse version 1 after its grace", || {
        (!accepted(&server.url(), "qilin-nats-v1", &p1)).then_some(())
    });
    assert!(!accepted(&server.url(), "qilin-nats-v2", &p2), "version 2 is accepted after its grace");
    let p3 = keys.password(3, T0 + 10 * DAY);
    assert!(accepted(&server.url(), "qilin-nats-v3", &p3), "the active version is refused");
    await_sidecar_user(monitor, "qilin-nats-v3");

    // Stop the core, let qilin-nats confirm everything it published, and read the stream back.
    core.kill();
    let last = core.last_published();
    assert!(published_at_rotation.iter().all(|&p| p > 0 && p < last), "ticks flowed across both rotations");
    wait_for("qilin-nats to confirm every sequence", || {
        status(&core.segment, "nats").filter(|s| s["position"].as_u64() == Some(last))
    });
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0), "clean stop:\n{}", sidecar.log());
    let options = async_nats::ConnectOptions::new().user_and_password("qilin-nats-v3".into(), p3.clone());
    let stored = runtime().block_on(stream_contents_with(options, &server.url(), &stream_name(&feed)));
    let gaps = assert_exactly_once(&stored, last);
    assert!(gaps.is_empty(), "no tick was lapped, yet gap events {gaps:?}");

    // No password in qilin-nats' log or in the key audit log.
    let log = sidecar.log();
    let audit = fs::read_to_string(dir.path().join("keys-audit.jsonl")).unwrap();
    for p in [&p1, &p2, &p3] {
        assert!(!log.contains(p.as_str()) && !audit.contains(p.as_str()), "a password leaked");
    }
    assert!(log.contains("nats.credentials_file changed: reconnecting with the new version"), "{log}");
    assert_eq!(audit.matches("\"keys render-nats\"").count(), 4, "{audit}");
    drop(server);
    println!("{last} ticks, rotations at sequences {published_at_rotation:?}, stream exactly once");
}

/// What the rotation timer's unit runs (config/systemd/qilin-keys-rotate.service): `keys rotate
/// --due`, then `keys render-all --plan`. A rotation that came due puts the new versions where the
/// running processes read them (the recorder's key file, nats-server's users, reloaded), and once
/// the grace has ended the next run takes the old NATS user away: the schedule alone changes what
/// runs, with nobody rendering by hand.
#[test]
fn the_rotation_timer_s_render_plan_puts_each_scheduled_rotation_in_force() {
    use qilin_market::secrets::managed::{load_key_file, load_key_file_versions};
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys { dir: dir.path().to_owned() };
    keys.run(&["add", "nats-token", "--type", "api"], T0);
    keys.run(&["add", "audit-signing", "--type", "signing"], T0);
    keys.render(T0, false); // the deployment's first render: the server needs its include to start
    let extra =
        format!("pid_file: {:?}\ninclude \"nats-auth.conf\"\n", dir.path().join("nats.pid").display().to_string());
    let server = NatsServer::start_extra(dir.path(), None, &extra);
    wait_for("nats-server's pid file", || fs::metadata(dir.path().join("nats.pid")).ok());

    let key_file = dir.path().join("audit-signing.key");
    let plan = dir.path().join("keys-render.toml");
    let path = |name: &str| dir.path().join(name).display().to_string();
    fs::write(
        &plan,
        format!(
            "[[nats]]\nkey = \"nats-token\"\nserver_include = {:?}\nclient_file = {:?}\nreload_pid_file = {:?}\n\n\
             [[key]]\nkey = \"audit-signing\"\nout = {:?}\n\n\
             [[key]]\nkey = \"audit-signing\"\nout = {:?}\nin_force = true\n",
            path("nats-auth.conf"),
            path("nats-credentials.env"),
            path("nats.pid"),
            path("audit-signing.key"),
            path("in-force.key"),
        ),
    )
    .unwrap();
    // The readers' file (`in_force = true`): every version in force, newest first.
    let in_force = || -> Vec<u32> {
        load_key_file_versions(&dir.path().join("in-force.key")).unwrap().into_iter().map(|(v, _)| v).collect()
    };
    let timer = |now: i64| {
        let rotated = keys.run(&["rotate", "--due"], now);
        let rendered = keys.run(&["render-all", "--plan", plan.to_str().unwrap()], now);
        (rotated, rendered)
    };

    // Day 1: nothing is due; the plan renders the versions in force.
    let (_, out) = timer(T0 + DAY);
    assert!(out.contains("qilin-nats-v1 (version 1, active)") && out.contains("told to reload"), "{out}");
    assert!(out.contains("rendered audit-signing version 1"), "{out}");
    assert_eq!(load_key_file(&key_file).unwrap().0, 1);
    assert_eq!(in_force(), [1]);
    let p1 = keys.password(1, T0 + DAY);
    assert!(accepted(&server.url(), "qilin-nats-v1", &p1));

    // Day 91: both periods (api 90 days, signing 60) have elapsed: both keys rotate, and the render
    // puts version 2 in the recorder's file and in the server, version 1 still in grace.
    let (rotated, out) = timer(T0 + 91 * DAY);
    assert!(rotated.contains("nats-token") && rotated.contains("audit-signing"), "{rotated}");
    assert!(
        out.contains("qilin-nats-v2 (version 2, active)") && out.contains("qilin-nats-v1 (version 1, grace)"),
        "{out}"
    );
    assert!(out.contains("rendered audit-signing version 2"), "{out}");
    assert_eq!(load_key_file(&key_file).unwrap().0, 2, "the recorder's key file holds the new version");
    assert_eq!(in_force(), [2, 1], "the readers' file holds both while version 1 is in grace");
    let client = fs::read_to_string(dir.path().join("nats-credentials.env")).unwrap();
    assert!(client.contains("NATS_USER=qilin-nats-v2"), "qilin-nats' credentials file holds the new version");
    let p2 = keys.password(2, T0 + 91 * DAY);
    wait_for("the reloaded server to accept version 2", || accepted(&server.url(), "qilin-nats-v2", &p2).then_some(()));
    assert!(accepted(&server.url(), "qilin-nats-v1", &p1), "version 1 is refused during its grace");

    // Day 99: version 1's grace (7 days) has ended: the timer retires it, and the render leaves its
    // user out of the server, which then refuses it.
    let (_, out) = timer(T0 + 99 * DAY);
    assert!(out.contains("qilin-nats-v2 (version 2, active)") && !out.contains("qilin-nats-v1"), "{out}");
    wait_for("the server to refuse version 1 after its grace", || {
        (!accepted(&server.url(), "qilin-nats-v1", &p1)).then_some(())
    });
    assert!(accepted(&server.url(), "qilin-nats-v2", &p2), "the active version is refused");
    assert_eq!(in_force(), [2], "the retired version left the readers' file");

    // Each entry is audited as its own command, without material.
    let audit = fs::read_to_string(dir.path().join("keys-audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"keys render-nats\"").count(), 4, "{audit}");
    assert_eq!(audit.matches("\"keys render-key\"").count(), 6, "{audit}");
    assert!(!audit.contains(p1.as_str()) && !audit.contains(p2.as_str()), "a password leaked into the audit log");
    drop(server);
}
