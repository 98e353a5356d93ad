// Bootstrap protocol (all integers little-endian, x86/ARM hosts):
//   hello  (rank r -> 0): "TPPPHLO2" magic:u64 world:u32 rank:u32 tp:u32 pp:u32 auth:u64
//   reply  (0 -> rank r): "TPPPRPL1" status:i32 len:u32 message[len]
//   blob   (either way) : len:u64 bytes[len]      (len <= kMaxBlob)
// Rank 0 drops connections that do not start with a valid hello (junk bytes,
// port scanners) and keeps waiting; so it does, and logs it, with a hello
// whose auth does not prove the group secret (TPPP_GROUP_SECRET; auth is
// SipHash-2-4 keyed by the secret over magic, rank and world: the secret
// never travels, and a proof is good for one rank of one group only); a
// hello with another magic is answered with an error (a stale id); a hello that contradicts the group shape fails
// the whole group. At the deadline rank 0 tells every joined rank
// "k/n ranks joined" so all of them fail with the same TIMEOUT.
#include "core/bootstrap.hpp"

#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>

#include "core/env.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/netif.hpp"

namespace tppp {
namespace {

constexpr char kIdTag[8] = {'T', 'P', 'P', 'P', 'U', 'I', 'D', '1'};
constexpr char kHelloTag[8] = {'T', 'P', 'P', 'P', 'H', 'L', 'O', '2'};
constexpr char kReplyTag[8] = {'T', 'P', 'P', 'P', 'R', 'P', 'L', '1'};
constexpr uint64_t kMaxBlob = 64ull << 20;
constexpr uint32_t kMaxReplyMsg = 4096;
constexpr size_t kChecksumOffset = TPPP_UNIQUE_ID_BYTES - 8;

struct Hello {
  char tag[8];
  uint64_t magic;
  uint32_t world, rank, tp, pp;
  uint64_t auth;  // hello_auth(): 0 without a secret
};
static_assert(sizeof(Hello) == 40, "hello layout");

struct ReplyHead {
  char tag[8];
  int32_t status;
  uint32_t len;
};
static_assert(sizeof(ReplyHead) == 16, "reply layout");

// Layout of tppp_unique_id::internal.
struct IdLayout {
  char tag[8];
  uint32_t ip_be;
  uint16_t port;
  uint16_t reserved;
  uint64_t magic;
};

std::mutex g_mu;
std::map<uint64_t, int>& listeners() {
  static std::map<uint64_t, int> m;
  return m;
}

uint64_t random_u64() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return v ? v : 1;
}

void send_reply(int fd, tppp_status s, const std::string& msg, Clock::time_point deadline) {
  ReplyHead h{};
  std::memcpy(h.tag, kReplyTag, 8);
  h.status = s;
  h.len = static_cast<uint32_t>(msg.size() > kMaxReplyMsg ? kMaxReplyMsg : msg.size());
  try {
    send_all(fd, &h, sizeof h, deadline, "bootstrap reply");
    send_all(fd, msg.data(), h.len, deadline, "bootstrap reply");
  } catch (const Error& e) {
    TPPP_LOG(TPPP_LOG_DEBUG, "bootstrap: could not send a reply: %s", e.what());
  }
}

void send_blob(int fd, const std::string& b, Clock::time_point dl, const std::string& what) {
  uint64_t n = b.size();
  send_all(fd, &n, 8, dl, what);
  send_all(fd, b.data(), b.size(), dl, what);
}

std::string recv_blob(int fd, Clock::time_point dl, const std::string& what) {
  uint64_t n = 0;
  recv_all(fd, &n, 8, dl, what);
  if (n > kMaxBlob) fail(TPPP_ERR_FORMAT, "%s: blob of %llu bytes exceeds the %llu limit", what.c_str(),
                         static_cast<unsigned long long>(n), static_cast<unsigned long long>(kMaxBlob));
  std::string b(n, '\0');
  recv_all(fd, &b[0], n, dl, what);
  return b;
}

}  // namespace

