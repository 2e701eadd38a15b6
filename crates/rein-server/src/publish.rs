//! Policy across replicas on a shared store (PostgreSQL): the version a
//! replica activates on a reload or a rollback is published in the store,
//! and every replica follows the version published.
//!
//! At start a replica serves the version published, loaded from the
//! store's kept sources, even when its own policy files are another
//! version (a replica restarted with older files must not roll the fleet
//! back): its files are published only when nothing is published yet, or
//! when the operator says so (`rein serve --publish`, a deploy of new
//! files). See [`policy_at_start`].
//!
//! The published version is the one truth: a replica that serves another
//! switches to it, loaded from the sources the store keeps, recording its
//! own activation (cause `reload`, by [`FOLLOW_BY`]). A replica that cannot
//! load it keeps serving its last good version and `/healthz` answers 503
//! naming the published version and why, until it loads one. Replicas hear
//! of a publication through the store's notifications
//! ([`rein_store::Store::policy_publications`]) and poll the published
//! version every [`POLL_EVERY`] as well, since a notification is lost with
//! its connection.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context;
use rein_engine::Policy;
use rein_store::Store;

use crate::{AppState, Reloaded, Shared};

/// How often a replica reads the published version, notified or not.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// Who a followed version's activation record names.
pub(crate) const FOLLOW_BY: &str = "publication";

/// A published version this replica could not load, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unfollowed {
    /// The published version's full hash.
    pub(crate) version: String,
    /// Why it could not be loaded (or swapped in).
    pub(crate) reason: String,
}

/// This replica's following of the published version.
#[derive(Default)]
pub(crate) struct Following {
    /// The published version it could not load, while it cannot.
    unfollowed: Mutex<Option<Unfollowed>>,
    /// The task that follows publications, to stop it on close.
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Whether the last read of the published version failed (logged once
    /// per outage, not every second).
    read_failing: std::sync::atomic::AtomicBool,
    /// The version of this replica's policy files as last read (at start,
    /// on a reload); `/healthz` says when it is not the version served.
    files_version: Mutex<Option<String>>,
}

/// What a replica on a shared store serves at start, and what it then does
/// (see [`policy_at_start`]).
#[derive(Debug)]
pub(crate) enum AtStart {
    /// Its files' version, published once its activation is recorded:
    /// nothing was published yet (`replaced` is `None`), or the operator
    /// asked for it (`--publish`).
    Publish {
        /// The version published before, replaced.
        replaced: Option<String>,
    },
    /// Its files' version, which is the one published.
    AsPublished,
    /// The version published, loaded from the store's kept sources; its
    /// files are another version (`files_version`), not published.
    Published {
        /// The version of the files it was given.
        files_version: String,
    },
    /// Its files' version, NOT published: the version published cannot be
    /// loaded here. `/healthz` answers 503 naming it and why, as on a
    /// running replica that cannot follow, until it loads; the following
    /// task tries again every second.
    Unloadable(Unfollowed),
}

/// Chooses the policy a replica on a shared store serves at start, given
/// the policy its files gave and whether the operator asked to publish
/// them (`rein serve --publish`):
///
/// - nothing published yet, or `publish`: the files' version (published
///   after its activation is recorded);
/// - otherwise the version published, loaded from the store's kept
///   sources: a replica restarted with older files must not move every
///   replica back to them;
/// - if that version cannot be loaded: the files' version, unpublished,
///   the replica unhealthy (503) until it loads the published one. Failing
///   closed here would mean not starting at all; this replica instead
///   decides with validated files and says loudly it is not on the
///   published version, as a running replica that cannot follow does.
///
/// Refused: a policy of which the store keeps no sources (read from
/// Actra's files: the other replicas could not load it), and a published
/// version that cannot be read (the database is needed to decide anyway).
pub(crate) async fn policy_at_start(
    store: &dyn Store,
    files: Policy,
    publish: bool,
) -> anyhow::Result<(Policy, AtStart)> {
    if files.sources().is_none() {
        anyhow::bail!(
            "the policy cannot be served by replicas on a shared store: the store keeps no sources of it (a policy \
             read from Actra's files), so the other replicas could not load it; serve its native form (`rein \
             convert`)"
        );
    }
    let files_version = files.version().to_string();
    let published = store
        .published_policy()
        .await
        .context("cannot read the policy version published to the replicas")?;
    Ok(match published {
        None => (files, AtStart::Publish { replaced: None }),
        Some(published) if published == files_version => (files, AtStart::AsPublished),
        Some(published) if publish => (
            files,
            AtStart::Publish {
                replaced: Some(published),
            },
        ),
        Some(published) => match load_kept(store, &published).await {
            Ok(policy) => (policy, AtStart::Published { files_version }),
            Err(reason) => (
                files,
                AtStart::Unloadable(Unfollowed {
                    version: published,
                    reason,
                }),
            ),
        },
    })
}

/// Loads `version` from the store's kept sources (checked against its
/// hash, compiled); the error says why not.
async fn load_kept(store: &dyn Store, version: &str) -> Result<Policy, String> {
    let kept = match store.policy_version(version).await {
        Ok(Some(kept)) => kept,
        Ok(None) => return Err(format!("the store keeps no sources of version {version}")),
        Err(e) => return Err(format!("its sources cannot be read: {e}")),
    };
    let compiled = tokio::task::spawn_blocking(move || Policy::from_kept_sources(&kept.sources, &kept.version)).await;
    match compiled {
        Ok(Ok(policy)) => Ok(policy),
        Ok(Err(e)) => Err(format!("its kept sources do not load: {e}")),
        Err(e) => Err(format!("the policy loader failed: {e}")),
    }
}

impl Following {
    pub(crate) fn unfollowed(&self) -> Option<Unfollowed> {
        self.unfollowed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sets what could not be followed; returns whether it changed (so
    /// that a version that keeps failing is logged once, not every second).
    fn set_unfollowed(&self, value: Option<Unfollowed>) -> bool {
        let mut held = self.unfollowed.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = *held != value;
        *held = value;
        changed
    }

    /// Notes a failed read of the published version (logged at the first).
    fn read_failed(&self, e: &rein_store::StoreError) {
        if !self.read_failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                error = %e,
                "cannot read the policy version published to the replicas; the version served stays (tried again \
                 every second)"
            );
        }
    }

