//! TLS to PostgreSQL: the server's certificate is verified against
//! `REIN_DB_CA_FILE` (or the system's roots), `sslmode` is honoured. On a
//! throwaway cluster of its own with a certificate made for the test.
//!
//! One test function: it sets the process's environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod postgres_support;

use std::path::Path;
use std::process::Command;

use postgres_support::cluster::{cluster, id_of, is_root};
use rein_store::{PostgresOptions, PostgresStore, Store, POSTGRES_CA_FILE_ENV};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, signed by
/// it, in `dir`, readable by the server.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rein test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        let (uid, gid) = (id_of("-u"), id_of("-g"));
        for f in ["", "server.key", "server.pem", "ca.pem"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
        }
    }
}

async fn tls_connections(url: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'rein' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_verified_and_sslmode_honoured() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("note: no openssl command; TLS test skipped");
        return;
    }
    let certs = tempfile::Builder::new().prefix("rein-pg-tls-").tempdir().unwrap();
    certificates(certs.path());
    let extra = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        certs.path().join("server.pem").display(),
        certs.path().join("server.key").display()
    );
    let Some(cluster) = cluster(&extra) else { return };
    let plain = format!("{}?sslmode=disable", cluster.url());
    let ca = certs.path().join("ca.pem");

    // Verified against the CA file, by IP address and by name.
    std::env::set_var(POSTGRES_CA_FILE_ENV, &ca);
    for url in [
        format!("{}?sslmode=require", cluster.url()),
        format!(
            "{}?sslmode=verify-full",
            cluster.url().replace("127.0.0.1", "localhost")
        ),
    ] {
        let store = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap();
        store.append(common::entry(1)).await.unwrap();
        assert!(tls_connections(&plain).await >= 1, "{url}");
        drop(store);
    }

    // Against the system's roots (which do not hold the test CA): refused.
    std::env::remove_var(POSTGRES_CA_FILE_ENV);
    let err = PostgresStore::open(
        &format!("{}?sslmode=require", cluster.url()),
        PostgresOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.0.to_lowercase().contains("certificate"), "{err}");
    // `prefer` (the default) uses TLS when offered, so it verifies too.
    assert!(PostgresStore::open(&cluster.url(), PostgresOptions::default())
        .await
        .is_err());

    // A CA file that holds no certificate, or is missing: a clear error.
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    std::env::set_var(POSTGRES_CA_FILE_ENV, &empty);
    let err = PostgresStore::open(&cluster.url(), PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(err.0.contains(POSTGRES_CA_FILE_ENV), "{err}");
    std::env::set_var(POSTGRES_CA_FILE_ENV, certs.path().join("missing.pem"));
    let err = PostgresStore::open(&cluster.url(), PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(err.0.contains(POSTGRES_CA_FILE_ENV), "{err}");
    std::env::remove_var(POSTGRES_CA_FILE_ENV);

    // `disable`: no TLS at all.
    let store = PostgresStore::open(&plain, PostgresOptions::default()).await.unwrap();
    store.append(common::entry(2)).await.unwrap();
    drop(store);
    drop(cluster);
}
