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
  bool follow = false;      // only the driver calls; the others call follow()
};

struct GenerateOptions {
  int32_t max_new = 16;
  std::vector<int32_t> stop;   // a generated stop id ends its prompt (and is kept)
  int32_t microbatches = 0;    // decode groups in flight; 0: min(P, sequences / 16), at least 1
  int32_t prefill_chunk = 0;   // prompt tokens per prefill micro-batch; 0: see generate.cpp
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
  // With PP > 1, `microbatches` groups of sequences take turns through the
  // stages (the last stage hands each group's sampled ids back to stage 0),
  // and prompts go through in chunks, so every stage has work.
  // tokens and on_token: on the driver (stage 0's ranks get tokens too).
  void generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                const std::function<void(int32_t, int32_t)>& on_token, std::vector<std::vector<int32_t>>* tokens,
                float* first_logits);

  // Follow mode (params.follow). On every rank but the driver: runs what the
  // driver calls until it calls stop(); idle_timeout_ms bounds the wait for
  // each next call (-1: no bound; a dead driver still ends it with REMOTE).
  // A call refused or failed the same way on every rank (a bad batch, a
  // full cache) is logged and following goes on; a broken peer ends it.
  void follow(int64_t idle_timeout_ms);
  // On the driver: ends the followers' follow() (also done at destruction).
  void stop();
  ~Model();

 private:
  friend class Generation;
  // A forward's checks and KV plan: the same verdict on every rank, before
  // any traffic.
  KvPlan check(const BatchView& b, int32_t outputs) const;
  // One forward of a checked batch, stage after stage.
  int32_t run(const BatchView& b, const KvPlan& kv, int32_t outputs, float* logits, int64_t* ids);
  // Last stage: the wanted rows' ids on every TP rank of the stage, and with
  // want_logits their f32 logits [w, vocab] on TP rank 0 (ids from them).
  void head_ids(const KvPlan& kv, bool want_logits, float* logits, int64_t* ids);
  void generate_here(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                     const std::function<void(int32_t, int32_t)>& on_token, std::vector<std::vector<int32_t>>* tokens,
                     float* first_logits);
  bool driver() const;
  // follow.cpp: the driver's side of follow mode (a no-op otherwise).
  bool leading() const { return p_.follow && driver(); }
  void send_cmd(int32_t op, const std::vector<char>& data);

  Group& g_;
  ModelParams p_;
  ModelSpec spec_;
  int32_t dtype_;
  KvBook book_;
  std::unique_ptr<StageDecoder> dec_;
  uint32_t calls_ = 0;
  uint32_t cmds_ = 0;      // follow mode: commands sent (driver) or received
  bool stopped_ = false;   // follow mode: the driver has sent stop
  ModelStats st_;
  std::vector<float> host_logits_;
  std::vector<int64_t> host_ids_;
};

}  // namespace tppp
