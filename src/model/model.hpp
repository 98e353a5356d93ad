// The model runtime (docs/DESIGN.md section 9): a decoder split over the
// group's TP x PP grid, a paged KV cache, llama_batch-style forward and
// greedy generation. World rank 0 is the driver and gets the outputs.
// Every rank calls each entry point with the same arguments (the driver's
// output pointers aside); stages run one after another within a call.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "loader/checkpoint.hpp"
#include "model/decoder.hpp"
#include "model/kv_cache.hpp"
#include "model/model_config.hpp"
#include "model/sampling.hpp"
#include "model/stream.hpp"

namespace tppp {

class Group;

// FNV-1a fingerprints of a call's arguments (agree.cpp).
uint64_t fingerprint(const void* p, size_t n);
uint64_t fingerprint(const std::vector<SamplingParams>& s);

struct ModelParams {
  int32_t dtype = -1;       // compute dtype; -1: the checkpoint's float dtype
  int32_t page_size = 16;   // KV tokens per page
  int64_t kv_tokens = 4096; // KV capacity per rank, in tokens (rounded up to pages)
  int32_t max_seqs = 64;    // sequence ids are [0, max_seqs)
  int32_t max_batch = 2048; // tokens per forward
  bool follow = false;      // only the driver calls; the others call follow()
  int32_t max_inflight = 0; // host steps in flight; 0: the number of stages
  std::vector<int64_t> layer_split;  // layers per stage; empty: balanced by weight bytes
};

struct GenerateOptions {
  int32_t max_new = 16;
  std::vector<int32_t> max_new_each;  // per prompt (empty: max_new for all)
  std::vector<int32_t> stop;   // a generated stop id ends its prompt (and is kept)
  std::vector<std::vector<int32_t>> stop_each;  // per prompt, besides `stop` (empty: none)
  bool ignore_eos = false;     // false: the model's EOS ids end a prompt too (kept)
  int32_t microbatches = 0;    // decode groups in flight; 0: min(P, sequences / 16), at least 1
  int32_t prefill_chunk = 0;   // prompt tokens per prefill micro-batch; 0: see generate.cpp
  SamplingParams sampling;     // every prompt's (temperature 0: greedy)
  bool callback_stops = false; // the driver's token callback may end a prompt (the same on every rank)
};

// Called on the driver for each generated token; true ends the prompt.
using TokenFn = std::function<bool(int32_t prompt, int32_t token)>;

// A host's step (steps.cpp): one batch in flight through the stages.
struct StepOut {
  int64_t step = -1;
  std::vector<int32_t> seq;  // per result row: its sequence (rows of cancelled sequences dropped)
  std::vector<int32_t> token;  // per row: the sampled token (the driver)
  Results r;                 // ids, logprobs, top logprobs, logits of the rows kept
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
  // llama.h's seq_rm: removes positions [p0, p1) (p1 < 0: to the end) of a
  // sequence; only a tail (p1 at or past its length) can go, since positions
  // stay contiguous. Pages past the new length are freed. A step of the
  // sequence in flight is dropped for it (cancel).
  void seq_rm(int32_t seq, int32_t p0, int32_t p1);
  // llama.h's seq_cp for prefix sharing: dst (holding nothing) gets src's
  // positions [0, p1) (p1 < 0: all of src) by sharing the KV pages that hold
  // them; p1 must be a whole number of pages (KvBook::share), p0 must be 0.
  void seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);

  // Steps in flight (steps.cpp). submit: checks the batch (KV plan,
  // sequences already in flight, sampling parameters: the same verdict on
  // every rank), runs it on this stage and returns its number; samp: one per
  // token (greedy where empty). wait: the oldest step's results (driver;
  // elsewhere the rows' count only). poll: the same without blocking, false
  // when the oldest is not back (follow mode or one rank only).
  int64_t submit(const BatchView& b, const std::vector<SamplingParams>& samp, int32_t outputs);
  void wait(StepOut* out);
  bool poll(StepOut* out);
  int32_t in_flight() const { return static_cast<int32_t>(steps_.size()); }

