// Host-memory collective algorithms; see host_collectives.hpp for the why.
#include "transport/host_collectives.hpp"

#include <algorithm>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

// d[i] = a[i] op b[i]; d may be a (no restrict: the compiler checks the
// overlap at run time and still vectorises).
template <typename T>
void reduce_native(T* d, const T* a, const T* b, size_t n, int32_t op) {
  switch (op) {
    case TPPP_OP_SUM:
      for (size_t i = 0; i < n; i++) d[i] = a[i] + b[i];
      break;
    case TPPP_OP_MAX:
      for (size_t i = 0; i < n; i++) d[i] = a[i] < b[i] ? b[i] : a[i];
      break;
    default:
      for (size_t i = 0; i < n; i++) d[i] = b[i] < a[i] ? b[i] : a[i];
      break;
  }
}

template <float (*Load)(uint16_t), uint16_t (*Store)(float)>
void reduce_half(uint16_t* d, const uint16_t* a, const uint16_t* b, size_t n, int32_t op) {
  // Blocks through f32 so the compiler can vectorise the arithmetic.
  float x[256], y[256];
  for (size_t i0 = 0; i0 < n; i0 += 256) {
    size_t m = std::min<size_t>(256, n - i0);
    for (size_t i = 0; i < m; i++) {
      x[i] = Load(a[i0 + i]);
      y[i] = Load(b[i0 + i]);
    }
    reduce_native(x, x, y, m, op);
    for (size_t i = 0; i < m; i++) d[i0 + i] = Store(x[i]);
  }
}

inline int mod(int a, int n) { return ((a % n) + n) % n; }

// Element ranges of the n ring chunks: balanced, the first count%n one longer.
struct Chunks {
  size_t count, n;
  size_t off(size_t i) const { return i * (count / n) + std::min(i, count % n); }
  size_t len(size_t i) const { return count / n + (i < count % n ? 1 : 0); }
};

constexpr uint64_t kSegBits = 20;  // step tag = (step << kSegBits) | segment
// Hierarchical calls: hosts and members per host below this; each phase's
// steps start at a multiple of 2x it (ring steps < 2n, tags 32 bits).
constexpr int kMaxHierSize = 512;
constexpr uint64_t kCross = kMaxHierSize * 2, kBack = kMaxHierSize * 4;  // the cross and the return phase

// A ring over n ranks: count elements in n chunks, each sent in segments
// of seg elements.
struct RingLayout {
  Chunks ch;
  size_t seg;
  size_t nsegs(int chunk) const { return (ch.len(static_cast<size_t>(chunk)) + seg - 1) / seg; }
  void span(int chunk, size_t j, size_t* off, size_t* len) const {
    *off = ch.off(static_cast<size_t>(chunk)) + j * seg;
    *len = std::min(seg, ch.len(static_cast<size_t>(chunk)) - j * seg);
  }
};

inline uint64_t ring_tag(uint64_t base, uint64_t step, size_t j) { return ((base + step) << kSegBits) | j; }

// Sends chunk `chunk` of buf to peer `to`, segment by segment, as ring step `step`.
void send_chunk(HostP2P& p2p, const Comm& c, const RingLayout& ring, int chunk, int to, uint64_t base, uint64_t step,
                const char* buf, size_t es) {
  for (size_t j = 0; j < ring.nsegs(chunk); j++) {
    size_t off, len;
    ring.span(chunk, j, &off, &len);
    p2p.coll_send(c, to, ring_tag(base, step, j), buf + off * es, len * es);
  }
}


}  // namespace

void reduce_to(void* dst, const void* a, const void* b, size_t count, int32_t dtype, int32_t op) {
  switch (dtype) {
    case TPPP_DTYPE_F32:
      reduce_native(static_cast<float*>(dst), static_cast<const float*>(a), static_cast<const float*>(b), count, op);
      break;
    case TPPP_DTYPE_I32:
      reduce_native(static_cast<int32_t*>(dst), static_cast<const int32_t*>(a), static_cast<const int32_t*>(b), count,
                    op);
      break;
    case TPPP_DTYPE_I64:
      reduce_native(static_cast<int64_t*>(dst), static_cast<const int64_t*>(a), static_cast<const int64_t*>(b), count,
                    op);
      break;
    case TPPP_DTYPE_BF16:
      reduce_half<bf16_to_f32, f32_to_bf16>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                                            static_cast<const uint16_t*>(b), count, op);
      break;
    case TPPP_DTYPE_F16:
      reduce_half<f16_to_f32, f32_to_f16>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                                          static_cast<const uint16_t*>(b), count, op);
      break;
    default:
      check_reducible(dtype);  // throws
  }
}

