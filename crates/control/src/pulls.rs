//! [`Pulls`]: the model downloads this replica is making into the host's
//! model store, one per model however many instances wait for it.
//!
//! The reconciler starts a download when an instance's model is missing
//! ([`Pulls::ensure`]) and asks it again on each pass until it is done or
//! has failed; instance views read its progress ([`Pulls::progress`]); a
//! download that no PULLING instance wants any more (they were stopped) is
//! cancelled, its partial file kept for the next pull to resume
//! ([`Pulls::retain`]). Progress is in memory only: it is this replica's
//! work, and the store records the PULLING state, not every byte.

use crate::bus::InstanceBus;
use paddock_core::models::{ModelCache, PullError, PullProgress};
use paddock_core::ModelId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often, at most, progress is announced to live views.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);

/// Where a model's download stands.
#[derive(Debug, Clone, PartialEq)]
pub enum PullState {
    /// Under way, this far.
    Running(PullProgress),
    /// The model is in the store.
    Done,
    /// It failed; the instances waiting for it fail with this.
    Failed(PullError),
}

/// One model's download.
#[derive(Debug)]
struct Job {
    /// When it was started (a pass only cancels what it could have seen
    /// wanted).
    started: Instant,
    progress: Arc<Mutex<PullProgress>>,
    outcome: Arc<Mutex<Option<Result<(), PullError>>>>,
    task: tokio::task::AbortHandle,
}

/// The downloads in progress (and those just finished).
#[derive(Debug)]
pub struct Pulls {
    jobs: Mutex<HashMap<ModelId, Job>>,
    /// Bumped as downloads progress (a few times a second at most) and
    /// when one ends, for live views; instance records do not change.
    progressed: watch::Sender<u64>,
}

