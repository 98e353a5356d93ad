// Collective calls that do not pair up. Every collective message of the
// host collectives carries a 24-byte header before its data (in the same
// message): the call's sequence number on its communicator, a fingerprint
// of the call (collective, reduction op, dtype, count, root) and a status.
// A receiver checks it before trusting the data, so two ranks whose calls
// differ fail with INVALID_USAGE naming both sides instead of exchanging
// each other's bytes, and a rank that failed the call (a notice carries its
// status) fails its peers' call with REMOTE naming it (PyTorch's
// TORCH_DISTRIBUTED_DEBUG=DETAIL checks the same, at the price of an extra
// round trip per call). Pure: tested without a transport.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "c_api.h"

namespace tppp {

enum class CollKind : uint8_t { AllReduce = 1, AllGather = 2, Broadcast = 3, Barrier = 4 };

// What every rank of the communicator must agree on for one call.
struct CollCall {
  CollKind kind = CollKind::Barrier;
  int32_t dtype = 0;   // TPPP_DTYPE_* (barrier: 0)
  int32_t op = 0;      // TPPP_OP_* (all_reduce only)
  int32_t root = 0;    // broadcast only
  uint64_t count = 0;  // elements
};

struct CollHeader {
  uint32_t seq = 0;      // the call's number on its communicator (every rank counts every call)
  int32_t status = TPPP_OK;  // a notice: the sender failed this call with it
  uint8_t kind = 0, dtype = 0, op = 0, pad = 0;
  int32_t root = 0;
  uint64_t count = 0;
};
static_assert(sizeof(CollHeader) == 24, "CollHeader travels as 24 bytes");

// Inline, with header_matches: they run on every call's fast path.
inline CollHeader make_header(uint32_t seq, const CollCall& c, tppp_status status = TPPP_OK) {
  CollHeader h;
  h.seq = seq;
  h.status = status;
  h.kind = static_cast<uint8_t>(c.kind);
  h.dtype = static_cast<uint8_t>(c.dtype);
  h.op = c.kind == CollKind::AllReduce ? static_cast<uint8_t>(c.op) : 0;
  h.root = c.kind == CollKind::Broadcast ? c.root : 0;
  h.count = c.count;
  return h;
}
// "all_reduce of 4 F32 (sum)", "broadcast of 2 I64 from root 1", "barrier".
std::string describe(const CollHeader& h);
// Throws unless `theirs` (from rank `peer`) is this call as `mine` describes
// it: INVALID_USAGE naming both sides when it is another call (other
// sequence number or fingerprint, also in the notice of a peer that failed
// it), else REMOTE when the peer failed the call.
void check_header(const CollHeader& mine, const CollHeader& theirs, int my_rank, int peer, const char* comm);
// The fast path: true when `theirs` is exactly this call (every field, as
// three words: headers are made by make_header, pad 0, so equal calls are
// equal bytes; `mine` always has status OK).
inline bool header_matches(const CollHeader& mine, const CollHeader& theirs) {
  uint64_t a[3], b[3];
  std::memcpy(a, &mine, sizeof a);
  std::memcpy(b, &theirs, sizeof b);
  return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2])) == 0;
}

}  // namespace tppp
