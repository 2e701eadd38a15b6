//! Kept policy versions and activation records, on every backend (a real
//! SQLite file, a real PostgreSQL database; see `common::differential!`).
#![allow(clippy::unwrap_used, clippy::panic)]

#[macro_use]
mod common;

use common::TestStore;
use rein_engine::Policy;
use rein_store::chain::format_time;
use rein_store::{Activation, ActivationCause, PolicyVersion, SqliteStore, Store, Verification};

differential!(
    versions_are_kept_listed_and_read_back_checked,
    activation_records_are_chained_found_and_verified,
);

/// `text` as an SQL string literal (both backends).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

const V1: &str = "version: billing-1\ncontracts:\n  actions:\n    refund:\n      input:\n        amount: int\nrules:\n  - id: small\n    action: refund\n    when: input.amount < 100\n    effect: allow\n";

fn kept(text: &str) -> PolicyVersion {
    let policy = Policy::from_sources([("policy.yaml", text)]).unwrap();
    PolicyVersion::of(&policy, format_time(jiff::Timestamp::now())).unwrap()
}

fn activation(version: &PolicyVersion, previous: Option<&str>, cause: ActivationCause) -> Activation {
    Activation {
        version: version.version.clone(),
        label: version.label.clone(),
        previous: previous.map(str::to_string),
        by: "ops".into(),
        cause,
        files: version.sources.iter().map(|s| s.name.clone()).collect(),
        diagnostics: vec![],
    }
}

async fn versions_are_kept_listed_and_read_back_checked(store: TestStore) {
    let v1 = kept(V1);
    let v2 = kept(&V1.replace("< 100", "< 500").replace("billing-1", "billing-2"));
    store.save_policy_version(&v1).await.unwrap();
    store.save_policy_version(&v2).await.unwrap();
    // Saving again changes nothing (the hash binds the texts).
    store.save_policy_version(&v1).await.unwrap();
    assert_eq!(store.policy_version(&v1.version).await.unwrap().as_ref(), Some(&v1));
    assert_eq!(store.policy_version("0123").await.unwrap(), None);
    let list = store.policy_versions().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|v| v.intact && v.files == ["policy.yaml"]));

    // Sources that do not hash to their version are refused on save...
    let mut forged = v1.clone();
    forged.sources[0].text = forged.sources[0].text.replace("< 100", "< 1000000");
    let e = store.save_policy_version(&forged).await.unwrap_err();
    assert!(e.0.contains(rein_store::versions::SOURCES_CHANGED), "{e}");

    // ... and, changed in the database, on every read.
    let texts = store
        .raw_column(&format!(
            "SELECT sources FROM policy_versions WHERE version = {}",
            quote(&v1.version)
        ))
        .await
        .pop()
        .unwrap()
        .unwrap();
    let changed = texts.replace("< 100", "< 1000000");
    assert_ne!(changed, texts);
    let sql = format!(
        "UPDATE policy_versions SET sources = {} WHERE version = {}",
        quote(&changed),
        quote(&v1.version)
    );
    store.raw_exec(&sql, &sql).await;
    let e = store.policy_version(&v1.version).await.unwrap_err();
    assert!(e.0.contains(rein_store::versions::SOURCES_CHANGED), "{e}");
    let list = store.policy_versions().await.unwrap();
    let listed = list.iter().find(|v| v.version == v1.version).unwrap();
    assert!(!listed.intact);
    // A corrupt row (not JSON) is refused too, and listed as not intact.
    let sql = format!(
        "UPDATE policy_versions SET sources = 'x' WHERE version = {}",
        quote(&v2.version)
    );
    store.raw_exec(&sql, &sql).await;
    assert!(store.policy_version(&v2.version).await.is_err());
    assert!(store.policy_versions().await.unwrap().iter().all(|v| !v.intact));
    // Keeping the true sources again repairs the row.
    store.save_policy_version(&v1).await.unwrap();
    assert_eq!(store.policy_version(&v1.version).await.unwrap().as_ref(), Some(&v1));
}

/// A read-only open of a SQLite file reads the versions and keeps none.
#[tokio::test]
async fn a_read_only_store_reads_versions() {
    let (dir, store) = common::open_temp();
    let v1 = kept(V1);
    store.save_policy_version(&v1).await.unwrap();
    store.close().await.unwrap();
    let ro = SqliteStore::open_read_only(dir.path().join("rein.db")).unwrap();
    assert_eq!(ro.policy_version(&v1.version).await.unwrap().as_ref(), Some(&v1));
    assert!(ro.save_policy_version(&v1).await.is_err());
}

