// config.json -> ModelSpec, and RoPE frequencies (see the header).
#include "model/model_config.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {
namespace {

using nlohmann::json;

double num(const json& j, const char* k, double dflt, const std::string& file, const char* where = "") {
  if (!j.contains(k) || j[k].is_null()) return dflt;
  if (!j[k].is_number()) fail(TPPP_ERR_FORMAT, "%s: field \"%s%s\" is not a number", file.c_str(), where, k);
  return j[k].get<double>();
}

bool flag(const json& j, const char* k, bool dflt, const std::string& file) {
  if (!j.contains(k) || j[k].is_null()) return dflt;
  if (!j[k].is_boolean()) fail(TPPP_ERR_FORMAT, "%s: field \"%s\" is not a boolean", file.c_str(), k);
  return j[k].get<bool>();
}

std::string str(const json& j, const char* k, const std::string& file) {
  if (!j.contains(k) || j[k].is_null()) return "";
  if (!j[k].is_string()) fail(TPPP_ERR_FORMAT, "%s: field \"%s\" is not a string", file.c_str(), k);
  return j[k].get<std::string>();
}

[[noreturn]] void unsupported(const std::string& file, const char* field, const std::string& value,
                              const char* why) {
  fail(TPPP_ERR_NOT_SUPPORTED, "%s: %s = %s is not supported (%s)", file.c_str(), field, value.c_str(), why);
}

// rope_parameters (transformers 5) or rope_theta + rope_scaling (older).
RopeSpec parse_rope(const json& j, const std::string& file) {
  RopeSpec r;
  const char* field = nullptr;
  json p = json::object();
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    field = "rope_parameters";
    p = j["rope_parameters"];
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    field = "rope_scaling";
    p = j["rope_scaling"];
  }
  if (!p.is_object()) fail(TPPP_ERR_FORMAT, "%s: field \"%s\" is not an object", file.c_str(), field);
  r.theta = num(p, "rope_theta", num(j, "rope_theta", 10000.0, file), file, "rope_parameters.");
  std::string type = str(p, "rope_type", file);
  if (type.empty()) type = str(p, "type", file);
  if (type.empty()) type = "default";
  const std::string tfield = std::string(field ? field : "rope_scaling") + ".rope_type";
  if (type == "llama3") {
    r.llama3 = true;
    r.factor = num(p, "factor", 8.0, file);
    r.low_freq_factor = num(p, "low_freq_factor", 1.0, file);
    r.high_freq_factor = num(p, "high_freq_factor", 4.0, file);
    r.original_max = num(p, "original_max_position_embeddings", 8192.0, file);
    if (!(r.factor > 0) || !(r.high_freq_factor > r.low_freq_factor) || !(r.original_max > 0))
      fail(TPPP_ERR_FORMAT, "%s: %s: llama3 needs factor > 0, high_freq_factor > low_freq_factor", file.c_str(),
           field);
  } else if (type != "default") {
    unsupported(file, tfield.c_str(), "\"" + type + "\"", "RoPE types run here: default, llama3");
  }
  const double partial = num(j, "partial_rotary_factor", 1.0, file);
  if (partial != 1.0) unsupported(file, "partial_rotary_factor", std::to_string(partial), "only 1.0");
  if (!(r.theta > 0)) fail(TPPP_ERR_FORMAT, "%s: rope_theta must be > 0", file.c_str());
  return r;
}

}  // namespace

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "LlamaForCausalLM";
    case Arch::Qwen2: return "Qwen2ForCausalLM";
    case Arch::Qwen3: return "Qwen3ForCausalLM";
    default: return "MistralForCausalLM";
  }
}

