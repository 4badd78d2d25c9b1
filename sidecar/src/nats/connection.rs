//! The NATS connection: connect options (TLS, user and password, token, NKey, credentials, the
//! reconnect backoff), the connect retry loop, the JetStream context, and which connect errors are
//! not worth retrying.

use std::{
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, jetstream};
use secrecy::ExposeSecret;

use super::{
    Starting,
    config::{self, Config, Mode},
};
use qilin_market::secrets::file as secret;

/// Builds the connect options from the config plus secrets from the environment or secret files.
pub fn connect_options(config: &Config, connected: Arc<AtomicBool>) -> anyhow::Result<ConnectOptions> {
    let n = &config.nats;
    let max_delay = config::ms(n.reconnect_max_delay_ms);
    let mut credentials = false;
    let options = match &n.credentials_file {
        Some(path) => {
            // Read now, so a missing or bad file stops the start naming it; then at every connect.
            load_managed(path)?;
            credentials = true;
            let path = path.clone();
            ConnectOptions::with_auth_callback(move |_nonce| {
                let loaded = load_managed(&path);
                async move {
                    let (user, password) = loaded.map_err(|e| {
                        tracing::error!("{e:#}");
                        async_nats::AuthError::new(format!("{e:#}"))
                    })?;
                    let mut auth = async_nats::Auth::new();
                    auth.username = Some(user);
                    auth.password = Some(password.expose_secret().to_owned());
                    Ok(auth)
                }
            })
        }
        None => ConnectOptions::new(),
    };
    let mut options = options
        .name(format!("qilin-nats/{}", config.name))
        .connection_timeout(config::ms(n.connect_timeout_ms))
        .request_timeout(Some(config::ms(n.request_timeout_ms)))
        .client_capacity(n.client_capacity)
        .reconnect_delay_callback(move |attempts| {
            (Duration::from_millis(50) * 2u32.saturating_pow(attempts.min(16) as u32)).min(max_delay)
        })
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => {
                        connected.store(true, Ordering::Relaxed);
                        tracing::info!("NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        connected.store(false, Ordering::Relaxed);
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    other => tracing::warn!("NATS: {other}"),
                }
            }
        });
    let user = if n.user.is_empty() { std::env::var("NATS_USER").unwrap_or_default() } else { n.user.clone() };
    if let Some(password) = secret::load("NATS_PASSWORD", "nats.password_file", n.password_file.as_deref())? {
        if user.is_empty() {
            bail!("a NATS password is given but no user (nats.user or NATS_USER)");
        }
        options = options.user_and_password(user, password.expose_secret().to_owned());
        credentials = true;
    }
    if let Some(token) = secret::load("NATS_TOKEN", "nats.token_file", n.token_file.as_deref())? {
        options = options.token(token.expose_secret().to_owned());
        credentials = true;
    }
    if let Some(seed) = secret::load("NATS_NKEY_SEED", "nats.nkey_seed_file", n.nkey_seed_file.as_deref())? {
        // The seed never leaves this process (the server gets a signature of its nonce).
        options = options.nkey(seed.expose_secret().to_owned());
    }
    let creds = n.creds_file.clone().or_else(|| std::env::var_os("NATS_CREDS_FILE").map(Into::into));
    if let Some(path) = creds {
        let text = secret::load("QILIN_UNUSED_CREDS_VARIABLE", "nats.creds_file", Some(&path))?
            .ok_or_else(|| anyhow!("nats.creds_file {}: empty", path.display()))?;
        options = options
            .credentials(text.expose_secret())
            .with_context(|| format!("nats.creds_file {}: not a NATS credentials file", path.display()))?;
        credentials = true;
    }
    let t = &n.tls;
    let tls_forced = t.required || t.ca_file.is_some() || t.cert_file.is_some();
    if tls_forced {
        options = options.require_tls(true);
    }
    if credentials && !n.allow_plaintext_credentials {
        for (i, url) in n.urls.iter().enumerate() {
            if qilin_market::secrets::validate::nats_plaintext_off_host(url, tls_forced).unwrap_or(false) {
                bail!(
                    "nats.urls[{i}] = {url:?}: the NATS credentials would cross the network in clear (not TLS, not \
                     this host): use tls:// or [nats.tls] required = true, or set nats.allow_plaintext_credentials \
                     = true on a network you trust"
                );
            }
        }
    }
    if let Some(ca) = &t.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
        // The key is a secret file: refuse it when every user can read it (the client reads it).
        secret::load("QILIN_UNUSED_KEY_VARIABLE", "nats.tls.key_file", Some(key))?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

