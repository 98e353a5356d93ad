//! Raw declarations matching include/c_api.h (the `-sys` layer). Only the
//! parts the safe layer uses; tests/layout.rs checks sizes and offsets
//! against the header.
#![allow(non_camel_case_types)]
use std::os::raw::{c_char, c_void};

pub type tppp_status = i32;
pub type tppp_group_t = *mut c_void;
pub type tppp_layer_t = *mut c_void;
pub type tppp_checkpoint_t = *mut c_void;
pub type tppp_model_t = *mut c_void;
pub type tppp_token_fn = Option<unsafe extern "C" fn(user: *mut c_void, prompt: i32, token: i32)>;
pub const TPPP_OUT_LOGITS: i32 = 1;
pub const TPPP_OUT_IDS: i32 = 2;
pub const TPPP_MAX_DIMS: usize = 8;
pub const TPPP_VERSION_MAJOR: u32 = 0;
pub const TPPP_VERSION_MINOR: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct tppp_group_params {
    pub struct_size: u32,
    pub tp_size: i32,
    pub pp_size: i32,
    pub device: i32,
    pub transport: i32,
    pub timeout_ms: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct tppp_group_info {
    pub struct_size: u32,
    pub world_size: i32,
    pub rank: i32,
    pub tp_size: i32,
    pub tp_rank: i32,
    pub pp_size: i32,
    pub pp_rank: i32,
    pub prev_stage_rank: i32,
    pub next_stage_rank: i32,
    pub local_rank: i32,
    pub device: i32,
    pub transport: i32,
    pub timeout_ms: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_tensor {
    pub data: *mut c_void,
    pub mem_kind: i32,
    pub device: i32,
    pub dtype: i32,
    pub ndim: i32,
    pub shape: [i64; TPPP_MAX_DIMS],
    pub strides: *const i64,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct tppp_layer_params {
    pub struct_size: u32,
    pub kind: i32,
    pub dtype: i32,
    pub bias: i32,
    pub in_features: i64,
    pub out_features: i64,
    pub gather_output: i32,
    pub input_is_parallel: i32,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub vocab_size: i64,
    pub gather_to_rank0: i32,
    pub reserved: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct tppp_model_params {
    pub struct_size: u32,
    pub dtype: i32,
    pub page_size: i32,
    pub max_seqs: i32,
    pub kv_tokens: i64,
    pub max_batch: i32,
    pub follow: i32,
    pub max_inflight: i32,
    pub layer_split: *const i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_model_info {
    pub struct_size: u32,
    pub dtype: i32,
    pub architecture: *const c_char,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub layer_begin: i64,
    pub layer_end: i64,
    pub page_size: i32,
    pub num_pages: i32,
    pub free_pages: i32,
    pub max_seqs: i32,
    pub eos_ids: *const i32,
    pub n_eos: i32,
    pub steps_in_flight: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_batch {
    pub n_tokens: i32,
    pub token: *const i32,
    pub pos: *const i32,
    pub seq_id: *const i32,
    pub logits: *const i8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_generate_params {
    pub struct_size: u32,
    pub max_new: i32,
    pub stop_ids: *const i32,
    pub n_stop: i32,
    pub microbatches: i32,
    pub on_token: tppp_token_fn,
    pub user: *mut c_void,
    pub prefill_chunk: i32,
    pub reserved: i32,
    pub sampling: *const c_void,
    pub ignore_eos: i32,
    pub reserved2: i32,
    pub max_new_each: *const i32,
    pub on_token_stop: Option<unsafe extern "C" fn(*mut c_void, i32, i32) -> i32>,
    pub stop_ids_each: *const *const i32,
    pub n_stop_each: *const i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_sampling_params {
    pub struct_size: u32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub logprobs: i32,
    pub top_logprobs: i32,
    pub seed: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_step_params {
    pub struct_size: u32,
    pub outputs: i32,
    pub sampling: *const *const tppp_sampling_params,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tppp_step_result {
    pub struct_size: u32,
    pub n_out: i32,
    pub step: i64,
    pub seq_id: *const i32,
    pub token: *const i32,
    pub logprob: *const f32,
    pub n_top: i32,
    pub reserved: i32,
    pub top_ids: *const i32,
    pub top_logprobs: *const f32,
    pub logits: *const f32,
}

extern "C" {
    pub fn tppp_version() -> u32;
    pub fn tppp_abi_check(major: u32, minor: u32) -> i32;
    pub fn tppp_status_string(s: tppp_status) -> *const c_char;
    pub fn tppp_last_error() -> *const c_char;
    pub fn tppp_group_params_init(p: *mut tppp_group_params, size: usize) -> tppp_status;
    pub fn tppp_group_create_from_env(p: *const tppp_group_params, out: *mut tppp_group_t) -> tppp_status;
    pub fn tppp_group_destroy(g: tppp_group_t);
    pub fn tppp_group_get_info(g: tppp_group_t, out: *mut tppp_group_info) -> tppp_status;
    pub fn tppp_all_reduce(g: tppp_group_t, scope: i32, send: *const c_void, recv: *mut c_void, count: usize,
                           dtype: i32, op: i32, stream: *mut c_void) -> tppp_status;
    pub fn tppp_barrier(g: tppp_group_t, scope: i32) -> tppp_status;
    pub fn tppp_layer_params_init(p: *mut tppp_layer_params, size: usize) -> tppp_status;
    pub fn tppp_layer_create(g: tppp_group_t, p: *const tppp_layer_params, out: *mut tppp_layer_t) -> tppp_status;
    pub fn tppp_layer_destroy(l: tppp_layer_t);
    pub fn tppp_layer_bind(l: tppp_layer_t, part: i32, w: *const tppp_tensor, b: *const tppp_tensor) -> tppp_status;
    pub fn tppp_layer_forward(l: tppp_layer_t, x: *const tppp_tensor, y: *const tppp_tensor,
                              stream: *mut c_void) -> tppp_status;
    pub fn tppp_checkpoint_open(path: *const c_char, out: *mut tppp_checkpoint_t) -> tppp_status;
    pub fn tppp_checkpoint_close(c: tppp_checkpoint_t);
    pub fn tppp_model_params_init(p: *mut tppp_model_params, size: usize) -> tppp_status;
    pub fn tppp_model_create(g: tppp_group_t, c: tppp_checkpoint_t, p: *const tppp_model_params,
                             out: *mut tppp_model_t) -> tppp_status;
    pub fn tppp_model_get_info(m: tppp_model_t, out: *mut tppp_model_info) -> tppp_status;
    pub fn tppp_model_forward(m: tppp_model_t, b: *const tppp_batch, outputs: i32, logits: *mut f32, ids: *mut i64,
                              n_out: *mut i32) -> tppp_status;
    pub fn tppp_model_remove_seq(m: tppp_model_t, seq_id: i32) -> tppp_status;
    pub fn tppp_generate_params_init(p: *mut tppp_generate_params, size: usize) -> tppp_status;
    pub fn tppp_model_generate(m: tppp_model_t, n_prompts: i32, prompts: *const *const i32, prompt_lens: *const i32,
                               p: *const tppp_generate_params, out_tokens: *mut i32, out_counts: *mut i32,
                               first_logits: *mut f32) -> tppp_status;
    pub fn tppp_model_follow(m: tppp_model_t, idle_timeout_ms: i64) -> tppp_status;
    pub fn tppp_model_stop(m: tppp_model_t) -> tppp_status;
    pub fn tppp_model_destroy(m: tppp_model_t);
    pub fn tppp_sampling_params_init(p: *mut tppp_sampling_params, size: usize) -> tppp_status;
    pub fn tppp_step_params_init(p: *mut tppp_step_params, size: usize) -> tppp_status;
    pub fn tppp_model_submit(m: tppp_model_t, b: *const tppp_batch, p: *const tppp_step_params, step: *mut i64)
                             -> tppp_status;
    pub fn tppp_model_wait(m: tppp_model_t, out: *mut tppp_step_result) -> tppp_status;
    pub fn tppp_model_poll(m: tppp_model_t, out: *mut tppp_step_result, ready: *mut i32) -> tppp_status;
    pub fn tppp_model_seq_rm(m: tppp_model_t, seq_id: i32, p0: i32, p1: i32) -> tppp_status;
}
