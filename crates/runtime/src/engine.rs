//! The batch scheduler: one OS thread owns the llama.cpp context and decodes
//! every active sequence together, one token per decoding sequence plus
//! prompt chunks of newly admitted ones in each `llama_decode` call
//! (continuous batching).
//!
//! HTTP handlers tokenize on their own task, then hand a [`Job`] to the
//! scheduler over a channel and read [`Event`]s back from an unbounded tokio
//! channel. A job whose event receiver is dropped (the client went away) is
//! cancelled at the next step and its sequence slot freed. This module does
//! not know about HTTP or wire formats.
//!
//! Prefix cache: a sequence keeps its KV cells when its job ends, and the
//! scheduler remembers which tokens they hold. A new job goes to the free
//! sequence whose cached tokens share the longest prefix with its prompt
//! (ties: the least recently used; no shared prefix: see
//! [`choose_sequence`]), which keeps that
//! prefix and decodes only the rest: the next turn of a conversation, or a
//! new conversation with the same system prompt, skips what was read
//! before. The context is created with a full-size sliding-window cache
//! (`swa_full`), so a kept prefix has every cell its next token attends to
//! in models with sliding-window attention (Gemma 3); without it, such a
//! model's window layers hold only the newest cells of each sequence.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;
use crate::{RuntimeConfig, RuntimeError};
use paddock_models::ResolvedModel;

/// Tokens per `llama_decode` call; prompt chunks fill what decoding
/// sequences leave free.
const N_BATCH: usize = 512;

/// How a request wants its tokens chosen.
#[derive(Debug, Clone)]
pub(crate) struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// A GBNF grammar the output must follow (`format: "json"`).
    pub grammar: Option<String>,
}

impl Default for Sampling {
    /// Ollama's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            seed: rand_seed(),
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            grammar: None,
        }
    }
}

/// A seed for requests that do not fix one.
fn rand_seed() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Truncation is the point: any 32 bits of a changing value make a seed.
    #[allow(clippy::cast_possible_truncation)]
    let count = COUNTER.fetch_add(0x9E37_79B9, Relaxed) as u32;
    nanos ^ count
}

/// One generation request, tokenized and ready to decode.
#[derive(Debug)]
pub(crate) struct Job {
    pub prompt: Vec<LlamaToken>,
    pub sampling: Sampling,
    /// The most tokens to generate; `None` means until the context is full.
    pub max_tokens: Option<u32>,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Where text and the final statistics go.
    pub events: UnboundedSender<Event>,
    /// When the HTTP request arrived.
    pub received: Instant,
}

/// What the scheduler reports about a job.
#[derive(Debug)]
pub(crate) enum Event {
    /// Newly generated text (complete UTF-8, stop strings held back).
    Text(String),
    /// Generation ended; no more events follow.
    Done(Completion),
    /// Generation failed; no more events follow.
    Failed(String),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// `num_predict` tokens or the context filled up.
    Length,
}

/// The statistics of a finished job.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// From arrival to admission into a sequence slot.
    pub queued: Duration,
    /// Prompt tokens found in the prefix cache (not evaluated again).
    pub cached_tokens: u32,
    /// Prompt evaluation, from admission to the first sampled token.
    pub prompt_eval: Duration,
    /// From the first to the last sampled token.
    pub eval: Duration,
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error("server busy: {0} requests already waiting")]
    QueueFull(usize),
    #[error("the model scheduler has stopped")]
    Stopped,
}

/// What the API reports about the loaded model.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub name: String,
    pub digest: String,
    pub size: u64,
    pub modified_at: chrono::DateTime<chrono::Utc>,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
    /// The chat template from the GGUF metadata, if any.
    pub template: Option<String>,
    /// GGUF metadata as strings (long arrays left out).
    pub metadata: Vec<(String, String)>,
    pub context_length: u32,
}

/// The loaded model and the handle to its scheduler thread.
#[derive(Debug)]
pub(crate) struct Engine {
    pub model: Arc<LlamaModel>,
    pub info: ModelInfo,
    pub metrics: Arc<Metrics>,
    /// Context tokens each sequence may use.
    pub ctx_per_seq: u32,
    pub parallel: usize,
    jobs: mpsc::Sender<Job>,
    queue_depth: usize,
}

/// The process-wide llama.cpp backend (it may be initialised only once).
fn backend() -> Result<&'static LlamaBackend, RuntimeError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| RuntimeError::Load(e.clone()))
}

