// Checkpoint opening, validation and slice reads.
#include "loader/checkpoint.hpp"
#include "loader/hf_names.hpp"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "c_api.h"
#include "core/dtype.hpp"
#include "cuda/device.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string real(const std::string& p) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) fail(TPPP_ERR_IO, "%s: %s", p.c_str(), errno_text(errno).c_str());
  return buf;
}

std::string read_small_file(const std::string& p, size_t limit) {
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) fail(TPPP_ERR_IO, "%s: cannot open: %s", p.c_str(), errno_text(errno).c_str());
  std::string s;
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(TPPP_ERR_IO, "%s: read: %s", p.c_str(), errno_text(errno).c_str());
    }
    if (r == 0) break;
    s.append(buf, static_cast<size_t>(r));
    if (s.size() > limit) fail(TPPP_ERR_FORMAT, "%s: larger than %zu bytes", p.c_str(), limit);
  }
  return s;
}

void pread_all(int fd, void* dst, uint64_t n, uint64_t off, const std::string& file, const std::string& tensor) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : static_cast<size_t>(n);
    ssize_t r = ::pread(fd, p, chunk, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(TPPP_ERR_IO, "%s: tensor '%s': read at offset %llu: %s", file.c_str(), tensor.c_str(),
           static_cast<unsigned long long>(off), errno_text(errno).c_str());
    }
    if (r == 0)
      fail(TPPP_ERR_IO, "%s: tensor '%s': file ends at offset %llu, before the tensor's bytes (truncated?)",
           file.c_str(), tensor.c_str(), static_cast<unsigned long long>(off));
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

