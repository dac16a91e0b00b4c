//! Instances: deploy, list, inspect, stop, delete, logs.
//!
//! The store records what the user wants first (desired state and a PENDING
//! record); the reconciler then acts through the compute driver. Ownership
//! is checked in [`Control::instance`]: another user's instance is the same
//! [`Error::NotFound`] as one that does not exist, except for admins.

use crate::error::FieldErrors;
use crate::{AdminOps, Control, Error, Result, STALE_RETRIES};
use paddock_core::catalog::Model;
use paddock_core::compute::ComputeSpec;
use paddock_core::instance::{check_name, DesiredState, Instance, InstanceState, Transition};
use paddock_core::user::Principal;
use paddock_core::{InstanceId, ModelId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default idle timeout, minutes.
pub const DEFAULT_IDLE_MINUTES: u64 = 15;
/// Longest idle timeout accepted, minutes (one week).
pub const MAX_IDLE_MINUTES: u64 = 7 * 24 * 60;
/// Most log lines one request returns.
pub const MAX_LOG_LINES: usize = 5000;

/// What a deploy asks for, with the original system's field names. Numbers
/// may come as JSON numbers or strings.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// A catalog `model_id` (e.g. `gemma3:270m`) or its display name.
    pub model_name: Option<String>,
    /// The same, under its other name.
    pub model_id: Option<String>,
    /// A CPU size.
    pub fargate_resources: Option<FargateResources>,
    /// A GPU size (an EC2 instance type).
    pub instance_type: Option<String>,
    /// Minutes without requests before the instance sleeps; 0 never sleeps.
    pub idle_timeout_minutes: Option<Value>,
    /// Spot capacity (FARGATE_SPOT, or the spot GPU capacity provider):
    /// cheaper, and may be interrupted; an interrupted instance is FAILED
    /// with the reason and restarted.
    pub spot: Option<bool>,
    /// A name for the instance (1-64 letters, digits, spaces, `-_.:`);
    /// default: the model id and a short suffix, e.g. `gemma3-270m-7f3a`.
    pub name: Option<String>,
}

/// A Fargate-style CPU size: CPU units (1024 = 1 vCPU) or vCPUs, and MiB.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FargateResources {
    pub cpu: Value,
    pub memory: Value,
}

/// An instance as users see it, with the original system's field names.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub instance_id: InstanceId,
    /// The instance's name (given at deploy, or the default).
    pub name: String,
    /// The catalog model id (the original's `model_name`).
    pub model_name: ModelId,
    pub model_display_name: String,
    pub instance_type: String,
    pub compute: &'static str,
    /// Whether it runs on spot capacity (priced as such).
    pub spot: bool,
    pub spec: ComputeSpec,
    pub user_id: UserId,
    pub status: InstanceState,
    pub desired_status: DesiredState,
    pub status_reason: Option<String>,
    /// The status as a person reads it: the status, `restarting (N of M)`
    /// while a FAILED instance waits for its next automatic restart, or
    /// `pulling N%` while its model downloads.
    pub status_label: String,
    /// Whether `POST /api/instances/{id}/start` would start it again: it
    /// is stopped, asleep, or failed with no restart left.
    pub startable: bool,
    /// While PULLING: how far the model's download is (absent before the
    /// registry has said how big it is, and on a replica that is not the
    /// one downloading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullView>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_active_at: Timestamp,
    pub endpoint_url: String,
    pub idle_timeout_minutes: f64,
    pub restart_count: u32,
    pub price_per_hour_usd: f64,
    pub uptime_seconds: u64,
    pub cost_usd: f64,
    /// CPU sizes only: `{cpu, memory}` as in a task definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fargate_resources: Option<CpuSize>,
    /// One instance's state history, oldest first (not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Transition>>,
}

/// A model download's progress, as an instance view shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PullView {
    /// Bytes of the model on disk so far.
    pub completed_bytes: u64,
    /// Bytes of the model in all.
    pub total_bytes: u64,
    /// Whole percent done.
    pub percent: u8,
}

/// What [`Control::change_instance`]'s change did to the record it read.
enum Change {
    /// Nothing to write.
    Unchanged,
    /// Write the record, with this history entry if any.
    Write(Option<Transition>),
}

