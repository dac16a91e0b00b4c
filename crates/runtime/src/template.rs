//! Chat prompt rendering: turns a list of chat messages into the prompt text
//! the model expects, with the chat template from the model's GGUF metadata
//! (as llama.cpp understands it), falling back to the template of the model's
//! architecture family (ChatML when unknown) when the model has none (base
//! models) or llama.cpp does not recognise it.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

/// One chat turn: `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub role: String,
    pub content: String,
}

/// Renders `turns` with the model's template and opens the assistant turn.
pub(crate) fn render(model: &LlamaModel, turns: &[Turn]) -> Result<String, String> {
    let messages = turns
        .iter()
        .map(|t| {
            LlamaChatMessage::new(t.role.clone(), t.content.clone())
                .map_err(|_| "a message contains a NUL character".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Ok(template) = model.chat_template(None) {
        if let Ok(prompt) = model.apply_chat_template(&template, &messages, true) {
            return Ok(prompt);
        }
        tracing::debug!("llama.cpp does not know the model's chat template; using a fallback");
    }
    let fallback = LlamaChatTemplate::new(fallback_name(model)).map_err(|e| e.to_string())?;
    model
        .apply_chat_template(&fallback, &messages, true)
        .map_err(|e| format!("rendering the chat prompt failed: {e}"))
}

/// The llama.cpp built-in template for models without a usable one.
fn fallback_name(model: &LlamaModel) -> &'static str {
    let arch = model
        .meta_val_str("general.architecture")
        .unwrap_or_default();
    if arch.starts_with("gemma") {
        "gemma"
    } else if arch.starts_with("phi3") {
        "phi3"
    } else if arch == "llama" {
        "llama3"
    } else {
        "chatml"
    }
}
