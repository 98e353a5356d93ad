// all_reduce through shared memory, for communicators whose ranks all run on
// one host: the fast path under the UCX transport's host collectives. Over
// UCX messages every byte is copied twice on a host (into a FIFO, out of it)
// and each message pays the tag matching; here each rank publishes its data
// in its own segment, which its peers have mapped, and reduces straight from
// theirs (NCCL's SHM transport and Open MPI's coll/sm do the same).
//
// Each rank owns one POSIX shared-memory segment, unlinked as soon as every
// local peer has mapped it (nothing is left in /dev/shm by a crash after
// group creation). Per communicator id it holds two slots and a few flags,
// each flag in its own cache line. Flags carry "ticks",
// (call number << 24) | (chunk + 1), so a flag left by an earlier (failed)
// call is never mistaken for the current one.
//
//   small (<= one_phase_bytes): every rank copies its vector into its slot
//     next to the call's fingerprint (the same cache line for <= 32 bytes)
//     and raises `ready`; each rank then reduces all slots in rank order
//     (the same bits everywhere). One flag exchange per call.
//   large: chunks of slot_bytes, alternating slots; rank p owns slice p of a
//     chunk: peers copy their other slices into their slots (ready), p
//     reduces slice p from them into its output and its slot (reduced), and
//     every rank copies the reduced slices it does not own (done).
//   across hosts (a Cross hook): c is this host's part of a communicator
//     that spans hosts. Rank p owns block (p + 1) % n of the vector (the
//     block HostCollectives' local ring leaves it, so hosts that run the
//     rings instead still pair the same blocks): a reduce-scatter
//     in slot-sized steps leaves block p reduced over the host in p's
//     output, the hook all-reduces it with the ranks owning the same block
//     on the other hosts, and an all-gather in steps spreads the blocks.
//     Every byte crosses between hosts once each way, in large messages,
//     and the local phases cost what a local all_reduce does (the
//     hierarchical all_reduce of host_collectives.hpp, its local rings
//     replaced by this protocol).
//
// A slot is rewritten only once every peer is known to be done with it
// (their `ready` of a later chunk seen, or their `done`/`cur` read). Waits
// spin, then yield (every 16 spins in a call across hosts, whose cross
// step needs the cores for the kernel's network work); every few hundred
// spins the transport's slow path runs (abort, deadline, dead peer, a
// peer's notice, a peer that announced another call: see announce()).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/coll_check.hpp"
#include "transport/transport.hpp"

namespace tppp {

class Bootstrap;

struct ShmTuning {
  size_t one_phase_bytes = 16 << 10;  // <= : every rank reduces the whole vector
  size_t slot_bytes = 256 << 10;      // chunk of the large path (a multiple of 64)
};

class ShmCollectives {
 public:
  // What the transport does while a wait spins: throws for abort, timeout,
  // a dead peer, a notice about this call, or an announced mismatch. peer:
  // the index in c of the rank waited for.
  class Waiter {
   public:
    virtual void shm_slow_path(const Comm& c, int peer) = 0;

   protected:
    ~Waiter() = default;
  };

  // Collective over the bootstrap (every rank calls it): creates this rank's
  // segment and maps those of the ranks in `local` (same host). Enabled only
  // where every rank asked for it (`want`) and every local rank mapped every
  // local segment; otherwise usable() is false everywhere.
  ShmCollectives(Bootstrap& bs, int rank, const std::vector<uint8_t>& local, bool want,
                 ShmTuning t = ShmTuning());
  ~ShmCollectives();
  ShmCollectives(const ShmCollectives&) = delete;
  ShmCollectives& operator=(const ShmCollectives&) = delete;

  // Every rank of c is on this host and mapped.
  bool usable(const Comm& c) const;
  // More ranks on this host than CPUs it may run on: waits yield at once.
  bool oversubscribed() const { return oversubscribed_; }

  // Every collective call on c that runs over UCX messages announces itself
  // (64-bit call number `call`, and its header) in this rank's segment (an
  // all_reduce here has its header in its slot); check_announced (a slow
  // path) throws INVALID_USAGE, naming both calls, when a peer's call of
  // that number has another fingerprint.
  void announce(const Comm& c, uint64_t call, const CollHeader& h);
  void check_announced(const Comm& c, uint64_t call, const CollHeader& mine, int my_rank);

  // The step between the local phases of a call across hosts: all-reduces
  // `count` elements at `data` in place with the other hosts (the same
  // count on the ranks owning the same block; 0 is never passed).
  class Cross {
   public:
    virtual void across(char* data, size_t count) = 0;

   protected:
    ~Cross() = default;
  };

  // The call `call` on c (numbered as announce's), described by h (its
  // fingerprint, compared with each peer's on the first chunk). send may
  // equal recv. cross: c is this host's part of a communicator spanning
  // hosts (see the top of this file). Throws what the waiter or cross
  // throws, NOT_SUPPORTED for a dtype that cannot be reduced,
  // INVALID_USAGE for a peer in another call.
  void all_reduce(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv, size_t count,
                  int32_t dtype, int32_t op, Waiter& w, Cross* cross = nullptr);

 private:
  struct Seg;
  char* base(int rank) const { return maps_[static_cast<size_t>(rank)]; }
  Seg* seg(int rank) const;
  char* slot_at(int rank, CommId id, int s) const;  // a slot's head; its data 32 bytes on
  void wait_slot_free(const Comm& c, int slot, Waiter& w);
  uint64_t wait_ready(const Comm& c, int peer, int slot, uint64_t tick, Waiter& w);
  const char* wait_reduced(const Comm& c, int peer, int slot, uint64_t tick, Waiter& w);
  void small(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv, size_t count,
             int32_t dtype, int32_t op, Waiter& w);
  void large(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv, size_t count,
             int32_t dtype, int32_t op, Waiter& w);
  void across_hosts(const Comm& c, uint64_t call, const CollHeader& h, const void* send, void* recv, size_t count,
                    int32_t dtype, int32_t op, Waiter& w, Cross& cross);

  ShmTuning t_;
  int rank_ = 0;
  bool enabled_ = false;
  bool oversubscribed_ = false;  // more local ranks than CPUs: yield at once
  bool yield_often_ = false;     // this call's waits yield early (oversubscribed, or across hosts)
  size_t seg_bytes_ = 0;
  std::vector<char*> maps_;      // by global rank: the mapped segment, or null
  struct PerComm {
    uint64_t last_tick[2] = {0, 0};  // this rank's latest write to each slot
    uint64_t seen = 0;               // a tick every peer's `ready` reached (all earlier work of theirs is done)
  };
  PerComm per_[kCommIds];
};

}  // namespace tppp
