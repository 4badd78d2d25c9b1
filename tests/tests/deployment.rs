//! The documented deployment runs (issue 18, item 12): the users and directories the README's
//! Operations section creates, the four units' processes under their uids, with their umasks,
//! directories and command lines taken from `config/systemd/*.service` (systemd itself is not
//! running here, so this test does what it would: create `RuntimeDirectory=`, `LogsDirectory=`,
//! `StateDirectory=` with the unit's owner and mode, read `EnvironmentFile=`, switch uid and gid,
//! set the umask and `NoNewPrivileges`, and start `ExecStart=`). Then: the credential hand-off, a
//! rotation, a sidecar restart, status files of three uids side by side, a segment that only the
//! core can write, and `qilinctl audit verify --anchor` of both audit logs, against the recorder's
//! anchors, by a member of the group.
//!
//! The README's `groupadd`/`useradd`/`install -d` lines run in a private mount namespace over a
//! copy of `/etc`, so the machine's own user database is never changed; the processes then run with
//! the numeric uids and gids the copy holds. Paths are moved under a temporary root (`/etc/qilin`,
//! `/run`, `/var/log`, `/var/lib`) and the segment gets a unique name; nothing else of the units'
//! command lines is changed. Needs root (as the whole suite does), `setpriv` and `unshare`
//! (util-linux), `useradd`/`groupadd` (passwd) and nats-server.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::{MetadataExt, PermissionsExt},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use qilin_testkit::{audit_entries, remove_segment, unique, wait_for, workspace, workspace_bin};
use serde_json::Value;

/// One `[Service]` section as this test needs it.
#[derive(Debug, Default)]
struct Unit {
    user: String,
    group: String,
    umask: Option<u32>,
    environment: Vec<(String, String)>,
    environment_files: Vec<String>,
    exec_start: String,
    /// (`RuntimeDirectory`/`LogsDirectory`/`StateDirectory` base, name, mode).
    directories: Vec<(&'static str, String, u32)>,
}

fn parse_unit(text: &str) -> Unit {
    // Join continuation lines, drop comments, keep [Service] only.
    let joined = text.replace("\\\n", " ");
    let mut unit = Unit::default();
    let mut modes: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut names: Vec<(&'static str, String)> = Vec::new();
    let mut in_service = false;
    for line in joined.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        let value = value.trim().to_string();
        let base = |k: &str| match k {
            "RuntimeDirectory" | "RuntimeDirectoryMode" => Some("/run/"),
            "LogsDirectory" | "LogsDirectoryMode" => Some("/var/log/"),
            "StateDirectory" | "StateDirectoryMode" => Some("/var/lib/"),
            _ => None,
        };
        match key {
            "User" => unit.user = value,
            "Group" => unit.group = value,
            "UMask" => unit.umask = Some(u32::from_str_radix(&value, 8).unwrap()),
            "Environment" => {
                let (k, v) = value.split_once('=').unwrap();
                unit.environment.push((k.into(), v.into()));
            }
            "EnvironmentFile" => unit.environment_files.push(value),
            "ExecStart" => unit.exec_start = value,
            k if k.ends_with("DirectoryMode") => {
                modes.insert(base(k).unwrap(), u32::from_str_radix(&value, 8).unwrap());
            }
            k if base(k).is_some() => names.extend(value.split_whitespace().map(|n| (base(k).unwrap(), n.to_string()))),
            _ => {}
        }
    }
    // systemd's default directory mode is 0755.
    unit.directories = names.into_iter().map(|(b, n)| (b, n, modes.get(b).copied().unwrap_or(0o755))).collect();
    assert!(!unit.user.is_empty() && !unit.exec_start.is_empty(), "a unit without User= or ExecStart=");
    unit
}

/// Where the deployment's absolute paths go in this test.
struct Root {
    dir: tempfile::TempDir,
    segment: PathBuf,
    bins: PathBuf,
}

impl Root {
    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// A deployment path or text holding such paths, moved under the test's root.
    fn map(&self, text: &str) -> String {
        let root = self.dir.path().display().to_string();
        let mut out = text.replace("/usr/local/bin/", &format!("{}/", self.bins.display()));
        out = out.replace("/etc/qilin", &format!("{root}/etc/qilin"));
        for dir in ["/run/", "/var/log/", "/var/lib/"] {
            out = out.replace(&format!(" {dir}"), &format!(" {root}{dir}"));
            out = out.replace(&format!("\"{dir}"), &format!("\"{root}{dir}"));
            if out.starts_with(dir) {
                out = format!("{root}{out}");
            }
        }
        out.replace("/dev/shm/qilin", &self.segment.display().to_string())
    }
}

/// uid and gid of `name` in the copied user database.
fn id_of(etc: &Path, file: &str, name: &str) -> u32 {
    let text = fs::read_to_string(etc.join(file)).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in {file}: the README's commands did not create it"));
    line.split(':').nth(2).unwrap().parse().unwrap()
}

/// The shell block of the README's "Operations (systemd)" section.
fn operations_block() -> Vec<String> {
    let readme = fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme.split("## Operations (systemd)").nth(1).expect("README has an Operations section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    block.lines().map(|l| l.split(" #").next().unwrap().trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// A process started as a unit would be, killed by pid on drop.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(root: &Root, name: &'static str, uid: u32, gid: u32, unit: &Unit) -> Service {
        let mut env: Vec<(String, String)> = unit.environment.clone();
        for file in &unit.environment_files {
            let text = fs::read_to_string(root.map(file)).unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            env.extend(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())));
        }
        let mut command_line = unit.exec_start.clone();
        for (k, v) in &env {
            command_line = command_line.replace(&format!("${{{k}}}"), v);
        }
        let args: Vec<String> = root.map(&format!(" {command_line}")).split_whitespace().map(String::from).collect();
        let log = root.dir.path().join(format!("{name}.log"));
        let stderr = fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let umask = format!("{:04o}", unit.umask.unwrap_or(0o022));
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--groups", &gid.to_string()])
            .args(["--no-new-privs", "--inh-caps=-all", "--"])
            .args(["sh", "-c", "umask \"$0\" && exec \"$@\"", &umask])
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().map(|(k, v)| (k.clone(), root.map(v))))
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: setpriv: {e}"));
        Service { name, child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the process's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, fs::read_to_string(&self.log).unwrap_or_default());
        }
    }

    /// SIGTERM, as `systemctl stop` sends, and reap.
    fn stop(mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} did not stop cleanly on SIGTERM: {status}", self.name);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sh -c script` as `uid`/`gid`; returns whether it succeeded.
