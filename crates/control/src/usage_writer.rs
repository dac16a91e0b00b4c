//! [`UsageWriter`]: the gateway's usage records on their way to the store,
//! queued without waiting on the request path and written in batches by
//! one background task.

use paddock_core::store::Store;
use paddock_core::user::UsageRecord;
use std::sync::Arc;

/// Usage records that may wait to be written before new ones are dropped.
pub const QUEUE: usize = 65_536;
/// The most records written in one transaction.
const MAX_BATCH: usize = 4096;
/// How long the writer lets records gather after the first one arrives, so
/// a busy gateway commits a few large transactions a second rather than
/// one per handful of requests (each commit rewrites the records table's
/// last page and the day totals it touched).
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Debug)]
enum UsageMsg {
    Record(UsageRecord),
    /// Answered once everything queued before it is in the store.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The gateway's usage records on their way to the store: queued without
/// waiting on the request path, written in batches by one background task.
#[derive(Debug, Clone)]
pub struct UsageWriter {
    tx: tokio::sync::mpsc::Sender<UsageMsg>,
}

impl UsageWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(write_records(store, rx));
        UsageWriter { tx }
    }

    /// Queues a record; false when the queue is full and it was dropped.
    pub fn record(&self, r: UsageRecord) -> bool {
        self.tx.try_send(UsageMsg::Record(r)).is_ok()
    }

    /// Waits until every record queued so far is written (or the writer is
    /// gone), so a usage query sees the requests that came before it.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(UsageMsg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_records(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::Receiver<UsageMsg>) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::new();
    while rx.recv_many(&mut msgs, MAX_BATCH).await > 0 {
        let flushing = msgs.iter().any(|m| matches!(m, UsageMsg::Flush(_)));
        if !flushing && msgs.len() < MAX_BATCH {
            tokio::time::sleep(LINGER).await;
            // Whatever came meanwhile, without waiting for more.
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        for m in msgs.drain(..) {
            match m {
                UsageMsg::Record(r) => batch.push(r),
                UsageMsg::Flush(done) => waiters.push(done),
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store.record_usage_batch(&batch).await {
                tracing::warn!(error = %e, records = batch.len(), "recording usage failed");
            }
            batch.clear();
        }
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use paddock_core::store::UsageQuery;

    fn record(n: u64) -> UsageRecord {
        UsageRecord {
            at: Utc::now(),
            user_id: paddock_core::UserId::new("u-1"),
            api_key_id: None,
            instance_id: paddock_core::InstanceId::new("i-1"),
            model_id: paddock_core::ModelId::new("gemma3:270m"),
            route: "/api/chat".into(),
            prompt_tokens: n,
            completion_tokens: 1,
            duration_ms: 1,
            status: 200,
        }
    }

    #[tokio::test]
    async fn the_writer_stores_a_lone_record_without_waiting_for_more() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            paddock_store_sqlite::SqliteStore::open(&dir.path().join("p.db"))
                .await
                .unwrap(),
        );
        let writer = UsageWriter::spawn(store.clone());
        assert!(writer.record(record(1)));
        // No flush and nothing after it: the linger alone must end.
        let mut stored = 0;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            stored = store
                .list_usage(&UsageQuery::default())
                .await
                .unwrap()
                .len();
            if stored == 1 {
                break;
            }
        }
        assert_eq!(stored, 1);

        // A flush waits for everything queued before it.
        for n in 0..500 {
            assert!(writer.record(record(n)));
        }
        writer.flush().await;
        let all = store.list_usage(&UsageQuery::default()).await.unwrap();
        assert_eq!(all.len(), 501);
    }
}
