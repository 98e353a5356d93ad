// Handle structs shared by the shim files (opaque to hosts).
#pragma once
#include <memory>

#include "core/group.hpp"
#include "layers/tp_layers.hpp"
#include "loader/checkpoint.hpp"

struct tppp_group_s {
  std::unique_ptr<tppp::Group> g;
};

struct tppp_checkpoint_s {
  std::unique_ptr<tppp::Checkpoint> c;
};

struct tppp_layer_s {
  std::unique_ptr<tppp::TpLayer> l;
};
