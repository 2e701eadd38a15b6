//! Policy publication across replicas (design of issue 18, §7).
//!
//! `publish_policy` updates the one row of `rein_policy_published` and
//! sends `NOTIFY rein_policy, '<version>'` in the same transaction (the
//! notification is delivered only if the row's change commits). Each store
//! that is asked for [`crate::Store::policy_publications`] starts a task
//! that LISTENs on a dedicated connection and feeds a watch channel; when
//! that connection breaks the task reconnects with backoff and, once
//! listening again, reads the published row (a publication sent while it
//! was away is not lost). Callers poll `published_policy` as well.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::{connect, Inner, PostgresStore};
use crate::StoreError;

/// The channel of the notifications.
pub(crate) const CHANNEL: &str = "rein_policy";

/// The longest wait between two attempts to reconnect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes `version` and wakes every listening replica.
pub(crate) async fn publish(store: &PostgresStore, version: &str) -> Result<(), StoreError> {
    let now = crate::chain::format_time(jiff::Timestamp::now());
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE rein_policy_published SET version = $1, published_at = $2 WHERE id = 1",
        &[&version, &now],
    )
    .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &version]).await?;
    tx.commit().await?;
    Ok(())
}

/// The version published last, if any.
pub(crate) async fn published(store: &PostgresStore) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    read_published(&client).await
}

async fn read_published(client: &tokio_postgres::Client) -> Result<Option<String>, StoreError> {
    Ok(client
        .query_opt("SELECT version FROM rein_policy_published WHERE id = 1", &[])
        .await?
        .map(|r| r.try_get::<_, Option<String>>(0))
        .transpose()?
        .flatten())
}

/// Starts the listener task feeding `tx`; it ends when `alive` is dropped
/// (with the store).
pub(crate) fn start(inner: Arc<Inner>, tx: watch::Sender<Option<String>>, alive: watch::Receiver<()>) {
    tokio::spawn(listen(inner, tx, alive));
}

async fn listen(inner: Arc<Inner>, tx: watch::Sender<Option<String>>, mut alive: watch::Receiver<()>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let notified = tx.clone();
        let on_message = move |message: AsyncMessage| {
            if let AsyncMessage::Notification(n) = message {
                if n.channel() == CHANNEL {
                    // Every publication wakes the receivers, even of the
                    // version they have: a replica that failed to load it may
                    // try again.
                    notified.send_replace(Some(n.payload().to_owned()));
                }
            }
        };
        let session = async {
            let (client, ended) = connect::dedicated(&inner.config, &inner.tls, on_message).await?;
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            // Listening: whatever was published while the task was away.
            let current = read_published(&client).await?;
            tx.send_if_modified(|seen| {
                if *seen != current {
                    *seen = current;
                    true
                } else {
                    false
                }
            });
            Ok::<_, StoreError>((client, ended))
        };
        let connected = tokio::select! {
            result = session => result,
            _ = alive.changed() => return,
        };
        match connected {
            Ok((client, ended)) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = ended => {}
                    _ = alive.changed() => return,
                }
                drop(client);
            }
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = alive.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
