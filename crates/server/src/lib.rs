//! paddock-server: the control plane as a library.
//!
//! The management API ([`api`]) and the web pages ([`web`]) as thin
//! adapters over [`paddock_control`], the sectioned configuration
//! ([`config`]), `/metrics`, and [`serve`], which runs the whole HTTP
//! surface (management API, web UI, gateway, operations) on a listener
//! until a shutdown future completes. The binary and the tests call the
//! same function; the binary picks the backends, the tests pass their own
//! clock.

pub mod api;
pub mod config;
pub mod metrics;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod web;

use crate::config::Config;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use paddock_control::reconciler;
use paddock_control::{Backends, Control, Settings};
use paddock_core::driver::ComputeDriver;
use paddock_core::identity::Identity;
use paddock_core::models::ModelCache;
use paddock_core::store::Store;
use paddock_core::Clock;
use paddock_gateway::upstream::Pool;
use paddock_gateway::{fastpath, Gateway, GatewaySettings};
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
/// binary picked (`paddock`'s `backends.rs`), and the clock tests replace.
#[derive(Debug, Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub identity: Arc<dyn Identity>,
    pub driver: Arc<dyn ComputeDriver>,
    /// The host's model store the driver's model servers read (`None`
    /// where they read none: ECS).
    pub models: Option<Arc<dyn ModelCache>>,
    pub clock: Clock,
}

/// The control layer's settings from the configuration.
pub fn control_settings(config: &Config) -> Settings {
    Settings {
        public_url: config.public_url(),
        allow_signup: config.identity.allow_signup,
        local_cpu_hour_usd: config.driver.local_cpu_hour_usd,
        runtime_parallel: config.driver.runtime_parallel,
        queue_per_instance: u32::try_from(config.gateway.queue_per_instance).unwrap_or(u32::MAX),
        reconcile_interval_ms: config.reconciler.interval_ms,
        start_timeout_secs: config.reconciler.start_timeout_secs,
        wake_timeout_secs: config.reconciler.wake_timeout_secs,
        max_restarts: config.reconciler.max_restarts,
        restart_backoff_secs: config.reconciler.restart_backoff_secs,
        lease_secs: config.reconciler.lease_secs,
    }
}

/// The gateway's settings from the configuration.
pub fn gateway_settings(config: &Config) -> GatewaySettings {
    GatewaySettings {
        body_limit_bytes: config.gateway.body_limit_bytes,
        client_timeout_secs: config.gateway.client_timeout_secs,
        queue_per_instance: config.gateway.queue_per_instance,
        queue_timeout_secs: config.gateway.queue_timeout_secs,
        cache_affinity: config.gateway.cache_affinity,
    }
}

/// Builds the control layer and the gateway, seeds the catalog and makes
/// sure an admin exists.
pub async fn build(config: Config, services: Services) -> Result<(AppState, Gateway), ServerError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let pool = Pool::default();
    let control = Control::new(
        control_settings(&config),
        Backends {
            store: services.store,
            identity: services.identity,
            driver: services.driver,
            models: services.models,
            probe: Arc::new(pool.clone()),
            clock: services.clock,
        },
    );
    control.seed_catalog().await.map_err(bootstrap)?;
    let generated = control
        .ensure_admin(
            &config.identity.admin_email,
            config.identity.admin_password.as_ref().map(|p| p.expose()),
        )
        .await
        .map_err(bootstrap)?;
    if let Some(password) = generated {
        // Printed once, to the terminal only (not the log): the operator
        // needs it to sign in, and must change it then.
        eprintln!(
            "\n  paddock: created admin {} with temporary password: {password}\n  (it must be changed at first login; set PADDOCK_IDENTITY__ADMIN_PASSWORD to choose it)\n",
            config.identity.admin_email
        );
    }
    let gateway = Gateway::new(control.clone(), gateway_settings(&config), pool);
    Ok((AppState::new(config, control), gateway))
}

fn bootstrap(e: paddock_control::Error) -> ServerError {
    ServerError::Bootstrap(e.to_string())
}

/// The whole HTTP application: the management API, the web pages and the
/// gateway's routes (those the fast path hands over), with per-route
/// metrics.
pub fn app(state: AppState, gateway: Gateway) -> Router {
    let body_limit = state.config.gateway.body_limit_bytes;
    let control = state.control.clone();
    api::router()
        .merge(web::router())
        .with_state(state)
        .merge(paddock_gateway::routes::router().with_state(gateway))
        .route_layer(axum::middleware::from_fn_with_state(
            control,
            metrics::track,
        ))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
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
    let max_connections = fastpath::connection_limit(config.gateway.max_connections);
    let (state, gateway) = build(config, services).await?;
    let control = state.control.clone();
    tracing::info!(%addr, url = %control.settings.public_url, "paddock listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(reconciler::run(control.clone(), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    tracing::info!(max_connections, "serving connections");
    let app = app(state, gateway.clone());
    fastpath::serve_connections(listener, gateway, app, max_connections, shutdown).await;
    // The requests that finished are in the store before the process ends.
    control.usage.flush().await;
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    // With the loop stopped, nothing launches or records a crash while the
    // driver ends the model servers (or keeps them for the next start).
    reconciler::shutdown(&control).await;
    Ok(())
}
