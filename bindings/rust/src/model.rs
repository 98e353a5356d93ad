//! The model runtime: open a checkpoint, run a Llama / Qwen2 / Qwen3 decoder
//! over the group's TP x PP grid (docs/DESIGN.md section 9): llama.h-style
//! batches, greedy generation with a token callback, and follow mode (only
//! the driver calls; the other ranks `follow`). No unsafe needed above this.
use std::any::Any;
use std::ffi::{CStr, CString};
use std::os::raw::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;

use crate::{check, sys, Error, Group};

/// Sampling parameters (tppp_sampling_params); `Sampling::default()` is greedy.
#[derive(Clone, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub logprobs: bool,
    pub top_logprobs: i32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, frequency_penalty: 0.0,
                   presence_penalty: 0.0, logprobs: false, top_logprobs: 0, seed: 0 }
    }
}

impl Sampling {
    fn to_sys(&self) -> Result<sys::tppp_sampling_params, Error> {
        // SAFETY: a zeroed struct with its size, filled by the library.
        let mut p: sys::tppp_sampling_params = unsafe { std::mem::zeroed() };
        check(unsafe { sys::tppp_sampling_params_init(&mut p, std::mem::size_of::<sys::tppp_sampling_params>()) })?;
        p.temperature = self.temperature;
        p.top_k = self.top_k;
        p.top_p = self.top_p;
        p.min_p = self.min_p;
        p.repetition_penalty = self.repetition_penalty;
        p.frequency_penalty = self.frequency_penalty;
        p.presence_penalty = self.presence_penalty;
        p.logprobs = self.logprobs as i32;
        p.top_logprobs = self.top_logprobs;
        p.seed = self.seed;
        Ok(p)
    }
}

/// One step's rows (a cancelled sequence's rows dropped); tokens and logprobs on the driver only.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub step: i64,
    pub seq_ids: Vec<i32>,
    pub tokens: Vec<i32>,
    pub logprobs: Vec<f32>,
}

/// An open safetensors checkpoint (a file or a directory with config.json).
pub struct Checkpoint {
    h: sys::tppp_checkpoint_t,
}

impl Checkpoint {
    pub fn open(path: &str) -> Result<Checkpoint, Error> {
        let p = CString::new(path).map_err(|_| Error { status: 1, message: format!("path {path:?} holds a NUL") })?;
        let mut h = ptr::null_mut();
        // SAFETY: p is a valid C string; h receives the handle.
        check(unsafe { sys::tppp_checkpoint_open(p.as_ptr(), &mut h) })?;
        Ok(Checkpoint { h })
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        // SAFETY: h came from tppp_checkpoint_open and is closed once.
        unsafe { sys::tppp_checkpoint_close(self.h) }
    }
}

/// Model options (tppp_model_params); `Default` is the library's defaults.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    pub kv_tokens: i64,
    pub page_size: i32,
    pub max_seqs: i32,
    pub max_batch: i32,
    /// Only the driver (world rank 0) calls; the other ranks call `follow`.
    pub follow: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        let mut p = sys::tppp_model_params::default();
        // SAFETY: p is sized.
        unsafe { sys::tppp_model_params_init(&mut p, std::mem::size_of::<sys::tppp_model_params>()) };
        ModelOptions { kv_tokens: p.kv_tokens, page_size: p.page_size, max_seqs: p.max_seqs, max_batch: p.max_batch,
                       follow: false }
    }
}

/// Greedy generation options (tppp_generate_params); zero values (`Default`) mean the library's defaults.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// New tokens per prompt; 0: the library's default (16).
    pub max_new: i32,
    pub stop_ids: Vec<i32>,
    /// PP > 1: groups of sequences in flight; 0: min(PP, prompts / 16), at least 1.
    pub microbatches: i32,
    /// Prompt tokens per micro-batch; 0: the library's default.
    pub prefill_chunk: i32,
}

/// What the driver gets from `generate`.
#[derive(Clone, Debug)]
pub struct Generated {
    pub tokens: Vec<Vec<i32>>,
    /// [prompts, vocab]: each prompt's last-position logits.
    pub first_logits: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub architecture: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub layer_begin: i64,
    pub layer_end: i64,
    pub num_pages: i32,
    pub free_pages: i32,
}

/// A decoder over a group; borrows the group so it cannot outlive it.
pub struct Model<'g> {
    h: sys::tppp_model_t,
    vocab: i64,
    driver: bool,
    _group: &'g Group,
}

struct Callback<'a> {
    f: &'a mut dyn FnMut(i32, i32),
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn on_token(user: *mut c_void, prompt: i32, token: i32) {
    // SAFETY: user is the &mut Callback that generate() passed, alive for the call.
    let cb = unsafe { &mut *(user as *mut Callback) };
    if cb.panic.is_none() {
        // A panic must not unwind into C: keep it and rethrow after the call.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| (cb.f)(prompt, token))) {
            cb.panic = Some(p);
        }
    }
}

