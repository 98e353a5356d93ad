// The safetensors loader against fixtures written by the Python `safetensors`
// package (tests/fixtures/make_fixtures.py): every malformed file and
// checkpoint gets its own status and message; whole loads equal numpy's
// bytes; for TP in {1,2,4} and PP in {1,2,3} the ranks' slices put back
// together equal the full tensor byte for byte, every tensor on exactly one
// stage, padding rows zero, and only the slice's bytes are read.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.hpp"
#include "harness.hpp"
#include "loader/checkpoint.hpp"

namespace {

const std::string kFix = TPPP_FIXTURES;

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Reference {
  std::string bytes;
  std::map<std::string, std::pair<size_t, size_t>> at;
  std::string of(const std::string& n) const {
    auto it = at.find(n);
    REQUIRE_MESSAGE(it != at.end(), n);
    return bytes.substr(it->second.first, it->second.second);
  }
};

Reference reference(const std::string& dir) {
  Reference r;
  r.bytes = slurp(dir + "/reference.bin");
  auto j = nlohmann::json::parse(slurp(dir + "/reference.json"));
  for (auto it = j.begin(); it != j.end(); ++it) r.at[it.key()] = {it.value()[0], it.value()[1]};
  return r;
}

tppp_status open_status(const std::string& path, std::string* msg) {
  try {
    tppp::Checkpoint::open(path);
  } catch (const tppp::Error& e) {
    *msg = e.what();
    return e.status();
  }
  return TPPP_OK;
}

tppp_status status_named(const std::string& s) {
  if (s == "FORMAT") return TPPP_ERR_FORMAT;
  if (s == "IO") return TPPP_ERR_IO;
  return TPPP_ERR_INVALID_ARGUMENT;
}

std::string load_all(const tppp::Checkpoint& c, const std::string& name, const tppp::SliceSpec& s, int32_t dtype) {
  const tppp::TensorRef& r = c.get(name);
  tppp::SlicePlan p = tppp::plan_slice(r.t->shape, r.t->esize, s, name);
  std::string out(p.out_bytes / r.t->esize * tppp::dtype_size(dtype), '\x5a');  // poisoned
  c.load(name, s, out.empty() ? nullptr : &out[0], out.size(), dtype);
  return out;
}

}  // namespace

