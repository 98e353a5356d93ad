// KvBook: plan, commit, remove (see the header).
#include "model/kv_cache.hpp"

#include <algorithm>
#include <unordered_map>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {

KvBook::KvBook(int32_t num_pages, int32_t page_size, int32_t max_seqs)
    : num_pages_(num_pages), page_size_(page_size), seqs_(static_cast<size_t>(max_seqs)),
      holders_(static_cast<size_t>(std::max(num_pages, 0)), 0) {
  if (num_pages <= 0 || page_size <= 0 || max_seqs <= 0)
    fail(TPPP_ERR_INVALID_ARGUMENT, "KV cache: pages %d, page size %d and max sequences %d must all be > 0", num_pages,
         page_size, max_seqs);
  free_.reserve(static_cast<size_t>(num_pages));
  for (int32_t p = num_pages - 1; p >= 0; p--) free_.push_back(p);  // page 0 is taken first
}

int32_t KvBook::length(int32_t seq) const {
  return seq >= 0 && seq < max_seqs() ? seqs_[static_cast<size_t>(seq)].len : 0;
}

KvPlan KvBook::plan(const BatchView& b, int64_t vocab) const {
  if (b.n <= 0) fail(TPPP_ERR_INVALID_ARGUMENT, "batch: n_tokens %d must be > 0", b.n);
  if (!b.token || !b.pos || !b.seq) fail(TPPP_ERR_INVALID_ARGUMENT, "batch: token, pos and seq_id must not be NULL");
  KvPlan p;
  const size_t n = static_cast<size_t>(b.n);
  p.slot.resize(n);
  p.kv_len.resize(n);
  p.page_off.resize(n);
  std::unordered_map<int32_t, size_t> idx;  // seq -> index into p.new_len / p.grow
  for (int32_t t = 0; t < b.n; t++) {
    const int32_t s = b.seq[t], tok = b.token[t], pos = b.pos[t];
    if (s < 0 || s >= max_seqs())
      fail(TPPP_ERR_INVALID_ARGUMENT, "batch token %d: sequence id %d is outside [0, %d) (the model's max_seqs)", t, s,
           max_seqs());
    if (tok < 0 || tok >= vocab)
      fail(TPPP_ERR_INVALID_ARGUMENT, "batch token %d (sequence %d): token id %d is outside the vocabulary [0, %lld)",
           t, s, tok, static_cast<long long>(vocab));
    auto it = idx.find(s);
    if (it == idx.end()) {
      it = idx.emplace(s, p.new_len.size()).first;
      p.new_len.emplace_back(s, seqs_[static_cast<size_t>(s)].len);
      p.grow.emplace_back(s, std::vector<int32_t>());
    }
    int32_t& len = p.new_len[it->second].second;
    if (pos != len)
      fail(TPPP_ERR_INVALID_ARGUMENT,
           "batch token %d (sequence %d): position %d, but the sequence holds %d tokens, so its next position is %d "
           "(%s)", t, s, pos, len, len, pos > len ? "a gap" : "a rewrite");
    len++;
  }
  // Pages: what each sequence lacks, taken from the back of the free stack.
  int32_t need = 0;
  for (size_t i = 0; i < p.new_len.size(); i++) {
    const Seq& q = seqs_[static_cast<size_t>(p.new_len[i].first)];
    const int32_t want = (p.new_len[i].second + page_size_ - 1) / page_size_;
    need += want - static_cast<int32_t>(q.pages.size());
  }
  if (need > free_pages())
    fail(TPPP_ERR_OUT_OF_MEMORY,
         "KV cache full: the batch needs %d more pages of %d tokens, %d of %d are free (capacity %lld tokens); "
         "remove finished sequences, or create the model with more KV pages",
         need, page_size_, free_pages(), num_pages_, static_cast<long long>(num_pages_) * page_size_);
  size_t take = free_.size();
  std::unordered_map<int32_t, int32_t> start;  // seq -> offset of its table in p.pages
  for (size_t i = 0; i < p.new_len.size(); i++) {
    const int32_t s = p.new_len[i].first;
    const Seq& q = seqs_[static_cast<size_t>(s)];
    const int32_t want = (p.new_len[i].second + page_size_ - 1) / page_size_;
    start[s] = static_cast<int32_t>(p.pages.size());
    p.pages.insert(p.pages.end(), q.pages.begin(), q.pages.end());
    for (int32_t k = static_cast<int32_t>(q.pages.size()); k < want; k++) {
      const int32_t pg = free_[--take];
      p.grow[i].second.push_back(pg);
      p.pages.push_back(pg);
    }
  }
  p.pages_taken = need;
  for (int32_t t = 0; t < b.n; t++) {
    const size_t ti = static_cast<size_t>(t);
    const int32_t s = b.seq[t], pos = b.pos[t], off = start[s];
    const int32_t page = p.pages[static_cast<size_t>(off + pos / page_size_)];
    if (page < num_pages_ && holders_[static_cast<size_t>(page)] > 1)
      fail(TPPP_ERR_NOT_SUPPORTED,
           "batch token %d (sequence %d): position %d is in KV page %d, which %d sequences share (seq_cp); writing it "
           "would change the others' cache: remove whole shared pages (seq_rm at a page boundary) before rewriting",
           t, s, pos, page, holders_[static_cast<size_t>(page)]);
    p.page_off[ti] = off;
    p.kv_len[ti] = pos + 1;
    p.slot[ti] = page * page_size_ + pos % page_size_;
    if (b.logits ? b.logits[t] != 0 : t == b.n - 1) p.wanted.push_back(t);
  }
  return p;
}