  // Greedy decoding of each prompt (sequence i = prompt i, which must hold
  // nothing; removed after) up to max_new tokens or a stop id (kept). On the
  // driver: tokens[i], on_token(prompt, token) as they come, and
  // first_logits [prompts, vocab] (the last prompt position's) when given.
  // With PP > 1, `microbatches` groups of sequences take turns through the
  // stages (the last stage hands each group's sampled ids back to stage 0),
  // and prompts go through in chunks, so every stage has work.
  // tokens and on_token: on the driver (stage 0's ranks get tokens too).
  void generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o, const TokenFn& on_token,
                std::vector<std::vector<int32_t>>* tokens, float* first_logits);

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
  friend class Stream;
  // A forward's checks and KV plan: the same verdict on every rank, before
  // any traffic.
  KvPlan check(const BatchView& b, int32_t outputs) const;
  // One forward of a checked batch, stage after stage.
  int32_t run(const BatchView& b, const KvPlan& kv, int32_t outputs, float* logits, int64_t* ids);
  // Last stage: the wanted rows' ids on every TP rank of the stage, and with
  // want_logits their f32 logits [w, vocab] on TP rank 0 (ids from them).
  void head_ids(const KvPlan& kv, bool want_logits, float* logits, int64_t* ids);
  void generate_here(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                     const TokenFn& on_token, std::vector<std::vector<int32_t>>* tokens, float* first_logits);
  bool driver() const;
  // INVALID_USAGE naming op on a follower (follow mode: only the driver calls).
  void refuse_follower(const char* op) const;
  Stream& stream();
  // Every-rank mode: INVALID_USAGE on every rank, naming the call, rank and
  // argument, unless every rank passes the same arguments (agree.cpp).
  struct Arg {
    const char* name;
    uint64_t hash;
  };
  void agree(const char* call, const std::vector<Arg>& args);
  void agree_batch(const char* call, const BatchView& b, int32_t outputs, const std::vector<SamplingParams>* samp);
  // A sequence leaves (remove) or loses its tail from p0 (seq_rm): the book,
  // the last stage's token history, and its steps in flight (dropped for it).
  void forget(int32_t seq, int32_t p0 = 0);
  // Last stage: the batch's tokens join their sequences' histories (penalties).
  void note_tokens(const BatchView& b);
  // Last stage: the tokens a penalty sees for the row of `seq` at `pos` (the
  // sequence's first draw marks where its output starts).
  TokenHistory history(int32_t seq, int32_t pos);
  // Last stage, head rank: a draw for the row of `seq` at `pos`.
  Draw sample(const SamplingParams& p, const float* logits, int32_t seq, int32_t pos, std::vector<float>* scratch);
  // steps.cpp: the checks of submit, and its work on this rank.
  void check_step(const BatchView& b, const std::vector<SamplingParams>& samp) const;
  int64_t submit_here(const BatchView& b, const std::vector<SamplingParams>& samp, int32_t outputs, const KvPlan& kv);
  void retire(StepOut* out);
  void run_cmd(int32_t op, const std::vector<char>& data);  // follow mode: submit, seq_rm, seq_cp
  void share(int32_t src, int32_t dst, int32_t len);         // seq_cp's work on this rank
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
  std::unique_ptr<Stream> stream_;
  // Per sequence: the last stage's token history and first output position
  // (penalties); a generation count bumped when it leaves (a late result of
  // a cancelled step is dropped); the host step it is in (-1: none).
  std::vector<std::vector<int32_t>> hist_;
  std::vector<int32_t> out_start_;
  std::vector<uint32_t> epoch_;
  std::vector<int64_t> busy_;
  struct Step {
    int64_t no = 0;
    std::vector<int32_t> seq;       // per wanted row
    std::vector<uint32_t> epoch;    // per wanted row, at submit
    std::unique_ptr<Entry> e;       // the driver's results (stage 0); null elsewhere
  };
  std::deque<Step> steps_;
  int64_t next_step_ = 0;
};

}  // namespace tppp
