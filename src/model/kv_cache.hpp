// The paged KV cache's bookkeeping: which pages each sequence holds and how
// long it is. A batch is first planned (checked, pages picked, nothing
// changed: a bad batch or a full cache leaves every sequence as it was), then
// committed. Plain data from pure functions; every rank runs the same
// batches, so every rank's book is the same without talking. The memory
// itself (per layer K and V, FlashInfer's NHD layout [pages, page_size,
// kv_heads, head_dim]) belongs to the decoder.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "backend/backend.hpp"

namespace tppp {

// One batch, llama_batch style: n tokens, each a token id, its position in
// its sequence, the sequence id and whether its logits are wanted (NULL:
// only the last token's).
struct BatchView {
  int32_t n = 0;
  const int32_t* token = nullptr;
  const int32_t* pos = nullptr;
  const int32_t* seq = nullptr;
  const int8_t* logits = nullptr;
};

struct KvPlan {
  std::vector<int32_t> slot;      // [n] page * page_size + offset where the token's K/V go
  std::vector<int32_t> kv_len;    // [n] positions the token attends to (pos + 1)
  std::vector<int32_t> page_off;  // [n] where its sequence's pages start in `pages`
  std::vector<int32_t> pages;     // the batch's sequences' page tables, concatenated
  std::vector<int32_t> wanted;    // rows whose logits are wanted, in batch order
  // To commit: new lengths and appended pages per sequence.
  std::vector<std::pair<int32_t, int32_t>> new_len;
  std::vector<std::pair<int32_t, std::vector<int32_t>>> grow;
  int32_t pages_taken = 0;
};

// The batch's runs for attention kernels that work per request (FlashInfer):
// a run continues while the next token has the same page table and the next
// position. Pure; n = the batch's tokens.
AttnRuns attn_runs(const KvPlan& p, int32_t n, int32_t page_size);

// A decode batch padded to `rows` (a CUDA-graph bucket): rows past the
// batch write their K/V to `scratch_page` (one the book never hands out) and
// attend to it alone, one position each, so they touch no sequence. Pure.
KvPlan pad_rows(const KvPlan& p, int32_t rows, int32_t scratch_page, int32_t page_size);

class KvBook {
 public:
  KvBook(int32_t num_pages, int32_t page_size, int32_t max_seqs);
  // Throws INVALID_ARGUMENT naming the token and sequence (bad id, position
  // gap or rewrite, token outside [0, vocab)), OUT_OF_MEMORY naming capacity
  // and demand when the pages do not suffice. Changes nothing.
  KvPlan plan(const BatchView& b, int64_t vocab) const;
  void commit(const KvPlan& p);
  // Frees the sequence's pages; its id may be reused from position 0. An
  // id that holds nothing is fine; one outside [0, max_seqs) throws.
  void remove(int32_t seq);
  // Keeps positions [0, len) of the sequence and frees the pages past them.
  void truncate(int32_t seq, int32_t len);
  // Prefix sharing (llama.h's seq_cp over whole pages): dst, which holds
  // nothing, gets src's first len positions by sharing the pages that hold
  // them (a count per page; a page is free when no sequence holds it). len
  // must be a multiple of the page size, so neither sequence ever writes a
  // shared page; a write that would (after a seq_rm into one) is refused.
  void share(int32_t src, int32_t dst, int32_t len);
  int32_t length(int32_t seq) const;
  int32_t free_pages() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_pages() const { return num_pages_; }
  int32_t page_size() const { return page_size_; }
  int32_t max_seqs() const { return static_cast<int32_t>(seqs_.size()); }

 private:
  struct Seq {
    int32_t len = 0;
    std::vector<int32_t> pages;
  };
  int32_t num_pages_, page_size_;
  std::vector<Seq> seqs_;
  std::vector<int32_t> free_;  // a stack: pages are taken from the back
  std::vector<int32_t> holders_;  // per page: the sequences that hold it
  void release(int32_t page);
};

}  // namespace tppp
