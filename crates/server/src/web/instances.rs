//! Instance pages: the list (yours, or everyone's for admins) with live
//! status, the detail page with state history and logs, and the chat
//! playground.
//!
//! Pages render the current state on the server; the page script then
//! follows `GET /api/instances/events` (server-sent events; polling
//! `GET /api/instances` every two seconds if the stream drops) and updates
//! status, uptime and cost in place. When instances appear or
//! vanish it fetches the table body again from `/ui/instances/rows`, so
//! rows are rendered in one place only ([`rows`]).

use super::layout::{
    copyable, duration, empty_state, instance_badge, json_script, page_header, pull_progress,
    status_badge, time, time_precise, usd,
};
use super::session::Session;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use paddock_core::instance::Instance;
use paddock_core::UserId;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    all: bool,
}

fn st<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// Table rows for instances (`owners` adds an owner column).
fn rows(base: &str, list: &[Value], owners: Option<&HashMap<UserId, String>>) -> Markup {
    html! {
        @for v in list {
            @let id = st(v, "instance_id");
            @let status = st(v, "status");
            tr data-instance=(id) data-status=(status) {
                td data-label="Instance" {
                    a.strong href={ "/ui/instances/" (id) } data-test="instance-name" { (st(v, "name")) }
                    div.muted.small { (st(v, "model_display_name")) " · " code { (id) } }
                }
                @if let Some(o) = owners {
                    td data-label="Owner" { (o.get(&UserId::new(st(v, "user_id"))).map(String::as_str).unwrap_or("deleted user")) }
                }
                td data-label="Status" {
                    (instance_badge(v))
                    (pull_progress(v))
                    // One line, however long the reason (a crash log can
                    // be); all of it on hover and on the detail page.
                    div.muted.small.reason.one-line data-f="reason" title=(st(v, "status_reason")) { (st(v, "status_reason")) }
                }
                td data-label="Compute" {
                    span.nowrap { (st(v, "instance_type")) @if v["spot"] == true { " · spot" } }
                    div.muted.small { (usd(v["price_per_hour_usd"].as_f64().unwrap_or(0.0))) "/h" }
                }
                td data-label="Endpoint" { (copyable(&format!("{base}/models/{id}"), "copy-endpoint")) }
                td.num data-label="Uptime" data-f="uptime" { (duration(v["uptime_seconds"].as_u64().unwrap_or(0))) }
                td.num data-label="Cost" data-f="cost" { (usd(v["cost_usd"].as_f64().unwrap_or(0.0))) }
                td.actions data-label="" { (actions(v)) }
            }
        }
    }
}

fn actions(v: &Value) -> Markup {
    let id = st(v, "instance_id");
    let status = st(v, "status");
    let stoppable = !matches!(status, "STOPPED" | "STOPPING");
    html! {
        div.btn-row {
            a.btn.btn-sm.btn-ghost href={ "/ui/chat?instance=" (id) } data-a="chat" hidden[status != "RUNNING"] { "Chat" }
            button.btn.btn-sm type="button" data-action="start" data-id=(id) hidden[v["startable"] != true] data-test="start" { "Start" }
            button.btn.btn-sm type="button" data-action="stop" data-id=(id) hidden[!stoppable] data-test="stop" { "Stop" }
            button.btn.btn-sm.btn-danger-ghost type="button" data-action="delete" data-id=(id) hidden[status != "STOPPED"] data-test="delete" { "Delete" }
        }
    }
}

/// An instance's view as the JSON the page script also reads.
fn view_json(state: &AppState, i: &Instance) -> Value {
    serde_json::to_value(state.control.instance_view(i)).unwrap_or_default()
}

