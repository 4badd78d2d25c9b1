//! qilin-nats against a real nats-server with TLS, mutual TLS and authentication, and a real
//! qilin-core on the simulator. Every certificate is made here with rcgen (a private CA, a server
//! certificate for 127.0.0.1/localhost, client certificates, and a second CA nobody trusts). The
//! failures that retrying cannot fix (TLS, authorization) must end the process with the reason on
//! stderr; secrets must never reach the log, the status file, the cursor file or argv.

mod common;

use std::{
    fs,
    io::Write,
    net::TcpStream,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use async_nats::ConnectOptions;
use common::*;
use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Ticks each test sends through the sidecar.
const TICKS: u64 = 3_000;
/// How long a sidecar may take to give up on a fatal connect error (connect timeout is 2 s).
const FATAL_EXIT: Duration = Duration::from_secs(10);

/// Writes `text` to `path` with permission bits `mode` (set explicitly: the umask does not apply).
fn write_file(path: &Path, text: &str, mode: u32) {
    let mut file = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(mode).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM).
    cert: PathBuf,
}

/// A certificate and its private key, as files.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    /// The PEM text of the key, to check it never reaches a log.
    key_pem: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("qilin test CA {name}"));
        params.distinguished_name.push(DnType::OrganizationName, "qilin-feed tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        write_file(&path, &cert.pem(), 0o644);
        Ca { issuer: Issuer::new(params, key), cert: path }
    }

    /// A certificate for `sans` (IP addresses or DNS names) with extended key usage `usage`; the
    /// key file gets mode `key_mode`.
    fn issue(&self, dir: &Path, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose, key_mode: u32) -> Leaf {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            key_pem: key.serialize_pem(),
        };
        write_file(&leaf.cert, &cert.pem(), 0o644);
        write_file(&leaf.key, &leaf.key_pem, key_mode);
        leaf
    }

    fn server_cert(&self, dir: &Path) -> Leaf {
        self.issue(dir, "server", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth, 0o600)
    }
}

/// A nats-server with JetStream and an `authorization { ... }` block (the common fixture has no
/// authentication); killed on drop.
struct AuthServer {
    port: u16,
    child: Child,
}

