//! Compute sizes: what an instance runs on and what it costs.
//!
//! Owns [`ComputeSpec`], the table of valid sizes shipped in
//! `catalog/compute.json` (Fargate's (cpu, memory) pairs and EC2 GPU instance
//! types with list prices), and the rule that decides whether a model fits a
//! size. It does not know how a size is launched; drivers do.

use crate::catalog::Model;
use serde::{Deserialize, Serialize};

/// What an instance runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ComputeSpec {
    /// CPU compute (a Fargate task on AWS, a local process by default).
    Cpu {
        /// Thousandths of a vCPU (Fargate's 1024 CPU units = 1000 here).
        vcpu_milli: u32,
        /// Memory in MiB.
        memory_mb: u32,
        /// Spot capacity (FARGATE_SPOT on AWS): cheaper, and may be
        /// interrupted; an interrupted instance is restarted.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        spot: bool,
    },
    /// A GPU instance type (EC2 capacity on AWS).
    Gpu {
        instance_type: String,
        gpu_count: u32,
        /// Spot capacity (the spot GPU capacity provider on AWS).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        spot: bool,
    },
}

impl ComputeSpec {
    /// Whether it asks for spot capacity.
    pub fn is_spot(&self) -> bool {
        match self {
            ComputeSpec::Cpu { spot, .. } | ComputeSpec::Gpu { spot, .. } => *spot,
        }
    }

    /// The same size, on spot capacity or not.
    pub fn with_spot(mut self, on: bool) -> Self {
        match &mut self {
            ComputeSpec::Cpu { spot, .. } | ComputeSpec::Gpu { spot, .. } => *spot = on,
        }
        self
    }

    /// `fargate` or `gpu`: the `compute` field of the original system's records.
    pub fn compute_kind(&self) -> &'static str {
        match self {
            ComputeSpec::Cpu { .. } => "fargate",
            ComputeSpec::Gpu { .. } => "gpu",
        }
    }

    /// The `instance_type` field shown to users: the EC2 type for GPU, and
    /// `cpu-<vcpu>vcpu-<mem>mb` for CPU sizes.
    pub fn instance_type(&self) -> String {
        match self {
            ComputeSpec::Cpu {
                vcpu_milli,
                memory_mb,
                ..
            } => format!("cpu-{}vcpu-{}mb", fmt_vcpu(*vcpu_milli), memory_mb),
            ComputeSpec::Gpu { instance_type, .. } => instance_type.clone(),
        }
    }

    /// Whole vCPUs to give a local runtime (at least one thread).
    pub fn threads(&self, table: &ComputeTable) -> u32 {
        match self {
            ComputeSpec::Cpu { vcpu_milli, .. } => vcpu_milli.div_ceil(1000).max(1),
            ComputeSpec::Gpu { instance_type, .. } => {
                table.gpu(instance_type).map(|g| g.vcpu).unwrap_or(1)
            }
        }
    }
}

fn fmt_vcpu(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{}", milli as f64 / 1000.0)
    }
}

/// Memory values allowed for one Fargate CPU size: a list or a stepped range.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemoryChoices {
    List(Vec<u32>),
    Range { min: u32, max: u32, step: u32 },
}

impl MemoryChoices {
    /// Every allowed value, ascending.
    pub fn values(&self) -> Vec<u32> {
        match self {
            MemoryChoices::List(v) => v.clone(),
            MemoryChoices::Range { min, max, step } => {
                (*min..=*max).step_by(*step as usize).collect()
            }
        }
    }
}

/// One Fargate CPU size and its memory choices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FargateCpu {
    /// CPU units (1024 = 1 vCPU).
    pub cpu: u32,
    /// Memory choices in MiB.
    pub memory: MemoryChoices,
}

/// Fargate's sizes and prices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fargate {
    pub vcpu_hour_usd: f64,
    pub gb_hour_usd: f64,
    pub sizes: Vec<FargateCpu>,
}

/// One EC2 GPU instance type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuInstanceType {
    pub instance_type: String,
    pub vcpu: u32,
    pub memory_mb: u32,
    pub gpu_count: u32,
    pub gpu_type: String,
    /// GPU memory summed over the instance's GPUs, in MiB.
    pub gpu_memory_mb: u32,
    pub price_per_hour_usd: f64,
}

/// What spot capacity costs, as a fraction of the on-demand price. Spot
/// prices move with supply and demand; these are typical figures, with
/// their source in the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpotPrices {
    /// Fargate Spot's price over Fargate's (vCPU and memory alike).
    pub fargate_fraction: f64,
    /// EC2 Spot's price over on-demand, for the GPU instance types.
    pub gpu_fraction: f64,
    pub source: String,
}

