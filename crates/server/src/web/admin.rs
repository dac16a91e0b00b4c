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
                @if let Some(h) = c["heading"].as_str() { h2 { (h) } }
                @else { h2 { "User " (c["email"].as_str().unwrap_or("")) " created" } }
                @if let Some(pw) = c["temporary_password"].as_str() {
                    p { "Temporary password (shown once; they must change it at their next login):" }
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
                                        @let email = u["email"].as_str().unwrap_or("");
                                        form method="post" action={ "/ui/admin/users/" (id) }
                                            data-confirm=[(!disabled).then(|| format!("Disable {email}? They are signed out and their keys stop working until you enable them again."))] {
                                            (csrf_field(&s.csrf))
                                            input type="hidden" name="disabled" value=(if disabled { "false" } else { "true" });
                                            button.btn.btn-sm.btn-danger-ghost[!disabled].btn-ghost[disabled] type="submit" data-test="user-disable" { (if disabled { "Enable" } else { "Disable" }) }
                                        }
                                        form method="post" action={ "/ui/admin/users/" (id) "/reset-password" }
                                            data-confirm=(format!("Reset {email}'s password? They are signed out and get a temporary password to change at their next login.")) {
                                            (csrf_field(&s.csrf))
                                            button.btn.btn-sm.btn-ghost type="submit" data-test="user-reset" { "Reset password" }
                                        }
                                        form method="post" action={ "/ui/admin/users/" (id) "/delete" }
                                            data-confirm=(format!("Delete {email}? Their instances are stopped and their API keys revoked; their usage stays in the records. This cannot be undone.")) {
                                            (csrf_field(&s.csrf))
                                            button.btn.btn-sm.btn-danger-ghost type="submit" data-test="user-delete" { "Delete" }
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
        Err(e) => users_failed(&s, &state, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/admin/users/{id}/reset-password`: a temporary password, shown once.
pub(crate) async fn users_reset_password(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    match admin.reset_password(&id).await {
        Ok((email, password)) => {
            let card = json!({"heading": format!("Password reset for {email}"), "temporary_password": password});
            users_render(&s, &state, Some(&card), &FormErrors::default(), "", "").await
        }
        Err(e) => users_failed(&s, &state, e).await,
    }
}

/// `POST /ui/admin/users/{id}/delete`.
pub(crate) async fn users_delete(
    s: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !s.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let Some(admin) = state.control.as_admin(&s.principal) else {
        return s.forbidden();
    };
    match admin.delete_user(&id).await {
        Ok(d) => {
            let notice = format!(
                "Deleted {}: {} instance(s) stopped, {} key(s) revoked; their usage stays in the records.",
                d.email, d.instances_stopped, d.keys_revoked
            );
            users_render(&s, &state, None, &FormErrors::default(), "", &notice).await
        }
        Err(e) => users_failed(&s, &state, e).await,
    }
}

/// The users page with an operation's error on it.
async fn users_failed(s: &Session, state: &AppState, e: paddock_control::Error) -> Response {
    let e = ApiError::from(e);
    let status = e.status();
    let mut r = users_render(s, state, None, &FormErrors::form(e.to_string()), "", "").await;
    *r.status_mut() = status;
    r
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
                            td.num data-label="Size" { (paddock_control::catalog::gigabytes(m.model_size_gb)) }
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
    #[serde(default = "instruct")]
    kind: String,
    is_active: Option<String>,
}

fn instruct() -> String {
    "instruct".into()
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
            kind: m.kind.as_str().to_owned(),
            is_active: m.is_active.then(|| "on".to_owned()),
        }
    }

    /// The JSON body `POST /api/models` takes; a number field that does not
    /// parse is named in the error.
    fn to_json(&self) -> Result<Value, FormErrors> {
        let mut errors = FormErrors::default();
        let mut num = |name: &str, v: &str| {
            let n = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0);
            if n.is_none() {
                errors.add(name, "must be a non-negative number");
            }
            n.unwrap_or(0.0)
        };
        let size = num("model_size_gb", &self.model_size_gb);
        let vcpu = num("cpu_vcpu", &self.cpu_vcpu);
        let memory = num("cpu_memory_mb", &self.cpu_memory_mb) as u64;
        let gpu_memory = num("gpu_memory_mb", &self.gpu_memory_mb) as u64;
        if !matches!(self.kind.as_str(), "base" | "instruct") {
            errors.add("kind", "must be base or instruct");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(json!({
            "model_id": self.model_id.trim(),
            "model_name": self.model_name.trim(),
            "model_family": self.model_family.trim(),
            "model_size_gb": size,
            "cpu_requirements": {"vcpu": vcpu, "memory_mb": memory},
            "gpu_requirements": {"gpu_memory_mb": gpu_memory, "gpu_type": if self.gpu_type.trim().is_empty() { "any" } else { self.gpu_type.trim() }},
            "description": self.description.trim(),
            "supported_tasks": self.supported_tasks.split(',').map(str::trim).filter(|t| !t.is_empty()).collect::<Vec<_>>(),
            "kind": self.kind,
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
    ("kind", "kind"),
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
            // The server checks every field and reports all that are wrong.
            form method="post" action=(action) data-busy novalidate {
                (csrf_field(&s.csrf))
                div.form-grid {
                    @if new {
                        (field(errors, "model_id", "Model id (Ollama tag)", "text", &f.model_id, "off", "e.g. llama3.2:3b", true))
                    } @else {
                        div.field { label { "Model id" } p.static-value { code { (f.model_id) } } input type="hidden" name="model_id" value=(f.model_id); }
                    }
                    (field(errors, "model_name", "Display name", "text", &f.model_name, "off", "", true))
                    (field(errors, "model_family", "Family", "text", &f.model_family, "off", "e.g. llama, gemma, qwen", true))
                    (field(errors, "model_size_gb", "Size (GB)", "number", &f.model_size_gb, "off", "", true))
                    (field(errors, "cpu_vcpu", "CPU: vCPUs", "number", &f.cpu_vcpu, "off", "", true))
                    (field(errors, "cpu_memory_mb", "CPU: memory (MiB)", "number", &f.cpu_memory_mb, "off", "", true))
                    (field(errors, "gpu_memory_mb", "GPU memory (MiB)", "number", &f.gpu_memory_mb, "off", "", true))
                    (field(errors, "gpu_type", "GPU type", "text", &f.gpu_type, "off", "`any`, or e.g. A10G", false))
                    (field(errors, "supported_tasks", "Tasks", "text", &f.supported_tasks, "off", "Comma-separated, e.g. chat, code", false))
                    div.field.has-error[errors.get("kind").is_some()] {
                        label for="f-kind" { "Kind" }
                        select id="f-kind" name="kind" data-test="model-kind" {
                            option value="instruct" selected[f.kind != "base"] { "Instruct (follows chat turns)" }
                            option value="base" selected[f.kind == "base"] { "Base (continues text; the playground opens in Complete mode)" }
                        }
                        @if let Some(m) = errors.get("kind") { p.field-error data-error-for="kind" { (super::layout::sentence(m)) } }
                    }
                }
                div.field.has-error[errors.get("description").is_some()] {
                    label for="f-description" { "Description" }
                    textarea id="f-description" name="description" rows="3" { (f.description) }
                    @if let Some(m) = errors.get("description") { p.field-error data-error-for="description" { (super::layout::sentence(m)) } }
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
            } else if matches!(e, ApiError::Fields(_)) {
                FormErrors::from_api(&e, MODEL_FIELDS)
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
