// The Hugging Face name tables (see hf_names.hpp).
#include "loader/hf_names.hpp"

#include <cstdlib>
#include <cstring>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {
namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const char* suf) {
  const size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

// Decoder layers live under this prefix, numbered.
constexpr const char* kLayerPrefix = "model.layers.";

// Tensors outside the decoder layers that belong to one stage.
enum class Stage { First, Last };
struct StageRule {
  const char* prefix;
  Stage stage;
};
const StageRule kStageRules[] = {
    {"model.embed_tokens.", Stage::First},
    {"lm_head.", Stage::Last},
    {"model.norm.", Stage::Last},
};

// How a name is split over TP, first match wins; unmatched names are
// replicated (norms, biases of row layers, anything else).
enum class Heads { None, Query, Kv };  // head counts that must divide as well
struct NameRule {
  const char* pattern;
  bool prefix;  // match at the start (else at the end)
  ShardRule rule;
  Heads heads;
};
const NameRule kNameRules[] = {
    {"q_proj.weight", false, ShardRule::Column, Heads::Query},
    {"q_proj.bias", false, ShardRule::Column, Heads::Query},
    {"k_proj.weight", false, ShardRule::KvColumn, Heads::Kv},
    {"k_proj.bias", false, ShardRule::KvColumn, Heads::Kv},
    {"v_proj.weight", false, ShardRule::KvColumn, Heads::Kv},
    {"v_proj.bias", false, ShardRule::KvColumn, Heads::Kv},
    {"gate_proj.weight", false, ShardRule::Column, Heads::None},
    {"up_proj.weight", false, ShardRule::Column, Heads::None},
    {"gate_proj.bias", false, ShardRule::Column, Heads::None},
    {"up_proj.bias", false, ShardRule::Column, Heads::None},
    {"o_proj.weight", false, ShardRule::Row, Heads::Query},
    {"down_proj.weight", false, ShardRule::Row, Heads::None},
    {"model.embed_tokens.", true, ShardRule::Vocab, Heads::None},
    {"lm_head.", true, ShardRule::Vocab, Heads::None},
};

// Tied weights: a checkpoint without the first reads the second.
struct TiedRule {
  const char* name;
  const char* source;
};
const TiedRule kTied[] = {{"lm_head.weight", "model.embed_tokens.weight"}};

// Merged per-rank loads: the projections stacked along dim 0.
const char* const kGateUp[] = {"gate_proj", "up_proj"};
const char* const kQkv[] = {"q_proj", "k_proj", "v_proj"};

// "model.layers.12.self_attn.q_proj.weight" -> 12, else -1.
int64_t layer_of(const std::string& name) {
  if (!starts_with(name, kLayerPrefix)) return -1;
  const char* s = name.c_str() + std::strlen(kLayerPrefix);
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '.' || v < 0) return -1;
  return v;
}

void need_divisible(int64_t value, int64_t by, const char* what, const std::string& name) {
  if (by <= 0 || value % by != 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': %s %lld is not divisible by tp %lld", name.c_str(), what,
         static_cast<long long>(value), static_cast<long long>(by));
}

// Is the tensor on this rank's stage?
bool on_my_stage(const std::string& name, const ModelConfig& cfg, const GridSpec& g) {
  const int64_t layer = layer_of(name);
  if (layer >= 0) {
    if (cfg.present && layer >= cfg.layers)
      fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': layer %lld but config.json says %lld layers", name.c_str(),
           static_cast<long long>(layer), static_cast<long long>(cfg.layers));
    const int64_t nl = cfg.present ? cfg.layers : layer + 1;
    const auto mine = pp_layer_ranges(nl, g.pp, g.layer_split)[static_cast<size_t>(g.pp_rank)];
    return layer >= mine.first && layer < mine.second;
  }
  for (const StageRule& r : kStageRules)
    if (starts_with(name, r.prefix)) return r.stage == Stage::First ? g.pp_rank == 0 : g.pp_rank == g.pp - 1;
  return true;
}

const NameRule* name_rule(const std::string& name) {
  for (const NameRule& r : kNameRules)
    if (r.prefix ? starts_with(name, r.pattern) : ends_with(name, r.pattern)) return &r;
  return nullptr;
}

