//! Administrator pages: users (create, disable/enable, promote/demote),
//! the catalog editor, and everyone's instances. Every page reaches these
//! only through [`paddock_control::Control::as_admin`], and every change
//! goes through the same admin operations as the `/api/users` and
//! `/api/models` routes, so the rules (no self-demotion, model
//! validation) are control's.

use super::layout::{
    banner_error, banner_ok, copyable, csrf_field, field, page_header, time_value as ts, FormErrors,
};
use super::session::{csrf_rejected, redirect, Session};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use paddock_control::users::{CreateUser, UpdateUser};
use paddock_core::catalog::Model;
use paddock_gateway::error::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Default)]
pub(crate) struct Notice {
    done: Option<String>,
}

fn users_body(
    s: &Session,
    list: &[Value],
    created: Option<&Value>,
    errors: &FormErrors,
    email: &str,
    notice: &str,
) -> Markup {
    html! {
        (page_header("Users", "Accounts on this server.", html!{}))
        (banner_ok(notice))
        @if let Some(c) = created {
            div.card.secret-card data-test="new-user" {
                h2 { "User " (c["email"].as_str().unwrap_or("")) " created" }
                @if let Some(pw) = c["temporary_password"].as_str() {
                    p { "Temporary password (shown once; they must change it at first login):" }
                    (copyable(pw, "copy-temp-password"))
                }
            }
        }
        section.card {
            h2 { "Create a user" }
            (banner_error(&errors.form))
            form.form-row method="post" action="/ui/admin/users" data-busy {
                (csrf_field(&s.csrf))
                (field(errors, "email", "Email", "email", email, "off", "", true))
                div.field {
                    label for="f-role" { "Role" }
                    select id="f-role" name="role" { option value="user" { "user" } option value="admin" { "admin" } }
                }
                div.field.field-action { button.btn.btn-primary type="submit" data-test="user-create" { "Create user" } }
            }
            p.hint { "A temporary password is generated; the user picks their own at first login." }
        }
        section.card.table-card {
            table.table.responsive data-test="users-table" {
                thead { tr { th { "Email" } th { "Role" } th { "Status" } th { "Created" } th {} } }
                tbody {
                    @for u in list {
                        @let id = u["user_id"].as_str().unwrap_or("");
                        @let admin = u["role"] == "admin";
                        @let disabled = u["disabled"] == true;
                        @let me = id == s.principal.user_id.as_str();
                        tr {
                            td data-label="Email" { strong { (u["email"].as_str().unwrap_or("")) } @if me { " " span.chip { "you" } } }
                            td data-label="Role" { span class={ "badge " (if admin { "badge-admin" } else { "badge-user" }) } { (u["role"].as_str().unwrap_or("")) } }
                            td data-label="Status" {
                                @if disabled { span.badge.badge-failed { "disabled" } }
                                @else if u["confirmed"] != true { span.badge.badge-pending { "unconfirmed" } }
                                @else if u["must_change_password"] == true { span.badge.badge-starting { "must set password" } }
                                @else { span.badge.badge-running { "active" } }
                            }
                            td data-label="Created" { (ts(&u["created_at"])) }
                            td.actions data-label="" {
                                @if !me {
                                    div.btn-row {
                                        form method="post" action={ "/ui/admin/users/" (id) } {
                                            (csrf_field(&s.csrf))
                                            input type="hidden" name="role" value=(if admin { "user" } else { "admin" });
                                            button.btn.btn-sm.btn-ghost type="submit" { (if admin { "Demote" } else { "Promote" }) }
                                        }
                                        form method="post" action={ "/ui/admin/users/" (id) } {
                                            (csrf_field(&s.csrf))
                                            input type="hidden" name="disabled" value=(if disabled { "false" } else { "true" });
                                            button.btn.btn-sm.btn-danger-ghost[!disabled].btn-ghost[disabled] type="submit" { (if disabled { "Enable" } else { "Disable" }) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn users_render(
    s: &Session,
    state: &AppState,
    created: Option<&Value>,
    errors: &FormErrors,
    email: &str,
    notice: &str,
) -> Response {
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    match admin.users().await {
        Ok(users) => {
            let list: Vec<Value> = users
                .iter()
                .filter_map(|u| serde_json::to_value(u).ok())
                .collect();
            s.page(
                "Users",
                "admin-users",
                users_body(s, &list, created, errors, email, notice),
            )
        }
        Err(e) => s.error(e.into()),
    }
}

/// `GET /ui/admin/users`.
pub(crate) async fn users_page(
    s: Session,
    State(state): State<AppState>,
    Query(n): Query<Notice>,
) -> Response {
    if state.control.as_admin(&s.principal).is_none() {
        return s.forbidden();
    }
    let notice = if n.done.is_some() {
        "User updated."
    } else {
        ""
    };
    users_render(&s, &state, None, &FormErrors::default(), "", notice).await
}

#[derive(Deserialize)]
pub(crate) struct CreateUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /ui/admin/users`.
pub(crate) async fn users_create(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CreateUserForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    let req = CreateUser {
        email: f.email.clone(),
        role: Some(f.role.clone()),
        temporary_password: None,
    };
    match admin.create_user(req).await {
        Ok(created) => {
            let v = serde_json::to_value(&created).unwrap_or_default();
            let mut r = users_render(&s, &state, Some(&v), &FormErrors::default(), "", "").await;
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            let status = e.status();
            let msg = if matches!(e, ApiError::Conflict(_)) {
                "email: an account with this email already exists".to_owned()
            } else {
                e.to_string()
            };
            let errors = FormErrors::from_message(&msg, &[("email", "email"), ("role", "email")]);
            let mut r = users_render(&s, &state, None, &errors, &f.email, "").await;
            *r.status_mut() = status;
            r
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct UpdateUserForm {
    #[serde(default)]
    csrf: String,
    role: Option<String>,
    disabled: Option<String>,
}

/// `POST /ui/admin/users/{id}`: promote/demote or disable/enable.
pub(crate) async fn users_update(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<UpdateUserForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    let req = UpdateUser {
        role: f.role,
        disabled: f.disabled.map(|d| d == "true"),
    };
    match admin.update_user(&id, req).await {
        Ok(_) => s.cookies.apply(redirect("/ui/admin/users?done=1")),
        Err(e) => {
            let e = ApiError::from(e);
            let status = e.status();
            let mut r =
                users_render(&s, &state, None, &FormErrors::form(e.to_string()), "", "").await;
            *r.status_mut() = status;
            r
        }
    }
}

/// `GET /ui/admin/models`: the catalog, inactive models included.
pub(crate) async fn models_page(
    s: Session,
    State(state): State<AppState>,
    Query(n): Query<Notice>,
) -> Response {
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    let mut models: Vec<Model> = match admin.all_models().await {
        Ok(m) => m.into_iter().map(|v| v.model).collect(),
        Err(e) => return s.error(e.into()),
    };
    models.sort_by(|a, b| {
        (a.model_family.as_str(), a.model_id.as_str())
            .cmp(&(b.model_family.as_str(), b.model_id.as_str()))
    });
    let notice = if n.done.is_some() {
        "Catalog updated."
    } else {
        ""
    };
    let body = html! {
        (page_header("Catalog", "Models users can deploy. Inactive models are hidden from them.", html! {
            a.btn.btn-primary href="/ui/admin/models/new" data-test="model-new" { "+ Add model" }
        }))
        (banner_ok(notice))
        section.card.table-card {
            table.table.responsive data-test="catalog-table" {
                thead { tr { th { "Model" } th { "Family" } th.num { "Size" } th.num { "CPU memory" } th.num { "GPU memory" } th { "Status" } th {} } }
                tbody {
                    @for m in &models {
                        tr {
                            td data-label="Model" { strong { (m.model_name) } div.muted.small { code { (m.model_id) } } }
                            td data-label="Family" { (m.model_family) }
                            td.num data-label="Size" { (format!("{:.1} GB", m.model_size_gb)) }
                            td.num data-label="CPU memory" { (super::layout::mem(m.cpu_requirements.memory_mb)) }
                            td.num data-label="GPU memory" { (super::layout::mem(m.gpu_requirements.gpu_memory_mb)) }
                            td data-label="Status" { @if m.is_active { span.badge.badge-running { "active" } } @else { span.badge.badge-stopped { "inactive" } } }
                            td.actions data-label="" {
                                div.btn-row {
                                    a.btn.btn-sm.btn-ghost href={ "/ui/admin/models/" (m.model_id) } { "Edit" }
                                    form method="post" action={ "/ui/admin/models/" (m.model_id) "/active" } {
                                        (csrf_field(&s.csrf))
                                        input type="hidden" name="active" value=(if m.is_active { "false" } else { "true" });
                                        button.btn.btn-sm.btn-ghost type="submit" { (if m.is_active { "Deactivate" } else { "Activate" }) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    s.page("Catalog", "admin-models", body)
}

/// The editable fields of a catalog entry, as the form posts them.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct ModelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    model_id: String,
    #[serde(default)]
    model_name: String,
    #[serde(default)]
    model_family: String,
    #[serde(default)]
    model_size_gb: String,
    #[serde(default)]
    cpu_vcpu: String,
    #[serde(default)]
    cpu_memory_mb: String,
    #[serde(default)]
    gpu_memory_mb: String,
    #[serde(default)]
    gpu_type: String,
    #[serde(default)]
    supported_tasks: String,
    #[serde(default)]
    description: String,
    is_active: Option<String>,
}

impl ModelForm {
    fn from_model(m: &Model) -> Self {
        ModelForm {
            csrf: String::new(),
            model_id: m.model_id.as_str().to_owned(),
            model_name: m.model_name.clone(),
            model_family: m.model_family.clone(),
            model_size_gb: m.model_size_gb.to_string(),
            cpu_vcpu: m.cpu_requirements.vcpu.to_string(),
            cpu_memory_mb: m.cpu_requirements.memory_mb.to_string(),
            gpu_memory_mb: m.gpu_requirements.gpu_memory_mb.to_string(),
            gpu_type: m.gpu_requirements.gpu_type.clone(),
            supported_tasks: m.supported_tasks.join(", "),
            description: m.description.clone(),
            is_active: m.is_active.then(|| "on".to_owned()),
        }
    }

    /// The JSON body `POST /api/models` takes; a number field that does not
    /// parse is named in the error.
    fn to_json(&self) -> Result<Value, FormErrors> {
        fn num(name: &str, v: &str) -> Result<f64, FormErrors> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| FormErrors::field(name, "must be a non-negative number"))
        }
        Ok(json!({
            "model_id": self.model_id.trim(),
            "model_name": self.model_name.trim(),
            "model_family": self.model_family.trim(),
            "model_size_gb": num("model_size_gb", &self.model_size_gb)?,
            "cpu_requirements": {"vcpu": num("cpu_vcpu", &self.cpu_vcpu)?, "memory_mb": num("cpu_memory_mb", &self.cpu_memory_mb)? as u64},
            "gpu_requirements": {"gpu_memory_mb": num("gpu_memory_mb", &self.gpu_memory_mb)? as u64, "gpu_type": if self.gpu_type.trim().is_empty() { "any" } else { self.gpu_type.trim() }},
            "description": self.description.trim(),
            "supported_tasks": self.supported_tasks.split(',').map(str::trim).filter(|t| !t.is_empty()).collect::<Vec<_>>(),
            "is_active": self.is_active.is_some(),
        }))
    }
}

const MODEL_FIELDS: &[(&str, &str)] = &[
    ("model_id", "model_id"),
    ("model_name", "model_name"),
    ("model_family", "model_family"),
    ("model_size_gb", "model_size_gb"),
    ("cpu_requirements.vcpu", "cpu_vcpu"),
    ("cpu_requirements.memory_mb", "cpu_memory_mb"),
    ("gpu_requirements.gpu_memory_mb", "gpu_memory_mb"),
    ("gpu_requirements.gpu_type", "gpu_type"),
    ("supported_tasks", "supported_tasks"),
    ("description", "description"),
];

fn model_form(s: &Session, f: &ModelForm, new: bool, errors: &FormErrors) -> Markup {
    let action = if new {
        "/ui/admin/models/new".to_owned()
    } else {
        format!("/ui/admin/models/{}", f.model_id)
    };
    html! {
        nav.crumbs { a href="/ui/admin/models" { "Catalog" } " / " span { (if new { "New model" } else { f.model_id.as_str() }) } }
        (page_header(if new { "Add a model" } else { "Edit model" }, "", html!{}))
        section.card.form-card {
            (banner_error(&errors.form))
            form method="post" action=(action) data-busy {
                (csrf_field(&s.csrf))
                div.form-grid {
                    @if new {
                        (field(errors, "model_id", "Model id (Ollama tag)", "text", &f.model_id, "off", "e.g. llama3.2:3b", true))
                    } @else {
                        div.field { label { "Model id" } p.static-value { code { (f.model_id) } } input type="hidden" name="model_id" value=(f.model_id); }
                    }
                    (field(errors, "model_name", "Display name", "text", &f.model_name, "off", "", true))
                    (field(errors, "model_family", "Family", "text", &f.model_family, "off", "e.g. llama, gemma, qwen", true))
                    (field(errors, "model_size_gb", "Size (GB)", "text", &f.model_size_gb, "off", "", true))
                    (field(errors, "cpu_vcpu", "CPU: vCPUs", "text", &f.cpu_vcpu, "off", "", true))
                    (field(errors, "cpu_memory_mb", "CPU: memory (MiB)", "text", &f.cpu_memory_mb, "off", "", true))
                    (field(errors, "gpu_memory_mb", "GPU memory (MiB)", "text", &f.gpu_memory_mb, "off", "", true))
                    (field(errors, "gpu_type", "GPU type", "text", &f.gpu_type, "off", "`any`, or e.g. A10G", false))
                    (field(errors, "supported_tasks", "Tasks", "text", &f.supported_tasks, "off", "Comma-separated, e.g. chat, code", false))
                }
                div.field.has-error[errors.get("description").is_some()] {
                    label for="f-description" { "Description" }
                    textarea id="f-description" name="description" rows="3" { (f.description) }
                    @if let Some(m) = errors.get("description") { p.field-error { (m) } }
                }
                label.check { input type="checkbox" name="is_active" checked[f.is_active.is_some()]; " Active (users can deploy it)" }
                div.dialog-actions {
                    a.btn.btn-ghost href="/ui/admin/models" { "Cancel" }
                    button.btn.btn-primary type="submit" data-test="model-save" { (if new { "Add model" } else { "Save changes" }) }
                }
            }
        }
    }
}

/// `GET /ui/admin/models/new`.
pub(crate) async fn model_new_page(s: Session, State(state): State<AppState>) -> Response {
    if state.control.as_admin(&s.principal).is_none() {
        return s.forbidden();
    }
    let f = ModelForm {
        gpu_type: "any".into(),
        supported_tasks: "chat".into(),
        is_active: Some("on".into()),
        ..ModelForm::default()
    };
    s.page(
        "Add a model",
        "admin-models",
        model_form(&s, &f, true, &FormErrors::default()),
    )
}

/// `GET /ui/admin/models/{id}`.
pub(crate) async fn model_edit_page(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    if state.control.as_admin(&s.principal).is_none() {
        return s.forbidden();
    }
    match state.control.model(&s.principal, &id).await {
        Ok(m) => s.page(
            "Edit model",
            "admin-models",
            model_form(
                &s,
                &ModelForm::from_model(&m.model),
                false,
                &FormErrors::default(),
            ),
        ),
        Err(paddock_control::Error::NotFound(_)) => s.error(ApiError::not_found(format!(
            "model {id} is not in the catalog"
        ))),
        Err(e) => s.error(e.into()),
    }
}

async fn save_model(
    s: Session,
    state: AppState,
    headers: HeaderMap,
    f: ModelForm,
    existing: Option<String>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    let new = existing.is_none();
    let fail = |errors: FormErrors, status: StatusCode| {
        let mut r = s.page(
            "Edit model",
            "admin-models",
            model_form(&s, &f, new, &errors),
        );
        *r.status_mut() = status;
        r
    };
    let body = match f.to_json() {
        Ok(b) => b,
        Err(errors) => return fail(errors, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let result = match existing {
        None => admin.create_model(body).await.map(|_| ()),
        Some(id) => admin.update_model(&id, body).await.map(|_| ()),
    };
    match result {
        Ok(()) => s.cookies.apply(redirect("/ui/admin/models?done=1")),
        Err(e) => {
            let e = ApiError::from(e);
            let msg = e.to_string();
            let msg = msg.strip_prefix("model: ").unwrap_or(&msg).to_owned();
            let errors = if matches!(e, ApiError::Conflict(_)) {
                FormErrors::field("model_id", "a model with this id already exists")
            } else {
                FormErrors::from_message(&msg, MODEL_FIELDS)
            };
            fail(errors, e.status())
        }
    }
}

/// `POST /ui/admin/models/new`.
pub(crate) async fn model_create(
    s: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ModelForm>,
) -> Response {
    save_model(s, state, headers, f, None).await
}

/// `POST /ui/admin/models/{id}`.
pub(crate) async fn model_update(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ModelForm>,
) -> Response {
    save_model(s, state, headers, f, Some(id)).await
}

#[derive(Deserialize)]
pub(crate) struct ActiveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    active: String,
}

/// `POST /ui/admin/models/{id}/active`.
pub(crate) async fn model_active(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ActiveForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    let body = json!({"is_active": f.active == "true"});
    match admin.update_model(&id, body).await {
        Ok(_) => s.cookies.apply(redirect("/ui/admin/models?done=1")),
        Err(e) => s.error(e.into()),
    }
}

/// `GET /ui/admin/instances`.
pub(crate) async fn instances_page(s: Session, State(state): State<AppState>) -> Response {
    if state.control.as_admin(&s.principal).is_none() {
        return s.forbidden();
    }
    super::instances::table_page(s, state, true).await
}