uint64_t hello_auth(const std::string& secret, uint64_t magic, uint32_t rank, uint32_t world) {
  if (secret.empty()) return 0;
  const uint64_t k0 = siphash24(0x7470707073656372ull, 0x65742d6b65792d30ull, secret.data(), secret.size());
  const uint64_t k1 = siphash24(0x7470707073656372ull, 0x65742d6b65792d31ull, secret.data(), secret.size());
  unsigned char msg[8 + 8 + 4 + 4];
  std::memcpy(msg, "tppp-hlo", 8);
  std::memcpy(msg + 8, &magic, 8);
  std::memcpy(msg + 16, &rank, 4);
  std::memcpy(msg + 20, &world, 4);
  const uint64_t a = siphash24(k0, k1, msg, sizeof msg);
  return a ? a : 1;
}

Fd listen_root(uint32_t ip_be, uint16_t port, uint16_t* bound) {
  const NetIf at = interface_with(ipv4_interfaces(), ip_be);
  if (at.name.empty()) {
    TPPP_LOG(TPPP_LOG_WARN, "bootstrap: %s is not an address of this host (NAT?): listening on every address",
             addr_string(ip_be, port).c_str());
    return listen_tcp(port, bound, 0);
  }
  return listen_tcp(port, bound, ip_be);
}

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

void make_unique_id_at(uint32_t ip, uint16_t port, uint64_t magic, bool listen, tppp_unique_id* out) {
  Fd fd;
  uint16_t bound = port;
  if (listen) fd = listen_root(ip, port, &bound);
  IdLayout l{};
  std::memcpy(l.tag, kIdTag, 8);
  l.ip_be = ip;
  l.port = bound;
  l.magic = magic;
  tppp_unique_id id;
  std::memset(&id, 0, sizeof id);
  std::memcpy(id.internal, &l, sizeof l);
  uint64_t sum = fnv1a64(id.internal, kChecksumOffset);
  std::memcpy(id.internal + kChecksumOffset, &sum, 8);
  if (listen) {
    std::lock_guard<std::mutex> lk(g_mu);
    listeners()[l.magic] = fd.release();
  }
  *out = id;
}

void make_unique_id(tppp_unique_id* out) {
  const uint16_t port = static_cast<uint16_t>(env_int(Env::BootstrapPort, 0, 65535));  // 0: any free port
  const NetIf at = advertised_interface();
  make_unique_id_at(at.ip_be, port, random_u64(), true, out);
  TPPP_LOG(TPPP_LOG_INFO, "bootstrap: unique id listens on %s (%s)",
           addr_string(at.ip_be, parse_unique_id(*out).port).c_str(),
           at.name.empty() ? "not a local address" : at.name.c_str());
}

BootstrapAddr parse_unique_id(const tppp_unique_id& id) {
  IdLayout l;
  std::memcpy(&l, id.internal, sizeof l);
  uint64_t sum;
  std::memcpy(&sum, id.internal + kChecksumOffset, 8);
  if (std::memcmp(l.tag, kIdTag, 8) != 0 || sum != fnv1a64(id.internal, kChecksumOffset))
    fail(TPPP_ERR_INVALID_ARGUMENT,
         "unique id is malformed (bad tag or checksum): pass the bytes tppp_get_unique_id produced, unchanged");
  if (l.port == 0 || l.magic == 0) fail(TPPP_ERR_INVALID_ARGUMENT, "unique id is malformed (port or magic is 0)");
  return BootstrapAddr{l.ip_be, l.port, l.magic};
}

int take_listener(uint64_t magic) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = listeners().find(magic);
  if (it == listeners().end()) return -1;
  int fd = it->second;
  listeners().erase(it);
  return fd;
}

void forget_unique_id(const tppp_unique_id& id) {
  int fd = take_listener(parse_unique_id(id).magic);
  if (fd >= 0) ::close(fd);
}

