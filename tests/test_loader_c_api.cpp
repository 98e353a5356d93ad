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
    // Host memory labelled as CUDA: refused (CUDA build) or not supported (CPU build).
    tppp_status ds = tppp_checkpoint_load(c, "model.layers.2.mlp.down_proj.weight", &sl, &dev);
    CHECK((ds == TPPP_ERR_INVALID_ARGUMENT || ds == TPPP_ERR_NOT_SUPPORTED));
    dev.mem_kind = 7;
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

namespace {

struct Alloc {
  std::vector<std::vector<char>> bufs;
  int calls = 0;
};

void* host_alloc(size_t bytes, const char*, void* user) {
  Alloc* a = static_cast<Alloc*>(user);
  a->calls++;
  a->bufs.emplace_back(bytes, '\x77');
  return a->bufs.back().data();
}

struct Progress {
  int calls = 0;
  uint64_t last = 0, total = 0;
  bool cancel = false;
};

int32_t on_progress(uint64_t done, uint64_t total, void* user) {
  Progress* p = static_cast<Progress*>(user);
  p->calls++;
  p->last = done;
  p->total = total;
  return p->cancel ? 1 : 0;
}

}  // namespace

TEST_SUITE("loader") {
  TEST_CASE("load_rank: every owned slice, equal to per-tensor loads, any thread count and storage") {
    for (const char* model : {"qwen2", "llama"}) {
      CAPTURE(std::string(model));
      tppp_checkpoint_t c = nullptr;
      REQUIRE(tppp_checkpoint_open((kFix + "/" + model).c_str(), &c) == TPPP_OK);
      for (int rank = 0; rank < 4; rank++) {
        tppp_shard_params sp;
        tppp_shard_params_init(&sp, sizeof sp);
        sp.tp_size = 2;
        sp.pp_size = 2;
        sp.tp_rank = rank % 2;
        sp.pp_rank = rank / 2;
        Alloc alloc;
        Progress prog;
        tppp_load_params lp;
        REQUIRE(tppp_load_params_init(&lp, sizeof lp) == TPPP_OK);
        CHECK(lp.dtype == -1);
        lp.num_threads = 1 + rank;  // 1..4 threads
        if (rank % 2) {
          lp.alloc = host_alloc;
          lp.alloc_user = &alloc;
          lp.progress = on_progress;
          lp.progress_user = &prog;
        }
        tppp_weights_t w = nullptr;
        REQUIRE(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_OK);
        size_t n = 0;
        REQUIRE(tppp_weights_count(w, &n) == TPPP_OK);
        CHECK(n > 0);
        uint64_t read = 0;
        for (size_t i = 0; i < n; i++) {
          const char* name = nullptr;
          tppp_tensor t;
          REQUIRE(tppp_weights_get(w, i, &name, &t) == TPPP_OK);
          CAPTURE(std::string(name));
          tppp_slice sl;
          sl.struct_size = sizeof sl;
          REQUIRE(tppp_checkpoint_shard_info(c, name, &sp, &sl) == TPPP_OK);
          CHECK(sl.rule != TPPP_SHARD_OTHER_STAGE);
          read += sl.read_bytes;
          std::vector<char> want(sl.out_bytes, '\x33');
          tppp_tensor d = t;
          d.data = want.data();
          REQUIRE(tppp_checkpoint_load(c, name, &sl, &d) == TPPP_OK);
          CHECK(std::memcmp(want.data(), t.data, want.size()) == 0);
          tppp_tensor f;
          REQUIRE(tppp_weights_find(w, name, &f) == TPPP_OK);
          CHECK(f.data == t.data);
        }
        if (rank % 2) {
          CHECK(alloc.calls == static_cast<int>(n));
          CHECK(prog.calls >= 1);
          CHECK(prog.last == read);
          CHECK(prog.total == read);
        }
        tppp_tensor none;
        CHECK(tppp_weights_find(w, "model.layers.99.x", &none) == TPPP_ERR_INVALID_ARGUMENT);
        tppp_weights_free(w);
      }
      tppp_checkpoint_close(c);
    }
  }

  TEST_CASE("load_rank: dtype conversion, cancel from the progress callback, bad grids") {
    tppp_checkpoint_t c = nullptr;
    REQUIRE(tppp_checkpoint_open((kFix + "/qwen2").c_str(), &c) == TPPP_OK);
    tppp_shard_params sp;
    tppp_shard_params_init(&sp, sizeof sp);
    tppp_load_params lp;
    tppp_load_params_init(&lp, sizeof lp);
    lp.dtype = TPPP_DTYPE_BF16;
    tppp_weights_t w = nullptr;
    REQUIRE(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_OK);
    tppp_tensor t, ref;
    REQUIRE(tppp_weights_find(w, "model.embed_tokens.weight", &t) == TPPP_OK);
    CHECK(t.dtype == TPPP_DTYPE_BF16);
    std::vector<float> full(37 * 32);
    ref = t;
    ref.dtype = TPPP_DTYPE_F32;
    ref.data = full.data();
    REQUIRE(tppp_checkpoint_load(c, "model.embed_tokens.weight", nullptr, &ref) == TPPP_OK);
    std::vector<double> want(full.begin(), full.end());
    CHECK(th::rel_err(TPPP_DTYPE_BF16, t.data, want) < 4e-3);
    tppp_weights_free(w);

    Progress prog;
    prog.cancel = true;
    lp.dtype = -1;
    lp.progress = on_progress;
    lp.progress_user = &prog;
    w = nullptr;
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_ABORTED);
    CHECK(has(tppp_last_error(), "cancelled"));
    CHECK(w == nullptr);

    Alloc none;
    tppp_load_params_init(&lp, sizeof lp);
    lp.alloc = [](size_t, const char*, void*) -> void* { return nullptr; };
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_OUT_OF_MEMORY);
    tppp_load_params_init(&lp, sizeof lp);
    lp.dtype = TPPP_DTYPE_I32;
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    tppp_load_params_init(&lp, sizeof lp);
    sp.tp_size = 3;  // 4 heads: refused before anything is allocated or read
    lp.alloc = host_alloc;
    lp.alloc_user = &none;
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(none.calls == 0);
    CHECK(tppp_checkpoint_load_rank(nullptr, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    sp.tp_size = 1;
    lp.device = 0;  // a device destination with a host allocator
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "alloc is set and device is 0"));
    tppp_load_params_init(&lp, sizeof lp);
    CHECK(lp.device == TPPP_DEVICE_CPU);
    lp.device = -2;
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "device -2"));
    lp.device = 0;
    lp.num_streams = -1;
    CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "num_streams -1"));
    if (th::test_device() < 0) {  // no GPU here: a device load says why (no CUDA build, or no device)
      lp.num_streams = 0;
      CHECK(tppp_checkpoint_load_rank(c, &sp, &lp, &w) == TPPP_ERR_NOT_SUPPORTED);
      CHECK(w == nullptr);
    }
    CHECK(tppp_weights_count(nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    tppp_weights_free(nullptr);
    tppp_checkpoint_close(c);
  }
}

