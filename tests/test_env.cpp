// The environment settings registry (src/core/env): README lists exactly the
// registry's settings, and each setting is read when the registry says.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "core/env.hpp"
#include "core/error.hpp"
#include "harness.hpp"

namespace {

// The names in README.md's "Environment settings" table (first column).
std::set<std::string> readme_settings(std::string* section) {
  std::ifstream f(std::string(TPPP_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const size_t at = text.find("## Environment settings");
  std::set<std::string> names;
  if (at == std::string::npos) return names;
  const size_t end = text.find("\n## ", at + 1);
  *section = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
  std::regex row(R"(\n\| `(TPPP_[A-Z0-9_]+)` \|)");
  for (std::sregex_iterator it(section->begin(), section->end(), row), e; it != e; ++it) names.insert((*it)[1]);
  return names;
}

}  // namespace

TEST_SUITE("env") {
  TEST_CASE("README lists exactly the registry's settings, with their defaults") {
    std::string section;
    const std::set<std::string> documented = readme_settings(&section);
    REQUIRE_MESSAGE(!documented.empty(), "README.md has no '## Environment settings' table");
    std::set<std::string> registered;
    for (int i = 0; i < static_cast<int>(tppp::Env::Count); i++) {
      const tppp::EnvSetting& s = tppp::env_settings()[i];
      CHECK(static_cast<int>(s.id) == i);
      registered.insert(s.name);
      // The row names the type, the default and when it is read.
      const std::string row_start = std::string("| `") + s.name + "` | " + s.type + " | ";
      CHECK_MESSAGE(section.find(row_start) != std::string::npos, "README row for ", s.name, " should start with '",
                    row_start, "'");
    }
    for (const std::string& n : documented) CHECK_MESSAGE(registered.count(n), n, " is in README but not registered");
    for (const std::string& n : registered) CHECK_MESSAGE(documented.count(n), n, " is registered but not in README");
  }

  TEST_CASE("once-settings keep their first value; per-use settings are read each time") {
    // TPPP_ALLOW_TF32 is a once-setting: whatever this process read first stays.
    const bool first = tppp::env_flag(tppp::Env::AllowTf32);
    {
      th::ScopedEnv e("TPPP_ALLOW_TF32", first ? "0" : "1");
      CHECK(tppp::env_flag(tppp::Env::AllowTf32) == first);
    }
    CHECK(tppp::env_setting(tppp::Env::AllowTf32).once);
    CHECK_FALSE(tppp::env_setting(tppp::Env::BootstrapPort).once);
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", "4242");
      CHECK(tppp::env_str(tppp::Env::BootstrapPort) == "4242");
    }
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", "4343");
      CHECK(tppp::env_str(tppp::Env::BootstrapPort) == "4343");
    }
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", "0");
      CHECK_FALSE(tppp::env_flag(tppp::Env::BootstrapPort));
    }
  }

  TEST_CASE("int settings: whole numbers in range, the registry's default when unset, else INVALID_ARGUMENT naming it") {
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", nullptr);
      CHECK(tppp::env_int(tppp::Env::BootstrapPort, 0, 65535) == 0);  // the registry's "0"
    }
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", "");
      CHECK(tppp::env_int(tppp::Env::BootstrapPort, 0, 65535) == 0);
    }
    {
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", "4242");
      CHECK(tppp::env_int(tppp::Env::BootstrapPort, 0, 65535) == 4242);
    }
    for (const char* bad : {"abc", "12ab", "-1", "65536", " ", "99999999999999999999"}) {
      CAPTURE(bad);
      th::ScopedEnv e("TPPP_BOOTSTRAP_PORT", bad);
      try {
        tppp::env_int(tppp::Env::BootstrapPort, 0, 65535);
        FAIL("accepted");
      } catch (const tppp::Error& err) {
        CHECK(err.status() == TPPP_ERR_INVALID_ARGUMENT);
        CHECK(std::string(err.what()).find("TPPP_BOOTSTRAP_PORT") != std::string::npos);
      }
    }
  }
}