impl AuthServer {
    fn start(dir: &Path, authorization: &str) -> AuthServer {
        let port = free_port();
        let conf = dir.join(format!("nats-server-auth-{port}.conf"));
        write_file(
            &conf,
            &format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\nauthorization {{\n{authorization}\n}}\n",
                dir.join("jetstream").display().to_string()
            ),
            0o600,
        );
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("nats-server.log")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server must be installed (.ci/run installs Debian's nats-server)");
        let server = AuthServer { port, child };
        wait_for("nats-server to listen", || TcpStream::connect(("127.0.0.1", port)).ok());
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the sidecar has confirmed every tick, checks the stream holds 1..=TICKS once each
/// (read with `options`), stops the sidecar with SIGTERM and returns its last status object.
fn deliver_all(
    sidecar: &mut Sidecar,
    core: &Core,
    feed: &str,
    url: &str,
    options: ConnectOptions,
) -> serde_json::Value {
    let status = wait_for("qilin-nats to confirm every tick", || {
        status(&core.segment, "nats").filter(|s| s["position"] == TICKS)
    });
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(sidecar.signal(Signal::SIGTERM).code(), Some(0), "clean stop on SIGTERM:\n{}", sidecar.log());
    let stored = runtime().block_on(stream_contents_with(options, url, &stream_name(feed)));
    let gaps = assert_exactly_once(&stored, TICKS);
    assert!(gaps.is_empty(), "the ring held every tick, yet gap events {gaps:?}");
    status
}

/// Waits (at most [`FATAL_EXIT`]) for the sidecar to give up on its own and returns its exit
/// status and log. A sidecar that keeps retrying instead fails the test with its log.
fn fatal_exit(sidecar: &mut Sidecar, what: &str) -> (ExitStatus, String) {
    let deadline = Instant::now() + FATAL_EXIT;
    // main() prints the error as its last line, "qilin-nats: <error>", just before exiting.
    while !sidecar.log().contains("qilin-nats: ") {
        assert!(
            Instant::now() < deadline,
            "{what}: qilin-nats still runs after {FATAL_EXIT:?} instead of exiting on a fatal error; its log:\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let exit = sidecar.wait_exit();
    let log = sidecar.log();
    println!("--- {what}: qilin-nats exited with {exit}; its log:\n{log}---");
    assert!(!exit.success(), "{what}: qilin-nats exited successfully:\n{log}");
    (exit, log)
}

/// The (only) line of `log` that main() printed on exit.
fn exit_line(log: &str) -> &str {
    log.lines().rev().find(|l| l.starts_with("qilin-nats: ")).unwrap_or_else(|| panic!("no exit line in:\n{log}"))
}

/// Fails if `secret` occurs in any of `places` (name, content).
fn assert_absent(secret: &str, places: &[(&str, &[u8])]) {
    for (name, content) in places {
        assert!(!content.is_empty(), "{name} is empty: nothing was checked");
        let found = content.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret appears in {name}:\n{}", String::from_utf8_lossy(content));
    }
}

/// Makes sure the trace logging was on, so the secret checks on a log cover the CONNECT line.
fn assert_connect_traced(log: &str) {
    let connect = log.lines().find(|l| l.contains("write operation: CONNECT"));
    let connect = connect.unwrap_or_else(|| panic!("RUST_LOG=trace did not show the CONNECT:\n{log}"));
    println!("the client's trace of its CONNECT: {connect}");
}

/// The command line of the running sidecar whose status object is `status` (from /proc).
fn proc_cmdline(status: &serde_json::Value) -> Vec<u8> {
    let pid = status["pid"].as_u64().expect("pid in the status file");
    fs::read(format!("/proc/{pid}/cmdline")).unwrap()
}

#[test]
fn tls_with_a_private_ca_delivers_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "qilin");
    let server_cert = ca.server_cert(dir.path());
    let server = NatsServer::start_with(
        dir.path(),
        Some(ServerTls { cert: server_cert.cert.clone(), key: server_cert.key.clone(), verify_ca: None }),
    );
    let feed = unique("tls");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    // tls:// asks for TLS by itself; ca_file makes the sidecar trust the private CA.
    let url = format!("tls://127.0.0.1:{}", server.port);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &url,
        &format!("[nats.tls]\nca_file = {:?}\n", ca.cert.display().to_string()),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    let options = ConnectOptions::new().require_tls(true).add_root_certificates(ca.cert.clone());
    let status = deliver_all(&mut sidecar, &core, &feed, &url, options);
    assert_eq!(status["counters"]["errors"], 0, "{status}");

    // A client that does not trust the private CA is refused: the server really presents the
    // CA's certificate, and the sidecar's ca_file is what made its connection work.
    let untrusting = runtime().block_on(ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect(&url));
    assert!(untrusting.is_err(), "a client without the CA connected to the TLS server");
}

#[test]
fn a_server_certificate_of_an_unknown_ca_is_refused_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new(dir.path(), "trusted");
    let rogue = Ca::new(dir.path(), "rogue");
    let server_cert = rogue.server_cert(dir.path());
    let server = NatsServer::start_with(
        dir.path(),
        Some(ServerTls { cert: server_cert.cert.clone(), key: server_cert.key.clone(), verify_ca: None }),
    );
    let feed = unique("tls-rogue");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("[nats.tls]\nca_file = {:?}\n", trusted.cert.display().to_string()),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    // async-nats reports a failed TLS handshake as ConnectErrorKind::Io; `tls_error` finds the
    // rustls error inside so the sidecar stops instead of retrying an unfixable failure.
    let (_, log) = fatal_exit(&mut sidecar, "server certificate of an unknown CA");
    let line = exit_line(&log);
    assert!(line.contains("cannot connect to NATS at") && line.contains("(not retried)"), "{line}");
    assert!(line.contains("TLS") && line.contains("UnknownIssuer"), "the TLS failure is not named: {line}");
    // Its status said so from the start: not connected, with the reason (it was written before
    // any connection, as the docs promise).
    let said = status(&core.segment, "nats").expect("a status file from the first moment");
    assert_eq!(said["connected"], false, "{said}");
    assert!(said["last_error"].as_str().is_some_and(|e| e.contains("UnknownIssuer")), "{said}");
}

#[test]
fn mutual_tls_accepts_a_client_certificate_of_the_ca_and_refuses_another_cas() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "qilin");
    let other = Ca::new(dir.path(), "other");
    let server_cert = ca.server_cert(dir.path());
    let good = ca.issue(dir.path(), "client", &[], ExtendedKeyUsagePurpose::ClientAuth, 0o600);
    let foreign = other.issue(dir.path(), "foreign-client", &[], ExtendedKeyUsagePurpose::ClientAuth, 0o600);
    let server = NatsServer::start_with(
        dir.path(),
        Some(ServerTls {
            cert: server_cert.cert.clone(),
            key: server_cert.key.clone(),
            verify_ca: Some(ca.cert.clone()),
        }),
    );
    let feed = unique("mtls");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    // nats:// with a [nats.tls] section: the sidecar upgrades to TLS because the config asks for it.
    let tls_section = |leaf: &Leaf| {
        format!(
            "[nats.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            ca.cert.display().to_string(),
            leaf.cert.display().to_string(),
            leaf.key.display().to_string()
        )
    };

    let good_dir = dir.path().join("good");
    fs::create_dir(&good_dir).unwrap();
    let config = sidecar_config(&good_dir, &core.segment, &server.url(), &tls_section(&good), "");
    let mut sidecar = Sidecar::start(&config, &good_dir.join("nats.log"));
    let options = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.cert.clone())
        .add_client_certificate(good.cert.clone(), good.key.clone());
    deliver_all(&mut sidecar, &core, &feed, &server.url(), options);
    assert_absent(&good.key_pem, &[("the log", sidecar.log().as_bytes())]);

    let bad_dir = dir.path().join("foreign");
    fs::create_dir(&bad_dir).unwrap();
    let config = sidecar_config(&bad_dir, &core.segment, &server.url(), &tls_section(&foreign), "");
    let mut sidecar = Sidecar::start(&config, &bad_dir.join("nats.log"));
    // The server's BadCertificate alert reaches the client as ConnectErrorKind::Io too.
    let (_, log) = fatal_exit(&mut sidecar, "client certificate of another CA");
    let line = exit_line(&log);
    assert!(line.contains("cannot connect to NATS at") && line.contains("(not retried)"), "{line}");
    // The server rejects the certificate with a TLS alert after the client finished its handshake.
    assert!(line.contains("TLS") && line.contains("BadCertificate"), "the TLS failure is not named: {line}");
    assert_absent(&foreign.key_pem, &[("the log", log.as_bytes())]);
}

