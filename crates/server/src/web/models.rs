//! The catalog page: model cards with filters and search, and the deploy
//! dialog. The dialog is filled by the page script from the compute table
//! embedded in the page (`GET /api/compute`'s JSON) and posts to
//! `POST /api/models/deploy`; it shows whether the model fits the chosen
//! size, what it costs per hour, and whether the first deploy downloads
//! the model, before anything is submitted. Each card says whether the
//! model is on this host.

use super::layout::{json_script, mem, page_header};
use super::session::Session;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use paddock_control::catalog::{Availability, ComputeView, ModelView};
use paddock_core::catalog::Model;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;

#[derive(Deserialize, Default)]
pub(crate) struct CatalogQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    task: String,
}

fn matches(m: &Model, q: &CatalogQuery) -> bool {
    let needle = q.q.trim().to_lowercase();
    (needle.is_empty()
        || m.model_id.as_str().to_lowercase().contains(&needle)
        || m.model_name.to_lowercase().contains(&needle)
        || m.description.to_lowercase().contains(&needle))
        && (q.family.is_empty() || m.model_family == q.family)
        && (q.task.is_empty() || m.supported_tasks.contains(&q.task))
}

fn start_time(secs: u32) -> String {
    if secs >= 90 {
        format!("~{} min", secs.div_ceil(60))
    } else {
        format!("~{secs} s")
    }
}

fn card(v: &ModelView, visible: bool) -> Markup {
    let m = &v.model;
    let avail = v.availability.describe(m.model_size_gb);
    let data = json!({
        "model_id": m.model_id,
        "model_name": m.model_name,
        "cpu_memory_mb": m.cpu_requirements.memory_mb,
        "cpu_vcpu": m.cpu_requirements.vcpu,
        "gpu_memory_mb": m.gpu_requirements.gpu_memory_mb,
        "gpu_type": m.gpu_requirements.gpu_type,
        "download": (v.availability == Availability::Download)
            .then(|| paddock_control::catalog::gigabytes(m.model_size_gb)),
    });
    let search = format!(
        "{} {} {}",
        m.model_id.as_str().to_lowercase(),
        m.model_name.to_lowercase(),
        m.description.to_lowercase()
    );
    html! {
        article.card.model-card data-model-card data-family=(m.model_family)
            data-tasks=(m.supported_tasks.join(" ")) data-search=(search) hidden[!visible] {
            div.model-head {
                div {
                    h2 { (m.model_name) }
                    code.muted { (m.model_id) }
                }
                span.chip.chip-family { (m.model_family) }
            }
            @if !m.description.is_empty() { p.model-desc { (m.description) } }
            @match v.availability {
                Availability::OnHost => p.avail.avail-here data-test="availability" { "✓ " (avail) },
                Availability::Download => p.avail.avail-download data-test="availability" { "↓ " (avail) },
                Availability::Remote => p.avail.muted data-test="availability" { (avail) },
            }
            dl.specs {
                div { dt { "Size" } dd { (paddock_control::catalog::gigabytes(m.model_size_gb)) } }
                div { dt { "CPU" } dd { (format!("{} vCPU · {}", m.cpu_requirements.vcpu, mem(m.cpu_requirements.memory_mb))) } }
                div { dt { "GPU" } dd { (mem(m.gpu_requirements.gpu_memory_mb)) " " span.muted { (m.gpu_requirements.gpu_type) } } }
                div { dt { "Starts in" } dd { (start_time(m.estimated_start_seconds())) } }
            }
            div.model-foot {
                div.tasks {
                    @for t in &m.supported_tasks { span.chip { (t) } }
                }
                button.btn.btn-primary.btn-sm type="button" data-deploy=(data.to_string())
                    data-test={ "deploy-" (m.model_id) } { "Deploy" }
            }
        }
    }
}