void check_reducible(int32_t dtype) {
  if (dtype != TPPP_DTYPE_F32 && dtype != TPPP_DTYPE_F16 && dtype != TPPP_DTYPE_BF16 && dtype != TPPP_DTYPE_I32 &&
      dtype != TPPP_DTYPE_I64)
    fail(TPPP_ERR_NOT_SUPPORTED, "all_reduce: dtype %s cannot be reduced (use F32, F16, BF16, I32 or I64)",
         dtype_name(dtype));
}

void reduce_into(void* dst, const void* src, size_t count, int32_t dtype, int32_t op) {
  reduce_to(dst, dst, src, count, dtype, op);
}

char* HostCollectives::scratch(size_t n) {
  if (scratch_.size() < n) scratch_.resize(n);
  return scratch_.data();
}

void HostCollectives::all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype,
                                 int32_t op) {
  const size_t es = dtype_size(dtype);
  if (send != recv) std::memmove(recv, send, count * es);
  if (c.size() == 1) return;  // a count of 0 still takes part: every rank counts every call
  p2p_.coll_begin(c, "all_reduce", CollCall{CollKind::AllReduce, dtype, op, 0, count});
  try {
    const HostSplit& hs = host_split(c);
    if (hs.hierarchical)
      allreduce_hierarchical(hs.local, hs.cross, static_cast<char*>(recv), count, dtype, op);
    else if (count * es <= t_.allreduce_small_bytes || count < static_cast<size_t>(c.size()))
      allreduce_doubling(c, static_cast<char*>(recv), count, dtype, op);
    else
      allreduce_ring(c, static_cast<char*>(recv), count, dtype, op);
  } catch (...) {
    p2p_.coll_end();
    throw;
  }
  p2p_.coll_end();
}

void HostCollectives::allreduce_doubling(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op,
                                         uint64_t base) {
  const int n = c.size(), me = c.me;
  const size_t bytes = count * dtype_size(dtype);
  char* tmp = scratch(bytes);
  int p2 = 1;
  while (p2 * 2 <= n) p2 *= 2;
  const int rem = n - p2;
  uint64_t step = base;
  int vrank;
  // Fold: of the first 2*rem ranks, the even ones hand their data to the odd
  // neighbour and sit out, leaving a power of two.
  if (me < 2 * rem) {
    if (me % 2 == 0) {
      p2p_.coll_wait(p2p_.coll_send(c, me + 1, step, buf, bytes));
      vrank = -1;
    } else {
      p2p_.coll_wait(p2p_.coll_recv(c, me - 1, step, tmp, bytes));
      reduce_into(buf, tmp, count, dtype, op);
      vrank = me / 2;
    }
  } else {
    vrank = me - rem;
  }
  step++;
  if (vrank >= 0) {
    for (int mask = 1; mask < p2; mask <<= 1, step++) {
      int pv = vrank ^ mask;
      int peer = pv < rem ? pv * 2 + 1 : pv + rem;
      auto r = p2p_.coll_recv(c, peer, step, tmp, bytes);
      auto s = p2p_.coll_send(c, peer, step, buf, bytes);
      p2p_.coll_wait(r);
      p2p_.coll_wait(s);
      reduce_into(buf, tmp, count, dtype, op);  // a op b == b op a: both sides agree bit for bit
    }
  } else {
    step += static_cast<uint64_t>(__builtin_ctz(static_cast<unsigned>(p2)));
  }
  if (me < 2 * rem) {
    if (me % 2 == 1)
      p2p_.coll_wait(p2p_.coll_send(c, me - 1, step, buf, bytes));
    else
      p2p_.coll_wait(p2p_.coll_recv(c, me + 1, step, buf, bytes));
  }
}

void HostCollectives::allreduce_ring(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op) {
  ring_reduce_scatter(c, buf, count, dtype, op, 0, true, t_.segment_bytes);
  ring_all_gather(c, buf, count, dtype, static_cast<uint64_t>(c.size() - 1), false, t_.segment_bytes);
  p2p_.coll_wait_all();
}

