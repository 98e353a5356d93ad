// extern "C" shims for checkpoints (src/loader): argument checks, then the
// C++ loader, every exception turned into a status by API_BEGIN/API_END.
#include <cstring>
#include <memory>
#include <vector>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "cuda/device.hpp"
#include "core/dtype.hpp"
#include "loader/checkpoint.hpp"
#include "loader/weights.hpp"


struct tppp_weights_s {
  std::unique_ptr<tppp::WeightSet> w;
};

namespace {

tppp::Checkpoint& ck(tppp_checkpoint_t c, const char* op) {
  REQUIRE(c && c->c, "%s: checkpoint handle is NULL", op);
  return *c->c;
}

void default_shard_params(tppp_shard_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->tp_size = 1;
  p->pp_size = 1;
}

tppp::GridSpec grid_of(const tppp_shard_params* in, const char* op) {
  tppp_shard_params p;
  default_shard_params(&p);
  if (in) tppp_shim::read_versioned(in, &p, "tppp_shard_params");
  REQUIRE(p.tp_size > 0 && p.pp_size > 0, "%s: tp_size %d and pp_size %d must be positive", op, p.tp_size,
          p.pp_size);
  REQUIRE(p.tp_rank >= 0 && p.tp_rank < p.tp_size, "%s: tp_rank %d is outside [0, %d)", op, p.tp_rank, p.tp_size);
  REQUIRE(p.pp_rank >= 0 && p.pp_rank < p.pp_size, "%s: pp_rank %d is outside [0, %d)", op, p.pp_rank, p.pp_size);
  tppp::GridSpec g;
  g.tp = p.tp_size;
  g.tp_rank = p.tp_rank;
  g.pp = p.pp_size;
  g.pp_rank = p.pp_rank;
  if (p.layer_split)
    for (int i = 0; i < p.pp_size; i++) g.layer_split.push_back(p.layer_split[i]);
  return g;
}

int32_t rule_code(tppp::ShardRule r) { return static_cast<int32_t>(r); }

void default_load_params(tppp_load_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->dtype = -1;
  p->device = TPPP_DEVICE_CPU;
}

}  // namespace

extern "C" {

tppp_status tppp_checkpoint_open(const char* path, tppp_checkpoint_t* out) {
  API_BEGIN
  REQUIRE(path, "tppp_checkpoint_open: path is NULL");
  REQUIRE(out, "tppp_checkpoint_open: out is NULL");
  std::unique_ptr<tppp_checkpoint_s> h(new tppp_checkpoint_s());
  h->c = tppp::Checkpoint::open(path);
  *out = h.release();
  API_END
}

void tppp_checkpoint_close(tppp_checkpoint_t c) { delete c; }

tppp_status tppp_checkpoint_num_tensors(tppp_checkpoint_t c, size_t* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_num_tensors");
  REQUIRE(out, "tppp_checkpoint_num_tensors: out is NULL");
  *out = k.tensors().size();
  API_END
}

tppp_status tppp_checkpoint_find(tppp_checkpoint_t c, const char* name, size_t* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_find");
  REQUIRE(name && out, "tppp_checkpoint_find: name or out is NULL");
  const tppp::TensorRef* r = &k.get(name);
  *out = static_cast<size_t>(r - k.tensors().data());
  API_END
}

tppp_status tppp_checkpoint_tensor_info(tppp_checkpoint_t c, size_t index, tppp_tensor_info* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_tensor_info");
  REQUIRE(out, "tppp_checkpoint_tensor_info: out is NULL");
  REQUIRE(index < k.tensors().size(), "tppp_checkpoint_tensor_info: index %zu is outside [0, %zu)", index,
          k.tensors().size());
  const tppp::TensorRef& r = k.tensors()[index];
  tppp_tensor_info i;
  std::memset(&i, 0, sizeof i);
  i.dtype = r.t->dtype;
  i.name = r.t->name.c_str();
  i.dtype_name = r.t->dtype_name.c_str();
  i.file = k.files()[r.file].path.c_str();
  i.ndim = static_cast<int32_t>(r.t->shape.size());
  for (size_t d = 0; d < r.t->shape.size() && d < TPPP_MAX_DIMS; d++) i.shape[d] = r.t->shape[d];
  i.nbytes = r.t->end - r.t->begin;
  tppp_shim::write_versioned(i, out, "tppp_tensor_info");
  API_END
}

tppp_status tppp_checkpoint_model_config(tppp_checkpoint_t c, tppp_model_config* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_model_config");
  REQUIRE(out, "tppp_checkpoint_model_config: out is NULL");
  const tppp::ModelConfig& m = k.config();
  tppp_model_config v;
  std::memset(&v, 0, sizeof v);
  v.present = m.present ? 1 : 0;
  v.hidden_size = m.hidden;
  v.num_heads = m.heads;
  v.num_kv_heads = m.kv_heads;
  v.head_dim = m.head_dim;
  v.intermediate_size = m.intermediate;
  v.num_layers = m.layers;
  v.vocab_size = m.vocab;
  v.tie_word_embeddings = m.tie_word_embeddings ? 1 : 0;
  tppp_shim::write_versioned(v, out, "tppp_model_config");
  API_END
}

tppp_status tppp_shard_params_init(tppp_shard_params* p, size_t size) {
  API_BEGIN
  tppp_shard_params d;
  default_shard_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_shard_params_init");
  API_END
}

tppp_status tppp_checkpoint_shard_info(tppp_checkpoint_t c, const char* name, const tppp_shard_params* p,
                                       tppp_slice* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_shard_info");
  REQUIRE(name && out, "tppp_checkpoint_shard_info: name or out is NULL");
  tppp::GridSpec g = grid_of(p, "tppp_checkpoint_shard_info");
  tppp::ShardDecision d = k.decide(name, g);
  const tppp::TensorRef& r = k.get(d.source);
  tppp_slice s;
  std::memset(&s, 0, sizeof s);
  s.rule = rule_code(d.rule);
  s.source = r.t->name.c_str();
  if (d.rule != tppp::ShardRule::OtherStage) {
    tppp::SlicePlan plan = tppp::plan_slice(r.t->shape, r.t->esize, d.spec, name);
    s.dim = d.spec.dim;
    s.pad = d.spec.pad ? 1 : 0;
    s.parts = d.spec.parts;
    s.index = d.spec.index;
    REQUIRE(plan.out_shape.size() <= TPPP_MAX_DIMS, "tensor '%s' has %zu dimensions (max %d)", name,
            plan.out_shape.size(), TPPP_MAX_DIMS);
    s.ndim = static_cast<int32_t>(plan.out_shape.size());
    for (size_t i = 0; i < plan.out_shape.size(); i++) s.shape[i] = plan.out_shape[i];
    s.read_bytes = plan.read_bytes;
    s.out_bytes = plan.out_bytes;
  }
  tppp_shim::write_versioned(s, out, "tppp_slice");
  API_END
}

tppp_status tppp_checkpoint_validate_grid(tppp_checkpoint_t c, const tppp_shard_params* p) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_validate_grid");
  k.validate_grid(grid_of(p, "tppp_checkpoint_validate_grid"));
  API_END
}

