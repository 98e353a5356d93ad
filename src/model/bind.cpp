// Checkpoint modules -> TP layers (see the header).
#include "model/bind.hpp"

#include "core/dtype.hpp"
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

GridSpec grid_of(const Group& g, const std::vector<int64_t>& split) {
  GridSpec gs;
  gs.layer_split = split;
  gs.tp = g.config().tp;
  gs.tp_rank = g.pos().tp_rank;
  gs.pp = g.config().pp;
  gs.pp_rank = g.pos().pp_rank;
  return gs;
}

void bind_checkpoint(TpLayer& L, const Checkpoint& c, const std::string& prefix, const std::vector<int64_t>& split) {
  const GridSpec gs = grid_of(L.group(), split);
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

std::unique_ptr<WeightSet> load_rank_device(const Group& g, const Checkpoint& c, int32_t dtype,
                                            const std::vector<LayerModule>& modules, const std::vector<int64_t>& split) {
  LoadOptions o;
  o.dtype = dtype;
  o.device = g.config().device;
  o.timeout_ms = g.config().timeout_ms;
  for (const LayerModule& m : modules)
    for (const MergedNames& part : hf_module_parts(module_of(m.layer->spec().kind), m.prefix)) {
      o.groups.push_back(part.weights);
      if (!part.biases.empty()) o.groups.push_back(part.biases);
    }
  return WeightSet::load(c, grid_of(g, split), o);
}

namespace {

// names' entries back to back in w: a view of them all, shaped [rows, cols].
bool joined(const WeightSet& w, const std::vector<std::string>& names, int64_t rows, int64_t cols, int32_t dtype,
            int device, tppp_tensor* out) {
  if (names.empty()) return false;
  const char* next = nullptr;
  size_t bytes = 0;
  for (const std::string& n : names) {
    const WeightEntry* e = w.find(n);
    if (!e || e->dtype != dtype || (next && static_cast<const char*>(e->data) != next)) return false;
    if (!next) out->data = e->data;
    next = static_cast<const char*>(e->data) + e->bytes;
    bytes += e->bytes;
  }
  const size_t want = static_cast<size_t>(rows) * static_cast<size_t>(cols > 0 ? cols : 1) * dtype_size(dtype);
  if (bytes != want) return false;
  out->mem_kind = TPPP_MEM_CUDA;
  out->device = device;
  out->dtype = dtype;
  out->ndim = cols > 0 ? 2 : 1;
  out->shape[0] = rows;
  if (cols > 0) out->shape[1] = cols;
  return true;
}

}  // namespace

bool bind_in_place(TpLayer& L, const WeightSet& w, const std::string& prefix) {
  if (L.spec().kind == LayerKind::Replicated) return false;
  const std::vector<MergedNames> parts = hf_module_parts(module_of(L.spec().kind), prefix);
  const int32_t dt = L.spec().dtype;
  std::vector<tppp_tensor> ws(parts.size()), bs(parts.size());
  std::vector<bool> has_bias(parts.size());
  for (size_t p = 0; p < parts.size(); p++) {
    const int part = static_cast<int>(p);
    const std::vector<int64_t> shape = L.weight_shape(part);
    if (shape.size() != 2 || !joined(w, parts[p].weights, shape[0], shape[1], dt, w.device(), &ws[p])) return false;
    has_bias[p] = L.bias_len(part) > 0 && !parts[p].biases.empty();
    if (has_bias[p] && !joined(w, parts[p].biases, L.bias_len(part), 0, dt, w.device(), &bs[p])) return false;
  }
  for (size_t p = 0; p < parts.size(); p++) L.bind(static_cast<int>(p), ws[p], has_bias[p] ? &bs[p] : nullptr, true);
  return true;
}

HostTensor load_whole(const Checkpoint& c, const Group& g, const std::string& name, int32_t dtype,
                      const std::vector<int64_t>& split) {
  return load_stacked(c, grid_of(g, split), {name}, dtype, true);
}

}  // namespace tppp
