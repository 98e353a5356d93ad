// Inside the layers folder: the factory of each kind (one class per file),
// which the kind table in registry.cpp lists. Adding a kind: a class in its
// own file, one factory here, one row in the table.
#pragma once
#include <memory>

#include "layers/tp_layer.hpp"

namespace tppp {

std::unique_ptr<TpLayer> make_column(Group& g, const LayerSpec& s);      // linear.cpp
std::unique_ptr<TpLayer> make_row(Group& g, const LayerSpec& s);         // linear.cpp
std::unique_ptr<TpLayer> make_replicated(Group& g, const LayerSpec& s);  // linear.cpp
std::unique_ptr<TpLayer> make_qkv(Group& g, const LayerSpec& s);         // linear.cpp
std::unique_ptr<TpLayer> make_gate_up(Group& g, const LayerSpec& s);     // mlp.cpp
std::unique_ptr<TpLayer> make_mlp(Group& g, const LayerSpec& s);         // mlp.cpp
std::unique_ptr<TpLayer> make_embedding(Group& g, const LayerSpec& s);   // vocab.cpp
std::unique_ptr<TpLayer> make_lm_head(Group& g, const LayerSpec& s);     // vocab.cpp

}  // namespace tppp
