//! The reconciler: one loop that makes what runs follow what users asked
//! for.
//!
//! Operations record desired state in the store and call
//! [`InstanceBus::wake`]; the loop also runs on a tick. Each pass looks
//! at every instance and takes at most one step through the compute
//! driver: launch, probe health (STARTING -> RUNNING), fail on a start
//! deadline or a dead process (with the reason and last log lines), restart
//! failed instances with backoff, put idle ones to sleep, and finish stops.
//! An instance whose model the driver reads from the host's model store,
//! and which the store lacks, is PULLING first: the download runs beside
//! the loop ([`crate::pulls`]), and the pass that finds it done launches.
//! Every write is a compare-and-swap on the record's version, so a pass that
//! races a user's request simply retries on the next pass; running a pass
//! twice changes nothing. [`wake_instance`] is the gateway's way in: it
//! starts a sleeping instance and waits for it. [`adopt`] runs when paddock
//! starts, [`shutdown`] when it stops gracefully.

use crate::error::Error;
use crate::pulls::PullState;
use crate::service::Control;
use paddock_core::compute::ComputeSpec;
use paddock_core::driver::{DriverError, Handle, Health, LaunchSpec, Observed};
use paddock_core::instance::{DesiredState, Instance, InstanceState};
use paddock_core::store::StoreError;
use paddock_core::InstanceId;
use std::time::Duration;

/// Context length per sequence from an instance's memory size.
fn ctx_for(spec: &ComputeSpec) -> u32 {
    match spec {
        ComputeSpec::Cpu { memory_mb, .. } if *memory_mb >= 4096 => 8192,
        ComputeSpec::Cpu { memory_mb, .. } if *memory_mb >= 2048 => 4096,
        ComputeSpec::Cpu { .. } => 2048,
        ComputeSpec::Gpu { .. } => 8192,
    }
}

/// How the reason of a failure that a restart will not fix ends.
const NOT_RESTARTED: &str = "(a restart would fail the same way: not restarted)";

/// The reason to record for a failure; when a restart will not fix it
/// (the model server exited with `EXIT_WONT_FIX`), its restarts are used
/// up so the reconciler leaves it FAILED, and the reason says so.
fn not_restarted_if(state: &Control, i: &mut Instance, reason: String, permanent: bool) -> String {
    if !permanent {
        return reason;
    }
    i.restart_count = i.restart_count.max(state.settings.max_restarts);
    format!("{reason}\n{NOT_RESTARTED}")
}

/// The driver handle stored in an instance record.
pub fn handle_of(i: &Instance) -> Option<Handle> {
    i.handle.clone()
}

/// The handles of the instances that hold compute, for the driver.
fn holding_compute(instances: &[Instance]) -> Vec<(InstanceId, Handle)> {
    instances
        .iter()
        .filter(|i| i.status.holds_compute())
        .filter_map(|i| Some((i.instance_id.clone(), handle_of(i)?)))
        .collect()
}

/// Re-adopts runtimes after a restart: instances whose process survived
/// (kept at a graceful stop, or left by a crash) keep running; records that
/// hold compute but lost their process fail (and are restarted by the
/// policy); processes the store does not know are ended by the driver.
/// Instances whose model servers a graceful stop ended were recorded as
/// PENDING by [`shutdown`] and are simply launched again.
pub async fn adopt(state: &Control) -> Result<(), StoreError> {
    let instances = state.store.list_instances(None).await?;
    let known = holding_compute(&instances);
    let alive = match state.driver.adopt(&known).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "adopting runtimes failed");
            return Ok(());
        }
    };
    for mut i in instances {
        if i.status.holds_compute() && !alive.contains(&i.instance_id) {
            let now = state.clock.now();
            let to = if i.status == InstanceState::Stopping {
                InstanceState::Stopped
            } else {
                InstanceState::Failed
            };
            if let Ok(t) =
                i.transition(to, "the model server was gone after paddock restarted", now)
            {
                i.upstream_url = None;
                let _ = state.store.update_instance(&i, Some(&t)).await;
            }
        }
    }
    Ok(())
}

