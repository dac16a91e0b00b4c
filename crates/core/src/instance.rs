//! Instances and their state machine.
//!
//! ```text
//! PENDING -> STARTING -> RUNNING -> STOPPING -> STOPPED
//!    |          |           |  \
//!    v          v           v   -> SLEEPING (idle; wakes on request) -> STARTING
//! PULLING     FAILED      FAILED
//!    |
//!    +-> STARTING (or FAILED)
//! ```
//!
//! An instance whose model is not on the host yet is PULLING while the
//! control plane downloads it (from PENDING, or from SLEEPING or FAILED
//! when a wake or a restart finds the model gone), then launches.
//!
//! A STARTING or RUNNING instance goes back to PENDING when paddock stops
//! gracefully and ends its model server; the next start launches it again.
//!
//! Owns the [`Instance`] record, the legal transitions ([`InstanceState::can_go_to`])
//! and the [`Transition`] history entries. The store persists them; the
//! reconciler decides when to move.

use crate::compute::ComputeSpec;
use crate::driver::Handle;
use crate::{InstanceId, ModelId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Recorded, not launched yet (or not again: paddock stopped and
    /// ended its model server; the next start launches it).
    Pending,
    /// Its model is being downloaded to the host; it launches when the
    /// download is complete. No compute is held (nor billed) meanwhile.
    Pulling,
    /// Launched; waiting for the health probe.
    Starting,
    /// Healthy and serving.
    Running,
    /// Idle: compute released, record kept; the next request wakes it.
    Sleeping,
    /// Being shut down.
    Stopping,
    /// Shut down by request; can be deleted.
    Stopped,
    /// Could not start or died; the reason is in the history.
    Failed,
}

impl InstanceState {
    /// Every state, in lifecycle order.
    pub const ALL: [InstanceState; 8] = [
        InstanceState::Pending,
        InstanceState::Pulling,
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Sleeping,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Failed,
    ];

    /// The wire name (`RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "PENDING",
            InstanceState::Pulling => "PULLING",
            InstanceState::Starting => "STARTING",
            InstanceState::Running => "RUNNING",
            InstanceState::Sleeping => "SLEEPING",
            InstanceState::Stopping => "STOPPING",
            InstanceState::Stopped => "STOPPED",
            InstanceState::Failed => "FAILED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_go_to(self, to: InstanceState) -> bool {
        use InstanceState::*;
        matches!(
            (self, to),
            (Pending, Pulling | Starting | Stopping | Stopped | Failed)
                // Downloaded and launched, or the download failed, or it
                // was stopped before the download finished.
                | (Pulling, Starting | Failed | Stopped)
                // A launch (a first one, a wake, a restart) finds the
                // model missing from the host and downloads it first.
                | (Starting | Sleeping | Failed, Pulling)
                // Back to PENDING: paddock stopped and ended the model server.
                | (Starting, Running | Failed | Stopping | Pending)
                | (Running, Stopping | Sleeping | Failed | Pending)
                // Or FAILED: a wake whose launch failed.
                | (Sleeping, Starting | Stopping | Stopped | Failed)
                | (Stopping, Stopped | Failed)
                // A failed instance is restarted (with backoff) or stopped;
                // a restart whose launch fails is a new failure, counted.
                | (Failed, Starting | Stopping | Stopped | Failed)
                // A user starts it again: the reconciler launches it anew.
                | (Stopped | Sleeping | Failed, Pending)
        )
    }

    /// States in which compute may be held and must be released on stop.
    pub fn holds_compute(self) -> bool {
        matches!(
            self,
            InstanceState::Starting | InstanceState::Running | InstanceState::Stopping
        )
    }

    /// States from which nothing further happens unless a user asks.
    pub fn is_terminal(self) -> bool {
        matches!(self, InstanceState::Stopped)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for; the reconciler makes the observed state follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredState {
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "RUNNING",
            DesiredState::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RUNNING" => Some(DesiredState::Running),
            "STOPPED" => Some(DesiredState::Stopped),
            _ => None,
        }
    }
}