async fn load(
    state: &AppState,
    s: &Session,
    all: bool,
) -> Result<(Vec<Value>, Option<HashMap<UserId, String>>), paddock_gateway::error::ApiError> {
    let c = &state.control;
    let admin = if all { c.as_admin(&s.principal) } else { None };
    let (mut list, owners): (Vec<Instance>, _) = match admin {
        Some(admin) => {
            let owners = admin
                .users()
                .await?
                .into_iter()
                .map(|u| (u.user_id, u.email))
                .collect();
            (admin.all_instances().await?, Some(owners))
        }
        None => (c.my_instances(&s.principal).await?, None),
    };
    list.sort_by_key(|i| std::cmp::Reverse(i.created_at));
    Ok((list.iter().map(|i| view_json(state, i)).collect(), owners))
}

/// The instances table (shared by the user's page and the admin's).
pub(crate) async fn table_page(s: Session, state: AppState, all: bool) -> Response {
    let (list, owners) = match load(&state, &s, all).await {
        Ok(x) => x,
        Err(e) => return s.error(e),
    };
    let (title, active, sub) = if all {
        (
            "All instances",
            "admin-instances",
            "Every user's instances.",
        )
    } else {
        (
            "Instances",
            "instances",
            "Your model instances. Status updates live.",
        )
    };
    let body = html! {
        (page_header(title, sub, html! { a.btn.btn-primary href="/ui/models" data-test="new-instance" { "+ Deploy a model" } }))
        @if list.is_empty() {
            (empty_state("No instances yet", "Deploy a model from the catalog and it will show up here."))
        }
        div.card.table-card hidden[list.is_empty()] {
            table.table.responsive data-live-instances=(if all { "all" } else { "mine" }) {
                thead { tr {
                    th { "Instance" }
                    @if owners.is_some() { th { "Owner" } }
                    th { "Status" } th { "Compute" } th { "Endpoint" } th.num { "Uptime" } th.num { "Cost" } th {}
                } }
                tbody { (rows(&s.base_url, &list, owners.as_ref())) }
            }
        }
    };
    s.page(title, active, body)
}

/// `GET /ui/instances`.
pub(crate) async fn list_page(s: Session, State(state): State<AppState>) -> Response {
    table_page(s, state, false).await
}