async fn activation_records_are_chained_found_and_verified(mut test: TestStore) {
    let store = test.arc();
    let v1 = kept(V1);
    let v2 = kept(&V1.replace("< 100", "< 500"));
    for i in 0..4 {
        store.append(common::entry(i)).await.unwrap();
    }
    let start = activation(&v1, None, ActivationCause::Start);
    let reload = activation(&v2, Some(&v1.version), ActivationCause::Reload);
    let rollback = activation(&v1, Some(&v2.version), ActivationCause::Rollback);
    let now = || format_time(jiff::Timestamp::now());
    store.append(start.entry("a1".into(), now())).await.unwrap();
    store.append(common::entry(10)).await.unwrap();
    store.append(reload.entry("a2".into(), now())).await.unwrap();
    store.append(rollback.entry("a3".into(), now())).await.unwrap();
    let found = store.activations().await.unwrap();
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 7, 8]);
    let read: Vec<Activation> = found.iter().map(|r| Activation::of_entry(&r.entry).unwrap()).collect();
    assert_eq!(read, [start, reload, rollback]);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 8 });
    // The trait's default (a scan of the log) finds the same records.
    let scanned = Scan(std::sync::Arc::clone(&store)).activations().await.unwrap();
    assert_eq!(scanned, found);
    drop(store);

    // An activation changed in its body (who did it) breaks the chain.
    let body = test
        .raw_column("SELECT body FROM audit WHERE seq = 7")
        .await
        .pop()
        .unwrap()
        .unwrap();
    let changed = quote(&body.replace("\"by\":\"ops\"", "\"by\":\"someone-else\""));
    test.raw_exec(
        &format!("DROP TRIGGER IF EXISTS audit_no_update; UPDATE audit SET body = {changed} WHERE seq = 7"),
        &format!("ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET body = {changed} WHERE seq = 7"),
    )
    .await;
    test.reopen().await;
    let store = test.arc();
    assert!(matches!(
        store.verify_audit().await.unwrap(),
        Verification::Broken { seq: 7, .. }
    ));
    assert!(store.activations().await.is_err());
}

/// A store that forwards what it must and keeps the trait's defaults
/// (`activations` as a scan of `query_audit`).
struct Scan(std::sync::Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for Scan {
    async fn append(&self, e: rein_store::AuditEntry) -> Result<rein_store::AuditRecord, rein_store::StoreError> {
        self.0.append(e).await
    }
    async fn append_once(
        &self,
        e: rein_store::AuditEntry,
    ) -> Result<Option<rein_store::AuditRecord>, rein_store::StoreError> {
        self.0.append_once(e).await
    }
    async fn bind_key_fingerprint(&self, f: &str) -> Result<String, rein_store::StoreError> {
        self.0.bind_key_fingerprint(f).await
    }
    async fn key_fingerprint(&self) -> Result<Option<String>, rein_store::StoreError> {
        self.0.key_fingerprint().await
    }
    async fn probe_write(&self) -> Result<(), rein_store::StoreError> {
        self.0.probe_write().await
    }
    async fn find_open_approval(
        &self,
        h: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Option<rein_store::ApprovalRecord>, rein_store::StoreError> {
        self.0.find_open_approval(h, c, n).await
    }
    async fn list_client_approvals(
        &self,
        c: &str,
        s: Option<rein_store::ApprovalState>,
        l: u64,
    ) -> Result<Vec<rein_store::ApprovalRecord>, rein_store::StoreError> {
        self.0.list_client_approvals(c, s, l).await
    }
    async fn query_audit(
        &self,
        q: &rein_store::AuditQuery,
    ) -> Result<Vec<rein_store::AuditRecord>, rein_store::StoreError> {
        self.0.query_audit(q).await
    }
    async fn verify_audit(&self) -> Result<Verification, rein_store::StoreError> {
        self.0.verify_audit().await
    }
    async fn audit_len(&self) -> Result<u64, rein_store::StoreError> {
        self.0.audit_len().await
    }
    async fn create_approval(&self, a: rein_store::ApprovalRecord) -> Result<(), rein_store::StoreError> {
        self.0.create_approval(a).await
    }
    async fn get_approval(&self, id: &str) -> Result<Option<rein_store::ApprovalRecord>, rein_store::StoreError> {
        self.0.get_approval(id).await
    }
    async fn list_approvals(
        &self,
        s: Option<rein_store::ApprovalState>,
        l: u64,
    ) -> Result<Vec<rein_store::ApprovalRecord>, rein_store::StoreError> {
        self.0.list_approvals(s, l).await
    }
    async fn decide_approval(
        &self,
        id: &str,
        g: bool,
        a: &str,
        c: Option<&str>,
        n: &str,
    ) -> Result<Result<rein_store::ApprovalRecord, rein_store::ApprovalError>, rein_store::StoreError> {
        self.0.decide_approval(id, g, a, c, n).await
    }
    async fn use_approval(
        &self,
        id: &str,
        h: &str,
        n: &str,
    ) -> Result<Result<rein_store::ApprovalRecord, rein_store::ApprovalError>, rein_store::StoreError> {
        self.0.use_approval(id, h, n).await
    }
}

/// A store of schema version 6 (before kept versions) is refused by a
/// read-only open (which never migrates) and migrated by a writer: its
/// records still verify, and versions and activations are kept after.
#[tokio::test]
async fn a_version_6_file_is_migrated() {
    let (dir, store) = common::open_temp();
    for i in 0..3 {
        store.append(common::entry(i)).await.unwrap();
    }
    store.close().await.unwrap();
    drop(store);
    let path = dir.path().join("rein.db");
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("DROP TABLE policy_versions; DROP INDEX audit_activations; PRAGMA user_version = 6;")
        .unwrap();
    drop(raw);
    let e = SqliteStore::open_read_only(&path).unwrap_err();
    assert!(e.0.contains("schema version is 6"), "{e}");

    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 8);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 3 });
    assert!(store.activations().await.unwrap().is_empty());
    let v1 = kept(V1);
    store.save_policy_version(&v1).await.unwrap();
    let start = activation(&v1, None, ActivationCause::Start);
    store
        .append(start.entry("a1".into(), format_time(jiff::Timestamp::now())))
        .await
        .unwrap();
    assert_eq!(store.activations().await.unwrap().len(), 1);
    assert_eq!(store.verify_audit().await.unwrap(), Verification::Intact { records: 4 });
}