/// At a graceful stop, once the loop has ended: the driver ends the model
/// servers, or keeps them for the next start to adopt
/// ([`ComputeDriver::shutdown`](paddock_core::driver::ComputeDriver::shutdown)).
/// The instances whose servers it ended are recorded as such, so the next
/// start launches them again without counting a crash: one that should run
/// goes back to PENDING ("paddock stopped"), one being stopped is STOPPED.
/// Should the store fail, the driver still ends what it would; the next
/// start then finds those records holding compute without a process and
/// fails them, as after a crash.
pub async fn shutdown(state: &Control) {
    // A replica that did not reconcile launched nothing: the model servers
    // are the leader's.
    if !state.reconciler.is_leader() {
        return;
    }
    shutdown_model_servers(state).await;
    // Given up, so another replica takes over at once.
    if let Err(e) = state
        .store
        .release_lease(LEASE, state.reconciler.holder())
        .await
    {
        tracing::warn!(error = %e, "the reconciler's lease was not released");
    }
}

async fn shutdown_model_servers(state: &Control) {
    let instances = state.store.list_instances(None).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "listing the instances at shutdown failed");
        Vec::new()
    });
    let ended = match state.driver.shutdown(&holding_compute(&instances)).await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!(error = %e, "ending the model servers failed");
            return;
        }
    };
    let mut changed = false;
    for i in instances {
        if !ended.contains(&i.instance_id) {
            continue;
        }
        let id = i.instance_id.clone();
        match record_ended(state, i).await {
            Ok(()) => changed = true,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "recording a stopped model server failed")
            }
        }
    }
    if changed {
        state.reconciler.announce();
    }
}

/// Records that paddock's graceful stop ended an instance's model server.
async fn record_ended(state: &Control, mut i: Instance) -> Result<(), StoreError> {
    use DesiredState as D;
    use InstanceState as S;
    i.upstream_url = None;
    match (i.desired, i.status) {
        (D::Running, S::Starting | S::Running) => {
            save(state, i, S::Pending, "paddock stopped").await?;
        }
        (D::Stopped, S::Starting | S::Running) => {
            let i = save(state, i, S::Stopping, "stop requested").await?;
            save(state, i, S::Stopped, "stopped").await?;
        }
        (_, S::Stopping) => {
            save(state, i, S::Stopped, "stopped").await?;
        }
        _ => {}
    }
    Ok(())
}

/// The lease that the replica which reconciles holds in the store.
const LEASE: &str = "reconciler";

/// Takes or renews this replica's lease; whether it holds it now. A store
/// that cannot answer counts as not holding it: two replicas never both
/// reconcile.
async fn hold_lease(state: &Control, holder: &str) -> bool {
    let now = state.clock.now();
    let until = now + chrono::Duration::seconds(state.settings.lease_secs.max(1) as i64);
    match state.store.acquire_lease(LEASE, holder, until, now).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "the reconciler's lease cannot be renewed");
            false
        }
    }
}

/// Runs the loop until `shutdown` resolves. Of several replicas on one
/// store, only the one holding the lease reconciles (it renews the lease
/// every pass); the others wait, and take over within the lease's time
/// when it stops renewing. A replica adopts the model servers when it
/// takes the lease.
pub async fn run(state: Control, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let holder = state.reconciler.holder().to_owned();
    let base = Duration::from_millis(state.settings.reconcile_interval_ms.max(10));
    // A replica waiting for the lease asks for it a few times a lease.
    let waiting = Duration::from_secs(state.settings.lease_secs.max(1)).min(base * 4) / 2;
    let mut next = Duration::ZERO;
    let mut leader = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = state.reconciler.woken() => {}
            _ = tokio::time::sleep(next) => {}
        }
        let held = hold_lease(&state, &holder).await;
        if held != leader {
            leader = held;
            state.reconciler.set_leader(leader);
            if leader {
                tracing::info!("this replica reconciles (it holds the lease)");
                if let Err(e) = adopt(&state).await {
                    tracing::error!(error = %e, "adopt failed");
                }
            } else {
                tracing::warn!(
                    "another replica holds the reconciler's lease; this one stops reconciling"
                );
            }
        }
        if !leader {
            next = waiting.max(Duration::from_millis(10));
            continue;
        }
        let busy = pass(&state).await;
        // Poll quickly while something is starting or stopping.
        next = if busy {
            base.min(Duration::from_millis(100))
        } else {
            base
        };
    }
}

/// One pass over every instance; returns whether any is in transit. Its
/// time is `paddock_reconcile_pass_duration_seconds`.
pub async fn pass(state: &Control) -> bool {
    let started = std::time::Instant::now();
    let busy = pass_once(state).await;
    state
        .metrics
        .reconcile_pass
        .observe(started.elapsed().as_secs_f64());
    busy
}