/// The deploy dialog: the page script fills the sizes from `compute`.
/// GPU sizes show only as a disabled choice, with the reason, when this
/// paddock's driver cannot run them; CPU sizes are "CPU sizes" when they
/// run here and Fargate's when they run on ECS.
fn deploy_dialog(compute: &ComputeView) -> Markup {
    let d = &compute.driver;
    let gpu_reason = d.gpu_unavailable_reason.clone().unwrap_or_default();
    html! {
        dialog.dialog id="deploy-dialog" aria-labelledby="deploy-title" {
            form id="deploy-form" method="dialog" novalidate {
                div.dialog-head {
                    h2 id="deploy-title" { "Deploy " span data-d="model-name" {} }
                    button.btn.btn-ghost.btn-xs type="button" data-close aria-label="Close" { "✕" }
                }
                div.banner.banner-error data-d="error" hidden role="alert" {}
                fieldset.segmented {
                    legend.sr-only { "Compute" }
                    label { input type="radio" name="kind" value="cpu" checked; span { "CPU" } }
                    label title=[(!d.gpu).then_some(gpu_reason.as_str())] {
                        input type="radio" name="kind" value="gpu" disabled[!d.gpu] data-test="deploy-gpu-tab";
                        span { "GPU" }
                    }
                }
                @if !d.gpu {
                    p.hint.gpu-off data-test="gpu-unavailable" { (gpu_reason) }
                }
                div.size-pair data-d="cpu-field" {
                    div.field {
                        label for="d-vcpu" { "vCPUs" }
                        select id="d-vcpu" name="vcpu" data-test="deploy-vcpu" {}
                    }
                    div.field {
                        label for="d-memory" { "Memory" }
                        select id="d-memory" name="memory" data-test="deploy-memory" {}
                    }
                    p.hint.size-hint {
                        @if d.local { "CPU size: the threads and memory this instance gets on this machine." }
                        @else { "Fargate's valid vCPU / memory pairs." }
                    }
                }
                div.field data-d="gpu-field" hidden {
                    label for="d-gpu" { "GPU instance type" }
                    select id="d-gpu" name="gpu" {}
                    p.hint { "EC2 on-demand prices." }
                }
                div.field data-d="spot-field" hidden {
                    label.check {
                        input id="d-spot" name="spot" type="checkbox" data-test="deploy-spot";
                        span { "Spot capacity" }
                    }
                    p.hint { "Cheaper spare capacity that AWS may take back; an interrupted instance restarts." }
                }
                div.field {
                    label for="d-name" { "Name " span.muted { "(optional)" } }
                    input id="d-name" name="name" type="text" maxlength="64" autocomplete="off" data-test="deploy-name";
                    p.field-error data-error-for="name" hidden {}
                }
                div.field {
                    label for="d-idle" { "Idle timeout (minutes)" }
                    input id="d-idle" name="idle" type="number" inputmode="numeric" min="0" max="10080" step="1" value="15";
                    p.field-error data-error-for="idle_timeout_minutes" hidden {}
                    p.hint { "Sleeps after this long without requests and wakes on the next one. 0 never sleeps." }
                }
                div.fit data-d="fit" {}
                p.hint.download-note data-d="download" data-test="deploy-download" hidden {}
                div.price-row {
                    span.muted { "Price" }
                    strong data-d="price" data-test="deploy-price" { "–" }
                }
                div.dialog-actions {
                    button.btn.btn-ghost type="button" data-close { "Cancel" }
                    button.btn.btn-primary type="submit" data-d="submit" data-test="deploy-submit" { "Deploy" }
                }
            }
        }
    }
}

/// `GET /ui/models`.
pub(crate) async fn page(
    s: Session,
    State(state): State<crate::state::AppState>,
    Query(q): Query<CatalogQuery>,
) -> Response {
    let models: Vec<ModelView> = match state.control.models().await {
        Ok(m) => m,
        Err(e) => return s.error(e.into()),
    };
    let families: BTreeSet<&str> = models
        .iter()
        .map(|v| v.model.model_family.as_str())
        .collect();
    let tasks: BTreeSet<&str> = models
        .iter()
        .flat_map(|v| v.model.supported_tasks.iter().map(String::as_str))
        .collect();
    let compute = state.control.compute_sizes();
    let shown = models.iter().filter(|v| matches(&v.model, &q)).count();
    let body = html! {
        (page_header("Models", "Pick a model, choose compute, and deploy it as your own instance.", html!{}))
        form.filters method="get" action="/ui/models" data-filters {
            input.search type="search" name="q" value=(q.q) placeholder="Search models…" aria-label="Search models" data-test="model-search";
            select name="family" aria-label="Family" {
                option value="" { "All families" }
                @for f in &families { option value=(f) selected[q.family == *f] { (f) } }
            }
            select name="task" aria-label="Task" {
                option value="" { "All tasks" }
                @for t in &tasks { option value=(t) selected[q.task == *t] { (t) } }
            }
            noscript { button.btn type="submit" { "Filter" } }
            span.muted.count data-count { (shown) " of " (models.len()) " models" }
        }
        div.grid.model-grid {
            @for v in &models { (card(v, matches(&v.model, &q))) }
        }
        div.card.empty data-no-results hidden[shown > 0] {
            h2 { "No models match" }
            p.muted { "Try another search or clear the filters." }
        }
        (json_script("compute-data", &serde_json::to_value(&compute).unwrap_or_default()))
        (deploy_dialog(&compute))
    };
    s.page("Models", "models", body)
}