impl Engine {
    /// Loads the model, creates its context on a new scheduler thread and
    /// waits until that thread is ready.
    pub fn start(resolved: &ResolvedModel, cfg: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let backend = backend()?;
        let started = Instant::now();
        let model =
            LlamaModel::load_from_file(backend, &resolved.path, &LlamaModelParams::default())
                .map_err(|e| RuntimeError::Load(format!("{}: {e}", resolved.path.display())))?;
        let model = Arc::new(model);
        let parallel = cfg.parallel.max(1);
        let ctx_per_seq = cfg.ctx.clamp(64, model.n_ctx_train().max(64));
        let threads = i32::try_from(cfg.threads.max(1)).unwrap_or(i32::MAX);
        let metrics = Arc::new(Metrics::default());
        let (jobs, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread_model = Arc::clone(&model);
        let thread_metrics = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("paddock-batch".into())
            .spawn(move || {
                let n_ctx = ctx_per_seq.saturating_mul(u32::try_from(parallel).unwrap_or(u32::MAX));
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(n_ctx))
                    .with_n_batch(N_BATCH as u32)
                    .with_n_ubatch(N_BATCH as u32)
                    .with_n_seq_max(u32::try_from(parallel).unwrap_or(u32::MAX))
                    .with_n_threads(threads)
                    .with_n_threads_batch(threads)
                    .with_swa_full(true);
                let ctx = match thread_model.new_context(backend, params) {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("creating the context: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                Scheduler::new(&thread_model, ctx, parallel, ctx_per_seq, thread_metrics).run(&rx);
            })?;
        ready_rx
            .recv()
            .map_err(|_| RuntimeError::Load("the scheduler thread exited".into()))?
            .map_err(RuntimeError::Load)?;
        let info = describe(&model, resolved, ctx_per_seq);
        tracing::info!(model = %info.name, path = %resolved.path.display(), parallel, ctx_per_seq, threads,
            load_ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok(Self {
            model,
            info,
            metrics,
            ctx_per_seq,
            parallel,
            jobs,
            queue_depth: cfg.queue_depth,
        })
    }

    /// Queues a job; refuses when `queue_depth` jobs are already waiting
    /// for a free sequence.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let waiting = self.metrics.queued.inc();
        // Jobs in flight beyond the free slots wait; the scheduler admits
        // them in arrival order.
        let free = (self.parallel as u64).saturating_sub(self.metrics.active.get());
        if waiting >= self.queue_depth as u64 + free {
            self.metrics.queued.dec();
            self.metrics.rejected.inc();
            return Err(SubmitError::QueueFull(self.queue_depth));
        }
        self.metrics.requests.inc();
        self.jobs.send(job).map_err(|_| {
            self.metrics.queued.dec();
            SubmitError::Stopped
        })
    }

    /// Tokenizes `text` as a prompt (adding BOS as the model wants, parsing
    /// special tokens such as `<start_of_turn>`).
    pub fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }
}

/// Reads the GGUF metadata the API reports.
fn describe(model: &LlamaModel, resolved: &ResolvedModel, ctx: u32) -> ModelInfo {
    let mut metadata = Vec::new();
    for i in 0..model.meta_count() {
        let (Ok(key), Ok(value)) = (model.meta_key_by_index(i), model.meta_val_str_by_index(i))
        else {
            continue;
        };
        if key.starts_with("tokenizer.ggml.")
            || key == "tokenizer.chat_template"
            || value.len() > 512
        {
            continue;
        }
        metadata.push((key, value));
    }
    let meta = |key: &str| model.meta_val_str(key).ok();
    let family = meta("general.architecture").unwrap_or_else(|| "unknown".into());
    let quantization_level = meta("general.file_type")
        .and_then(|t| t.parse::<u32>().ok())
        .map_or_else(|| "unknown".into(), file_type_name);
    #[allow(clippy::cast_precision_loss)]
    let params = model.n_params() as f64;
    let parameter_size = if params >= 1e9 {
        format!("{:.1}B", params / 1e9)
    } else {
        format!("{:.2}M", params / 1e6)
    };
    ModelInfo {
        name: resolved.name.clone(),
        digest: resolved.digest.clone(),
        size: resolved.size,
        modified_at: resolved.modified_at,
        family,
        parameter_size,
        quantization_level,
        template: meta("tokenizer.chat_template"),
        metadata,
        context_length: ctx,
    }
}

/// llama.cpp's `llama_ftype` numbers as Ollama names them.
fn file_type_name(t: u32) -> String {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return format!("type {t}"),
    }
    .to_string()
}