ModelSpec parse_model_spec(const std::string& text, const std::string& file) {
  ModelSpec s;
  s.dims = parse_model_config(text.data(), text.size(), file);
  const json j = json::parse(text);  // valid: parse_model_config checked it
  std::string arch;
  if (j.contains("architectures")) {
    const json& a = j["architectures"];
    if (!a.is_array() || a.size() != 1 || !a[0].is_string())
      fail(TPPP_ERR_FORMAT, "%s: field \"architectures\" is not a list of one name", file.c_str());
    arch = a[0].get<std::string>();
  } else {
    const std::string mt = str(j, "model_type", file);
    arch = mt == "llama" ? "LlamaForCausalLM" : mt == "qwen2" ? "Qwen2ForCausalLM" : mt == "qwen3" ? "Qwen3ForCausalLM"
           : mt == "mistral" ? "MistralForCausalLM" : "model_type \"" + mt + "\"";
  }
  if (arch == "LlamaForCausalLM") s.arch = Arch::Llama;
  else if (arch == "Qwen2ForCausalLM") s.arch = Arch::Qwen2;
  else if (arch == "Qwen3ForCausalLM") s.arch = Arch::Qwen3;
  else if (arch == "MistralForCausalLM") s.arch = Arch::Mistral;
  else
    unsupported(file, "architectures", "[\"" + arch + "\"]",
                "architectures run here: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM");
  s.arch_name = arch;
  s.rms_eps = num(j, "rms_norm_eps", 1e-6, file);
  if (!(s.rms_eps > 0)) fail(TPPP_ERR_FORMAT, "%s: rms_norm_eps must be > 0", file.c_str());
  s.rope = parse_rope(j, file);
  const std::string act = str(j, "hidden_act", file);
  if (!act.empty() && act != "silu") unsupported(file, "hidden_act", "\"" + act + "\"", "only silu");
  const bool attn_bias = flag(j, "attention_bias", false, file);
  s.qkv_bias = s.arch == Arch::Qwen2 || attn_bias;
  s.o_bias = attn_bias && s.arch != Arch::Qwen2;
  s.qk_norm = s.arch == Arch::Qwen3;
  if (flag(j, "mlp_bias", false, file)) unsupported(file, "mlp_bias", "true", "MLP without bias only");
  if (flag(j, "use_sliding_window", false, file))
    unsupported(file, "use_sliding_window", "true", "full attention only");
  if (s.arch == Arch::Mistral && j.contains("sliding_window") && !j["sliding_window"].is_null()) {
    const double w = num(j, "sliding_window", 0, file), maxpos = num(j, "max_position_embeddings", 0, file);
    if (w < maxpos) unsupported(file, "sliding_window", std::to_string(static_cast<long long>(w)), "full attention only");
  }
  if (j.contains("layer_types") && j["layer_types"].is_array())
    for (const json& t : j["layer_types"])
      if (!t.is_string() || t.get<std::string>() != "full_attention")
        unsupported(file, "layer_types", t.dump(), "full_attention layers only");
  for (const char* k : {"num_experts", "num_local_experts", "n_routed_experts"})
    if (num(j, k, 0, file) > 0) unsupported(file, k, std::to_string(static_cast<long long>(num(j, k, 0, file))), "no MoE");
  s.eos = parse_eos_ids(text, file, s.dims.vocab);
  return s;
}

std::vector<int32_t> parse_eos_ids(const std::string& text, const std::string& file, int64_t vocab) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    fail(TPPP_ERR_FORMAT, "%s: not JSON: %s", file.c_str(), e.what());
  }
  std::vector<int32_t> ids;
  if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return ids;
  const json& e = j["eos_token_id"];
  const json list = e.is_array() ? e : json::array({e});
  for (const json& v : list) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab)
      fail(TPPP_ERR_FORMAT, "%s: eos_token_id %s is not a token id in [0, %lld)", file.c_str(), v.dump().c_str(),
           static_cast<long long>(vocab));
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

std::vector<float> rope_inv_freq(const RopeSpec& r, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  const float base = static_cast<float>(r.theta);
  for (int64_t i = 0; i < half; i++)  // 1 / base^(2i/d), in f32 as torch computes it
    f[static_cast<size_t>(i)] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
  if (!r.llama3) return f;
  const float factor = static_cast<float>(r.factor), lo = static_cast<float>(r.low_freq_factor),
              hi = static_cast<float>(r.high_freq_factor), old = static_cast<float>(r.original_max);
  const float low_wavelen = old / lo, high_wavelen = old / hi;
  const float kPi = 3.14159265358979323846f;
  for (float& x : f) {
    const float wavelen = 2 * kPi / x;
    float v = wavelen > low_wavelen ? x / factor : x;
    const float smooth = (old / wavelen - lo) / (hi - lo);
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (medium) v = (1 - smooth) * v / factor + smooth * v;
    x = v;
  }
  return f;
}

}  // namespace tppp