#[test]
fn a_world_readable_client_key_is_refused_naming_nats_tls_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "qilin");
    let server_cert = ca.server_cert(dir.path());
    let client = ca.issue(dir.path(), "client", &[], ExtendedKeyUsagePurpose::ClientAuth, 0o644);
    let server = NatsServer::start_with(
        dir.path(),
        Some(ServerTls {
            cert: server_cert.cert.clone(),
            key: server_cert.key.clone(),
            verify_ca: Some(ca.cert.clone()),
        }),
    );
    let feed = unique("tls-key-mode");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!(
            "[nats.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            ca.cert.display().to_string(),
            client.cert.display().to_string(),
            client.key.display().to_string()
        ),
        "",
    );
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats.log"));
    let (_, log) = fatal_exit(&mut sidecar, "world-readable client key");
    let line = exit_line(&log);
    assert!(line.contains("nats.tls.key_file"), "the config key is not named: {line}");
    assert!(line.contains(&client.key.display().to_string()), "the file is not named: {line}");
    assert!(line.contains("group/world-readable (mode 0644)"), "{line}");
    assert_absent(&client.key_pem, &[("the log", log.as_bytes())]);

    // The same key made private works: the refusal was about the mode only.
    fs::set_permissions(&client.key, fs::Permissions::from_mode(0o600)).unwrap();
    let log_ok = dir.path().join("nats-ok.log");
    let mut sidecar = Sidecar::start(&config, &log_ok);
    let options = ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.cert.clone())
        .add_client_certificate(client.cert.clone(), client.key.clone());
    deliver_all(&mut sidecar, &core, &feed, &server.url(), options);
}

