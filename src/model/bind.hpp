// Binds a TP layer's weights from a checkpoint module: the loader resolves
// the Hugging Face names and this rank's slices, the layer takes tensors.
// Here, above both, because neither may know the other (docs/DESIGN.md
// section 1). Also this rank's copy of a replicated vector (a norm weight).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/tp_layer.hpp"
#include "loader/checkpoint.hpp"
#include "loader/module_weights.hpp"
#include "loader/weights.hpp"

namespace tppp {

// split: layers per stage (empty: the loader's even split).
GridSpec grid_of(const Group& g, const std::vector<int64_t>& split = {});
// Every part of L from the module under prefix (COLUMN/ROW/...: prefix.weight,
// QKV: prefix.{q,k,v}_proj, GATE_UP/MLP: prefix.{gate,up,down}_proj).
void bind_checkpoint(TpLayer& L, const Checkpoint& c, const std::string& prefix,
                     const std::vector<int64_t>& split = {});
// A layer and the checkpoint module it binds from (prefix as above).
struct LayerModule {
  TpLayer* layer;
  std::string prefix;
};
// This rank's whole share of its stage in one allocation on the group's
// device, in `dtype`, every module's merged parts laid out back to back the
// way its layer binds them ([q; k; v], [gate; up], biases alike), read and
// uploaded in parallel (loader/weights.hpp).
std::unique_ptr<WeightSet> load_rank_device(const Group& g, const Checkpoint& c, int32_t dtype,
                                            const std::vector<LayerModule>& modules,
                                            const std::vector<int64_t>& split = {});
// Binds every part of L in place from w (no copy). False, binding nothing,
// when a part's tensors are missing or not back to back.
bool bind_in_place(TpLayer& L, const WeightSet& w, const std::string& prefix);
// The whole tensor `name` in `dtype`, host memory.
HostTensor load_whole(const Checkpoint& c, const Group& g, const std::string& name, int32_t dtype,
                      const std::vector<int64_t>& split = {});

}  // namespace tppp
