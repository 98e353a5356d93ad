// Collective algorithms over host-memory p2p, for transports without native
// collectives (UCX). Algorithm choice by message size, as MPI libraries do:
//   all_reduce: recursive doubling (with the non-power-of-two fold) for small
//               messages; ring reduce-scatter + ring all-gather, segmented so
//               reduction overlaps transfer, for large ones. Across hosts
//               with several members each: hierarchical (inside each host,
//               then one exchange per host pair, then inside again).
//   all_gather: direct exchange for small messages, ring for large.
//   broadcast : binomial tree.     barrier: dissemination.
// f16/bf16 are reduced in f32 and rounded once per step (as NCCL does); every
// rank ends with the same bits because each element's final value is computed
// once (ring) or by a commutative two-operand op on both sides (doubling).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "transport/coll_check.hpp"
#include "transport/transport.hpp"

namespace tppp {

// What a transport lends the algorithms: tagged async send/recv on a comm,
// with a per-collective sequence number so concurrent collectives on
// different comms never match each other's messages.
class HostP2P {
 public:
  using Id = size_t;
  virtual ~HostP2P() = default;
  virtual Id coll_send(const Comm& c, int peer, uint64_t step, const void* buf, size_t n) = 0;
  virtual Id coll_recv(const Comm& c, int peer, uint64_t step, void* buf, size_t n) = 0;
  virtual void coll_wait(Id id) = 0;   // throws, naming the peer and op
  virtual void coll_wait_all() = 0;    // waits for every op posted since begin
  // A new call: the next sequence number on c, and what the call is (every
  // message of it carries both; see coll_check.hpp).
  virtual void coll_begin(const Comm& c, const char* op, const CollCall& call) = 0;
  virtual void coll_end() = 0;         // releases what coll_begin set up
  // Which host a global rank runs on (equal ids: the same host). Collectives
  // across hosts go hierarchically when each host holds several members.
  virtual uint64_t host_of(int global_rank) const = 0;
};

struct CollTuning {
  size_t allreduce_small_bytes = 64 << 10;   // <= : recursive doubling
  size_t allgather_small_bytes = 64 << 10;   // total bytes <= : direct exchange
  size_t segment_bytes = 256 << 10;          // ring pipeline segment
  // The hierarchical all_reduce's rings (inside a host, across hosts): each
  // of its phases is one step or few, so a segment buys little overlap,
  // and fewer messages stall less on busy cores (4 ranks on 2 simulated
  // hosts: 1.07-1.35x faster from 256 KiB to 16 MiB, a third of the spread).
  size_t hier_segment_bytes = 1 << 20;
};

class HostCollectives {
 public:
  explicit HostCollectives(HostP2P& p2p, CollTuning t = CollTuning()) : p2p_(p2p), t_(t) {}
  void all_reduce(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype, int32_t op);
  void all_gather(const Comm& c, const void* send, void* recv, size_t count, int32_t dtype);
  void broadcast(const Comm& c, void* buf, size_t count, int32_t dtype, int root);
  void barrier(const Comm& c);

  // For a transport that runs a hierarchical all_reduce's local phases
  // itself (shared memory): true when all_reduce on c goes hierarchically
  // (c spans several hosts, each holding the same number > 1 of its
  // members), with *local its members on this host and *cross those with
  // this rank's place on the other hosts. The comms stay valid as long as
  // this object.
  bool hierarchical(const Comm& c, const Comm** local, const Comm** cross);
  // The cross-host step of such an all_reduce, inside a call the transport
  // began: buf all-reduced in place among cross.
  void all_reduce_across(const Comm& cross, char* buf, size_t count, int32_t dtype, int32_t op);
  const CollTuning& tuning() const { return t_; }

 private:
  // base: the first step number the phase's tags use (a hierarchical call
  // runs several phases between the same peers; see host_collectives.cpp).
  void allreduce_doubling(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op, uint64_t base = 0);
  void allreduce_ring(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op);
  // The ring's halves: after ring_reduce_scatter rank me holds chunk
  // (me + 1) % n reduced over all; ring_all_gather spreads every chunk.
  // seg_bytes: the pipeline segment.
  void ring_reduce_scatter(const Comm& c, char* buf, size_t count, int32_t dtype, int32_t op, uint64_t base,
                           bool forward_last, size_t seg_bytes);
  void ring_all_gather(const Comm& c, char* buf, size_t count, int32_t dtype, uint64_t base, bool send_first,
                       size_t seg_bytes);
  // Members by host: true (and local/cross filled) when c spans several
  // hosts, each holding the same number (> 1) of its members.
  bool split_by_host(const Comm& c, Comm* local, Comm* cross) const;
  // split_by_host's answer per communicator id, kept: all_reduce asks it on
  // every call.
  struct HostSplit {
    bool known = false, hierarchical = false;
    std::vector<int> ranks;
    int me = 0;
    Comm local, cross;
  };
  const HostSplit& host_split(const Comm& c);
  void allreduce_hierarchical(const Comm& local, const Comm& cross, char* buf, size_t count, int32_t dtype,
                              int32_t op);
  char* scratch(size_t n);

  HostP2P& p2p_;
  CollTuning t_;
  std::vector<char> scratch_;  // grows to the largest chunk seen, then stays
  HostSplit splits_[kCommIds];
};

// A broadcast message's step: the root in bits [23:8], the phase (0 data,
// 1 the acknowledgement to the root) below.
constexpr uint64_t broadcast_step(int root, int phase) {
  return (static_cast<uint64_t>(root & 0xffff) << 8) | static_cast<uint64_t>(phase);
}

// NOT_SUPPORTED naming the dtype unless all_reduce can reduce it (F32, F16,
// BF16, I32, I64): checked before any byte moves.
void check_reducible(int32_t dtype);
// dst[i] = dst[i] op src[i] (f16/bf16 through f32). Exposed for tests.
void reduce_into(void* dst, const void* src, size_t count, int32_t dtype, int32_t op);
// dst[i] = a[i] op b[i]; dst may be a or b.
void reduce_to(void* dst, const void* a, const void* b, size_t count, int32_t dtype, int32_t op);

}  // namespace tppp