fn run_as(uid: u32, gid: u32, script: &str) -> bool {
    Command::new("setpriv")
        .args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--groups", &gid.to_string(), "--"])
        .args(["sh", "-c", script])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn write_owned(path: &Path, text: &str, uid: u32, gid: u32, mode: u32) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    nix::unistd::chown(&tmp, Some(uid.into()), Some(gid.into())).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
    fs::rename(&tmp, path).unwrap(); // as Vault Agent renders: a whole new file
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The core's answer to `sessions` on its control socket (as root, an allowed uid).
fn sessions(socket: &Path) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.write_all(b"sessions\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A nats-server for qilin-nats (run as root, as a host's own server would be).
struct Nats(Child);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_documented_deployment_runs_under_its_own_uids() {
    assert!(nix::unistd::geteuid().is_root(), "this test creates users and switches uids: run the suite as root");
    let root = Root {
        dir: tempfile::tempdir().unwrap(),
        segment: PathBuf::from(format!("/dev/shm/{}", unique("deploy"))),
        bins: workspace_bin("qilin-core").parent().unwrap().to_owned(),
    };
    for bin in ["qilin-secrets", "qilin-nats", "qilin-recorder", "qilinctl"] {
        workspace_bin(bin);
    }
    fs::set_permissions(root.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();

    // 1. Users and directories, as the README says, over a copy of /etc.
    let etc = root.etc();
    let copied = Command::new("cp").arg("-a").arg("/etc/.").arg(&etc).status().unwrap();
    assert!(copied.success());
    let mut script = String::from("set -e\nmount --bind \"$0\" /etc\n");
    let known_skipped = [
        "apt-get install",
        "cargo build",
        "install -m 0755 target/release/",
        "usermod",
        "cp config/systemd/",
        "systemctl",
    ];
    let mut ran = Vec::new();
    for line in operations_block() {
        if ["groupadd ", "useradd ", "install -d "].iter().any(|p| line.starts_with(p)) {
            script.push_str(&line);
            script.push('\n');
            ran.push(line);
        } else {
            assert!(
                known_skipped.iter().any(|p| line.starts_with(p)),
                "README's Operations block has a line this test does not know how to run or skip: {line}"
            );
        }
    }
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(&etc)
        .status()
        .unwrap();
    assert!(status.success(), "the README's commands failed:\n{}", ran.join("\n"));
    let gid = id_of(&etc, "group", "qilin");
    let core_uid = id_of(&etc, "passwd", "qilin");
    let secrets_uid = id_of(&etc, "passwd", "qilin-secrets");
    let nats_uid = id_of(&etc, "passwd", "qilin-nats");
    let recorder_uid = id_of(&etc, "passwd", "qilin-recorder");
    let etc_qilin = etc.join("qilin");
    let meta = fs::metadata(&etc_qilin).expect("the README creates /etc/qilin");
    assert_eq!((meta.uid(), meta.gid()), (0, gid), "/etc/qilin");
    for dir in ["run", "var/log", "var/lib"] {
        fs::create_dir_all(root.dir.path().join(dir)).unwrap();
    }

    // 2. The units, and what systemd would create for them.
    let units_dir = workspace().join("config/systemd");
    let unit = |name: &str| parse_unit(&fs::read_to_string(units_dir.join(format!("{name}.service"))).unwrap());
    let units: BTreeMap<&str, Unit> =
        ["qilin-core", "qilin-secrets", "qilin-nats", "qilin-recorder"].into_iter().map(|n| (n, unit(n))).collect();
    let uid_of = |user: &str| id_of(&etc, "passwd", user);
    for (name, u) in &units {
        assert_eq!(id_of(&etc, "group", &u.group), gid, "{name}: Group={} is not the feed's group", u.group);
        for (base, dir, mode) in &u.directories {
            let path = PathBuf::from(root.map(&format!("{base}{dir}")));
            fs::create_dir_all(&path).unwrap();
            nix::unistd::chown(&path, Some(uid_of(&u.user).into()), Some(gid.into())).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
    assert_eq!(uid_of(&units["qilin-core"].user), core_uid);
    assert_eq!(uid_of(&units["qilin-secrets"].user), secrets_uid);
    assert_eq!(uid_of(&units["qilin-nats"].user), nats_uid);
    assert_eq!(uid_of(&units["qilin-recorder"].user), recorder_uid);

    // 3. The configuration the Operations section asks for, root:qilin 0640 in /etc/qilin.
    let feed = root.segment.file_name().unwrap().to_str().unwrap().to_string();
    let config = |name: &str, text: String| write_owned(&etc_qilin.join(name), &root.map(&text), 0, gid, 0o640);
    let repo_config = workspace().join("config");
    config(
        "core.toml",
        format!(
            "[feed]\nname = {feed:?}\nsegment_path = \"/dev/shm/qilin\"\n\
             [core]\nlock_memory = false\ncontrol_socket = \"/run/qilin/qilin.sock\"\n\
             control_allowed_uids = [0, {secrets_uid}]\nsecrets_uid = {secrets_uid}\ninstruments_file = {:?}\ncalendar_dir = {:?}\n\
             [source.sim]\nticks_per_second = 2000\nseed = 5\n\
             [source.sim.sessions]\nenabled = true\nlogin_ms = 10\nreconnect_ms = 200\n\
             [failover]\noverlap_ms = 200\nlogin_retry_ms = 100\n",
            repo_config.join("instruments.toml").display().to_string(),
            repo_config.join("calendar").display().to_string(),
        ),
    );
    config("secrets.env.conf", format!("QILIN_CORE_UID={core_uid}\n"));
    let nats_port = free_port();
    let metrics_port = free_port();
    config(
        "nats.toml",
        format!(
            "name = \"nats\"\nsegment = \"/dev/shm/qilin\"\nstate_dir = \"/var/lib/qilin-nats\"\nstatus_interval_ms = 50\n\
             journal_dir = \"/var/lib/qilin/journal\"\n\
             [nats]\nurls = [\"nats://127.0.0.1:{nats_port}\"]\nreconnect_max_delay_ms = 200\n\
             [jetstream]\nstorage = \"memory\"\n"
        ),
    );
    config(
        "recorder.toml",
        format!(
            "name = \"recorder\"\nsegment = \"/dev/shm/qilin\"\njournal_dir = \"/var/lib/qilin/journal\"\n\
             status_interval_ms = 50\naudit_anchor_interval_ms = 50\n\
             [metrics]\nenabled = true\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [[audit_anchor]]\nlog = \"/var/log/qilin/audit.jsonl\"\nanchor = \"/var/lib/qilin/audit-anchor/core.jsonl\"\n\
             [[audit_anchor]]\nlog = \"/var/log/qilin-secrets/audit.jsonl\"\n\
             anchor = \"/var/lib/qilin/audit-anchor/secrets.jsonl\"\n"
        ),
    );
    // The credentials, as Vault Agent renders them: one file owned by qilin-secrets, mode 0600.
    let secrets_source = PathBuf::from(root.map("/run/qilin-secrets"));
    let credentials = fs::read_to_string(repo_config.join("secrets.sim.env")).unwrap();
    write_owned(&secrets_source, &credentials, secrets_uid, gid, 0o600);

    let nats_conf = root.dir.path().join("nats-server.conf");
    fs::write(
        &nats_conf,
        format!("listen: 127.0.0.1:{nats_port}\njetstream {{ store_dir: {:?} }}\n", root.dir.path().join("js")),
    )
    .unwrap();
    let _nats = Nats(Command::new("nats-server").arg("-c").arg(&nats_conf).stderr(Stdio::null()).spawn().unwrap());

    // 4. The core, then qilin-secrets hands the credentials over.
    let start = |name: &'static str| {
        let u = &units[name];
        Service::start(&root, name, uid_of(&u.user), gid, u)
    };
    let mut core = start("qilin-core");
    let socket = PathBuf::from(root.map("/run/qilin/qilin.sock"));
    wait_for("the core's control socket", || {
        core.assert_running();
        socket.exists().then_some(())
    });
    let seg = fs::metadata(&root.segment).unwrap();
    assert_eq!((seg.uid(), seg.gid(), seg.mode() & 0o7777), (core_uid, gid, 0o640), "the segment's owner and mode");
    let mut secrets = start("qilin-secrets");
    wait_for("both sessions logged in with the handed-over credentials", || {
        secrets.assert_running();
        core.assert_running();
        let s = sessions(&socket)?;
        (s["sessions"]["primary"]["state"] == "logged_in" && s["sessions"]["backup"]["state"] == "logged_in")
            .then_some(())
    });

    // 5. The read-only sidecars.
    let mut recorder = start("qilin-recorder");
    let mut nats = start("qilin-nats");
    let status =
        |name: &str| qilin_market::status::read_all(&root.segment).into_iter().find(|(n, _)| n == name).map(|(_, v)| v);
    for (name, pid) in [("secrets", secrets.pid()), ("recorder", recorder.pid()), ("nats", nats.pid())] {
        wait_for(&format!("{name}'s status file"), || {
            recorder.assert_running();
            nats.assert_running();
            let v = status(name)?;
            (v["pid"] == pid).then_some(())
        });
    }
    let status_dir = qilin_market::status::status_dir(&root.segment);
    assert_eq!(fs::metadata(&status_dir).unwrap().mode() & 0o7777, 0o3770, "the status directory");
    wait_for("the recorder's metrics, with qilin-secrets' counters read from its status file", || {
        let body = http_get(metrics_port, "/metrics")?;
        body.contains("sidecar=\"secrets\",counter=\"watch_rounds\"").then_some(())
    });

    // Only the core can write the segment; the others read it through the group.
    let seg_path = root.segment.display().to_string();
    for (who, uid) in [("qilin-nats", nats_uid), ("qilin-recorder", recorder_uid), ("qilin-secrets", secrets_uid)] {
        assert!(run_as(uid, gid, &format!("test -r {seg_path}")), "{who} cannot read the segment");
        assert!(!run_as(uid, gid, &format!(": >> {seg_path}")), "{who} can write the segment");
    }
    let core_audit = PathBuf::from(root.map("/var/log/qilin/audit.jsonl"));
    let secrets_audit = PathBuf::from(root.map("/var/log/qilin-secrets/audit.jsonl"));
    for (log, other) in [(&core_audit, secrets_uid), (&secrets_audit, core_uid)] {
        assert!(!run_as(other, gid, &format!(": >> {}", log.display())), "another uid can write {}", log.display());
    }

    // 6. A rotation: a new primary password, rendered as a new file.
    write_owned(&secrets_source, &credentials.replace("password-1", "password-3"), secrets_uid, gid, 0o600);
    let done = wait_for("the rotation's last step in qilin-secrets' audit log", || {
        secrets.assert_running();
        audit_entries(&secrets_audit).into_iter().find(|e| e["actions"][0]["step"] == "done")
    });
    let outcome = done["actions"][0]["outcome"].as_str().unwrap_or_default().to_string();
    assert!(outcome.starts_with("rotated"), "{done}");
    let after = sessions(&socket).unwrap();
    assert_eq!(after["active"], "primary", "{after}");
    assert_eq!(after["sessions"]["primary"]["credentials_version"], 2, "{after}");

    // 7. A sidecar restart: `systemctl restart qilin-nats`.
    let old_pid = nats.pid();
    let position = |v: &Value| v["position"].as_u64().unwrap_or(0);
    let before = wait_for("qilin-nats publishing", || status("nats").filter(|v| position(v) > 0));
    nats.stop();
    let nats = start("qilin-nats");
    let restarted = wait_for("the restarted qilin-nats going on from its cursor", || {
        status("nats").filter(|v| v["pid"] == nats.pid() && position(v) > position(&before))
    });
    assert_ne!(restarted["pid"], old_pid);

    // 8. Both audit logs verify against the recorder's anchors, read by an operator of the group
    //    (here the nats uid: a member of qilin that writes neither log nor anchor), and neither
    //    writer of a log can touch its anchor.
    let anchors = [
        (&core_audit, PathBuf::from(root.map("/var/lib/qilin/audit-anchor/core.jsonl"))),
        (&secrets_audit, PathBuf::from(root.map("/var/lib/qilin/audit-anchor/secrets.jsonl"))),
    ];
    for (log, anchor) in &anchors {
        let head = audit_entries(log).last().map(|e| e["seq"].clone()).expect("an audit entry");
        wait_for(&format!("{} anchored at seq {head}", log.display()), || {
            recorder.assert_running();
            let text = fs::read_to_string(anchor).ok()?;
            text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|a| a["seq"] == head).then_some(())
        });
        let verify = format!(
            "{} audit verify --log {} --anchor {}",
            workspace_bin("qilinctl").display(),
            log.display(),
            anchor.display()
        );
        assert!(
            run_as(nats_uid, gid, &verify),
            "qilinctl audit verify --anchor of {} failed as a group member",
            log.display()
        );
        assert!(!audit_entries(log).is_empty(), "{} is empty", log.display());
        for (who, uid) in [("qilin", core_uid), ("qilin-secrets", secrets_uid), ("qilin-nats", nats_uid)] {
            assert!(!run_as(uid, gid, &format!(": >> {}", anchor.display())), "{who} can write {}", anchor.display());
        }
    }
    let handoffs = audit_entries(&secrets_audit).iter().filter(|e| e["command"] == "secrets handoff").count();
    assert!(handoffs >= 2, "no credential hand-off in qilin-secrets' audit log");

    drop((nats, recorder, secrets));
    core.stop();
    remove_segment(&root.segment);
    let _ = fs::remove_dir_all(status_dir);
}