std::unique_ptr<Bootstrap> Bootstrap::join(const BootstrapAddr& addr, Fd listener, const JoinConfig& cfg) {
  std::unique_ptr<Bootstrap> b(new Bootstrap());
  b->cfg_ = cfg;
  const auto deadline = deadline_after_ms(cfg.timeout_ms);
  const int n = cfg.world;
  if (cfg.rank != 0) {
    std::string what = strf("bootstrap (rank %d/%d, root rank 0 at %s)", cfg.rank, n,
                            addr_string(addr.ip_be, addr.port).c_str());
    try {
      b->root_ = connect_tcp(addr.ip_be, addr.port, deadline, what);
    } catch (const Error& e) {
      if (e.status() == TPPP_ERR_TIMEOUT)
        fail(TPPP_ERR_TIMEOUT, "%s; rank 0 never answered (not started, or a stale unique id): ranks joined unknown",
             e.what());
      throw;
    }
    Hello h{};
    std::memcpy(h.tag, kHelloTag, 8);
    h.magic = addr.magic;
    h.world = static_cast<uint32_t>(n);
    h.rank = static_cast<uint32_t>(cfg.rank);
    h.tp = static_cast<uint32_t>(cfg.tp);
    h.pp = static_cast<uint32_t>(cfg.pp);
    h.auth = hello_auth(cfg.secret, addr.magic, h.rank, h.world);
    send_all(b->root_.get(), &h, sizeof h, deadline, what);
    // Wait a little past our own deadline: rank 0 reports its timeout first.
    auto reply_deadline = deadline + std::chrono::milliseconds(500);
    ReplyHead r{};
    try {
      recv_all(b->root_.get(), &r, sizeof r, reply_deadline, what);
    } catch (const Error& e) {
      if (e.status() == TPPP_ERR_TIMEOUT)
        fail(TPPP_ERR_TIMEOUT, "%s: no answer from rank 0 within %d ms (ranks joined unknown)", what.c_str(),
             cfg.timeout_ms);
      fail(e.status(), "%s: rank 0 hung up before the group formed (%s): %s", what.c_str(),
           cfg.secret.empty() ? "does rank 0 have a TPPP_GROUP_SECRET this rank lacks?"
                              : "does rank 0 have another TPPP_GROUP_SECRET, or none?",
           e.what());
    }
    if (std::memcmp(r.tag, kReplyTag, 8) != 0 || r.len > kMaxReplyMsg)
      fail(TPPP_ERR_FORMAT, "%s: answer is not a tppp bootstrap reply (is another service on that port?)",
           what.c_str());
    std::string msg(r.len, '\0');
    recv_all(b->root_.get(), &msg[0], r.len, reply_deadline, what);
    if (r.status != TPPP_OK) {
      tppp_status s = (r.status >= TPPP_ERR_INVALID_ARGUMENT && r.status <= TPPP_ERR_INTERNAL) ? r.status
                                                                                               : TPPP_ERR_REMOTE;
      fail(s, "%s: rank 0 says: %s", what.c_str(), msg.c_str());
    }
    return b;
  }

  // Rank 0.
  b->peers_.resize(static_cast<size_t>(n));
  int joined = 1;
  auto fail_all = [&](tppp_status s, const std::string& msg) {
    auto dl = deadline_after_ms(1000);
    for (auto& p : b->peers_)
      if (p.valid()) send_reply(p.get(), s, msg, dl);
    throw Error(s, msg);
  };
  while (joined < n) {
    std::string peer;
    Fd c = accept_until(listener.get(), deadline, &peer);
    if (!c.valid()) {
      std::string missing;
      for (int r = 1; r < n; r++)
        if (!b->peers_[static_cast<size_t>(r)].valid())
          missing += (missing.empty() ? "rank " : ", rank ") + std::to_string(r);
      fail_all(TPPP_ERR_TIMEOUT, strf("bootstrap: %d/%d ranks joined within %d ms; missing: %s", joined, n,
                                      cfg.timeout_ms, missing.c_str()));
    }
    Hello h{};
    // A connection gets at most 1 s to say hello, so junk cannot stall us.
    auto hello_deadline = std::min(deadline, deadline_after_ms(1000));
    size_t got = 0;
    try {
      recv_all(c.get(), &h, sizeof h, hello_deadline, "bootstrap hello from " + peer, &got);
    } catch (const Error& e) {
      // Closed before a byte: a rank's connect attempt that it gave up on
      // (connect_tcp retries after 1 s; a SYN the kernel retransmitted then
      // still completes here). Benign; anything else is worth a warning.
      if (got == 0 && e.status() == TPPP_ERR_REMOTE)
        TPPP_LOG(TPPP_LOG_INFO, "bootstrap: a connection from %s closed before its hello (a retried connect)",
                 peer.c_str());
      else
        TPPP_LOG(TPPP_LOG_WARN, "bootstrap: dropped a connection from %s: %s", peer.c_str(), e.what());
      continue;
    }
    if (std::memcmp(h.tag, kHelloTag, 8) != 0) {
      TPPP_LOG(TPPP_LOG_WARN, "bootstrap: dropped a connection from %s: not a tppp hello (junk bytes)",
               peer.c_str());
      continue;
    }
    if (h.auth != hello_auth(cfg.secret, h.magic, h.rank, h.world)) {
      TPPP_LOG(TPPP_LOG_WARN, "bootstrap: dropped a hello from %s (claiming rank %u): %s", peer.c_str(), h.rank,
               cfg.secret.empty() ? "it proves a group secret, and rank 0 has none (TPPP_GROUP_SECRET differs)"
               : h.auth == 0      ? "it does not prove the group secret (TPPP_GROUP_SECRET unset there)"
                                  : "its proof of the group secret is wrong (another TPPP_GROUP_SECRET, or a guess)");
      continue;
    }
    if (h.magic != addr.magic) {
      std::string m = "hello carries another group's magic (a stale or foreign unique id / MASTER_PORT)";
      TPPP_LOG(TPPP_LOG_WARN, "bootstrap: rejected %s: %s", peer.c_str(), m.c_str());
      send_reply(c.get(), TPPP_ERR_INVALID_ARGUMENT, m, hello_deadline);
      continue;
    }
    if (h.world != static_cast<uint32_t>(n) || h.tp != static_cast<uint32_t>(cfg.tp) ||
        h.pp != static_cast<uint32_t>(cfg.pp) || h.rank == 0 || h.rank >= static_cast<uint32_t>(n)) {
      std::string m = strf("bootstrap: rank %u (%s) says world=%u tp=%u pp=%u but rank 0 has world=%d tp=%d pp=%d",
                           h.rank, peer.c_str(), h.world, h.tp, h.pp, n, cfg.tp, cfg.pp);
      b->peers_.push_back(std::move(c));  // so fail_all tells it too
      fail_all(TPPP_ERR_INVALID_ARGUMENT, m);
    }
    if (b->peers_[h.rank].valid()) {
      std::string m = strf("bootstrap: two processes claim rank %u (second from %s)", h.rank, peer.c_str());
      b->peers_.push_back(std::move(c));
      fail_all(TPPP_ERR_INVALID_ARGUMENT, m);
    }
    b->peers_[h.rank] = std::move(c);
    joined++;
  }
  listener.reset();
  for (int r = 1; r < n; r++) send_reply(b->peers_[static_cast<size_t>(r)].get(), TPPP_OK, "", deadline);
  return b;
}

