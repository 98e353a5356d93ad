// The streaming engine (docs/DESIGN.md section 9): micro-batches ("items")
// flow stage to stage with their header, batch, sampling parameters, hidden
// and residual; every stage plans and commits the item's KV in stream order,
// so the books agree without talking; the last stage samples the wanted rows
// and sends the results back (to every stage-0 TP rank for a generation,
// which composes its next items there; to the driver for a host's step). An
// End item closes a generation and carries a failure on. Generation
// (generate.cpp) and the host's steps (steps.cpp) are its two clients.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "model/decoder.hpp"
#include "model/kv_cache.hpp"
#include "model/sampling.hpp"
#include "transport/transport.hpp"

namespace tppp {

class Model;

enum : int32_t { kItemBatch = 0, kItemEnd = 1 };
enum : int32_t {
  kFlagLogits = 1,    // the wanted rows' f32 logits go to the driver
  kFlagRing = 2,      // ids go back to every stage-0 TP rank (a generation composes there)
  kFlagSampling = 4,  // per wanted row sampling parameters travel with the item (else greedy)
  kFlagResults = 8,   // ids and logprobs go to the driver (a host's step)
};

struct ItemHead {
  int32_t kind;    // kItemBatch or kItemEnd
  int32_t n;       // tokens
  int32_t status;  // End: TPPP_OK, or why the stream stopped
  int32_t flags;   // Batch: kFlag*; End: the stage that stopped it
};

// One micro-batch: the batch, its wire form (int32 [4, n]: tokens,
// positions, sequences, wanted flags) and, with kFlagSampling, one
// SamplingParams per wanted row.
struct Item {
  std::vector<int32_t> tok, pos, seq;
  std::vector<int8_t> want;
  std::vector<SamplingParams> samp;
  int32_t flags = 0;
  BatchView view() const {
    return BatchView{static_cast<int32_t>(tok.size()), tok.data(), pos.data(), seq.data(), want.data()};
  }
  void add(int32_t t, int32_t p, int32_t s, bool w) {
    tok.push_back(t);
    pos.push_back(p);
    seq.push_back(s);
    want.push_back(w ? 1 : 0);
  }
};

// The wanted rows' results, in batch order.
struct Results {
  std::vector<int64_t> ids;      // [w]
  std::vector<float> logprob;    // [w] (0 where not asked)
  int32_t top_n = 0;             // top logprobs per row (the item's largest top_logprobs)
  std::vector<int32_t> top_ids;  // [w, top_n], -1 past a row's own count
  std::vector<float> top_lp;     // [w, top_n]
  std::vector<float> logits;     // [w, vocab] with kFlagLogits
  std::vector<char> wire;        // logprob + top arrays on the wire (kFlagResults)
  void size_for(size_t w, int32_t n);
  void to_wire();
  void from_wire();
};

// Stage 0's record of an item in flight until its results are back.
struct Entry {
  uint32_t no = 0;
  int32_t flags = 0;
  Results r;
  RequestPtr ring, res, lg;
  bool awaits() const { return ring || res || lg; }
  bool test();  // every result here (no wait)
  void wait();
};

class Stream {
 public:
  explicit Stream(Model& m);
  ~Stream();
  // Stage 0: runs a planned item here (embed and layers), then sends it on
  // (P > 1) or samples it (P = 1), and commits its KV. The entry's receives
  // are posted for what this rank gets back.
  std::unique_ptr<Entry> emit(const Item& it, const KvPlan& kv);
  // Stages after the first: runs the next item of the stream (blocking on
  // its arrival). False at an End with TPPP_OK; an End with a failure
  // throws it, after passing it on. it: the item as it came.
  bool follow_one(Item* it);
  // Closes a generation's stream (stage 0) with a status.
  void send_end(int32_t status, int32_t stage = 0);
  // A failure on this rank: the next stage, waiting for an item from this
  // one, gets an End with the status instead of timing out in turn.
  void warn_next(int32_t status, int32_t stage = -1) noexcept;
  // A new generation or step: no End has gone to the next stage for it.
  void begin() { ended_ = false; }
  // Waits for every send still in flight (outboxes, results).
  void finish_sends();
  double take_busy() {
    const double b = busy_;
    busy_ = 0;
    return b;
  }

 private:
  struct Outbox {
    ItemHead head{};
    std::vector<int32_t> meta;
    std::vector<SamplingParams> samp;
    DevBuf h, r;
    std::vector<RequestPtr> reqs;
    void finish() {
      for (auto& q : reqs) q->wait();
      reqs.clear();
    }
  };
  struct Sent {
    Results r;
    std::vector<RequestPtr> reqs;
  };
  template <class F>
  void timed(F&& f);
  void pass_on(uint32_t no, const Item& it);
  // Last stage: samples the wanted rows; sends what the flags say. local:
  // stage 0's entry when P = 1 (results stay here).
  void finish_last(uint32_t no, const Item& it, const KvPlan& kv, Entry* local);
  // TP > 1, every row sampled with top-k and no logprobs: the draw from each
  // rank's candidates (no vocabulary gather), ids on every TP rank.
  bool local_candidates(const Item& it) const;
  void sample_local(const Item& it, const KvPlan& kv, Results* r);

  Model& m_;
  StageDecoder& s_;
  Transport& tr_;
  const Comm &pp_, &world_;
  const int32_t P_, stage_;
  const int64_t V_;
  const Place dev_;
  const int head_rank_;
  double busy_ = 0;
  Outbox outbox_[2];
  unsigned slot_ = 0;
  std::deque<Sent> sent_;
  bool ended_ = false;  // an End went to the next stage
  uint32_t expect_ = 0;  // the item this stage waits for
  ItemHead warn_head_{};
  RequestPtr warn_;
  std::vector<int32_t> meta_;  // later stages: the item's batch as it came
  DevBuf in_h_, in_r_;
  std::vector<float> scratch_, logits_;  // the sampler's; the head rank's logits of a sampled step
};

}  // namespace tppp
