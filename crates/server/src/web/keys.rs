//! The API keys page: create (the secret is shown once), list, revoke, and
//! ready-to-copy snippets for curl, the Ollama Python client and the OpenAI
//! Python client. Creation and revocation go through the same control operations
//! as `POST /api/keys` and `DELETE /api/keys/{id}`, so the rules are one.

use super::layout::{
    banner_error, banner_ok, copyable, csrf_field, page_header, time_value as ts, FormErrors,
};
use super::session::{csrf_rejected, redirect, Session};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use paddock_control::keys::CreateKey;
use serde::Deserialize;
use serde_json::Value;

/// The snippets calling `public_url` (the gateway, which routes by model,
/// or one instance's endpoint), with `key` (a secret just created) or,
/// without one, code that reads the key from `$PADDOCK_API_KEY` in each
/// language; under `heading` and `lead`.
pub(crate) fn snippets(
    public_url: &str,
    key: Option<&str>,
    model: &str,
    heading: &str,
    lead: Markup,
) -> Markup {
    let shell_key = key.unwrap_or("$PADDOCK_API_KEY");
    // The Python import, the key as an expression and the bearer header.
    let (py_import, py_key, bearer) = match key {
        Some(k) => ("", format!("\"{k}\""), format!("\"Bearer {k}\"")),
        None => (
            "import os\n",
            "os.environ[\"PADDOCK_API_KEY\"]".to_string(),
            "\"Bearer \" + os.environ[\"PADDOCK_API_KEY\"]".to_string(),
        ),
    };
    let curl = format!(
        "curl {public_url}/api/chat \\\n  -H \"Authorization: Bearer {shell_key}\" \\\n  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"
    );
    let ollama = format!(
        "{py_import}from ollama import Client\n\nclient = Client(host=\"{public_url}\", headers={{\"Authorization\": {bearer}}})\nreply = client.chat(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"Hello!\"}}])\nprint(reply.message.content)"
    );
    let openai = format!(
        "{py_import}from openai import OpenAI\n\nclient = OpenAI(base_url=\"{public_url}/v1\", api_key={py_key})\nreply = client.chat.completions.create(\n    model=\"{model}\",\n    messages=[{{\"role\": \"user\", \"content\": \"Hello!\"}}],\n)\nprint(reply.choices[0].message.content)"
    );
    html! {
        section.card.snippets {
            h2 { (heading) }
            (lead)
            @if key.is_none() {
                p.muted data-test="snippet-env" { "The snippets read your key from " code { "PADDOCK_API_KEY" } ": " code { "export PADDOCK_API_KEY=pdk_…" } " with a key's secret first." }
            }
            div.tabs data-tabs {
                div.tab-list role="tablist" {
                    button.tab.active type="button" role="tab" data-tab="curl" { "curl" }
                    button.tab type="button" role="tab" data-tab="ollama" { "Ollama Python" }
                    button.tab type="button" role="tab" data-tab="openai" { "OpenAI Python" }
                }
                @for (name, text) in [("curl", &curl), ("ollama", &ollama), ("openai", &openai)] {
                    div.tab-panel data-panel=(name) hidden[name != "curl"] {
                        div.code-block {
                            button.btn.btn-xs.btn-ghost.code-copy type="button" data-copy=(text) { "Copy" }
                            pre { code data-test={ "snippet-" (name) } { (text) } }
                        }
                    }
                }
            }
        }
    }
}