#[test]
fn password_from_a_secret_file_works_and_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}-{}", std::process::id(), qilin_shm::now_ns());
    let server = AuthServer::start(dir.path(), &format!("  user: qilin\n  password: {password:?}"));
    let feed = unique("auth-pw");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let secret = dir.path().join("nats-password");
    write_file(&secret, &format!("{password}\n"), 0o600);
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("user = \"qilin\"\npassword_file = {:?}\n", secret.display().to_string()),
        "",
    );
    // The most verbose logging an operator could turn on while troubleshooting: the client's
    // trace of its CONNECT must not carry the password either.
    let envs = vec![("RUST_LOG".to_string(), "trace".to_string())];
    let mut sidecar = Sidecar::start_with_env(&config, &dir.path().join("nats.log"), envs);
    let pid = u64::from(sidecar.pid());
    let running = wait_for("this sidecar's status file", || {
        status(&core.segment, "nats").filter(|s| s["pid"].as_u64() == Some(pid))
    });
    let cmdline = proc_cmdline(&running);
    let options = ConnectOptions::new().user_and_password("qilin".into(), password.clone());
    deliver_all(&mut sidecar, &core, &feed, &server.url(), options);

    let status_file = fs::read(qilin_market::status::status_dir(&core.segment).join("nats.json")).unwrap();
    let cursor_file = fs::read(dir.path().join("state/nats.cursor")).unwrap();
    let cursor: serde_json::Value = serde_json::from_slice(&cursor_file).unwrap();
    assert_eq!(cursor["sequence"], TICKS, "the cursor file holds the last confirmed sequence");
    let log = sidecar.log();
    assert_connect_traced(&log);
    assert_absent(
        &password,
        &[
            ("the sidecar's log (stdout and stderr)", log.as_bytes()),
            ("the status file", &status_file),
            ("the cursor file", &cursor_file),
            ("the command line", &cmdline),
            ("the config file", &fs::read(&config).unwrap()),
        ],
    );
}

#[test]
fn a_wrong_password_is_an_authorization_error_and_a_world_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}-{}", std::process::id(), qilin_shm::now_ns());
    let wrong = format!("wrong-{}-{}", std::process::id(), qilin_shm::now_ns());
    let server = AuthServer::start(dir.path(), &format!("  user: qilin\n  password: {password:?}"));
    let feed = unique("auth-bad");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let secret = dir.path().join("nats-password");
    let config = sidecar_config(
        dir.path(),
        &core.segment,
        &server.url(),
        &format!("user = \"qilin\"\npassword_file = {:?}\n", secret.display().to_string()),
        "",
    );

    write_file(&secret, &format!("{wrong}\n"), 0o600);
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats-wrong.log"));
    let (_, log) = fatal_exit(&mut sidecar, "wrong password");
    let line = exit_line(&log);
    assert!(line.contains("cannot connect to NATS at") && line.contains("(not retried)"), "{line}");
    assert!(line.to_ascii_lowercase().contains("authorization violation"), "the reason is not named: {line}");
    assert_absent(&wrong, &[("the sidecar's log", log.as_bytes())]);
    assert!(!dir.path().join("state/nats.cursor").exists(), "a cursor was saved without a connection");

    // The right password in a file every user can read: refused before connecting.
    write_file(&secret, &format!("{password}\n"), 0o644);
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats-mode.log"));
    let (_, log) = fatal_exit(&mut sidecar, "world-readable password file");
    let line = exit_line(&log);
    assert!(line.contains("nats.password_file") && line.contains("group/world-readable (mode 0644)"), "{line}");
    assert_absent(&password, &[("the sidecar's log", log.as_bytes())]);

    // Readable by the group only: refused too (the one secret-file loader requires 0600 or 0400).
    write_file(&secret, &format!("{password}\n"), 0o640);
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats-group.log"));
    let (_, log) = fatal_exit(&mut sidecar, "group-readable password file");
    let line = exit_line(&log);
    assert!(line.contains("nats.password_file") && line.contains("group/world-readable (mode 0640)"), "{line}");
    assert_absent(&password, &[("the sidecar's log", log.as_bytes())]);
}