void HostCollectives::ring_reduce_scatter(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op,
                                          uint64_t base, bool forward_last, size_t seg_bytes) {
  const int n = c.size(), me = c.me;
  const size_t es = dtype_size(dtype);
  const Chunks ch{count, static_cast<size_t>(n)};
  const RingLayout ring{ch, std::max<size_t>(1, seg_bytes / es)};
  const int right = mod(me + 1, n), left = mod(me - 1, n);
  char* tmp = scratch(ch.len(0) * es);
  // Step 0 sends my own chunk whole; every later send forwards a segment as
  // soon as it has been reduced. forward_last: the last step's reduced
  // segments go on at once as the all-gather's first step (base + n - 1).
  send_chunk(p2p_, c, ring, me, right, base, 0, buf, es);
  std::vector<HostP2P::Id> ids;
  for (int s = 0; s < n - 1; s++) {
    const int rc = mod(me - s - 1, n);
    const size_t cbase = ch.off(static_cast<size_t>(rc));
    ids.clear();
    for (size_t j = 0; j < ring.nsegs(rc); j++) {
      size_t off, len;
      ring.span(rc, j, &off, &len);
      ids.push_back(
          p2p_.coll_recv(c, left, ring_tag(base, static_cast<uint64_t>(s), j), tmp + (off - cbase) * es, len * es));
    }
    for (size_t j = 0; j < ids.size(); j++) {
      size_t off, len;
      ring.span(rc, j, &off, &len);
      p2p_.coll_wait(ids[j]);
      reduce_into(buf + off * es, tmp + (off - cbase) * es, len, dtype, op);
      if (s < n - 2 || forward_last)
        p2p_.coll_send(c, right, ring_tag(base, static_cast<uint64_t>(s + 1), j), buf + off * es, len * es);
    }
  }
}

void HostCollectives::ring_all_gather(const Comm& c, char* buf, size_t count, int32_t dtype, uint64_t base,
                                      bool send_first, size_t seg_bytes) {
  const int n = c.size(), me = c.me;
  const size_t es = dtype_size(dtype);
  const RingLayout ring{Chunks{count, static_cast<size_t>(n)}, std::max<size_t>(1, seg_bytes / es)};
  const int right = mod(me + 1, n), left = mod(me - 1, n);
  if (send_first) send_chunk(p2p_, c, ring, mod(me + 1, n), right, base, 0, buf, es);  // as ring_reduce_scatter left it
  std::vector<HostP2P::Id> ids;
  for (int s = 0; s < n - 1; s++) {
    const int rc = mod(me - s, n);
    ids.clear();
    for (size_t j = 0; j < ring.nsegs(rc); j++) {
      size_t off, len;
      ring.span(rc, j, &off, &len);
      ids.push_back(p2p_.coll_recv(c, left, ring_tag(base, static_cast<uint64_t>(s), j), buf + off * es, len * es));
    }
    for (size_t j = 0; j < ids.size(); j++) {
      p2p_.coll_wait(ids[j]);
      if (s < n - 2) {
        size_t off, len;
        ring.span(rc, j, &off, &len);
        p2p_.coll_send(c, right, ring_tag(base, static_cast<uint64_t>(s + 1), j), buf + off * es, len * es);
      }
    }
  }
}

const HostCollectives::HostSplit& HostCollectives::host_split(const Comm& c) {
  HostSplit& hs = splits_[static_cast<size_t>(c.id)];
  if (!hs.known || hs.me != c.me || hs.ranks != c.ranks) {  // first call on c (the group's comms never change)
    hs.hierarchical = split_by_host(c, &hs.local, &hs.cross);
    hs.ranks = c.ranks;
    hs.me = c.me;
    hs.known = true;
  }
  return hs;
}

bool HostCollectives::hierarchical(const Comm& c, const Comm** local, const Comm** cross) {
  const HostSplit& hs = host_split(c);
  *local = &hs.local;
  *cross = &hs.cross;
  return hs.hierarchical;
}

