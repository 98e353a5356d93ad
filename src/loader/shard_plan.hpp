// Which bytes of which tensor a rank of a TP x PP grid owns (docs/DESIGN.md
// section 4): rules, PP layer ranges and slice byte plans, as plain data
// from pure functions, tested without files or devices. Which rule a
// Hugging Face tensor name gets is hf_names.hpp's business.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tppp {

// config.json fields the sharding rules need (Llama/Qwen2 names).
struct ModelConfig {
  std::string model_type;
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, layers = 0, vocab = 0;
  bool tie_word_embeddings = false;
  bool present = false;  // config.json was found
};
// Pure: config.json bytes -> ModelConfig; throws FORMAT naming the field.
ModelConfig parse_model_config(const char* bytes, size_t n, const std::string& file);

// Generic slice: along `dim`, the tensor (size D there) is cut into `parts`
// equal pieces and this rank takes piece `index`. With pad, D is first
// rounded up to a multiple of parts and rows past D come back as zeros
// (vocab-parallel embedding / LM head).
struct SliceSpec {
  int dim = 0;
  int64_t parts = 1, index = 0;
  bool pad = false;
};

enum class ShardRule : int32_t {
  Replicated = 0,  // whole tensor on every TP rank (norms, unknown tensors)
  Column = 1,      // split dim 0 (q/gate/up proj, their biases)
  Row = 2,         // split dim 1 (o_proj, down_proj)
  KvColumn = 3,    // split dim 0 by kv heads, replicated when kv_heads < tp
  Vocab = 4,       // split dim 0 with vocab padding (embed_tokens, lm_head)
  OtherStage = 5,  // belongs to another pipeline stage: not read at all
};
const char* rule_name(ShardRule r);

struct GridSpec {
  int64_t tp = 1, tp_rank = 0, pp = 1, pp_rank = 0;
  std::vector<int64_t> layer_split;  // optional host split: layers per stage
};

struct ShardDecision {
  ShardRule rule = ShardRule::Replicated;
  SliceSpec spec;
  std::string source;  // tensor to read (lm_head tied -> model.embed_tokens.weight)
};

// [first, last) layer of every stage: even split, remainder to the earlier
// stages, or the host's split (which must sum to `layers`). Throws
// INVALID_ARGUMENT on a bad split.
std::vector<std::pair<int64_t, int64_t>> pp_layer_ranges(int64_t layers, int64_t pp,
                                                         const std::vector<int64_t>& split);

// Layers per stage that even out each stage's cost (PP > 1): every layer
// costs layer_cost, the first stage first_extra more (the embedding), the
// last last_extra more (final norm and LM head); every stage gets a layer.
// Pure; greedy, which is optimal for equal layers: each next layer goes to
// the stage whose cost with it is lowest (ties: the earlier).
std::vector<int64_t> balanced_layer_split(int64_t layers, int64_t pp, double layer_cost, double first_extra,
                                          double last_extra);

// Byte runs of a slice: the destination is contiguous, runs are in order.
struct SliceRun {
  uint64_t src = 0;    // offset in the tensor's bytes
  uint64_t bytes = 0;
};
struct SlicePlan {
  std::vector<int64_t> out_shape;
  std::vector<SliceRun> runs;  // consecutive in the destination, then zero padding
  uint64_t read_bytes = 0;     // sum of runs
  uint64_t out_bytes = 0;      // read_bytes + zero padding
  // Pad layout: for each outer index, `rows_read * inner` bytes are read and
  // `rows_pad * inner` zeroed; runs hold only the reads.
  uint64_t outer = 1, inner_bytes = 0, rows_read = 0, rows_pad = 0;
};
// Throws INVALID_ARGUMENT for dims out of range or an indivisible split.
SlicePlan plan_slice(const std::vector<int64_t>& shape, size_t esize, const SliceSpec& s, const std::string& name);

}  // namespace tppp
