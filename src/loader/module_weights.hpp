// This rank's weights of one checkpoint module, in host memory, ready to
// bind to a layer: the names come from hf_names (hf_module_parts), the
// slices from the sharding rules, stacked along dim 0 for merged loads
// ([gate_r; up_r], [q_r; k_r; v_r]).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "c_api.h"
#include "loader/checkpoint.hpp"

namespace tppp {

struct HostTensor {
  std::vector<char> bytes;
  std::vector<int64_t> shape;
  int32_t dtype = TPPP_DTYPE_F32;
  tppp_tensor view();  // a descriptor of bytes (host memory, contiguous)
};

// This rank's slices of `names`, stacked along dim 0, in `dtype`. whole:
// every rank reads the whole tensors (a REPLICATED layer). Throws
// INVALID_USAGE naming a tensor of another pipeline stage.
HostTensor load_stacked(const Checkpoint& c, const GridSpec& g, const std::vector<std::string>& names, int32_t dtype,
                        bool whole);

}  // namespace tppp
