// Inside the layers folder: the argument check every kind uses and the
// factory of each kind (one per file), which the kind table in tp_layer.cpp
// lists. Adding a kind: a class in its own file, one factory here, one row
// in the table.
#pragma once
#include <cstdarg>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "layers/tp_layer.hpp"

namespace tppp {

// Throws INVALID_ARGUMENT with the message unless ok.
void need(bool ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

std::vector<int64_t> shape_of(const tppp_tensor& t);

std::unique_ptr<TpLayer> make_column(Group& g, const LayerSpec& s);      // linear.cpp
std::unique_ptr<TpLayer> make_row(Group& g, const LayerSpec& s);         // linear.cpp
std::unique_ptr<TpLayer> make_replicated(Group& g, const LayerSpec& s);  // linear.cpp
std::unique_ptr<TpLayer> make_qkv(Group& g, const LayerSpec& s);         // linear.cpp
std::unique_ptr<TpLayer> make_gate_up(Group& g, const LayerSpec& s);     // mlp.cpp
std::unique_ptr<TpLayer> make_mlp(Group& g, const LayerSpec& s);         // mlp.cpp
std::unique_ptr<TpLayer> make_embedding(Group& g, const LayerSpec& s);   // vocab.cpp
std::unique_ptr<TpLayer> make_lm_head(Group& g, const LayerSpec& s);     // vocab.cpp

}  // namespace tppp