ShardFile open_shard(const std::string& path, const std::string& name) {
  ShardFile f;
  f.name = name;
  f.path = path;
  f.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.fd.valid()) fail(TPPP_ERR_IO, "%s: cannot open: %s", path.c_str(), errno_text(errno).c_str());
  struct stat st {};
  if (::fstat(f.fd.get(), &st) != 0) fail(TPPP_ERR_IO, "%s: fstat: %s", path.c_str(), errno_text(errno).c_str());
  if (!S_ISREG(st.st_mode)) fail(TPPP_ERR_IO, "%s: not a regular file", path.c_str());
  f.size = static_cast<uint64_t>(st.st_size);
  uint8_t first[8] = {0};
  size_t got = f.size < 8 ? static_cast<size_t>(f.size) : 8;
  if (got) pread_all(f.fd.get(), first, got, 0, path, "(header)");
  uint64_t need = safetensors_header_bytes(first, got, f.size, path);
  std::vector<uint8_t> head(need);
  pread_all(f.fd.get(), head.data(), need, 0, path, "(header)");
  f.header = parse_safetensors(head.data(), head.size(), f.size, path);
  return f;
}


}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->path_ = path;
  std::string dir;
  if (is_dir(path)) {
    dir = path;
    std::string index = path + "/model.safetensors.index.json";
    if (exists(index)) {
      std::string bytes = read_small_file(index, 64u << 20);
      StIndex idx = parse_index(bytes.data(), bytes.size(), index);
      const std::string root = real(dir);
      std::map<std::string, size_t> file_of;
      for (const std::string& s : idx.shards) {
        std::string p = dir + "/" + s;
        if (!exists(p))
          fail(TPPP_ERR_IO, "%s: shard '%s' named by the index does not exist", index.c_str(), s.c_str());
        std::string rp = real(p);
        if (rp.compare(0, root.size() + 1, root + "/") != 0)
          fail(TPPP_ERR_FORMAT, "%s: shard '%s' resolves to %s, outside the checkpoint directory (symlink?)",
               index.c_str(), s.c_str(), rp.c_str());
        file_of[s] = c->files_.size();
        c->files_.push_back(open_shard(p, s));
      }
      // The index and the headers must agree exactly.
      std::map<std::string, size_t> seen;
      for (size_t fi = 0; fi < c->files_.size(); fi++)
        for (const StTensor& t : c->files_[fi].header.tensors) {
          auto prev = seen.find(t.name);
          if (prev != seen.end())
            fail(TPPP_ERR_FORMAT, "%s: tensor '%s' is in two shards: %s and %s", index.c_str(), t.name.c_str(),
                 c->files_[prev->second].name.c_str(), c->files_[fi].name.c_str());
          seen[t.name] = fi;
        }
      for (const auto& kv : seen) {
        auto m = idx.weight_map.find(kv.first);
        const std::string& stored = c->files_[kv.second].name;
        if (m == idx.weight_map.end())
          fail(TPPP_ERR_FORMAT, "%s: tensor '%s' is in shard %s but absent from the weight_map", index.c_str(),
               kv.first.c_str(), stored.c_str());
        if (m->second != stored)
          fail(TPPP_ERR_FORMAT, "%s: tensor '%s' is mapped to %s but stored in %s", index.c_str(), kv.first.c_str(),
               m->second.c_str(), stored.c_str());
      }
      for (const auto& kv : idx.weight_map)
        if (!seen.count(kv.first))
          fail(TPPP_ERR_FORMAT, "%s: tensor '%s' is mapped to %s but that shard does not hold it", index.c_str(),
               kv.first.c_str(), kv.second.c_str());
    } else if (exists(path + "/model.safetensors")) {
      c->files_.push_back(open_shard(path + "/model.safetensors", "model.safetensors"));
    } else {
      fail(TPPP_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json in this directory", path.c_str());
    }
  } else {
    if (!exists(path)) fail(TPPP_ERR_IO, "%s: no such file or directory", path.c_str());
    size_t slash = path.rfind('/');
    dir = slash == std::string::npos ? "." : path.substr(0, slash);
    c->files_.push_back(open_shard(path, slash == std::string::npos ? path : path.substr(slash + 1)));
  }
  std::string cfg = dir + "/config.json";
  if (exists(cfg)) {
    std::string bytes = read_small_file(cfg, 16u << 20);
    c->config_ = parse_model_config(bytes.data(), bytes.size(), cfg);
    c->config_json_ = std::move(bytes);
    c->config_path_ = cfg;
  }
  const std::string gen = dir + "/generation_config.json";
  if (exists(gen)) {
    c->gen_config_json_ = read_small_file(gen, 16u << 20);
    c->gen_config_path_ = gen;
  }
  for (size_t fi = 0; fi < c->files_.size(); fi++)
    for (const StTensor& t : c->files_[fi].header.tensors) c->tensors_.push_back(TensorRef{&t, fi});
  std::sort(c->tensors_.begin(), c->tensors_.end(),
            [](const TensorRef& a, const TensorRef& b) { return a.t->name < b.t->name; });
  for (size_t i = 1; i < c->tensors_.size(); i++)
    if (c->tensors_[i].t->name == c->tensors_[i - 1].t->name)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s' appears twice", path.c_str(), c->tensors_[i].t->name.c_str());
  if (c->config_.present) c->check_against_config();
  return c;
}

void Checkpoint::check_against_config() const {
  for (const TensorRef& r : tensors_) {
    const StTensor& t = *r.t;
    const std::string& file = files_[r.file].path;
    const std::vector<int64_t> want = implied_shape(t.name, config_);
    if (want.empty()) continue;
    if (t.shape != want)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shape %s contradicts config.json, which implies %s", file.c_str(),
           t.name.c_str(), shape_string(t.shape).c_str(), shape_string(want).c_str());
    if (t.dtype != TPPP_DTYPE_F32 && t.dtype != TPPP_DTYPE_F16 && t.dtype != TPPP_DTYPE_BF16)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': dtype %s where config.json's model needs F32, F16 or BF16",
           file.c_str(), t.name.c_str(), t.dtype_name.c_str());
  }
}

const TensorRef* Checkpoint::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorRef& r, const std::string& n) { return r.t->name < n; });
  return (it != tensors_.end() && it->t->name == name) ? &*it : nullptr;
}

