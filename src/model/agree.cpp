// Every-rank mode's guard: each rank must make the same call with the same
// arguments (the driver's output buffers aside). Before any check or
// traffic of a call, the ranks all-gather one fingerprint per argument
// (FNV-1a of its values) and compare them with rank 0's; a difference fails
// the call with INVALID_USAGE on every rank, naming the call, the first
// rank and the first argument that differ. Without it, two TP ranks given
// the same number of tokens but other ids returned wrong logits with
// TPPP_OK (issue 23). Cost: one all-gather of a few words per call,
// measured through the Python binding on the 2-core VM at 10-19 us (world 2)
// and 54-82 us (world 4, oversubscribed), against 35-70 ms for a decode step
// of 32 rows of the bench model; follow mode and one-rank groups skip it.
#include <cstring>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "group/group.hpp"
#include "model/model.hpp"

namespace tppp {

uint64_t fingerprint(const void* p, size_t n) {
  Fnv1a h;
  h.value(n);
  if (p && n) h.bytes(p, n);
  return h.get();
}

uint64_t fingerprint(const std::vector<SamplingParams>& s) {
  Fnv1a h;  // field by field: the struct has padding
  h.value(s.size());
  for (const SamplingParams& p : s) {
    h.value(p.temperature);
    h.value(p.top_k);
    h.value(p.top_p);
    h.value(p.min_p);
    h.value(p.repetition_penalty);
    h.value(p.frequency_penalty);
    h.value(p.presence_penalty);
    h.value(p.logprobs);
    h.value(p.top_logprobs);
    h.value(p.seed);
  }
  return h.get();
}

void Model::agree(const char* call, const std::vector<Arg>& args) {
  if (p_.follow || g_.config().world == 1) return;
  std::vector<uint64_t> mine;
  mine.push_back(fingerprint(call, std::strlen(call)));
  for (const Arg& a : args) mine.push_back(a.hash);
  const int world = g_.config().world;
  std::vector<uint64_t> all(mine.size() * static_cast<size_t>(world));
  g_.transport().all_gather(g_.comm(TPPP_SCOPE_WORLD), mine.data(), all.data(), mine.size() * 8, TPPP_DTYPE_U8,
                            kHostPlace);
  for (int r = 1; r < world; r++)
    for (size_t i = 0; i < mine.size(); i++)
      if (all[static_cast<size_t>(r) * mine.size() + i] != all[i])
        fail(TPPP_ERR_INVALID_USAGE,
             "%s: rank %d's %s differs from rank 0's (every-rank mode: every rank makes the same call with the same "
             "arguments; or create the model with params.follow)",
             call, r, i == 0 ? "call" : args[i - 1].name);
}

void Model::agree_batch(const char* call, const BatchView& b, int32_t outputs, const std::vector<SamplingParams>* samp) {
  if (p_.follow || g_.config().world == 1) return;
  const size_t n = b.n > 0 ? static_cast<size_t>(b.n) : 0;
  std::vector<Arg> a = {{"outputs", fingerprint(&outputs, sizeof outputs)},
                        {"n_tokens", fingerprint(&b.n, sizeof b.n)},
                        {"token ids", fingerprint(b.token, b.token ? n * 4 : 0)},
                        {"positions", fingerprint(b.pos, b.pos ? n * 4 : 0)},
                        {"sequence ids", fingerprint(b.seq, b.seq ? n * 4 : 0)},
                        {"logits flags", fingerprint(b.logits, b.logits ? n : 0)}};
  if (samp) a.push_back({"sampling parameters", fingerprint(*samp)});
  agree(call, a);
}

}  // namespace tppp