TEST_SUITE("loader") {
  TEST_CASE("merged [gate_r; up_r] and [q_r; k_r; v_r] per rank") {
    tppp_checkpoint_t c = nullptr;
    REQUIRE(tppp_checkpoint_open((kFix + "/qwen2").c_str(), &c) == TPPP_OK);
    tppp_shard_params sp;
    tppp_shard_params_init(&sp, sizeof sp);
    sp.tp_size = 2;
    sp.tp_rank = 1;
    const char* gu[] = {"model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"};
    std::vector<float> merged(64 * 32), gate(64 * 32), up(64 * 32);
    th::poison(merged.data(), merged.size() * 4);
    tppp_tensor dst{};
    dst.data = merged.data();
    dst.mem_kind = TPPP_MEM_HOST;
    dst.device = -1;
    dst.dtype = TPPP_DTYPE_F32;
    dst.ndim = 2;
    dst.shape[0] = 64;  // 32 rows of gate + 32 of up on this rank
    dst.shape[1] = 32;
    REQUIRE(tppp_checkpoint_load_merged(c, gu, 2, &sp, &dst, nullptr) == TPPP_OK);
    tppp_tensor whole = dst;
    whole.data = gate.data();
    REQUIRE(tppp_checkpoint_load(c, gu[0], nullptr, &whole) == TPPP_OK);
    whole.data = up.data();
    REQUIRE(tppp_checkpoint_load(c, gu[1], nullptr, &whole) == TPPP_OK);
    for (int r = 0; r < 32; r++)
      for (int k = 0; k < 32; k++) {
        CHECK_EQ(merged[r * 32 + k], gate[(32 + r) * 32 + k]);         // gate rows 32..63
        CHECK_EQ(merged[(32 + r) * 32 + k], up[(32 + r) * 32 + k]);    // up rows 32..63
      }
    const char* qkv[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                         "model.layers.0.self_attn.v_proj.weight"};
    std::vector<float> m2((16 + 8 + 8) * 32);
    dst.data = m2.data();
    dst.shape[0] = 32;  // q: 2 heads x 8, k and v: 1 kv head x 8
    REQUIRE(tppp_checkpoint_load_merged(c, qkv, 3, &sp, &dst, nullptr) == TPPP_OK);
    dst.shape[0] = 33;
    CHECK(tppp_checkpoint_load_merged(c, qkv, 3, &sp, &dst, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "stack to 32 rows"));
    tppp_checkpoint_close(c);
  }

  TEST_CASE("shard params from a group") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(1, 2, 5000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      tppp_shard_params sp;
      tppp_shard_params_init(&sp, sizeof sp);
      RANK_OK(tppp_shard_params_from_group(g, &sp));
      RANK_CHECK(sp.tp_size == 1 && sp.pp_size == 2 && sp.pp_rank == rank && sp.tp_rank == 0, "params");
      tppp_checkpoint_t c = nullptr;
      RANK_OK(tppp_checkpoint_open(TPPP_FIXTURES "/llama", &c));
      tppp_weights_t w = nullptr;
      RANK_OK(tppp_checkpoint_load_rank(c, &sp, nullptr, &w));
      tppp_tensor t;
      // 5 layers over 2 stages: 0-2 on stage 0, 3-4 on stage 1 (remainder to the earlier stage)
      RANK_CHECK((tppp_weights_find(w, "model.layers.2.mlp.up_proj.weight", &t) == TPPP_OK) == (rank == 0), "layer 2");
      RANK_CHECK((tppp_weights_find(w, "model.layers.3.mlp.up_proj.weight", &t) == TPPP_OK) == (rank == 1), "layer 3");
      RANK_CHECK((tppp_weights_find(w, "lm_head.weight", &t) == TPPP_OK) == (rank == 1), "tied lm_head last");
      RANK_CHECK((tppp_weights_find(w, "model.embed_tokens.weight", &t) == TPPP_OK) == (rank == 0), "embed first");
      tppp_weights_free(w);
      tppp_checkpoint_close(c);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
