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

/// Closes it: the appends queued are committed and answered, later ones
/// fail (decisions then block), the state lease is given up and the
/// connections close.
pub(crate) async fn close_postgres(store: &PostgresBackend) -> anyhow::Result<()> {
    store
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("the store did not close cleanly: {e}"))
}

/// `text` with the password of `location`'s URL, wherever it appears,
/// replaced by `***`.
pub fn scrub_password(location: &StoreLocation, text: &str) -> String {
    let Some(secret) = password(location).filter(|s| !s.is_empty()) else {
        return text.to_string();
    };
    // As written in the URL and as the driver may show it, decoded.
    let decoded = percent_decoded(&secret);
    let mut scrubbed = text.replace(&secret, "***");
    if let Some(decoded) = decoded.filter(|d| !d.is_empty() && *d != secret) {
        scrubbed = scrubbed.replace(&decoded, "***");
    }
    scrubbed
}

/// `text` with its `%XX` escapes decoded, if they make UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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
        // Percent-encoded in the URL, shown decoded by a driver.
        let encoded = StoreLocation::parse("postgres://rein:p%40ss%3Aw@db/rein");
        assert_eq!(
            scrub_password(&encoded, "auth failed for p@ss:w"),
            "auth failed for ***"
        );
    }

    proptest::proptest! {
        /// Whatever the password, no text quoting the URL or the password
        /// (as written or decoded) keeps it after scrubbing. (No `*` in it:
        /// the `***` put in its place would then "contain" it.)
        #[test]
        fn no_password_survives(
            password in "[A-Za-z0-9!$&'()+,;=._~%@:-]{1,24}",
            before in "[ -~]{0,20}",
            after in "[ -~]{0,20}",
        ) {
            let url = format!("postgres://rein:{password}@db.internal:5432/rein?sslmode=require");
            let location = StoreLocation::parse(&url);
            // The URL's own reading of its password: up to the last `@`.
            let Some(written) = password_of(&url) else { return Ok(()) };
            let decoded = percent_decoded(&written).unwrap_or_default();
            let text = format!("{before}{url}{after} {written} {decoded}");
            let scrubbed = scrub_password(&location, &text);
            proptest::prop_assert!(!scrubbed.contains(&written), "{scrubbed}");
            if !decoded.is_empty() {
                proptest::prop_assert!(!scrubbed.contains(&decoded), "{scrubbed}");
            }
            let shown = location.redacted();
            proptest::prop_assert!(!shown.contains(&format!(":{written}@")), "{}", shown);
        }
    }

    fn password_of(url: &str) -> Option<String> {
        password(&StoreLocation::parse(url)).filter(|p| !p.is_empty())
    }
}
