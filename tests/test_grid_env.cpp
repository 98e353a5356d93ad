// Pure pieces: the rank grid and launcher environments, no processes.
#include <doctest/doctest.h>

#include <map>

#include "core/error.hpp"
#include "group/group.hpp"
#include "core/launch_env.hpp"
#include "harness.hpp"

namespace {

tppp::EnvLookup env_of(const std::map<std::string, std::string>& m) {
  return [m](const char* k) -> const char* {
    auto it = m.find(k);
    return it == m.end() ? nullptr : it->second.c_str();
  };
}

tppp_status status_of(const std::map<std::string, std::string>& m, std::string* msg) {
  try {
    tppp::read_launch_env(env_of(m));
  } catch (const tppp::Error& e) {
    *msg = e.what();
    return e.status();
  }
  return TPPP_OK;
}

}  // namespace

TEST_SUITE("grid_env") {
  TEST_CASE("grid layout: TP contiguous, PP strided (tp=4, pp=2)") {
    const int tp = 4, pp = 2;
    for (int r = 0; r < tp * pp; r++) {
      tppp::GridPos p = tppp::grid_position(r, tp, pp);
      CHECK(p.pp_rank * tp + p.tp_rank == r);
      CHECK(p.prev_stage == (p.pp_rank == 0 ? -1 : r - tp));
      CHECK(p.next_stage == (p.pp_rank == pp - 1 ? -1 : r + tp));
    }
    tppp::Comm c = tppp::make_comm(TPPP_SCOPE_PP, 6, tp, pp);
    CHECK(c.ranks == std::vector<int>{2, 6});
    CHECK(c.me == 1);
    c = tppp::make_comm(TPPP_SCOPE_TP, 6, tp, pp);
    CHECK(c.ranks == std::vector<int>{4, 5, 6, 7});
    CHECK(c.me == 2);
    c = tppp::make_comm(TPPP_SCOPE_WORLD, 6, tp, pp);
    CHECK(c.size() == 8);
    CHECK(c.me == 6);
    CHECK_THROWS_AS(tppp::make_comm(5, 0, 1, 1), tppp::Error);
  }

  TEST_CASE("ranks on this host (the CPU pool's divisor): LOCAL_WORLD_SIZE, Open MPI's, else 1; garbage named") {
    CHECK(tppp::local_world_size(env_of({})) == 1);
    CHECK(tppp::local_world_size(env_of({{"LOCAL_WORLD_SIZE", "6"}})) == 6);
    CHECK(tppp::local_world_size(env_of({{"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}})) == 3);
    CHECK(tppp::local_world_size(env_of({{"LOCAL_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}})) == 2);
    for (const char* bad : {"0", "-1", "x", "70000"}) {
      try {
        tppp::local_world_size(env_of({{"LOCAL_WORLD_SIZE", bad}}));
        FAIL("LOCAL_WORLD_SIZE=" << bad << " accepted");
      } catch (const tppp::Error& err) {
        CHECK(err.status() == TPPP_ERR_INVALID_ARGUMENT);
        CHECK(std::string(err.what()).find("LOCAL_WORLD_SIZE") != std::string::npos);
      }
    }
  }

  TEST_CASE("torchrun / tppp-run variables") {
    auto e = tppp::read_launch_env(env_of({{"RANK", "3"},
                                           {"WORLD_SIZE", "4"},
                                           {"LOCAL_RANK", "1"},
                                           {"MASTER_ADDR", "10.0.0.1"},
                                           {"MASTER_PORT", "29500"},
                                           {"TORCHELASTIC_RUN_ID", "abc"}}));
    CHECK(e.launcher == "torchrun");
    CHECK(e.rank == 3);
    CHECK(e.world == 4);
    CHECK(e.local_rank == 1);
    CHECK(e.master_addr == "10.0.0.1");
    CHECK(e.port == 29501);  // the torchrun agent's store owns MASTER_PORT
    auto f = tppp::read_launch_env(env_of(
        {{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "4000"}, {"TPPP_RUN_ID", "x"}}));
    CHECK(f.launcher == "tppp-run");
    CHECK(f.port == 4000);
    CHECK(f.magic != e.magic);
    auto g = tppp::read_launch_env(env_of({{"RANK", "0"},
                                           {"WORLD_SIZE", "4"},
                                           {"MASTER_ADDR", "127.0.0.1"},
                                           {"MASTER_PORT", "4000"},
                                           {"TPPP_BOOTSTRAP_PORT", "5000"},
                                           {"TPPP_RUN_ID", "x"}}));
    CHECK(g.port == 5000);
  }

  TEST_CASE("Open MPI variables, single node derives the address and port") {
    std::map<std::string, std::string> m = {{"OMPI_COMM_WORLD_RANK", "2"},
                                            {"OMPI_COMM_WORLD_SIZE", "4"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                                            {"OMPI_MCA_ess_base_jobid", "12345"}};
    auto e = tppp::read_launch_env(env_of(m));
    CHECK(e.launcher == "openmpi");
    CHECK(e.rank == 2);
    CHECK(e.master_addr == "127.0.0.1");
    CHECK(e.port >= 20000);
    CHECK(e.port < 40000);
    m["OMPI_COMM_WORLD_RANK"] = "0";
    auto e0 = tppp::read_launch_env(env_of(m));
    CHECK(e0.port == e.port);  // every rank agrees
    CHECK(e0.magic == e.magic);
    m["OMPI_MCA_ess_base_jobid"] = "999";
    CHECK(tppp::read_launch_env(env_of(m)).magic != e.magic);  // another job
    m["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2";                       // two nodes
    std::string msg;
    CHECK(status_of(m, &msg) == TPPP_ERR_INVALID_USAGE);
    CHECK(msg.find("MASTER_ADDR") != std::string::npos);
  }

  TEST_CASE("Slurm variables") {
    auto e = tppp::read_launch_env(env_of({{"SLURM_PROCID", "1"},
                                           {"SLURM_NTASKS", "2"},
                                           {"SLURM_LOCALID", "1"},
                                           {"SLURM_NNODES", "1"},
                                           {"SLURM_JOB_ID", "77"}}));
    CHECK(e.launcher == "slurm");
    CHECK(e.rank == 1);
    CHECK(e.world == 2);
    CHECK(e.local_rank == 1);
    CHECK(e.master_addr == "127.0.0.1");
  }

  TEST_CASE("no launcher at all: a singleton, world 1, rank 0 (as MPI without mpirun)") {
    auto e = tppp::read_launch_env(env_of({}));
    CHECK(e.launcher == "singleton");
    CHECK(e.world == 1);
    CHECK(e.rank == 0);
    CHECK(e.local_rank == 0);
    CHECK(e.master_addr == "127.0.0.1");
    CHECK(e.port == 0);
    CHECK(tppp::read_launch_env(env_of({{"TPPP_BOOTSTRAP_PORT", "4321"}})).port == 4321);
  }

  TEST_CASE("bad launcher environments name the variable") {
    std::string msg;
    CHECK(status_of({{"RANK", "0"}}, &msg) == TPPP_ERR_INVALID_USAGE);  // half a pair
    CHECK(msg.find("RANK is set but its partner") != std::string::npos);
    CHECK(status_of({{"SLURM_NTASKS", "2"}}, &msg) == TPPP_ERR_INVALID_USAGE);
    CHECK(msg.find("SLURM_NTASKS") != std::string::npos);
    CHECK(status_of({{"RANK", "x1"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}, &msg) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(msg.find("RANK='x1'") != std::string::npos);
    CHECK(status_of({{"RANK", "4"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}, &msg) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(msg.find("rank 4") != std::string::npos);
    CHECK(status_of({{"RANK", "0"}, {"WORLD_SIZE", "-2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}, &msg) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(msg.find("WORLD_SIZE") != std::string::npos);
    CHECK(status_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}}, &msg) ==
          TPPP_ERR_INVALID_ARGUMENT);
    CHECK(msg.find("MASTER_PORT") != std::string::npos);
    CHECK(status_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "7000"}}, &msg) == TPPP_ERR_INVALID_USAGE);
    CHECK(msg.find("MASTER_ADDR") != std::string::npos);
  }

  TEST_CASE("group config validation") {
    tppp::GroupConfig c;
    c.world = 4;
    c.tp = 2;
    c.pp = 2;
    c.rank = 3;
    CHECK_NOTHROW(tppp::validate_group_config(c));
    c.world = 70000;
    CHECK_THROWS_AS(tppp::validate_group_config(c), tppp::Error);
    c.world = 4;
    c.device = -2;
    CHECK_THROWS_AS(tppp::validate_group_config(c), tppp::Error);
  }
}
