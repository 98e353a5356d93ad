// Hugging Face naming, in one place: which rule (and pipeline stage) a
// Llama/Qwen2 tensor name gets, which tensor a tied lm_head reads, and which
// tensors make up each merged per-rank load (gate_up, qkv). Pure: names and
// shapes in, plain data out. Layers never see these names: the loader turns
// a module (a prefix and what it holds) into tensors (module_weights.hpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loader/shard_plan.hpp"

namespace tppp {

// Decides the rule for `name` with `shape` on this rank. Throws
// INVALID_ARGUMENT naming the tensor when a dimension the rule splits is not
// divisible by tp (or heads by tp, or tp by kv_heads when replicating).
ShardDecision decide_shard(const std::string& name, const std::vector<int64_t>& shape, const ModelConfig& cfg,
                           const GridSpec& grid);

// The tensor a checkpoint without `name` reads instead, when config.json
// ties it ("lm_head.weight" -> "model.embed_tokens.weight"), else "".
std::string tied_source(const std::string& name, const ModelConfig& cfg);
// The names config.json may tie to another tensor (empty unless it ties).
std::vector<std::string> tied_names(const ModelConfig& cfg);

// The shape config.json implies for a tensor, or {} for names it says
// nothing about (the open-time consistency check).
std::vector<int64_t> implied_shape(const std::string& name, const ModelConfig& cfg);

// What a module under a prefix holds, as the layers bind it.
enum class HfModule {
  Linear,  // <prefix>.weight (+ .bias)
  GateUp,  // <prefix>.{gate,up}_proj.weight, merged per rank as [gate_r; up_r]
  Qkv,     // <prefix>.{q,k,v}_proj.weight (+ .bias), merged per rank as [q_r; k_r; v_r]
  Mlp,     // GateUp, then <prefix>.down_proj as a Linear
};

// One part to bind: tensors stacked along dim 0 (weights; biases, possibly none).
struct MergedNames {
  std::vector<std::string> weights, biases;
};
std::vector<MergedNames> hf_module_parts(HfModule m, const std::string& prefix);

}  // namespace tppp
