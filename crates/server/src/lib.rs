//! paddock-server: the control plane as a library.
//!
//! [`serve`] runs the whole HTTP surface (management API, gateway,
//! operations) on a listener until a shutdown future completes. The binary
//! and the tests call the same function; the binary picks the store and
//! identity backends, the tests pass their own clock and mailer.

pub mod activity;
pub mod api;
pub mod auth;
pub mod cache;
pub mod client_io;
pub mod clock;
pub mod config;
pub mod error;
pub mod fastpath;
pub mod gateway;
pub mod mailer;
pub mod metrics;
pub mod reconciler;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod upstream;
pub mod usage;
pub mod web;

use crate::activity::{Activity, Queueing};
use crate::auth::builtin::{BuiltinIdentity, BuiltinSettings};
use crate::auth::secrets;
use crate::cache::Caches;
use crate::clock::Clock;
use crate::config::Config;
use crate::mailer::{LogMailer, Mailer};
use crate::metrics::Metrics;
use crate::reconciler::ReconcilerHandle;
use crate::state::{AppState, Inner};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use paddock_core::catalog::default_catalog;
use paddock_core::compute::ComputeTable;
use paddock_core::driver::ComputeDriver;
use paddock_core::identity::{Identity, IdentityError};
use paddock_core::store::{Store, StoreError};
use paddock_core::user::Role;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] paddock_core::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("first admin: {0}")]
    Bootstrap(String),
}

/// What the server is built from besides its config: the backends the
/// binary picked, and the clock and mailer that tests replace.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub driver: Arc<dyn ComputeDriver>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Clock,
}

impl Services {
    /// The system clock and the log mailer.
    pub fn new(store: Arc<dyn Store>, driver: Arc<dyn ComputeDriver>) -> Self {
        Services {
            store,
            driver,
            mailer: Arc::new(LogMailer),
            clock: Clock::system(),
        }
    }
}

/// Builds the application state: loads the signing key, seeds the catalog
/// and makes sure an admin exists.
pub async fn build_state(config: Config, services: Services) -> Result<AppState, ServerError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let key = secrets::load_or_create_key(&config.data_dir.join("secrets").join("jwt.key"))?;
    let identity: Arc<dyn Identity> = Arc::new(BuiltinIdentity::new(
        services.store.clone(),
        services.mailer.clone(),
        services.clock.clone(),
        &key,
        BuiltinSettings {
            access_ttl_secs: config.access_token_ttl_secs,
            refresh_ttl_secs: config.refresh_token_ttl_secs,
            confirmation_ttl_secs: config.confirmation_ttl_secs,
            login_max_failures: config.login_max_failures,
            login_lockout_secs: config.login_lockout_secs,
        },
    ));
    let store = services.store;
    let queueing = Queueing {
        sequences: config.runtime_parallel as usize,
        max_waiting: u32::try_from(config.queue_per_instance).unwrap_or(u32::MAX),
    };
    let state = AppState::new(Inner {
        config,
        store: store.clone(),
        identity,
        compute: ComputeTable::builtin(),
        activity: Activity::with_queueing(services.clock.clone(), queueing),
        clock: services.clock,
        reconciler: ReconcilerHandle::default(),
        driver: services.driver,
        metrics: Metrics::default(),
        caches: Caches::default(),
        upstream: upstream::Pool::default(),
        usage: usage::UsageWriter::spawn(store.clone()),
    });
    seed_catalog(&state).await?;
    ensure_admin(&state).await?;
    Ok(state)
}

/// Loads the shipped catalog, adding only models the store lacks, so admin
/// edits survive restarts and nothing is duplicated.
pub async fn seed_catalog(state: &AppState) -> Result<usize, ServerError> {
    let mut added = 0;
    for m in default_catalog() {
        if state.store.insert_model_if_absent(&m).await? {
            added += 1;
        }
    }
    if added > 0 {
        tracing::info!(added, "catalog loaded");
    }
    Ok(added)
}

/// Creates the first admin when there is none.
async fn ensure_admin(state: &AppState) -> Result<(), ServerError> {
    let users = state.store.list_users().await?;
    if users.iter().any(|u| u.role == Role::Admin) {
        return Ok(());
    }
    let email = state.config.admin_email.clone();
    let (password, generated) = match &state.config.admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (secrets::generated_password(), true),
    };
    match state
        .identity
        .admin_create_user(&email, &password, Role::Admin, generated)
        .await
    {
        Ok(user) => {
            tracing::info!(user = %user.user_id, email = %user.email, "first admin created");
            if generated {
                // Printed once, to the terminal only (not the log): the
                // operator needs it to sign in, and must change it then.
                eprintln!(
                    "\n  paddock: created admin {email} with temporary password: {password}\n  (it must be changed at first login; set PADDOCK_ADMIN_PASSWORD to choose it)\n"
                );
            }
            Ok(())
        }
        Err(IdentityError::AlreadyExists) => {
            // The address exists as a plain user: promote it, reading it
            // again if another write lands first.
            let email = email.to_lowercase();
            for retry in 0.. {
                let Some(mut u) = state.store.get_user_by_email(&email).await? else {
                    break;
                };
                u.role = Role::Admin;
                match state.store.update_user(&u).await {
                    Ok(u) => {
                        tracing::info!(user = %u.user_id, "existing user promoted to first admin");
                        break;
                    }
                    Err(StoreError::Stale(_)) if retry < 5 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(ServerError::Bootstrap(e.to_string())),
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    api::router()
        .merge(gateway::router())
        .merge(web::router())
        .route("/metrics", axum::routing::get(metrics::render))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .with_state(state)
}

/// Runs paddock on `listener` until `shutdown` completes, then drains
/// in-flight requests, stops the reconciler, and has the driver end the
/// instances' model servers or keep them for the next start
/// ([`reconciler::shutdown`]).
pub async fn serve(
    mut config: Config,
    services: Services,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    if config.public_url.is_none() {
        // The bound address, not the configured one (which may say port 0).
        config.public_url = Some(format!("http://{addr}"));
    }
    let state = build_state(config, services).await?;
    tracing::info!(%addr, url = %state.config.public_url(), "paddock listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(reconciler::run(state.clone(), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    let max_connections = fastpath::connection_limit(state.config.max_connections);
    tracing::info!(max_connections, "serving connections");
    fastpath::serve_connections(
        listener,
        state.clone(),
        app(state.clone()),
        max_connections,
        shutdown,
    )
    .await;
    // The requests that finished are in the store before the process ends.
    state.usage.flush().await;
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    // With the loop stopped, nothing launches or records a crash while the
    // driver ends the model servers (or keeps them for the next start).
    reconciler::shutdown(&state).await;
    Ok(())
}
