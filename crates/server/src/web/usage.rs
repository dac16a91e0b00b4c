//! The usage page: tokens and cost per day and per model, as a server-side
//! SVG chart (stacked bars of tokens per day, one color per model) and
//! tables. The numbers come from the usage summary in the shape of
//! `GET /api/usage` (`{by_day: [{day, model, requests, prompt_tokens,
//! completion_tokens, cost_usd}], totals}`), computed by
//! [`crate::usage::summary`].

use super::layout::{empty_state, page_header, usd};
use super::session::Session;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Colors for models in the chart, in order of first appearance.
const PALETTE: &[&str] = &[
    "#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#0d9488", "#dc2626",
];

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    #[serde(default = "default_days")]
    days: u32,
}

fn default_days() -> u32 {
    30
}

/// One (day, model) row of the summary.
#[derive(Debug, Clone, Default)]
struct Row {
    day: String,
    model: String,
    requests: u64,
    prompt: u64,
    completion: u64,
    cost: f64,
}

fn rows(summary: &Value) -> Vec<Row> {
    summary["by_day"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| Row {
                    day: r["day"].as_str().unwrap_or("").to_owned(),
                    model: r["model"].as_str().unwrap_or("").to_owned(),
                    requests: r["requests"].as_u64().unwrap_or(0),
                    prompt: r["prompt_tokens"].as_u64().unwrap_or(0),
                    completion: r["completion_tokens"].as_u64().unwrap_or(0),
                    cost: r["cost_usd"].as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A round axis maximum at or above `x` (1, 2 or 5 times a power of ten).
fn nice_max(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if x <= m * mag * 1.000_001 {
            return m * mag;
        }
    }
    10.0 * mag
}

fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Stacked bars: one per day of the window, tokens split by model.
fn chart(
    days: &[String],
    rows: &[Row],
    colors: &BTreeMap<String, &str>,
    value: fn(&Row) -> f64,
    label: fn(f64) -> String,
) -> Markup {
    let (w, h, left, bottom, top) = (760.0, 260.0, 48.0, 28.0, 12.0);
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - top;
    let mut per_day: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for r in rows {
        per_day
            .entry(r.day.as_str())
            .or_default()
            .push((r.model.as_str(), value(r)));
    }
    let max = per_day
        .values()
        .map(|v| v.iter().map(|(_, t)| t).sum::<f64>())
        .fold(0.0, f64::max);
    let ymax = nice_max(max);
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(2.0);
    let mut rects = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (model, tokens) in per_day.get(day.as_str()).into_iter().flatten() {
            let bh = plot_h * *tokens / ymax;
            y -= bh;
            let color = colors.get(*model).copied().unwrap_or("#999");
            rects.push((
                x,
                y,
                bh,
                color,
                format!("{day} · {model}: {}", label(*tokens)),
            ));
        }
    }
    let every = (days.len() / 7).max(1);
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="Tokens per day by model" preserveAspectRatio="xMidYMid meet" {
            @for i in 0..=4 {
                @let y = top + plot_h - plot_h * i as f64 / 4.0;
                line x1=(left) x2=(w - 8.0) y1=(y) y2=(y) class="grid-line" {}
                text x=(left - 6.0) y=(y + 4.0) text-anchor="end" class="axis" { (label(ymax * i as f64 / 4.0)) }
            }
            @for (x, y, bh, color, label) in &rects {
                rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bar:.1}")) height=(format!("{bh:.1}")) fill=(color) rx="2" {
                    title { (label) }
                }
            }
            @for (i, day) in days.iter().enumerate() {
                @if days.len() <= 10 || i % every == 0 {
                    text x=(format!("{:.1}", left + slot * i as f64 + slot / 2.0)) y=(h - 8.0) text-anchor="middle" class="axis" { (day.get(5..).unwrap_or(day)) }
                }
            }
        }
    }
}

