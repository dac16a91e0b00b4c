//! The page shell and the small pieces every page is built from: the
//! sidebar navigation, form fields with their errors, status badges, and
//! number formatting. Pages themselves live in the sibling modules.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use paddock_core::user::Principal;

/// The version string appended to asset URLs so browsers refetch them after
/// an upgrade (assets are cached for a day).
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

fn head(title: &str, csrf: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="csrf-token" content=(csrf);
            title { (title) " · paddock" }
            link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='8' fill='%234f46e5'/%3E%3Cpath d='M10 23V9h7a5 5 0 010 10h-7' stroke='white' stroke-width='3' fill='none'/%3E%3C/svg%3E";
            link rel="stylesheet" href={ "/ui/static/app.css?v=" (ASSET_VERSION) };
            script src={ "/ui/static/app.js?v=" (ASSET_VERSION) } defer {}
        }
    }
}

fn logo() -> Markup {
    html! {
        span.logo-mark aria-hidden="true" { "p" }
        span.logo-text { "paddock" }
    }
}

/// A page for signed-out visitors: a centred card.
pub fn bare(title: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, csrf))
            body.bare {
                main.auth-wrap {
                    a.brand.auth-brand href="/ui/login" { (logo()) }
                    (body)
                    p.auth-foot { "Self-hosted LLM instances · Ollama & OpenAI compatible" }
                }
            }
        }
    }
}

const NAV: &[(&str, &str, &str)] = &[
    ("instances", "/ui/instances", "Instances"),
    ("models", "/ui/models", "Models"),
    ("chat", "/ui/chat", "Chat"),
    ("keys", "/ui/keys", "API keys"),
    ("usage", "/ui/usage", "Usage"),
];

const ADMIN_NAV: &[(&str, &str, &str)] = &[
    ("admin-users", "/ui/admin/users", "Users"),
    ("admin-models", "/ui/admin/models", "Catalog"),
    ("admin-instances", "/ui/admin/instances", "All instances"),
];

fn icon(name: &str) -> Markup {
    let path = match name {
        "instances" => "M4 6h16v5H4zM4 13h16v5H4zM7 8.5h.01M7 15.5h.01",
        "models" => "M12 3l8 4.5v9L12 21l-8-4.5v-9zM12 12l8-4.5M12 12v9M12 12L4 7.5",
        "chat" => "M4 5h16v11H9l-5 4z",
        "keys" => "M14 10a4 4 0 11-8 0 4 4 0 018 0zM13 12l7 7M17 16l2-2",
        "usage" => "M4 20V10M10 20V4M16 20v-7M22 20H2",
        "admin-users" => "M16 11a4 4 0 10-8 0 4 4 0 008 0zM4 21a8 8 0 0116 0",
        "admin-models" => "M4 4h16v16H4zM4 9h16M9 9v11",
        _ => "M3 5h18M3 12h18M3 19h18",
    };
    html! {
        svg.icon viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" {
            path d=(path) {}
        }
    }
}

