// C API surface: versions, statuses, params, the function table, logging,
// and argument checking (null handles/pointers, bad group shapes).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "harness.hpp"

TEST_SUITE("c_api") {
  TEST_CASE("version and ABI check") {
    CHECK(tppp_version() == TPPP_VERSION_CODE);
    CHECK(tppp_abi_check(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR) == TPPP_OK);
    CHECK(tppp_abi_check(TPPP_VERSION_MAJOR + 1, 0) == TPPP_ERR_VERSION_MISMATCH);
    CHECK(std::string(tppp_last_error()).find("header version") != std::string::npos);
    CHECK(tppp_abi_check(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR + 1) == TPPP_ERR_VERSION_MISMATCH);
  }

  TEST_CASE("the last error is the last failure's: success leaves it (like ncclGetLastError)") {
    size_t s = 0;
    CHECK(tppp_dtype_size(42, &s) == TPPP_ERR_INVALID_ARGUMENT);
    const std::string failed = tppp_last_error();
    CHECK(failed.find("dtype 42") != std::string::npos);
    CHECK(tppp_dtype_size(TPPP_DTYPE_F32, &s) == TPPP_OK);
    CHECK(tppp_abi_check(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR) == TPPP_OK);
    CHECK(std::string(tppp_last_error()) == failed);
    CHECK(tppp_dtype_size(43, &s) == TPPP_ERR_INVALID_ARGUMENT);  // the next failure replaces it
    CHECK(std::string(tppp_last_error()).find("dtype 43") != std::string::npos);
  }

  TEST_CASE("status strings are fixed and total") {
    CHECK(std::string(tppp_status_string(TPPP_OK)) == "TPPP_OK");
    CHECK(std::string(tppp_status_string(TPPP_ERR_TIMEOUT)) == "TPPP_ERR_TIMEOUT");
    CHECK(std::string(tppp_status_string(TPPP_ERR_INTERNAL)) == "TPPP_ERR_INTERNAL");
    CHECK(std::string(tppp_status_string(9999)) == "TPPP_ERR_UNKNOWN_STATUS");
    // The numeric values are part of the ABI.
    CHECK(TPPP_ERR_INVALID_ARGUMENT == 1);
    CHECK(TPPP_ERR_REMOTE == 10);
    CHECK(TPPP_ERR_TIMEOUT == 11);
    CHECK(TPPP_ERR_ABORTED == 13);
    CHECK(TPPP_ERR_INTERNAL == 16);
  }

  TEST_CASE("dtype sizes") {
    size_t s = 0;
    const int32_t dts[] = {TPPP_DTYPE_F32, TPPP_DTYPE_F16, TPPP_DTYPE_BF16, TPPP_DTYPE_F8E4M3, TPPP_DTYPE_F8E5M2,
                           TPPP_DTYPE_I8, TPPP_DTYPE_U8, TPPP_DTYPE_I32, TPPP_DTYPE_I64};
    const size_t want[] = {4, 2, 2, 1, 1, 1, 1, 4, 8};
    for (int i = 0; i < 9; i++) {
      REQUIRE(tppp_dtype_size(dts[i], &s) == TPPP_OK);
      CHECK(s == want[i]);
    }
    s = 77;
    CHECK(tppp_dtype_size(42, &s) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(s == 77);  // out-param untouched on failure
    CHECK(std::string(tppp_last_error()).find("dtype 42") != std::string::npos);
    CHECK(tppp_dtype_size(TPPP_DTYPE_F32, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
  }

  TEST_CASE("params init honours the caller's struct size") {
    tppp_group_params p;
    std::memset(&p, 0xab, sizeof p);
    REQUIRE(tppp_group_params_init(&p, sizeof p) == TPPP_OK);
    CHECK(p.struct_size == sizeof p);
    CHECK(p.tp_size == 1);
    CHECK(p.pp_size == 1);
    CHECK(p.device == TPPP_DEVICE_CPU);
    CHECK(p.transport == TPPP_TRANSPORT_AUTO);
    CHECK(p.timeout_ms == 60000);
    // An older, shorter struct: only its bytes are written.
    unsigned char buf[sizeof(tppp_group_params) + 8];
    std::memset(buf, 0xcd, sizeof buf);
    const size_t old_size = offsetof(tppp_group_params, device);
    REQUIRE(tppp_group_params_init(reinterpret_cast<tppp_group_params*>(buf), old_size) == TPPP_OK);
    for (size_t i = old_size; i < sizeof buf; i++) CHECK(buf[i] == 0xcd);
    CHECK(tppp_group_params_init(nullptr, sizeof p) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_params_init(&p, 2) == TPPP_ERR_INVALID_ARGUMENT);
  }

  TEST_CASE("function table") {
    const tppp_api* api = tppp_get_api(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR);
    REQUIRE(api != nullptr);
    CHECK(api->struct_size == sizeof(tppp_api));
    CHECK(api->version_major == TPPP_VERSION_MAJOR);
    CHECK(api->version() == tppp_version());
    CHECK((api->all_reduce == &tppp_all_reduce));
    CHECK((api->barrier == &tppp_barrier));
    // Every slot is filled.
    const void* const* slots = reinterpret_cast<const void* const*>(&api->version);
    size_t nslots = (sizeof(tppp_api) - offsetof(tppp_api, version)) / sizeof(void*);
    for (size_t i = 0; i < nslots; i++) CHECK(slots[i] != nullptr);
    CHECK(tppp_get_api(TPPP_VERSION_MAJOR + 1, 0) == nullptr);
    CHECK(tppp_get_api(TPPP_VERSION_MAJOR, TPPP_VERSION_MINOR + 1) == nullptr);
  }

  TEST_CASE("log callback receives library messages") {
    static std::vector<std::string> got;
    got.clear();
    auto cb = [](int32_t, const char* m, void* user) {
      CHECK(user == &got);
      got.push_back(m);
    };
    REQUIRE(tppp_set_log_callback(cb, &got, TPPP_LOG_DEBUG) == TPPP_OK);
    tppp_unique_id id;
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);  // logs its address at INFO
    tppp::forget_unique_id(id);
    CHECK(tppp_set_log_callback(cb, &got, 7) == TPPP_ERR_INVALID_ARGUMENT);
    REQUIRE(tppp_set_log_callback(nullptr, nullptr, TPPP_LOG_WARN) == TPPP_OK);
    bool seen = false;
    for (auto& m : got) seen |= m.find("unique id listens on") != std::string::npos;
    CHECK(seen);
  }

  TEST_CASE("null handles and pointers give INVALID_ARGUMENT, never a crash") {
    float x = 1.f;
    tppp_request_t r = nullptr;
    int32_t a = 0, b = 0;
    tppp_status st;
    CHECK(tppp_get_unique_id(nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_create(nullptr, 1, 0, nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_create_from_env(nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_abort(nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(std::string(tppp_last_error()).find("NULL") != std::string::npos);
    CHECK(tppp_group_get_async_error(nullptr, &st) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_get_info(nullptr, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_scope(nullptr, 0, &a, &b) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_group_global_rank(nullptr, 0, 0, &a) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_isend(nullptr, 0, 0, 0, &x, 4, nullptr, &r) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_irecv(nullptr, 0, 0, 0, &x, 4, nullptr, &r) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(r == nullptr);
    CHECK(tppp_send(nullptr, 0, 0, 0, &x, 4, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_recv(nullptr, 0, 0, 0, &x, 4, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_request_test(nullptr, &a) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_request_wait(nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_all_reduce(nullptr, 0, &x, &x, 1, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_all_gather(nullptr, 0, &x, &x, 1, TPPP_DTYPE_F32, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_broadcast(nullptr, 0, &x, 1, TPPP_DTYPE_F32, 0, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(tppp_barrier(nullptr, 0) == TPPP_ERR_INVALID_ARGUMENT);
    tppp_group_destroy(nullptr);
    tppp_request_free(nullptr);
  }

  TEST_CASE("bad group shapes are refused before any connection") {
    tppp_unique_id id;
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);
    tppp_group_t g = nullptr;
    tppp_group_params p = th::params(1, 1, 2000);
    struct Case {
      int world, rank, tp, pp;
      const char* needle;
    } cases[] = {
        {0, 0, 1, 1, "world_size must be positive"},
        {-3, 0, 1, 1, "world_size must be positive"},
        {2, 2, 2, 1, "rank 2 is outside"},
        {2, -1, 2, 1, "rank -1 is outside"},
        {4, 1, 3, 1, "does not equal world_size 4"},
        {4, 1, 2, 1, "does not equal world_size 4"},
        {2, 1, 0, 2, "must be positive"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.needle);
      p.tp_size = c.tp;
      p.pp_size = c.pp;
      CHECK(tppp_group_create(&id, c.world, c.rank, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
      CHECK(std::string(tppp_last_error()).find(c.needle) != std::string::npos);
      CHECK(g == nullptr);
    }
    p = th::params(1, 1, 2000);
    p.timeout_ms = 0;
    CHECK(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    p = th::params(1, 1, 2000);
    p.transport = 9;
    CHECK(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    p = th::params(1, 1, 2000);
    p.struct_size = 0;
    CHECK(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(std::string(tppp_last_error()).find("struct_size") != std::string::npos);
    tppp::forget_unique_id(id);
  }

  TEST_CASE("a garbage unique id is refused") {
    tppp_unique_id id;
    std::memset(&id, 0x5a, sizeof id);
    tppp_group_t g = nullptr;
    tppp_group_params p = th::params(1, 2, 2000);
    CHECK(tppp_group_create(&id, 2, 1, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(std::string(tppp_last_error()).find("malformed") != std::string::npos);
    // One flipped bit in a real id is caught by the checksum.
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);
    tppp_unique_id bad = id;
    bad.internal[13] ^= 1;
    CHECK(tppp_group_create(&bad, 2, 1, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    tppp::forget_unique_id(id);
    CHECK(g == nullptr);
  }

  TEST_CASE("transports and devices that are not available say so") {
    tppp_group_t g = nullptr;
    tppp_unique_id id;
    tppp_group_params p = th::params(1, 1, 2000);
    p.transport = TPPP_TRANSPORT_NCCL;
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);
    CHECK(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_ERR_NOT_SUPPORTED);
    CHECK(std::string(tppp_last_error()).find("NCCL") != std::string::npos);
    tppp::forget_unique_id(id);
    // A CUDA group initialises CUDA: in a forked child, so this process
    // never does (a forked CUDA test after it still can).
    auto codes = th::run_ranks(1, 60, [](int, const tppp_unique_id& cid) {
      tppp_group_params q = th::params(1, 1, 2000);
      q.device = 0;
      tppp_group_t cg = nullptr;
      tppp_status s = tppp_group_create(&cid, 1, 0, &q, &cg);
      if (th::test_device() >= 0) {  // the GPU machine (scripts/gpu-check.sh): a CUDA group forms
        RANK_CHECK(s == TPPP_OK, "a CUDA group on device 0: %s", tppp_last_error());
        tppp_group_destroy(cg);
      } else {  // no GPU (CI) or no CUDA build: NOT_SUPPORTED with the reason
        RANK_CHECK(s == TPPP_ERR_NOT_SUPPORTED && cg == nullptr, "device 0 without a GPU: %s", tppp_status_string(s));
        RANK_CHECK(std::string(tppp_last_error()).find("CUDA device 0") != std::string::npos, "message: %s",
                   tppp_last_error());
      }
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}

// Negative and overflowing sizes: every count and shape field a host passes
// is refused with INVALID_ARGUMENT naming it, before anything is allocated
// (tppp_layer_forward with M = -5 once reached the allocator as 2^64 - 5).
TEST_SUITE("c_api") {
  TEST_CASE("negative or overflowing sizes are INVALID_ARGUMENT naming the field") {
    tppp_unique_id id;
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);
    tppp_group_params gp = th::params(1, 1, 5000);
    tppp_group_t g = nullptr;
    REQUIRE(tppp_group_create(&id, 1, 0, &gp, &g) == TPPP_OK);
    auto has = [](const char* needle) { return std::string(tppp_last_error()).find(needle) != std::string::npos; };

    tppp_layer_params lp;
    tppp_layer_params_init(&lp, sizeof lp);
    lp.kind = TPPP_LAYER_REPLICATED;
    lp.in_features = 4;
    lp.out_features = 3;
    tppp_layer_t l = nullptr;
    REQUIRE(tppp_layer_create(g, &lp, &l) == TPPP_OK);
    std::vector<float> w(12, 0.5f), x(8, 1.0f), y(6, -1.0f);
    tppp_tensor wt = th::tensor(w.data(), TPPP_DTYPE_F32, 3, 4);
    wt.shape[1] = -4;
    CHECK(tppp_layer_bind(l, 0, &wt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("tppp_layer_bind: weight.shape[1] is -4"));
    wt.shape[1] = 4;
    REQUIRE(tppp_layer_bind(l, 0, &wt, nullptr) == TPPP_OK);

    tppp_tensor xt = th::tensor(x.data(), TPPP_DTYPE_F32, 2, 4), yt = th::tensor(y.data(), TPPP_DTYPE_F32, 2, 3);
    xt.shape[0] = -5;
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("tppp_layer_forward: x.shape[0] is -5"));
    xt.shape[0] = 2;
    yt.shape[0] = -2;
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("y.shape[0] is -2"));
    yt.shape[0] = 2;
    xt.ndim = -1;
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("x.ndim is -1"));
    xt.ndim = 9;
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    xt.ndim = 2;
    xt.shape[0] = INT64_MAX / 2;  // the byte size overflows
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("byte size overflows"));
    xt.shape[0] = 2;
    CHECK(tppp_layer_forward(l, &xt, &yt, nullptr) == TPPP_OK);  // and the layer still works
    CHECK(y[0] == doctest::Approx(2.0));

    // p2p byte counts and collective element counts that are negative when signed.
    float buf[4] = {1, 2, 3, 4};
    tppp_request_t r = nullptr;
    CHECK(tppp_isend(g, TPPP_SCOPE_WORLD, 0, 1, buf, static_cast<size_t>(-16), nullptr, &r) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("larger than any buffer"));
    CHECK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 1, buf, static_cast<size_t>(-16), nullptr, &r) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(r == nullptr);
    CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, buf, buf, static_cast<size_t>(-4), TPPP_DTYPE_F32, TPPP_OP_SUM,
                          nullptr) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("overflows"));
    CHECK(tppp_broadcast(g, TPPP_SCOPE_WORLD, buf, static_cast<size_t>(-1), TPPP_DTYPE_F32, 0, nullptr) ==
          TPPP_ERR_INVALID_ARGUMENT);

    // Scheduler tensors.
    tppp_scheduler_params sp;
    tppp_scheduler_params_init(&sp, sizeof sp);
    sp.hidden = 4;
    tppp_scheduler_t s = nullptr;
    REQUIRE(tppp_scheduler_create(g, &sp, &s) == TPPP_OK);
    tppp_tensor in = th::tensor(x.data(), TPPP_DTYPE_F32, 2, 4), out = in;
    in.shape[0] = -3;
    CHECK(tppp_scheduler_run(s, &in, &out) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("tppp_scheduler_submit: in.shape[0] is -3"));
    tppp_scheduler_destroy(s);

    // Checkpoint destinations.
    tppp_checkpoint_t c = nullptr;
    REQUIRE(tppp_checkpoint_open(TPPP_FIXTURES "/llama", &c) == TPPP_OK);
    std::vector<char> dst(1 << 16);
    tppp_tensor dt = th::tensor(dst.data(), TPPP_DTYPE_F32, {-1});
    CHECK(tppp_checkpoint_load(c, "model.norm.weight", nullptr, &dt) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has("dst.shape[0] is -1"));
    tppp_checkpoint_close(c);

    tppp_layer_destroy(l);
    tppp_group_destroy(g);
  }
}
