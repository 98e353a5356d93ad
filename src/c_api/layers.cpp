// extern "C" shims for the TP layers (src/layers), and binding a layer from
// a checkpoint: the loader resolves the module's names and slices, the
// layer takes the tensors.
#include <cstring>

#include "c_api.h"
#include "c_api/handles.hpp"
#include "c_api/shim.hpp"
#include "core/dtype.hpp"
#include "group/group.hpp"
#include "layers/tp_layer.hpp"
#include "model/bind.hpp"


namespace {

tppp::TpLayer& layer(tppp_layer_t l, const char* op) {
  REQUIRE(l && l->l, "%s: layer handle is NULL", op);
  return *l->l;
}

void default_layer_params(tppp_layer_params* p) {
  std::memset(p, 0, sizeof *p);
  p->struct_size = sizeof *p;
  p->kind = TPPP_LAYER_COLUMN;
  p->dtype = TPPP_DTYPE_F32;
  p->input_is_parallel = 1;
}

}  // namespace

extern "C" {

tppp_status tppp_layer_params_init(tppp_layer_params* p, size_t size) {
  API_BEGIN
  tppp_layer_params d;
  default_layer_params(&d);
  tppp_shim::init_versioned(p, size, d, "tppp_layer_params_init");
  API_END
}

tppp_status tppp_layer_create(tppp_group_t g, const tppp_layer_params* params, tppp_layer_t* out) {
  API_BEGIN
  REQUIRE(g && g->g, "tppp_layer_create: group handle is NULL");
  REQUIRE(params && out, "tppp_layer_create: params or out is NULL");
  g->g->check_live("tppp_layer_create");
  tppp_layer_params p;
  default_layer_params(&p);
  tppp_shim::read_versioned(params, &p, "tppp_layer_params");
  REQUIRE(p.kind >= TPPP_LAYER_COLUMN && p.kind <= TPPP_LAYER_MLP, "tppp_layer_create: kind %d is not a TPPP_LAYER_*",
          p.kind);
  tppp::LayerSpec s;
  s.kind = static_cast<tppp::LayerKind>(p.kind);
  s.dtype = p.dtype;
  s.in = p.in_features;
  s.out = p.out_features;
  s.bias = p.bias != 0;
  s.gather_output = p.gather_output != 0;
  s.input_is_parallel = p.input_is_parallel != 0;
  s.heads = p.num_heads;
  s.kv_heads = p.num_kv_heads;
  s.head_dim = p.head_dim;
  s.vocab = p.vocab_size;
  s.gather_to_rank0 = p.gather_to_rank0 != 0;
  std::unique_ptr<tppp_layer_s> h(new tppp_layer_s());
  h->l = tppp::make_layer(*g->g, s);
  *out = h.release();
  API_END
}

void tppp_layer_destroy(tppp_layer_t l) { delete l; }

tppp_status tppp_layer_weight_shape(tppp_layer_t l, int32_t part, int32_t* ndim, int64_t* shape) {
  API_BEGIN
  tppp::TpLayer& L = layer(l, "tppp_layer_weight_shape");
  REQUIRE(ndim && shape, "tppp_layer_weight_shape: ndim or shape is NULL");
  REQUIRE(part >= 0 && part < L.parts(), "tppp_layer_weight_shape: part %d (the layer has %d)", part, L.parts());
  std::vector<int64_t> s = L.weight_shape(part);
  *ndim = static_cast<int32_t>(s.size());
  for (size_t i = 0; i < s.size(); i++) shape[i] = s[i];
  API_END
}

tppp_status tppp_layer_bind(tppp_layer_t l, int32_t part, const tppp_tensor* weight, const tppp_tensor* bias) {
  API_BEGIN
  tppp::TpLayer& L = layer(l, "tppp_layer_bind");
  REQUIRE(weight, "tppp_layer_bind: weight is NULL");
  tppp::check_tensor(*weight, "tppp_layer_bind", "weight");
  if (bias) tppp::check_tensor(*bias, "tppp_layer_bind", "bias");
  L.bind(part, *weight, bias);
  API_END
}

tppp_status tppp_layer_bind_checkpoint(tppp_layer_t l, tppp_checkpoint_t c, const char* prefix) {
  API_BEGIN
  tppp::TpLayer& L = layer(l, "tppp_layer_bind_checkpoint");
  REQUIRE(c && c->c, "tppp_layer_bind_checkpoint: checkpoint handle is NULL");
  REQUIRE(prefix, "tppp_layer_bind_checkpoint: prefix is NULL");
  tppp::bind_checkpoint(L, *c->c, prefix);
  API_END
}

tppp_status tppp_layer_forward(tppp_layer_t l, const tppp_tensor* x, const tppp_tensor* y, void* stream) {
  API_BEGIN
  tppp::TpLayer& L = layer(l, "tppp_layer_forward");
  REQUIRE(x, "tppp_layer_forward: x is NULL");
  L.forward(*x, y, stream);  // checks x and y itself: a failed check is told to the TP peers
  API_END
}

tppp_status tppp_layer_argmax(tppp_layer_t l, const tppp_tensor* x, const tppp_tensor* ids, void* stream) {
  API_BEGIN
  tppp::TpLayer& L = layer(l, "tppp_layer_argmax");
  REQUIRE(x && ids, "tppp_layer_argmax: x or ids is NULL");
  L.argmax(*x, *ids, stream);
  API_END
}

}  // extern "C"