/// A deployed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: InstanceId,
    pub user_id: UserId,
    /// The catalog model (Ollama tag) it serves.
    pub model_id: ModelId,
    /// The catalog's human name at deploy time.
    pub model_name: String,
    /// The instance's own name, chosen at deploy (default: the model's id
    /// and a short suffix of the instance id). Records from before names
    /// have none; [`Instance::display_name`] then falls back.
    #[serde(default)]
    pub name: String,
    pub spec: ComputeSpec,
    pub status: InstanceState,
    pub desired: DesiredState,
    /// Seconds without requests before the instance sleeps; 0 never sleeps.
    pub idle_timeout_secs: u64,
    /// The driver's handle (opaque to everything but the driver), once launched.
    pub handle: Option<Handle>,
    /// Where the model server answers, once known: an `http://` URL on
    /// loopback or a private network, or `unix:/path` for a local socket.
    pub upstream_url: Option<String>,
    /// The reason for the last transition (a failure's cause, "idle", ...).
    pub status_reason: Option<String>,
    /// Restarts since the last healthy start.
    pub restart_count: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Last gateway request (or stream end); drives idle sleep.
    pub last_active_at: Timestamp,
    /// When the current RUNNING stretch began (None when not running).
    pub running_since: Option<Timestamp>,
    /// Seconds spent RUNNING or STARTING before the current stretch; with
    /// `running_since` it gives billed time.
    pub billed_secs: u64,
    /// Optimistic-concurrency version; every update bumps it.
    pub version: u64,
}

impl Instance {
    /// A new PENDING instance that should run.
    pub fn new(
        user_id: UserId,
        model_id: ModelId,
        model_name: String,
        spec: ComputeSpec,
        idle_timeout_secs: u64,
        now: Timestamp,
    ) -> Self {
        let instance_id = InstanceId::generate();
        let name = default_name(&model_id, &instance_id);
        Instance {
            instance_id,
            user_id,
            model_id,
            model_name,
            name,
            spec,
            status: InstanceState::Pending,
            desired: DesiredState::Running,
            idle_timeout_secs,
            handle: None,
            upstream_url: None,
            status_reason: None,
            restart_count: 0,
            created_at: now,
            updated_at: now,
            last_active_at: now,
            running_since: None,
            billed_secs: 0,
            version: 0,
        }
    }

    /// The name to show: its own, or for a record from before names the
    /// default one.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            default_name(&self.model_id, &self.instance_id)
        } else {
            self.name.clone()
        }
    }

    /// Moves to `to` if the lifecycle allows it, returning the history entry
    /// to persist with the record. Billed time accrues while compute is held.
    pub fn transition(
        &mut self,
        to: InstanceState,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Result<Transition, IllegalTransition> {
        let from = self.status;
        if !from.can_go_to(to) {
            return Err(IllegalTransition { from, to });
        }
        let reason = reason.into();
        let was_billing = from.holds_compute();
        let bills = to.holds_compute();
        if was_billing && !bills {
            if let Some(since) = self.running_since.take() {
                self.billed_secs += (now - since).num_seconds().max(0) as u64;
            }
        } else if !was_billing && bills {
            self.running_since = Some(now);
        }
        self.status = to;
        self.status_reason = Some(reason.clone());
        self.updated_at = now;
        Ok(Transition {
            instance_id: self.instance_id.clone(),
            from: Some(from),
            to,
            reason,
            at: now,
        })
    }

    /// Seconds of compute billed so far, including the current stretch.
    pub fn billed_seconds(&self, now: Timestamp) -> u64 {
        self.billed_secs
            + self
                .running_since
                .map(|s| (now - s).num_seconds().max(0) as u64)
                .unwrap_or(0)
    }
}

/// The default name of an instance: the model id with `:` and `/` as `-`,
/// then the last four hex digits of the instance id (`gemma3-270m-7f3a`).
pub fn default_name(model: &ModelId, id: &InstanceId) -> String {
    let slug: String = model
        .as_str()
        .chars()
        .map(|c| if c == ':' || c == '/' { '-' } else { c })
        .collect();
    let id = id.as_str();
    format!("{slug}-{}", &id[id.len().saturating_sub(4)..])
}

