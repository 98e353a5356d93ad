// libFuzzer target: model.safetensors.index.json and config.json parsers.
#include <cstdint>
#include <string>

#include "core/error.hpp"
#include "loader/safetensors.hpp"
#include "loader/shard_plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* b = reinterpret_cast<const char*>(data);
  try {
    tppp::StIndex idx = tppp::parse_index(b, size, "fuzz.index.json");
    for (const auto& kv : idx.weight_map)
      if (kv.second.empty() || kv.second[0] == '/' || kv.second.find("../") != std::string::npos) __builtin_trap();
  } catch (const tppp::Error&) {
  }
  try {
    tppp::parse_model_config(b, size, "fuzz.config.json");
  } catch (const tppp::Error&) {
  }
  return 0;
}
