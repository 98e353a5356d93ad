// load_stacked (see module_weights.hpp).
#include "loader/module_weights.hpp"

#include <utility>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace tppp {

tppp_tensor HostTensor::view() {
  tppp_tensor t{};
  t.data = bytes.data();
  t.mem_kind = TPPP_MEM_HOST;
  t.device = TPPP_DEVICE_CPU;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size() && i < TPPP_MAX_DIMS; i++) t.shape[i] = shape[i];
  return t;
}

HostTensor load_stacked(const Checkpoint& c, const GridSpec& g, const std::vector<std::string>& names, int32_t dtype,
                        bool whole) {
  std::vector<std::pair<ShardDecision, SlicePlan>> plans;
  int64_t rows = 0;
  for (const std::string& n : names) {
    ShardDecision d = c.decide(n, g);
    if (d.rule == ShardRule::OtherStage)
      fail(TPPP_ERR_INVALID_USAGE, "'%s' belongs to another pipeline stage than this rank's (%lld)", n.c_str(),
           static_cast<long long>(g.pp_rank));
    if (whole) d.spec = SliceSpec();  // the whole tensor on every rank
    const StTensor& t = *c.get(d.source).t;
    plans.emplace_back(d, plan_slice(t.shape, t.esize, d.spec, n));
    rows += plans.back().second.out_shape[0];
  }
  HostTensor out;
  out.dtype = dtype;
  auto out_bytes = [&](const std::pair<ShardDecision, SlicePlan>& pl) {
    return pl.second.out_bytes / c.get(pl.first.source).t->esize * dtype_size(dtype);
  };
  size_t total = 0;
  for (auto& pl : plans) total += out_bytes(pl);
  out.bytes.assign(total, 0);
  size_t at = 0;
  for (auto& pl : plans) {
    const size_t nb = out_bytes(pl);
    c.load(pl.first.source, pl.first.spec, out.bytes.data() + at, nb, dtype);
    at += nb;
  }
  if (!plans.empty()) {
    out.shape = plans[0].second.out_shape;
    out.shape[0] = rows;
  }
  return out;
}

}  // namespace tppp
