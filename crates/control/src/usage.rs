//! Usage and cost: tokens per day and model from the gateway's records, and
//! compute cost per day and model from each instance's billed time (the
//! stretches its history shows it holding compute) at its size's price.

use crate::{AdminOps, Control, Error, Result};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use paddock_core::instance::Instance;
use paddock_core::store::Store;
use paddock_core::user::{Principal, UsageRecord};
use paddock_core::{Timestamp, UserId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One day and model.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Compute cost of the model's instances that day, USD.
    pub cost_usd: f64,
    /// Seconds the model's instances held compute that day.
    pub compute_seconds: u64,
}

/// Everything `GET /api/usage` answers.
#[derive(Debug, Clone, Serialize)]
pub struct UsageSummary {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by_day: Vec<UsageRow>,
    pub by_model: Vec<UsageRow>,
    pub totals: UsageRow,
}

/// Most days one usage query covers.
pub const MAX_DAYS: u32 = 366;

fn day_start(d: NaiveDate) -> Timestamp {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Splits `[from, to)` into per-day seconds.
fn split_by_day(from: Timestamp, to: Timestamp, out: &mut BTreeMap<NaiveDate, u64>) {
    let mut t = from;
    while t < to {
        let next_day = day_start(t.date_naive() + Duration::days(1));
        let end = next_day.min(to);
        *out.entry(t.date_naive()).or_default() += (end - t).num_seconds().max(0) as u64;
        t = end;
    }
}

/// Compute seconds per day for one instance, from its history.
async fn billed_days(state: &Control, i: &Instance, now: Timestamp) -> BTreeMap<NaiveDate, u64> {
    let mut days = BTreeMap::new();
    let Ok(history) = state.store.list_transitions(&i.instance_id).await else {
        return days;
    };
    let mut since: Option<DateTime<Utc>> = None;
    for t in history {
        match (since, t.to.holds_compute()) {
            (None, true) => since = Some(t.at),
            (Some(s), false) => {
                split_by_day(s, t.at, &mut days);
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        split_by_day(s, now, &mut days);
    }
    days
}

impl Control {
    /// The caller's own usage over the last `days` days (1 to [`MAX_DAYS`]).
    pub async fn usage(&self, caller: &Principal, days: u32) -> Result<UsageSummary> {
        summary(self, Some(&caller.user_id), days).await
    }
}

impl AdminOps<'_> {
    /// Everyone's usage over the last `days` days.
    pub async fn all_usage(&self, days: u32) -> Result<UsageSummary> {
        summary(self.control, None, days).await
    }
}

/// Usage of one user, or of everyone for `None`.
async fn summary(state: &Control, owner: Option<&UserId>, days: u32) -> Result<UsageSummary> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::invalid(format!("days: must be 1 to {MAX_DAYS}")));
    }
    let now = state.clock.now();
    let to = now.date_naive();
    let from = to - Duration::days(i64::from(days.saturating_sub(1)));
    state.usage.flush().await;
    let days = state.store.usage_by_day(owner, from).await?;
    let mut rows: BTreeMap<(NaiveDate, String), UsageRow> = BTreeMap::new();
    fn row<'a>(
        rows: &'a mut BTreeMap<(NaiveDate, String), UsageRow>,
        day: NaiveDate,
        model: &str,
    ) -> &'a mut UsageRow {
        rows.entry((day, model.to_owned()))
            .or_insert_with(|| UsageRow {
                day,
                model: model.to_owned(),
                ..UsageRow::default()
            })
    }
    for d in &days {
        let e = row(&mut rows, d.day, d.model_id.as_str());
        e.requests += d.requests;
        e.errors += d.errors;
        e.prompt_tokens += d.prompt_tokens;
        e.completion_tokens += d.completion_tokens;
    }
    for i in state.store.list_instances(owner).await? {
        let price = state.price_per_hour(&i.spec);
        for (day, secs) in billed_days(state, &i, now).await {
            if day < from || secs == 0 {
                continue;
            }
            let e = row(&mut rows, day, i.model_id.as_str());
            e.compute_seconds += secs;
            e.cost_usd += price * secs as f64 / 3600.0;
        }
    }
    let by_day: Vec<UsageRow> = rows.into_values().collect();
    let mut models: BTreeMap<String, UsageRow> = BTreeMap::new();
    let mut totals = UsageRow {
        day: to,
        model: "all".into(),
        ..UsageRow::default()
    };
    for r in &by_day {
        let m = models.entry(r.model.clone()).or_insert_with(|| UsageRow {
            day: to,
            model: r.model.clone(),
            ..UsageRow::default()
        });
        for acc in [m, &mut totals] {
            acc.requests += r.requests;
            acc.errors += r.errors;
            acc.prompt_tokens += r.prompt_tokens;
            acc.completion_tokens += r.completion_tokens;
            acc.cost_usd += r.cost_usd;
            acc.compute_seconds += r.compute_seconds;
        }
    }
    Ok(UsageSummary {
        from,
        to,
        by_day,
        by_model: models.into_values().collect(),
        totals,
    })
}

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

    #[test]
    fn intervals_split_at_midnight() {
        let mut out = BTreeMap::new();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 23, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 1, 2, 1, 30, 0).unwrap();
        split_by_day(from, to, &mut out);
        assert_eq!(out[&NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()], 3600);
        assert_eq!(out[&NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()], 5400);
    }
}