/// One sequence slot's state while a job runs in it.
struct Slot {
    job: Job,
    sampler: LlamaSampler,
    /// How many of the highest raw logits can hold the sampled token, when
    /// the chain may run on those alone (see [`prefilter_size`]).
    prefilter: Option<usize>,
    /// Prompt tokens already in the batch or the KV cache.
    fed: usize,
    /// Leading prompt tokens that were in the prefix cache.
    cached: usize,
    /// Position of the next token.
    n_past: i32,
    /// Token to feed in the next step once the prompt is done.
    last: LlamaToken,
    /// Index of this slot's logits in the current batch, if it has any.
    logits_at: Option<i32>,
    generated: u32,
    admitted: Instant,
    first_token: Option<Instant>,
    last_token_at: Instant,
    /// Bytes of a UTF-8 character split across tokens.
    partial: Vec<u8>,
    /// Decoded text not yet sent because it may begin a stop string.
    held: String,
    piece: Vec<u8>,
}

/// What one sequence's KV cells hold, kept after its job ends.
#[derive(Debug, Default)]
struct Cached {
    /// The tokens at positions `0..tokens.len()`, in the batch or decoded.
    tokens: Vec<LlamaToken>,
    /// When its last job ended; `None` while one runs or before the first.
    ended: Option<Instant>,
}

/// Owns the context and runs the decode loop until every job sender is gone.
struct Scheduler<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    slots: Vec<Option<Slot>>,
    /// Per sequence, beside `slots`: the prefix cache.
    cached: Vec<Cached>,
    waiting: VecDeque<Job>,
    ctx_per_seq: u32,
    metrics: Arc<Metrics>,
    /// Reused candidate buffer for prefiltered sampling.
    candidates: Vec<LlamaTokenData>,
}

