// A Hugging Face checkpoint on disk: one model.safetensors, or shards listed
// by model.safetensors.index.json, plus config.json. Opening validates every
// header, the index against the headers, and shapes against config.json,
// before any byte of tensor data is read or any buffer allocated. Loading
// reads only the byte runs of the requested slice, with pread (a file
// truncated under us gives TPPP_ERR_IO; an mmap would give SIGBUS).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/socket.hpp"
#include "loader/safetensors.hpp"
#include "loader/shard_plan.hpp"

namespace tppp {

struct ShardFile {
  std::string name;  // as in the index ("model-00001-of-00002.safetensors")
  std::string path;
  Fd fd;
  uint64_t size = 0;
  StHeader header;
};

// One pread of a slice (and its dtype conversion), independent of the others:
// the unit the read pool hands out.
struct ReadJob {
  int fd = -1;
  const std::string* file = nullptr;
  const std::string* tensor = nullptr;
  uint64_t offset = 0, bytes = 0;  // in the file
  char* dst = nullptr;
  int32_t src_dtype = 0, dst_dtype = 0;
};
// Runs one job (bounce: scratch for dtype conversion).
void run_read_job(const ReadJob& j, std::vector<char>* bounce);
// Runs jobs on `threads` threads (the caller's included); the first error is
// rethrown after all stop. done_bytes counts file bytes read.
void run_read_jobs(const std::vector<ReadJob>& jobs, int threads, const std::atomic<int>* cancel,
                   std::atomic<uint64_t>* done_bytes);

struct TensorRef {
  const StTensor* t = nullptr;
  size_t file = 0;  // index into files()
};

class Checkpoint {
 public:
  // path: a .safetensors file, or a directory holding model.safetensors or
  // model.safetensors.index.json (+ config.json). Throws IO / FORMAT.
  static std::unique_ptr<Checkpoint> open(const std::string& path);

  const std::vector<TensorRef>& tensors() const { return tensors_; }  // sorted by name
  const TensorRef* find(const std::string& name) const;
  const TensorRef& get(const std::string& name) const;  // throws INVALID_ARGUMENT
  const std::vector<ShardFile>& files() const { return files_; }
  const ModelConfig& config() const { return config_; }
  // config.json as read (empty when there is none), and its path.
  const std::string& config_json() const { return config_json_; }
  const std::string& config_path() const { return config_path_; }
  // generation_config.json beside config.json (empty when there is none).
  const std::string& gen_config_json() const { return gen_config_json_; }
  const std::string& gen_config_path() const { return gen_config_path_; }
  const std::string& path() const { return path_; }

  // The rule for `name` on a grid position (lm_head tied to embed_tokens
  // when config.json says so and the file has no lm_head).
  ShardDecision decide(const std::string& name, const GridSpec& g) const;
  // decide() for every tensor: throws on the first indivisible dimension.
  void validate_grid(const GridSpec& g) const;

  // Reads `spec` of tensor `name` into dst (dst_bytes, dst_dtype; F32/F16/BF16
  // convert among themselves, other dtypes must match). Padding rows are
  // zero. `cancel`, when set, is polled between runs (progress callbacks).
  void load(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes, int32_t dst_dtype,
            const std::atomic<int>* cancel = nullptr) const;
  // The same as read jobs of at most max_job_bytes each (padding is zeroed
  // here), for run_read_jobs to spread over threads.
  void plan_load(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes, int32_t dst_dtype,
                 std::vector<ReadJob>* jobs, uint64_t max_job_bytes, bool* needs_zero = nullptr) const;
  // load() into CUDA device memory: pieces go through pinned staging buffers
  // and cudaMemcpyAsync on `stream`, reads overlapping the copies; returns
  // when the copies are done. NOT_SUPPORTED in a build without CUDA.
  void load_to_device(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes,
                      int32_t dst_dtype, void* stream) const;

 private:
  void check_against_config() const;
  std::string path_;
  std::vector<ShardFile> files_;
  std::vector<TensorRef> tensors_;
  ModelConfig config_;
  std::string config_json_, config_path_, gen_config_json_, gen_config_path_;
};

}  // namespace tppp
