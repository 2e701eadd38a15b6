//! Starting up: default secrets, refusing a broken policy or tokens file.

use crate::common::*;
use axum::http::{Method, StatusCode};
use rein_server::{AppState, ServerConfig, Tokens};

#[tokio::test]
async fn default_secrets_are_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let db = dir.path().join("data").join("rein.db");
    let config = ServerConfig::new(vec![example_policy()], db);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8700");
    assert_eq!(config.max_body_bytes, 1024 * 1024);
    let state = AppState::from_config(&config).await.unwrap();

    let tokens_file = dir.path().join("data").join("rein-tokens.yaml");
    let key_file = dir.path().join("data").join("rein-audit.key");
    assert_eq!(config.tokens_file(), tokens_file);
    assert_eq!(config.hmac_key_file(), key_file);
    let text = std::fs::read_to_string(&tokens_file).unwrap();
    let key = std::fs::read(&key_file).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&tokens_file, &key_file] {
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                f.display()
            );
        }
    }
    // One 64-hex-digit token per role, each working for its role.
    let tokens: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("token: \""))
        .map(|t| t.trim_end_matches('"').to_string())
        .collect();
    assert_eq!(tokens.len(), 3);
    for t in &tokens {
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    }
    let loaded = Tokens::load(&tokens_file).unwrap();
    let roles: Vec<String> = tokens
        .iter()
        .map(|t| loaded.authenticate(t).unwrap().role.to_string())
        .collect();
    assert_eq!(roles, ["agent", "approver", "admin"]);
    let h = Harness { dir, state };
    let (status, _) = h.call(Method::GET, "/v1/audit/verify", Some(&tokens[2]), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.call(Method::GET, "/v1/audit/verify", Some(&tokens[0]), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A second start reuses both files.
    drop(h.state);
    let again = AppState::from_config(&config).await.unwrap();
    assert_eq!(std::fs::read_to_string(&tokens_file).unwrap(), text);
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
    assert!(again.tokens().authenticate(&tokens[0]).is_some());
}

/// What cannot be used stops the start before any secret is made: a
/// missing directory (it is not created), a database path that is a
/// directory; and a store that has records never gets a new audit key.
#[tokio::test]
async fn unusable_paths_stop_the_start_before_secrets_are_made() {
    let dir = tempfile::tempdir().unwrap();
    let start = |db: std::path::PathBuf, key: Option<std::path::PathBuf>| {
        let mut config = ServerConfig::new(vec![example_policy()], db);
        config.hmac_key_path = key;
        async move {
            match AppState::from_config(&config).await {
                Ok(state) => Ok(state),
                Err(e) => Err(format!("{e:#}")),
            }
        }
    };
    let e = start(dir.path().join("typo").join("rein.db"), None)
        .await
        .err()
        .unwrap();
    assert!(e.contains("does not exist") && e.contains("typo"), "{e}");
    assert!(!dir.path().join("typo").exists(), "the directory is not created");
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    let e = start(dir.path().join("a-dir"), None).await.err().unwrap();
    assert!(e.contains("a-dir"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no secret was written for servers that did not start"
    );
    // An explicit key file must exist.
    let e = start(dir.path().join("rein.db"), Some(dir.path().join("k.key")))
        .await
        .err()
        .unwrap();
    assert!(e.contains("k.key") && e.contains("does not exist"), "{e}");
    assert!(!dir.path().join("k.key").exists());

    // A first start creates the default key; once the store has a record,
    // a missing key is refused rather than replaced.
    let state = start(dir.path().join("rein.db"), None).await.unwrap();
    let d = state.runtime().decide(rein_engine::Request::new("refund"), None).await;
    assert!(d.audit_seq.is_some());
    state.close().await.unwrap();
    drop(state);
    std::fs::remove_file(dir.path().join("rein-audit.key")).unwrap();
    let e = start(dir.path().join("rein.db"), None).await.err().unwrap();
    assert!(
        // The decision and the start's activation record.
        e.contains("rein-audit.key is missing") && e.contains("2 audit records"),
        "{e}"
    );
    assert!(!dir.path().join("rein-audit.key").exists());
}

#[tokio::test]
async fn a_broken_policy_refuses_to_start_with_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - id: r\n    action: refund\n    when: input.amount > 'x'\n    effect: allow\n",
    )
    .unwrap();
    let config = ServerConfig::new(vec![policy], dir.path().join("rein.db"));
    let err = match AppState::from_config(&config).await {
        Ok(_) => panic!("started with a broken policy"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("the policy does not load"), "{err}");
    assert!(err.contains("policy.yaml"), "{err}");
    // Nothing was created for a server that did not start.
    assert!(!dir.path().join("rein.db").exists());
}

#[tokio::test]
async fn a_bad_tokens_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - {name: x, role: superuser, token: aaaaaaaaaaaaaaaaaaaa}\n",
    )
    .unwrap();
    let mut config = ServerConfig::new(vec![example_policy()], dir.path().join("rein.db"));
    config.tokens_path = Some(tokens.clone());
    let err = match AppState::from_config(&config).await {
        Ok(_) => panic!("started with a bad tokens file"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("unknown role `superuser`"), "{err}");
    // A given tokens file that does not exist is an error, not created.
    config.tokens_path = Some(dir.path().join("missing.yaml"));
    assert!(AppState::from_config(&config).await.is_err());
    assert!(!dir.path().join("missing.yaml").exists());
}

