//! Usage and cost: tokens per day and model from the gateway's records, and
//! compute cost per day and model from each instance's billed time (the
//! stretches its history shows it holding compute) at its size's price.

use crate::error::{Error, Result};
use crate::service::{AdminOps, Control};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use paddock_core::instance::Instance;
use paddock_core::user::Principal;
use paddock_core::{Timestamp, UserId};
use serde::Serialize;
use std::collections::BTreeMap;

/// One day and model.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UsageRow {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct UsageSummary {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub from: NaiveDate,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
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

#[cfg(test)]
mod tests {
    use super::*;

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