/// A CPU size in task-definition units.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuSize {
    pub cpu: u32,
    pub memory: u32,
}

/// Rounds a price to six decimals for display.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn number(field: &str, v: &Value) -> Result<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| Error::invalid(format!("{field}: must be a non-negative number")))
}

/// Fargate CPU units from the request: values of 256 and up are CPU units
/// (1024 = 1 vCPU, as in task definitions); smaller values are vCPUs.
fn cpu_units(v: &Value) -> Result<u32> {
    let x = number("fargate_resources.cpu", v)?;
    let units = if x < 256.0 { x * 1024.0 } else { x };
    if units.fract() != 0.0 || units > 1e6 {
        return Err(Error::invalid(
            "fargate_resources.cpu: use CPU units (256, 512, 1024, 2048, 4096, 8192, 16384) or vCPUs (0.25 ... 16)",
        ));
    }
    Ok(units as u32)
}

impl Control {
    /// The catalog entry a deploy names: by model id, else by display name
    /// (any case); refused when missing or inactive.
    async fn catalog_entry(&self, name: &str) -> Result<Result<Model>> {
        let model = match self.store.get_model(&ModelId::new(name)).await? {
            Some(m) => Some(m),
            None => self
                .store
                .list_models()
                .await?
                .into_iter()
                .find(|m| m.model_name.eq_ignore_ascii_case(name)),
        };
        Ok(match model {
            Some(m) if m.is_active => Ok(m),
            Some(_) => Err(Error::invalid(format!(
                "model_name: {name} is inactive in the catalog and cannot be deployed"
            ))),
            None => Err(Error::invalid(format!(
                "model_name: {name:?} is not in the catalog; GET /api/models lists what can be deployed"
            ))),
        })
    }

    /// A CPU size from a deploy's `fargate_resources`.
    fn cpu_spec(&self, f: &FargateResources) -> Result<ComputeSpec> {
        let cpu = cpu_units(&f.cpu);
        let mem = number("fargate_resources.memory", &f.memory).and_then(|m| {
            if m.fract() != 0.0 || m > 1e7 {
                Err(Error::invalid(
                    "fargate_resources.memory: must be whole MiB",
                ))
            } else {
                Ok(m as u32)
            }
        });
        let mut errors = FieldErrors::default();
        let cpu = errors.check("fargate_resources.cpu", cpu)?;
        let mem = errors.check("fargate_resources.memory", mem)?;
        errors.finish()?;
        let (Some(cpu), Some(mem)) = (cpu, mem) else {
            return Err(Error::Internal(
                "a CPU size passed its checks without a value".into(),
            ));
        };
        self.compute
            .fargate_spec(cpu, mem)
            .map_err(|e| Error::invalid(format!("fargate_resources: {e}")))
    }

    /// The price per hour of a size here: CPU sizes run by this paddock use
    /// the configured local price, GPU sizes their list price.
    pub fn price_per_hour(&self, spec: &ComputeSpec) -> f64 {
        let local = (matches!(spec, ComputeSpec::Cpu { .. }) && self.driver.capabilities().local)
            .then_some(self.settings.local_cpu_hour_usd);
        self.compute.price_per_hour(spec, local)
    }

    /// The view of an instance record.
    pub fn instance_view(&self, i: &Instance) -> InstanceView {
        let now = self.clock.now();
        let pull = self.pull_view(i);
        let price = self.price_per_hour(&i.spec);
        let billed = i.billed_seconds(now);
        let fargate_resources = match &i.spec {
            ComputeSpec::Cpu {
                vcpu_milli,
                memory_mb,
                ..
            } => Some(CpuSize {
                cpu: vcpu_milli * 1024 / 1000,
                memory: *memory_mb,
            }),
            ComputeSpec::Gpu { .. } => None,
        };
        InstanceView {
            instance_id: i.instance_id.clone(),
            name: i.display_name(),
            model_name: i.model_id.clone(),
            model_display_name: i.model_name.clone(),
            instance_type: i.spec.instance_type(),
            compute: i.spec.compute_kind(),
            spot: i.spec.is_spot(),
            spec: i.spec.clone(),
            user_id: i.user_id.clone(),
            status: i.status,
            desired_status: i.desired,
            status_reason: i.status_reason.clone(),
            status_label: self.status_label(i, pull.as_ref()),
            pull,
            startable: match i.status {
                InstanceState::Stopped | InstanceState::Sleeping => true,
                InstanceState::Failed => !self.restarting(i),
                _ => false,
            },
            created_at: i.created_at,
            updated_at: i.updated_at,
            last_active_at: i.last_active_at,
            endpoint_url: format!("{}/models/{}", self.settings.public_url, i.instance_id),
            idle_timeout_minutes: i.idle_timeout_secs as f64 / 60.0,
            restart_count: i.restart_count,
            price_per_hour_usd: round6(price),
            uptime_seconds: billed,
            cost_usd: round6(price * billed as f64 / 3600.0),
            fargate_resources,
            history: None,
        }
    }