AttnRuns attn_runs(const KvPlan& p, int32_t n, int32_t page_size) {
  AttnRuns r;
  r.qo_indptr.push_back(0);
  r.kv_indptr.push_back(0);
  r.decode = true;
  for (int32_t t = 0; t < n;) {
    const size_t t0 = static_cast<size_t>(t);
    int32_t e = t + 1;
    while (e < n && p.page_off[static_cast<size_t>(e)] == p.page_off[t0] &&
           p.kv_len[static_cast<size_t>(e)] == p.kv_len[static_cast<size_t>(e - 1)] + 1)
      e++;
    const int32_t len = p.kv_len[static_cast<size_t>(e - 1)], pages = (len + page_size - 1) / page_size;
    const auto first = p.pages.begin() + p.page_off[t0];
    r.kv_indices.insert(r.kv_indices.end(), first, first + pages);
    r.kv_last.push_back(len - (pages - 1) * page_size);
    r.qo_indptr.push_back(e);
    r.kv_indptr.push_back(static_cast<int32_t>(r.kv_indices.size()));
    if (e - t != 1) r.decode = false;
    t = e;
  }
  return r;
}

KvPlan pad_rows(const KvPlan& p, int32_t rows, int32_t scratch_page, int32_t page_size) {
  KvPlan q;
  q.slot = p.slot;
  q.kv_len = p.kv_len;
  q.page_off = p.page_off;
  q.pages = p.pages;
  q.wanted = p.wanted;
  q.pages.push_back(scratch_page);
  const int32_t off = static_cast<int32_t>(q.pages.size()) - 1;
  for (size_t r = p.slot.size(); r < static_cast<size_t>(rows); r++) {
    q.slot.push_back(scratch_page * page_size);
    q.kv_len.push_back(1);
    q.page_off.push_back(off);
  }
  return q;
}

void KvBook::commit(const KvPlan& p) {
  free_.resize(free_.size() - static_cast<size_t>(p.pages_taken));
  for (auto& g : p.grow) {
    Seq& q = seqs_[static_cast<size_t>(g.first)];
    q.pages.insert(q.pages.end(), g.second.begin(), g.second.end());
    for (int32_t pg : g.second) holders_[static_cast<size_t>(pg)] = 1;
  }
  for (auto& l : p.new_len) seqs_[static_cast<size_t>(l.first)].len = l.second;
}

void KvBook::remove(int32_t seq) {
  if (seq < 0 || seq >= max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "remove: sequence id %d is outside [0, %d)", seq, max_seqs());
  Seq& q = seqs_[static_cast<size_t>(seq)];
  for (auto it = q.pages.rbegin(); it != q.pages.rend(); ++it) release(*it);
  q.pages.clear();
  q.len = 0;
}

void KvBook::release(int32_t page) {
  if (--holders_[static_cast<size_t>(page)] == 0) free_.push_back(page);
}

void KvBook::share(int32_t src, int32_t dst, int32_t len) {
  if (src < 0 || src >= max_seqs() || dst < 0 || dst >= max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_cp: sequences %d -> %d: both must be in [0, %d)", src, dst, max_seqs());
  if (src == dst) fail(TPPP_ERR_INVALID_ARGUMENT, "seq_cp: source and destination are both sequence %d", src);
  const Seq& s = seqs_[static_cast<size_t>(src)];
  Seq& d = seqs_[static_cast<size_t>(dst)];
  if (d.len != 0)
    fail(TPPP_ERR_INVALID_USAGE, "seq_cp: destination sequence %d holds %d tokens; remove it first", dst, d.len);
  if (len < 0 || len > s.len)
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_cp: %d positions of sequence %d, which holds %d", len, src, s.len);
  if (len % page_size_ != 0)
    fail(TPPP_ERR_NOT_SUPPORTED,
         "seq_cp: %d positions of sequence %d is not a whole number of KV pages (%d tokens each); share %d and "
         "recompute the rest", len, src, page_size_, len / page_size_ * page_size_);
  const size_t n = static_cast<size_t>(len / page_size_);
  d.pages.assign(s.pages.begin(), s.pages.begin() + static_cast<long>(n));
  for (int32_t pg : d.pages) holders_[static_cast<size_t>(pg)]++;
  d.len = len;
}

void KvBook::truncate(int32_t seq, int32_t len) {
  if (seq < 0 || seq >= max_seqs())
    fail(TPPP_ERR_INVALID_ARGUMENT, "seq_rm: sequence id %d is outside [0, %d)", seq, max_seqs());
  Seq& q = seqs_[static_cast<size_t>(seq)];
  if (len >= q.len) return;
  const size_t keep = static_cast<size_t>((std::max(len, 0) + page_size_ - 1) / page_size_);
  for (size_t i = q.pages.size(); i-- > keep;) release(q.pages[i]);
  q.pages.resize(keep);
  q.len = std::max(len, 0);
}

}  // namespace tppp
