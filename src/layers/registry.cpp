// The kind table: the one place that knows every TP layer kind, its name
// and its factory (each kind is a class in its own file, kinds.hpp).
#include "core/error.hpp"
#include "layers/kinds.hpp"

namespace tppp {
namespace {

struct KindEntry {
  LayerKind kind;
  const char* name;
  std::unique_ptr<TpLayer> (*make)(Group&, const LayerSpec&);
};

// The kind table: one row per kind, in LayerKind (= TPPP_LAYER_*) order.
const KindEntry kKinds[] = {
    {LayerKind::Column, "COLUMN", make_column},         {LayerKind::Row, "ROW", make_row},
    {LayerKind::Replicated, "REPLICATED", make_replicated}, {LayerKind::GateUp, "GATE_UP", make_gate_up},
    {LayerKind::Qkv, "QKV", make_qkv},                  {LayerKind::Embedding, "EMBEDDING", make_embedding},
    {LayerKind::LmHead, "LM_HEAD", make_lm_head},       {LayerKind::Mlp, "MLP", make_mlp},
};
constexpr size_t kNumKinds = sizeof kKinds / sizeof kKinds[0];

const KindEntry* entry(LayerKind k) {
  const size_t i = static_cast<size_t>(k);
  return i < kNumKinds && kKinds[i].kind == k ? &kKinds[i] : nullptr;
}

}  // namespace

const char* layer_kind_name(LayerKind k) {
  const KindEntry* e = entry(k);
  return e ? e->name : "?";
}

std::unique_ptr<TpLayer> make_layer(Group& g, const LayerSpec& s) {
  const KindEntry* e = entry(s.kind);
  if (!e) fail(TPPP_ERR_INVALID_ARGUMENT, "layer kind %d is not a TPPP_LAYER_* value", static_cast<int>(s.kind));
  return e->make(g, s);
}

}  // namespace tppp