tppp_status tppp_checkpoint_load_async(tppp_checkpoint_t c, const char* name, const tppp_slice* slice,
                                       const tppp_tensor* dst, void* stream) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_load");
  REQUIRE(name && dst, "tppp_checkpoint_load: name or dst is NULL");
  std::string source = name;
  tppp::SliceSpec spec;  // whole tensor
  if (slice) {
    REQUIRE(slice->struct_size >= sizeof(tppp_slice), "tppp_checkpoint_load: slice.struct_size %u: fill it with "
            "tppp_checkpoint_shard_info", slice->struct_size);
    REQUIRE(slice->rule != TPPP_SHARD_OTHER_STAGE,
            "tppp_checkpoint_load: tensor '%s' belongs to another pipeline stage", name);
    if (slice->source) source = slice->source;
    spec.dim = slice->dim;
    spec.parts = slice->parts;
    spec.index = slice->index;
    spec.pad = slice->pad != 0;
  }
  REQUIRE(dst->mem_kind == TPPP_MEM_HOST || dst->mem_kind == TPPP_MEM_PINNED || dst->mem_kind == TPPP_MEM_CUDA,
          "tppp_checkpoint_load: tensor '%s': destination memory kind %d is not a TPPP_MEM_* value", name,
          dst->mem_kind);
  REQUIRE(dst->strides == nullptr, "tppp_checkpoint_load: tensor '%s': destination must be contiguous", name);
  REQUIRE(tppp::dtype_valid(dst->dtype), "tppp_checkpoint_load: destination dtype %d is not valid", dst->dtype);
  REQUIRE(dst->ndim >= 0 && dst->ndim <= TPPP_MAX_DIMS, "tppp_checkpoint_load: destination ndim %d", dst->ndim);
  tppp::check_tensor(*dst, "tppp_checkpoint_load", "dst");
  const tppp::TensorRef& r = k.get(source);
  tppp::SlicePlan plan = tppp::plan_slice(r.t->shape, r.t->esize, spec, name);
  bool same = plan.out_shape.size() == static_cast<size_t>(dst->ndim);
  for (size_t i = 0; same && i < plan.out_shape.size(); i++) same = plan.out_shape[i] == dst->shape[i];
  REQUIRE(same, "tppp_checkpoint_load: tensor '%s': destination shape does not match the slice's", name);
  size_t bytes = tppp::dtype_size(dst->dtype);
  for (int64_t d : plan.out_shape) bytes *= static_cast<size_t>(d);
  if (dst->mem_kind == TPPP_MEM_CUDA) {
    if (!tppp::cuda_built())
      tppp::fail(TPPP_ERR_NOT_SUPPORTED, "tppp_checkpoint_load: tensor '%s': device destinations need a CUDA build",
                 name);
    REQUIRE(bytes == 0 || tppp::is_device_pointer(dst->data),
            "tppp_checkpoint_load: tensor '%s': destination says TPPP_MEM_CUDA but %p is not device memory", name,
            dst->data);
    k.load_to_device(source, spec, dst->data, bytes, dst->dtype, stream);
  } else {
    k.load(source, spec, dst->data, bytes, dst->dtype);
  }
  API_END
}

