// Pure pieces: the rank grid and launcher environments, no processes.
#include <doctest/doctest.h>

#include <map>

#include "core/error.hpp"
#include "group/group.hpp"
#include "core/bootstrap.hpp"
#include "core/hash.hpp"
#include "core/launch_env.hpp"
#include "core/netif.hpp"
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

  TEST_CASE("the interface a root advertises: the default route's, else not a container bridge, else loopback") {
    auto ip = [](const char* a) { return tppp::resolve_ipv4(a); };
    auto nic = [&](const char* name, const char* a, bool lo = false) {
      tppp::NetIf n;
      n.name = name;
      n.ip_be = ip(a);
      n.loopback = lo;
      return n;
    };
    // Docker's bridge comes first in the kernel's order, as on the hosts of the issue.
    std::vector<tppp::NetIf> ifs = {nic("lo", "127.0.0.1", true), nic("docker0", "172.17.0.1"),
                                    nic("virbr0", "192.168.122.1"), nic("eth0", "10.1.2.3"), nic("ib0", "10.9.0.3")};
    CHECK(tppp::pick_advertised(ifs, 0).name == "eth0");                  // no default route: skip the bridges
    CHECK(tppp::pick_advertised(ifs, ip("10.9.0.3")).name == "ib0");      // the default route's interface
    CHECK(tppp::pick_advertised(ifs, ip("8.8.8.8")).name == "eth0");      // not ours: ignored
    CHECK(tppp::pick_advertised({ifs[0], ifs[1]}, 0).name == "docker0");  // nothing else: better than loopback
    tppp::NetIf only_lo = tppp::pick_advertised({ifs[0]}, 0);
    CHECK((only_lo.loopback && only_lo.ip_be == ip("127.0.0.1")));
    CHECK(tppp::pick_advertised({}, 0).loopback);
    CHECK(tppp::interface_with(ifs, ip("10.1.2.3")).name == "eth0");
    CHECK(tppp::interface_with(ifs, ip("10.1.2.4")).name.empty());  // not on this host
    CHECK(tppp::interface_with(ifs, ip("127.0.0.5")).loopback);
    // On this machine: a route to itself leaves by one of its own interfaces.
    uint32_t src = 0;
    CHECK(tppp::route_source(ip("127.0.0.1"), &src));
    CHECK(src == ip("127.0.0.1"));
    CHECK(tppp::interface_toward(ip("127.0.0.1")).loopback);
  }

  TEST_CASE("the hello's proof of the group secret: SipHash-2-4, one proof per secret, group and rank") {
    // The reference vector of the SipHash paper: key 00..0f, message 00..0e.
    unsigned char m[15];
    for (int i = 0; i < 15; i++) m[i] = static_cast<unsigned char>(i);
    CHECK(tppp::siphash24(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, m, 15) == 0xa129ca6149be45e5ull);
    CHECK(tppp::siphash24(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, m, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(tppp::hello_auth("", 7, 1, 2) == 0);  // no secret: no proof
    const uint64_t a = tppp::hello_auth("s3cret", 7, 1, 2);
    CHECK(a != 0);
    CHECK(a == tppp::hello_auth("s3cret", 7, 1, 2));
    CHECK(a != tppp::hello_auth("s3cret!", 7, 1, 2));
    CHECK(a != tppp::hello_auth("s3cret", 8, 1, 2));  // another group
    CHECK(a != tppp::hello_auth("s3cret", 7, 2, 3));  // another rank
    CHECK(a != tppp::hello_auth("s3cret", 7, 1, 3));
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
