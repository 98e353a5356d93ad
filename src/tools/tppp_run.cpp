// tppp-run: a small one-machine launcher, torchrun-style.
//   tppp-run -n N [--timeout SECONDS] [--grace SECONDS] [--] prog args...
// Starts N copies of prog with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TPPP_RUN_ID and (unless the
// environment has one) a random TPPP_GROUP_SECRET for the job set; prefixes
// each output line with "[rank] "; forwards SIGINT/SIGTERM. When one rank
// exits non-zero or dies, it says which rank failed first and gives the
// others --grace seconds (default 3) to report their errors and exit on
// their own, then SIGTERM, then SIGKILL 3 s later; it returns the first
// failing rank's code (128+signal for a signal). --timeout ends the job
// with code 124. Multi-node jobs use torchrun, mpirun or srun instead.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

volatile sig_atomic_t g_signal = 0;
int g_wake = -1;  // write end of the self-pipe: a signal wakes the poll at once
void wake() {
  const int saved = errno;
  if (g_wake >= 0) (void)!write(g_wake, "x", 1);
  errno = saved;
}
void on_signal(int s) {
  g_signal = s;
  wake();
}
// A rank's death is seen the moment it happens, not at the next 50 ms poll
// tick: a survivor that reports the dead peer and exits within those 50 ms
// would otherwise be reaped in the same batch and could be named first.
void on_child(int) { wake(); }

struct Stream {
  int fd = -1;
  int rank = 0;
  FILE* out = stdout;
  std::string pending;
};

struct Child {
  pid_t pid = -1;
  bool running = false;
  int code = 0;
};

int usage() {
  std::fprintf(stderr, "usage: tppp-run -n N [--timeout SECONDS] [--grace SECONDS] [--] prog [args...]\n");
  return 2;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof sa;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    std::perror("tppp-run: cannot find a free port");
    std::exit(1);
  }
  int port = ntohs(sa.sin_port);
  ::close(fd);
  return port;
}