impl<'m> Scheduler<'m> {
    fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        parallel: usize,
        ctx_per_seq: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            model,
            ctx,
            batch: LlamaBatch::new(N_BATCH, 1),
            slots: (0..parallel).map(|_| None).collect(),
            cached: (0..parallel).map(|_| Cached::default()).collect(),
            waiting: VecDeque::new(),
            ctx_per_seq,
            metrics,
            candidates: Vec::new(),
        }
    }

    fn run(mut self, jobs: &mpsc::Receiver<Job>) {
        loop {
            let idle = self.waiting.is_empty() && self.slots.iter().all(Option::is_none);
            if idle {
                match jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.waiting.push_back(job);
            }
            self.admit();
            self.cancel_disconnected();
            if !self.build_batch() {
                continue;
            }
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                tracing::error!(error = %e, "llama_decode failed");
                // What this batch added to the sequences is not in their
                // cells: every sequence in it starts again from nothing.
                for i in 0..self.slots.len() {
                    if self.slots[i].is_some() {
                        self.forget(i);
                        self.fail(i, format!("decoding failed: {e}"));
                    }
                }
                continue;
            }
            self.sample_all();
        }
    }

    /// Moves waiting jobs into free slots, dropping ones whose client left.
    fn admit(&mut self) {
        let metrics = Arc::clone(&self.metrics);
        self.waiting.retain(|job| {
            let alive = !job.events.is_closed();
            if !alive {
                metrics.queued.dec();
            }
            alive
        });
        while self.slots.iter().any(Option::is_none) {
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            self.metrics.queued.dec();
            let sampler = match build_sampler(self.model, &job.sampling) {
                Ok(mut s) => {
                    // Penalties look back over the prompt too, as in Ollama
                    // and llama-server; a grammar would reject prompt tokens.
                    if job.sampling.grammar.is_none() {
                        let n = usize::try_from(job.sampling.repeat_last_n).unwrap_or(0);
                        s.accept_many(&job.prompt[job.prompt.len().saturating_sub(n)..]);
                    }
                    s
                }
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e));
                    continue;
                }
            };
            let (i, kept) = self.reuse(&job.prompt);
            self.metrics.active.inc();
            self.metrics.cached_prompt_tokens.inc_by(kept as u64);
            let now = Instant::now();
            let prefilter = prefilter_size(&job.sampling, self.model.n_vocab());
            self.slots[i] = Some(Slot {
                job,
                sampler,
                prefilter,
                fed: kept,
                cached: kept,
                n_past: i32::try_from(kept).unwrap_or(i32::MAX),
                last: LlamaToken::new(0),
                logits_at: None,
                generated: 0,
                admitted: now,
                first_token: None,
                last_token_at: now,
                partial: Vec::new(),
                held: String::new(),
                piece: Vec::with_capacity(32),
            });
        }
    }

    /// Picks the free sequence for `prompt` and trims its cache to the
    /// prefix it shares with the prompt; returns the sequence and how many
    /// leading prompt tokens it already holds. At least the prompt's last
    /// token is always decoded again, for its logits. There is a free
    /// sequence (`admit` checks).
    fn reuse(&mut self, prompt: &[LlamaToken]) -> (usize, usize) {
        let (i, shared) = choose_sequence(
            self.slots
                .iter()
                .zip(&self.cached)
                .map(|(slot, c)| slot.is_none().then_some(c)),
            prompt,
        );
        let keep = shared.min(prompt.len().saturating_sub(1));
        let cached = &mut self.cached[i];
        cached.ended = None;
        if keep < cached.tokens.len() {
            let seq = u32::try_from(i).unwrap_or(u32::MAX);
            let trimmed = u32::try_from(keep)
                .ok()
                .and_then(|p0| self.ctx.clear_kv_cache_seq(Some(seq), Some(p0), None).ok())
                .unwrap_or(false);
            if !trimmed {
                // The memory cannot cut a sequence short: start it afresh.
                self.forget(i);
                return (i, 0);
            }
            self.cached[i].tokens.truncate(keep);
        }
        (i, keep)
    }

    /// Empties sequence `i`'s KV cells and its cache entry.
    fn forget(&mut self, i: usize) {
        let seq = u32::try_from(i).unwrap_or(u32::MAX);
        if let Err(e) = self.ctx.clear_kv_cache_seq(Some(seq), None, None) {
            tracing::warn!(error = %e, seq, "clearing a sequence's KV cache failed");
        }
        self.cached[i].tokens.clear();
    }

    fn cancel_disconnected(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|s| s.job.events.is_closed())
            {
                tracing::debug!(seq = i, "client disconnected, freeing its sequence");
                self.release(i);
            }
        }
    }

    /// Fills the batch: one token per decoding sequence, then prompt chunks.
    /// Returns whether there is anything to decode.
    fn build_batch(&mut self) -> bool {
        self.batch.clear();
        for (seq, (slot, cached)) in self.slots.iter_mut().zip(&mut self.cached).enumerate() {
            let Some(slot) = slot else { continue };
            slot.logits_at = None;
            if slot.fed == slot.job.prompt.len() {
                slot.logits_at = Some(self.batch.n_tokens());
                add(&mut self.batch, slot.last, slot.n_past, seq, true);
                cached.tokens.push(slot.last);
                slot.n_past += 1;
            }
        }
        for (seq, (slot, cached)) in self.slots.iter_mut().zip(&mut self.cached).enumerate() {
            let Some(slot) = slot else { continue };
            let prompt_len = slot.job.prompt.len();
            if slot.fed == prompt_len {
                continue;
            }
            let room = N_BATCH - usize::try_from(self.batch.n_tokens()).unwrap_or(N_BATCH);
            // The prompt's last token goes in a step of its own, as it does
            // when the rest of the prompt is cached: llama.cpp's kernels
            // round a lone row differently from a row among many, so this
            // keeps a cached run's text that of an uncached one.
            let rest = prompt_len - slot.fed;
            let take = room.min(if rest == 1 { 1 } else { rest - 1 });
            for k in slot.fed..slot.fed + take {
                let last = k + 1 == prompt_len;
                if last {
                    slot.logits_at = Some(self.batch.n_tokens());
                }
                add(&mut self.batch, slot.job.prompt[k], slot.n_past, seq, last);
                slot.n_past += 1;
            }
            cached
                .tokens
                .extend_from_slice(&slot.job.prompt[slot.fed..slot.fed + take]);
            slot.fed += take;
        }
        self.batch.n_tokens() > 0
    }

    fn sample_all(&mut self) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            let Some(idx) = slot.logits_at else { continue };
            if slot.job.max_tokens == Some(0) {
                slot.first_token = Some(Instant::now());
                self.finish(i, FinishReason::Length);
                continue;
            }
            let token = match slot.prefilter {
                Some(m) => {
                    top_logits(self.ctx.get_logits_ith(idx), m, &mut self.candidates);
                    let mut array =
                        LlamaTokenDataArray::new(std::mem::take(&mut self.candidates), true);
                    slot.sampler.apply(&mut array);
                    let token = array.selected_token();
                    self.candidates = array.data;
                    match token {
                        Some(token) => {
                            slot.sampler.accept(token);
                            token
                        }
                        // Not expected: the chain ends in dist or greedy.
                        None => slot.sampler.sample(&self.ctx, idx),
                    }
                }
                None => slot.sampler.sample(&self.ctx, idx),
            };
            let now = Instant::now();
            if slot.first_token.is_none() {
                slot.first_token = Some(now);
                self.metrics
                    .prompt_tokens
                    .inc_by((slot.job.prompt.len() - slot.cached) as u64);
                self.metrics
                    .observe_ttft(now.duration_since(slot.job.received).as_secs_f64());
            }
            let vocab = self.model.vocab();
            if vocab.is_eog(token) {
                self.finish(i, FinishReason::Stop);
                continue;
            }
            slot.generated += 1;
            slot.last_token_at = now;
            slot.last = token;
            self.metrics.generated_tokens.inc();
            slot.piece.clear();
            vocab.token_to_piece_into(token, &mut slot.piece, false, None);
            let stopped = push_text(slot);
            if slot.job.events.is_closed() {
                self.release(i);
                continue;
            }
            if stopped {
                self.finish(i, FinishReason::Stop);
            } else if slot.job.max_tokens.is_some_and(|m| slot.generated >= m)
                || slot.n_past >= i32::try_from(self.ctx_per_seq).unwrap_or(i32::MAX) - 1
            {
                self.finish(i, FinishReason::Length);
            }
        }
    }

    /// Ends slot `i`'s job normally, flushing held-back text. The slot is
    /// freed (and the gauges updated) before the client hears of the end.
    fn finish(&mut self, i: usize, reason: FinishReason) {
        let Some(mut slot) = self.take_slot(i) else {
            return;
        };
        let mut rest = std::mem::take(&mut slot.held);
        rest.push_str(&String::from_utf8_lossy(&slot.partial));
        if !rest.is_empty() {
            let _ = slot.job.events.send(Event::Text(rest));
        }
        let first = slot.first_token.unwrap_or(slot.admitted);
        let completion = Completion {
            reason,
            prompt_tokens: u32::try_from(slot.job.prompt.len()).unwrap_or(u32::MAX),
            cached_tokens: u32::try_from(slot.cached).unwrap_or(u32::MAX),
            generated_tokens: slot.generated,
            queued: slot.admitted.duration_since(slot.job.received),
            prompt_eval: first.duration_since(slot.admitted),
            eval: slot.last_token_at.duration_since(first),
        };
        let _ = slot.job.events.send(Event::Done(completion));
    }

    fn fail(&mut self, i: usize, message: String) {
        if let Some(slot) = self.take_slot(i) {
            let _ = slot.job.events.send(Event::Failed(message));
        }
    }

    /// Frees slot `i` at once (its cells stay in the prefix cache).
    fn release(&mut self, i: usize) {
        self.take_slot(i);
    }

    /// Empties slot `i`, keeping its KV cells for the prefix cache, updates
    /// the active gauge and returns what ran in it.
    fn take_slot(&mut self, i: usize) -> Option<Slot> {
        let slot = self.slots[i].take()?;
        self.cached[i].ended = Some(Instant::now());
        self.metrics.active.dec();
        Some(slot)
    }
}

