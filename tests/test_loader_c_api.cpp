// The checkpoint C API: listing, shard info, loads into caller buffers, and
// argument checking (null handles, wrong shapes, other-stage slices, device
// destinations, versioned structs).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace {
const std::string kFix = TPPP_FIXTURES;
bool has(const char* hay, const char* needle) { return std::string(hay).find(needle) != std::string::npos; }
}  // namespace

TEST_SUITE("loader") {
  TEST_CASE("C API: list, shard, load") {
    tppp_checkpoint_t c = nullptr;
    REQUIRE(tppp_checkpoint_open((kFix + "/qwen2").c_str(), &c) == TPPP_OK);
    size_t n = 0;
    REQUIRE(tppp_checkpoint_num_tensors(c, &n) == TPPP_OK);
    CHECK(n == 39);
    size_t idx = 99;
    REQUIRE(tppp_checkpoint_find(c, "model.layers.2.mlp.down_proj.weight", &idx) == TPPP_OK);
    tppp_tensor_info ti;
    ti.struct_size = sizeof ti;
    REQUIRE(tppp_checkpoint_tensor_info(c, idx, &ti) == TPPP_OK);
    CHECK(std::string(ti.name) == "model.layers.2.mlp.down_proj.weight");
    CHECK(ti.dtype == TPPP_DTYPE_F32);
    CHECK(ti.ndim == 2);
    CHECK(ti.shape[0] == 32);
    CHECK(ti.shape[1] == 64);
    CHECK(ti.nbytes == 32 * 64 * 4);
    CHECK(has(ti.file, "model-0000"));
    tppp_model_config mc;
    mc.struct_size = sizeof mc;
    REQUIRE(tppp_checkpoint_model_config(c, &mc) == TPPP_OK);
    CHECK(mc.present == 1);
    CHECK(mc.num_kv_heads == 2);
    CHECK(mc.head_dim == 8);
    CHECK(mc.vocab_size == 37);

    // Row-parallel slice on rank 1 of tp=2, stage 1 of pp=2 (layers 2..3).
    tppp_shard_params sp;
    REQUIRE(tppp_shard_params_init(&sp, sizeof sp) == TPPP_OK);
    sp.tp_size = 2;
    sp.tp_rank = 1;
    sp.pp_size = 2;
    sp.pp_rank = 1;
    tppp_slice sl;
    sl.struct_size = sizeof sl;
    REQUIRE(tppp_checkpoint_shard_info(c, "model.layers.2.mlp.down_proj.weight", &sp, &sl) == TPPP_OK);
    CHECK(sl.rule == TPPP_SHARD_ROW);
    CHECK(sl.dim == 1);
    CHECK(sl.ndim == 2);
    CHECK(sl.shape[0] == 32);
    CHECK(sl.shape[1] == 32);
    CHECK(sl.read_bytes == 32 * 32 * 4);
    std::vector<float> got(32 * 32), whole(32 * 64);
    th::poison(got.data(), got.size() * 4);
    tppp_tensor dst{};
    dst.data = got.data();
    dst.mem_kind = TPPP_MEM_HOST;
    dst.device = -1;
    dst.dtype = TPPP_DTYPE_F32;
    dst.ndim = 2;
    dst.shape[0] = 32;
    dst.shape[1] = 32;
    REQUIRE(tppp_checkpoint_load(c, "model.layers.2.mlp.down_proj.weight", &sl, &dst) == TPPP_OK);
    tppp_tensor all = dst;
    all.data = whole.data();
    all.shape[1] = 64;
    REQUIRE(tppp_checkpoint_load(c, "model.layers.2.mlp.down_proj.weight", nullptr, &all) == TPPP_OK);
    for (int r = 0; r < 32; r++)
      for (int k = 0; k < 32; k++) CHECK_EQ(got[r * 32 + k], whole[r * 64 + 32 + k]);

    // Mistakes.
    CHECK(tppp_checkpoint_load(c, "model.layers.2.mlp.down_proj.weight", &sl, &all) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "shape does not match"));
    tppp_tensor dev = dst;
    dev.mem_kind = TPPP_MEM_CUDA;
    CHECK(tppp_checkpoint_load(c, "model.layers.2.mlp.down_proj.weight", &sl, &dev) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "memory kind"));
    REQUIRE(tppp_checkpoint_shard_info(c, "model.layers.0.mlp.down_proj.weight", &sp, &sl) == TPPP_OK);
    CHECK(sl.rule == TPPP_SHARD_OTHER_STAGE);
    CHECK(tppp_checkpoint_load(c, "model.layers.0.mlp.down_proj.weight", &sl, &dst) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "another pipeline stage"));
    CHECK(tppp_checkpoint_find(c, "nope", &idx) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "'nope'"));
    CHECK(tppp_checkpoint_tensor_info(c, n, &ti) == TPPP_ERR_INVALID_ARGUMENT);
    sp.tp_rank = 2;
    CHECK(tppp_checkpoint_shard_info(c, "model.norm.weight", &sp, &sl) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "tp_rank 2"));
    sp.tp_rank = 0;
    sp.tp_size = 3;
    CHECK(tppp_checkpoint_validate_grid(c, &sp) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "not divisible by tp 3"));
    tppp_checkpoint_close(c);
  }

  TEST_CASE("C API: null handles and bad files") {
    tppp_checkpoint_t c = nullptr;
    size_t n;
    CHECK(tppp_checkpoint_open(nullptr, &c) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_open("x", nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_num_tensors(nullptr, &n) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_find(nullptr, "a", &n) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_tensor_info(nullptr, 0, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_model_config(nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_shard_info(nullptr, "a", nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_validate_grid(nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_checkpoint_load(nullptr, "a", nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_shard_params_init(nullptr, 8) == TPPP_ERR_INVALID_ARGUMENT);
    tppp_checkpoint_close(nullptr);
    CHECK(tppp_checkpoint_open((kFix + "/bad/gap.safetensors").c_str(), &c) == TPPP_ERR_FORMAT);
    CHECK(c == nullptr);
    CHECK(has(tppp_last_error(), "gap.safetensors"));
    CHECK(tppp_checkpoint_open((kFix + "/missing.safetensors").c_str(), &c) == TPPP_ERR_IO);
  }
}
