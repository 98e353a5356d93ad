// Small TCP helpers for the bootstrap: every call that can block takes a
// deadline and throws tppp::Error (TIMEOUT/REMOTE/SYSTEM) naming `what`.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tppp {

using Clock = std::chrono::steady_clock;

inline Clock::time_point deadline_after_ms(int64_t ms) {
  return Clock::now() + std::chrono::milliseconds(ms);
}
int64_t ms_until(Clock::time_point t);  // clamped at 0

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// "a.b.c.d:port"
std::string addr_string(uint32_t ip_be, uint16_t port);
// Listening socket on ip_be:port (0 = ephemeral; ip_be 0 = every address);
// *bound gets the port.
Fd listen_tcp(uint16_t port, uint16_t* bound, uint32_t ip_be = 0);
// Connects, retrying refused/unreachable until the deadline.
Fd connect_tcp(uint32_t ip_be, uint16_t port, Clock::time_point deadline, const std::string& what);
// Accepts one connection or returns an invalid Fd at the deadline.
Fd accept_until(int listen_fd, Clock::time_point deadline, std::string* peer);
void send_all(int fd, const void* buf, size_t n, Clock::time_point deadline, const std::string& what);
// got (optional): the bytes received, also when it throws.
void recv_all(int fd, void* buf, size_t n, Clock::time_point deadline, const std::string& what,
              size_t* got = nullptr);
// IPv4 address (network order) of a host name or dotted quad; throws.
uint32_t resolve_ipv4(const std::string& host);

}  // namespace tppp