impl Default for Pulls {
    fn default() -> Self {
        Pulls {
            jobs: Mutex::default(),
            progressed: watch::channel(0).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pulls {
    /// Where `model`'s download stands, starting it if the model is
    /// neither in `cache` nor being downloaded. A finished download wakes
    /// the reconciler through `bus`.
    pub fn ensure(
        &self,
        cache: &Arc<dyn ModelCache>,
        model: &ModelId,
        bus: &InstanceBus,
    ) -> PullState {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.get(model) {
            let outcome = lock(&job.outcome).clone();
            match outcome {
                None => return PullState::Running(*lock(&job.progress)),
                Some(Err(e)) => return PullState::Failed(e),
                Some(Ok(())) => {
                    jobs.remove(model);
                }
            }
        }
        if cache.has(model) {
            return PullState::Done;
        }
        let progress = Arc::new(Mutex::new(PullProgress::default()));
        let outcome = Arc::new(Mutex::new(None));
        let task = tokio::spawn(download(
            cache.clone(),
            model.clone(),
            progress.clone(),
            outcome.clone(),
            self.progressed.clone(),
            bus.clone(),
        ));
        jobs.insert(
            model.clone(),
            Job {
                started: Instant::now(),
                progress,
                outcome,
                task: task.abort_handle(),
            },
        );
        PullState::Running(PullProgress::default())
    }

    /// How far `model`'s download is, while one is under way here.
    pub fn progress(&self, model: &ModelId) -> Option<PullProgress> {
        let jobs = lock(&self.jobs);
        let job = jobs.get(model)?;
        let outcome = lock(&job.outcome);
        outcome.is_none().then(|| *lock(&job.progress))
    }

    /// Keeps the downloads of the models `wanted` says some PULLING
    /// instance still waits for, as a pass that read the instances at
    /// `seen_at` found them; cancels the others (the partial file stays,
    /// for the next pull to resume) and forgets finished ones. A download
    /// started since `seen_at` (by a wake, say) is kept: the pass could
    /// not see its instance PULLING.
    pub fn retain(&self, seen_at: Instant, wanted: impl Fn(&ModelId) -> bool) {
        lock(&self.jobs).retain(|model, job| {
            if wanted(model) || job.started >= seen_at {
                return true;
            }
            if lock(&job.outcome).is_none() {
                tracing::info!(%model, "model download cancelled: no instance waits for it");
                job.task.abort();
            }
            false
        });
    }

    /// A receiver that sees a new value as downloads progress.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progressed.subscribe()
    }
}

/// Runs one download, recording its progress and outcome.
async fn download(
    cache: Arc<dyn ModelCache>,
    model: ModelId,
    progress: Arc<Mutex<PullProgress>>,
    outcome: Arc<Mutex<Option<Result<(), PullError>>>>,
    progressed: watch::Sender<u64>,
    bus: InstanceBus,
) {
    let started = Instant::now();
    tracing::info!(%model, registry = %cache.registry(), "downloading model");
    let last_announced = Mutex::new(started);
    let report = |p: PullProgress| {
        *lock(&progress) = p;
        let mut last = lock(&last_announced);
        if last.elapsed() >= ANNOUNCE_EVERY {
            *last = Instant::now();
            progressed.send_modify(|v| *v += 1);
        }
    };
    let result = cache.pull(&model, &report).await;
    match &result {
        Ok(()) => tracing::info!(
            %model,
            bytes = lock(&progress).total,
            secs = started.elapsed().as_secs_f64(),
            "model downloaded"
        ),
        Err(e) => {
            tracing::warn!(%model, error = %e, permanent = e.permanent, "model download failed")
        }
    }
    *lock(&outcome) = Some(result);
    progressed.send_modify(|v| *v += 1);
    bus.wake();
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A cache whose pulls report half, then wait for the test, then end
    /// as the test says.
    #[derive(Debug, Default)]
    struct Fake {
        present: AtomicBool,
        pulls: AtomicUsize,
        go: tokio::sync::Notify,
        fail: Mutex<Option<PullError>>,
    }

    #[async_trait]
    impl ModelCache for Fake {
        fn has(&self, _: &ModelId) -> bool {
            self.present.load(Ordering::SeqCst)
        }
        fn registry(&self) -> String {
            "http://registry.test".into()
        }
        async fn pull(
            &self,
            _: &ModelId,
            progress: &(dyn Fn(PullProgress) + Send + Sync),
        ) -> Result<(), PullError> {
            self.pulls.fetch_add(1, Ordering::SeqCst);
            progress(PullProgress {
                completed: 50,
                total: 100,
            });
            self.go.notified().await;
            match lock(&self.fail).clone() {
                Some(e) => Err(e),
                None => {
                    self.present.store(true, Ordering::SeqCst);
                    Ok(())
                }
            }
        }
    }

    /// A fake cache, its trait object, the downloads, a bus and a model.
    fn setup() -> (Arc<Fake>, Arc<dyn ModelCache>, Pulls, InstanceBus, ModelId) {
        let fake = Arc::new(Fake::default());
        let cache: Arc<dyn ModelCache> = fake.clone();
        (
            fake,
            cache,
            Pulls::default(),
            InstanceBus::default(),
            ModelId::new("m:1"),
        )
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn one_download_per_model_shared_by_its_waiters() {
        let (fake, cache, pulls, bus, m) = setup();
        let seen = pulls.subscribe();
        assert_eq!(
            pulls.ensure(&cache, &m, &bus),
            PullState::Running(PullProgress::default())
        );
        settle().await;
        let half = PullProgress {
            completed: 50,
            total: 100,
        };
        assert_eq!(pulls.ensure(&cache, &m, &bus), PullState::Running(half));
        assert_eq!(pulls.progress(&m), Some(half));
        fake.go.notify_one();
        settle().await;
        assert!(seen.has_changed().unwrap());
        assert_eq!(pulls.ensure(&cache, &m, &bus), PullState::Done);
        assert_eq!(pulls.ensure(&cache, &m, &bus), PullState::Done);
        assert_eq!(fake.pulls.load(Ordering::SeqCst), 1);
        assert_eq!(pulls.progress(&m), None);
    }

    #[tokio::test]
    async fn a_failure_holds_until_nobody_waits_then_a_new_pull_starts() {
        let (fake, cache, pulls, bus, m) = setup();
        let error = PullError {
            message: "pulling \"m:1\" from http://registry.test failed: no such model".into(),
            permanent: true,
        };
        *lock(&fake.fail) = Some(error.clone());
        pulls.ensure(&cache, &m, &bus);
        settle().await;
        fake.go.notify_one();
        settle().await;
        assert_eq!(
            pulls.ensure(&cache, &m, &bus),
            PullState::Failed(error.clone())
        );
        pulls.retain(Instant::now(), |_| true);
        assert_eq!(pulls.ensure(&cache, &m, &bus), PullState::Failed(error));
        pulls.retain(Instant::now(), |_| false);
        *lock(&fake.fail) = None;
        assert!(matches!(
            pulls.ensure(&cache, &m, &bus),
            PullState::Running(_)
        ));
        settle().await;
        assert_eq!(fake.pulls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pass_keeps_a_download_started_after_it_read_the_instances() {
        let (fake, cache, pulls, bus, m) = setup();
        let seen_at = Instant::now();
        pulls.ensure(&cache, &m, &bus);
        settle().await;
        pulls.retain(seen_at, |_| false);
        assert!(
            pulls.progress(&m).is_some(),
            "a wake's new download was cancelled"
        );
        fake.go.notify_one();
        settle().await;
        assert!(fake.present.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_download_nobody_waits_for_is_cancelled() {
        let (fake, cache, pulls, bus, m) = setup();
        pulls.ensure(&cache, &m, &bus);
        settle().await;
        let seen_at = Instant::now();
        pulls.retain(seen_at, |other| other != &m);
        assert_eq!(pulls.progress(&m), None);
        fake.go.notify_one();
        settle().await;
        assert!(
            !fake.present.load(Ordering::SeqCst),
            "the cancelled pull went on"
        );
    }
}
