//! The catalog (models that can be deployed) and the compute sizes they
//! run on. Everyone signed in reads the active catalog; admins also see
//! inactive models and add, edit and deactivate entries ([`AdminOps`]).

use crate::error::FieldErrors;
use crate::instances::round6;
use crate::{AdminOps, Control, Error, Result, STALE_RETRIES};
use paddock_core::catalog::Model;
use paddock_core::compute::{ComputeSpec, GpuInstanceType};
use paddock_core::instance::Instance;
use paddock_core::store::StoreError;
use paddock_core::user::Principal;
use paddock_core::ModelId;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A catalog model as users see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: Model,
    /// About how long a deploy takes to answer, from the model's size.
    pub estimated_start_seconds: u32,
    /// Whether a deploy starts from what is on this host or downloads the
    /// model (`model_size_gb`) first.
    pub availability: Availability,
}

/// Where a deploy of a model gets its weights.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// On this host (in its model store, or in the model's Docker image):
    /// a deploy loads it at once.
    OnHost,
    /// Not on this host yet: the first deploy downloads it from the
    /// registry (the instance is PULLING meanwhile); later deploys find it.
    Download,
    /// The model servers run elsewhere (ECS): their image carries the
    /// model, or they download it as they start.
    Remote,
}

impl Availability {
    /// How the catalog says it, for a model of `size_gb`.
    pub fn describe(self, size_gb: f64) -> String {
        match self {
            Availability::OnHost => "On this host".into(),
            Availability::Download => {
                format!("Downloads {} on first deploy", gigabytes(size_gb))
            }
            Availability::Remote => "Runs from its image".into(),
        }
    }
}

/// A model's size as people read it: `0.25 GB`, `4.7 GB`.
pub fn gigabytes(gb: f64) -> String {
    if gb < 1.0 {
        format!("{gb:.2} GB")
    } else {
        format!("{gb:.1} GB")
    }
}

/// One CPU size with its prices.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CpuSizeView {
    /// CPU units (1024 = 1 vCPU).
    pub cpu: u32,
    pub vcpu: f64,
    /// MiB.
    pub memory: u32,
    /// Fargate's list price.
    pub price_per_hour_usd: f64,
    /// What this paddock charges when it runs the size itself.
    pub local_price_per_hour_usd: f64,
}

/// The Fargate price table and its sizes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct FargateView {
    pub vcpu_hour_usd: f64,
    pub gb_hour_usd: f64,
    pub sizes: Vec<CpuSizeView>,
}

/// Every size a model can be deployed on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ComputeView {
    pub prices_as_of: String,
    pub region: String,
    pub fargate: FargateView,
    pub gpu_instance_types: Vec<GpuInstanceType>,
    /// Spot prices as fractions of on-demand, and whether this paddock's
    /// driver can run spot capacity at all.
    pub spot: SpotView,
    /// What this paddock's driver can run.
    pub driver: DriverView,
}

/// The driver instances run on, as the deploy dialog needs it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct DriverView {
    /// `process`, `docker` or `ecs`.
    pub name: &'static str,
    /// Whether CPU sizes run on this paddock's own machines (not Fargate).
    pub local: bool,
    /// Whether GPU sizes can be deployed.
    pub gpu: bool,
    /// Why not, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_unavailable_reason: Option<String>,
}

/// Spot capacity here.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SpotView {
    /// Whether `"spot": true` can be deployed (the ecs driver).
    pub available: bool,
    #[serde(flatten)]
    pub prices: paddock_core::compute::SpotPrices,
}

fn parse_model(body: Value) -> Result<Model> {
    let m: Model =
        serde_json::from_value(body).map_err(|e| Error::invalid(format!("model: {e}")))?;
    let mut errors = FieldErrors::default();
    for p in m.problems() {
        errors.add_message(&p.to_string());
    }
    errors.finish()?;
    Ok(m)
}

impl Control {
    /// Where a deploy of `model` gets its weights on this paddock.
    pub async fn availability(&self, model: &ModelId) -> Availability {
        match &self.models {
            Some(cache) if self.driver.reads_host_store(model).await => {
                if cache.has(model) {
                    Availability::OnHost
                } else {
                    Availability::Download
                }
            }
            _ if self.driver.capabilities().local => Availability::OnHost,
            _ => Availability::Remote,
        }
    }

    /// The view of a catalog entry.
    pub async fn model_view(&self, model: Model) -> ModelView {
        ModelView {
            estimated_start_seconds: model.estimated_start_seconds(),
            availability: self.availability(&model.model_id).await,
            model,
        }
    }

    async fn model_views(&self, models: impl IntoIterator<Item = Model>) -> Vec<ModelView> {
        let mut views = Vec::new();
        for m in models {
            views.push(self.model_view(m).await);
        }
        views
    }

    /// The active catalog, by id.
    pub async fn models(&self) -> Result<Vec<ModelView>> {
        let models = self.store.list_models().await?;
        Ok(self
            .model_views(models.into_iter().filter(|m| m.is_active))
            .await)
    }

