// The collective call check (see coll_check.hpp).
#include "transport/coll_check.hpp"

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace tppp {
namespace {

const char* kind_name(uint8_t k) {
  switch (static_cast<CollKind>(k)) {
    case CollKind::AllReduce: return "all_reduce";
    case CollKind::AllGather: return "all_gather";
    case CollKind::Broadcast: return "broadcast";
    case CollKind::Barrier: return "barrier";
  }
  return "collective";
}

const char* op_name(uint8_t op) {
  switch (op) {
    case TPPP_OP_SUM: return "sum";
    case TPPP_OP_MAX: return "max";
    case TPPP_OP_MIN: return "min";
  }
  return "?";
}

bool same_call(const CollHeader& a, const CollHeader& b) {
  return a.kind == b.kind && a.dtype == b.dtype && a.op == b.op && a.root == b.root && a.count == b.count;
}

}  // namespace

std::string describe(const CollHeader& h) {
  const CollKind k = static_cast<CollKind>(h.kind);
  if (k == CollKind::Barrier) return "barrier";
  std::string s = strf("%s of %llu %s", kind_name(h.kind), static_cast<unsigned long long>(h.count),
                       dtype_name(h.dtype));
  if (k == CollKind::AllReduce) s += strf(" (%s)", op_name(h.op));
  if (k == CollKind::Broadcast) s += strf(" from root %d", h.root);
  return s;
}

void check_header(const CollHeader& mine, const CollHeader& theirs, int my_rank, int peer, const char* comm) {
  if (header_matches(mine, theirs)) return;
  // A failed peer's notice names its call too (kind 0: it made none): a
  // different call there is the reason, and both sides say so.
  if (theirs.status != TPPP_OK && theirs.kind != 0 && theirs.seq == mine.seq && !same_call(mine, theirs))
    fail(TPPP_ERR_INVALID_USAGE,
         "rank %d: collective call #%u on '%s' differs across ranks: this rank called %s, rank %d called %s", my_rank,
         mine.seq, comm, describe(mine).c_str(), peer, describe(theirs).c_str());
  if (theirs.status != TPPP_OK)
    fail(TPPP_ERR_REMOTE, "rank %d: %s on '%s' (call #%u): rank %d failed this call with %s", my_rank,
         describe(mine).c_str(), comm, mine.seq, peer, tppp_status_string(theirs.status));
  if (theirs.seq != mine.seq)
    fail(TPPP_ERR_INVALID_USAGE,
         "rank %d: collective calls on '%s' are out of step: this rank's call #%u (%s) met rank %d's call #%u (%s)",
         my_rank, comm, mine.seq, describe(mine).c_str(), peer, theirs.seq, describe(theirs).c_str());
  if (!same_call(mine, theirs))
    fail(TPPP_ERR_INVALID_USAGE,
         "rank %d: collective call #%u on '%s' differs across ranks: this rank called %s, rank %d called %s", my_rank,
         mine.seq, comm, describe(mine).c_str(), peer, describe(theirs).c_str());
}

}  // namespace tppp