impl<'g> Model<'g> {
    /// Collective over the group: every rank with the same checkpoint.
    pub fn new(g: &'g Group, c: &Checkpoint, o: &ModelOptions) -> Result<Model<'g>, Error> {
        let mut p = sys::tppp_model_params::default();
        // SAFETY: sized params, live group and checkpoint.
        unsafe {
            check(sys::tppp_model_params_init(&mut p, std::mem::size_of::<sys::tppp_model_params>()))?;
            p.kv_tokens = o.kv_tokens;
            p.page_size = o.page_size;
            p.max_seqs = o.max_seqs;
            p.max_batch = o.max_batch;
            p.follow = o.follow as i32;
            let mut h = ptr::null_mut();
            check(sys::tppp_model_create(g.h, c.h, &p, &mut h))?;
            let mut m = Model { h, vocab: 0, driver: g.info()?.rank == 0, _group: g };
            m.vocab = m.info()?.vocab_size;
            Ok(m)
        }
    }

    pub fn info(&self) -> Result<ModelInfo, Error> {
        // SAFETY: a zeroed plain-data struct, sized; architecture lives as long as the model and is copied.
        unsafe {
            let mut i: sys::tppp_model_info = std::mem::zeroed();
            i.struct_size = std::mem::size_of::<sys::tppp_model_info>() as u32;
            check(sys::tppp_model_get_info(self.h, &mut i))?;
            Ok(ModelInfo {
                architecture: CStr::from_ptr(i.architecture).to_string_lossy().into_owned(),
                vocab_size: i.vocab_size,
                hidden_size: i.hidden_size,
                num_layers: i.num_layers,
                layer_begin: i.layer_begin,
                layer_end: i.layer_end,
                num_pages: i.num_pages,
                free_pages: i.free_pages,
            })
        }
    }

    /// Runs one batch (token i: tokens[i] at position pos[i] of sequence seq[i]; want[i]: its outputs).
    /// On the driver: Some((logits [n_out * vocab], greedy ids [n_out])); elsewhere None.
    pub fn forward(&self, tokens: &[i32], pos: &[i32], seq: &[i32], want: &[bool])
                   -> Result<Option<(Vec<f32>, Vec<i64>)>, Error> {
        let n = tokens.len();
        if pos.len() != n || seq.len() != n || want.len() != n {
            return Err(Error { status: 1, message: "forward: tokens, pos, seq and want differ in length".into() });
        }
        let w: Vec<i8> = want.iter().map(|&b| b as i8).collect();
        let n_out = want.iter().filter(|&&b| b).count();
        let mut logits = vec![0f32; if self.driver { n_out * self.vocab as usize } else { 0 }];
        let mut ids = vec![0i64; if self.driver { n_out } else { 0 }];
        let b = sys::tppp_batch { n_tokens: n as i32, token: tokens.as_ptr(), pos: pos.as_ptr(), seq_id: seq.as_ptr(),
                                  logits: w.as_ptr() };
        let (lp, ip) = if self.driver { (logits.as_mut_ptr(), ids.as_mut_ptr()) } else { (ptr::null_mut(), ptr::null_mut()) };
        // SAFETY: the batch points at live slices of n values; the outputs hold n_out rows on the driver.
        check(unsafe {
            sys::tppp_model_forward(self.h, &b, sys::TPPP_OUT_LOGITS | sys::TPPP_OUT_IDS, lp, ip, ptr::null_mut())
        })?;
        Ok(if self.driver { Some((logits, ids)) } else { None })
    }

    /// Frees the sequence's KV pages; its id can start again at position 0.
    pub fn remove(&self, seq: i32) -> Result<(), Error> {
        // SAFETY: live model.
        check(unsafe { sys::tppp_model_remove_seq(self.h, seq) })
    }

    /// Greedy decoding; on_token(prompt, token) is called on the driver as tokens come. Driver: Some.
    pub fn generate(&self, prompts: &[Vec<i32>], o: &GenerateOptions, on_token_fn: Option<&mut dyn FnMut(i32, i32)>)
                    -> Result<Option<Generated>, Error> {
        let np = prompts.len();
        let ptrs: Vec<*const i32> = prompts.iter().map(|p| p.as_ptr()).collect();
        let lens: Vec<i32> = prompts.iter().map(|p| p.len() as i32).collect();
        let mut p: sys::tppp_generate_params = unsafe { std::mem::zeroed() };
        // SAFETY: sized params.
        check(unsafe { sys::tppp_generate_params_init(&mut p, std::mem::size_of::<sys::tppp_generate_params>()) })?;
        if o.max_new != 0 {
            p.max_new = o.max_new; // 0 keeps the library's default
        }
        let max_new = p.max_new.max(0) as usize;
        let mut out = vec![0i32; np * max_new.max(1)];
        let mut counts = vec![0i32; np];
        let mut first = vec![0f32; if self.driver { np * self.vocab as usize } else { 0 }];
        let mut noop = |_: i32, _: i32| {};
        let mut cb = Callback { f: on_token_fn.unwrap_or(&mut noop), panic: None };
        // SAFETY: sized params; every pointer is live for the call; cb outlives it.
        let status = unsafe {
            p.stop_ids = if o.stop_ids.is_empty() { ptr::null() } else { o.stop_ids.as_ptr() };
            p.n_stop = o.stop_ids.len() as i32;
            p.microbatches = o.microbatches;
            p.prefill_chunk = o.prefill_chunk;
            p.on_token = Some(on_token);
            p.user = &mut cb as *mut Callback as *mut c_void;
            sys::tppp_model_generate(self.h, np as i32, ptrs.as_ptr(), lens.as_ptr(), &p, out.as_mut_ptr(),
                                     counts.as_mut_ptr(), if self.driver { first.as_mut_ptr() } else { ptr::null_mut() })
        };
        if let Some(p) = cb.panic.take() {
            resume_unwind(p);
        }
        check(status)?;
        if !self.driver {
            return Ok(None);
        }
        let tokens = (0..np).map(|i| out[i * max_new..i * max_new + counts[i] as usize].to_vec()).collect();
        Ok(Some(Generated { tokens, first_logits: first }))
    }

    /// Submits one step without waiting (tppp_model_submit); returns its number. sampling: None (greedy) or
    /// one entry per token (None entries greedy; read for wanted tokens).
    pub fn submit(&self, tokens: &[i32], pos: &[i32], seq: &[i32], want: &[bool],
                  sampling: Option<&[Option<Sampling>]>) -> Result<i64, Error> {
        let n = tokens.len();
        if pos.len() != n || seq.len() != n || want.len() != n || sampling.map_or(false, |s| s.len() != n) {
            return Err(Error { status: 1, message: "submit: tokens, pos, seq, want (and sampling) differ in length".into() });
        }
        let w: Vec<i8> = want.iter().map(|&b| b as i8).collect();
        let b = sys::tppp_batch { n_tokens: n as i32, token: tokens.as_ptr(), pos: pos.as_ptr(), seq_id: seq.as_ptr(),
                                  logits: w.as_ptr() };
        let params: Vec<Option<sys::tppp_sampling_params>> = match sampling {
            Some(s) => s.iter().map(|x| x.as_ref().map(|x| x.to_sys()).transpose()).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let ptrs: Vec<*const sys::tppp_sampling_params> =
            params.iter().map(|p| p.as_ref().map_or(ptr::null(), |p| p as *const _)).collect();
        let mut step = -1i64;
        // SAFETY: sized params; the batch and the sampling pointers point at live values for the call.
        check(unsafe {
            let mut p: sys::tppp_step_params = std::mem::zeroed();
            check(sys::tppp_step_params_init(&mut p, std::mem::size_of::<sys::tppp_step_params>()))?;
            p.sampling = if sampling.is_some() { ptrs.as_ptr() } else { ptr::null() };
            sys::tppp_model_submit(self.h, &b, &p, &mut step)
        })?;
        Ok(step)
    }

    /// The oldest step's results (blocking, bounded by the group's timeout).
    pub fn wait(&self) -> Result<StepResult, Error> {
        // SAFETY: a zeroed result with its size; the library fills it; arrays live until the next wait.
        unsafe {
            let mut r: sys::tppp_step_result = std::mem::zeroed();
            r.struct_size = std::mem::size_of::<sys::tppp_step_result>() as u32;
            check(sys::tppp_model_wait(self.h, &mut r))?;
            let n = r.n_out as usize;
            let part = |p: *const i32| if p.is_null() || n == 0 { Vec::new() } else { std::slice::from_raw_parts(p, n).to_vec() };
            Ok(StepResult {
                step: r.step,
                seq_ids: part(r.seq_id),
                tokens: part(r.token),
                logprobs: if r.logprob.is_null() || n == 0 { Vec::new() } else { std::slice::from_raw_parts(r.logprob, n).to_vec() },
            })
        }
    }

    /// Removes positions [p0, p1) of a sequence (p1 < 0: to the end; a tail only).
    pub fn seq_rm(&self, seq: i32, p0: i32, p1: i32) -> Result<(), Error> {
        // SAFETY: live model.
        check(unsafe { sys::tppp_model_seq_rm(self.h, seq, p0, p1) })
    }

    /// Follow mode, every rank but the driver: runs the driver's calls until it calls `stop`
    /// (idle_timeout_ms: -1 for no bound).
    pub fn follow(&self, idle_timeout_ms: i64) -> Result<(), Error> {
        // SAFETY: live model.
        check(unsafe { sys::tppp_model_follow(self.h, idle_timeout_ms) })
    }

    /// Follow mode, the driver: ends the followers' `follow`.
    pub fn stop(&self) -> Result<(), Error> {
        // SAFETY: live model.
        check(unsafe { sys::tppp_model_stop(self.h) })
    }
}

impl Drop for Model<'_> {
    fn drop(&mut self) {
        // SAFETY: h came from tppp_model_create and is freed once.
        unsafe { sys::tppp_model_destroy(self.h) }
    }
}