const TensorRef& Checkpoint::get(const std::string& name) const {
  const TensorRef* r = find(name);
  if (!r) fail(TPPP_ERR_INVALID_ARGUMENT, "%s: no tensor named '%s'", path_.c_str(), name.c_str());
  return *r;
}

ShardDecision Checkpoint::decide(const std::string& name, const GridSpec& g) const {
  const TensorRef* r = find(name);
  std::string source = name;
  if (!r) {
    const std::string tied = tied_source(name, config_);
    if (!tied.empty()) {
      source = tied;
      r = find(source);
    }
  }
  if (!r) fail(TPPP_ERR_INVALID_ARGUMENT, "%s: no tensor named '%s'", path_.c_str(), name.c_str());
  ShardDecision d = decide_shard(name, r->t->shape, config_, g);
  d.source = source;
  return d;
}

void Checkpoint::validate_grid(const GridSpec& g) const {
  if (g.tp <= 0 || g.pp <= 0 || g.tp_rank < 0 || g.tp_rank >= g.tp || g.pp_rank < 0 || g.pp_rank >= g.pp)
    fail(TPPP_ERR_INVALID_ARGUMENT, "grid position tp %lld/%lld pp %lld/%lld is not valid",
         static_cast<long long>(g.tp_rank), static_cast<long long>(g.tp), static_cast<long long>(g.pp_rank),
         static_cast<long long>(g.pp));
  for (const TensorRef& r : tensors_) decide(r.t->name, g);
}

void Checkpoint::plan_load(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes,
                           int32_t dst_dtype, std::vector<ReadJob>* jobs, uint64_t max_job_bytes,
                           bool* needs_zero) const {
  const TensorRef& r = get(name);
  const StTensor& t = *r.t;
  const ShardFile& f = files_[r.file];
  if (t.dtype < 0)
    fail(TPPP_ERR_NOT_SUPPORTED, "%s: tensor '%s': dtype %s cannot be loaded", f.path.c_str(), name.c_str(),
         t.dtype_name.c_str());
  if (!dtype_valid(dst_dtype))
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': destination dtype %d is not a TPPP_DTYPE_* value", name.c_str(),
         dst_dtype);
  if (t.dtype != dst_dtype && !(dtype_is_float(t.dtype) && dtype_is_float(dst_dtype)))
    fail(TPPP_ERR_NOT_SUPPORTED, "tensor '%s': cannot convert %s to %s on load", name.c_str(), t.dtype_name.c_str(),
         dtype_name(dst_dtype));
  SlicePlan p = plan_slice(t.shape, t.esize, spec, name);
  const size_t out_esize = dtype_size(dst_dtype);
  const uint64_t out_bytes = p.out_bytes / t.esize * out_esize;
  if (dst_bytes != out_bytes)
    fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': destination holds %zu bytes but the slice %s needs %llu",
         name.c_str(), dst_bytes, shape_string(p.out_shape).c_str(), static_cast<unsigned long long>(out_bytes));
  if (!dst && out_bytes) fail(TPPP_ERR_INVALID_ARGUMENT, "tensor '%s': destination is NULL", name.c_str());
  if (needs_zero)
    *needs_zero = p.rows_pad != 0;  // the caller zeroes (device memory)
  else if (p.rows_pad)
    std::memset(dst, 0, static_cast<size_t>(out_bytes));  // vocab padding rows stay zero
  const uint64_t base = f.header.data_offset + t.begin;
  const uint64_t out_row_block = (p.rows_read + p.rows_pad) * p.inner_bytes / t.esize * out_esize;
  // Split long runs so several threads can share one big tensor; pieces stay
  // whole elements.
  const uint64_t piece = std::max<uint64_t>(t.esize, max_job_bytes / t.esize * t.esize);
  char* out = static_cast<char*>(dst);
  for (size_t i = 0; i < p.runs.size(); i++) {
    const SliceRun& run = p.runs[i];
    char* run_dst = p.rows_pad ? static_cast<char*>(dst) + i * out_row_block : out;
    for (uint64_t o = 0; o < run.bytes; o += piece) {
      ReadJob j;
      j.fd = f.fd.get();
      j.file = &f.path;
      j.tensor = &t.name;
      j.offset = base + run.src + o;
      j.bytes = std::min(piece, run.bytes - o);
      j.dst = run_dst + o / t.esize * out_esize;
      j.src_dtype = t.dtype;
      j.dst_dtype = dst_dtype;
      jobs->push_back(j);
    }
    out += run.bytes / t.esize * out_esize;
  }
}