/// `nats.credentials_file`: the managed key's active user and password (docs/KEYS.md).
fn load_managed(path: &Path) -> anyhow::Result<(String, secrecy::SecretString)> {
    qilin_market::secrets::managed::load_nats_credentials(path).map_err(|e| anyhow!("nats.credentials_file: {e}"))
}

/// Watches `nats.credentials_file` (its inode, size and modification time, every 200 ms): when a
/// rotation renders a new version, reconnects so the auth callback reads it, while the server still
/// accepts the old one (its grace period). The watch ends when the guard is dropped.
pub(super) fn watch_credentials(config: &Config, client: Client) -> Option<CredentialsWatch> {
    let path = config.nats.credentials_file.clone()?;
    let identity = move || std::fs::metadata(&path).ok().map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
    let task = tokio::spawn(async move {
        let mut seen = identity();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = identity();
            if now != seen && now.is_some() {
                seen = now;
                tracing::info!("nats.credentials_file changed: reconnecting with the new version");
                if let Err(e) = client.force_reconnect().await {
                    tracing::warn!("nats.credentials_file changed but the reconnect could not be asked for: {e}");
                }
            }
        }
    });
    Some(CredentialsWatch(task))
}

/// The task of [`watch_credentials`], aborted on drop (it holds a client handle).
#[derive(Debug)]
pub struct CredentialsWatch(tokio::task::JoinHandle<()>);

impl Drop for CredentialsWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects, retrying while the server is unreachable (logging each failure, doubling the delay up
/// to `reconnect_max_delay_ms`); gives up at once on TLS and authentication failures, or when
/// `stop` is set. Returns the client and the flag its event callback keeps up to date.
pub(super) async fn connect(
    config: &Config,
    stop: &AtomicBool,
    starting: &Starting,
) -> anyhow::Result<(Client, Arc<AtomicBool>)> {
    let connected = Arc::new(AtomicBool::new(false));
    let urls = config.nats.urls.join(", ");
    let mut delay = Duration::from_millis(100);
    let client = loop {
        let options = connect_options(config, connected.clone())?;
        match options.connect(config.nats.urls.as_slice()).await {
            Ok(client) => break client,
            Err(e) if tls_error(&e).is_some() => {
                let tls = tls_error(&e).expect("checked");
                bail!("cannot connect to NATS at {urls} (not retried): TLS handshake failed: {tls}");
            }
            // async-nats's message already carries its cause: print it once.
            Err(e) if is_fatal(e.kind()) => bail!("cannot connect to NATS at {urls} (not retried): {e}"),
            Err(e) => {
                tracing::warn!("cannot connect to NATS at {urls}: {e}; retrying in {delay:?}");
                starting.connect_failed(format!("cannot connect to NATS at {urls}: {e}"));
                if stop.load(Ordering::Relaxed) {
                    bail!("stopped before NATS could be reached");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(config::ms(config.nats.reconnect_max_delay_ms));
            }
        }
    };
    connected.store(true, Ordering::Relaxed);
    Ok((client, connected))
}

/// The JetStream context in JetStream mode, `None` in core mode.
pub(super) fn jetstream_context(config: &Config, client: &Client) -> Option<jetstream::Context> {
    (config.nats.mode == Mode::Jetstream).then(|| {
        jetstream::ContextBuilder::new()
            .timeout(config::ms(config.nats.request_timeout_ms))
            // Acks of publishes dropped after a failure keep their permits in the client's
            // acker until they arrive or time out: room for a second window, and a short
            // timeout, so a resynchronised sidecar does not wait on the failed window's permits.
            .ack_timeout(config::ms(config.nats.request_timeout_ms))
            .max_ack_inflight(2 * config.jetstream.ack_window + 1)
            .backpressure_on_inflight(true)
            .build(client.clone())
    })
}

/// True for connection errors that retrying cannot fix (TLS, authentication, bad address).
pub fn is_fatal(kind: ConnectErrorKind) -> bool {
    matches!(
        kind,
        ConnectErrorKind::Tls
            | ConnectErrorKind::Authentication
            | ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::ServerParse
    )
}

/// The TLS error behind a connect error. async-nats reports a failed handshake (a server
/// certificate the CA file does not vouch for, a client certificate the server refused with an
/// alert) as `ConnectErrorKind::Io` wrapping the rustls error in an `io::Error`, so
/// [`is_fatal`] alone would retry it forever.
pub fn tls_error(e: &async_nats::ConnectError) -> Option<&async_nats::rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<async_nats::rustls::Error>() {
            return Some(tls);
        }
        // io::Error::source() skips the wrapped error itself: look at it with get_ref().
        if let Some(tls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        {
            return Some(tls);
        }
        source = s.source();
    }
    None
}
