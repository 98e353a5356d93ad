// all_reduce through shared memory between the processes of one host; see
// shm_collectives.hpp for the protocol and why.
#include "transport/shm_collectives.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "core/bootstrap.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "transport/host_collectives.hpp"

namespace tppp {
namespace {

constexpr uint64_t kMagic = 0x317070707470ull;  // "tpppt1"
constexpr size_t kLine = 64;

inline uint64_t load_acq(const uint64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void store_rel(uint64_t* p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// (call << 24) | (chunk + 1): later work has larger ticks on every rank.
constexpr int kChunkBits = 24;
inline uint64_t tick(uint64_t call, size_t chunk) { return (call << kChunkBits) | (chunk + 1); }

struct alignas(kLine) Line {
  uint64_t v;
};

// The head of a slot: its flag and, for a call's first chunk, the call's
// fingerprint; small vectors follow in the same cache line.
struct SlotHead {
  uint64_t ready;  // tick: the slot holds this rank's data of that chunk
  CollHeader hdr;
};
static_assert(sizeof(SlotHead) == 32, "slot data starts 32 bytes into its cache line");

struct alignas(kLine) Announce {
  uint64_t call;  // 0 while being written
  uint64_t w[3];  // the CollHeader
};
static_assert(sizeof(CollHeader) == 3 * sizeof(uint64_t), "an announced header is three words");

struct CommCtl {
  Line reduced[2];  // tick: this rank's slice of that chunk is reduced, in the slot
  Line done;        // tick: this rank has read all it needs of that chunk
  Line cur;         // call << 24: this rank's current call (any collective)
  Announce ann;
};

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

int cpus_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Element ranges of n balanced slices of cc elements.
inline size_t slice_off(size_t cc, size_t n, size_t p) { return p * (cc / n) + std::min(p, cc % n); }
inline size_t slice_len(size_t cc, size_t n, size_t p) { return cc / n + (p < cc % n ? 1 : 0); }

}  // namespace

struct ShmCollectives::Seg {
  uint64_t magic;
  uint64_t slot_bytes;
  alignas(kLine) CommCtl ctl[kCommIds];
};

namespace {
size_t slot_stride(size_t slot_bytes) { return round_up(sizeof(SlotHead) + slot_bytes, kLine); }
}  // namespace

ShmCollectives::Seg* ShmCollectives::seg(int rank) const { return reinterpret_cast<Seg*>(base(rank)); }

// A segment: [Seg][comm 0 slot 0][comm 0 slot 1][comm 1 slot 0]..., each
// slot a SlotHead and then its data.
char* ShmCollectives::slot_at(int rank, CommId id, int s) const {
  return base(rank) + round_up(sizeof(Seg), kLine) +
         (static_cast<size_t>(id) * 2 + static_cast<size_t>(s)) * slot_stride(t_.slot_bytes);
}
namespace {
inline SlotHead* head_of(char* slot) { return reinterpret_cast<SlotHead*>(slot); }
inline char* data_of(char* slot) { return slot + sizeof(SlotHead); }
}  // namespace

ShmCollectives::ShmCollectives(Bootstrap& bs, int rank, const std::vector<uint8_t>& local, bool want, ShmTuning t)
    : t_(t), rank_(rank) {
  t_.slot_bytes = std::max<size_t>(kLine, round_up(t_.slot_bytes, kLine));
  const int world = static_cast<int>(local.size());
  maps_.assign(local.size(), nullptr);
  seg_bytes_ = round_up(sizeof(Seg), kLine) + kCommIds * 2 * slot_stride(t_.slot_bytes);
  int n_local = 0;
  for (uint8_t l : local) n_local += l ? 1 : 0;
  oversubscribed_ = n_local > cpus_available();

  // 1. This rank's segment (when any peer shares the host), its name to all.
  std::string name;
  bool ok = want && n_local > 1;
  if (ok) {
    std::random_device rd;
    name = strf("/tppp-%d-%08x%08x", static_cast<int>(::getpid()), rd(), rd());
    int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    ok = fd >= 0;
    // posix_fallocate reserves the pages: a full /dev/shm fails here, not
    // later with SIGBUS on a write.
    if (ok && ::posix_fallocate(fd, 0, static_cast<off_t>(seg_bytes_)) != 0) ok = false;
    if (ok) {
      void* p = ::mmap(nullptr, seg_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      ok = p != MAP_FAILED;
      if (ok) {
        maps_[static_cast<size_t>(rank)] = static_cast<char*>(p);
        Seg* s = seg(rank);
        s->magic = kMagic;
        s->slot_bytes = t_.slot_bytes;
      }
    }
    if (fd >= 0) ::close(fd);
    if (!ok) TPPP_LOG(TPPP_LOG_INFO, "rank %d: shared-memory collectives off: segment %s: %s", rank, name.c_str(),
                      std::strerror(errno));
  }
  std::vector<std::string> names = bs.all_gather(ok ? "1" + name : std::string("0"));

  // 2. Map the local peers' segments; on only if every local rank managed.
  bool all = true;
  for (int r = 0; r < world; r++)
    if (local[static_cast<size_t>(r)] && (names[static_cast<size_t>(r)].empty() || names[static_cast<size_t>(r)][0] != '1'))
      all = false;
  if (ok && all) {
    for (int r = 0; r < world && all; r++) {
      if (r == rank || !local[static_cast<size_t>(r)]) continue;
      const std::string peer = names[static_cast<size_t>(r)].substr(1);
      int fd = ::shm_open(peer.c_str(), O_RDWR, 0600);
      void* p = fd >= 0 ? ::mmap(nullptr, seg_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
      if (fd >= 0) ::close(fd);
      if (p == MAP_FAILED) {
        TPPP_LOG(TPPP_LOG_INFO, "rank %d: shared-memory collectives off: mapping rank %d's %s: %s", rank, r,
                 peer.c_str(), std::strerror(errno));
        all = false;
        break;
      }
      maps_[static_cast<size_t>(r)] = static_cast<char*>(p);
      if (seg(r)->magic != kMagic || seg(r)->slot_bytes != t_.slot_bytes) all = false;
    }
  }
  std::vector<std::string> mapped = bs.all_gather(ok && all ? "1" : "0");
  if (ok) ::shm_unlink(name.c_str());  // every peer has it mapped, or never will
  enabled_ = true;
  for (int r = 0; r < world; r++)
    if (local[static_cast<size_t>(r)] && mapped[static_cast<size_t>(r)] != "1") enabled_ = false;
  enabled_ = enabled_ && ok && all;
  if (!enabled_) {
    for (char*& m : maps_) {
      if (m) ::munmap(m, seg_bytes_);
      m = nullptr;
    }
  }
}

ShmCollectives::~ShmCollectives() {
  for (char* m : maps_)
    if (m) ::munmap(m, seg_bytes_);
}

bool ShmCollectives::usable(const Comm& c) const {
  if (!enabled_ || c.size() < 2) return false;
  for (int r : c.ranks)
    if (!maps_[static_cast<size_t>(r)]) return false;
  return true;
}

void ShmCollectives::announce(const Comm& c, uint64_t call, const CollHeader& h) {
  CommCtl& me = seg(rank_)->ctl[static_cast<size_t>(c.id)];
  uint64_t w[3];
  std::memcpy(w, &h, sizeof w);
  __atomic_store_n(&me.ann.call, 0, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  for (int i = 0; i < 3; i++) __atomic_store_n(&me.ann.w[i], w[i], __ATOMIC_RELAXED);
  store_rel(&me.ann.call, call);
  store_rel(&me.cur.v, call << kChunkBits);
}

namespace {
// Reads a header guarded by `flag` (written before the flag is raised to
// `want`): false when the flag is elsewhere, or moved while reading.
bool read_guarded(const uint64_t* flag, uint64_t want, const CollHeader* src, CollHeader* out) {
  if (load_acq(flag) != want) return false;
  uint64_t w[3];
  const uint64_t* p = reinterpret_cast<const uint64_t*>(src);
  for (int i = 0; i < 3; i++) w[i] = __atomic_load_n(p + i, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (__atomic_load_n(flag, __ATOMIC_RELAXED) != want) return false;
  std::memcpy(out, w, sizeof *out);
  return true;
}
}  // namespace

void ShmCollectives::check_announced(const Comm& c, uint64_t call, const CollHeader& mine, int my_rank) {
  for (int q = 0; q < c.size(); q++) {
    if (q == c.me) continue;
    const int g = c.ranks[static_cast<size_t>(q)];
    const Announce& a = seg(g)->ctl[static_cast<size_t>(c.id)].ann;
    const SlotHead* h = head_of(slot_at(g, c.id, static_cast<int>(call & 1)));
    CollHeader theirs;
    // A call through UCX messages is announced; an all_reduce through
    // shared memory has its header in its first chunk's slot.
    if (!read_guarded(&a.call, call, reinterpret_cast<const CollHeader*>(a.w), &theirs) &&
        !read_guarded(&h->ready, tick(call, 0), &h->hdr, &theirs))
      continue;                      // not (or no longer) at this call
    if (theirs.kind == 0) continue;  // it failed or skipped the call: its notice says so
    if (!header_matches(mine, theirs)) check_header(mine, theirs, my_rank, g, c.name);
  }
}

// Spins until done() holds; the waiter's slow path every 256 spins. With
// more local ranks than CPUs, yields every 16 spins so the peer can run.
template <typename Done>
static void spin(const Comm& c, int peer, bool oversubscribed, ShmCollectives::Waiter& w, Done&& done) {
  for (unsigned i = 1;; i++) {
    if (done()) return;
    cpu_relax();
    if ((oversubscribed && (i & 15) == 0) || (i >= (1u << 14) && (i & 255) == 0)) sched_yield();
    if ((i & 255) == 0) {
      try {
        w.shm_slow_path(c, peer);
      } catch (...) {
        if (done()) return;  // it came meanwhile (a peer that finished this call, then died)
        throw;
      }
    }
  }
}

// A flag that passed the tick waited for: the peer is not in this call
// (it skipped it or failed it and went on). Its notice, or the deadline,
// says which: the slow path throws.
[[noreturn]] static void resolve(const Comm& c, int peer, ShmCollectives::Waiter& w) {
  for (;;) {
    sched_yield();
    w.shm_slow_path(c, peer);
  }
}

void ShmCollectives::wait_slot_free(const Comm& c, int slot, Waiter& w) {
  const PerComm& pc = per_[static_cast<size_t>(c.id)];
  const uint64_t last = pc.last_tick[slot];
  if (last == 0 || last < pc.seen) return;  // every peer has been seen past it
  for (int q = 0; q < c.size(); q++) {
    if (q == c.me) continue;
    const CommCtl& ctl = seg(c.ranks[static_cast<size_t>(q)])->ctl[static_cast<size_t>(c.id)];
    spin(c, q, yield_often_, w, [&] { return std::max(load_acq(&ctl.done.v), load_acq(&ctl.cur.v)) >= last; });
  }
}

// Waits for peer q's data of the chunk `tk` in `slot`; on the first chunk
// of a call, checks q's call is this one.
uint64_t ShmCollectives::wait_ready(const Comm& c, int q, int slot, uint64_t tk, Waiter& w) {
  const int g = c.ranks[static_cast<size_t>(q)];
  SlotHead* h = head_of(slot_at(g, c.id, slot));
  uint64_t v = 0;
  spin(c, q, yield_often_, w, [&] { return (v = load_acq(&h->ready)) >= tk; });
  if (v != tk) resolve(c, q, w);
  return v;
}

// Waits for peer q's reduced data of the chunk `tk` in `slot`; returns that
// slot's data.
const char* ShmCollectives::wait_reduced(const Comm& c, int q, int slot, uint64_t tk, Waiter& w) {
  const int g = c.ranks[static_cast<size_t>(q)];
  const CommCtl& ctl = seg(g)->ctl[static_cast<size_t>(c.id)];
  uint64_t v = 0;
  spin(c, q, yield_often_, w, [&] { return (v = load_acq(&ctl.reduced[slot].v)) >= tk; });
  if (v != tk) resolve(c, q, w);
  return data_of(slot_at(g, c.id, slot));
}

void ShmCollectives::all_reduce(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv,
                                size_t count, int32_t dtype, int32_t op, Waiter& w, Cross* cross) {
  store_rel(&seg(rank_)->ctl[static_cast<size_t>(c.id)].cur.v, call << kChunkBits);  // see wait_slot_free
  check_reducible(dtype);
  yield_often_ = oversubscribed_ || cross;
  const size_t bytes = count * dtype_size(dtype);
  if (cross)
    across_hosts(c, call, h, send, recv, count, dtype, op, w, *cross);
  else if (bytes <= t_.one_phase_bytes)
    small(c, call, h, send, recv, count, dtype, op, w);
  else
    large(c, call, h, send, recv, count, dtype, op, w);
}

void ShmCollectives::small(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv,
                           size_t count, int32_t dtype, int32_t op, Waiter& w) {
  PerComm& pc = per_[static_cast<size_t>(c.id)];
  const size_t bytes = count * dtype_size(dtype);
  const int slot = static_cast<int>(call & 1);
  const uint64_t tk = tick(call, 0);
  wait_slot_free(c, slot, w);
  SlotHead* mine = head_of(slot_at(rank_, c.id, slot));
  mine->hdr = h;
  if (bytes) std::memcpy(data_of(slot_at(rank_, c.id, slot)), send, bytes);
  pc.last_tick[slot] = tk;
  store_rel(&mine->ready, tk);
  for (int q = 0; q < c.size(); q++) {
    if (q == c.me) continue;
    wait_ready(c, q, slot, tk, w);
    const CollHeader theirs = head_of(slot_at(c.ranks[static_cast<size_t>(q)], c.id, slot))->hdr;
    if (!header_matches(h, theirs)) check_header(h, theirs, rank_, c.ranks[static_cast<size_t>(q)], c.name);
  }
  pc.seen = tk;
  // Every rank reduces the slots in rank order: the same bits everywhere.
  if (bytes) {
    std::memcpy(recv, data_of(slot_at(c.ranks[0], c.id, slot)), bytes);
    for (int q = 1; q < c.size(); q++)
      reduce_into(recv, data_of(slot_at(c.ranks[static_cast<size_t>(q)], c.id, slot)), count, dtype, op);
  }
  store_rel(&seg(rank_)->ctl[static_cast<size_t>(c.id)].done.v, tk);
}

void ShmCollectives::large(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv,
                           size_t count, int32_t dtype, int32_t op, Waiter& w) {
  PerComm& pc = per_[static_cast<size_t>(c.id)];
  CommCtl& me = seg(rank_)->ctl[static_cast<size_t>(c.id)];
  const size_t es = dtype_size(dtype), n = static_cast<size_t>(c.size()), my = static_cast<size_t>(c.me);
  const size_t per_chunk = t_.slot_bytes / es;
  const size_t chunks = (count + per_chunk - 1) / per_chunk;
  if (chunks >= (size_t(1) << kChunkBits) - 1)
    fail(TPPP_ERR_INVALID_ARGUMENT, "all_reduce: %zu elements is more than the shared-memory path takes", count);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  for (size_t j = 0; j < chunks; j++) {
    const size_t e0 = j * per_chunk, cc = std::min(per_chunk, count - e0);
    const int slot = static_cast<int>((call + j) & 1);
    const uint64_t tk = tick(call, j);
    wait_slot_free(c, slot, w);
    SlotHead* head = head_of(slot_at(rank_, c.id, slot));
    char* mine = data_of(slot_at(rank_, c.id, slot));
    if (j == 0) head->hdr = h;
    for (size_t q = 0; q < n; q++) {  // the slices the peers reduce
      if (q == my) continue;
      const size_t o = slice_off(cc, n, q);
      std::memcpy(mine + o * es, in + (e0 + o) * es, slice_len(cc, n, q) * es);
    }
    pc.last_tick[slot] = tk;
    store_rel(&head->ready, tk);
    // My slice, from every peer's slot, into my output and my slot.
    const size_t mo = slice_off(cc, n, my), ml = slice_len(cc, n, my);
    bool first = true;
    for (size_t q = 0; q < n; q++) {
      if (q == my) continue;
      const int g = c.ranks[q];
      wait_ready(c, static_cast<int>(q), slot, tk, w);
      if (j == 0) {
        const CollHeader theirs = head_of(slot_at(g, c.id, slot))->hdr;
        if (!header_matches(h, theirs)) check_header(h, theirs, rank_, g, c.name);
      }
      const char* src = data_of(slot_at(g, c.id, slot)) + mo * es;
      if (first)
        reduce_to(out + (e0 + mo) * es, in + (e0 + mo) * es, src, ml, dtype, op);
      else
        reduce_into(out + (e0 + mo) * es, src, ml, dtype, op);
      first = false;
    }
    pc.seen = tk;
    std::memcpy(mine + mo * es, out + (e0 + mo) * es, ml * es);
    store_rel(&me.reduced[slot].v, tk);
    // The slices the peers reduced.
    for (size_t q = 0; q < n; q++) {
      if (q == my) continue;
      const char* theirs = wait_reduced(c, static_cast<int>(q), slot, tk, w);
      const size_t o = slice_off(cc, n, q);
      std::memcpy(out + (e0 + o) * es, theirs + o * es, slice_len(cc, n, q) * es);
    }
    store_rel(&me.done.v, tk);
  }
}

// Rank p of this host owns block (p + 1) % n of the vector (n balanced
// blocks, as HostCollectives' local ring leaves them, so that a host whose
// ranks run the rings instead exchanges the same blocks with this one), so
// that its cross-host step is one call on contiguous memory with large
// messages. Step k of the reduce-scatter: each slot holds piece k of every
// block (piece = a slot's elements / n) and p reduces piece k of its block
// from every peer's slot; step k of the all-gather (chunk numbers go on
// from the reduce-scatter's): p's slot holds piece k of its reduced block
// and the peers copy it out. A slot is rewritten as in large(): every peer
// is past its last use (`done` is raised after each step's reads).
void ShmCollectives::across_hosts(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv,
                                  size_t count, int32_t dtype, int32_t op, Waiter& w, Cross& cross) {
  PerComm& pc = per_[static_cast<size_t>(c.id)];
  CommCtl& me = seg(rank_)->ctl[static_cast<size_t>(c.id)];
  const size_t es = dtype_size(dtype), n = static_cast<size_t>(c.size()), my = static_cast<size_t>(c.me);
  const size_t piece = std::max<size_t>(1, t_.slot_bytes / es / n);
  const size_t steps = (slice_len(count, n, 0) + piece - 1) / piece;  // block 0 is the longest
  if (2 * steps + 1 >= (size_t(1) << kChunkBits))
    fail(TPPP_ERR_INVALID_ARGUMENT, "all_reduce: %zu elements is more than the shared-memory path takes", count);
  // Piece k of rank q's block: its first element in the vector and its length.
  auto at = [&](size_t q, size_t k) { return slice_off(count, n, (q + 1) % n) + k * piece; };
  auto len = [&](size_t q, size_t k) {
    const size_t bl = slice_len(count, n, (q + 1) % n);
    return k * piece >= bl ? size_t(0) : std::min(piece, bl - k * piece);
  };
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  for (size_t k = 0; k < steps; k++) {
    const int slot = static_cast<int>((call + k) & 1);
    const uint64_t tk = tick(call, k);
    wait_slot_free(c, slot, w);
    SlotHead* head = head_of(slot_at(rank_, c.id, slot));
    char* mine = data_of(slot_at(rank_, c.id, slot));
    if (k == 0) head->hdr = h;
    for (size_t q = 0; q < n; q++)
      if (q != my) std::memcpy(mine + q * piece * es, in + at(q, k) * es, len(q, k) * es);
    pc.last_tick[slot] = tk;
    store_rel(&head->ready, tk);
    for (size_t q = 0, first = 1; q < n; q++) {
      if (q == my) continue;
      const int g = c.ranks[q];
      wait_ready(c, static_cast<int>(q), slot, tk, w);
      if (k == 0) {
        const CollHeader theirs = head_of(slot_at(g, c.id, slot))->hdr;
        if (!header_matches(h, theirs)) check_header(h, theirs, rank_, g, c.name);
      }
      const char* src = data_of(slot_at(g, c.id, slot)) + my * piece * es;
      if (first)
        reduce_to(out + at(my, k) * es, in + at(my, k) * es, src, len(my, k), dtype, op);
      else
        reduce_into(out + at(my, k) * es, src, len(my, k), dtype, op);
      first = 0;
    }
    pc.seen = tk;
    store_rel(&me.done.v, tk);
  }
  const size_t mine = slice_len(count, n, (my + 1) % n);
  if (mine) cross.across(out + at(my, 0) * es, mine);
  for (size_t k = 0; k < steps; k++) {
    const int slot = static_cast<int>((call + steps + k) & 1);
    const uint64_t tk = tick(call, steps + k);
    wait_slot_free(c, slot, w);
    std::memcpy(data_of(slot_at(rank_, c.id, slot)), out + at(my, k) * es, len(my, k) * es);
    pc.last_tick[slot] = tk;
    store_rel(&me.reduced[slot].v, tk);
    for (size_t q = 0; q < n; q++)
      if (q != my) std::memcpy(out + at(q, k) * es, wait_reduced(c, static_cast<int>(q), slot, tk, w), len(q, k) * es);
    store_rel(&me.done.v, tk);
  }
}

}  // namespace tppp