void emit(Stream& s, bool flush_partial) {
  size_t start = 0, nl;
  while ((nl = s.pending.find('\n', start)) != std::string::npos) {
    std::fprintf(s.out, "[%d] %.*s\n", s.rank, static_cast<int>(nl - start), s.pending.data() + start);
    start = nl + 1;
  }
  s.pending.erase(0, start);
  if (flush_partial && !s.pending.empty()) {
    std::fprintf(s.out, "[%d] %s\n", s.rank, s.pending.c_str());
    s.pending.clear();
  }
  std::fflush(s.out);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 0;
  double timeout_s = 0, grace_s = 3;
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "-n" || a == "--nproc") && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--timeout" && i + 1 < argc) {
      timeout_s = std::atof(argv[++i]);
    } else if (a == "--grace" && i + 1 < argc) {
      grace_s = std::atof(argv[++i]);
      if (grace_s < 0) return usage();
    } else if (a == "--") {
      i++;
      break;
    } else if (a == "-h" || a == "--help") {
      return usage();
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "tppp-run: unknown option %s\n", a.c_str());
      return usage();
    } else {
      break;
    }
  }
  if (n <= 0 || n > 4096 || i >= argc) return usage();

  int wake_pipe[2];
  if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("tppp-run: pipe");
    return 1;
  }
  g_wake = wake_pipe[1];
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction sc{};
  sc.sa_handler = on_child;
  sc.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sc, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::string port = std::to_string(free_port());
  std::random_device rd;
  char run_id[32];
  std::snprintf(run_id, sizeof run_id, "%08x%08x", rd(), rd());
  // One secret per job: rank 0 drops any hello that does not prove it.
  char secret[40];
  std::snprintf(secret, sizeof secret, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());

  std::vector<Child> kids(static_cast<size_t>(n));
  std::vector<Stream> streams;
  for (int r = 0; r < n; r++) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      std::perror("tppp-run: pipe");
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("tppp-run: fork");
      return 1;
    }
    if (pid == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGCHLD, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(n).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      setenv("TPPP_RUN_ID", run_id, 1);
      setenv("TPPP_GROUP_SECRET", secret, 0);  // the user's own, if set, wins
      execvp(argv[i], argv + i);
      std::fprintf(stderr, "tppp-run: cannot run %s: %s\n", argv[i], std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    kids[static_cast<size_t>(r)].pid = pid;
    kids[static_cast<size_t>(r)].running = true;
    Stream so, se;
    so.fd = out[0];
    so.rank = r;
    so.out = stdout;
    se.fd = err[0];
    se.rank = r;
    se.out = stderr;
    streams.push_back(so);
    streams.push_back(se);
  }

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Clock::time_point kill_at = Clock::time_point::max(), term_at = Clock::time_point::max();
  int result = 0;
  bool failing = false;
  int running = n;
  auto terminate_all = [&](int sig) {
    for (auto& k : kids)
      if (k.running) kill(k.pid, sig);
    if (kill_at == Clock::time_point::max()) kill_at = Clock::now() + std::chrono::seconds(3);
  };

  while (running > 0 || std::any_of(streams.begin(), streams.end(), [](const Stream& s) { return s.fd >= 0; })) {
    std::vector<pollfd> pfds{pollfd{wake_pipe[0], POLLIN, 0}};
    std::vector<size_t> idx{0};
    for (size_t s = 0; s < streams.size(); s++)
      if (streams[s].fd >= 0) {
        pfds.push_back(pollfd{streams[s].fd, POLLIN, 0});
        idx.push_back(s);
      }
    int pr = poll(pfds.data(), pfds.size(), 50);
    if (pr > 0 && (pfds[0].revents & POLLIN)) {
      char drain[64];
      while (read(wake_pipe[0], drain, sizeof drain) > 0) {
      }
    }
    for (size_t k = 1; pr > 0 && k < pfds.size(); k++) {
      if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Stream& s = streams[idx[k]];
      char buf[65536];
      ssize_t got = read(s.fd, buf, sizeof buf);
      if (got > 0) {
        s.pending.append(buf, static_cast<size_t>(got));
        emit(s, false);
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        emit(s, true);
        close(s.fd);
        s.fd = -1;
      }
    }
    // Reap every rank that has ended. Where several failed within one wake,
    // the order of their deaths is unknown; a rank killed by a signal is named
    // before one that exited with a code (a survivor reporting a dead peer
    // exits; it is not killed), then the lowest rank.
    int status;
    pid_t pid;
    int first = -1, first_status = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (int r = 0; r < n; r++) {
        Child& k = kids[static_cast<size_t>(r)];
        if (k.pid != pid || !k.running) continue;
        k.running = false;
        running--;
        k.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (k.code != 0 && !failing &&
            (first < 0 || (WIFSIGNALED(status) && !WIFSIGNALED(first_status)) ||
             (WIFSIGNALED(status) == WIFSIGNALED(first_status) && r < first))) {
          first = r;
          first_status = status;
        }
      }
    }
    if (first >= 0) {
      failing = true;
      result = kids[static_cast<size_t>(first)].code;
      if (WIFSIGNALED(first_status))
        std::fprintf(stderr, "tppp-run: rank %d failed first: killed by signal %d (%s)", first,
                     WTERMSIG(first_status), strsignal(WTERMSIG(first_status)));
      else
        std::fprintf(stderr, "tppp-run: rank %d failed first: exit code %d", first, result);
      std::fprintf(stderr, "; the other ranks have %.1f s to report and exit (--grace)\n", grace_s);
      term_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
    }
    if (g_signal) {
      int s = g_signal;
      g_signal = 0;
      std::fprintf(stderr, "tppp-run: got signal %d; forwarding to the ranks\n", s);
      if (!failing) {
        failing = true;
        result = 128 + s;
      }
      terminate_all(s);
    }
    if (timeout_s > 0 && !failing &&
        Clock::now() - start > std::chrono::duration<double>(timeout_s)) {
      std::fprintf(stderr, "tppp-run: timed out after %.0f s; ending the ranks\n", timeout_s);
      failing = true;
      result = 124;
      terminate_all(SIGTERM);
    }
    if (running > 0 && Clock::now() >= term_at) {
      std::fprintf(stderr, "tppp-run: ending the %d rank(s) still running\n", running);
      terminate_all(SIGTERM);
      term_at = Clock::time_point::max();
    }
    if (running > 0 && Clock::now() > kill_at) {
      terminate_all(SIGKILL);
      kill_at = Clock::now() + std::chrono::seconds(3600);
    }
  }
  return result;
}
