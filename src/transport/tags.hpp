// How p2p tags are divided. A p2p message is matched by (communicator,
// source, tag); the tag is 32 bits:
//
//   [31] = 0   the host's space: tppp_isend / tppp_irecv tags, 0 .. 2^31-1
//              (c_api.h), all 31 bits the host's own
//   [31] = 1   the library's space, never matched by a host tag:
//     [30:29]  owner: 0 pipeline scheduler, 1 layers, 2 model runtime, 3 free
//     [28:0]   the owner's own numbering
//
// Collectives use none of this: UCX marks their messages with a separate
// collective bit and a per-communicator sequence number
// (transport/ucx/ucx_transport.cpp), NCCL has no tags.
#pragma once
#include <cstdint>

namespace tppp {
namespace tags {

constexpr uint32_t kHostMax = 0x7fffffffu;  // largest host tag
constexpr uint32_t kLibrary = 1u << 31;
constexpr uint32_t kOwnerShift = 29;
constexpr uint32_t kOwnBits = (1u << kOwnerShift) - 1;  // 29 bits per owner

enum class Owner : uint32_t { Pipeline = 0, Layers = 1, Model = 2 };

constexpr uint32_t library(Owner o, uint32_t n) {
  return kLibrary | (static_cast<uint32_t>(o) << kOwnerShift) | (n & kOwnBits);
}

// Pipeline: one tag per (step, micro-batch, message kind) of a run; numbers
// wrap after 2^29 / 4 (step, mb) pairs, far beyond the receives in flight.
enum class PipeMsg : uint32_t { Head = 0, Data = 1, RingHead = 2, RingData = 3 };
constexpr uint32_t pipeline(int64_t step, int64_t mb, int64_t mbs, PipeMsg k) {
  return library(Owner::Pipeline, static_cast<uint32_t>((step * mbs + mb) * 4 + static_cast<int64_t>(k)));
}
// The pipeline's trace collection (after a run, on the world communicator).
constexpr uint32_t kPipelineTrace = library(Owner::Pipeline, kOwnBits);

// Layers: the LM head's logits gathered to TP rank 0, numbered by the
// layer's call count (failed calls included), so a call one rank failed
// never pairs with the next.
constexpr uint32_t lm_head_gather(uint32_t call) { return library(Owner::Layers, call & kOwnBits); }

// Model runtime, numbered by the model's call count (a forward call, or one
// micro-batch of a generation, or a command from the driver in follow mode,
// each takes a number): the stage hand-over (hidden, residual, and in a
// generation the item's header and batch), the results sent to the driver,
// the sampled ids a generation's last stage hands back to stage 0 (the
// ring), and the driver's commands. Numbers wrap after 2^25 calls.
enum class ModelMsg : uint32_t {
  Hidden = 0, Residual = 1, Logits = 2, Ids = 3,  // per call
  Head = 4, Meta = 5, Ring = 6,                   // a generation's micro-batches
  Cmd = 7, CmdData = 8,                           // follow mode
  Sampling = 9, Results = 10,                     // an item's sampling parameters; a step's results
};
constexpr uint32_t model(uint32_t call, ModelMsg k) {
  return library(Owner::Model, ((call * 16u) + static_cast<uint32_t>(k)) & kOwnBits);
}

}  // namespace tags
}  // namespace tppp