async fn pass_once(state: &Control) -> bool {
    let seen_at = std::time::Instant::now();
    let instances = match state.store.list_instances(None).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "reconciler cannot list instances");
            return false;
        }
    };
    // What the driver sees of every instance that should be running, asked
    // in one batch (a few calls for the ECS driver, however many instances).
    let watched: Vec<(InstanceId, Handle)> = instances
        .iter()
        .filter(|i| {
            i.desired == DesiredState::Running
                && matches!(i.status, InstanceState::Starting | InstanceState::Running)
        })
        .filter_map(|i| Some((i.instance_id.clone(), handle_of(i)?)))
        .collect();
    let handles: Vec<Handle> = watched.iter().map(|(_, h)| h.clone()).collect();
    let mut seen: std::collections::HashMap<InstanceId, _> = watched
        .into_iter()
        .map(|(id, _)| id)
        .zip(state.driver.status_many(&handles).await)
        .collect();
    let mut changed = false;
    let mut busy = false;
    // The models PULLING instances still wait for after this pass.
    let mut pulling = std::collections::HashSet::new();
    for i in instances {
        if i.status == InstanceState::Stopped {
            continue;
        }
        let id = i.instance_id.clone();
        let before = (i.status, i.desired, i.model_id.clone());
        let observed = seen.remove(&id);
        let after = match step_observed(state, i, observed).await {
            Ok(Some(after)) => {
                changed = true;
                busy |= matches!(
                    after.status,
                    InstanceState::Pending | InstanceState::Starting | InstanceState::Stopping
                );
                (after.status, after.desired, after.model_id)
            }
            Ok(None) => before,
            Err(StoreError::Stale(_)) => {
                busy = true;
                before
            }
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "reconcile step failed");
                before
            }
        };
        if (after.0, after.1) == (InstanceState::Pulling, DesiredState::Running) {
            pulling.insert(after.2);
        }
    }
    state.pulls.retain(seen_at, |model| pulling.contains(model));
    if changed {
        state.reconciler.announce();
    }
    busy
}

/// Saves a transition; returns the stored record.
async fn save(
    state: &Control,
    mut i: Instance,
    to: InstanceState,
    reason: impl Into<String>,
) -> Result<Instance, StoreError> {
    let reason = reason.into();
    let now = state.clock.now();
    let t = match i.transition(to, reason.clone(), now) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(instance = %i.instance_id, error = %e, "skipped an illegal transition");
            return Ok(i);
        }
    };
    if to == InstanceState::Failed {
        state.metrics.failures.inc();
        tracing::warn!(instance = %i.instance_id, %reason, "instance failed");
    } else {
        tracing::info!(instance = %i.instance_id, from = %t.from.map(|s| s.as_str()).unwrap_or("-"), to = %to, "instance transition");
    }
    state.store.update_instance(&i, Some(&t)).await
}

/// Launches an instance's runtime and records STARTING (or FAILED); or,
/// when its model server would read the host's model store and the model
/// is not there, starts the download and records PULLING.
async fn launch(state: &Control, mut i: Instance, reason: &str) -> Result<Instance, StoreError> {
    if let Some(cache) = &state.models {
        if !cache.has(&i.model_id) && state.driver.reads_host_store(&i.model_id).await {
            state.pulls.ensure(cache, &i.model_id, &state.reconciler);
            let reason = format!(
                "downloading {} from {}; it launches when the download is complete",
                i.model_id,
                cache.registry()
            );
            return save(state, i, InstanceState::Pulling, reason).await;
        }
    }
    let spec = LaunchSpec {
        instance_id: i.instance_id.clone(),
        model_id: i.model_id.clone(),
        threads: i.spec.threads(&state.compute),
        ctx: ctx_for(&i.spec),
        spec: i.spec.clone(),
    };
    match state.driver.launch(&spec).await {
        Ok(h) => {
            i.handle = Some(h);
            i.upstream_url = None;
            save(state, i, InstanceState::Starting, reason).await
        }
        Err(e) => {
            save(
                state,
                i,
                InstanceState::Failed,
                format!("launch failed: {e}"),
            )
            .await
        }
    }
}

/// Stops an instance's runtime. The handle stays in the record (stopping
/// is idempotent) so the instance's logs remain readable.
async fn release(state: &Control, i: &mut Instance) {
    if let Some(h) = handle_of(i) {
        if let Err(e) = state.driver.stop(&h).await {
            tracing::warn!(instance = %i.instance_id, error = %e, "stopping the runtime failed");
        }
    }
    i.upstream_url = None;
}

