// The model's entry points and follow mode (vLLM's driver worker, SGLang's
// request broadcast): with params.follow, only the driver calls forward,
// remove and generate; it checks the call (so a refusal costs no traffic),
// sends it to every other rank as a command, and runs it with them. Each
// other rank sits in follow(), which runs the commands in order until the
// driver's stop. Every-rank mode (the default) skips the commands.
//
// A command: its header {op, bytes} then its bytes, p2p from the driver to
// each rank, tagged by the command count (transport/tags.hpp). The driver
// sends one message pair per rank: fine for the worlds of one or a few
// nodes this targets; a tree would serve hundreds of ranks.
#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "group/group.hpp"
#include "model/model.hpp"
#include "model/wire.hpp"
#include "transport/tags.hpp"

namespace tppp {
namespace {

using Clock = std::chrono::steady_clock;


bool peer_broken(tppp_status s) {
  return s == TPPP_ERR_REMOTE || s == TPPP_ERR_TIMEOUT || s == TPPP_ERR_ABORTED || s == TPPP_ERR_UCX ||
         s == TPPP_ERR_NCCL || s == TPPP_ERR_CUDA || s == TPPP_ERR_SYSTEM || s == TPPP_ERR_FORMAT ||
         s == TPPP_ERR_INTERNAL;
}

}  // namespace

void Model::send_cmd(int32_t op, const std::vector<char>& data) {
  Transport& tr = g_.transport();
  const Comm& world = g_.comm(TPPP_SCOPE_WORLD);
  const uint32_t no = cmds_++;
  const CmdHead h{op, 0, static_cast<int64_t>(data.size())};
  std::vector<RequestPtr> reqs;
  for (int r = 1; r < world.size(); r++) {
    reqs.push_back(tr.isend(world, r, tags::model(no, tags::ModelMsg::Cmd), &h, sizeof h, kHostPlace));
    reqs.push_back(tr.isend(world, r, tags::model(no, tags::ModelMsg::CmdData), data.data(), data.size(), kHostPlace));
  }
  for (auto& q : reqs) q->wait();
}

void Model::refuse_follower(const char* op) const {
  if (p_.follow && !driver())
    fail(TPPP_ERR_INVALID_USAGE, "%s: this model follows the driver (params.follow): only world rank 0 calls it, "
         "the other ranks call tppp_model_follow", op);
}

int32_t Model::forward(const BatchView& b, int32_t outputs, float* logits, int64_t* ids) {
  refuse_follower("forward");
  if (leading() && stopped_) fail(TPPP_ERR_INVALID_USAGE, "forward: the driver has stopped its followers");
  agree_batch("forward", b, outputs, nullptr);
  const KvPlan kv = check(b, outputs);  // a refusal costs the followers nothing
  if (leading()) {
    Writer w;
    write_batch(&w, outputs, b.n, b.token, b.pos, b.seq, b.logits);
    send_cmd(kCmdForward, w.b);
  }
  return run(b, kv, outputs, logits, ids);
}

void Model::remove(int32_t seq) {
  refuse_follower("remove_seq");
  agree("remove_seq", {{"seq_id", fingerprint(&seq, 4)}});
  if (leading()) {
    if (stopped_) fail(TPPP_ERR_INVALID_USAGE, "remove_seq: the driver has stopped its followers");
    if (seq < 0 || seq >= book_.max_seqs())
      fail(TPPP_ERR_INVALID_ARGUMENT, "remove_seq: sequence %d is outside [0, max_seqs %d)", seq, book_.max_seqs());
    Writer w;
    w.i32(seq);
    send_cmd(kCmdRemove, w.b);
  }
  if (seq < 0 || seq >= book_.max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "remove_seq: sequence %d is outside [0, max_seqs %d)", seq, book_.max_seqs());
  forget(seq);
}

void Model::generate(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& o,
                     const TokenFn& on_token, std::vector<std::vector<int32_t>>* tokens, float* first_logits) {
  refuse_follower("generate");
  std::vector<int32_t> each;  // stop_each flattened: count, ids per prompt
  for (const auto& e : o.stop_each) {
    each.push_back(static_cast<int32_t>(e.size()));
    each.insert(each.end(), e.begin(), e.end());
  }
  {
    std::vector<int32_t> flat, lens;
    for (const auto& pr : prompts) {
      lens.push_back(static_cast<int32_t>(pr.size()));
      flat.insert(flat.end(), pr.begin(), pr.end());
    }
    const int32_t opts[6] = {o.max_new, o.microbatches, o.prefill_chunk, o.ignore_eos, o.callback_stops,
                             static_cast<int32_t>(prompts.size())};
    agree("generate", {{"options", fingerprint(opts, sizeof opts)},
                       {"prompt lengths", fingerprint(lens.data(), lens.size() * 4)},
                       {"prompt tokens", fingerprint(flat.data(), flat.size() * 4)},
                       {"stop ids", fingerprint(o.stop.data(), o.stop.size() * 4)},
                       {"max_new_each", fingerprint(o.max_new_each.data(), o.max_new_each.size() * 4)},
                       {"stop_ids_each", fingerprint(each.data(), each.size() * 4)},
                       {"sampling", fingerprint(std::vector<SamplingParams>{o.sampling})}});
  }
  if (!steps_.empty())
    fail(TPPP_ERR_INVALID_USAGE, "generate: %zu host steps are in flight; wait for them first", steps_.size());
  check_sampling(o.sampling, "generate");
  if (!o.stop_each.empty() && o.stop_each.size() != prompts.size())
    fail(TPPP_ERR_INVALID_ARGUMENT, "generate: %zu per-prompt stop lists for %zu prompts", o.stop_each.size(),
         prompts.size());
  if (!o.max_new_each.empty() && o.max_new_each.size() != prompts.size())
    fail(TPPP_ERR_INVALID_ARGUMENT, "generate: %zu per-prompt max_new values for %zu prompts", o.max_new_each.size(),
         prompts.size());
  for (size_t i = 0; i < o.max_new_each.size(); i++)
    if (o.max_new_each[i] < 0) fail(TPPP_ERR_INVALID_ARGUMENT, "generate: prompt %zu's max_new %d is negative", i,
                                    o.max_new_each[i]);
  const int32_t np = static_cast<int32_t>(prompts.size());
  if (np <= 0 || np > p_.max_seqs)
    fail(TPPP_ERR_INVALID_ARGUMENT, "generate: %d prompts (1 to max_seqs %d)", np, p_.max_seqs);
  if (o.max_new < 0) fail(TPPP_ERR_INVALID_ARGUMENT, "generate: max_new %d is negative", o.max_new);
  if (o.microbatches < 0 || o.prefill_chunk < 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "generate: microbatches %d and prefill_chunk %d must be >= 0 (0: default)",
         o.microbatches, o.prefill_chunk);
  for (int32_t i = 0; i < np; i++) {
    const auto& pr = prompts[static_cast<size_t>(i)];
    if (pr.empty()) fail(TPPP_ERR_INVALID_ARGUMENT, "generate: prompt %d is empty", i);
    for (size_t k = 0; k < pr.size(); k++)
      if (pr[k] < 0 || pr[k] >= spec_.dims.vocab)
        fail(TPPP_ERR_INVALID_ARGUMENT, "generate: prompt %d token %zu is %d, outside the vocabulary [0, %lld)", i, k,
             pr[k], static_cast<long long>(spec_.dims.vocab));
    if (book_.length(i) != 0)
      fail(TPPP_ERR_INVALID_USAGE, "generate: sequence %d (prompt %d) already holds %d tokens; remove it first", i, i,
           book_.length(i));
  }
  if (leading()) {
    if (stopped_) fail(TPPP_ERR_INVALID_USAGE, "generate: the driver has stopped its followers");
    Writer w;
    w.i32(np);
    w.i32(o.max_new);
    w.i32(o.microbatches);
    w.i32(o.prefill_chunk);
    w.i32(static_cast<int32_t>(o.stop.size()));
    w.i32s(o.stop.data(), o.stop.size());
    w.i32(o.ignore_eos ? 1 : 0);
    w.i32(o.callback_stops ? 1 : 0);
    w.put(&o.sampling, sizeof o.sampling);
    w.i32(static_cast<int32_t>(o.max_new_each.size()));
    w.i32s(o.max_new_each.data(), o.max_new_each.size());
    w.i32(o.stop_each.empty() ? 0 : 1);
    w.i32(static_cast<int32_t>(each.size()));
    w.i32s(each.data(), each.size());
    for (const auto& pr : prompts) w.i32(static_cast<int32_t>(pr.size()));
    for (const auto& pr : prompts) w.i32s(pr.data(), pr.size());
    send_cmd(kCmdGenerate, w.b);
  }
  generate_here(prompts, o, on_token, tokens, first_logits);
}

void Model::stop() {
  if (!leading())
    fail(TPPP_ERR_INVALID_USAGE, "stop: only the driver of a model in follow mode (params.follow) stops followers");
  if (stopped_) return;
  stopped_ = true;
  send_cmd(kCmdStop, {});
}

Model::~Model() {
  if (leading() && !stopped_) {
    try {
      stop();
    } catch (const std::exception& e) {
      TPPP_LOG(TPPP_LOG_WARN, "model: stopping the followers at destruction failed: %s", e.what());
    }
  }
}

void Model::follow(int64_t idle_timeout_ms) {
  if (!p_.follow) fail(TPPP_ERR_INVALID_USAGE, "follow: the model was not created with params.follow");
  if (driver()) fail(TPPP_ERR_INVALID_USAGE, "follow: world rank 0 is the driver; it calls forward/generate/stop");
  if (stopped_) fail(TPPP_ERR_INVALID_USAGE, "follow: the driver has already stopped this model's followers");
  Transport& tr = g_.transport();
  const Comm& world = g_.comm(TPPP_SCOPE_WORLD);
  for (;;) {
    // Wait for the next command: spin briefly, then nap, so an idle
    // follower does not hold a core. The transport's own deadline is the
    // group timeout: past it, post again until idle_timeout_ms runs out.
    CmdHead h{};
    const auto t0 = Clock::now();
    const uint32_t tag = tags::model(cmds_, tags::ModelMsg::Cmd);
    auto rq = tr.irecv(world, 0, tag, &h, sizeof h, kHostPlace);
    for (unsigned spin = 0;; spin++) {
      try {
        if (rq->test()) break;
      } catch (const Error& e) {
        if (e.status() != TPPP_ERR_TIMEOUT) throw;  // a dead driver: REMOTE
        rq.reset();
        rq = tr.irecv(world, 0, tag, &h, sizeof h, kHostPlace);
      }
      const double idle = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (idle_timeout_ms >= 0 && idle >= static_cast<double>(idle_timeout_ms))
        fail(TPPP_ERR_TIMEOUT, "follow: rank %d had no call from the driver (rank 0) in %lld ms", g_.config().rank,
             static_cast<long long>(idle_timeout_ms));
      if (spin > 2000) std::this_thread::sleep_for(std::chrono::microseconds(spin > 20000 ? 1000 : 100));
    }
    if (h.bytes < 0 || h.bytes > (int64_t(1) << 34))
      fail(TPPP_ERR_FORMAT, "follow: command %u from the driver says %lld bytes", cmds_,
           static_cast<long long>(h.bytes));
    std::vector<char> data(static_cast<size_t>(h.bytes));
    tr.irecv(world, 0, tags::model(cmds_, tags::ModelMsg::CmdData), data.data(), data.size(), kHostPlace)->wait();
    cmds_++;
    Reader rd{data};
    try {
      switch (h.op) {
        case kCmdForward: {
          WireBatch wb;
          wb.read(&rd, p_.max_batch);
          const BatchView b{wb.n, wb.tok.data(), wb.pos.data(), wb.seq.data(), wb.has_want ? wb.want.data() : nullptr};
          run(b, check(b, wb.outputs), wb.outputs, nullptr, nullptr);
          break;
        }
        case kCmdRemove:
          forget(rd.i32());
          break;
        case kCmdSubmit:
        case kCmdSeqRm:
        case kCmdSeqCp:
          run_cmd(h.op, data);
          break;
        case kCmdGenerate: {
          const int32_t np = rd.i32();
          if (np <= 0 || np > p_.max_seqs) fail(TPPP_ERR_FORMAT, "follow: a generate command with %d prompts", np);
          GenerateOptions o;
          o.max_new = rd.i32();
          o.microbatches = rd.i32();
          o.prefill_chunk = rd.i32();
          o.stop = rd.i32s(rd.i32());
          o.ignore_eos = rd.i32() != 0;
          o.callback_stops = rd.i32() != 0;
          rd.get(&o.sampling, sizeof o.sampling);
          o.max_new_each = rd.i32s(rd.i32());
          const bool has_each = rd.i32() != 0;
          const std::vector<int32_t> each = rd.i32s(rd.i32());
          if (has_each) {
            size_t at = 0;
            for (int32_t i = 0; i < np; i++) {
              if (at >= each.size() || each[at] < 0 || static_cast<size_t>(each[at]) > each.size() - at - 1)
                fail(TPPP_ERR_FORMAT, "follow: a generate command's stop lists are malformed");
              o.stop_each.emplace_back(each.begin() + static_cast<long>(at + 1),
                                       each.begin() + static_cast<long>(at + 1 + static_cast<size_t>(each[at])));
              at += 1 + static_cast<size_t>(each[at]);
            }
          }
          const std::vector<int32_t> lens = rd.i32s(np);
          std::vector<std::vector<int32_t>> prompts;
          for (int32_t l : lens) prompts.push_back(rd.i32s(l));
          generate_here(prompts, o, nullptr, nullptr, nullptr);
          break;
        }
        case kCmdStop:
          stopped_ = true;
          return;
        default:
          fail(TPPP_ERR_FORMAT, "follow: command %u from the driver has unknown op %d", cmds_ - 1, h.op);
      }
    } catch (const Error& e) {
      // The driver failed the same way and carries on; a broken peer ends following.
      if (peer_broken(e.status())) throw;
      TPPP_LOG(TPPP_LOG_WARN, "follow: rank %d: command %u failed as on the driver: %s", g_.config().rank, cmds_ - 1,
               e.what());
    }
  }
}

}  // namespace tppp