    /// Notes a successful read (logged if reads were failing).
    fn read_ok(&self) {
        if self.read_failing.swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!("the policy version published to the replicas can be read again");
        }
    }

    /// The version of this replica's policy files as last read.
    pub(crate) fn files_version(&self) -> Option<String> {
        self.files_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes the version of this replica's policy files, just read.
    pub(crate) fn set_files_version(&self, version: &str) {
        *self.files_version.lock().unwrap_or_else(PoisonError::into_inner) = Some(version.to_string());
    }

    /// Stops the following task, if any.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl AppState {
    /// At start on a shared store, once the served version's activation is
    /// recorded: does what [`policy_at_start`] chose (publishes the files'
    /// version, or says why it serves the published one, or that it cannot
    /// load it). An error stops the start: this replica would otherwise
    /// serve a version the others do not, and switch back to theirs at once.
    pub(crate) async fn publish_at_start(&self, at_start: AtStart) -> anyhow::Result<()> {
        let store = self.runtime().store();
        let served = self.runtime().policy().version().to_string();
        self.metrics().publication("read", true);
        match at_start {
            AtStart::AsPublished => {
                tracing::info!(version = %served, "the policy served is the one published to the replicas");
            }
            AtStart::Publish { replaced } => {
                let published_result = store.publish_policy(&served).await;
                self.metrics().publication("publish", published_result.is_ok());
                published_result
                    .with_context(|| format!("cannot publish the policy version {served} to the replicas"))?;
                match replaced {
                    Some(replaced) => tracing::warn!(
                        version = %served,
                        replaced = %replaced,
                        "policy files published to the replicas at start (--publish): every replica switches to them"
                    ),
                    None => tracing::info!(
                        version = %served,
                        "policy files published to the replicas (none was published yet)"
                    ),
                }
            }
            AtStart::Published { files_version } => {
                tracing::warn!(
                    version = %served,
                    files_version = %files_version,
                    "THIS REPLICA'S POLICY FILES ARE NOT THE VERSION PUBLISHED TO THE REPLICAS: it serves the \
                     published version {served} (from the store's kept sources), not its files' {files_version}. \
                     To deploy these files to every replica: start with --publish, or reload a replica that has \
                     them (SIGHUP, POST /v1/policy/reload)"
                );
            }
            AtStart::Unloadable(missed) => {
                self.metrics().publication("follow", false);
                tracing::error!(
                    published = %missed.version,
                    serving = %served,
                    reason = %missed.reason,
                    "cannot load the policy version published to the replicas; this replica serves its files' \
                     version (not published) and /healthz answers 503 until it loads the published one"
                );
                self.inner.publication.set_unfollowed(Some(missed));
            }
        }
        Ok(())
    }

    /// After a reload or rollback activated `activated` on this replica:
    /// publishes it on a shared store (nothing to do on another). On an
    /// error the reload is reported failed: the other replicas keep the
    /// version published, and this one returns to it at the next poll.
    pub(crate) async fn publish(&self, activated: &Reloaded) -> Result<(), String> {
        let store = self.runtime().store();
        if !store.is_shared() {
            return Ok(());
        }
        if !activated.sources_kept {
            self.metrics().publication("publish", false);
            return Err(format!(
                "version {} was activated on this replica but cannot be published to the other replicas: the store \
                 keeps no sources of it (a policy read from Actra's files), so they could not load it; this replica \
                 returns to the version published",
                activated.policy_version
            ));
        }
        let result = store.publish_policy(&activated.policy_version).await;
        self.metrics().publication("publish", result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(version = %activated.policy_version, "policy published to the replicas");
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    version = %activated.policy_version,
                    error = %e,
                    "the policy was activated here but could not be published to the other replicas"
                );
                Err(format!(
                    "version {} was activated on this replica (audit seq {}) but could not be published to the \
                     other replicas ({e}): they keep the version published, and this replica returns to it; try \
                     again",
                    activated.policy_version, activated.audit_seq
                ))
            }
        }
    }

    /// Starts the task that follows the published version (see the module
    /// documentation), for as long as this state lives or until
    /// [`AppState::close`].
    pub(crate) fn follow_publications(&self) {
        let weak = Arc::downgrade(&self.inner);
        let notified = self.runtime().store().policy_publications();
        let task = tokio::spawn(follow(weak, notified));
        *self
            .inner
            .publication
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    }

    /// The published version this replica could not load, if any.
    pub(crate) fn unfollowed(&self) -> Option<Unfollowed> {
        self.inner.publication.unfollowed()
    }

    /// Reads the published version and, if this replica serves another,
    /// switches to it (or records why it cannot). Returns the version now
    /// published, if it could be read.
    pub async fn follow_published(&self) -> Option<String> {
        let store = Arc::clone(self.runtime().store());
        let read = store.published_policy().await;
        let published = match read {
            Ok(Some(version)) => version,
            Ok(None) => return None,
            Err(e) => {
                // The store's failure shows in `/healthz` and in the store
                // errors metric; the version served stays.
                self.metrics().publication("read", false);
                self.inner.publication.read_failed(&e);
                return None;
            }
        };
        self.inner.publication.read_ok();
        if published == self.runtime().policy().version() {
            self.clear_unfollowed();
            return Some(published);
        }
        // One at a time with reloads and rollbacks, and read again under
        // the lock: a reload that held it has published a newer version,
        // which this replica must not replace with the one read before.
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let published = match store.published_policy().await {
            Ok(Some(version)) => version,
            Ok(None) => return None,
            Err(e) => {
                self.metrics().publication("read", false);
                self.inner.publication.read_failed(&e);
                return None;
            }
        };
        let served = self.runtime().policy().version().to_string();
        if published == served {
            self.clear_unfollowed();
            return Some(published);
        }
        match self.switch_to(&published).await {
            Ok(activated) => {
                self.metrics().publication("follow", true);
                self.clear_unfollowed();
                tracing::info!(
                    version = %activated.policy_version,
                    previous = %served,
                    audit_seq = activated.audit_seq,
                    "switched to the policy version published by another replica"
                );
            }
            Err(reason) => {
                self.metrics().publication("follow", false);
                let changed = self.inner.publication.set_unfollowed(Some(Unfollowed {
                    version: published.clone(),
                    reason: reason.clone(),
                }));
                if changed {
                    tracing::error!(
                        published = %published,
                        serving = %served,
                        reason = %reason,
                        "cannot load the policy version published to the replicas; the last good version keeps \
                         serving and /healthz answers 503"
                    );
                }
            }
        }
        Some(published)
    }

    fn clear_unfollowed(&self) {
        if self.inner.publication.set_unfollowed(None) {
            tracing::info!("the policy version published is served again");
        }
    }

    /// Loads `version` from its kept sources and activates it.
    async fn switch_to(&self, version: &str) -> Result<Reloaded, String> {
        let policy = load_kept(self.runtime().store().as_ref(), version).await?;
        self.runtime()
            .activate(policy, FOLLOW_BY, rein_store::ActivationCause::Reload)
            .await
            .map_err(|e| format!("the activation failed: {e}"))
    }

    /// The version of this replica's policy files as last read (at start,
    /// on a reload), on a shared store; `None` on another.
    pub(crate) fn files_version(&self) -> Option<String> {
        self.inner.publication.files_version()
    }

    /// Notes the version of the policy files just read (shared store only).
    pub(crate) fn set_files_version(&self, version: &str) {
        if self.runtime().store().is_shared() {
            self.inner.publication.set_files_version(version);
        }
    }
}

/// The following task: on each notification or poll tick, while the state
/// lives.
async fn follow(state: Weak<Shared>, mut notified: Option<tokio::sync::watch::Receiver<Option<String>>>) {
    let mut every = tokio::time::interval(POLL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match notified.as_mut() {
            Some(rx) => {
                tokio::select! {
                    _ = every.tick() => {}
                    changed = rx.changed() => {
                        if changed.is_err() {
                            // The store stopped notifying: polling goes on.
                            notified = None;
                        }
                    }
                }
            }
            None => {
                every.tick().await;
            }
        }
        let Some(inner) = state.upgrade() else { return };
        AppState { inner }.follow_published().await;
    }
}