/// Shared leading tokens below which a cached sequence counts as sharing
/// nothing with a prompt: every prompt starts with the same BOS token and
/// often a template's opening, and reusing those few is worth less than
/// keeping a conversation's cache from being overwritten.
const MIN_REUSE: usize = 16;

/// The sequence a prompt goes to among `free` (one entry per sequence,
/// `None` where a job runs), and how many leading tokens of the prompt it
/// holds: the longest shared prefix wins; ties go to the least recently
/// used (one never used first), so a conversation's cache is the last to be
/// overwritten. With no shared prefix (less than [`MIN_REUSE`] tokens), a
/// sequence beside a running one comes first: llama.cpp decodes one step
/// of sequences with consecutive ids as one batch (one matrix product per
/// weight), but each run of them separately, so gaps between running
/// sequences cost a matrix-vector pass each. `free` has a `Some`.
fn choose_sequence<'c>(
    free: impl Iterator<Item = Option<&'c Cached>>,
    prompt: &[LlamaToken],
) -> (usize, usize) {
    let seqs: Vec<Option<&Cached>> = free.collect();
    let running = |i: Option<usize>| i.and_then(|i| seqs.get(i)).is_some_and(Option::is_none);
    // (sequence, shared tokens, beside a running one, when it last ended)
    let mut best: Option<(usize, usize, bool, Option<Instant>)> = None;
    for (i, cached) in seqs.iter().enumerate() {
        let Some(cached) = cached else { continue };
        let shared = cached
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let shared = if shared < MIN_REUSE { 0 } else { shared };
        let beside = shared == 0 && (running(i.checked_sub(1)) || running(Some(i + 1)));
        let better = match best {
            None => true,
            Some((_, s, b, ended)) => {
                (shared, beside) > (s, b) || ((shared, beside) == (s, b) && cached.ended < ended)
            }
        };
        if better {
            best = Some((i, shared, beside, cached.ended));
        }
    }
    best.map_or((0, 0), |(i, shared, _, _)| (i, shared))
}

