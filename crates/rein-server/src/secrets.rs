//! The server's secrets on disk: the tokens file, the audit HMAC key and
//! the key that signs delegation tokens. Each is created on first start when absent, readable by the owner
//! only, so that `rein serve` works with nothing prepared and nothing is
//! ever left open by default.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::Path;

/// Length of generated tokens and keys, in random bytes.
const SECRET_BYTES: usize = 32;

/// Shortest HMAC key accepted, in bytes.
const MIN_KEY_BYTES: usize = 16;

/// Reads the audit HMAC key at `path`, creating it (32 random bytes, mode
/// 0600) if the file does not exist.
pub fn ensure_hmac_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        let key = random_bytes()?;
        match write_private(path, &key) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the audit HMAC key");
                return Ok(key.to_vec());
            }
            // Another process created it meanwhile: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create the audit HMAC key {}", path.display())),
        }
    }
    warn_if_shared(path);
    let key = std::fs::read(path).with_context(|| format!("cannot read the audit HMAC key {}", path.display()))?;
    if key.len() < MIN_KEY_BYTES {
        bail!(
            "the audit HMAC key {} has {} bytes; it needs at least {MIN_KEY_BYTES}",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// The audit HMAC key of a server at `path`. A path given explicitly must
/// exist, as a tokens file given explicitly must. The default one is
/// created on a store with no audit records yet; on a store that has some,
/// a missing key is an error: a new key would silently make every hash
/// already recorded unmatchable (a card number could no longer be found).
pub fn server_hmac_key(path: &Path, explicit: bool, records: u64) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        if explicit {
            bail!(
                "the audit key file {} does not exist (--audit-key names an existing key of at least \
                 {MIN_KEY_BYTES} bytes; without it the key is kept beside the database, created on first start)",
                path.display()
            );
        }
        if records > 0 {
            bail!(
                "the audit key {} is missing, but the store already holds {records} audit records whose sensitive \
                 fields were hashed with it; restore the file, or give the key with --audit-key",
                path.display()
            );
        }
    }
    ensure_hmac_key(path)
}

/// Length of the delegation signing key file: an Ed25519 seed.
const DELEGATION_KEY_BYTES: usize = 32;

/// The Ed25519 key that signs delegation tokens, at `path`. The default
/// one (beside the database) is created on first start, 32 random bytes
/// readable by the owner only; a path given explicitly must exist, as
/// the audit key's must (a replica pointed at a missing file would
/// otherwise sign with a key no other replica accepts).
pub fn server_delegation_key(path: &Path, explicit: bool) -> anyhow::Result<ed25519_dalek::SigningKey> {
    if !path.exists() {
        if explicit {
            bail!(
                "the delegation key file {} does not exist (--delegation-key names an existing file of \
                 {DELEGATION_KEY_BYTES} random bytes, e.g. `head -c 32 /dev/urandom > FILE; chmod 600 FILE`; \
                 without it the key is kept beside the database, created on first start)",
                path.display()
            );
        }
        let seed = random_bytes()?;
        match write_private(path, &seed) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the delegation signing key");
                return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
            }
            // Another process created it meanwhile: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create the delegation key {}", path.display())),
        }
    }
    warn_if_shared(path);
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the delegation key {}", path.display()))?;
    let seed: [u8; DELEGATION_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "the delegation key {} has {} bytes; it must have exactly {DELEGATION_KEY_BYTES}",
            path.display(),
            bytes.len()
        )
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// Creates a tokens file at `path` with one fresh token for each role,
/// unless it exists. Returns whether it was created; when it was, the
/// tokens are printed once to stderr, since nobody could use the server
/// without them.
pub(crate) fn ensure_tokens_file(path: &Path) -> anyhow::Result<bool> {
    create_tokens_file(path, true)
}

/// Creates a tokens file as [`ensure_tokens_file`] does; `announce` prints
/// the tokens once to stderr (a process whose stderr a client keeps in its
/// logs, such as a stdio MCP gateway, leaves them in the file only).
pub(crate) fn create_tokens_file(path: &Path, announce: bool) -> anyhow::Result<bool> {
    if path.exists() {
        warn_if_shared(path);
        return Ok(false);
    }
    let mut tokens = Vec::new();
    for role in ["agent", "approver", "admin"] {
        tokens.push((role, hex(&random_bytes()?)));
    }
    let mut text = String::from(
        "# Bearer tokens of the Rein server. Keep this file secret.\n\
         # Roles: agent (decide, outcome), approver (approvals), admin (everything).\n\
         # A token's name is who it is: the approver recorded on a grant.\n\
         # An approver may be limited to the approval roles of the policy:\n\
         #   approves: [support, finance]   (without it: every role)\n\
         tokens:\n",
    );
    for (role, token) in &tokens {
        text.push_str(&format!("  - name: {role}\n    role: {role}\n    token: \"{token}\"\n"));
    }
    match write_private(path, text.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create the tokens file {}", path.display())),
    }
    if !announce {
        return Ok(true);
    }
    // Printed once, now: the file holds them from here on.
    let mut msg = format!(
        "rein: created the tokens file {} with one token per role:\n",
        path.display()
    );
    for (role, token) in &tokens {
        msg.push_str(&format!("  {role:<8} {token}\n"));
    }
    eprint!("{msg}");
    Ok(true)
}

/// Writes a new file that only its owner can read; fails if it exists, so
/// that a racing creator never has its secret replaced.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A secret file others can read is a secret no longer; say so, but keep
/// going, since refusing to start would not take the secret back.
/// Warns (in the server's log) when the secret file at `path` is readable
/// or writable by its group or others.
pub(crate) fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "secret file is readable by others; chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn random_bytes() -> anyhow::Result<[u8; SECRET_BYTES]> {
    let mut buf = [0u8; SECRET_BYTES];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tokens;

    #[test]
    fn creates_secrets_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("t.yaml");
        assert!(ensure_tokens_file(&tokens).unwrap());
        assert!(!ensure_tokens_file(&tokens).unwrap());
        let loaded = Tokens::load(&tokens).unwrap();
        assert_eq!(format!("{loaded:?}").matches("name").count(), 3);
        let key_path = dir.path().join("k");
        let key = ensure_hmac_key(&key_path).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(ensure_hmac_key(&key_path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&tokens, &key_path] {
                assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
    }

    #[test]
    fn delegation_key_is_created_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.key");
        assert!(
            server_delegation_key(&path, true).is_err(),
            "an explicit key must exist"
        );
        let key = server_delegation_key(&path, false).unwrap();
        assert_eq!(server_delegation_key(&path, true).unwrap().to_bytes(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, [7u8; 31]).unwrap();
        let e = server_delegation_key(&path, false).unwrap_err().to_string();
        assert!(e.contains("exactly 32"), "{e}");
    }

    #[test]
    fn refuses_a_short_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"short").unwrap();
        assert!(ensure_hmac_key(&p).is_err());
    }
}
