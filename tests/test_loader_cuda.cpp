// Loads into CUDA device memory (CUDA builds): every qwen2 slice of a TP=2
// rank, with and without dtype conversion and vocab padding, copied back
// and compared byte for byte with the host load (the oracle). Skips with a
// message when no GPU is visible (CI); runs on the lent GPU.
#include <doctest/doctest.h>

#ifdef TPPP_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "cuda/device.hpp"
#include "harness.hpp"

TEST_SUITE("cuda") {
  TEST_CASE("checkpoint slices load into device memory like into host memory") {
    std::string why;
    if (tppp::cuda_device_count(&why) == 0) {
      MESSAGE("no CUDA device, skipped: " << why);
      return;
    }
    tppp_checkpoint_t c = nullptr;
    REQUIRE(tppp_checkpoint_open(TPPP_FIXTURES "/qwen2", &c) == TPPP_OK);
    cudaStream_t stream;
    REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
    size_t n = 0;
    tppp_checkpoint_num_tensors(c, &n);
    int checked = 0;
    for (int32_t dtype : {TPPP_DTYPE_F32, TPPP_DTYPE_BF16}) {
      for (size_t i = 0; i < n; i++) {
        tppp_tensor_info ti;
        ti.struct_size = sizeof ti;
        REQUIRE(tppp_checkpoint_tensor_info(c, i, &ti) == TPPP_OK);
        CAPTURE(std::string(ti.name));
        tppp_shard_params sp;
        tppp_shard_params_init(&sp, sizeof sp);
        sp.tp_size = 2;
        sp.tp_rank = 1;
        tppp_slice sl;
        sl.struct_size = sizeof sl;
        REQUIRE(tppp_checkpoint_shard_info(c, ti.name, &sp, &sl) == TPPP_OK);
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
        REQUIRE(tppp_checkpoint_load(c, ti.name, &sl, &t) == TPPP_OK);
        void* dev = nullptr;
        REQUIRE(cudaMalloc(&dev, bytes) == cudaSuccess);
        REQUIRE(cudaMemset(dev, 0xff, bytes) == cudaSuccess);  // poison
        t.data = dev;
        t.mem_kind = TPPP_MEM_CUDA;
        t.device = 0;
        REQUIRE_MESSAGE(tppp_checkpoint_load_async(c, ti.name, &sl, &t, stream) == TPPP_OK, tppp_last_error());
        REQUIRE(cudaMemcpy(back.data(), dev, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(back == host);
        cudaFree(dev);
        checked++;
      }
    }
    CHECK(checked == 78);
    cudaStreamDestroy(stream);
    tppp_checkpoint_close(c);
  }
}
#endif
