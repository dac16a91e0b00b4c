//! [`AppState`]: what the management API's handlers and the web pages
//! reach, cloned cheaply per request: the control layer (every rule and
//! record goes through it), the gateway (for the connection settings it
//! shares with the management door) and the configuration (what pages
//! show: the public URL, session lifetimes).

use crate::config::Config;
use axum::extract::FromRef;
use paddock_control::Control;
use std::sync::Arc;

/// Shared state of the management API and the web pages.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub control: Control,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config, control: Control) -> Self {
        AppState(Arc::new(Inner { config, control }))
    }
}

impl FromRef<AppState> for Control {
    fn from_ref(s: &AppState) -> Control {
        s.control.clone()
    }
}