fn add(batch: &mut LlamaBatch<'_>, token: LlamaToken, pos: i32, seq: usize, logits: bool) {
    let seq = i32::try_from(seq).unwrap_or(i32::MAX);
    // The batch holds N_BATCH tokens and build_batch never adds more.
    batch
        .add(token, pos, &[seq], logits)
        .expect("batch sized for N_BATCH tokens");
}

/// Appends the slot's newest token piece to its text, sending what can no
/// longer be part of a stop string. Returns whether a stop string matched.
fn push_text(slot: &mut Slot) -> bool {
    let mut text = String::new();
    match std::str::from_utf8(&slot.piece) {
        Ok(piece) if slot.partial.is_empty() => text.push_str(piece),
        _ => {
            slot.partial.extend_from_slice(&slot.piece);
            take_utf8(&mut slot.partial, &mut text);
        }
    }
    if slot.job.stop.is_empty() {
        if !text.is_empty() {
            let _ = slot.job.events.send(Event::Text(text));
        }
        return false;
    }
    slot.held.push_str(&text);
    if let Some(at) = slot
        .job
        .stop
        .iter()
        .filter_map(|s| slot.held.find(s.as_str()))
        .min()
    {
        slot.held.truncate(at);
        slot.partial.clear();
        return true;
    }
    let send_upto = slot.held.len() - held_back(&slot.held, &slot.job.stop);
    if send_upto > 0 {
        let rest = slot.held.split_off(send_upto);
        let ready = std::mem::replace(&mut slot.held, rest);
        let _ = slot.job.events.send(Event::Text(ready));
    }
    false
}

/// Moves the longest valid UTF-8 prefix of `bytes` into `out`, keeping an
/// incomplete trailing character; invalid bytes become U+FFFD.
fn take_utf8(bytes: &mut Vec<u8>, out: &mut String) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                bytes.clear();
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                match e.error_len() {
                    None => {
                        bytes.drain(..valid);
                        return;
                    }
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        bytes.drain(..valid + bad);
                    }
                }
            }
        }
    }
}

/// How many trailing bytes of `text` could be the start of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut keep = 0;
    for stop in stops {
        for len in (1..stop.len().min(text.len() + 1)).rev() {
            if len <= keep {
                break;
            }
            if stop.is_char_boundary(len) && text.ends_with(&stop[..len]) {
                keep = len;
                break;
            }
        }
    }
    keep
}

