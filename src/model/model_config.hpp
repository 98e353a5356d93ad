// What the model runtime needs from config.json beyond the loader's shapes:
// the architecture, RMSNorm epsilon, RoPE (default or Llama 3 scaling, in
// transformers 4's top-level rope_theta/rope_scaling or transformers 5's
// rope_parameters), biases and Qwen3's q/k norms. Pure: bytes in, plain data
// out; anything this runtime does not implement is refused with
// NOT_SUPPORTED naming the field and its value, never run wrong.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loader/shard_plan.hpp"

namespace tppp {

enum class Arch : int32_t { Llama = 0, Qwen2 = 1, Qwen3 = 2, Mistral = 3 };

struct RopeSpec {
  double theta = 10000.0;
  bool llama3 = false;  // Llama 3 frequency scaling
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max = 8192.0;
};

struct ModelSpec {
  Arch arch = Arch::Llama;
  std::string arch_name;  // "LlamaForCausalLM", ...
  ModelConfig dims;       // hidden, heads, kv_heads, head_dim, intermediate, layers, vocab, tie
  double rms_eps = 1e-6;
  RopeSpec rope;
  bool qkv_bias = false;  // Qwen2, or attention_bias
  bool o_bias = false;    // attention_bias (Llama, Mistral, Qwen3)
  bool qk_norm = false;   // Qwen3: per-head RMSNorm of q and k before RoPE
  std::vector<int32_t> eos;  // eos_token_id (one or a list); generation_config.json's wins
};

// eos_token_id of a config.json or generation_config.json: none (absent or
// null), one id or a list; FORMAT naming the file for anything else or an
// id outside [0, vocab).
std::vector<int32_t> parse_eos_ids(const std::string& json, const std::string& file, int64_t vocab);

// Throws FORMAT for malformed JSON or fields, NOT_SUPPORTED naming the field
// and value for what this runtime does not run.
ModelSpec parse_model_spec(const std::string& json, const std::string& file);

// RoPE inverse frequencies [head_dim / 2], computed in f32 as transformers
// does (so positions rotate by the same angles).
std::vector<float> rope_inv_freq(const RopeSpec& r, int64_t head_dim);

const char* arch_name(Arch a);

}  // namespace tppp