// KvColumn: by kv heads, or rank r holds kv head r * nkv / tp when there are fewer kv heads than ranks.
void kv_column(ShardDecision& d, const std::string& name, const std::vector<int64_t>& shape, int64_t nkv,
               const GridSpec& g) {
  const int64_t tp = g.tp;
  if (nkv >= tp) {
    need_divisible(nkv, tp, "head count", name);
    need_divisible(shape[0], tp, "dimension 0", name);
    d.spec = SliceSpec{0, tp, g.tp_rank, false};
    return;
  }
  if (tp % nkv != 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': tp %lld is not a multiple of %lld kv heads", name.c_str(),
         static_cast<long long>(tp), static_cast<long long>(nkv));
  need_divisible(shape[0], nkv, "dimension 0 (by kv heads)", name);
  d.spec = SliceSpec{0, nkv, g.tp_rank * nkv / tp, false};
}

}  // namespace

ShardDecision decide_shard(const std::string& name, const std::vector<int64_t>& shape, const ModelConfig& cfg,
                           const GridSpec& g) {
  ShardDecision d;
  d.source = name;
  if (!on_my_stage(name, cfg, g)) {
    d.rule = ShardRule::OtherStage;
    return d;
  }
  const NameRule* r = name_rule(name);
  if (!r) return d;  // replicated
  d.rule = r->rule;
  const int64_t tp = g.tp;
  if (r->rule == ShardRule::Row) {
    if (shape.size() != 2) fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': expected 2 dimensions", name.c_str());
    if (r->heads == Heads::Query && cfg.present) need_divisible(cfg.heads, tp, "head count", name);
    need_divisible(shape[1], tp, "dimension 1", name);
    d.spec = SliceSpec{1, tp, g.tp_rank, false};
    return d;
  }
  if (shape.empty()) fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': a scalar cannot be split", name.c_str());
  if (r->rule == ShardRule::Vocab) {
    d.spec = SliceSpec{0, tp, g.tp_rank, true};
  } else if (r->rule == ShardRule::KvColumn) {
    kv_column(d, name, shape, cfg.present ? cfg.kv_heads : tp, g);
  } else {  // Column
    if (r->heads == Heads::Query && cfg.present) need_divisible(cfg.heads, tp, "head count", name);
    need_divisible(shape[0], tp, "dimension 0", name);
    d.spec = SliceSpec{0, tp, g.tp_rank, false};
  }
  return d;
}

std::string tied_source(const std::string& name, const ModelConfig& cfg) {
  if (!cfg.tie_word_embeddings) return std::string();
  for (const TiedRule& t : kTied)
    if (name == t.name) return t.source;
  return std::string();
}

std::vector<std::string> tied_names(const ModelConfig& cfg) {
  std::vector<std::string> out;
  if (cfg.tie_word_embeddings)
    for (const TiedRule& t : kTied) out.push_back(t.name);
  return out;
}

std::vector<int64_t> implied_shape(const std::string& name, const ModelConfig& m) {
  const int64_t q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim;
  struct Expect {
    const char* suffix;
    std::vector<int64_t> shape;
  };
  const Expect layer_tensors[] = {
      {"q_proj.weight", {q, m.hidden}},         {"q_proj.bias", {q}},
      {"k_proj.weight", {kv, m.hidden}},        {"k_proj.bias", {kv}},
      {"v_proj.weight", {kv, m.hidden}},        {"v_proj.bias", {kv}},
      {"o_proj.weight", {m.hidden, q}},         {"gate_proj.weight", {m.intermediate, m.hidden}},
      {"up_proj.weight", {m.intermediate, m.hidden}}, {"down_proj.weight", {m.hidden, m.intermediate}},
      {"input_layernorm.weight", {m.hidden}},  {"post_attention_layernorm.weight", {m.hidden}},
  };
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {m.vocab, m.hidden};
  if (name == "model.norm.weight") return {m.hidden};
  if (starts_with(name, kLayerPrefix))
    for (const Expect& e : layer_tensors)
      if (ends_with(name, e.suffix)) return e.shape;
  return {};
}

std::vector<MergedNames> hf_module_parts(HfModule m, const std::string& prefix) {
  auto merged = [&](const char* const* projs, size_t n, bool bias) {
    MergedNames p;
    for (size_t i = 0; i < n; i++) {
      p.weights.push_back(prefix + "." + projs[i] + ".weight");
      if (bias) p.biases.push_back(prefix + "." + projs[i] + ".bias");
    }
    return p;
  };
  switch (m) {
    case HfModule::Linear: return {MergedNames{{prefix + ".weight"}, {prefix + ".bias"}}};
    case HfModule::GateUp: return {merged(kGateUp, 2, false)};
    case HfModule::Qkv: return {merged(kQkv, 3, true)};
    case HfModule::Mlp:
      return {merged(kGateUp, 2, false), MergedNames{{prefix + ".down_proj.weight"}, {prefix + ".down_proj.bias"}}};
  }
  return {};
}

}  // namespace tppp
