//! The model catalog: what can be deployed and what it needs.
//!
//! Owns the [`Model`] record (field names kept from the original system's
//! DynamoDB items), its validation, and the default catalog shipped in
//! `catalog/models.json`. Loading the catalog into a store is the store's
//! business ([`crate::store::Store::insert_model_if_absent`]).

use crate::{ModelId, Timestamp};
use serde::{Deserialize, Serialize};

/// What a model needs on CPU compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CpuRequirements {
    /// vCPUs recommended for usable speed (a smaller size is allowed).
    pub vcpu: f64,
    /// Memory the model needs to load, in MiB (a smaller size is refused).
    pub memory_mb: u32,
}

/// What a model needs on GPU compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuRequirements {
    /// GPU memory the model needs, in MiB, summed over the instance's GPUs.
    pub gpu_memory_mb: u32,
    /// `any`, or a GPU model name (`A10G`, `L4`, ...) the model requires.
    pub gpu_type: String,
}

/// Whether a model was tuned to follow chat turns or only continues text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A base (pretrained) model: it continues text; the playground opens
    /// it in Complete mode.
    Base,
    /// An instruction- or chat-tuned model.
    #[default]
    Instruct,
}

impl ModelKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Base => "base",
            ModelKind::Instruct => "instruct",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "base" => Some(ModelKind::Base),
            "instruct" => Some(ModelKind::Instruct),
            _ => None,
        }
    }
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Model {
    /// The Ollama tag, e.g. `llama3.1:8b`; the key of the catalog.
    pub model_id: ModelId,
    /// Human name, e.g. `Llama 3.1 8B`.
    pub model_name: String,
    /// Family used for filtering, e.g. `llama3.1`.
    pub model_family: String,
    /// Download size in GB (decimal), shown to users and used for start-time estimates.
    pub model_size_gb: f64,
    pub cpu_requirements: CpuRequirements,
    pub gpu_requirements: GpuRequirements,
    pub description: String,
    /// e.g. `chat`, `completion`, `qa`, `vision`, `tool-use`.
    pub supported_tasks: Vec<String>,
    /// `base` or `instruct` (the default when absent).
    #[serde(default)]
    pub kind: ModelKind,
    /// Inactive models stay in the catalog for admins but cannot be deployed.
    pub is_active: bool,
    /// When the entry was last changed (absent in the shipped file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
    /// Optimistic-concurrency version: every store write bumps it, and
    /// [`Store::update_model`](crate::store::Store::update_model) writes
    /// only over the version it was read at. Not part of the catalog file
    /// or the API.
    #[serde(skip)]
    pub version: u64,
}

/// The catalog file shipped with paddock.
pub const DEFAULT_CATALOG_JSON: &str = include_str!("../../../catalog/models.json");

#[derive(Deserialize)]
struct CatalogFile {
    models: Vec<Model>,
}

/// Why a catalog entry was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("invalid catalog JSON: {0}")]
    Json(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// Parses a catalog file (`{"models": [...]}`) and validates every entry.
pub fn parse_catalog(json: &str) -> Result<Vec<Model>, CatalogError> {
    let file: CatalogFile =
        serde_json::from_str(json).map_err(|e| CatalogError::Json(e.to_string()))?;
    for m in &file.models {
        m.validate()?;
    }
    Ok(file.models)
}

/// The default catalog: the original system's 30 models plus `gemma3:270m`.
pub fn default_catalog() -> Vec<Model> {
    parse_catalog(DEFAULT_CATALOG_JSON).expect("the shipped catalog is valid")
}

impl Model {
    /// Checks the fields an admin can get wrong: the first problem.
    pub fn validate(&self) -> Result<(), CatalogError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem with the fields an admin can get wrong, in field order.
    pub fn problems(&self) -> Vec<CatalogError> {
        let mut out = Vec::new();
        let mut invalid = |field, message: &str| {
            out.push(CatalogError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        let id = self.model_id.as_str();
        if id.is_empty() || id.len() > 128 {
            invalid("model_id", "must be 1 to 128 characters");
        } else if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
        {
            invalid(
                "model_id",
                "may contain only letters, digits and - _ . : / (an Ollama tag such as llama3.1:8b)",
            );
        }
        if self.model_name.trim().is_empty() {
            invalid("model_name", "must not be empty");
        }
        if self.model_family.trim().is_empty() {
            invalid("model_family", "must not be empty");
        }
        if !(self.model_size_gb.is_finite() && self.model_size_gb > 0.0) {
            invalid("model_size_gb", "must be a positive number");
        }
        if !(self.cpu_requirements.vcpu.is_finite() && self.cpu_requirements.vcpu > 0.0) {
            invalid("cpu_requirements.vcpu", "must be a positive number");
        }
        if self.cpu_requirements.memory_mb == 0 {
            invalid("cpu_requirements.memory_mb", "must be positive");
        }
        if self.gpu_requirements.gpu_memory_mb == 0 {
            invalid("gpu_requirements.gpu_memory_mb", "must be positive");
        }
        if self.gpu_requirements.gpu_type.trim().is_empty() {
            invalid("gpu_requirements.gpu_type", "must be `any` or a GPU model");
        }
        out
    }

    /// A rough start-time estimate in seconds (pulling and loading the weights),
    /// shown in the catalog so users know what to expect.
    pub fn estimated_start_seconds(&self) -> u32 {
        // ~100 MB/s pull from a registry plus ~1 GB/s load, and a fixed 5 s start.
        (5.0 + self.model_size_gb * 10.0 + self.model_size_gb).round() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_has_the_original_models_and_gemma() {
        let models = default_catalog();
        assert_eq!(models.len(), 31);
        assert!(models.iter().any(|m| m.model_id.as_str() == "gemma3:270m"));
        assert!(models.iter().any(|m| m.model_id.as_str() == "llama3.1:8b"));
    }

    #[test]
    fn default_catalog_descriptions_are_english_text() {
        // Dashboard fonts lack CJK glyphs; the original data had some.
        for m in default_catalog() {
            assert!(
                m.description
                    .chars()
                    .all(|c| (c as u32) < 0x2E80 || (c as u32) > 0xFFEF),
                "{}: {:?}",
                m.model_id,
                m.description
            );
        }
    }

    #[test]
    fn reports_every_problem() {
        let mut m = default_catalog().remove(0);
        m.model_name = " ".into();
        m.model_size_gb = 0.0;
        m.cpu_requirements.memory_mb = 0;
        let fields: Vec<String> = m
            .problems()
            .iter()
            .map(|e| e.to_string().split(':').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            fields,
            ["model_name", "model_size_gb", "cpu_requirements.memory_mb"]
        );
        assert!(matches!(
            m.validate(),
            Err(CatalogError::Invalid {
                field: "model_name",
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_ids() {
        let mut m = default_catalog().remove(0);
        m.model_id = ModelId::new("bad id");
        assert!(matches!(
            m.validate(),
            Err(CatalogError::Invalid {
                field: "model_id",
                ..
            })
        ));
    }
}