bool HostCollectives::split_by_host(const Comm& c, Comm* local, Comm* cross) const {
  const int n = c.size();
  if (n < 4) return false;
  std::vector<uint64_t> hosts;  // in order of first appearance
  std::vector<int> host_idx(static_cast<size_t>(n)), local_idx(static_cast<size_t>(n));
  std::vector<int> per_host;
  for (int i = 0; i < n; i++) {
    const uint64_t h = p2p_.host_of(c.ranks[static_cast<size_t>(i)]);
    size_t k = static_cast<size_t>(std::find(hosts.begin(), hosts.end(), h) - hosts.begin());
    if (k == hosts.size()) {
      hosts.push_back(h);
      per_host.push_back(0);
    }
    host_idx[static_cast<size_t>(i)] = static_cast<int>(k);
    local_idx[static_cast<size_t>(i)] = per_host[k]++;
  }
  const int H = static_cast<int>(hosts.size());
  if (H < 2 || H == n) return false;
  for (int p : per_host)
    if (p != per_host[0]) return false;
  if (per_host[0] >= kMaxHierSize || H >= kMaxHierSize) return false;
  const int my_host = host_idx[static_cast<size_t>(c.me)], my_local = local_idx[static_cast<size_t>(c.me)];
  *local = Comm();
  *cross = Comm();
  local->id = cross->id = c.id;
  local->name = cross->name = c.name;
  for (int i = 0; i < n; i++) {
    const int g = c.ranks[static_cast<size_t>(i)];
    if (host_idx[static_cast<size_t>(i)] == my_host) {
      if (i == c.me) local->me = local->size();
      local->ranks.push_back(g);
    }
    if (local_idx[static_cast<size_t>(i)] == my_local) {
      if (i == c.me) cross->me = cross->size();
      cross->ranks.push_back(g);
    }
  }
  return true;
}

// Across hosts, L members on each of H hosts (local: mine; cross: the
// members with my local index, one per host). Phases use separate step
// ranges, since the local ones run between the same peers:
//  small: the local members hand their vectors to the first (local leader),
//         the leaders reduce by recursive doubling across hosts, each
//         leader hands the result back: 2 local messages + log2(H) across.
//  large: a local ring reduce-scatter leaves local member i with chunk
//         (i + 1) % L reduced over the host; each chunk is all-reduced
//         across hosts by the members holding it (L exchanges in parallel,
//         each of 1/L of the data: every byte crosses between hosts once
//         each way, where a flat ring would cross 2 (H - 1) / H * S over
//         each of its host-crossing links); a local ring all-gather ends it.
// Every rank ends with the same bits: each element's final value is made
// once (a chunk's cross all-reduce) and copied from there.
void HostCollectives::allreduce_hierarchical(const Comm& local, const Comm& cross, char* buf, size_t count,
                                             int32_t dtype, int32_t op) {
  const size_t es = dtype_size(dtype);
  const size_t bytes = count * es;
  if (bytes <= t_.allreduce_small_bytes || count < static_cast<size_t>(local.size())) {
    if (local.me == 0) {
      char* tmp = scratch(bytes);
      for (int p = 1; p < local.size(); p++) {
        p2p_.coll_wait(p2p_.coll_recv(local, p, 0, tmp, bytes));
        reduce_into(buf, tmp, count, dtype, op);
      }
      allreduce_doubling(cross, buf, count, dtype, op, kCross);
      for (int p = 1; p < local.size(); p++) p2p_.coll_send(local, p, kBack, buf, bytes);
    } else {
      p2p_.coll_wait(p2p_.coll_send(local, 0, 0, buf, bytes));
      p2p_.coll_wait(p2p_.coll_recv(local, 0, kBack, buf, bytes));
    }
    p2p_.coll_wait_all();
    return;
  }
  const size_t seg = t_.hier_segment_bytes;
  ring_reduce_scatter(local, buf, count, dtype, op, 0, false, seg);
  const Chunks ch{count, static_cast<size_t>(local.size())};
  const size_t mine = static_cast<size_t>(mod(local.me + 1, local.size()));
  all_reduce_across(cross, buf + ch.off(mine) * es, ch.len(mine), dtype, op);
  ring_all_gather(local, buf, count, dtype, kBack, true, seg);
  p2p_.coll_wait_all();
}

void HostCollectives::all_reduce_across(const Comm& cross, char* part, size_t count, int32_t dtype, int32_t op) {
  const size_t seg = t_.hier_segment_bytes;
  if (count * dtype_size(dtype) <= t_.allreduce_small_bytes || count < static_cast<size_t>(cross.size())) {
    allreduce_doubling(cross, part, count, dtype, op, kCross);
  } else {
    ring_reduce_scatter(cross, part, count, dtype, op, kCross, true, seg);
    ring_all_gather(cross, part, count, dtype, kCross + static_cast<uint64_t>(cross.size() - 1), false, seg);
    p2p_.coll_wait_all();
  }
}

