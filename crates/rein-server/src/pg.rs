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

/// The warning a server logs at start when its connection may fall back to
/// plain text: a host that is not this machine (loopback or a Unix socket)
/// and `sslmode` absent or `prefer` (TLS only if the server offers it; an
/// attacker on the path can say it does not). `None` when nothing is to
/// be said. Not a refusal: a private network may be trusted.
pub(crate) fn plain_text_warning(location: &StoreLocation) -> Option<String> {
    let StoreLocation::Postgres(url) = location else {
        return None;
    };
    let (_, rest) = url.split_once("://")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    let hosts_part = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    let mut hosts: Vec<String> = hosts_part.split(',').map(host_of).collect();
    let mut sslmode = None;
    for parameter in query.split('&') {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let name = percent_decoded(name).unwrap_or_default();
        let value = percent_decoded(value).unwrap_or_default();
        match name.as_str() {
            "sslmode" => sslmode = Some(value),
            "host" => hosts.extend(value.split(',').map(str::to_string)),
            _ => {}
        }
    }
    if !matches!(sslmode.as_deref(), None | Some("prefer")) {
        return None;
    }
    let remote: Vec<&String> = hosts.iter().filter(|h| !is_local_host(h)).collect();
    if remote.is_empty() {
        return None;
    }
    Some(format!(
        "the database connection to {} may fall back to PLAIN TEXT (sslmode is {}: TLS only if the server offers \
         it, and anyone on the path can say it does not); use sslmode=require in the URL",
        remote.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(","),
        sslmode.unwrap_or_else(|| "not set, so prefer".to_string())
    ))
}

/// A URL host without its port, percent-decoded (`[::1]:5432` → `::1`).
fn host_of(host_port: &str) -> String {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    percent_decoded(host).unwrap_or_else(|| host.to_string())
}

/// Whether `host` is this machine: a Unix socket's folder, `localhost`, a
/// loopback address, or none (the driver's default, local).
fn is_local_host(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

/// `text` with the secrets of `location`'s URL (its password, secret
/// query parameters such as `password=` and `sslpassword=`; see
/// [`StoreLocation::redacted`]), wherever they appear, as written or
/// percent-decoded, replaced by `***`; the URL itself, if quoted, is
/// shown redacted.
pub fn scrub_password(location: &StoreLocation, text: &str) -> String {
    let StoreLocation::Postgres(url) = location else {
        return text.to_string();
    };
    let mut scrubbed = text.replace(url.as_str(), &location.redacted());
    let mut secrets: Vec<String> = Vec::new();
    for secret in location.secrets() {
        // As written in the URL and as the driver may show it, decoded.
        if let Some(decoded) = percent_decoded(&secret) {
            secrets.push(decoded);
        }
        secrets.push(secret);
    }
    // The longest first: a shorter secret inside a longer one must not
    // leave the rest of the longer one showing.
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        scrubbed = scrubbed.replace(&secret, "***");
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
        // A password as a query parameter, as written and decoded.
        let query = StoreLocation::parse("postgres://rein@db/rein?sslmode=require&password=s%26cret");
        assert_eq!(
            scrub_password(
                &query,
                "at postgres://rein@db/rein?sslmode=require&password=s%26cret: s&cret"
            ),
            "at postgres://rein@db/rein?sslmode=require&password=***: ***"
        );
        let key = StoreLocation::parse("postgres://rein@db/rein?sslpassword=k3y");
        assert_eq!(scrub_password(&key, "bad k3y"), "bad ***");
    }

    #[test]
    fn a_remote_host_without_required_tls_is_warned_of() {
        let warning = |url: &str| plain_text_warning(&StoreLocation::parse(url));
        for url in [
            "postgres://rein:pw@db.internal:5432/rein",
            "postgres://rein@db.internal/rein?sslmode=prefer",
            "postgres://rein@10.0.0.5/rein?application_name=x",
            "postgres://rein@127.0.0.1,db2:5433/rein",
            "postgres://rein@/rein?host=db.internal",
        ] {
            let text = warning(url).unwrap_or_else(|| panic!("no warning for {url}"));
            assert!(
                text.contains("PLAIN TEXT") && text.contains("sslmode=require"),
                "{text}"
            );
            assert!(!text.contains("pw"), "{text}");
        }
        assert!(warning("postgres://rein@db2:5433/rein").unwrap().contains("db2"));
        for url in [
            "postgres://rein@db.internal/rein?sslmode=require",
            "postgres://rein@db.internal/rein?sslmode=verify-full",
            "postgres://rein@db.internal/rein?sslmode=disable",
            "postgres://rein@127.0.0.1:5432/rein",
            "postgres://rein@localhost/rein?sslmode=prefer",
            "postgres://rein@[::1]:5432/rein",
            "postgres://rein@%2Fvar%2Frun%2Fpostgresql/rein",
            "postgres://rein@/rein?host=/var/run/postgresql",
        ] {
            assert_eq!(warning(url), None, "{url}");
        }
        assert_eq!(plain_text_warning(&StoreLocation::parse("rein.db")), None);
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
            proptest::prop_assert_eq!(
                location.redacted(),
                "postgres://rein:***@db.internal:5432/rein?sslmode=require"
            );
        }

        /// The same for a password given as a query parameter.
        #[test]
        fn no_query_password_survives(
            password in "[A-Za-z0-9!$'()+,;=._~%@:/-]{1,24}",
            name in "(password|sslpassword|pass%77ord|PASSWORD)",
            before in "[ -~]{0,20}",
        ) {
            let url = format!("postgres://rein@db.internal:5432/rein?sslmode=require&{name}={password}");
            let location = StoreLocation::parse(&url);
            let decoded = percent_decoded(&password).unwrap_or_default();
            let text = format!("{before}{url} {password} {decoded}");
            let scrubbed = scrub_password(&location, &text);
            proptest::prop_assert!(!scrubbed.contains(&password), "{scrubbed}");
            if !decoded.is_empty() {
                proptest::prop_assert!(!scrubbed.contains(&decoded), "{scrubbed}");
            }
            // The whole redacted URL, exactly: a substring check would be
            // fooled by a password that also spells part of the URL
            // (`r` is in `=require`).
            proptest::prop_assert_eq!(
                location.redacted(),
                format!("postgres://rein@db.internal:5432/rein?sslmode=require&{name}=***")
            );
        }
    }

    fn password_of(url: &str) -> Option<String> {
        StoreLocation::parse(url).secrets().into_iter().next()
    }
}