    /// One model; an inactive one only for admins.
    pub async fn model(&self, caller: &Principal, id: &str) -> Result<ModelView> {
        match self.store.get_model(&ModelId::new(id)).await? {
            Some(m) if m.is_active || self.as_admin(caller).is_some() => {
                Ok(self.model_view(m).await)
            }
            _ => Err(Error::not_found(format!(
                "model {id:?} is not in the catalog; GET /api/models lists what can be deployed"
            ))),
        }
    }

    /// The catalog entry an instance was deployed from, even if it has
    /// been deactivated since (`None` if it was removed).
    pub async fn deployed_model(&self, i: &Instance) -> Result<Option<Model>> {
        Ok(self.store.get_model(&i.model_id).await?)
    }

    /// The CPU and GPU sizes, with prices.
    pub fn compute_sizes(&self) -> ComputeView {
        let t = &self.compute;
        let sizes = t
            .fargate
            .sizes
            .iter()
            .flat_map(|s| s.memory.values().into_iter().map(move |mem| (s.cpu, mem)))
            .map(|(cpu, memory)| {
                let spec = ComputeSpec::Cpu {
                    vcpu_milli: cpu * 1000 / 1024,
                    memory_mb: memory,
                    spot: false,
                };
                CpuSizeView {
                    cpu,
                    vcpu: cpu as f64 / 1024.0,
                    memory,
                    price_per_hour_usd: round6(t.price_per_hour(&spec, None)),
                    local_price_per_hour_usd: round6(self.price_per_hour(&spec)),
                }
            })
            .collect();
        ComputeView {
            prices_as_of: t.prices_as_of.clone(),
            region: t.region.clone(),
            fargate: FargateView {
                vcpu_hour_usd: t.fargate.vcpu_hour_usd,
                gb_hour_usd: t.fargate.gb_hour_usd,
                sizes,
            },
            gpu_instance_types: t.gpu_instance_types.clone(),
            spot: SpotView {
                available: self.driver.capabilities().spot,
                prices: t.spot.clone(),
            },
            driver: {
                let caps = self.driver.capabilities();
                let name = self.driver.name();
                DriverView {
                    name,
                    local: caps.local,
                    gpu: caps.gpu,
                    gpu_unavailable_reason: (!caps.gpu).then(|| match name {
                        "docker" => "This Docker engine has no NVIDIA runtime, so only CPU sizes can run here".to_owned(),
                        _ => format!("This paddock runs instances with the {name} driver, which has no GPU; GPU sizes need the ecs driver (or docker with an NVIDIA runtime)"),
                    }),
                }
            },
        }
    }
}

impl AdminOps<'_> {
    /// The whole catalog, inactive models included.
    pub async fn all_models(&self) -> Result<Vec<ModelView>> {
        let models = self.control.store.list_models().await?;
        Ok(self.control.model_views(models).await)
    }

    /// Adds a model ([`Error::Conflict`] if its id exists).
    pub async fn create_model(&self, body: Value) -> Result<ModelView> {
        let mut m = parse_model(body)?;
        m.updated_at = Some(self.control.clock.now());
        if !self.control.store.insert_model_if_absent(&m).await? {
            return Err(Error::Conflict(format!(
                "model {} already exists; edit it with PATCH /api/models/{}",
                m.model_id, m.model_id
            )));
        }
        Ok(self.control.model_view(m).await)
    }

    /// Changes the fields of a model that `patch` names (`is_active: false`
    /// deactivates it), on the record as stored: if another edit lands in
    /// between, the patch is applied again on top of it, so neither edit
    /// undoes the other.
    pub async fn update_model(&self, id: &str, patch: Value) -> Result<ModelView> {
        let Value::Object(patch) = patch else {
            return Err(Error::invalid(
                "send a JSON object with the fields to change",
            ));
        };
        if patch.get("model_id").is_some_and(|v| v != &json!(id)) {
            return Err(Error::invalid(
                "model_id: cannot be changed; add a new model instead",
            ));
        }
        let store = &self.control.store;
        let model_id = ModelId::new(id);
        let not_found = || Error::not_found(format!("model {id:?} is not in the catalog"));
        let mut existing = store.get_model(&model_id).await?.ok_or_else(not_found)?;
        let mut retries = 0;
        let stored = loop {
            let merged = merge(&existing, &patch)?;
            let mut m = parse_model(merged)?;
            m.updated_at = Some(self.control.clock.now());
            m.version = existing.version;
            match store.update_model(&m).await {
                Ok(stored) => break stored,
                Err(StoreError::Stale(_)) if retries < STALE_RETRIES => {
                    retries += 1;
                    existing = store.get_model(&model_id).await?.ok_or_else(not_found)?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(self.control.model_view(stored).await)
    }
}

/// `existing` with the fields of `patch` (those a client may set).
fn merge(existing: &Model, patch: &Map<String, Value>) -> Result<Value> {
    let mut merged = serde_json::to_value(existing).map_err(|e| Error::Internal(e.to_string()))?;
    for (k, v) in patch {
        if matches!(
            k.as_str(),
            "estimated_start_seconds" | "availability" | "updated_at"
        ) {
            continue;
        }
        merged[k] = v.clone();
    }
    Ok(merged)
}
