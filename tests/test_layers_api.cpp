// TP layers: bad input gets a specific status and message; a layer bound
// from a checkpoint (written by Python safetensors) computes exactly what the
// same layer bound from caller buffers computes.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace {

bool has(const char* hay, const char* needle) { return std::string(hay).find(needle) != std::string::npos; }

using th::tensor;

}  // namespace

TEST_SUITE("layers") {
  TEST_CASE("bad input: shapes, dtypes, divisibility, unbound weights, nulls, device tensors") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params gp = th::params(2, 1, 10000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &gp, &g));
      tppp_layer_params p;
      tppp_layer_params_init(&p, sizeof p);
      p.kind = TPPP_LAYER_COLUMN;
      p.in_features = 8;
      p.out_features = 7;  // not divisible by tp 2
      tppp_layer_t l = nullptr;
      RANK_CHECK(tppp_layer_create(g, &p, &l) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "not divisible by tp 2"),
                 "%s", tppp_last_error());
      RANK_CHECK(l == nullptr, "no layer made");
      p.kind = TPPP_LAYER_QKV;
      p.num_heads = 3;
      p.num_kv_heads = 1;
      p.head_dim = 4;
      RANK_CHECK(tppp_layer_create(g, &p, &l) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "3 heads"), "%s",
                 tppp_last_error());
      p.kind = 42;
      RANK_CHECK(tppp_layer_create(g, &p, &l) == TPPP_ERR_INVALID_ARGUMENT, "kind 42");
      p.kind = TPPP_LAYER_COLUMN;
      p.out_features = 8;
      p.dtype = TPPP_DTYPE_I32;
      RANK_CHECK(tppp_layer_create(g, &p, &l) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "I32"), "%s",
                 tppp_last_error());
      p.dtype = TPPP_DTYPE_F32;
      RANK_CHECK(tppp_layer_create(nullptr, &p, &l) == TPPP_ERR_INVALID_ARGUMENT, "null group");
      RANK_OK(tppp_layer_create(g, &p, &l));
      int32_t nd = 0;
      int64_t sh[8];
      RANK_OK(tppp_layer_weight_shape(l, 0, &nd, sh));
      RANK_CHECK(nd == 2 && sh[0] == 4 && sh[1] == 8, "shard shape");
      std::vector<float> x(3 * 8, 1.0f), y(3 * 4), w(4 * 8, 0.5f);
      tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, {3, 8}), yt = tensor(y.data(), TPPP_DTYPE_F32, {3, 4});
      tppp_status s = tppp_layer_forward(l, &xt, &yt, nullptr);
      RANK_CHECK(s == TPPP_ERR_INVALID_USAGE && has(tppp_last_error(), "before its weights were bound"), "%s",
                 tppp_last_error());
      tppp_tensor wt = tensor(w.data(), TPPP_DTYPE_F32, {8, 4});  // transposed: wrong
      RANK_CHECK(tppp_layer_bind(l, 0, &wt, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "[4, 8]"),
                 "%s", tppp_last_error());
      wt = tensor(w.data(), TPPP_DTYPE_F32, {4, 8});
      RANK_CHECK(tppp_layer_bind(l, 0, &wt, &wt) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "no bias"), "%s",
                 tppp_last_error());
      RANK_CHECK(tppp_layer_bind(l, 1, &wt, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "part 1");
      RANK_OK(tppp_layer_bind(l, 0, &wt, nullptr));
      tppp_tensor bad = tensor(x.data(), TPPP_DTYPE_F32, {3, 9});
      RANK_CHECK(tppp_layer_forward(l, &bad, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "[M, 8]"),
                 "%s", tppp_last_error());
      bad = tensor(x.data(), TPPP_DTYPE_BF16, {3, 8});
      RANK_CHECK(tppp_layer_forward(l, &bad, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "BF16"),
                 "%s", tppp_last_error());
      bad = tensor(y.data(), TPPP_DTYPE_F32, {3, 5});
      RANK_CHECK(tppp_layer_forward(l, &xt, &bad, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "[3, 4]"),
                 "%s", tppp_last_error());
      RANK_CHECK(tppp_layer_forward(l, &xt, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "null y");
      RANK_CHECK(tppp_layer_forward(l, nullptr, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "null x");
      bad = xt;
      bad.mem_kind = TPPP_MEM_CUDA;
      RANK_CHECK(tppp_layer_forward(l, &bad, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "memory kind"),
                 "%s", tppp_last_error());
      bad = xt;
      bad.data = nullptr;
      RANK_CHECK(tppp_layer_forward(l, &bad, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT, "null x data");
      RANK_CHECK(tppp_layer_argmax(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "LM_HEAD"),
                 "%s", tppp_last_error());
      RANK_OK(tppp_layer_forward(l, &xt, &yt, nullptr));
      tppp_layer_destroy(l);
      // Embedding: token ids outside the vocabulary.
      tppp_layer_params_init(&p, sizeof p);
      p.kind = TPPP_LAYER_EMBEDDING;
      p.in_features = 4;
      p.vocab_size = 5;
      RANK_OK(tppp_layer_create(g, &p, &l));
      std::vector<float> tab(3 * 4, 1.0f);
      tppp_tensor tt = tensor(tab.data(), TPPP_DTYPE_F32, {3, 4});
      RANK_OK(tppp_layer_bind(l, 0, &tt, nullptr));
      int32_t ids[2] = {1, 5};
      tppp_tensor it = tensor(ids, TPPP_DTYPE_I32, {2});
      std::vector<float> e(2 * 4);
      tppp_tensor et = tensor(e.data(), TPPP_DTYPE_F32, {2, 4});
      RANK_CHECK(tppp_layer_forward(l, &it, &et, nullptr) == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "token id 5"),
                 "%s", tppp_last_error());
      tppp_layer_destroy(l);
      tppp_layer_destroy(nullptr);
      // A layer on an aborted group.
      tppp_layer_params_init(&p, sizeof p);
      p.in_features = 4;
      p.out_features = 4;
      p.kind = TPPP_LAYER_REPLICATED;
      RANK_OK(tppp_layer_create(g, &p, &l));
      std::vector<float> w4(16, 1.0f), x4(4, 1.0f), y4(4);
      tppp_tensor w4t = tensor(w4.data(), TPPP_DTYPE_F32, {4, 4}), x4t = tensor(x4.data(), TPPP_DTYPE_F32, {1, 4}),
                  y4t = tensor(y4.data(), TPPP_DTYPE_F32, {1, 4});
      RANK_OK(tppp_layer_bind(l, 0, &w4t, nullptr));
      RANK_OK(tppp_group_abort(g));
      RANK_CHECK(tppp_layer_forward(l, &x4t, &y4t, nullptr) == TPPP_ERR_ABORTED, "aborted");
      tppp_layer_destroy(l);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("bound from a checkpoint == bound from caller buffers (qwen2 fixture, TP=2)") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params gp = th::params(2, 1, 10000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &gp, &g));
      tppp_checkpoint_t c = nullptr;
      RANK_OK(tppp_checkpoint_open(TPPP_FIXTURES "/qwen2", &c));
      tppp_model_config mc;
      mc.struct_size = sizeof mc;
      RANK_OK(tppp_checkpoint_model_config(c, &mc));
      const int64_t H = mc.hidden_size, m = 5;
      std::vector<float> x(static_cast<size_t>(m * H));
      for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(th::value(TPPP_DTYPE_F32, 77, 0, i));
      tppp_tensor xt = tensor(x.data(), TPPP_DTYPE_F32, {m, H});
      struct K {
        int kind;
        const char* prefix;
        int bias;
        int64_t out_cols;
      } kinds[] = {{TPPP_LAYER_QKV, "model.layers.1.self_attn", 1, (mc.num_heads / 2 + 2 * (mc.num_kv_heads / 2)) * mc.head_dim},
                   {TPPP_LAYER_MLP, "model.layers.2.mlp", 0, H},
                   {TPPP_LAYER_LM_HEAD, "lm_head", 0, mc.vocab_size}};
      for (const K& k : kinds) {
        tppp_layer_params p;
        tppp_layer_params_init(&p, sizeof p);
        p.kind = k.kind;
        p.in_features = H;
        p.out_features = mc.intermediate_size;
        p.bias = k.bias;
        p.num_heads = mc.num_heads;
        p.num_kv_heads = mc.num_kv_heads;
        p.head_dim = mc.head_dim;
        p.vocab_size = mc.vocab_size;
        tppp_layer_t a = nullptr, b = nullptr;
        RANK_OK(tppp_layer_create(g, &p, &a));
        RANK_OK(tppp_layer_create(g, &p, &b));
        RANK_OK(tppp_layer_bind_checkpoint(a, c, k.prefix));
        // The same shard through caller buffers, stacked here by hand.
        tppp_shard_params sp;
        tppp_shard_params_init(&sp, sizeof sp);
        RANK_OK(tppp_shard_params_from_group(g, &sp));
        std::string P = k.prefix;
        std::vector<std::string> wn, bn;
        if (k.kind == TPPP_LAYER_QKV) {
          wn = {P + ".q_proj.weight", P + ".k_proj.weight", P + ".v_proj.weight"};
          bn = {P + ".q_proj.bias", P + ".k_proj.bias", P + ".v_proj.bias"};
        } else if (k.kind == TPPP_LAYER_MLP) {
          wn = {P + ".gate_proj.weight", P + ".up_proj.weight"};
        } else {
          wn = {P + ".weight"};
        }
        auto stack = [&](const std::vector<std::string>& names, std::vector<float>* buf, tppp_tensor* t) {
          std::vector<const char*> cn;
          int64_t rows = 0, cols = 1;
          int32_t nd = 1;
          for (const auto& n : names) {
            cn.push_back(n.c_str());
            tppp_slice sl;
            sl.struct_size = sizeof sl;
            if (tppp_checkpoint_shard_info(c, n.c_str(), &sp, &sl) != TPPP_OK) return false;
            rows += sl.shape[0];
            nd = sl.ndim;
            cols = sl.ndim > 1 ? sl.shape[1] : 1;
          }
          buf->assign(static_cast<size_t>(rows * cols), -1.0f);
          *t = nd == 2 ? tensor(buf->data(), TPPP_DTYPE_F32, {rows, cols}) : tensor(buf->data(), TPPP_DTYPE_F32, {rows});
          return tppp_checkpoint_load_merged(c, cn.data(), cn.size(), &sp, t, nullptr) == TPPP_OK;
        };
        std::vector<float> wbuf, bbuf, dbuf;
        tppp_tensor wt, bt, dt;
        RANK_CHECK(stack(wn, &wbuf, &wt), "stack %s: %s", k.prefix, tppp_last_error());
        if (!bn.empty()) RANK_CHECK(stack(bn, &bbuf, &bt), "stack bias: %s", tppp_last_error());
        RANK_OK(tppp_layer_bind(b, 0, &wt, bn.empty() ? nullptr : &bt));
        if (k.kind == TPPP_LAYER_MLP) {
          RANK_CHECK(stack({P + ".down_proj.weight"}, &dbuf, &dt), "down: %s", tppp_last_error());
          RANK_OK(tppp_layer_bind(b, 1, &dt, nullptr));
        }
        std::vector<float> ya(static_cast<size_t>(m * k.out_cols)), yb(ya.size());
        th::poison(ya.data(), ya.size() * 4);
        th::poison(yb.data(), yb.size() * 4);
        tppp_tensor yat = tensor(ya.data(), TPPP_DTYPE_F32, {m, k.out_cols}), ybt = tensor(yb.data(), TPPP_DTYPE_F32, {m, k.out_cols});
        RANK_OK(tppp_layer_forward(a, &xt, &yat, nullptr));
        RANK_OK(tppp_layer_forward(b, &xt, &ybt, nullptr));
        RANK_CHECK(std::memcmp(ya.data(), yb.data(), ya.size() * 4) == 0, "%s: checkpoint and caller buffers differ", k.prefix);
        tppp_layer_destroy(a);
        tppp_layer_destroy(b);
      }
      tppp_checkpoint_close(c);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