    /// Whether a FAILED instance waits for its next automatic restart.
    fn restarting(&self, i: &Instance) -> bool {
        i.status == InstanceState::Failed
            && i.desired == DesiredState::Running
            && i.restart_count < self.settings.max_restarts
    }

    /// See [`InstanceView::pull`].
    fn pull_view(&self, i: &Instance) -> Option<PullView> {
        if i.status != InstanceState::Pulling {
            return None;
        }
        let p = self.pulls.progress(&i.model_id)?;
        Some(PullView {
            completed_bytes: p.completed,
            total_bytes: p.total,
            percent: p.percent()?,
        })
    }

    /// See [`InstanceView::status_label`]; `pull` is the instance's
    /// [`InstanceView::pull`].
    fn status_label(&self, i: &Instance, pull: Option<&PullView>) -> String {
        if self.restarting(i) {
            format!(
                "restarting ({} of {})",
                i.restart_count + 1,
                self.settings.max_restarts
            )
        } else if let Some(p) = pull {
            format!("pulling {}%", p.percent)
        } else {
            i.status.as_str().to_string()
        }
    }

    /// An instance the caller may see: their own, or any for admins.
    /// Anything else is the same [`Error::NotFound`] as a missing instance.
    pub async fn instance(&self, caller: &Principal, id: &str) -> Result<Instance> {
        match self.store.get_instance(&InstanceId::new(id)).await? {
            Some(i) if i.user_id == caller.user_id || self.as_admin(caller).is_some() => Ok(i),
            _ => Err(Error::not_found(format!("instance {id} not found"))),
        }
    }

    /// The caller's own instances, newest first.
    pub async fn my_instances(&self, caller: &Principal) -> Result<Vec<Instance>> {
        Ok(self.store.list_instances(Some(&caller.user_id)).await?)
    }

    /// One instance with its state history.
    pub async fn instance_detail(&self, caller: &Principal, id: &str) -> Result<InstanceView> {
        let i = self.instance(caller, id).await?;
        let history = self.store.list_transitions(&i.instance_id).await?;
        let mut v = self.instance_view(&i);
        v.history = Some(history);
        Ok(v)
    }

