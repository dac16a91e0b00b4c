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

/// The y axis for values up to `x`: a round step (1, 2 or 5 times a power
/// of ten, at least `min_step`) and how many steps reach `x` (at most 5;
/// at least 1).
fn axis(x: f64, min_step: f64) -> (f64, u32) {
    if x <= 0.0 {
        return (min_step.max(f64::MIN_POSITIVE), 4);
    }
    let raw = x / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| raw <= s * 1.000_001)
        .unwrap_or(10.0 * mag)
        .max(min_step);
    let steps = ((x / step) - 1e-9).ceil().max(1.0) as u32;
    (step, steps)
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
    min_step: f64,
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
    let (step, steps) = axis(max, min_step);
    let ymax = step * f64::from(steps);
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
        // On a phone the chart keeps a readable size and scrolls sideways.
        div.chart-scroll {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="Tokens per day by model" preserveAspectRatio="xMidYMid meet" {
            @for i in 0..=steps {
                @let y = top + plot_h - plot_h * f64::from(i) / f64::from(steps);
                line x1=(left) x2=(w - 8.0) y1=(y) y2=(y) class="grid-line" {}
                text x=(left - 6.0) y=(y + 4.0) text-anchor="end" class="axis" data-test="axis-tick" { (label(step * f64::from(i))) }
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
                (chart(&day_list, &rows, &colors, |r| (r.prompt + r.completion) as f64, |v| short(v.round() as u64), 1.0))
            }
            section.card {
                div.card-head { h2 { "Cost per day" } span.muted.small { "Compute time of your instances at their hourly price" } }
                @if total.cost == 0.0 && state.control.settings.local_cpu_hour_usd == 0.0 {
                    p.muted.small data-test="cost-zero-note" { "Cost is $0 because this server prices local CPU at $0 an hour (" code { "driver.local_cpu_hour_usd" } " in the configuration sets a price)." }
                }
                (chart(&day_list, &rows, &colors, |r| r.cost, usd, 0.0001))
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

#[cfg(test)]
mod tests {
    use super::axis;

    #[test]
    fn axis_ticks_are_round() {
        assert_eq!(axis(7.0, 1.0), (2.0, 4));
        assert_eq!(axis(3.0, 1.0), (1.0, 3));
        assert_eq!(axis(5.0, 1.0), (2.0, 3));
        assert_eq!(axis(1234.0, 1.0), (500.0, 3));
        assert_eq!(axis(1.0, 1.0), (1.0, 1));
        assert_eq!(axis(0.0, 1.0), (1.0, 4));
        let (step, steps) = axis(0.0031, 0.0001);
        assert!((step - 0.001).abs() < 1e-12 && steps == 4, "{step} {steps}");
        // Never more than five steps.
        for x in [1.0, 4.1, 9.9, 21.0, 49.0, 99.0, 101.0] {
            assert!(axis(x, 1.0).1 <= 5, "{x}");
        }
    }
}