/// Checks a name a user gave an instance: 1 to 64 characters, letters,
/// digits, spaces and `-_.:`, not only spaces. Returns it trimmed.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("must not be empty (leave it out for the default name)".into());
    }
    if name.chars().count() > 64 {
        return Err("at most 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "{c:?} is not allowed: use letters, digits, spaces and - _ . :"
        ));
    }
    Ok(name.to_string())
}

/// One step of an instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub instance_id: InstanceId,
    /// None for the record's creation.
    pub from: Option<InstanceState>,
    pub to: InstanceState,
    pub reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an instance that is {from} cannot become {to}")]
pub struct IllegalTransition {
    pub from: InstanceState,
    pub to: InstanceState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn inst() -> Instance {
        Instance::new(
            UserId::new("u-1"),
            ModelId::new("gemma3:270m"),
            "Gemma".into(),
            ComputeSpec::Cpu {
                vcpu_milli: 1000,
                memory_mb: 2048,
                spot: false,
            },
            900,
            Utc::now(),
        )
    }

    #[test]
    fn legal_path_and_billing() {
        let mut i = inst();
        let t0 = Utc::now();
        i.transition(InstanceState::Starting, "launch", t0).unwrap();
        i.transition(InstanceState::Running, "healthy", t0 + Duration::seconds(2))
            .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(10)), 10);
        i.transition(InstanceState::Sleeping, "idle", t0 + Duration::seconds(60))
            .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(1000)), 60);
        i.transition(InstanceState::Starting, "wake", t0 + Duration::seconds(100))
            .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(110)), 70);
        i.transition(
            InstanceState::Running,
            "healthy",
            t0 + Duration::seconds(110),
        )
        .unwrap();
        // paddock stopped: the time until it starts again is not billed.
        i.transition(
            InstanceState::Pending,
            "paddock stopped",
            t0 + Duration::seconds(120),
        )
        .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(1000)), 80);
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let mut i = inst();
        let e = i
            .transition(InstanceState::Running, "skip", Utc::now())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "an instance that is PENDING cannot become RUNNING"
        );
        assert_eq!(i.status, InstanceState::Pending);
        assert!(!InstanceState::Stopped.can_go_to(InstanceState::Running));
        assert!(!InstanceState::Sleeping.can_go_to(InstanceState::Running));
        // A failed launch is recorded whether it was a restart or a wake.
        assert!(InstanceState::Failed.can_go_to(InstanceState::Failed));
        assert!(InstanceState::Sleeping.can_go_to(InstanceState::Failed));
    }

    #[test]
    fn a_pull_comes_before_a_launch_and_bills_nothing() {
        let mut i = inst();
        let t0 = Utc::now();
        i.transition(InstanceState::Pulling, "downloading", t0)
            .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(600)), 0);
        i.transition(
            InstanceState::Starting,
            "launching",
            t0 + Duration::seconds(600),
        )
        .unwrap();
        assert_eq!(i.billed_seconds(t0 + Duration::seconds(610)), 10);
        // A wake or a restart may find the model gone; a pull cannot
        // become RUNNING without a launch, nor hold compute.
        assert!(InstanceState::Sleeping.can_go_to(InstanceState::Pulling));
        assert!(InstanceState::Failed.can_go_to(InstanceState::Pulling));
        assert!(InstanceState::Pulling.can_go_to(InstanceState::Stopped));
        assert!(!InstanceState::Pulling.can_go_to(InstanceState::Running));
        assert!(!InstanceState::Pulling.holds_compute());
    }

    #[test]
    fn names_default_and_are_checked() {
        let id = InstanceId::new("i-00000000deadbeef");
        assert_eq!(
            default_name(&ModelId::new("library/gemma3:270m"), &id),
            "library-gemma3-270m-beef"
        );
        let mut i = inst();
        assert!(i.name.starts_with("gemma3-270m-"));
        i.name.clear();
        assert_eq!(i.display_name(), default_name(&i.model_id, &i.instance_id));
        assert_eq!(check_name("  night shift 2 ").unwrap(), "night shift 2");
        assert!(check_name("   ").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a<b>").unwrap_err().contains("'<'"));
    }

    #[test]
    fn states_round_trip() {
        for s in InstanceState::ALL {
            assert_eq!(InstanceState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