    /// Records a deploy: checks the model, the size and the caller's key,
    /// stores a PENDING instance and wakes the reconciler. Every
    /// unacceptable field is reported at once ([`Error::Fields`]).
    pub async fn deploy(&self, caller: &Principal, req: DeployRequest) -> Result<InstanceView> {
        let mut errors = FieldErrors::default();
        let model = match req.model_name.or(req.model_id) {
            None => {
                errors.add(
                    "model_name",
                    "is required (a model_id from GET /api/models, e.g. gemma3:270m)",
                );
                None
            }
            Some(name) => {
                let found = self.catalog_entry(name.trim()).await?;
                errors.check("model_name", found)?
            }
        };
        if let Some(m) = &model {
            if !caller.may_use_model(&m.model_id) {
                return Err(Error::Forbidden(format!(
                    "this API key may not use {}",
                    m.model_id
                )));
            }
        }
        let spot = req.spot.unwrap_or(false);
        if spot && !self.driver.capabilities().spot {
            errors.add("spot", format!(
                "this paddock runs instances with the {} driver, which has no spot capacity; deploy without spot, or run paddock with the ecs driver",
                self.driver.name()
            ));
        }
        let (size_field, spec) = match (req.fargate_resources, req.instance_type) {
            (Some(f), None) => ("fargate_resources", {
                let spec = self.cpu_spec(&f);
                errors.check("fargate_resources", spec)?
            }),
            (None, Some(t)) => {
                let spec = self
                    .compute
                    .gpu_spec(t.trim())
                    .map_err(|e| Error::invalid(format!("instance_type: {e}")));
                let spec = errors.check("instance_type", spec)?;
                if spec.is_some() && !self.driver.capabilities().gpu {
                    errors.add("instance_type", format!(
                        "this paddock runs instances with the {} driver, which has no GPU; pick a CPU size (fargate_resources) or run paddock with a GPU-capable driver",
                        self.driver.name()
                    ));
                }
                ("instance_type", spec)
            }
            (Some(_), Some(_)) => {
                errors.add(
                    "instance_type",
                    "give either fargate_resources (CPU) or instance_type (GPU), not both",
                );
                ("instance_type", None)
            }
            (None, None) => {
                errors.add(
                    "fargate_resources",
                    "give fargate_resources {cpu, memory} for CPU or instance_type for GPU; GET /api/compute lists the sizes",
                );
                ("fargate_resources", None)
            }
        };
        let spec = spec.map(|s| s.with_spot(spot));
        if let (Some(m), Some(spec)) = (&model, &spec) {
            if let Err(e) = self.compute.check_fit(m, spec) {
                errors.add(size_field, e.to_string());
            }
        }
        let idle_minutes = match req.idle_timeout_minutes {
            None | Some(Value::Null) => Some(DEFAULT_IDLE_MINUTES as f64),
            Some(v) => {
                let n = number("idle_timeout_minutes", &v).and_then(|n| {
                    if n > MAX_IDLE_MINUTES as f64 {
                        Err(Error::invalid(format!(
                            "idle_timeout_minutes: at most {MAX_IDLE_MINUTES} (0 means never sleep)"
                        )))
                    } else {
                        Ok(n)
                    }
                });
                errors.check("idle_timeout_minutes", n)?
            }
        };
        let name = match req.name.as_deref() {
            None => None,
            Some(n) => {
                let checked = check_name(n).map_err(|e| Error::invalid(format!("name: {e}")));
                errors.check("name", checked)?
            }
        };
        errors.finish()?;
        let (Some(model), Some(spec), Some(idle_minutes)) = (model, spec, idle_minutes) else {
            return Err(Error::Internal(
                "a deploy passed its checks without a model, size or idle timeout".into(),
            ));
        };
        let now = self.clock.now();
        let mut instance = Instance::new(
            caller.user_id.clone(),
            model.model_id.clone(),
            model.model_name.clone(),
            spec,
            (idle_minutes * 60.0).round() as u64,
            now,
        );
        if let Some(name) = name {
            instance.name = name;
        }
        let first = Transition {
            instance_id: instance.instance_id.clone(),
            from: None,
            to: InstanceState::Pending,
            reason: "deploy requested".into(),
            at: now,
        };
        self.store.create_instance(&instance, &first).await?;
        self.reconciler.announce();
        tracing::info!(instance = %instance.instance_id, model = %instance.model_id, user = %caller.user_id, "deploy requested");
        self.reconciler.wake();
        Ok(self.instance_view(&instance))
    }

