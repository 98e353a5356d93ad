// TCP with deadlines (poll-based), used only by the bootstrap.
#include "core/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.hpp"

namespace tppp {

int64_t ms_until(Clock::time_point t) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return d < 0 ? 0 : d;
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string addr_string(uint32_t ip_be, uint16_t port) {
  char buf[INET_ADDRSTRLEN] = {0};
  in_addr a;
  a.s_addr = ip_be;
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return strf("%s:%u", buf, static_cast<unsigned>(port));
}

Fd listen_tcp(uint16_t port, uint16_t* bound, uint32_t ip_be) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) fail(TPPP_ERR_SYSTEM, "bootstrap: socket(): %s", errno_text(errno).c_str());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = ip_be;
  sa.sin_port = htons(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    fail(TPPP_ERR_SYSTEM, "bootstrap: cannot listen on %s: %s%s", addr_string(ip_be, port).c_str(),
         errno_text(e).c_str(),
         e == EADDRINUSE ? " (another job holds this port: pick another MASTER_PORT / TPPP_BOOTSTRAP_PORT)" : "");
  }
  if (::listen(fd.get(), 1024) != 0) fail(TPPP_ERR_SYSTEM, "bootstrap: listen(): %s", errno_text(errno).c_str());
  socklen_t len = sizeof sa;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  if (bound) *bound = ntohs(sa.sin_port);
  return fd;
}

static void wait_fd(int fd, short events, Clock::time_point deadline, const std::string& what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int64_t ms = ms_until(deadline);
    int r = ::poll(&p, 1, static_cast<int>(ms > 1000000 ? 1000000 : ms));
    if (r > 0) return;  // ready, or an error the following call reports
    if (r == 0) fail(TPPP_ERR_TIMEOUT, "%s: timed out", what.c_str());
    if (errno != EINTR) fail(TPPP_ERR_SYSTEM, "%s: poll(): %s", what.c_str(), errno_text(errno).c_str());
  }
}

Fd connect_tcp(uint32_t ip_be, uint16_t port, Clock::time_point deadline, const std::string& what) {
  std::string addr = addr_string(ip_be, port);
  int last_err = 0;
  for (;;) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) fail(TPPP_ERR_SYSTEM, "%s: socket(): %s", what.c_str(), errno_text(errno).c_str());
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = ip_be;
    sa.sin_port = htons(port);
    int r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int err = r == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd.get(), POLLOUT, 0};
      int64_t ms = ms_until(deadline);
      int pr = ::poll(&p, 1, static_cast<int>(ms > 1000 ? 1000 : ms));
      if (pr > 0) {
        socklen_t l = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &l);
      } else {
        err = ETIMEDOUT;
      }
    }
    if (err == 0) {
      int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last_err = err;
    if (err != ECONNREFUSED && err != ETIMEDOUT && err != EHOSTUNREACH && err != ENETUNREACH &&
        err != ECONNRESET && err != EAGAIN)
      fail(TPPP_ERR_SYSTEM, "%s: connect to %s: %s", what.c_str(), addr.c_str(), errno_text(err).c_str());
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms_until(deadline) < 20 ? 1 : 20));
  }
  fail(TPPP_ERR_TIMEOUT, "%s: could not connect to %s before the timeout (last error: %s)", what.c_str(),
       addr.c_str(), errno_text(last_err).c_str());
}

Fd accept_until(int listen_fd, Clock::time_point deadline, std::string* peer) {
  for (;;) {
    pollfd p{listen_fd, POLLIN, 0};
    int64_t ms = ms_until(deadline);
    int r = ::poll(&p, 1, static_cast<int>(ms > 1000000 ? 1000000 : ms));
    if (r == 0) return Fd();
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(TPPP_ERR_SYSTEM, "bootstrap: poll() on the listener: %s", errno_text(errno).c_str());
    }
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      fail(TPPP_ERR_SYSTEM, "bootstrap: accept(): %s", errno_text(errno).c_str());
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (peer) *peer = addr_string(sa.sin_addr.s_addr, ntohs(sa.sin_port));
    return Fd(fd);
  }
}

void send_all(int fd, const void* buf, size_t n, Clock::time_point deadline, const std::string& what) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      wait_fd(fd, POLLOUT, deadline, what);
      continue;
    }
    fail(TPPP_ERR_REMOTE, "%s: send failed: %s", what.c_str(), errno_text(errno).c_str());
  }
}

void recv_all(int fd, void* buf, size_t n, Clock::time_point deadline, const std::string& what, size_t* got) {
  char* p = static_cast<char*>(buf);
  if (got) *got = 0;
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      if (got) *got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) fail(TPPP_ERR_REMOTE, "%s: connection closed by the peer", what.c_str());
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      wait_fd(fd, POLLIN, deadline, what);
      continue;
    }
    fail(TPPP_ERR_REMOTE, "%s: recv failed: %s", what.c_str(), errno_text(errno).c_str());
  }
}

uint32_t resolve_ipv4(const std::string& host) {
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) == 1) return a.s_addr;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int r = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (r != 0 || !res)
    fail(TPPP_ERR_INVALID_ARGUMENT, "bootstrap: cannot resolve host '%s': %s", host.c_str(), gai_strerror(r));
  uint32_t ip = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr;
  freeaddrinfo(res);
  return ip;
}

}  // namespace tppp