std::vector<std::string> Bootstrap::all_gather(const std::string& mine) {
  const auto dl = deadline_after_ms(cfg_.timeout_ms);
  const int n = cfg_.world;
  std::vector<std::string> all(static_cast<size_t>(n));
  if (cfg_.rank == 0) {
    all[0] = mine;
    for (int r = 1; r < n; r++)
      all[static_cast<size_t>(r)] =
          recv_blob(peers_[static_cast<size_t>(r)].get(), dl, strf("bootstrap all_gather from rank %d", r));
    for (int r = 1; r < n; r++)
      for (const auto& b : all) send_blob(peers_[static_cast<size_t>(r)].get(), b, dl,
                                          strf("bootstrap all_gather to rank %d", r));
  } else {
    std::string what = strf("bootstrap all_gather (rank %d) with rank 0", cfg_.rank);
    send_blob(root_.get(), mine, dl, what);
    for (int r = 0; r < n; r++) all[static_cast<size_t>(r)] = recv_blob(root_.get(), dl, what);
  }
  return all;
}

std::string Bootstrap::broadcast(const std::string& root_blob) {
  const auto dl = deadline_after_ms(cfg_.timeout_ms);
  if (cfg_.rank == 0) {
    for (int r = 1; r < cfg_.world; r++)
      send_blob(peers_[static_cast<size_t>(r)].get(), root_blob, dl, strf("bootstrap broadcast to rank %d", r));
    return root_blob;
  }
  return recv_blob(root_.get(), dl, strf("bootstrap broadcast (rank %d) from rank 0", cfg_.rank));
}

}  // namespace tppp