/// `GET /ui/usage?days=30`.
pub(crate) async fn page(
    s: Session,
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Response {
    let days = q.days.clamp(1, 366);
    let summary = match state.control.usage(&s.principal, days).await {
        Ok(v) => serde_json::to_value(v).unwrap_or_default(),
        Err(e) => return s.error(e.into()),
    };
    let rows = rows(&summary);
    let today = state.control.clock.now().date_naive();
    let day_list: Vec<String> = (0..days)
        .rev()
        .map(|d| {
            (today - chrono::Duration::days(d as i64))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let mut colors: BTreeMap<String, &str> = BTreeMap::new();
    for r in &rows {
        let n = colors.len();
        colors
            .entry(r.model.clone())
            .or_insert(PALETTE[n % PALETTE.len()]);
    }
    let mut per_model: BTreeMap<&str, Row> = BTreeMap::new();
    for r in &rows {
        let e = per_model.entry(r.model.as_str()).or_default();
        e.requests += r.requests;
        e.prompt += r.prompt;
        e.completion += r.completion;
        e.cost += r.cost;
    }
    let total = per_model.values().fold(Row::default(), |mut a, r| {
        a.requests += r.requests;
        a.prompt += r.prompt;
        a.completion += r.completion;
        a.cost += r.cost;
        a
    });
    let body = html! {
        (page_header("Usage", "Tokens through the gateway and compute cost of your instances.", html! {
            div.seg-links {
                @for d in [7u32, 30, 90] {
                    a.btn.btn-sm.active[d == days] .btn-ghost[d != days] href={ "/ui/usage?days=" (d) } { (d) " days" }
                }
            }
        }))
        div.stats {
            div.card.stat { span.muted { "Requests" } strong data-test="usage-requests" { (total.requests) } }
            div.card.stat { span.muted { "Prompt tokens" } strong { (short(total.prompt)) } }
            div.card.stat { span.muted { "Completion tokens" } strong { (short(total.completion)) } }
            div.card.stat { span.muted { "Cost" } strong { (usd(total.cost)) } }
        }
        @if rows.is_empty() {
            (empty_state("No usage yet", "Chat with an instance or call the API with a key; requests show up here within a few seconds."))
        } @else {
            section.card {
                div.card-head {
                    h2 { "Tokens per day" }
                    div.legend { @for (m, c) in &colors { span.legend-item { span.swatch style={ "background:" (c) } {} (m) } } }
                }
                (chart(&day_list, &rows, &colors, |r| (r.prompt + r.completion) as f64, |v| short(v.round() as u64)))
            }
            section.card {
                div.card-head { h2 { "Cost per day" } span.muted.small { "Compute time of your instances at their hourly price" } }
                (chart(&day_list, &rows, &colors, |r| r.cost, usd))
            }
            div {
                section.card.table-card {
                    h2.card-title { "By model" }
                    table.table.responsive {
                        thead { tr { th { "Model" } th.num { "Requests" } th.num { "Prompt" } th.num { "Completion" } th.num { "Cost" } } }
                        tbody { @for (m, r) in &per_model {
                            tr { td data-label="Model" { span.swatch style={ "background:" (colors.get(*m).copied().unwrap_or("#999")) } {} (m) }
                                 td.num data-label="Requests" { (r.requests) } td.num data-label="Prompt" { (r.prompt) }
                                 td.num data-label="Completion" { (r.completion) } td.num data-label="Cost" { (usd(r.cost)) } }
                        } }
                    }
                }
                section.card.table-card {
                    h2.card-title { "By day" }
                    table.table.responsive {
                        thead { tr { th { "Day" } th { "Model" } th.num { "Requests" } th.num { "Tokens" } th.num { "Cost" } } }
                        tbody { @for r in rows.iter().rev() {
                            tr { td data-label="Day" { (r.day) } td data-label="Model" { (r.model) } td.num data-label="Requests" { (r.requests) }
                                 td.num data-label="Tokens" { (r.prompt + r.completion) } td.num data-label="Cost" { (usd(r.cost)) } }
                        } }
                    }
                }
            }
        }
    };
    s.page("Usage", "usage", body)
}
