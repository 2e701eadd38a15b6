//! Opening a PostgreSQL store for `--db postgres://…`, with errors that
//! never show the URL's password.

use std::sync::Arc;

use rein_store::{PostgresOptions, PostgresStore, Store, StoreLocation};

/// The PostgreSQL store.
pub(crate) type PostgresBackend = PostgresStore;

/// Opens the PostgreSQL store at `location` (its migrations applied), TLS
/// as the URL's `sslmode` says, the server verified against the CA file
/// `REIN_DB_CA_FILE` names (else the system's roots). The error names the
/// URL without its password.
pub(crate) async fn open_postgres(location: &StoreLocation) -> anyhow::Result<Arc<PostgresBackend>> {
    let StoreLocation::Postgres(url) = location else {
        anyhow::bail!("internal: {location} is not a PostgreSQL URL");
    };
    match PostgresStore::open(url, PostgresOptions::default()).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(e) => Err(anyhow::anyhow!("{}", scrub_password(location, &e.0))),
    }
}

/// Opens the PostgreSQL store at `location` for a command that works on
/// it directly (`rein audit`, `rein policy`, `rein limits`), as a server
/// does.
pub async fn open_shared_store(location: &StoreLocation) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_postgres(location).await?)
}

/// Closes it: what is queued is committed by the time appends returned;
/// the connections close when the store is dropped.
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