/// How many of the highest raw logits are enough to run `s`'s sampler chain
/// on instead of the whole vocabulary (262k entries for Gemma 3, which the
/// chain would copy and sort on every token), or `None` where the chain
/// needs every logit. The chain's top-k (or greedy pick) only looks at the
/// best tokens, and penalties can only lower the logits of at most
/// `repeat_last_n` recent tokens, so the top `k + repeat_last_n` raw logits
/// hold every token the full chain could keep; every later sampler (top-p,
/// min-p, temperature, the seeded draw) sees the same candidates either way,
/// so the result is identical. A grammar, raising penalties, an unbounded
/// penalty window or no top-k at a non-zero temperature take the full path.
fn prefilter_size(s: &Sampling, n_vocab: i32) -> Option<usize> {
    if s.grammar.is_some() {
        return None;
    }
    let penalties =
        s.repeat_penalty != 1.0 || s.frequency_penalty != 0.0 || s.presence_penalty != 0.0;
    let extra = if penalties {
        if s.repeat_penalty < 1.0 || s.frequency_penalty < 0.0 || s.presence_penalty < 0.0 {
            return None;
        }
        usize::try_from(s.repeat_last_n).ok()?
    } else {
        0
    };
    let best = if s.temperature <= 0.0 {
        1
    } else {
        usize::try_from(s.top_k).ok().filter(|&k| k > 0)?
    };
    let m = best + extra;
    (m.saturating_mul(8) <= usize::try_from(n_vocab).unwrap_or(0)).then_some(m)
}

/// Puts the `m` highest logits into `out`, highest first.
fn top_logits(logits: &[f32], m: usize, out: &mut Vec<LlamaTokenData>) {
    out.clear();
    if m == 0 {
        return;
    }
    // Collect everything above a rising threshold; whenever the buffer
    // holds 4m entries, keep its best m and raise the threshold to their
    // lowest. Linear in the vocabulary, with few buffer writes.
    let cap = m * 4;
    out.reserve(cap);
    let mut threshold = f32::NEG_INFINITY;
    let keep_best = |out: &mut Vec<LlamaTokenData>| {
        out.select_nth_unstable_by(m - 1, |a, b| b.logit().total_cmp(&a.logit()));
        out.truncate(m);
    };
    for (id, &logit) in logits.iter().enumerate() {
        // NaN never passes; -inf only until the buffer first fills.
        if logit > threshold || (out.len() < m && logit >= threshold) {
            let id = i32::try_from(id).unwrap_or(i32::MAX);
            out.push(LlamaTokenData::new(LlamaToken::new(id), logit, 0.0));
            if out.len() == cap {
                keep_best(out);
                threshold = out
                    .iter()
                    .map(LlamaTokenData::logit)
                    .fold(f32::INFINITY, f32::min);
            }
        }
    }
    if out.len() > m {
        keep_best(out);
    }
    // Best first, as the chain's own top-k leaves them, so the seeded draw
    // walks the candidates in the same order.
    out.sort_unstable_by(|a, b| b.logit().total_cmp(&a.logit()));
}