#[tokio::test]
async fn close_flushes_and_later_decisions_block() {
    let h = Harness::new().await;
    assert_eq!(h.decide(refund(40, "bot-1")).await["effect"], "allow");
    h.state.close().await.unwrap();
    let d = h.decide(refund(40, "bot-1")).await;
    assert_eq!(d["effect"], "block", "{d}");
    // What was recorded before is on disk.
    let reopened = AppState::from_config(&{
        let mut c = ServerConfig::new(vec![h.policy_path()], h.db_path());
        c.tokens_path = Some(h.dir.path().join("tokens.yaml"));
        c
    })
    .await
    .unwrap();
    // The decision, between the activation records of the two starts.
    assert_eq!(reopened.runtime().store().audit_len().await.unwrap(), 3);
}

/// `run` end to end on a real port: SIGHUP reloads the policy, SIGTERM
/// stops the server cleanly. The test installs its own listeners for both
/// signals first, so that a signal can never take the default action
/// (ending the whole test process) whatever the timing.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_on_sighup_and_stops_on_sigterm() {
    use tokio::signal::unix::{signal, SignalKind};
    let _hup = signal(SignalKind::hangup()).unwrap();
    let _term = signal(SignalKind::terminate()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::copy(example_policy(), &policy).unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, tokens_yaml()).unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut config = ServerConfig::new(vec![policy.clone()], dir.path().join("rein.db"));
    config.tokens_path = Some(tokens);
    config.listen = ([127, 0, 0, 1], port).into();
    let server = tokio::spawn(rein_server::run(config));

    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let version = |client: reqwest::Client, url: String| async move {
        let resp = client.get(url).send().await.ok()?;
        let body: serde_json::Value = resp.json().await.ok()?;
        body["policy_version"].as_str().map(str::to_string)
    };
    let mut first = None;
    for _ in 0..100 {
        first = version(client.clone(), health.clone()).await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = first.expect("the server did not come up");
    // Let the server's own signal listeners start.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("when: input.amount <= 100\n", "when: input.amount <= 10\n"),
    )
    .unwrap();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut reloaded = false;
    for _ in 0..100 {
        if version(client.clone(), health.clone())
            .await
            .is_some_and(|v| v != first)
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the policy");

    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    stopped.expect("SIGTERM did not stop the server").unwrap().unwrap();
}
