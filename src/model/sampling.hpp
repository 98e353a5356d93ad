// Sampling one row of logits (docs/DESIGN.md section 9): penalties, then
// transformers' warpers in its order (temperature, top-k, top-p, min-p), then
// a Gumbel-max draw whose noise is keyed on (seed, position, token id), never
// on a slot, a batch row or the calls before: a seed gives the same token
// whatever the TP x PP grid, batch composition, chunking or depth in flight.
// Pure: logits in, a token (and logprobs) out.
#pragma once
#include <cstdint>
#include <vector>

namespace tppp {

struct SamplingParams {
  float temperature = 0.f;         // 0: greedy (argmax, ties: the smallest id)
  int32_t top_k = 0;               // 0: off
  float top_p = 1.f;               // 1: off
  float min_p = 0.f;               // 0: off
  float repetition_penalty = 1.f;  // transformers': over the sequence's tokens (prompt and output)
  float frequency_penalty = 0.f;   // OpenAI's: over the sequence's output tokens
  float presence_penalty = 0.f;
  int32_t logprobs = 0;            // 1: the sampled token's logprob
  int32_t top_logprobs = 0;        // 0..kMaxTopLogprobs: the n most likely tokens and their logprobs
  uint64_t seed = 0;
};
constexpr int32_t kMaxTopLogprobs = 20;

// Throws INVALID_ARGUMENT naming `where` and the field.
void check_sampling(const SamplingParams& p, const char* where);
bool is_greedy(const SamplingParams& p);
// Needs the raw log-softmax (logprobs or top_logprobs asked for).
inline bool wants_logprobs(const SamplingParams& p) { return p.logprobs != 0 || p.top_logprobs > 0; }
inline bool has_penalties(const SamplingParams& p) {
  return p.repetition_penalty != 1.f || p.frequency_penalty != 0.f || p.presence_penalty != 0.f;
}

// A uniform draw in (0, 1), a pure function of its key (counter-based).
double keyed_uniform(uint64_t seed, int64_t pos, int64_t token);

// The tokens a penalty sees: `tokens` are the sequence's tokens at positions
// [0, n); those at positions >= out_start are its output (frequency and
// presence count only these; repetition counts all, as transformers does).
struct TokenHistory {
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  int64_t out_start = 0;
};

struct Draw {
  int32_t id = -1;
  float logprob = 0.f;           // raw log-softmax of the sampled token (when asked)
  std::vector<int32_t> top_ids;  // top_logprobs most likely tokens, raw log-softmax, best first
  std::vector<float> top_logprobs;
};

// The pieces of sample_row, for a vocabulary split over TP ranks (each
// rank's slice holds ids [id0, id0 + n)): penalties on a slice in place;
// the slice's top-k candidates (penalised logits with global ids; ties at
// the k-th kept, or cut to exactly k by the smaller id); and the draw among
// candidates that hold every token the top-k filter keeps (the global top-k
// is taken again, then top-p, min-p and the keyed Gumbel-max): -1 when none
// is finite. A draw is independent of the candidates' order.
struct Cand {
  float x;  // penalised logit, before temperature
  int32_t id;
};
void penalize(float* x, int64_t n, int64_t id0, const SamplingParams& p, const TokenHistory& h);
void top_k_cands(const float* x, int64_t n, int64_t id0, int32_t k, bool exactly_k, std::vector<Cand>* out);
int32_t draw_cands(std::vector<Cand>* c, const SamplingParams& p, int64_t pos);

// Samples from logits [V] for a draw at position `pos` (the position the
// sampled token will take). Logprobs are of the model's raw distribution
// (before penalties and warpers), as vLLM's default. `scratch` is reused
// between calls (no allocation when warm).
Draw sample_row(const float* logits, int64_t V, const SamplingParams& p, const TokenHistory& h, int64_t pos,
                std::vector<float>* scratch);

}  // namespace tppp
