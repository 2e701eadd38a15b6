//! Connections: the URL, TLS, timeouts.
//!
//! TLS goes through rustls (`tokio-postgres-rustls`, the ring provider).
//! `sslmode` in the URL is honoured as the driver reads it: `disable` (no
//! TLS), `prefer` (the driver's default: TLS if the server offers it) and
//! `require` (TLS or no connection). Whenever TLS is used, the server's
//! certificate is VERIFIED (chain and host name), against the CA
//! certificates of the PEM file named by the environment variable
//! `REIN_DB_CA_FILE` when it is set, else against the system's roots: a
//! store that keeps the audit log does not talk to a server it cannot
//! authenticate. (libpq's `require` does not verify; here it does.)
//! libpq's `verify-ca` and `verify-full`, which the driver does not know,
//! are read as `require`: that verifies as `verify-full` does.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresOptions;
use crate::StoreError;

/// The environment variable naming a PEM file of the CA certificates that
/// sign the server's certificate.
pub const CA_FILE_ENV: &str = "REIN_DB_CA_FILE";

/// The TLS connector every connection of a store uses.
pub(crate) type Tls = MakeRustlsConnect;

/// Parses `url` and sets what the store needs on every connection: its
/// application name and connect timeout, keepalives that notice a dead
/// peer within seconds (a lease connection must know when it lost its
/// lock), and the server-side timeouts (a statement, a transaction left
/// idle by a frozen process: its row locks would stop every replica).
pub(crate) fn config(url: &str, options: &PostgresOptions) -> Result<Config, StoreError> {
    let mut config: Config = libpq_sslmodes(url).parse().map_err(|e: tokio_postgres::Error| {
        StoreError(format!(
            "cannot read the PostgreSQL URL: {}",
            super::schema::with_causes(&e)
        ))
    })?;
    if config.get_application_name().is_none() {
        config.application_name("rein");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.tcp_user_timeout(options.statement_timeout + Duration::from_secs(5));
    let statement_ms = options.statement_timeout.as_millis();
    let idle_ms = options.idle_in_transaction_timeout.as_millis();
    let mut server_options = config.get_options().map(str::to_owned).unwrap_or_default();
    if !server_options.is_empty() {
        server_options.push(' ');
    }
    server_options.push_str(&format!(
        "-c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={idle_ms} \
         -c synchronous_commit=on"
    ));
    config.options(&server_options);
    Ok(config)
}

/// `url` with libpq's `sslmode=verify-ca` or `verify-full` as `require`
/// (which verifies the server fully here; see the module documentation).
fn libpq_sslmodes(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some(("sslmode", "verify-ca" | "verify-full")) => "sslmode=require".to_owned(),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The rustls connector: verifies the server against `REIN_DB_CA_FILE`'s
/// certificates, or the system's roots.
pub(crate) fn tls() -> Result<Tls, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os(CA_FILE_ENV) {
        Some(path) if !path.is_empty() => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
                .map_err(|e| StoreError(format!("cannot read {CA_FILE_ENV} ({}): {e}", path.to_string_lossy())))?;
            for cert in certs {
                let cert = cert
                    .map_err(|e| StoreError(format!("cannot read {CA_FILE_ENV} ({}): {e}", path.to_string_lossy())))?;
                roots.add(cert).map_err(|e| {
                    StoreError(format!(
                        "{CA_FILE_ENV} ({}) holds a certificate rustls refuses: {e}",
                        path.to_string_lossy()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(StoreError(format!(
                    "{CA_FILE_ENV} ({}) holds no certificate",
                    path.to_string_lossy()
                )));
            }
        }
        _ => {
            // Unreadable system certificates are skipped: the connection
            // then fails to verify, which says more than refusing to start
            // a store that may not even use TLS.
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    // ring, as the rest of the workspace's rustls (reqwest): its provider
    // lacks post-quantum key exchange (deprecated for that), which needs
    // aws-lc-rs, a C and CMake build; PostgreSQL's OpenSSL rarely offers it.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Opens a connection of its own (not the pool's) and drives it on a task;
/// `on_message` sees its asynchronous messages (notifications), and the
/// returned receiver fires when the connection ends (closed, broken).
pub(crate) async fn dedicated(
    config: &Config,
    tls: &Tls,
    mut on_message: impl FnMut(tokio_postgres::AsyncMessage) + Send + 'static,
) -> Result<(Client, tokio::sync::oneshot::Receiver<String>), StoreError> {
    let (client, mut connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| StoreError(format!("cannot connect to PostgreSQL: {}", super::schema::pg_text(&e))))?;
    let (ended, ended_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let why = loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(message)) => on_message(message),
                Some(Err(e)) => break super::schema::pg_text(&e),
                None => break "the connection was closed".to_owned(),
            }
        };
        let _ = ended.send(why);
    });
    Ok((client, ended_rx))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio_postgres::config::SslMode;

    #[test]
    fn sslmodes_are_read_as_libpq_names_them() {
        let options = PostgresOptions::default();
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let url = format!("postgres://rein:pw@db:5432/rein?application_name=x&sslmode={mode}");
            assert_eq!(config(&url, &options).unwrap().get_ssl_mode(), expected, "{mode}");
        }
        assert_eq!(
            config("postgres://rein@db/rein", &options).unwrap().get_ssl_mode(),
            SslMode::Prefer
        );
        assert!(config("postgres://rein@db/rein?sslmode=sometimes", &options).is_err());
    }

    #[test]
    fn every_connection_gets_the_timeouts() {
        let options = PostgresOptions::default();
        let c = config("postgres://rein@db/rein?options=-c%20search_path%3Drein", &options).unwrap();
        let server = c.get_options().unwrap();
        assert!(server.starts_with("-c search_path=rein "), "{server}");
        assert!(server.contains("statement_timeout=10000"), "{server}");
        assert!(server.contains("idle_in_transaction_session_timeout=5000"), "{server}");
        assert_eq!(c.get_application_name(), Some("rein"));
        assert_eq!(c.get_connect_timeout(), Some(&options.connect_timeout));
        // The URL's own connect timeout is kept.
        let c = config("postgres://rein@db/rein?connect_timeout=1", &options).unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(1)));
    }

    #[test]
    fn a_bad_url_names_no_password() {
        let err = config("postgres://rein:s3cret@db:notaport/rein", &PostgresOptions::default()).unwrap_err();
        assert!(!err.0.contains("s3cret"), "{err}");
    }
}