void Checkpoint::load(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes,
                      int32_t dst_dtype, const std::atomic<int>* cancel) const {
  std::vector<ReadJob> jobs;
  plan_load(name, spec, dst, dst_bytes, dst_dtype, &jobs, UINT64_MAX / 2);
  run_read_jobs(jobs, 1, cancel, nullptr);
}

namespace {
struct FillCtx {
  std::vector<char> bounce;
};
void fill_staging(const void* key, void* staging, size_t, void* user) {
  ReadJob j = *static_cast<const ReadJob*>(key);
  j.dst = static_cast<char*>(staging);
  run_read_job(j, &static_cast<FillCtx*>(user)->bounce);
}
}  // namespace

void Checkpoint::load_to_device(const std::string& name, const SliceSpec& spec, void* dst, size_t dst_bytes,
                                int32_t dst_dtype, void* stream) const {
  std::vector<ReadJob> jobs;
  bool zero = false;
  plan_load(name, spec, dst, dst_bytes, dst_dtype, &jobs, 8u << 20, &zero);
  if (zero) device_zero(dst, dst_bytes, stream);
  std::vector<UploadPiece> pieces;
  for (const ReadJob& j : jobs)
    pieces.push_back(UploadPiece{static_cast<size_t>(j.bytes / dtype_size(j.src_dtype) * dtype_size(j.dst_dtype)),
                                 j.dst, &j});
  FillCtx ctx;
  upload_pieces(pieces.data(), pieces.size(), stream, fill_staging, &ctx);
}

void run_read_job(const ReadJob& j, std::vector<char>* bounce) {
  if (j.src_dtype == j.dst_dtype) {
    pread_all(j.fd, j.dst, j.bytes, j.offset, *j.file, *j.tensor);
    return;
  }
  const size_t se = dtype_size(j.src_dtype), de = dtype_size(j.dst_dtype);
  const uint64_t chunk = 4u << 20;  // bounce through 4 MiB pieces
  for (uint64_t o = 0; o < j.bytes; o += chunk) {
    uint64_t nb = std::min(chunk, j.bytes - o);
    bounce->resize(static_cast<size_t>(nb));
    pread_all(j.fd, bounce->data(), nb, j.offset + o, *j.file, *j.tensor);
    convert_dtype(bounce->data(), j.src_dtype, j.dst + o / se * de, j.dst_dtype, static_cast<size_t>(nb / se));
  }
}

void run_read_jobs(const std::vector<ReadJob>& jobs, int threads, const std::atomic<int>* cancel,
                   std::atomic<uint64_t>* done_bytes) {
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::unique_ptr<Error> first;
  auto worker = [&] {
    std::vector<char> bounce;
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= jobs.size() || failed.load()) return;
      try {
        if (cancel && cancel->load()) fail(TPPP_ERR_ABORTED, "loading '%s' was cancelled", jobs[i].tensor->c_str());
        run_read_job(jobs[i], &bounce);
        if (done_bytes) done_bytes->fetch_add(jobs[i].bytes);
      } catch (const Error& e) {
        std::lock_guard<std::mutex> lk(mu);
        if (!first) first.reset(new Error(e));
        failed.store(1);
        return;
      }
    }
  };
  threads = std::max(1, std::min<int>(threads, static_cast<int>(jobs.size())));
  std::vector<std::thread> pool;
  for (int k = 1; k < threads; k++) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (first) throw *first;
}

}  // namespace tppp