    /// Applies a user's change to an instance record and writes it,
    /// compare-and-swap: a record another write changed since it was read
    /// is read again and `change` applied to that. `change` leaves the
    /// record as it is (then its view is returned), or changes it and
    /// gives the history entry to write with it, or refuses.
    async fn change_instance(
        &self,
        caller: &Principal,
        id: &str,
        what: &'static str,
        mut change: impl FnMut(&mut Instance, Timestamp) -> Result<Change>,
    ) -> Result<InstanceView> {
        let mut i = self.instance(caller, id).await?;
        for _ in 0..STALE_RETRIES {
            let transition = match change(&mut i, self.clock.now())? {
                Change::Unchanged => return Ok(self.instance_view(&i)),
                Change::Write(t) => t,
            };
            match self.store.update_instance(&i, transition.as_ref()).await {
                Ok(stored) => {
                    self.reconciler.announce();
                    tracing::info!(instance = %stored.instance_id, user = %caller.user_id, "{what}");
                    self.reconciler.wake();
                    return Ok(self.instance_view(&stored));
                }
                Err(paddock_core::store::StoreError::Stale(_)) => {
                    i = self.instance(caller, id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(
            "the instance is changing state; retry in a moment".into(),
        ))
    }

    /// Asks for an instance to stop. Nothing is held before it starts (nor
    /// while its model downloads: the download is cancelled unless another
    /// instance waits for it) or while it sleeps or after it failed, so
    /// such a record stops at once;
    /// otherwise the reconciler releases the compute and finishes the stop.
    pub async fn stop_instance(&self, caller: &Principal, id: &str) -> Result<InstanceView> {
        self.change_instance(caller, id, "stop requested", |i, now| {
            if i.desired == DesiredState::Stopped
                && matches!(i.status, InstanceState::Stopped | InstanceState::Stopping)
            {
                return Ok(Change::Unchanged);
            }
            i.desired = DesiredState::Stopped;
            i.updated_at = now;
            let to = match i.status {
                InstanceState::Pending
                | InstanceState::Pulling
                | InstanceState::Sleeping
                | InstanceState::Failed => Some((InstanceState::Stopped, "stopped by user")),
                InstanceState::Starting | InstanceState::Running => {
                    Some((InstanceState::Stopping, "stop requested by user"))
                }
                InstanceState::Stopping | InstanceState::Stopped => None,
            };
            let transition = to
                .map(|(to, reason)| i.transition(to, reason, now))
                .transpose()
                .map_err(|e| Error::Conflict(e.to_string()))?;
            Ok(Change::Write(transition))
        })
        .await
    }

    /// Starts a stopped, sleeping or failed instance again: the same id,
    /// endpoint and history, and the keys that could use it still can. It
    /// becomes PENDING (its restarts counted from zero) and the reconciler
    /// launches it. One that runs, is on its way up or is being restarted
    /// after a failure is returned as it is; one that is stopping cannot
    /// start until it has stopped.
    pub async fn start_instance(&self, caller: &Principal, id: &str) -> Result<InstanceView> {
        self.change_instance(caller, id, "start requested", |i, now| {
            match (i.desired, i.status) {
                (_, InstanceState::Stopping) => {
                    return Err(Error::Conflict(format!(
                        "instance {id} is stopping; start it once it is STOPPED"
                    )))
                }
                (
                    DesiredState::Running,
                    InstanceState::Pending
                    | InstanceState::Pulling
                    | InstanceState::Starting
                    | InstanceState::Running,
                ) => return Ok(Change::Unchanged),
                (DesiredState::Running, InstanceState::Failed) if self.restarting(i) => {
                    return Ok(Change::Unchanged)
                }
                _ => {}
            }
            i.desired = DesiredState::Running;
            i.restart_count = 0;
            i.last_active_at = now;
            let transition = i
                .transition(InstanceState::Pending, "started by user", now)
                .map_err(|e| Error::Conflict(e.to_string()))?;
            Ok(Change::Write(Some(transition)))
        })
        .await
    }

    /// Deletes a stopped instance and its history.
    pub async fn delete_instance(&self, caller: &Principal, id: &str) -> Result<()> {
        let i = self.instance(caller, id).await?;
        if i.status != InstanceState::Stopped {
            return Err(Error::Conflict(format!(
                "instance {id} is {}; stop it first (POST /api/models/stop)",
                i.status
            )));
        }
        self.store.delete_instance(&i.instance_id).await?;
        self.reconciler.announce();
        Ok(())
    }

    /// The last `lines` lines of an instance's model-server output (at
    /// least 1, at most [`MAX_LOG_LINES`]).
    pub async fn instance_logs(
        &self,
        caller: &Principal,
        id: &str,
        lines: usize,
    ) -> Result<(InstanceId, Vec<String>)> {
        let i = self.instance(caller, id).await?;
        let n = lines.clamp(1, MAX_LOG_LINES);
        let lines = match crate::reconciler::handle_of(&i) {
            Some(h) => self
                .driver
                .logs(&h, n)
                .await
                .map_err(|e| Error::Internal(format!("reading logs: {e}")))?,
            None => Vec::new(),
        };
        Ok((i.instance_id, lines))
    }
}

impl AdminOps<'_> {
    /// Everyone's instances, newest first.
    pub async fn all_instances(&self) -> Result<Vec<Instance>> {
        Ok(self.control.store.list_instances(None).await?)
    }
}
