// Group formation: queries on a formed group, and every way forming one can
// go wrong (missing ranks, stale or foreign ids, a busy port, junk bytes,
// ranks that disagree on the group shape).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

#include "core/bootstrap.hpp"
#include "core/env.hpp"
#include "core/error.hpp"
#include "core/launch_env.hpp"
#include "core/socket.hpp"
#include "harness.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

bool has(const char* hay, const char* needle) { return std::string(hay).find(needle) != std::string::npos; }

}  // namespace

TEST_SUITE("bootstrap") {
  TEST_CASE("a 2x2 group answers queries per rank") {
    auto codes = th::run_ranks(4, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 2, 10000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 4, rank, &p, &g));
      tppp_group_info i;
      i.struct_size = sizeof i;
      RANK_OK(tppp_group_get_info(g, &i));
      RANK_CHECK(i.rank == rank && i.world_size == 4 && i.tp_size == 2 && i.pp_size == 2, "sizes");
      RANK_CHECK(i.tp_rank == rank % 2 && i.pp_rank == rank / 2, "grid position");
      RANK_CHECK(i.prev_stage_rank == (rank >= 2 ? rank - 2 : -1), "prev %d", i.prev_stage_rank);
      RANK_CHECK(i.next_stage_rank == (rank < 2 ? rank + 2 : -1), "next %d", i.next_stage_rank);
      RANK_CHECK(i.transport == TPPP_TRANSPORT_UCX && i.device == TPPP_DEVICE_CPU, "transport/device");
      int32_t me = -1, n = -1, gr = -1;
      RANK_OK(tppp_group_scope(g, TPPP_SCOPE_TP, &me, &n));
      RANK_CHECK(me == rank % 2 && n == 2, "tp scope");
      RANK_OK(tppp_group_scope(g, TPPP_SCOPE_PP, &me, &n));
      RANK_CHECK(me == rank / 2 && n == 2, "pp scope");
      RANK_OK(tppp_group_global_rank(g, TPPP_SCOPE_PP, 1, &gr));
      RANK_CHECK(gr == 2 + rank % 2, "pp member 1 is %d", gr);
      RANK_CHECK(tppp_group_global_rank(g, TPPP_SCOPE_TP, 2, &gr) == TPPP_ERR_INVALID_ARGUMENT, "index 2 of tp");
      RANK_CHECK(tppp_group_scope(g, 7, &me, &n) == TPPP_ERR_INVALID_ARGUMENT, "scope 7");
      tppp_status st = -1;
      RANK_OK(tppp_group_get_async_error(g, &st));
      RANK_CHECK(st == TPPP_OK, "no async error");
      // An older, shorter info struct gets only its fields.
      unsigned char small[offsetof(tppp_group_info, tp_rank) + 4];
      std::memset(small, 0xee, sizeof small);
      reinterpret_cast<tppp_group_info*>(small)->struct_size = offsetof(tppp_group_info, tp_rank);
      RANK_OK(tppp_group_get_info(g, reinterpret_cast<tppp_group_info*>(small)));
      for (size_t k = offsetof(tppp_group_info, tp_rank); k < sizeof small; k++)
        RANK_CHECK(small[k] == 0xee, "byte %zu past struct_size written", k);
      RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a rank that never arrives: every present rank times out, saying k/n joined") {
    const int timeout_ms = 1500;
    auto codes = th::run_ranks(4, 30, [&](int rank, const tppp_unique_id& id) {
      if (rank == 3) return 0;  // never calls create
      tppp_group_params p = th::params(2, 2, timeout_ms);
      tppp_group_t g = nullptr;
      auto t0 = Clock::now();
      tppp_status s = tppp_group_create(&id, 4, rank, &p, &g);
      double ms = ms_since(t0);
      RANK_CHECK(s == TPPP_ERR_TIMEOUT, "status %s: %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "3/4 ranks joined"), "message: %s", tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "missing: rank 3"), "message: %s", tppp_last_error());
      RANK_CHECK(ms <= timeout_ms + 1000, "took %.0f ms", ms);
      RANK_CHECK(g == nullptr, "out-param untouched");
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("rank 0 never arrives: the others time out naming rank 0") {
    const int timeout_ms = 1000;
    auto codes = th::run_ranks(3, 30, [&](int rank, const tppp_unique_id& id) {
      if (rank == 0) {  // alive, holding the id's listener, but never joins
        std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms + 1500));
        return 0;
      }
      tppp_group_params p = th::params(3, 1, timeout_ms);
      tppp_group_t g = nullptr;
      auto t0 = Clock::now();
      tppp_status s = tppp_group_create(&id, 3, rank, &p, &g);
      double ms = ms_since(t0);
      RANK_CHECK(s == TPPP_ERR_TIMEOUT, "status %s: %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "rank 0"), "message: %s", tppp_last_error());
      RANK_CHECK(ms <= timeout_ms + 1000, "took %.0f ms", ms);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a stale unique id") {
    tppp_unique_id id;
    REQUIRE(tppp_get_unique_id(&id) == TPPP_OK);
    tppp_group_params p = th::params(1, 1, 1000);
    tppp_group_t g = nullptr;
    REQUIRE(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_OK);
    tppp_group_destroy(g);
    g = nullptr;
    // Used twice on rank 0: its listener is gone.
    CHECK(tppp_group_create(&id, 1, 0, &p, &g) == TPPP_ERR_INVALID_ARGUMENT);
    CHECK(has(tppp_last_error(), "stale"));
    // On another rank: nobody listens there any more.
    p = th::params(2, 1, 800);
    auto t0 = Clock::now();
    CHECK(tppp_group_create(&id, 2, 1, &p, &g) == TPPP_ERR_TIMEOUT);
    CHECK(has(tppp_last_error(), "stale unique id"));
    CHECK(ms_since(t0) < 800 + 1000);
    CHECK(g == nullptr);
  }

  TEST_CASE("a foreign group's rank knocking on our port is turned away") {
    // Rank 0 of job A listens on a fixed port; a process from job B (another
    // TPPP_RUN_ID, so another magic) connects to it and is rejected.
    uint16_t port = 0;
    { tppp::listen_tcp(0, &port); }  // a free port (closed again)
    const std::string ps = std::to_string(port);
    auto codes = th::run_ranks(3, 30, [&](int rank, const tppp_unique_id&) {
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", ps.c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      tppp_group_params p = th::params(1, 1, 3000);
      p.pp_size = 1;
      tppp_group_t g = nullptr;
      if (rank == 2) {  // the stranger: job B, claims rank 1
        setenv("RANK", "1", 1);
        setenv("TPPP_RUN_ID", "job-B", 1);
        tppp_status s = tppp_group_create_from_env(&p, &g);
        RANK_CHECK(s == TPPP_ERR_INVALID_ARGUMENT, "stranger got %s: %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "another group's magic"), "message: %s", tppp_last_error());
        return 0;
      }
      if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // after the stranger
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("TPPP_RUN_ID", "job-A", 1);
      RANK_OK(tppp_group_create_from_env(&p, &g));
      tppp_group_info i;
      i.struct_size = sizeof i;
      RANK_OK(tppp_group_get_info(g, &i));
      RANK_CHECK(i.tp_size == 2 && i.world_size == 2, "tp taken from the world: %d", i.tp_size);
      RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("no launcher: tppp_group_create_from_env runs as world 1, rank 0") {
    th::ScopedEnv a("RANK", nullptr), b("WORLD_SIZE", nullptr), c("OMPI_COMM_WORLD_RANK", nullptr),
        d("OMPI_COMM_WORLD_SIZE", nullptr), e("SLURM_PROCID", nullptr), f("SLURM_NTASKS", nullptr),
        h("MASTER_ADDR", nullptr), i("MASTER_PORT", nullptr);
    tppp_group_t g = nullptr;
    REQUIRE(tppp_group_create_from_env(nullptr, &g) == TPPP_OK);
    tppp_group_info info;
    info.struct_size = sizeof info;
    REQUIRE(tppp_group_get_info(g, &info) == TPPP_OK);
    CHECK(info.world_size == 1);
    CHECK(info.rank == 0);
    CHECK(info.tp_size == 1);
    CHECK(info.pp_size == 1);
    float x[3] = {1.5f, -2.0f, 3.25f}, y[3] = {-7, -7, -7};
    CHECK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, y, 3, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr) == TPPP_OK);
    CHECK(y[0] == 1.5f);
    CHECK(y[2] == 3.25f);
    tppp_group_destroy(g);
    // Half a launcher's pair is still an error, naming the variable.
    th::ScopedEnv r("RANK", "0");
    CHECK(tppp_group_create_from_env(nullptr, &g) == TPPP_ERR_INVALID_USAGE);
    CHECK(has(tppp_last_error(), "RANK is set"));
  }

  TEST_CASE("bootstrap port already in use") {
    uint16_t port = 0;
    tppp::Fd holder = tppp::listen_tcp(0, &port);
    const std::string ps = std::to_string(port);
    {
      th::ScopedEnv a("RANK", "0"), b("WORLD_SIZE", "2"), c("MASTER_ADDR", "127.0.0.1"), d("MASTER_PORT", ps.c_str()),
          e("TPPP_RUN_ID", "x");
      tppp_group_t g = nullptr;
      tppp_group_params p = th::params(2, 1, 1000);
      CHECK(tppp_group_create_from_env(&p, &g) == TPPP_ERR_SYSTEM);
      CHECK(has(tppp_last_error(), "in use"));
      CHECK(has(tppp_last_error(), ps.c_str()));
      CHECK(g == nullptr);
    }
    {
      th::ScopedEnv a("TPPP_BOOTSTRAP_PORT", ps.c_str());
      tppp_unique_id id;
      CHECK(tppp_get_unique_id(&id) == TPPP_ERR_SYSTEM);
      CHECK(has(tppp_last_error(), "in use"));
    }
  }

  TEST_CASE("junk bytes on the bootstrap port do not stop the group") {
    auto codes = th::run_ranks(3, 30, [](int rank, const tppp_unique_id& id) {
      tppp::BootstrapAddr a = tppp::parse_unique_id(id);
      if (rank == 2) {  // the junk sender: garbage, silence, and a half hello
        auto dl = tppp::deadline_after_ms(2000);
        {
          tppp::Fd c = tppp::connect_tcp(a.ip_be, a.port, dl, "junk");
          const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef0123456789";
          tppp::send_all(c.get(), junk, sizeof junk, dl, "junk");
        }
        { tppp::Fd silent = tppp::connect_tcp(a.ip_be, a.port, dl, "silent"); }
        {
          tppp::Fd c = tppp::connect_tcp(a.ip_be, a.port, dl, "half");
          tppp::send_all(c.get(), "TPPPHLO1", 8, dl, "half");
        }
        return 0;
      }
      // Rank 0 logs each: the junk and the half hello as warnings, the
      // silent one (what a rank's abandoned connect attempt looks like) as
      // information only.
      std::vector<std::pair<int32_t, std::string>> logs;
      if (rank == 0)
        tppp_set_log_callback([](int32_t l, const char* m, void* u) {
          static_cast<std::vector<std::pair<int32_t, std::string>>*>(u)->emplace_back(l, m);
        }, &logs, TPPP_LOG_INFO);
      if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1000));
      tppp_group_params p = th::params(2, 1, 8000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      float x = 1.0f + static_cast<float>(rank), y = 0;
      RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, &x, &y, 1, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr));
      RANK_CHECK(y == 3.0f, "sum %g", y);
      tppp_group_destroy(g);
      if (rank == 0) {
        tppp_set_log_callback(nullptr, nullptr, TPPP_LOG_WARN);
        int junk = 0, half = 0, silent = 0;
        for (const auto& l : logs) {
          const char* m = l.second.c_str();
          junk += l.first == TPPP_LOG_WARN && has(m, "not a tppp hello");
          half += l.first == TPPP_LOG_WARN && has(m, "dropped a connection") && has(m, "closed by the peer");
          silent += l.first == TPPP_LOG_INFO && has(m, "closed before its hello");
        }
        RANK_CHECK(junk == 1 && half == 1 && silent == 1, "logged junk %d, half hello %d, silent %d (%zu lines)", junk,
                   half, silent, logs.size());
      }
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("the unique id's listener is bound to the advertised address only") {
    auto codes = th::run_ranks(1, 30, [](int, const tppp_unique_id& id) {
      tppp::BootstrapAddr a = tppp::parse_unique_id(id);
      if (a.ip_be == htonl(INADDR_LOOPBACK)) return 0;  // a host with loopback only: nothing to tell apart
      // Rank 0's listener is still open in this process (the harness made it
      // before fork): loopback is refused, the advertised address answers.
      bool refused = false;
      try {
        tppp::connect_tcp(htonl(INADDR_LOOPBACK), a.port, tppp::deadline_after_ms(300), "loopback");
      } catch (const std::exception&) {
        refused = true;
      }
      RANK_CHECK(refused, "the bootstrap answered on 127.0.0.1 as well as on %s",
                 tppp::addr_string(a.ip_be, a.port).c_str());
      tppp::connect_tcp(a.ip_be, a.port, tppp::deadline_after_ms(2000), "advertised");
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a group secret: a hello that does not prove it is dropped and logged, and the group forms") {
    // The launcher's environment makes the magic from public values, so a
    // stranger on the network computes it too and claims rank 1 before the
    // real rank 1 arrives: first with no secret, then with a guessed one.
    uint16_t port = 0;
    { tppp::listen_tcp(0, &port); }
    const std::string ps = std::to_string(port);
    auto codes = th::run_ranks(3, 30, [&](int rank, const tppp_unique_id&) {
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", ps.c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("TPPP_RUN_ID", "job-S", 1);
      if (rank == 2) {  // the stranger
        setenv("RANK", "1", 1);
        tppp::LaunchEnv e = tppp::read_launch_env(tppp::process_env);  // the magic, from public values
        std::this_thread::sleep_for(std::chrono::milliseconds(200));   // rank 0 listens
        for (const char* guess : {"", "guess"}) {
          auto dl = tppp::deadline_after_ms(3000);
          tppp::Fd c = tppp::connect_tcp(htonl(INADDR_LOOPBACK), port, dl, "stranger");
          struct {
            char tag[8];
            uint64_t magic;
            uint32_t world, rank, tp, pp;
            uint64_t auth;
          } h{{'T', 'P', 'P', 'P', 'H', 'L', 'O', '2'}, e.magic, 2, 1, 2, 1, tppp::hello_auth(guess, e.magic, 1, 2)};
          tppp::send_all(c.get(), &h, sizeof h, dl, "stranger");
          char reply[16];
          bool closed = false;
          try {
            tppp::recv_all(c.get(), reply, sizeof reply, dl, "stranger");
          } catch (const tppp::Error& err) {
            closed = err.status() == TPPP_ERR_REMOTE;  // hung up on, without a word
          }
          RANK_CHECK(closed, "a stranger with secret '%s' got an answer or no hang-up", guess);
        }
        return 0;
      }
      setenv("TPPP_GROUP_SECRET", "correct horse battery staple", 1);
      std::vector<std::string> logs;
      if (rank == 0)
        tppp_set_log_callback([](int32_t, const char* m, void* u) { static_cast<std::vector<std::string>*>(u)->push_back(m); },
                              &logs, TPPP_LOG_WARN);
      if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(900));  // after the stranger
      setenv("RANK", std::to_string(rank).c_str(), 1);
      tppp_group_params p = th::params(1, 1, 5000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create_from_env(&p, &g));
      RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
      tppp_group_destroy(g);
      if (rank == 0) {
        tppp_set_log_callback(nullptr, nullptr, TPPP_LOG_WARN);
        int missing = 0, wrong = 0;
        for (const auto& m : logs) {
          missing += has(m.c_str(), "dropped a hello") && has(m.c_str(), "does not prove the group secret");
          wrong += has(m.c_str(), "dropped a hello") && has(m.c_str(), "proof of the group secret is wrong");
        }
        RANK_CHECK(missing == 1 && wrong == 1, "logged %d drops without a secret, %d with a wrong one (%zu lines)",
                   missing, wrong, logs.size());
      }
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("ranks that disagree on the group shape all fail, naming it") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      // rank 1 believes in world 2 with pp 2; rank 0 in tp 2.
      tppp_group_params p = th::params(rank == 0 ? 2 : 1, rank == 0 ? 1 : 2, 3000);
      tppp_group_t g = nullptr;
      tppp_status s = tppp_group_create(&id, 2, rank, &p, &g);
      RANK_CHECK(s == TPPP_ERR_INVALID_ARGUMENT, "status %s: %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "says world=2 tp=1 pp=2"), "message: %s", tppp_last_error());
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