/// A page inside the signed-in shell with the sidebar.
pub fn shell(title: &str, active: &str, p: &Principal, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, csrf))
            body {
                div.app {
                    header.topbar {
                        a.brand href="/ui/instances" { (logo()) }
                        button.nav-toggle type="button" aria-label="Menu" data-nav-toggle { (icon("menu")) }
                    }
                    nav.sidebar id="sidebar" {
                        a.brand.side-brand href="/ui/instances" { (logo()) }
                        ul.nav {
                            @for (key, href, label) in NAV {
                                li { a.active[*key == active] href=(href) { (icon(key)) span { (label) } } }
                            }
                        }
                        @if p.is_admin() {
                            p.nav-section { "Admin" }
                            ul.nav {
                                @for (key, href, label) in ADMIN_NAV {
                                    li { a.active[*key == active] href=(href) { (icon(key)) span { (label) } } }
                                }
                            }
                        }
                        div.side-foot {
                            div.whoami {
                                span.avatar { (p.email.chars().next().unwrap_or('?').to_ascii_uppercase()) }
                                span.who-text {
                                    span.who-email title=(p.email) { (p.email) }
                                    span.who-role { (p.role.as_str()) }
                                }
                            }
                            form method="post" action="/ui/logout" {
                                (csrf_field(csrf))
                                button.btn.btn-ghost.btn-sm.w-full type="submit" data-test="logout" { "Log out" }
                            }
                        }
                    }
                    main.content {
                        div id="toast" role="status" aria-live="polite" {}
                        (body)
                    }
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A page title with an optional subtitle and actions on the right.
pub fn page_header(title: &str, subtitle: &str, actions: Markup) -> Markup {
    html! {
        div.page-header {
            div {
                h1 { (title) }
                @if !subtitle.is_empty() { p.muted { (subtitle) } }
            }
            div.page-actions { (actions) }
        }
    }
}

/// A friendly message where a list is empty or a page cannot be shown.
pub fn empty_state(title: &str, text: &str) -> Markup {
    html! {
        div.card.empty {
            h2 { (title) }
            p.muted { (text) }
        }
    }
}

/// An error banner (nothing when `msg` is empty).
pub fn banner_error(msg: &str) -> Markup {
    html! {
        @if !msg.is_empty() {
            div.banner.banner-error role="alert" { (sentence(msg)) }
        }
    }
}

/// An error message as the UI shows every one: a capital first letter, no
/// closing period (`"must be positive."` → `"Must be positive"`).
pub fn sentence(msg: &str) -> String {
    let msg = msg.trim();
    let msg = msg.strip_suffix('.').unwrap_or(msg);
    let mut chars = msg.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A success/info banner (nothing when `msg` is empty).
pub fn banner_ok(msg: &str) -> Markup {
    html! {
        @if !msg.is_empty() {
            div.banner.banner-ok role="status" { (msg) }
        }
    }
}

/// Errors of a form: per field, and one for the form as a whole.
#[derive(Debug, Default, Clone)]
pub struct FormErrors {
    pub fields: Vec<(String, String)>,
    pub form: String,
}

impl FormErrors {
    /// Files an error message: `field: message` goes next to `field` when it
    /// is one of `known` (aliases map API field names onto form fields),
    /// anything else goes on the form.
    pub fn from_message(msg: &str, known: &[(&str, &str)]) -> Self {
        let mut e = FormErrors::default();
        if let Some((field, rest)) = msg.split_once(": ") {
            if let Some((_, form_field)) = known.iter().find(|(api, _)| *api == field.trim()) {
                e.fields.push(((*form_field).to_owned(), rest.to_owned()));
                return e;
            }
        }
        e.form = msg.to_owned();
        e
    }

    /// One field's error.
    pub fn field(field: &str, msg: &str) -> Self {
        FormErrors {
            fields: vec![(field.to_owned(), msg.to_owned())],
            form: String::new(),
        }
    }

    /// The form-level error.
    pub fn form(msg: impl Into<String>) -> Self {
        FormErrors {
            fields: vec![],
            form: msg.into(),
        }
    }

    /// Files each message of an error answer as [`FormErrors::from_message`]
    /// does, so that every invalid field shows at once.
    pub fn from_api(e: &paddock_gateway::error::ApiError, known: &[(&str, &str)]) -> Self {
        let list = match e {
            paddock_gateway::error::ApiError::Fields(list) => list.clone(),
            other => vec![paddock_control::error::FieldError::from_message(
                &other.to_string(),
            )],
        };
        let mut out = FormErrors::default();
        for f in list {
            let msg = match &f.field {
                Some(field) => format!("{field}: {}", f.message),
                None => f.message.clone(),
            };
            let one = FormErrors::from_message(&msg, known);
            out.fields.extend(one.fields);
            if !one.form.is_empty() {
                if !out.form.is_empty() {
                    out.form.push_str("; ");
                }
                out.form.push_str(&one.form);
            }
        }
        out
    }

    /// Adds `field`'s error (after any it has).
    pub fn add(&mut self, field: &str, msg: &str) {
        self.fields.push((field.to_owned(), msg.to_owned()));
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    /// The error for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, m)| m.as_str())
    }
}

/// One labelled input with its error underneath.
#[allow(clippy::too_many_arguments)]
pub fn field(
    errors: &FormErrors,
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    autocomplete: &str,
    hint: &str,
    required: bool,
) -> Markup {
    let err = errors.get(name);
    let id = format!("f-{name}");
    html! {
        div.field.has-error[err.is_some()] {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value) autocomplete=(autocomplete)
                step=[(kind == "number").then_some("any")] min=[(kind == "number").then_some("0")]
                inputmode=[(kind == "number").then_some("decimal")]
                required[required] aria-invalid=[err.map(|_| "true")]
                aria-describedby=[err.map(|_| format!("{id}-err"))];
            @if let Some(m) = err {
                p.field-error id={ (id) "-err" } data-error-for=(name) { (sentence(m)) }
            } @else if !hint.is_empty() {
                p.hint { (hint) }
            }
        }
    }
}

/// A status badge colored by instance state.
pub fn status_badge(status: &str) -> Markup {
    badge(&status.to_ascii_lowercase(), status)
}

fn badge(class: &str, label: &str) -> Markup {
    html! {
        span class={ "badge badge-" (class) } data-f="status" { (label) }
    }
}

/// An instance view's status badge: its `status_label` (a failed instance
/// that will be restarted reads `restarting (N of M)`, styled as starting;
/// one whose model downloads, `pulling N%`).
pub fn instance_badge(v: &serde_json::Value) -> Markup {
    let status = v["status"].as_str().unwrap_or("");
    let label = v["status_label"].as_str().unwrap_or(status);
    if label.starts_with("restarting") {
        badge("restarting", label)
    } else {
        badge(&status.to_ascii_lowercase(), label)
    }
}

/// A model download's progress under an instance's status (a bar and its
/// bytes), hidden unless the view has one; the page script keeps it
/// current.
pub fn pull_progress(v: &serde_json::Value) -> Markup {
    let pull = &v["pull"];
    let done = pull["completed_bytes"].as_u64().unwrap_or(0);
    let total = pull["total_bytes"].as_u64().unwrap_or(0);
    html! {
        div.pull data-f="pull" hidden[total == 0] {
            progress max=(total.max(1)) value=(done) aria-label="Model download" {}
            span.muted.small data-f="pull-bytes" { (bytes(done)) " of " (bytes(total)) }
        }
    }
}

/// A byte count as `253.1 MB` or `4.70 GB`.
pub fn bytes(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} GB", n as f64 / 1e9)
    } else {
        format!("{:.1} MB", n as f64 / 1e6)
    }
}