/// The whole table of sizes, as shipped in `catalog/compute.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComputeTable {
    pub prices_as_of: String,
    pub region: String,
    pub fargate: Fargate,
    pub spot: SpotPrices,
    pub gpu_instance_types: Vec<GpuInstanceType>,
}

/// The compute table shipped with paddock.
pub const DEFAULT_COMPUTE_JSON: &str = include_str!("../../../catalog/compute.json");

/// Why a size was refused; the message says what to change.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SizeError {
    #[error("{0}")]
    InvalidSize(String),
    #[error("{0}")]
    DoesNotFit(String),
}

impl ComputeTable {
    /// The table shipped in the repository.
    pub fn builtin() -> Self {
        serde_json::from_str(DEFAULT_COMPUTE_JSON).expect("the shipped compute table is valid")
    }

    /// A GPU instance type by name.
    pub fn gpu(&self, instance_type: &str) -> Option<&GpuInstanceType> {
        self.gpu_instance_types
            .iter()
            .find(|g| g.instance_type == instance_type)
    }

    /// The CPU spec for a Fargate (cpu units, memory MiB) pair, if the pair is valid.
    pub fn fargate_spec(&self, cpu_units: u32, memory_mb: u32) -> Result<ComputeSpec, SizeError> {
        let Some(size) = self.fargate.sizes.iter().find(|s| s.cpu == cpu_units) else {
            let valid: Vec<String> = self
                .fargate
                .sizes
                .iter()
                .map(|s| s.cpu.to_string())
                .collect();
            return Err(SizeError::InvalidSize(format!(
                "cpu {cpu_units} is not a Fargate size; use one of {} CPU units (1024 = 1 vCPU)",
                valid.join(", ")
            )));
        };
        let choices = size.memory.values();
        if !choices.contains(&memory_mb) {
            return Err(SizeError::InvalidSize(format!(
                "memory {memory_mb} MiB is not valid with cpu {cpu_units}; choose {}",
                describe_choices(&size.memory)
            )));
        }
        Ok(ComputeSpec::Cpu {
            vcpu_milli: cpu_units * 1000 / 1024,
            memory_mb,
            spot: false,
        })
    }

    /// The GPU spec for an instance type, if it is known.
    pub fn gpu_spec(&self, instance_type: &str) -> Result<ComputeSpec, SizeError> {
        match self.gpu(instance_type) {
            Some(g) => Ok(ComputeSpec::Gpu {
                instance_type: g.instance_type.clone(),
                gpu_count: g.gpu_count,
                spot: false,
            }),
            None => Err(SizeError::InvalidSize(format!(
                "unknown instance_type {instance_type:?}; GET /api/compute lists the GPU instance types"
            ))),
        }
    }

    /// Refuses a size on which the model cannot load.
    pub fn check_fit(&self, model: &Model, spec: &ComputeSpec) -> Result<(), SizeError> {
        match spec {
            ComputeSpec::Cpu { memory_mb, .. } => {
                let need = model.cpu_requirements.memory_mb;
                if *memory_mb < need {
                    let largest = self
                        .fargate
                        .sizes
                        .iter()
                        .flat_map(|s| s.memory.values())
                        .max()
                        .unwrap_or(0);
                    let hint = if need > largest {
                        format!(
                            "; no CPU size is that large (at most {largest} MiB), deploy it on a GPU instance type"
                        )
                    } else {
                        format!("; pick memory of at least {need} MiB")
                    };
                    return Err(SizeError::DoesNotFit(format!(
                        "{} needs {need} MiB of memory on CPU but the size has {memory_mb} MiB{hint}",
                        model.model_id
                    )));
                }
                Ok(())
            }
            ComputeSpec::Gpu { instance_type, .. } => {
                let g = self.gpu(instance_type).ok_or_else(|| {
                    SizeError::InvalidSize(format!("unknown instance_type {instance_type:?}"))
                })?;
                let need = model.gpu_requirements.gpu_memory_mb;
                if g.gpu_memory_mb < need {
                    return Err(SizeError::DoesNotFit(format!(
                        "{} needs {need} MiB of GPU memory but {} has {} MiB; pick a larger instance type",
                        model.model_id, g.instance_type, g.gpu_memory_mb
                    )));
                }
                let want = &model.gpu_requirements.gpu_type;
                if want != "any" && !want.eq_ignore_ascii_case(&g.gpu_type) {
                    return Err(SizeError::DoesNotFit(format!(
                        "{} needs a {want} GPU but {} has {}",
                        model.model_id, g.instance_type, g.gpu_type
                    )));
                }
                Ok(())
            }
        }
    }

