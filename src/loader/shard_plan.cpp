// config.json fields, PP layer ranges and slice byte plans (the rule for a
// tensor name is in hf_names.cpp).
#include "loader/shard_plan.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

ModelConfig parse_model_config(const char* bytes, size_t n, const std::string& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes, bytes + n);
  } catch (const nlohmann::json::exception& e) {
    fail(TPPP_ERR_FORMAT, "%s: not valid JSON: %s", file.c_str(), e.what());
  }
  if (!j.is_object()) fail(TPPP_ERR_FORMAT, "%s: not a JSON object", file.c_str());
  ModelConfig c;
  c.present = true;
  auto get = [&](const char* k, bool required, int64_t dflt) -> int64_t {
    if (!j.contains(k) || j[k].is_null()) {
      if (required) fail(TPPP_ERR_FORMAT, "%s: field \"%s\" is missing", file.c_str(), k);
      return dflt;
    }
    if (!j[k].is_number_integer() || j[k].get<int64_t>() <= 0)
      fail(TPPP_ERR_FORMAT, "%s: field \"%s\" is not a positive integer", file.c_str(), k);
    return j[k].get<int64_t>();
  };
  if (j.contains("model_type") && j["model_type"].is_string()) c.model_type = j["model_type"].get<std::string>();
  c.hidden = get("hidden_size", true, 0);
  c.heads = get("num_attention_heads", true, 0);
  c.kv_heads = get("num_key_value_heads", false, c.heads);
  c.head_dim = get("head_dim", false, c.hidden / c.heads);
  c.intermediate = get("intermediate_size", true, 0);
  c.layers = get("num_hidden_layers", true, 0);
  c.vocab = get("vocab_size", true, 0);
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean())
      fail(TPPP_ERR_FORMAT, "%s: field \"tie_word_embeddings\" is not a boolean", file.c_str());
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (c.heads % c.kv_heads != 0)
    fail(TPPP_ERR_FORMAT, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", file.c_str(),
         static_cast<long long>(c.heads), static_cast<long long>(c.kv_heads));
  return c;
}

const char* rule_name(ShardRule r) {
  switch (r) {
    case ShardRule::Replicated: return "replicated";
    case ShardRule::Column: return "column";
    case ShardRule::Row: return "row";
    case ShardRule::KvColumn: return "kv-column";
    case ShardRule::Vocab: return "vocab";
    case ShardRule::OtherStage: return "other-stage";
  }
  return "?";
}

std::vector<int64_t> balanced_layer_split(int64_t layers, int64_t pp, double layer_cost, double first_extra,
                                          double last_extra) {
  if (pp <= 0 || layers < pp)
    fail(TPPP_ERR_INVALID_ARGUMENT, "%lld layers cannot fill %lld pipeline stages", static_cast<long long>(layers),
         static_cast<long long>(pp));
  std::vector<int64_t> n(static_cast<size_t>(pp), 1);
  auto cost = [&](size_t s, int64_t k) {
    return static_cast<double>(k) * layer_cost + (s == 0 ? first_extra : 0.0) +
           (s + 1 == static_cast<size_t>(pp) ? last_extra : 0.0);
  };
  for (int64_t left = layers - pp; left > 0; left--) {
    size_t best = 0;
    for (size_t s = 1; s < n.size(); s++)
      if (cost(s, n[s] + 1) < cost(best, n[best] + 1)) best = s;
    n[best]++;
  }
  return n;
}

std::vector<std::pair<int64_t, int64_t>> pp_layer_ranges(int64_t layers, int64_t pp, const std::vector<int64_t>& split) {
  if (pp <= 0) fail(TPPP_ERR_INVALID_ARGUMENT, "pp_size %lld must be positive", static_cast<long long>(pp));
  std::vector<std::pair<int64_t, int64_t>> r;
  int64_t first = 0;
  if (!split.empty()) {
    if (static_cast<int64_t>(split.size()) != pp)
      fail(TPPP_ERR_INVALID_ARGUMENT, "layer split has %zu entries for pp_size %lld", split.size(),
           static_cast<long long>(pp));
    for (int64_t n : split) {
      if (n < 0) fail(TPPP_ERR_INVALID_ARGUMENT, "layer split entry %lld is negative", static_cast<long long>(n));
      r.emplace_back(first, first + n);
      first += n;
    }
    if (first != layers)
      fail(TPPP_ERR_INVALID_ARGUMENT, "layer split sums to %lld but the model has %lld layers",
           static_cast<long long>(first), static_cast<long long>(layers));
    return r;
  }
  for (int64_t s = 0; s < pp; s++) {
    int64_t n = layers / pp + (s < layers % pp ? 1 : 0);
    r.emplace_back(first, first + n);
    first += n;
  }
  return r;
}

SlicePlan plan_slice(const std::vector<int64_t>& shape, size_t esize, const SliceSpec& s, const std::string& name) {
  SlicePlan p;
  p.out_shape = shape;
  if (s.parts == 1 && !s.pad) {  // whole tensor
    uint64_t n = esize;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    p.read_bytes = p.out_bytes = n;
    p.inner_bytes = n;
    p.rows_read = 1;
    if (n) p.runs.push_back(SliceRun{0, n});
    return p;
  }
  if (s.dim < 0 || s.dim >= static_cast<int>(shape.size()))
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': slice dim %d outside its %zu dimensions", name.c_str(), s.dim,
         shape.size());
  if (s.parts <= 0 || s.index < 0 || s.index >= s.parts)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': slice %lld of %lld parts", name.c_str(),
         static_cast<long long>(s.index), static_cast<long long>(s.parts));
  const int64_t D = shape[static_cast<size_t>(s.dim)];
  int64_t per;
  if (s.pad) {
    per = (D + s.parts - 1) / s.parts;
  } else {
    if (D % s.parts != 0)
      fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': dimension %d (%lld) is not divisible by %lld", name.c_str(),
           s.dim, static_cast<long long>(D), static_cast<long long>(s.parts));
    per = D / s.parts;
  }
  const int64_t a = std::min(D, s.index * per), b = std::min(D, (s.index + 1) * per);
  uint64_t outer = 1, inner = esize;
  for (int i = 0; i < s.dim; i++) outer *= static_cast<uint64_t>(shape[static_cast<size_t>(i)]);
  for (size_t i = static_cast<size_t>(s.dim) + 1; i < shape.size(); i++) inner *= static_cast<uint64_t>(shape[i]);
  p.out_shape[static_cast<size_t>(s.dim)] = per;
  p.outer = outer;
  p.inner_bytes = inner;
  p.rows_read = static_cast<uint64_t>(b - a);
  p.rows_pad = static_cast<uint64_t>(per - (b - a));
  const uint64_t run = p.rows_read * inner;
  for (uint64_t o = 0; o < outer && run > 0; o++) {
    uint64_t src = (o * static_cast<uint64_t>(D) + static_cast<uint64_t>(a)) * inner;
    if (!p.runs.empty() && p.rows_pad == 0 && p.runs.back().src + p.runs.back().bytes == src)
      p.runs.back().bytes += run;  // contiguous in both file and destination
    else
      p.runs.push_back(SliceRun{src, run});
  }
  p.read_bytes = outer * run;
  p.out_bytes = outer * static_cast<uint64_t>(per) * inner;
  return p;
}

}  // namespace tppp