/// `GET /ui/instances/rows`: the table body, for the live script.
pub(crate) async fn rows_fragment(
    s: Session,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Response {
    match load(&state, &s, q.all).await {
        Ok((list, owners)) => s.cookies.apply(super::session::html(rows(
            &s.base_url,
            &list,
            owners.as_ref(),
        ))),
        Err(e) => e.into_response(),
    }
}

/// `GET /ui/instances/{id}`.
pub(crate) async fn detail_page(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let i = match state.control.instance(&s.principal, &id).await {
        Ok(i) => i,
        Err(e) => return s.error(e.into()),
    };
    let history = match state.control.instance_detail(&s.principal, &id).await {
        Ok(d) => d.history.unwrap_or_default(),
        Err(e) => return s.error(e.into()),
    };
    let v = view_json(&state, &i);
    let status = s_(&v, "status");
    let endpoint = format!("{}/models/{}", s.base_url, i.instance_id);
    let body = html! {
        nav.crumbs { a href="/ui/instances" { "Instances" } " / " span { (i.instance_id) } }
        // An admin looking at someone else's instance follows everyone's.
        div data-live-instance=(i.instance_id) data-status=(status) data-all=[(i.user_id != s.principal.user_id).then_some("1")] {
            (page_header(&i.display_name(), &i.model_name, html! { (actions(&v)) }))
            div.detail-grid {
                section.card {
                    h2 { "Overview" }
                    dl.kv {
                        div { dt { "Status" } dd { (instance_badge(&v)) (pull_progress(&v)) div.muted.small data-f="reason" { (s_(&v, "status_reason")) } } }
                        div { dt { "Model" } dd { code { (i.model_id) } } }
                        div { dt { "Compute" } dd { (s_(&v, "instance_type")) " · " (compute_label(&state, &v)) @if v["spot"] == true { " · spot" } } }
                        div { dt { "Price" } dd { (usd(v["price_per_hour_usd"].as_f64().unwrap_or(0.0))) " / hour" } }
                        div { dt { "Uptime" } dd data-f="uptime" { (duration(v["uptime_seconds"].as_u64().unwrap_or(0))) } }
                        div { dt { "Cost so far" } dd data-f="cost" { (usd(v["cost_usd"].as_f64().unwrap_or(0.0))) } }
                        div { dt { "Idle timeout" } dd { @if i.idle_timeout_secs == 0 { "never sleeps" } @else { (duration(i.idle_timeout_secs)) } } }
                        div { dt { "Created" } dd { (time(&i.created_at)) } }
                        div.kv-wide { dt { "Endpoint" } dd { (copyable(&endpoint, "copy-endpoint")) } }
                    }
                }
                section.card {
                    h2 { "State history" }
                    ol.timeline data-f="history" {
                        @for t in history.iter().rev() {
                            li {
                                (status_badge(t.to.as_str()))
                                span.reason { (t.reason) }
                                span.muted.small { (time_precise(&t.at)) }
                            }
                        }
                    }
                }
            }
            section.card.logs-card {
                div.card-head {
                    h2 { "Logs" }
                    div.logs-tools {
                        input.search type="search" data-logs-filter placeholder="Filter lines…" aria-label="Filter log lines" data-test="logs-filter";
                        a.btn.btn-sm.btn-ghost href={ "/ui/instances/" (i.instance_id) "/logs.txt" } download data-test="logs-download" { "Download" }
                    }
                    span.muted.small data-f="logs-state" { "Loading…" }
                }
                pre.logs data-logs=(i.instance_id) {}
            }
            (super::keys::snippets(&endpoint, None, i.model_id.as_str(), "Call this endpoint", html! {
                p.muted { "This instance only, whatever else you run: the Ollama API at " code { (endpoint) } ", the OpenAI API under " code { (endpoint) "/v1" } ". Keys come from " a href="/ui/keys" { "API keys" } "." }
            }))
        }
    };
    s.page(&i.display_name(), "instances", body)
}

/// `GET /ui/instances/{id}/logs.txt`: the model server's log (its last
/// [`MAX_LOG_LINES`](paddock_control::instances::MAX_LOG_LINES) lines) as
/// a text file to download.
pub(crate) async fn logs_download(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let max = paddock_control::instances::MAX_LOG_LINES;
    match state.control.instance_logs(&s.principal, &id, max).await {
        Ok((id, lines)) => {
            let mut text = lines.join("\n");
            text.push('\n');
            let disposition = format!("attachment; filename=\"{id}.log\"");
            s.cookies.apply(
                (
                    [
                        (
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; charset=utf-8".to_owned(),
                        ),
                        (axum::http::header::CONTENT_DISPOSITION, disposition),
                    ],
                    text,
                )
                    .into_response(),
            )
        }
        Err(e) => s.error(e.into()),
    }
}

/// Where an instance runs, in words: a CPU size on the local drivers is
/// this machine's, not Fargate's.
fn compute_label(state: &AppState, v: &Value) -> String {
    match st(v, "compute") {
        "fargate" if state.control.driver.capabilities().local => "CPU on this machine".into(),
        "fargate" => "Fargate".into(),
        "gpu" => "GPU".into(),
        other => other.to_owned(),
    }
}

fn s_(v: &Value, k: &str) -> String {
    st(v, k).to_owned()
}

#[derive(Deserialize, Default)]
pub(crate) struct ChatQuery {
    instance: Option<String>,
}

/// `GET /ui/chat`: the playground.
pub(crate) async fn chat_page(
    s: Session,
    State(state): State<AppState>,
    Query(q): Query<ChatQuery>,
) -> Response {
    let (list, _) = match load(&state, &s, false).await {
        Ok(x) => x,
        Err(e) => return s.error(e),
    };
    // Base models open in Complete mode (so do models without a chat
    // template; the page script asks the instance).
    let kinds: HashMap<String, &'static str> = match state.control.models().await {
        Ok(models) => models
            .into_iter()
            .map(|m| (m.model.model_id.as_str().to_owned(), m.model.kind.as_str()))
            .collect(),
        Err(e) => return s.error(e.into()),
    };
    let usable: Vec<&Value> = list
        .iter()
        .filter(|v| matches!(st(v, "status"), "RUNNING" | "SLEEPING" | "STARTING"))
        .collect();
    let selected = q
        .instance
        .clone()
        .filter(|id| usable.iter().any(|v| st(v, "instance_id") == id))
        .or_else(|| {
            usable
                .iter()
                .find(|v| st(v, "status") == "RUNNING")
                .map(|v| st(v, "instance_id").to_owned())
        });
    let meta: Vec<Value> = usable
        .iter()
        .map(|v| serde_json::json!({"id": v["instance_id"], "model": v["model_name"], "status": v["status"]}))
        .collect();
    let body = html! {
        (page_header("Chat", "Talk to one of your running instances. Replies stream as they are generated.", html!{}))
        @if usable.is_empty() {
            div.card.empty {
                h2 { "No running instance" }
                p.muted { "Deploy a model first; once it is RUNNING you can chat with it here." }
                a.btn.btn-primary href="/ui/models" { "Browse models" }
            }
        } @else {
            div.chat-layout {
                aside.card.chat-settings {
                    div.field {
                        label for="c-instance" { "Instance" }
                        select id="c-instance" data-test="chat-instance" {
                            @for v in &usable {
                                @let id = st(v, "instance_id");
                                option value=(id) data-model=(st(v, "model_name")) data-kind=(kinds.get(st(v, "model_name")).copied().unwrap_or("instruct"))
                                    data-status=(st(v, "status")) selected[selected.as_deref() == Some(id)] {
                                    (st(v, "name")) " · " (st(v, "model_display_name")) " · " (st(v, "status").to_lowercase())
                                }
                            }
                        }
                    }
                    div.field {
                        span.label { "Mode" }
                        fieldset.segmented.chat-mode {
                            legend.sr-only { "Mode" }
                            label { input type="radio" name="chat-mode" value="chat" checked data-test="mode-chat"; span { "Chat" } }
                            label { input type="radio" name="chat-mode" value="complete" data-test="mode-complete"; span { "Complete" } }
                        }
                        p.hint.mode-note data-test="mode-note" hidden {}
                    }
                    div.field data-chat-only {
                        label for="c-system" { "System prompt" }
                        textarea id="c-system" rows="4" placeholder="You are a helpful assistant." {}
                    }
                    div.field {
                        label for="c-temp" { "Temperature " output id="c-temp-out" for="c-temp" { "0.7" } }
                        input id="c-temp" type="range" min="0" max="2" step="0.1" value="0.7";
                    }
                    div.field {
                        label for="c-max" { "Max reply tokens" }
                        input id="c-max" type="number" min="1" max="8192" step="1" value="512" data-test="chat-max";
                    }
                    button.btn.btn-ghost.btn-sm type="button" data-chat-clear { "Clear conversation" }
                }
                section.card.chat-main {
                    div.chat-log id="chat-log" aria-live="polite" data-test="chat-log" {
                        p.chat-empty.muted { "Send a message to start." }
                    }
                    div.banner.banner-error id="chat-error" hidden role="alert" {}
                    form.composer id="chat-form" {
                        textarea id="c-input" rows="2" placeholder="Message… (Enter to send, Shift+Enter for a new line)" required data-test="chat-input" {}
                        div.composer-bar {
                            span.muted.small id="chat-stats" data-test="chat-stats" {}
                            button.btn.btn-ghost.btn-sm type="button" id="chat-stop" hidden { "Stop" }
                            button.btn.btn-primary type="submit" id="chat-send" data-test="chat-send" { "Send" }
                        }
                    }
                }
            }
            (json_script("chat-instances", &Value::Array(meta)))
        }
    };
    s.page("Chat", "chat", body)
}
