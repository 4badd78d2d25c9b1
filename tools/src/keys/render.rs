//! `qilinctl keys render-nats` and `render-key`: managed keys written where the processes that use
//! them read them, so no process but qilinctl needs the master key.
//!
//! `render-key NAME`: the active version in `qilin_market::secrets::managed`'s key file format
//! (`version=N`, `key=<64 hex>`), e.g. `audit-signing` for the recorder's keyed anchors.
//!
//! `render-nats`: a managed `api` key as NATS credentials, for both sides.
//!
//! NATS takes one token per server, so a token cannot have a grace period. A user with a password
//! can: every version of the key that still verifies (active or in grace) is one user,
//! `<prefix>-v<N>`, whose password is that version's token. The server accepts all of them; the
//! client uses the active one. After a rotation the server is reloaded with both users, the client
//! reconnects as the new one, and when the grace ends the old user disappears from the next render.
//!
//! - the **server include** (`include "…"` in nats-server.conf, in place of its `authorization`
//!   block): `authorization { users = [ … ] }`, mode 0600;
//! - the **client file** qilin-nats reads (`nats.credentials_file`): `NATS_USER=` and
//!   `NATS_PASSWORD=` lines of the active version, mode 0600.
//!
//! Both are written atomically (temporary file + rename), the server's first, so a client never
//! holds a version the reloaded server does not know.

use secrecy::{ExposeSecret, SecretString};

use super::{KeyError, State, Store};

/// One version rendered as a NATS user.
#[derive(Debug)]
pub struct NatsUser {
    pub version: u32,
    pub state: State,
    pub user: String,
    pub password: SecretString,
}

/// Every version of `name` that verifies at `now`, newest first, as a NATS user.
pub fn nats_users(store: &Store, name: &str, prefix: &str, now: i64) -> Result<Vec<NatsUser>, KeyError> {
    let key = store.key(name)?;
    let mut users = Vec::new();
    for v in key.versions.iter().rev() {
        let state = v.state_at(now);
        if state == State::Retired || v.material.is_none() {
            continue;
        }
        let (version, password) = store.token(name, Some(v.version))?;
        users.push(NatsUser { version, state, user: format!("{prefix}-v{version}"), password });
    }
    Ok(users)
}

/// The nats-server include: an `authorization` block with one user per version.
pub fn server_include(name: &str, users: &[NatsUser]) -> SecretString {
    let mut text = format!(
        "# Rendered by `qilinctl keys render-nats {name}`: one user per version of the managed key that\n\
         # still verifies. Do not edit: the next rotation renders it again.\n\
         authorization {{\n  users = [\n"
    );
    for u in users {
        text.push_str(&format!(
            "    {{ user: \"{}\", password: \"{}\" }}   # version {} ({})\n",
            u.user,
            u.password.expose_secret(),
            u.version,
            u.state.as_str()
        ));
    }
    text.push_str("  ]\n}\n");
    SecretString::from(text)
}

/// The client's dotenv file: the active version's user and password.
pub fn client_env(users: &[NatsUser]) -> Option<SecretString> {
    let active = users.iter().find(|u| u.state == State::Active)?;
    Some(SecretString::from(format!("NATS_USER={}\nNATS_PASSWORD={}\n", active.user, active.password.expose_secret())))
}

/// The key file of `name`'s active version (`render-key`), or of `version` if it still verifies at
/// `now` (active or in grace: e.g. the `journal-encryption` version an older journal needs): its
/// version and the text.
pub fn key_file(store: &Store, name: &str, version: Option<u32>, now: i64) -> Result<(u32, SecretString), KeyError> {
    if let Some(v) = version
        && !versions_in_force(store, name, now)?.contains(&v)
    {
        return Err(KeyError::NoMaterial { name: name.to_owned(), version: v });
    }
    let (version, _) = store.material(name, version)?;
    let which = if store.key(name)?.active().is_some_and(|a| a.version == version) {
        "the active version. Do not edit: a rotation renders it again."
    } else {
        "a version in grace (--version), for data it sealed."
    };
    Ok((version, key_file_text(store, name, &format!(": {which}"), &[version])?))
}

/// The key file of every version of `name` in force at `now` (`render-key --in-force`: the active
/// version and those in grace, newest first), for a reader of data older versions sealed (a
/// sidecar's `journal_key_files`): the versions and the text.
pub fn key_file_in_force(store: &Store, name: &str, now: i64) -> Result<(Vec<u32>, SecretString), KeyError> {
    let mut versions = versions_in_force(store, name, now)?;
    versions.sort_unstable_by(|a, b| b.cmp(a));
    if versions.is_empty() {
        return Err(KeyError::NoMaterial { name: name.to_owned(), version: store.key(name)?.versions.len() as u32 });
    }
    let comment = " --in-force: every version in force (active and in grace), for readers of what they sealed. \
                   Do not edit: a rotation renders it again.";
    Ok((versions.clone(), key_file_text(store, name, comment, &versions)?))
}

/// A key file: the format line, `# qilinctl keys render-key <name><comment>`, then a `version=`
/// and `key=` line for each of `versions`.
fn key_file_text(store: &Store, name: &str, comment: &str, versions: &[u32]) -> Result<SecretString, KeyError> {
    let mut text =
        format!("{}\n# qilinctl keys render-key {name}{comment}\n", qilin_market::secrets::managed::KEY_FILE_FORMAT);
    for &v in versions {
        let (_, token) = store.token(name, Some(v))?;
        text.push_str(&format!("version={v}\nkey={}\n", token.expose_secret()));
    }
    Ok(SecretString::from(text))
}

/// The versions of `name` in force at `now` (active or in grace, material still held), oldest first.
fn versions_in_force(store: &Store, name: &str, now: i64) -> Result<Vec<u32>, KeyError> {
    let key = store.key(name)?;
    Ok(key
        .versions
        .iter()
        .filter(|v| v.state_at(now) != State::Retired && v.material.is_some())
        .map(|v| v.version)
        .collect())
}

/// Every version of `name` that verifies at `now` (active or in grace) with its material: what
/// `qilinctl audit verify --keys` checks keyed anchors with.
pub fn verifying_versions(store: &Store, name: &str, now: i64) -> Result<Vec<(u32, Vec<u8>)>, KeyError> {
    let mut out = Vec::new();
    for version in versions_in_force(store, name, now)? {
        let (version, material) = store.material(name, Some(version))?;
        out.push((version, material.expose_secret().to_vec()));
    }
    Ok(out)
}
