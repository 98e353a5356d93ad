// Checkpoint modules -> TP layers (see the header).
#include "model/bind.hpp"

#include "group/group.hpp"
#include "loader/hf_names.hpp"

namespace tppp {
namespace {

// The checkpoint module each layer kind binds from.
HfModule module_of(LayerKind k) {
  switch (k) {
    case LayerKind::GateUp: return HfModule::GateUp;
    case LayerKind::Qkv: return HfModule::Qkv;
    case LayerKind::Mlp: return HfModule::Mlp;
    default: return HfModule::Linear;
  }
}

}  // namespace

GridSpec grid_of(const Group& g) {
  GridSpec gs;
  gs.tp = g.config().tp;
  gs.tp_rank = g.pos().tp_rank;
  gs.pp = g.config().pp;
  gs.pp_rank = g.pos().pp_rank;
  return gs;
}

void bind_checkpoint(TpLayer& L, const Checkpoint& c, const std::string& prefix) {
  const GridSpec gs = grid_of(L.group());
  const bool whole = L.spec().kind == LayerKind::Replicated;
  const std::vector<MergedNames> parts = hf_module_parts(module_of(L.spec().kind), prefix);
  for (size_t p = 0; p < parts.size(); p++) {
    const int part = static_cast<int>(p);
    HostTensor w = load_stacked(c, gs, parts[p].weights, L.spec().dtype, whole), b;
    const bool with_bias = L.bias_len(part) > 0 && !parts[p].biases.empty();
    if (with_bias) b = load_stacked(c, gs, parts[p].biases, L.spec().dtype, whole);
    tppp_tensor wt = w.view(), bt = b.view();
    L.bind(part, wt, with_bias ? &bt : nullptr);
  }
}

HostTensor load_whole(const Checkpoint& c, const Group& g, const std::string& name, int32_t dtype) {
  return load_stacked(c, grid_of(g), {name}, dtype, true);
}

}  // namespace tppp