#[test]
fn a_token_from_nats_token_works_and_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("tok-{}-{}", std::process::id(), qilin_shm::now_ns());
    let server = AuthServer::start(dir.path(), &format!("  token: {token:?}"));
    let feed = unique("auth-token");
    let core = Core::start(dir.path(), &feed, 1 << 16, 10_000, TICKS);
    let config = sidecar_config(dir.path(), &core.segment, &server.url(), "", "");

    // Without the token the server refuses the sidecar: the token below is what lets it in.
    let mut sidecar = Sidecar::start(&config, &dir.path().join("nats-none.log"));
    let (_, log) = fatal_exit(&mut sidecar, "no token");
    assert!(exit_line(&log).to_ascii_lowercase().contains("authorization violation"), "{log}");

    let log_path = dir.path().join("nats.log");
    let envs = vec![("NATS_TOKEN".to_string(), token.clone()), ("RUST_LOG".to_string(), "trace".to_string())];
    let mut sidecar = Sidecar::start_with_env(&config, &log_path, envs);
    let pid = u64::from(sidecar.pid());
    let running = wait_for("this sidecar's status file", || {
        status(&core.segment, "nats").filter(|s| s["pid"].as_u64() == Some(pid))
    });
    let cmdline = proc_cmdline(&running);
    let options = ConnectOptions::new().token(token.clone());
    deliver_all(&mut sidecar, &core, &feed, &server.url(), options);
    let status_file = fs::read(qilin_market::status::status_dir(&core.segment).join("nats.json")).unwrap();
    let cursor_file = fs::read(dir.path().join("state/nats.cursor")).unwrap();
    let log = sidecar.log();
    assert_connect_traced(&log);
    assert_absent(
        &token,
        &[
            ("the sidecar's log (stdout and stderr)", log.as_bytes()),
            ("the status file", &status_file),
            ("the cursor file", &cursor_file),
            ("the command line", &cmdline),
        ],
    );
}

/// Credentials that would cross the network in clear are refused at start: a token for a
/// `nats://` server on another host (10.255.255.1, never contacted) stops qilin-nats with the URL
/// and what to do, and the token appears nowhere; `allow_plaintext_credentials = true` lets the
/// same configuration go on to connect (it keeps retrying that unreachable host). Before this
/// check the sidecar sent the token over plain TCP.
#[test]
fn credentials_in_clear_to_another_host_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("plain");
    let core = Core::start(dir.path(), &feed, 1 << 12, 100, 0);
    let token = "tok-plain-5e1f0c9a77d24b1e".to_string();
    let envs = vec![("NATS_TOKEN".to_string(), token.clone())];
    let url = "nats://10.255.255.1:4222";
    let config = sidecar_config(dir.path(), &core.segment, url, "connect_timeout_ms = 200\n", "");
    let mut sidecar = Sidecar::start_with_env(&config, &dir.path().join("refused.log"), envs.clone());
    let (_, log) = fatal_exit(&mut sidecar, "a token over plain nats:// to another host");
    let line = exit_line(&log);
    assert!(line.contains("nats.urls[0]") && line.contains(url) && line.contains("in clear"), "{line}");
    assert!(line.contains("allow_plaintext_credentials"), "{line}");
    assert!(!log.contains(&token), "the token appears in the log:\n{log}");

    let allowed = sidecar_config(
        dir.path(),
        &core.segment,
        url,
        "connect_timeout_ms = 200\nallow_plaintext_credentials = true\n",
        "",
    );
    let log_path = dir.path().join("allowed.log");
    let mut sidecar = Sidecar::start_with_env(&allowed, &log_path, envs);
    wait_for("an attempt to connect", || {
        fs::read_to_string(&log_path).ok().filter(|l| l.contains("cannot connect to NATS at")).map(|_| ())
    });
    assert!(!sidecar.log().contains("in clear"), "{}", sidecar.log());
    // Stopped while still trying to connect (it says so and exits non-zero, as it always has).
    sidecar.signal(Signal::SIGTERM);
    assert!(sidecar.log().contains("stopped before NATS could be reached"), "{}", sidecar.log());
}
