// Binds a TP layer's weights from a checkpoint module: the loader resolves
// the Hugging Face names and this rank's slices, the layer takes tensors.
// Here, above both, because neither may know the other (docs/DESIGN.md
// section 1). Also this rank's copy of a replicated vector (a norm weight).
#pragma once
#include <string>

#include "layers/tp_layer.hpp"
#include "loader/checkpoint.hpp"
#include "loader/module_weights.hpp"

namespace tppp {

GridSpec grid_of(const Group& g);
// Every part of L from the module under prefix (COLUMN/ROW/...: prefix.weight,
// QKV: prefix.{q,k,v}_proj, GATE_UP/MLP: prefix.{gate,up,down}_proj).
void bind_checkpoint(TpLayer& L, const Checkpoint& c, const std::string& prefix);
// The whole tensor `name` in `dtype`, host memory.
HostTensor load_whole(const Checkpoint& c, const Group& g, const std::string& name, int32_t dtype);

}  // namespace tppp