/// The per-request sampler chain, in Ollama's order: penalties, grammar,
/// top-k, top-p, min-p, temperature, then a seeded draw (or greedy at
/// temperature 0).
fn build_sampler(model: &LlamaModel, s: &Sampling) -> Result<LlamaSampler, String> {
    let mut chain = Vec::with_capacity(7);
    if s.repeat_penalty != 1.0 || s.frequency_penalty != 0.0 || s.presence_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            s.repeat_last_n,
            s.repeat_penalty,
            s.frequency_penalty,
            s.presence_penalty,
        ));
    }
    if let Some(grammar) = &s.grammar {
        chain.push(
            LlamaSampler::grammar(model, grammar, "root")
                .map_err(|e| format!("invalid output format grammar: {e}"))?,
        );
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(tokens: &[i32], ended: Option<Instant>) -> Cached {
        Cached {
            tokens: tokens.iter().map(|&t| LlamaToken::new(t)).collect(),
            ended,
        }
    }

    #[test]
    fn a_prompt_goes_to_the_longest_cached_prefix_then_the_least_recently_used() {
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        // Tokens 0..n, then `tail`.
        let run =
            |n: i32, tail: &[i32]| -> Vec<i32> { (0..n).chain(tail.iter().copied()).collect() };
        let prompt: Vec<LlamaToken> = run(40, &[]).into_iter().map(LlamaToken::new).collect();
        let seqs = [
            cached(&run(20, &[99]), Some(t0)),
            cached(&run(30, &[99, 99]), Some(t2)),
            cached(&[0, 1, 2], Some(t1)),
        ];
        let all = || seqs.iter().map(Some);
        assert_eq!(choose_sequence(all(), &prompt), (1, 30));
        // The longest prefix is busy: the next longest.
        let busy_1 = seqs.iter().enumerate().map(|(i, c)| (i != 1).then_some(c));
        assert_eq!(choose_sequence(busy_1, &prompt), (0, 20));
        // Nothing (or a few tokens: BOS, a template's opening) shared: the
        // least recently used; a never used one first.
        let other: Vec<LlamaToken> = run(3, &[77]).into_iter().map(LlamaToken::new).collect();
        assert_eq!(choose_sequence(all(), &other), (0, 0));
        let with_new = [cached(&[0, 1, 2, 5], Some(t1)), Cached::default()];
        assert_eq!(choose_sequence(with_new.iter().map(Some), &other), (1, 0));
        // Equal prefixes: the least recently used.
        let tie = [
            cached(&run(20, &[5]), Some(t2)),
            cached(&run(20, &[8]), Some(t1)),
        ];
        assert_eq!(choose_sequence(tie.iter().map(Some), &prompt), (1, 20));
        // Nothing shared and a sequence running: the free one beside it
        // (least recently used among those), so the running ones stay
        // consecutive; a shared prefix still wins over that.
        let four = [
            cached(&[1], Some(t0)),
            cached(&[2], Some(t2)),
            cached(&[3], Some(t1)),
            cached(&run(20, &[4]), Some(t2)),
        ];
        let running_0 = four.iter().enumerate().map(|(i, c)| (i != 0).then_some(c));
        assert_eq!(choose_sequence(running_0, &other), (1, 0));
        let running_2 = four.iter().enumerate().map(|(i, c)| (i != 2).then_some(c));
        assert_eq!(choose_sequence(running_2, &other), (1, 0));
        let running_2 = four.iter().enumerate().map(|(i, c)| (i != 2).then_some(c));
        assert_eq!(choose_sequence(running_2, &prompt), (3, 20));
        assert_eq!(choose_sequence(four.iter().map(Some), &other), (0, 0));
    }

    #[test]
    fn top_logits_finds_the_highest() {
        // Distinct values in scrambled order (7919 is invertible mod 10007).
        let logits: Vec<f32> = (0..10_000u32)
            .map(|i| (i * 7919 % 10_007) as f32 * 0.01 - 50.0)
            .collect();
        for m in [1, 7, 40, 104] {
            let mut out = Vec::new();
            top_logits(&logits, m, &mut out);
            let mut got: Vec<i32> = out.iter().map(|d| d.id().0).collect();
            got.sort_unstable();
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            let mut want: Vec<i32> = order[..m].iter().map(|&i| i as i32).collect();
            want.sort_unstable();
            assert_eq!(got, want, "m = {m}");
        }
    }

    #[test]
    fn prefilter_only_where_the_chain_allows_it() {
        let s = Sampling {
            repeat_penalty: 1.0,
            ..Sampling::default()
        };
        assert_eq!(prefilter_size(&s, 262_144), Some(40));
        assert_eq!(prefilter_size(&Sampling::default(), 262_144), Some(104));
        let greedy = Sampling {
            temperature: 0.0,
            top_k: 0,
            ..s.clone()
        };
        assert_eq!(prefilter_size(&greedy, 262_144), Some(1));
        let no_top_k = Sampling {
            top_k: 0,
            ..s.clone()
        };
        assert_eq!(prefilter_size(&no_top_k, 262_144), None);
        let grammar = Sampling {
            grammar: Some("root ::= \"x\"".into()),
            ..s.clone()
        };
        assert_eq!(prefilter_size(&grammar, 262_144), None);
        let boosting = Sampling {
            presence_penalty: -0.5,
            ..s.clone()
        };
        assert_eq!(prefilter_size(&boosting, 262_144), None);
        assert_eq!(prefilter_size(&s, 200), None);
    }

    #[test]
    fn holds_back_possible_stop_prefixes() {
        let stops = vec!["\n\nUser:".to_string(), "END".to_string()];
        assert_eq!(held_back("hello\n", &stops), 1);
        assert_eq!(held_back("hello\n\nUs", &stops), 4);
        assert_eq!(held_back("hello EN", &stops), 2);
        assert_eq!(held_back("hello", &stops), 0);
    }

    #[test]
    fn keeps_incomplete_utf8_for_the_next_token() {
        let euro = "€".as_bytes();
        let mut bytes = vec![b'a', euro[0], euro[1]];
        let mut out = String::new();
        take_utf8(&mut bytes, &mut out);
        assert_eq!(out, "a");
        assert_eq!(bytes, &euro[..2]);
        bytes.push(euro[2]);
        take_utf8(&mut bytes, &mut out);
        assert_eq!(out, "a€");
        assert!(bytes.is_empty());
    }
}