TEST_SUITE("loader") {
  TEST_CASE("every malformed safetensors file: its own status and a message naming the file") {
    auto cases = nlohmann::json::parse(slurp(kFix + "/bad/cases.json"));
    REQUIRE(cases.size() >= 20);
    for (const auto& c : cases) {
      const std::string file = c["file"].get<std::string>();
      CAPTURE(file);
      std::string msg;
      CHECK(open_status(kFix + "/bad/" + file, &msg) == status_named(c["status"].get<std::string>()));
      CHECK_MESSAGE(msg.find(c["needle"].get<std::string>()) != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(file) != std::string::npos, msg);
      // The pure parser says the same on the same bytes.
      std::string b = slurp(kFix + "/bad/" + file);
      try {
        tppp::parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), b.size(), file);
        FAIL("parsed a bad file: ", file);
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_FORMAT);
      }
    }
  }

  // A header of 100,000 tensors (7.5 MB of JSON; headers up to 100 MB are
  // accepted) must open in O(n log n): the duplicate-key check once rescanned
  // the whole object per tensor and took minutes. The bound is a guard
  // against a stalled server, not a speed target (bench/loader.sh has that).
  TEST_CASE("a 100k-tensor header opens, duplicate keys still refused" * doctest::timeout(30)) {
    const int n = 100000;
    std::string json = "{";
    for (int i = 0; i < n; i++)
      json += (i ? "," : "") + std::string("\"model.layers.") + std::to_string(i / 10) + ".t" + std::to_string(i % 10) +
              ".weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" + std::to_string(8 * i) + "," +
              std::to_string(8 * i + 8) + "]}";
    json += "}";
    std::string file(8, '\0');
    const uint64_t len = json.size();
    for (int b = 0; b < 8; b++) file[b] = static_cast<char>((len >> (8 * b)) & 0xff);
    file += json;
    file.append(static_cast<size_t>(8) * n, '\0');
    const auto* bytes = reinterpret_cast<const uint8_t*>(file.data());
    tppp::StHeader h = tppp::parse_safetensors(bytes, file.size(), file.size(), "big.safetensors");
    REQUIRE(h.tensors.size() == static_cast<size_t>(n));
    CHECK(h.tensors.front().begin == 0);
    CHECK(h.tensors.back().end == static_cast<uint64_t>(8) * n);
    // The same header with the first name again at the end: refused, naming it.
    std::string dup = json.substr(0, json.size() - 1) +
                      ",\"model.layers.0.t0.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    std::string f2(8, '\0');
    for (int b = 0; b < 8; b++) f2[b] = static_cast<char>((static_cast<uint64_t>(dup.size()) >> (8 * b)) & 0xff);
    f2 += dup;
    f2.append(static_cast<size_t>(8) * n, '\0');
    try {
      tppp::parse_safetensors(reinterpret_cast<const uint8_t*>(f2.data()), f2.size(), f2.size(), "dup.safetensors");
      FAIL("a duplicate key was accepted");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_FORMAT);
      CHECK(std::string(e.what()).find("'model.layers.0.t0.weight' twice") != std::string::npos);
    }
  }

  TEST_CASE("malformed checkpoints: index, shards and config.json") {
    struct Case {
      const char* dir;
      tppp_status status;
      const char* needle;
    } cases[] = {
        {"dotdot", TPPP_ERR_FORMAT, "leaves the checkpoint directory"},
        {"absolute", TPPP_ERR_FORMAT, "absolute path"},
        {"missing_shard", TPPP_ERR_IO, "does not exist"},
        {"two_shards", TPPP_ERR_FORMAT, "in two shards"},
        {"absent_from_map", TPPP_ERR_FORMAT, "absent from the weight_map"},
        {"mapped_elsewhere", TPPP_ERR_FORMAT, "that shard does not hold it"},
        {"config_contradicts", TPPP_ERR_FORMAT, "contradicts config.json"},
        {"symlink_escape", TPPP_ERR_FORMAT, "outside the checkpoint directory"},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.dir));
      std::string msg;
      CHECK(open_status(kFix + "/badckpt/" + c.dir, &msg) == c.status);
      CHECK_MESSAGE(msg.find(c.needle) != std::string::npos, msg);
    }
    std::string msg;
    CHECK(open_status(kFix + "/no/such/dir", &msg) == TPPP_ERR_IO);
    CHECK(open_status(kFix + "/bad", &msg) == TPPP_ERR_IO);  // a directory without a model
    CHECK(msg.find("no model.safetensors") != std::string::npos);
  }

  TEST_CASE("whole tensors equal numpy's bytes, every dtype") {
    for (const char* m : {"qwen2", "llama", "dtypes", "bf16"}) {
      CAPTURE(m);
      std::string dir = kFix + "/" + m;
      auto c = tppp::Checkpoint::open(std::string(m) == "dtypes" ? dir + "/dtypes.safetensors"
                                      : std::string(m) == "bf16" ? dir + "/bf16.safetensors" : dir);
      Reference ref = reference(dir);
      CHECK(c->tensors().size() == ref.at.size());
      for (const auto& r : c->tensors()) {
        CAPTURE(r.t->name);
        if (r.t->dtype < 0) {  // F64, I16, BOOL: listed, not loadable
          char b[64];
          CHECK_THROWS_AS(c->load(r.t->name, tppp::SliceSpec(), b, sizeof b, TPPP_DTYPE_F32), tppp::Error);
          continue;
        }
        CHECK(load_all(*c, r.t->name, tppp::SliceSpec(), r.t->dtype) == ref.of(r.t->name));
      }
    }
  }

  TEST_CASE("dtype conversion on load against float64") {
    auto c = tppp::Checkpoint::open(kFix + "/llama");
    Reference ref = reference(kFix + "/llama");
    const std::string n = "model.layers.1.mlp.up_proj.weight";  // F16 in the file
    std::string raw = ref.of(n);
    std::string f32 = load_all(*c, n, tppp::SliceSpec(), TPPP_DTYPE_F32);
    std::string bf = load_all(*c, n, tppp::SliceSpec(), TPPP_DTYPE_BF16);
    const size_t count = raw.size() / 2;
    std::vector<double> want(count);
    for (size_t i = 0; i < count; i++) {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      want[i] = tppp::f16_to_f32(h);  // exact: every f16 is an f32
    }
    CHECK(th::rel_err(TPPP_DTYPE_F32, f32.data(), want) == 0);
    CHECK(th::rel_err(TPPP_DTYPE_BF16, bf.data(), want) < 4e-3);
    auto b = tppp::Checkpoint::open(kFix + "/bf16/bf16.safetensors");
    std::string w = load_all(*b, "w", tppp::SliceSpec(), TPPP_DTYPE_F32);
    std::string rb = reference(kFix + "/bf16").of("w");
    std::vector<double> wb(rb.size() / 2);
    for (size_t i = 0; i < wb.size(); i++) {
      uint16_t h;
      std::memcpy(&h, rb.data() + 2 * i, 2);
      wb[i] = tppp::bf16_to_f32(h);
    }
    CHECK(th::rel_err(TPPP_DTYPE_F32, w.data(), wb) == 0);
    char small[4];
    CHECK_THROWS_AS(b->load("w", tppp::SliceSpec(), small, sizeof small, TPPP_DTYPE_F32), tppp::Error);
    CHECK_THROWS_AS(b->load("w", tppp::SliceSpec(), small, sizeof small, TPPP_DTYPE_I32), tppp::Error);
  }

  TEST_CASE("TP x PP slices reassemble every tensor byte for byte") {
    for (const char* m : {"qwen2", "llama"}) {
      auto c = tppp::Checkpoint::open(kFix + "/" + m);
      Reference ref = reference(kFix + "/" + m);
      std::vector<std::string> names;
      for (const auto& r : c->tensors()) names.push_back(r.t->name);
      if (c->config().tie_word_embeddings) names.push_back("lm_head.weight");
      for (int64_t tp : {1, 2, 4}) {
        for (int64_t pp : {1, 2, 3}) {
          CAPTURE(m);
          CAPTURE(tp);
          CAPTURE(pp);
          std::map<std::string, int> stages_holding;
          for (int64_t s = 0; s < pp; s++) {
            tppp::GridSpec g0{tp, 0, pp, s, {}};
            c->validate_grid(g0);
            for (const std::string& n : names) {
              CAPTURE(n);
              tppp::ShardDecision d0 = c->decide(n, g0);
              if (d0.rule == tppp::ShardRule::OtherStage) continue;
              stages_holding[n]++;
              const tppp::TensorRef& r = c->get(d0.source);
              const std::string full = ref.of(d0.source);
              std::vector<std::string> parts;
              uint64_t read = 0;
              for (int64_t t = 0; t < tp; t++) {
                tppp::GridSpec g{tp, t, pp, s, {}};
                tppp::ShardDecision d = c->decide(n, g);
                REQUIRE(d.rule == d0.rule);
                parts.push_back(load_all(*c, d.source, d.spec, r.t->dtype));
                read += tppp::plan_slice(r.t->shape, r.t->esize, d.spec, n).read_bytes;
              }
              // Put the pieces back together along the split dim.
              const tppp::SliceSpec& sp = d0.spec;
              if (d0.rule == tppp::ShardRule::Replicated || sp.parts == 1) {
                for (const auto& p : parts) CHECK(p == full);
                continue;
              }
              if (d0.rule == tppp::ShardRule::KvColumn && sp.parts < tp) {  // replicated kv heads
                const int64_t rows = r.t->shape[0] / sp.parts;
                const size_t rb = static_cast<size_t>(rows) * (full.size() / static_cast<size_t>(r.t->shape[0]));
                for (int64_t t = 0; t < tp; t++)
                  CHECK(parts[static_cast<size_t>(t)] == full.substr(static_cast<size_t>(t * sp.parts / tp) * rb, rb));
                continue;
              }
              CHECK(read == full.size());  // each byte read once across the TP group
              const int64_t D = r.t->shape[static_cast<size_t>(sp.dim)];
              const int64_t per = (D + tp - 1) / tp;
              size_t outer = 1, inner = r.t->esize;
              for (int i = 0; i < sp.dim; i++) outer *= static_cast<size_t>(r.t->shape[static_cast<size_t>(i)]);
              for (size_t i = static_cast<size_t>(sp.dim) + 1; i < r.t->shape.size(); i++)
                inner *= static_cast<size_t>(r.t->shape[i]);
              std::string joined;
              for (size_t o = 0; o < outer; o++)
                for (int64_t t = 0; t < tp; t++) {
                  const int64_t a = std::min(D, t * per), b = std::min(D, (t + 1) * per);
                  const std::string& p = parts[static_cast<size_t>(t)];
                  joined += p.substr(o * static_cast<size_t>(per) * inner, static_cast<size_t>(b - a) * inner);
                  // padding rows (vocab) must be zeros
                  std::string pad = p.substr(o * static_cast<size_t>(per) * inner + static_cast<size_t>(b - a) * inner,
                                             static_cast<size_t>(per - (b - a)) * inner);
                  CHECK(pad == std::string(pad.size(), '\0'));
                }
              CHECK(joined == full);
            }
          }
          for (const std::string& n : names) {
            CAPTURE(n);
            CHECK(stages_holding[n] == 1);  // each tensor on exactly one stage
          }
        }
      }
    }
  }

  TEST_CASE("sharding rules: kinds, divisibility, PP ranges") {
    auto c = tppp::Checkpoint::open(kFix + "/qwen2");
    tppp::GridSpec g{2, 1, 1, 0, {}};
    CHECK(c->decide("model.layers.0.self_attn.q_proj.weight", g).rule == tppp::ShardRule::Column);
    CHECK(c->decide("model.layers.0.self_attn.q_proj.bias", g).rule == tppp::ShardRule::Column);
    CHECK(c->decide("model.layers.0.self_attn.k_proj.bias", g).rule == tppp::ShardRule::KvColumn);
    CHECK(c->decide("model.layers.0.self_attn.o_proj.weight", g).spec.dim == 1);
    CHECK(c->decide("model.layers.0.mlp.down_proj.weight", g).rule == tppp::ShardRule::Row);
    CHECK(c->decide("model.embed_tokens.weight", g).rule == tppp::ShardRule::Vocab);
    CHECK(c->decide("model.norm.weight", g).rule == tppp::ShardRule::Replicated);
    // 4 heads do not split over 3 ranks: the tensor is named.
    tppp::GridSpec g3{3, 0, 1, 0, {}};
    try {
      c->validate_grid(g3);
      FAIL("tp=3 accepted");
    } catch (const tppp::Error& e) {
      CHECK(e.status() == TPPP_ERR_INVALID_ARGUMENT);
      CHECK(std::string(e.what()).find("not divisible by tp 3") != std::string::npos);
    }
    auto l = tppp::Checkpoint::open(kFix + "/llama");  // tied: lm_head comes from embed_tokens
    tppp::GridSpec last{2, 0, 2, 1, {}};
    tppp::ShardDecision d = l->decide("lm_head.weight", last);
    CHECK(d.source == "model.embed_tokens.weight");
    CHECK(d.rule == tppp::ShardRule::Vocab);
    CHECK(l->decide("lm_head.weight", tppp::GridSpec{2, 0, 2, 0, {}}).rule == tppp::ShardRule::OtherStage);
    auto r = tppp::pp_layer_ranges(5, 3, {});
    CHECK(r == std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 4}, {4, 5}});
    r = tppp::pp_layer_ranges(5, 2, {1, 4});
    CHECK(r == std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 5}});
    CHECK_THROWS_AS(tppp::pp_layer_ranges(5, 2, {1, 3}), tppp::Error);
    CHECK_THROWS_AS(tppp::pp_layer_ranges(5, 2, {1}), tppp::Error);
    // Balanced by cost: SmolLM2-135M (30 layers of 3.54M weights, a 49152 x 576
    // LM head of 28.3M on the last stage) is 19 + 11, not 15 + 15.
    const double smol_layer = 576.0 * 15 * 64 + 576.0 * 576 + 3.0 * 576 * 1536, smol_head = 49152.0 * 576;
    CHECK(tppp::balanced_layer_split(30, 2, smol_layer, 0, smol_head) == std::vector<int64_t>{19, 11});
    CHECK(tppp::balanced_layer_split(30, 3, smol_layer, 0, smol_head) == std::vector<int64_t>{13, 13, 4});
    CHECK(tppp::balanced_layer_split(5, 3, 1.0, 0, 0) == std::vector<int64_t>{2, 2, 1});  // no extras: even
    CHECK(tppp::balanced_layer_split(3, 3, 1.0, 0, 100) == std::vector<int64_t>{1, 1, 1});  // a layer each
    CHECK_THROWS_AS(tppp::balanced_layer_split(2, 3, 1.0, 0, 0), tppp::Error);
    // host split: layer 0 alone on stage 0
    tppp::GridSpec hs{1, 0, 2, 0, {1, 4}};
    CHECK(l->decide("model.layers.1.mlp.up_proj.weight", hs).rule == tppp::ShardRule::OtherStage);
    CHECK(l->decide("model.layers.0.mlp.up_proj.weight", hs).rule == tppp::ShardRule::Column);
  }

  TEST_CASE("a file truncated after opening gives IO, not SIGBUS") {
    std::string tmp = "/tmp/tppp_trunc_" + std::to_string(getpid()) + ".safetensors";
    std::string b = slurp(kFix + "/llama/model.safetensors");
    {
      std::ofstream f(tmp, std::ios::binary);
      f << b;
    }
    auto c = tppp::Checkpoint::open(tmp);
    REQUIRE(truncate(tmp.c_str(), static_cast<off_t>(b.size() / 2)) == 0);
    bool io = false;
    for (const auto& r : c->tensors()) {
      try {
        load_all(*c, r.t->name, tppp::SliceSpec(), r.t->dtype);
      } catch (const tppp::Error& e) {
        CHECK(e.status() == TPPP_ERR_IO);
        CHECK(std::string(e.what()).find("truncated") != std::string::npos);
        io = true;
      }
    }
    CHECK(io);
    unlink(tmp.c_str());
  }
}