    /// Price per hour of a size in USD: the on-demand list price, or the
    /// spot price for a spot size. `local_cpu_hour_usd` overrides the
    /// cloud's prices for CPU sizes run on the operator's own machine
    /// (`None` prices them as Fargate would).
    pub fn price_per_hour(&self, spec: &ComputeSpec, local_cpu_hour_usd: Option<f64>) -> f64 {
        match spec {
            ComputeSpec::Cpu {
                vcpu_milli,
                memory_mb,
                spot,
            } => match local_cpu_hour_usd {
                Some(p) => p * (*vcpu_milli as f64 / 1000.0),
                None => {
                    let on_demand = (*vcpu_milli as f64 / 1000.0) * self.fargate.vcpu_hour_usd
                        + (*memory_mb as f64 / 1024.0) * self.fargate.gb_hour_usd;
                    if *spot {
                        on_demand * self.spot.fargate_fraction
                    } else {
                        on_demand
                    }
                }
            },
            ComputeSpec::Gpu {
                instance_type,
                spot,
                ..
            } => {
                let on_demand = self
                    .gpu(instance_type)
                    .map(|g| g.price_per_hour_usd)
                    .unwrap_or(0.0);
                if *spot {
                    on_demand * self.spot.gpu_fraction
                } else {
                    on_demand
                }
            }
        }
    }
}

fn describe_choices(m: &MemoryChoices) -> String {
    match m {
        MemoryChoices::List(v) => {
            let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("one of {} MiB", v.join(", "))
        }
        MemoryChoices::Range { min, max, step } => {
            format!("{min} to {max} MiB in steps of {step}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::default_catalog;

    fn model(id: &str) -> Model {
        default_catalog()
            .into_iter()
            .find(|m| m.model_id.as_str() == id)
            .unwrap()
    }

    #[test]
    fn fargate_pairs() {
        let t = ComputeTable::builtin();
        assert!(t.fargate_spec(1024, 2048).is_ok());
        assert!(t.fargate_spec(256, 512).is_ok());
        assert!(t.fargate_spec(16384, 122880).is_ok());
        assert!(t.fargate_spec(1024, 1024).is_err());
        assert!(t.fargate_spec(8192, 18432).is_err());
        assert!(t.fargate_spec(3000, 4096).is_err());
        assert_eq!(
            t.fargate_spec(512, 1024).unwrap(),
            ComputeSpec::Cpu {
                vcpu_milli: 500,
                memory_mb: 1024,
                spot: false
            }
        );
    }

    #[test]
    fn fit_rules() {
        let t = ComputeTable::builtin();
        let big = model("llama3.1:70b");
        let e = t
            .check_fit(&big, &t.fargate_spec(16384, 122880).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("GPU"), "{e}");
        assert!(t
            .check_fit(&big, &t.gpu_spec("g5.xlarge").unwrap())
            .is_err());
        assert!(t
            .check_fit(&big, &t.gpu_spec("p4d.24xlarge").unwrap())
            .is_ok());
        let small = model("gemma3:270m");
        assert!(t
            .check_fit(&small, &t.fargate_spec(256, 1024).unwrap())
            .is_ok());
        assert!(t
            .check_fit(&small, &t.fargate_spec(256, 512).unwrap())
            .is_err());
    }

    #[test]
    fn prices() {
        let t = ComputeTable::builtin();
        let cpu = t.fargate_spec(1024, 2048).unwrap();
        let p = t.price_per_hour(&cpu, None);
        assert!((p - (0.04 + 2.0 * 0.004445)).abs() < 0.001, "{p}");
        assert_eq!(t.price_per_hour(&cpu, Some(0.0)), 0.0);
        assert_eq!(
            t.price_per_hour(&t.gpu_spec("g5.xlarge").unwrap(), None),
            1.006
        );
        // Spot is the table's fraction of on-demand, in the cloud only.
        let spot = cpu.clone().with_spot(true);
        let ps = t.price_per_hour(&spot, None);
        assert!((ps - p * t.spot.fargate_fraction).abs() < 1e-9, "{ps}");
        assert!(ps < p);
        assert_eq!(t.price_per_hour(&spot, Some(0.0)), 0.0);
        let g = t.gpu_spec("g5.xlarge").unwrap().with_spot(true);
        assert!((t.price_per_hour(&g, None) - 1.006 * t.spot.gpu_fraction).abs() < 1e-9);
    }

    #[test]
    fn spot_is_kept_in_records_only_when_set() {
        let t = ComputeTable::builtin();
        let cpu = t.fargate_spec(1024, 2048).unwrap();
        let json = serde_json::to_value(&cpu).unwrap();
        assert!(json.get("spot").is_none(), "{json}");
        let back: ComputeSpec = serde_json::from_value(json).unwrap();
        assert!(!back.is_spot());
        let spot = serde_json::to_value(cpu.with_spot(true)).unwrap();
        assert_eq!(spot["spot"], true);
        assert!(serde_json::from_value::<ComputeSpec>(spot)
            .unwrap()
            .is_spot());
    }
}