void HostCollectives::all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype) {
  const size_t bytes = count * dtype_size(dtype);
  const int n = c.size(), me = c.me;
  char* out = static_cast<char*>(recv);
  if (send != out + static_cast<size_t>(me) * bytes) std::memmove(out + static_cast<size_t>(me) * bytes, send, bytes);
  if (n == 1) return;
  p2p_.coll_begin(c, "all_gather", CollCall{CollKind::AllGather, dtype, 0, 0, count});
  try {
    if (bytes * static_cast<size_t>(n) <= t_.allgather_small_bytes) {
      for (int p = 0; p < n; p++)
        if (p != me) p2p_.coll_recv(c, p, 0, out + static_cast<size_t>(p) * bytes, bytes);
      for (int p = 0; p < n; p++)
        if (p != me) p2p_.coll_send(c, p, 0, out + static_cast<size_t>(me) * bytes, bytes);
    } else {
      const int right = mod(me + 1, n), left = mod(me - 1, n);
      const size_t seg = std::max<size_t>(1, t_.segment_bytes);
      const size_t nseg = (bytes + seg - 1) / seg;
      for (size_t j = 0; j < nseg; j++)
        p2p_.coll_send(c, right, ring_tag(0, 0, j), out + static_cast<size_t>(me) * bytes + j * seg,
                       std::min(seg, bytes - j * seg));
      std::vector<HostP2P::Id> ids;
      for (int s = 0; s < n - 1; s++) {
        const size_t blk = static_cast<size_t>(mod(me - s - 1, n)) * bytes;
        ids.clear();
        for (size_t j = 0; j < nseg; j++)
          ids.push_back(p2p_.coll_recv(c, left, ring_tag(0, static_cast<uint64_t>(s), j), out + blk + j * seg,
                                       std::min(seg, bytes - j * seg)));
        for (size_t j = 0; j < nseg; j++) {
          p2p_.coll_wait(ids[j]);
          if (s < n - 2)
            p2p_.coll_send(c, right, ring_tag(0, static_cast<uint64_t>(s + 1), j), out + blk + j * seg,
                           std::min(seg, bytes - j * seg));
        }
      }
    }
    p2p_.coll_wait_all();
  } catch (...) {
    p2p_.coll_end();
    throw;
  }
  p2p_.coll_end();
}

void HostCollectives::broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root) {
  const size_t bytes = count * dtype_size(dtype);
  const int n = c.size();
  if (n == 1) return;
  p2p_.coll_begin(c, "broadcast", CollCall{CollKind::Broadcast, dtype, 0, root, count});
  try {
    // Tags carry the root (ranks that disagree on it never exchange data),
    // and the tree's last rank acknowledges to the root, so a root that only
    // sends still learns that its call met the same call everywhere.
    const uint64_t data = broadcast_step(root, 0), ack = broadcast_step(root, 1);
    const int vr = mod(c.me - root, n);
    int mask = 1;
    while (mask < n) {
      if (vr & mask) {
        p2p_.coll_wait(p2p_.coll_recv(c, mod(vr - mask + root, n), data, buf, bytes));
        break;
      }
      mask <<= 1;
    }
    mask >>= 1;
    for (; mask > 0; mask >>= 1)
      if (vr + mask < n) p2p_.coll_send(c, mod(vr + mask + root, n), data, buf, bytes);
    if (vr == n - 1) p2p_.coll_send(c, root, ack, nullptr, 0);
    if (vr == 0) p2p_.coll_wait(p2p_.coll_recv(c, mod(n - 1 + root, n), ack, nullptr, 0));
    p2p_.coll_wait_all();
  } catch (...) {
    p2p_.coll_end();
    throw;
  }
  p2p_.coll_end();
}

void HostCollectives::barrier(const Comm& c) {
  const int n = c.size();
  if (n == 1) return;
  p2p_.coll_begin(c, "barrier", CollCall{});
  try {
    char out = 1, in[1];
    uint64_t step = 0;
    for (int k = 1; k < n; k <<= 1, step++) {
      p2p_.coll_send(c, mod(c.me + k, n), step, &out, 1);
      p2p_.coll_wait(p2p_.coll_recv(c, mod(c.me - k, n), step, in, 1));
      p2p_.coll_wait_all();
    }
  } catch (...) {
    p2p_.coll_end();
    throw;
  }
  p2p_.coll_end();
}

}  // namespace tppp