tppp_status tppp_checkpoint_load(tppp_checkpoint_t c, const char* name, const tppp_slice* slice,
                                 const tppp_tensor* dst) {
  return tppp_checkpoint_load_async(c, name, slice, dst, nullptr);
}

tppp_status tppp_checkpoint_load_merged(tppp_checkpoint_t c, const char* const* names, size_t n,
                                        const tppp_shard_params* p, const tppp_tensor* dst, void* stream) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_load_merged");
  REQUIRE(names && n > 0 && dst, "tppp_checkpoint_load_merged: names, n or dst is empty");
  REQUIRE(dst->ndim >= 1 && dst->ndim <= TPPP_MAX_DIMS, "tppp_checkpoint_load_merged: dst ndim %d", dst->ndim);
  REQUIRE(tppp::dtype_valid(dst->dtype), "tppp_checkpoint_load_merged: dst dtype %d is not valid", dst->dtype);
  tppp::check_tensor(*dst, "tppp_checkpoint_load_merged", "dst");
  std::vector<tppp_slice> slices(n);
  int64_t rows = 0;
  for (size_t i = 0; i < n; i++) {
    REQUIRE(names[i], "tppp_checkpoint_load_merged: names[%zu] is NULL", i);
    slices[i].struct_size = sizeof(tppp_slice);
    tppp_status s = tppp_checkpoint_shard_info(c, names[i], p, &slices[i]);
    if (s != TPPP_OK) return s;
    const tppp_slice& sl = slices[i];
    REQUIRE(sl.rule != TPPP_SHARD_OTHER_STAGE, "tppp_checkpoint_load_merged: '%s' belongs to another stage",
            names[i]);
    REQUIRE(sl.ndim == dst->ndim, "tppp_checkpoint_load_merged: '%s' has %d dims, dst %d", names[i], sl.ndim,
            dst->ndim);
    for (int d = 1; d < sl.ndim; d++)
      REQUIRE(sl.shape[d] == dst->shape[d], "tppp_checkpoint_load_merged: '%s' dim %d is %lld, dst has %lld",
              names[i], d, static_cast<long long>(sl.shape[d]), static_cast<long long>(dst->shape[d]));
    rows += sl.shape[0];
  }
  REQUIRE(rows == dst->shape[0], "tppp_checkpoint_load_merged: the slices stack to %lld rows, dst has %lld",
          static_cast<long long>(rows), static_cast<long long>(dst->shape[0]));
  size_t row_bytes = tppp::dtype_size(dst->dtype);
  for (int d = 1; d < dst->ndim; d++) row_bytes *= static_cast<size_t>(dst->shape[d]);
  char* at = static_cast<char*>(dst->data);
  for (size_t i = 0; i < n; i++) {
    tppp_tensor part = *dst;
    part.data = at;
    part.shape[0] = slices[i].shape[0];
    tppp_status s = tppp_checkpoint_load_async(c, names[i], &slices[i], &part, stream);
    if (s != TPPP_OK) return s;
    at += static_cast<size_t>(slices[i].shape[0]) * row_bytes;
  }
  (void)k;
  API_END
}

tppp_status tppp_load_params_init(tppp_load_params* p, size_t size) {
  API_BEGIN
  tppp_load_params d;
  default_load_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_load_params_init");
  API_END
}