/// `1h 02m`, `3m 05s`, `12s`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h >= 24 {
        format!("{}d {:02}h", h / 24, h % 24)
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `$0.0123` for small amounts, `$1.23` otherwise.
pub fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0.00".into()
    } else if x.abs() < 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// Memory in MiB as `512 MB` or `16 GB`.
pub fn mem(mb: u32) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{} GB", mb / 1024)
    } else if mb >= 1024 {
        format!("{:.1} GB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MB")
    }
}

/// A timestamp as `2026-11-27 14:03 UTC`, in a `<time>` element the
/// script turns into local time.
pub fn time(t: &paddock_core::Timestamp) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC").to_string()) }
    }
}

/// [`time`] to the second, for state histories (a start takes seconds).
pub fn time_precise(t: &paddock_core::Timestamp) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) data-precise { (t.format("%Y-%m-%d %H:%M:%S UTC").to_string()) }
    }
}

/// A JSON timestamp (RFC 3339 string) as [`time`], or a dash when absent.
pub fn time_value(v: &serde_json::Value) -> Markup {
    match v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => time(&t.with_timezone(&chrono::Utc)),
        None => html! { span.muted { "–" } },
    }
}

/// A value with a copy button.
pub fn copyable(value: &str, test: &str) -> Markup {
    html! {
        span.copyable {
            code data-copy-src title=(value) { (value) }
            button.btn.btn-ghost.btn-xs type="button" data-copy=(value) data-test=(test) title="Copy" { "Copy" }
        }
    }
}

/// Inline SVG spinner used on busy buttons.
pub fn spinner() -> Markup {
    html! { span.spinner aria-hidden="true" {} }
}

/// Serializes `v` for a `<script type="application/json">` block.
pub fn json_script(id: &str, v: &serde_json::Value) -> Markup {
    let text = v.to_string().replace("</", "<\\/");
    html! { script type="application/json" id=(id) { (PreEscaped(text)) } }
}
