// Faults after the group formed: mismatched buffers, abort from another
// thread, use after abort, a peer killed mid-run, requests that time out,
// and bad arguments on a live group. Each gives a specific status, in time.
#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include "harness.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
bool has(const char* hay, const char* needle) { return std::string(hay).find(needle) != std::string::npos; }

}  // namespace

TEST_SUITE("faults") {
  TEST_CASE("p2p buffers of mismatched size") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 3000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      std::vector<char> buf(4096, 1);
      if (rank == 0) {
        RANK_OK(tppp_send(g, TPPP_SCOPE_WORLD, 1, 5, buf.data(), 100, nullptr));  // into a smaller receive
        RANK_OK(tppp_send(g, TPPP_SCOPE_WORLD, 1, 6, buf.data(), 100, nullptr));  // into a larger receive
        RANK_OK(tppp_send(g, TPPP_SCOPE_WORLD, 1, 7, buf.data(), 3000, nullptr));  // rendezvous size, smaller
      } else {
        tppp_status s = tppp_recv(g, TPPP_SCOPE_WORLD, 0, 5, buf.data(), 64, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE, "smaller: %s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "mismatched size") && has(tppp_last_error(), "64"), "msg %s",
                   tppp_last_error());
        s = tppp_recv(g, TPPP_SCOPE_WORLD, 0, 6, buf.data(), 200, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE, "larger: %s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "sent 100 bytes") && has(tppp_last_error(), "posted 200"), "msg %s",
                   tppp_last_error());
        s = tppp_recv(g, TPPP_SCOPE_WORLD, 0, 7, buf.data(), 2000, nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE, "big smaller: %s %s", tppp_status_string(s), tppp_last_error());
      }
      RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("p2p streams: receiver ahead of or behind its sender, data in order, sizes checked either way") {
    // The UCX fast paths differ by who is first: a receive posted before its
    // message (UCX request, callback; no probe once the receiver is ahead),
    // a receive of a message already here (probed, finished in place), a
    // send finished in place (the shared done-request). Every path must
    // deliver each message intact and in order, and refuse a size mismatch.
    // The receiver never sends p2p: the receiving end of a one-way stream,
    // which steps back before it polls when ahead, unless
    // TPPP_UCX_STREAM_BACKOFF_NS=0.
    for (const char* backoff : {"0", "150", "5000"}) {
      CAPTURE(backoff);
      auto codes = th::run_ranks(2, 60, [backoff](int rank, const tppp_unique_id& id) {
        setenv("TPPP_UCX_STREAM_BACKOFF_NS", backoff, 1);  // read as the group is made
        tppp_group_params p = th::params(2, 1, 5000);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
        const int window = 8, n = 2000;
        for (int behind = 0; behind < 2; behind++) {  // 0: receives posted first; 1: messages sent first
          for (size_t size : {size_t(8), size_t(64), size_t(3000), size_t(40000)}) {
            std::vector<std::vector<uint32_t>> bufs(window, std::vector<uint32_t>(size / 4));
            std::vector<tppp_request_t> reqs(window, nullptr);
            if (rank == 1 && behind) RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));  // after the sender's window
            for (int i = 0; i < n + window; i++) {
              const int slot = i % window;
              if (i >= window) {
                RANK_OK(tppp_request_wait(reqs[slot]));
                int32_t done = 0;
                RANK_OK(tppp_request_test(reqs[slot], &done));
                RANK_CHECK(done == 1, "a waited request tests done");
                tppp_request_free(reqs[slot]);
                if (rank == 1) {
                  const uint32_t k = static_cast<uint32_t>(i - window);
                  for (size_t j = 0; j < size / 4; j += 97)
                    RANK_CHECK(bufs[slot][j] == k * 131u + static_cast<uint32_t>(j), "size %zu message %u word %zu: %u",
                               size, k, j, bufs[slot][j]);
                }
              }
              if (i >= n) continue;
              if (rank == 0) {
                for (size_t j = 0; j < size / 4; j++) bufs[slot][j] = static_cast<uint32_t>(i) * 131u + static_cast<uint32_t>(j);
                RANK_OK(tppp_isend(g, TPPP_SCOPE_WORLD, 1, 9, bufs[slot].data(), size, nullptr, &reqs[slot]));
                if (behind && i == window - 1) RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
              } else {
                std::fill(bufs[slot].begin(), bufs[slot].end(), 0xdeadbeefu);  // poison
                RANK_OK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 9, bufs[slot].data(), size, nullptr, &reqs[slot]));
              }
            }
            // A mismatched message in this regime: the receive refuses it.
            std::vector<char> big(size + 8, 1);
            if (rank == 0) {
              if (!behind) RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));  // the receive is posted by now
              tppp_request_t r = nullptr;  // a large one completes only once the receiver has seen it
              RANK_OK(tppp_isend(g, TPPP_SCOPE_WORLD, 1, 10, big.data(), size + 8, nullptr, &r));
              if (behind) RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
              RANK_OK(tppp_request_wait(r));
              tppp_request_free(r);
            } else {
              tppp_request_t r = nullptr;
              if (behind) {
                RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));  // the message is here (or on its way) by now
                RANK_OK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 10, big.data(), size, nullptr, &r));
              } else {
                RANK_OK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 10, big.data(), size, nullptr, &r));
                RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
              }
              tppp_status st = tppp_request_wait(r);
              RANK_CHECK(st == TPPP_ERR_INVALID_USAGE && has(tppp_last_error(), "mismatched size"),
                         "size %zu behind %d: %s %s", size, behind, tppp_status_string(st), tppp_last_error());
              RANK_CHECK(tppp_request_wait(r) == st, "a failed request repeats its status");
              tppp_request_free(r);
            }
          }
        }
        RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
        tppp_group_destroy(g);
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("a bad TPPP_UCX_STREAM_BACKOFF_NS fails group creation, naming it; on one rank, the other fails too") {
    for (const char* bad : {"abc", "-5", "100001", "15x", ""}) {
      CAPTURE(bad);
      for (int who = 0; who < 3; who++) {  // 0, 1: that rank's value is bad; 2: both
        auto codes = th::run_ranks(2, 30, [bad, who](int rank, const tppp_unique_id& id) {
          const bool mine = who == 2 || who == rank;
          if (mine) setenv("TPPP_UCX_STREAM_BACKOFF_NS", bad, 1);
          tppp_group_params p = th::params(2, 1, 1500);
          tppp_group_t g = nullptr;
          const auto t0 = std::chrono::steady_clock::now();
          tppp_status st = tppp_group_create(&id, 2, rank, &p, &g);
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (*bad == '\0') {  // set but empty: the default
            RANK_OK(st);
            tppp_group_destroy(g);
            return 0;
          }
          RANK_CHECK(g == nullptr, "no group on failure");
          if (mine)
            RANK_CHECK(st == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), "TPPP_UCX_STREAM_BACKOFF_NS"),
                       "%s %s", tppp_status_string(st), tppp_last_error());
          else  // its peer left during creation
            RANK_CHECK((st == TPPP_ERR_REMOTE || st == TPPP_ERR_TIMEOUT) && has(tppp_last_error(), "rank"),
                       "%s %s", tppp_status_string(st), tppp_last_error());
          RANK_CHECK(secs < 1.5 + 1.0, "returned after %.2f s", secs);
          return 0;
        });
        CHECK_MESSAGE(th::all_zero(codes), "who ", who, ": ", th::codes_str(codes));
      }
    }
  }

  TEST_CASE("collectives with mismatched counts fail on every rank within the timeout") {
    for (size_t base : {size_t(100), size_t(1) << 20}) {
      CAPTURE(base);
      auto codes = th::run_ranks(2, 30, [base](int rank, const tppp_unique_id& id) {
        const int timeout_ms = 1500;
        tppp_group_params p = th::params(2, 1, timeout_ms);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
        size_t count = base * static_cast<size_t>(rank + 1);
        std::vector<float> x(count, 1.0f);
        auto t0 = Clock::now();
        tppp_status s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), x.data(), count, TPPP_DTYPE_F32, TPPP_OP_SUM,
                                        nullptr);
        RANK_CHECK(s == TPPP_ERR_INVALID_USAGE || s == TPPP_ERR_TIMEOUT || s == TPPP_ERR_REMOTE, "status %s: %s",
                   tppp_status_string(s), tppp_last_error());
        RANK_CHECK(ms_since(t0) < timeout_ms + 1000, "took %.0f ms", ms_since(t0));
        tppp_group_destroy(g);
        return 0;
      });
      CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
    }
  }

  TEST_CASE("abort from another thread ends a blocked receive; later calls say ABORTED") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 20000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      if (rank == 1) {
        std::thread t([g] {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          tppp_group_abort(g);
        });
        float x[4];
        auto t0 = Clock::now();
        tppp_status s = tppp_recv(g, TPPP_SCOPE_WORLD, 0, 1, x, sizeof x, nullptr);  // never sent
        t.join();
        RANK_CHECK(s == TPPP_ERR_ABORTED, "recv: %s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(ms_since(t0) < 5000, "abort took %.0f ms", ms_since(t0));
        s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, x, 4, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr);
        RANK_CHECK(s == TPPP_ERR_ABORTED, "use after abort: %s", tppp_status_string(s));
        RANK_CHECK(has(tppp_last_error(), "aborted"), "msg %s", tppp_last_error());
        tppp_request_t r = nullptr;
        RANK_CHECK(tppp_isend(g, TPPP_SCOPE_WORLD, 0, 1, x, 4, nullptr, &r) == TPPP_ERR_ABORTED, "isend");
        RANK_CHECK(r == nullptr, "no request made");
        RANK_CHECK(tppp_barrier(g, TPPP_SCOPE_TP) == TPPP_ERR_ABORTED, "barrier");
        tppp_status st = TPPP_OK;
        RANK_OK(tppp_group_get_async_error(g, &st));
        RANK_CHECK(st == TPPP_ERR_ABORTED, "async error %s", tppp_status_string(st));
        RANK_OK(tppp_group_abort(g));  // idempotent
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
      }
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("abort ends a pending async request too") {
    auto codes = th::run_ranks(1, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(1, 1, 20000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 1, rank, &p, &g));
      float x[4];
      tppp_request_t r = nullptr;
      RANK_OK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 3, x, sizeof x, nullptr, &r));  // from self, never sent
      int32_t done = 1;
      RANK_OK(tppp_request_test(r, &done));
      RANK_CHECK(done == 0, "pending");
      RANK_OK(tppp_group_abort(g));
      RANK_CHECK(tppp_request_wait(r) == TPPP_ERR_ABORTED, "wait after abort");
      RANK_CHECK(tppp_request_test(r, &done) == TPPP_ERR_ABORTED && done == 1, "test repeats the result");
      tppp_request_free(r);
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a request outlives its group safely") {
    auto codes = th::run_ranks(1, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(1, 1, 1000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 1, rank, &p, &g));
      float x[4];
      tppp_request_t r = nullptr;
      RANK_OK(tppp_irecv(g, TPPP_SCOPE_WORLD, 0, 11, x, sizeof x, nullptr, &r));
      tppp_group_destroy(g);  // the request keeps the transport alive
      int32_t done = 1;
      RANK_OK(tppp_request_test(r, &done));
      RANK_CHECK(done == 0, "still pending");
      tppp_request_free(r);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a receive nobody answers times out, naming the peer") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      const int timeout_ms = 800;
      tppp_group_params p = th::params(1, 2, timeout_ms);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      if (rank == 0) {
        float x[2];
        auto t0 = Clock::now();
        tppp_status s = tppp_recv(g, TPPP_SCOPE_PP, 1, 9, x, sizeof x, nullptr);
        RANK_CHECK(s == TPPP_ERR_TIMEOUT, "%s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "rank 1") && has(tppp_last_error(), "timed out"), "msg %s",
                   tppp_last_error());
        RANK_CHECK(ms_since(t0) < timeout_ms + 1000, "took %.0f", ms_since(t0));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rank == 1 ? 1200 : 0));
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a peer killed mid-run: the survivor fails within the timeout, no hang") {
    auto codes = th::run_ranks(3, 60, [](int rank, const tppp_unique_id& id) {
      const int timeout_ms = 2000;
      tppp_group_params p = th::params(3, 1, timeout_ms);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 3, rank, &p, &g));
      std::vector<float> x(1 << 16, 1.0f);
      RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), x.data(), x.size(), TPPP_DTYPE_F32, TPPP_OP_SUM,
                              nullptr));
      if (rank == 2) raise(SIGKILL);
      auto t0 = Clock::now();
      tppp_status s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), x.data(), x.size(), TPPP_DTYPE_F32,
                                      TPPP_OP_SUM, nullptr);
      RANK_CHECK(s == TPPP_ERR_REMOTE || s == TPPP_ERR_TIMEOUT, "%s %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(ms_since(t0) < timeout_ms + 1000, "took %.0f", ms_since(t0));
      tppp_group_destroy(g);
      return 0;
    });
    REQUIRE(codes.size() == 3);
    CHECK(codes[0] == 0);
    CHECK(codes[1] == 0);
    CHECK(codes[2] == 128 + SIGKILL);
  }

  TEST_CASE("a dead peer on this host is detected long before the timeout") {
    auto codes = th::run_ranks(2, 60, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 20000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      RANK_OK(tppp_barrier(g, TPPP_SCOPE_WORLD));
      if (rank == 1) raise(SIGKILL);
      float x[4];
      auto t0 = Clock::now();
      tppp_status s = tppp_recv(g, TPPP_SCOPE_WORLD, 1, 0, x, sizeof x, nullptr);
      RANK_CHECK(s == TPPP_ERR_REMOTE, "%s %s", tppp_status_string(s), tppp_last_error());
      RANK_CHECK(has(tppp_last_error(), "rank 1") && has(tppp_last_error(), "dead"), "msg %s", tppp_last_error());
      RANK_CHECK(ms_since(t0) < 3000, "took %.0f ms with a 20 s timeout", ms_since(t0));
      tppp_status st = TPPP_OK;
      RANK_OK(tppp_group_get_async_error(g, &st));
      RANK_CHECK(st == TPPP_ERR_REMOTE, "async error %s", tppp_status_string(st));
      tppp_group_destroy(g);
      return 0;
    });
    REQUIRE(codes.size() == 2);
    CHECK(codes[0] == 0);
    CHECK(codes[1] == 128 + SIGKILL);
  }

  TEST_CASE("a peer dead during a shared-memory all_reduce is detected long before the timeout") {
    for (size_t count : {size_t(4), size_t(1) << 20}) {  // one flag exchange; chunks
      CAPTURE(count);
      auto codes = th::run_ranks(2, 60, [count](int rank, const tppp_unique_id& id) {
        tppp_group_params p = th::params(2, 1, 20000);
        tppp_group_t g = nullptr;
        RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
        std::vector<float> x(count, 1.0f);
        RANK_OK(tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), x.data(), count, TPPP_DTYPE_F32, TPPP_OP_SUM,
                                nullptr));
        if (rank == 1) raise(SIGKILL);
        auto t0 = Clock::now();
        tppp_status s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x.data(), x.data(), count, TPPP_DTYPE_F32,
                                        TPPP_OP_SUM, nullptr);
        RANK_CHECK(s == TPPP_ERR_REMOTE, "%s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(has(tppp_last_error(), "rank 1") && has(tppp_last_error(), "dead"), "msg %s", tppp_last_error());
        RANK_CHECK(ms_since(t0) < 3000, "took %.0f ms with a 20 s timeout", ms_since(t0));
        tppp_group_destroy(g);
        return 0;
      });
      REQUIRE(codes.size() == 2);
      CHECK(codes[0] == 0);
      CHECK(codes[1] == 128 + SIGKILL);
    }
  }

  TEST_CASE("abort from another thread ends an all_reduce waiting in shared memory") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 20000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      if (rank == 1) {
        std::thread t([g] {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          tppp_group_abort(g);
        });
        float x[4] = {1, 2, 3, 4};
        auto t0 = Clock::now();
        tppp_status s = tppp_all_reduce(g, TPPP_SCOPE_WORLD, x, x, 4, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr);
        t.join();
        RANK_CHECK(s == TPPP_ERR_ABORTED, "all_reduce: %s %s", tppp_status_string(s), tppp_last_error());
        RANK_CHECK(ms_since(t0) < 5000, "abort took %.0f ms", ms_since(t0));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(600));  // never calls
      }
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("bad arguments on a live group") {
    auto codes = th::run_ranks(1, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(1, 1, 2000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 1, rank, &p, &g));
      float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
      tppp_request_t r = nullptr;
      auto inv = [&](tppp_status s, const char* needle) {
        return s == TPPP_ERR_INVALID_ARGUMENT && has(tppp_last_error(), needle);
      };
      RANK_CHECK(inv(tppp_isend(g, TPPP_SCOPE_WORLD, 1, 0, x, 4, nullptr, &r), "peer 1"), "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_isend(g, TPPP_SCOPE_WORLD, 0, -1, x, 4, nullptr, &r), "tag -1"), "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_isend(g, TPPP_SCOPE_WORLD, 0, 0, nullptr, 4, nullptr, &r), "NULL"), "%s",
                 tppp_last_error());
      RANK_CHECK(inv(tppp_isend(g, TPPP_SCOPE_WORLD, 0, 0, x, 4, nullptr, nullptr), "NULL"), "%s",
                 tppp_last_error());
      RANK_CHECK(inv(tppp_irecv(g, 9, 0, 0, x, 4, nullptr, &r), "scope 9"), "%s", tppp_last_error());
      RANK_CHECK(r == nullptr, "no request on failure");
      RANK_CHECK(inv(tppp_all_reduce(g, 0, x, x, 8, 99, TPPP_OP_SUM, nullptr), "dtype 99"), "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_all_reduce(g, 0, x, x, 8, TPPP_DTYPE_F32, 5, nullptr), "op 5"), "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_all_reduce(g, 0, nullptr, x, 8, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr), "send is NULL"),
                 "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_all_reduce(g, 0, x, x, SIZE_MAX / 2, TPPP_DTYPE_F32, TPPP_OP_SUM, nullptr), "overflows"),
                 "%s", tppp_last_error());
      RANK_CHECK(tppp_all_reduce(g, 0, x, x, 8, TPPP_DTYPE_U8, TPPP_OP_SUM, nullptr) == TPPP_OK,
                 "1 rank: a copy needs no arithmetic");
      RANK_CHECK(inv(tppp_all_gather(g, 0, x, nullptr, 8, TPPP_DTYPE_F32, nullptr), "recv is NULL"), "%s",
                 tppp_last_error());
      RANK_CHECK(inv(tppp_broadcast(g, 0, x, 8, TPPP_DTYPE_F32, 1, nullptr), "root 1"), "%s", tppp_last_error());
      RANK_CHECK(inv(tppp_barrier(g, -1), "scope -1"), "%s", tppp_last_error());
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }

  TEST_CASE("a dtype that cannot be reduced is refused across ranks") {
    auto codes = th::run_ranks(2, 30, [](int rank, const tppp_unique_id& id) {
      tppp_group_params p = th::params(2, 1, 2000);
      tppp_group_t g = nullptr;
      RANK_OK(tppp_group_create(&id, 2, rank, &p, &g));
      uint8_t x[16] = {1};
      tppp_status s = tppp_all_reduce(g, 0, x, x, 16, TPPP_DTYPE_F8E4M3, TPPP_OP_SUM, nullptr);
      RANK_CHECK(s == TPPP_ERR_NOT_SUPPORTED && has(tppp_last_error(), "F8_E4M3"), "%s %s", tppp_status_string(s),
                 tppp_last_error());
      tppp_group_destroy(g);
      return 0;
    });
    CHECK_MESSAGE(th::all_zero(codes), th::codes_str(codes));
  }
}