tppp_status tppp_checkpoint_load_rank(tppp_checkpoint_t c, const tppp_shard_params* shard,
                                      const tppp_load_params* params, tppp_weights_t* out) {
  API_BEGIN
  tppp::Checkpoint& k = ck(c, "tppp_checkpoint_load_rank");
  REQUIRE(out, "tppp_checkpoint_load_rank: out is NULL");
  tppp_load_params lp;
  default_load_params(&lp);
  if (params) tppp_shim::read_versioned(params, &lp, "tppp_load_params");
  REQUIRE(lp.dtype == -1 || lp.dtype == TPPP_DTYPE_F32 || lp.dtype == TPPP_DTYPE_F16 || lp.dtype == TPPP_DTYPE_BF16,
          "tppp_checkpoint_load_rank: dtype %d: use -1 (keep) or F32/F16/BF16", lp.dtype);
  REQUIRE(lp.num_threads >= 0, "tppp_checkpoint_load_rank: num_threads %d is negative", lp.num_threads);
  REQUIRE(lp.num_streams >= 0, "tppp_checkpoint_load_rank: num_streams %d is negative", lp.num_streams);
  REQUIRE(lp.device >= TPPP_DEVICE_CPU, "tppp_checkpoint_load_rank: device %d: use TPPP_DEVICE_CPU or a CUDA ordinal",
          lp.device);
  REQUIRE(lp.device == TPPP_DEVICE_CPU || !lp.alloc,
          "tppp_checkpoint_load_rank: alloc is set and device is %d: device weights live in the library's allocation",
          lp.device);
  if (lp.device >= 0) tppp::check_cuda_device(lp.device);
  tppp::LoadOptions o;
  o.dtype = lp.dtype;
  o.threads = lp.num_threads;
  o.device = lp.device;
  o.lanes = lp.num_streams;
  if (lp.alloc) {
    tppp_alloc_fn fn = lp.alloc;
    void* user = lp.alloc_user;
    o.alloc = [fn, user](size_t bytes, const std::string& name) { return fn(bytes, name.c_str(), user); };
  }
  if (lp.progress) {
    tppp_progress_fn fn = lp.progress;
    void* user = lp.progress_user;
    o.progress = [fn, user](uint64_t done, uint64_t total) { return fn(done, total, user) != 0; };
  }
  std::unique_ptr<tppp_weights_s> h(new tppp_weights_s());
  const tppp::GridSpec grid = grid_of(shard, "tppp_checkpoint_load_rank");
  h->w = tppp::WeightSet::load(k, grid, o);
  *out = h.release();
  API_END
}

namespace {
void describe(const tppp::WeightEntry& e, int device, tppp_tensor* out) {
  tppp_tensor t;
  std::memset(&t, 0, sizeof t);
  t.data = e.data;
  t.mem_kind = device >= 0 ? TPPP_MEM_CUDA : TPPP_MEM_HOST;
  t.device = device;
  t.dtype = e.dtype;
  t.ndim = static_cast<int32_t>(e.shape.size() < TPPP_MAX_DIMS ? e.shape.size() : TPPP_MAX_DIMS);
  for (int32_t i = 0; i < t.ndim; i++) t.shape[i] = e.shape[static_cast<size_t>(i)];
  *out = t;
}
}  // namespace

tppp_status tppp_weights_count(tppp_weights_t w, size_t* out) {
  API_BEGIN
  REQUIRE(w && w->w, "tppp_weights_count: weights handle is NULL");
  REQUIRE(out, "tppp_weights_count: out is NULL");
  *out = w->w->entries().size();
  API_END
}

tppp_status tppp_weights_get(tppp_weights_t w, size_t i, const char** name, tppp_tensor* out) {
  API_BEGIN
  REQUIRE(w && w->w, "tppp_weights_get: weights handle is NULL");
  REQUIRE(name && out, "tppp_weights_get: name or out is NULL");
  REQUIRE(i < w->w->entries().size(), "tppp_weights_get: index %zu is outside [0, %zu)", i, w->w->entries().size());
  const tppp::WeightEntry& e = w->w->entries()[i];
  describe(e, w->w->device(), out);
  *name = e.name.c_str();
  API_END
}

tppp_status tppp_weights_find(tppp_weights_t w, const char* name, tppp_tensor* out) {
  API_BEGIN
  REQUIRE(w && w->w, "tppp_weights_find: weights handle is NULL");
  REQUIRE(name && out, "tppp_weights_find: name or out is NULL");
  const tppp::WeightEntry* e = w->w->find(name);
  REQUIRE(e, "tppp_weights_find: this rank holds no tensor named '%s'", name);
  describe(*e, w->w->device(), out);
  API_END
}

void tppp_weights_free(tppp_weights_t w) { delete w; }

tppp_status tppp_shard_params_from_group(tppp_group_t g, tppp_shard_params* p) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_shard_params_from_group: group handle is NULL");
  REQUIRE(p, "tppp_shard_params_from_group: params is NULL");
  REQUIRE(p->struct_size >= sizeof(uint32_t), "tppp_shard_params.struct_size is %u: call tppp_shard_params_init first",
          p->struct_size);
  tppp_shard_params v;
  std::memset(&v, 0, sizeof v);
  v.tp_size = g->g->config().tp;
  v.pp_size = g->g->config().pp;
  v.tp_rank = g->g->pos().tp_rank;
  v.pp_rank = g->g->pos().pp_rank;
  tppp_shim::write_versioned(v, p, "tppp_shard_params");
  API_END
}

}  // extern "C"
