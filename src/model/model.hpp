// The model runtime (docs/DESIGN.md section 9): a decoder split over the
// group's TP x PP grid, a paged KV cache, llama_batch-style forward and
// greedy generation. World rank 0 is the driver and gets the outputs.
// Every rank calls each entry point with the same arguments (the driver's
// output pointers aside); stages run one after another within a call.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "loader/checkpoint.hpp"
#include "model/decoder.hpp"
#include "model/kv_cache.hpp"
#include "model/model_config.hpp"

namespace tppp {

class Group;

struct ModelParams {
  int32_t dtype = -1;       // compute dtype; -1: the checkpoint's float dtype
  int32_t page_size = 16;   // KV tokens per page
  int64_t kv_tokens = 4096; // KV capacity per rank, in tokens (rounded up to pages)
  int32_t max_seqs = 64;    // sequence ids are [0, max_seqs)
  int32_t max_batch = 2048; // tokens per forward
};

enum : int32_t { kOutLogits = 1, kOutIds = 2 };

struct ModelStats {
  double busy_ms = 0, wall_ms = 0;  // this rank's compute inside calls, and the calls' time
  int64_t tokens = 0;
};

class Model {
 public:
  Model(Group& g, const Checkpoint& c, const ModelParams& p);
  const ModelSpec& spec() const { return spec_; }
  const StageDecoder& stage() const { return *dec_; }
  const KvBook& kv() const { return book_; }
  int32_t dtype() const { return dtype_; }
  const ModelParams& params() const { return p_; }
  const ModelStats& stats() const { return st_; }
  int32_t pp_rank() const;

  // outputs: kOutLogits and/or kOutIds, the same on every rank. On the
  // driver, logits f32 [w, vocab] and ids [w] for the w flagged tokens, in
  // batch order (NULL when not asked for). Returns w.
  int32_t forward(const BatchView& b, int32_t outputs, float* logits, int64_t* ids);
  void remove(int32_t seq);

  // Greedy decoding of each prompt (sequence i = prompt i, which must hold
  // nothing; removed after) up to max_new tokens or a stop id (kept). On the
  // driver: tokens[i], on_token(prompt, token) as they come, and
  // first_logits [prompts, vocab] (the last prompt position's) when given.
  void generate(const std::vector<std::vector<int32_t>>& prompts, int32_t max_new, const std::vector<int32_t>& stop,
                const std::function<void(int32_t, int32_t)>& on_token, std::vector<std::vector<int32_t>>* tokens,
                float* first_logits);

 private:
  // One forward; ids_everywhere: every rank gets the ids (generate).
  int32_t run(const BatchView& b, int32_t outputs, float* logits, int64_t* ids, bool ids_everywhere);
  bool driver() const;

  Group& g_;
  ModelParams p_;
  ModelSpec spec_;
  int32_t dtype_;
  KvBook book_;
  std::unique_ptr<StageDecoder> dec_;
  uint32_t calls_ = 0;
  ModelStats st_;
  std::vector<float> host_logits_;
  std::vector<int64_t> host_ids_;
};

}  // namespace tppp
