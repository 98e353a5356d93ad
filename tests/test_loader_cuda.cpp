// Loads into CUDA device memory (CUDA builds): every qwen2 slice of a TP=2
// rank, with and without dtype conversion and vocab padding, copied back
// and compared byte for byte with the host load (the oracle). Runs on the
// GPU TPPP_TEST_DEVICE names (scripts/gpu-check.sh sets it) and skips with a
// message elsewhere (CI). Like the other CUDA suites it runs in a forked
// child: the test parent never initialises CUDA, so a forked CUDA test
// after it still can.
#include <doctest/doctest.h>

#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "cuda_util.hpp"
#include "harness.hpp"

namespace {

int load_every_slice(int device) {
  RANK_CHECK(cudaSetDevice(device) == cudaSuccess, "cudaSetDevice(%d)", device);
  tppp_checkpoint_t c = nullptr;
  RANK_CHECK(tppp_checkpoint_open(TPPP_FIXTURES "/qwen2", &c) == TPPP_OK, "open: %s", tppp_last_error());
  cudaStream_t stream;
  RANK_CHECK(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
  size_t n = 0;
  tppp_checkpoint_num_tensors(c, &n);
  int checked = 0;
  for (int32_t dtype : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16}) {
    for (size_t i = 0; i < n; i++) {
      tppp_tensor_info ti;
      ti.struct_size = sizeof ti;
      RANK_CHECK(tppp_checkpoint_tensor_info(c, i, &ti) == TPPP_OK, "tensor_info %zu", i);
      tppp_shard_params sp;
      tppp_shard_params_init(&sp, sizeof sp);
      sp.tp_size = 2;
      sp.tp_rank = 1;
      tppp_slice sl;
      sl.struct_size = sizeof sl;
      RANK_CHECK(tppp_checkpoint_shard_info(c, ti.name, &sp, &sl) == TPPP_OK, "shard_info %s", ti.name);
      size_t bytes = tppp::dtype_size(dtype);
      for (int d = 0; d < sl.ndim; d++) bytes *= static_cast<size_t>(sl.shape[d]);
      std::vector<char> host(bytes, '\x11'), back(bytes, '\x22');
      tppp_tensor t{};
      t.data = host.data();
      t.mem_kind = TPPP_MEM_HOST;
      t.device = -1;
      t.dtype = dtype;
      t.ndim = sl.ndim;
      for (int d = 0; d < sl.ndim; d++) t.shape[d] = sl.shape[d];
      RANK_CHECK(tppp_checkpoint_load(c, ti.name, &sl, &t) == TPPP_OK, "host load %s: %s", ti.name, tppp_last_error());
      cu::Dev dev(bytes);
      dev.poison();
      t.data = dev.p;
      t.mem_kind = TPPP_MEM_CUDA;
      t.device = device;
      RANK_CHECK(tppp_checkpoint_load_async(c, ti.name, &sl, &t, stream) == TPPP_OK, "device load %s: %s", ti.name,
                 tppp_last_error());
      RANK_CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "sync after %s", ti.name);
      RANK_CHECK(dev.get() == host, "%s (%s): the device copy differs from the host load", ti.name,
                 tppp::dtype_name(dtype));
      checked++;
    }
  }
  RANK_CHECK(checked == 78, "checked %d slices, expected 78", checked);
  cudaStreamDestroy(stream);
  tppp_checkpoint_close(c);
  return 0;
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("checkpoint slices load into device memory like into host memory") {
    if (cu::skip_without_gpu()) return;
    auto codes = th::run_ranks(1, 120, [](int, const tppp_unique_id&) { return load_every_slice(th::test_device()); });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
#endif