fn page_body(
    s: &Session,
    list: &[Value],
    created: Option<&Value>,
    errors: &FormErrors,
    notice: &str,
) -> Markup {
    let public_url = &s.base_url;
    let secret = created.and_then(|c| c["secret"].as_str());
    html! {
        (page_header("API keys", "Keys let programs call your instances. Treat them like passwords.", html!{}))
        (banner_ok(notice))
        @if let (Some(c), Some(secret)) = (created, secret) {
            div.card.secret-card data-test="new-key" {
                h2 { "Key “" (c["name"].as_str().unwrap_or("")) "” created" }
                p { strong { "Copy it now." } " This is the only time the secret is shown; paddock keeps only its hash." }
                (copyable(secret, "copy-secret"))
            }
        }
        section.card {
            h2 { "Create a key" }
            (banner_error(&errors.form))
            form.form-inline method="post" action="/ui/keys" data-busy {
                (csrf_field(&s.csrf))
                div.field.has-error[errors.get("name").is_some()] {
                    label for="k-name" { "Name" }
                    input id="k-name" name="name" type="text" maxlength="100" placeholder="e.g. laptop, CI" required data-test="key-name";
                    @if let Some(m) = errors.get("name") { p.field-error data-error-for="name" { (super::layout::sentence(m)) } }
                    @else { p.hint { "So you can tell your keys apart later." } }
                }
                div.field.field-action { button.btn.btn-primary type="submit" data-test="key-create" { "Create key" } }
            }
        }
        section.card.table-card {
            h2.card-title { "Your keys" }
            @if list.is_empty() {
                p.muted.pad { "No keys yet." }
            } @else {
                table.table.responsive data-test="keys-table" {
                    thead { tr { th { "Name" } th { "Key" } th { "Created" } th { "Last used" } th { "Status" } th {} } }
                    tbody {
                        @for k in list {
                            @let id = k["key_id"].as_str().unwrap_or("");
                            @let status = k["status"].as_str().unwrap_or("");
                            tr data-key=(id) {
                                td data-label="Name" { strong { (k["name"].as_str().unwrap_or("")) } }
                                td data-label="Key" { code { (k["prefix"].as_str().unwrap_or("")) "…" } }
                                td data-label="Created" { (ts(&k["created_at"])) }
                                td data-label="Last used" { @if k["last_used_at"].is_null() { span.muted { "never" } } @else { (ts(&k["last_used_at"])) } }
                                td data-label="Status" { span class={ "badge badge-key-" (status) } { (status) } }
                                td.actions data-label="" {
                                    @if status == "active" {
                                        form method="post" action={ "/ui/keys/" (id) "/revoke" } data-confirm="Revoke this key? Programs using it will stop working." {
                                            (csrf_field(&s.csrf))
                                            button.btn.btn-sm.btn-danger-ghost type="submit" data-test="key-revoke" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (snippets(public_url, secret, "gemma3:270m", "Use your key", html! {
            p.muted { "Requests are routed by " code { "model" } " to one of your running instances of that model." }
        }))
    }
}

async fn render(
    s: &Session,
    state: &AppState,
    created: Option<&Value>,
    errors: &FormErrors,
    notice: &str,
) -> Response {
    match state.control.keys(&s.principal).await {
        Ok(keys) => {
            let list: Vec<Value> = keys
                .iter()
                .filter_map(|k| serde_json::to_value(k).ok())
                .collect();
            s.page(
                "API keys",
                "keys",
                page_body(s, &list, created, errors, notice),
            )
        }
        Err(e) => s.error(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct KeysQuery {
    revoked: Option<String>,
}

/// `GET /ui/keys`.
pub(crate) async fn page(
    s: Session,
    State(state): State<AppState>,
    Query(q): Query<KeysQuery>,
) -> Response {
    let notice = if q.revoked.is_some() {
        "Key revoked."
    } else {
        ""
    };
    render(&s, &state, None, &FormErrors::default(), notice).await
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /ui/keys`: creates a key and shows its secret once.
pub(crate) async fn create(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CreateForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let req = CreateKey {
        name: f.name,
        expires_at: None,
        allowed_models: None,
    };
    match state.control.create_key(&s.principal, req).await {
        Ok(created) => {
            let created = serde_json::to_value(&created).unwrap_or_default();
            let mut r = render(&s, &state, Some(&created), &FormErrors::default(), "").await;
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => {
            let e = paddock_gateway::error::ApiError::from(e);
            let status = e.status();
            let errors = FormErrors::from_message(&e.to_string(), &[("name", "name")]);
            let mut r = render(&s, &state, None, &errors, "").await;
            *r.status_mut() = status;
            r
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/keys/{id}/revoke`.
pub(crate) async fn revoke(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    match state.control.revoke_key(&s.principal, &id).await {
        Ok(_) => s.cookies.apply(redirect("/ui/keys?revoked=1")),
        Err(e) => s.error(e.into()),
    }
}