/// The last log lines, for failure reasons.
async fn last_logs(state: &Control, i: &Instance) -> String {
    match handle_of(i) {
        Some(h) => state
            .driver
            .logs(&h, 5)
            .await
            .map(|l| l.join("\n"))
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// Takes at most one step for one instance. `Ok(Some)` when it changed.
pub async fn step(state: &Control, i: Instance) -> Result<Option<Instance>, StoreError> {
    step_observed(state, i, None).await
}

/// [`step`], with what the driver saw of the instance when the pass asked
/// already (`None`: it asks now).
async fn step_observed(
    state: &Control,
    mut i: Instance,
    mut observed: Option<Result<Observed, DriverError>>,
) -> Result<Option<Instance>, StoreError> {
    let mut status = |h: Handle| {
        let pre = observed.take();
        async move {
            match pre {
                Some(o) => o,
                None => state.driver.status(&h).await,
            }
        }
    };
    use DesiredState as D;
    use InstanceState as S;
    let now = state.clock.now();
    let out = match (i.desired, i.status) {
        (_, S::Stopped) => return Ok(None),
        (D::Stopped, S::Starting | S::Running) => {
            save(state, i, S::Stopping, "stop requested").await?
        }
        (D::Stopped, S::Stopping) | (D::Running, S::Stopping) => {
            release(state, &mut i).await;
            state.activity.forget(&i.instance_id);
            save(state, i, S::Stopped, "stopped").await?
        }
        (D::Stopped, S::Pending | S::Pulling | S::Sleeping | S::Failed) => {
            release(state, &mut i).await;
            save(state, i, S::Stopped, "stopped").await?
        }
        (D::Running, S::Pending) => {
            // Started again by its user after a stop or failure: what the
            // last run left (an exited container) goes first.
            if handle_of(&i).is_some() {
                release(state, &mut i).await;
            }
            launch(state, i, "launching").await?
        }
        (D::Running, S::Sleeping) => return Ok(None),
        (D::Running, S::Pulling) => {
            let Some(cache) = &state.models else {
                return Ok(Some(launch(state, i, "launching").await?));
            };
            match state.pulls.ensure(cache, &i.model_id, &state.reconciler) {
                PullState::Running(_) => return Ok(None),
                PullState::Done => launch(state, i, "model downloaded; launching").await?,
                PullState::Failed(e) => {
                    let reason = not_restarted_if(state, &mut i, e.message, e.permanent);
                    save(state, i, S::Failed, reason).await?
                }
            }
        }
        (D::Running, S::Starting) => {
            let Some(h) = handle_of(&i) else {
                return Ok(Some(launch(state, i, "launching").await?));
            };
            match status(h.clone()).await {
                Ok(Observed::Alive { endpoint, health }) => {
                    // A driver with a health check of its own is trusted;
                    // otherwise the endpoint is probed.
                    let healthy = match health {
                        Some(h) => h == Health::Healthy,
                        None => state.probe.healthy(&endpoint).await,
                    };
                    if healthy {
                        i.upstream_url = Some(endpoint);
                        state.activity.touch(&i.instance_id);
                        save(state, i, S::Running, "healthy").await?
                    } else if (now - i.updated_at).num_seconds()
                        >= state.settings.start_timeout_secs as i64
                    {
                        let logs = last_logs(state, &i).await;
                        release(state, &mut i).await;
                        let reason = format!(
                            "did not answer its health check within {} s; last log lines:\n{logs}",
                            state.settings.start_timeout_secs
                        );
                        save(state, i, S::Failed, reason).await?
                    } else {
                        return Ok(None);
                    }
                }
                Ok(Observed::Exited { reason, permanent }) => {
                    let reason = not_restarted_if(state, &mut i, reason, permanent);
                    save(state, i, S::Failed, reason).await?
                }
                Ok(Observed::Gone) => {
                    save(state, i, S::Failed, "the model server disappeared").await?
                }
                Err(e) => {
                    tracing::warn!(instance = %i.instance_id, error = %e, "driver status failed");
                    return Ok(None);
                }
            }
        }
        (D::Running, S::Running) => {
            let Some(h) = handle_of(&i) else {
                return Ok(Some(
                    save(state, i, S::Failed, "the record lost its runtime handle").await?,
                ));
            };
            match status(h.clone()).await {
                Ok(Observed::Alive {
                    health: Some(Health::Unhealthy),
                    ..
                }) => {
                    // The driver's health check (with its own retries)
                    // says the model server stopped answering.
                    let logs = last_logs(state, &i).await;
                    release(state, &mut i).await;
                    let reason =
                        format!("its health check failed while running; last log lines:\n{logs}");
                    save(state, i, S::Failed, reason).await?
                }
                Ok(Observed::Alive { .. }) => {
                    let last = state
                        .activity
                        .last_active(&i.instance_id)
                        .map_or(i.last_active_at, |a| a.max(i.last_active_at));
                    let idle_for = (now - last).num_seconds();
                    if i.idle_timeout_secs > 0
                        && state.activity.inflight(&i.instance_id) == 0
                        && idle_for >= i.idle_timeout_secs as i64
                    {
                        release(state, &mut i).await;
                        i.last_active_at = last;
                        let reason = format!("idle for {} s", idle_for);
                        save(state, i, S::Sleeping, reason).await?
                    } else {
                        return Ok(None);
                    }
                }
                Ok(Observed::Exited { reason, permanent }) => {
                    // A long healthy run earns a fresh restart budget.
                    if i.running_since
                        .is_some_and(|s| (now - s).num_seconds() > 300)
                    {
                        i.restart_count = 0;
                    }
                    i.upstream_url = None;
                    let reason = not_restarted_if(state, &mut i, reason, permanent);
                    save(state, i, S::Failed, reason).await?
                }
                Ok(Observed::Gone) => {
                    i.upstream_url = None;
                    save(state, i, S::Failed, "the model server disappeared").await?
                }
                Err(e) => {
                    tracing::warn!(instance = %i.instance_id, error = %e, "driver status failed");
                    return Ok(None);
                }
            }
        }
        (D::Running, S::Failed) => {
            let max = state.settings.max_restarts;
            if i.restart_count >= max {
                let note = format!("(gave up after {max} restarts)");
                if i.status_reason
                    .as_deref()
                    .is_some_and(|r| r.contains(&note) || r.ends_with(NOT_RESTARTED))
                {
                    return Ok(None);
                }
                i.status_reason = Some(format!(
                    "{} {note}",
                    i.status_reason.clone().unwrap_or_default()
                ));
                state.store.update_instance(&i, None).await?
            } else {
                let wait = state.settings.restart_backoff_secs << i.restart_count.min(16);
                if (now - i.updated_at).num_seconds() < wait as i64 {
                    return Ok(None);
                }
                release(state, &mut i).await;
                i.restart_count += 1;
                state.metrics.restarts.inc();
                let reason = format!("restart {} of {max}", i.restart_count);
                launch(state, i, &reason).await?
            }
        }
    };
    Ok(Some(out))
}

/// Makes sure an instance is RUNNING for a gateway request: wakes it if it
/// sleeps (concurrent callers share one wake: only one compare-and-swap
/// from SLEEPING succeeds) and waits up to the wake timeout.
pub async fn wake_instance(state: &Control, id: &InstanceId) -> Result<Instance, Error> {
    let mut changes = state.reconciler.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(state.settings.wake_timeout_secs);
    loop {
        let i = state
            .store
            .get_instance(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("instance {id} not found")))?;
        match (i.desired, i.status) {
            (DesiredState::Running, InstanceState::Running) if i.upstream_url.is_some() => {
                return Ok(i)
            }
            (DesiredState::Running, InstanceState::Sleeping) => {
                match launch(state, i, "woken by a request").await {
                    Ok(_) => {
                        state.reconciler.announce();
                        state.metrics.wakes.inc();
                        state.activity.touch(id);
                        tracing::info!(instance = %id, "waking");
                        state.reconciler.wake();
                    }
                    Err(StoreError::Stale(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            (DesiredState::Running, InstanceState::Failed)
                if i.restart_count >= state.settings.max_restarts =>
            {
                return Err(Error::Upstream(format!(
                    "instance {id} failed: {}",
                    i.status_reason.unwrap_or_default()
                )));
            }
            (DesiredState::Stopped, _) | (_, InstanceState::Stopped | InstanceState::Stopping) => {
                return Err(Error::Conflict(format!(
                    "instance {id} is stopped; start it again (POST /api/instances/{id}/start) to use it"
                )));
            }
            _ => {}
        }
        state.reconciler.wake();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            let message = match state.pulls.progress(&i.model_id).and_then(|p| p.percent()) {
                Some(pct) if i.status == InstanceState::Pulling => format!(
                    "instance {id} is downloading {} ({pct}% done); retry when it is RUNNING",
                    i.model_id
                ),
                _ => format!("instance {id} is still starting; retry shortly"),
            };
            return Err(Error::Unavailable {
                message,
                retry_after: 5,
            });
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), changes.changed()).await;
    }
}
