// safetensors parsing with nlohmann::json: a SAX pass catches duplicate keys
// (which the DOM parse would silently merge), then the DOM parse.
#include "loader/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "c_api.h"
#include "core/error.hpp"

namespace tppp {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  int32_t dtype;
  size_t esize;
};

const DtypeInfo kDtypes[] = {
    {"F32", TPPP_DTYPE_F32, 4},         {"F16", TPPP_DTYPE_F16, 2},         {"BF16", TPPP_DTYPE_BF16, 2},
    {"F8_E4M3", TPPP_DTYPE_F8E4M3, 1},  {"F8_E5M2", TPPP_DTYPE_F8E5M2, 1},  {"I8", TPPP_DTYPE_I8, 1},
    {"U8", TPPP_DTYPE_U8, 1},           {"I32", TPPP_DTYPE_I32, 4},         {"I64", TPPP_DTYPE_I64, 8},
    {"F64", -1, 8},                     {"BOOL", -1, 1},                    {"I16", -1, 2},
    {"U16", -1, 2},                     {"U32", -1, 4},                     {"U64", -1, 8},
};

// Finds the first key that appears twice in one object, in one SAX pass (a
// set per open object: O(n log n)). nlohmann's DOM parse would silently keep
// the last of two equal keys, and its callback parser rescans the enclosing
// object at every object end, which is O(n^2) in the number of tensors (a
// 100k-tensor header took minutes).
class DuplicateKeys final : public nlohmann::json_sax<json> {
 public:
  std::string dup;    // the first duplicate key, if any
  std::string error;  // the parse error, if any
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second && dup.empty()) dup = k;
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }

 private:
  std::vector<std::set<std::string>> keys_;
};

// Parses JSON, failing on malformed input and on duplicate keys in any object.
json parse_strict(const char* b, size_t n, const std::string& file, const char* what) {
  auto bad_json = [&](const std::string& m) {
    const bool utf8 = m.find("UTF-8") != std::string::npos || m.find("utf-8") != std::string::npos;
    fail(TPPP_ERR_FORMAT, "%s: %s is not valid JSON%s: %s", file.c_str(), what, utf8 ? " (bad UTF-8)" : "", m.c_str());
  };
  DuplicateKeys check;
  if (!json::sax_parse(b, b + n, &check)) bad_json(check.error);
  if (!check.dup.empty()) fail(TPPP_ERR_FORMAT, "%s: %s has the key '%s' twice", file.c_str(), what, check.dup.c_str());
  json j;
  try {
    j = json::parse(b, b + n);
  } catch (const json::exception& e) {
    bad_json(e.what());
  }
  if (!j.is_object()) fail(TPPP_ERR_FORMAT, "%s: %s is not a JSON object", file.c_str(), what);
  return j;
}

uint64_t read_u64le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

}  // namespace

const StTensor* StHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

uint64_t safetensors_header_bytes(const uint8_t* prefix, size_t n, uint64_t file_size, const std::string& file) {
  if (file_size < 8 || n < 8)
    fail(TPPP_ERR_FORMAT, "%s: %llu bytes is shorter than the 8-byte safetensors header length", file.c_str(),
         static_cast<unsigned long long>(file_size < n ? file_size : n));
  uint64_t len = read_u64le(prefix);
  if (len > kMaxSafetensorsHeader)
    fail(TPPP_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", file.c_str(),
         static_cast<unsigned long long>(len));
  if (len > file_size - 8)
    fail(TPPP_ERR_FORMAT, "%s: header length %llu runs past the end of the %llu-byte file", file.c_str(),
         static_cast<unsigned long long>(len), static_cast<unsigned long long>(file_size));
  if (len < 2) fail(TPPP_ERR_FORMAT, "%s: header length %llu cannot hold a JSON object", file.c_str(),
                    static_cast<unsigned long long>(len));
  return 8 + len;
}

StHeader parse_safetensors(const uint8_t* bytes, size_t n, uint64_t file_size, const std::string& file) {
  StHeader h;
  uint64_t need = safetensors_header_bytes(bytes, n, file_size, file);
  if (n < need) fail(TPPP_ERR_FORMAT, "%s: only %zu of the %llu header bytes are available", file.c_str(), n,
                     static_cast<unsigned long long>(need));
  h.header_len = need - 8;
  h.data_offset = need;
  const uint64_t data_size = file_size - need;
  json j = parse_strict(reinterpret_cast<const char*>(bytes + 8), h.header_len, file, "the safetensors header");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(TPPP_ERR_FORMAT, "%s: __metadata__ is not an object", file.c_str());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(TPPP_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", file.c_str(), m.key().c_str());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const char* tn = name.c_str();
    if (name.empty()) fail(TPPP_ERR_FORMAT, "%s: a tensor has an empty name", file.c_str());
    if (name.find('\0') != std::string::npos)
      fail(TPPP_ERR_FORMAT, "%s: tensor name '%s' contains a NUL byte", file.c_str(), tn);
    if (!v.is_object()) fail(TPPP_ERR_FORMAT, "%s: tensor '%s': entry is not an object", file.c_str(), tn);
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        fail(TPPP_ERR_FORMAT, "%s: tensor '%s': unknown field '%s'", file.c_str(), tn, f.key().c_str());
    if (!v.contains("dtype") || !v["dtype"].is_string())
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': dtype missing or not a string", file.c_str(), tn);
    if (!v.contains("shape") || !v["shape"].is_array())
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shape missing or not an array", file.c_str(), tn);
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': data_offsets is not a pair", file.c_str(), tn);
    StTensor t;
    t.name = name;
    t.dtype_name = v["dtype"].get<std::string>();
    const DtypeInfo* di = nullptr;
    for (const auto& d : kDtypes)
      if (t.dtype_name == d.name) di = &d;
    if (!di) fail(TPPP_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", file.c_str(), tn, t.dtype_name.c_str());
    t.dtype = di->dtype;
    t.esize = di->esize;
    if (v["shape"].size() > 64) fail(TPPP_ERR_FORMAT, "%s: tensor '%s': %zu dimensions", file.c_str(), tn,
                                     v["shape"].size());
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shape entry %s is not a non-negative integer", file.c_str(), tn,
             d.dump().c_str());
      uint64_t dim = d.get<uint64_t>();
      t.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(t.numel, dim, &t.numel))
        fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shape product overflows 64 bits", file.c_str(), tn);
    }
    uint64_t bytes_needed = 0;
    if (__builtin_mul_overflow(t.numel, static_cast<uint64_t>(t.esize), &bytes_needed))
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': byte size overflows 64 bits", file.c_str(), tn);
    const json& o0 = v["data_offsets"][0];
    const json& o1 = v["data_offsets"][1];
    if (!o0.is_number_unsigned() || !o1.is_number_unsigned())
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%s, %s] are not non-negative integers", file.c_str(), tn,
           o0.dump().c_str(), o1.dump().c_str());
    t.begin = o0.get<uint64_t>();
    t.end = o1.get<uint64_t>();
    if (t.end < t.begin)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] are inverted", file.c_str(), tn,
           static_cast<unsigned long long>(t.begin), static_cast<unsigned long long>(t.end));
    if (t.end > data_size)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu is past the end of the data (%llu bytes)",
           file.c_str(), tn, static_cast<unsigned long long>(t.end), static_cast<unsigned long long>(data_size));
    if (t.end - t.begin != bytes_needed)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': %llu bytes in the file but shape x dtype needs %llu", file.c_str(), tn,
           static_cast<unsigned long long>(t.end - t.begin), static_cast<unsigned long long>(bytes_needed));
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const StTensor& a, const StTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const StTensor& t : h.tensors) {
    if (t.begin < pos)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': bytes [%llu, %llu) overlap the previous tensor (ends at %llu)",
           file.c_str(), t.name.c_str(), static_cast<unsigned long long>(t.begin),
           static_cast<unsigned long long>(t.end), static_cast<unsigned long long>(pos));
    if (t.begin > pos)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': a gap of %llu unused bytes before it", file.c_str(), t.name.c_str(),
           static_cast<unsigned long long>(t.begin - pos));
    pos = t.end;
  }
  if (pos != data_size)
    fail(TPPP_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor", file.c_str(),
         static_cast<unsigned long long>(data_size - pos));
  return h;
}

StIndex parse_index(const char* bytes, size_t n, const std::string& file) {
  json j = parse_strict(bytes, n, file, "the index");
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    fail(TPPP_ERR_FORMAT, "%s: no \"weight_map\" object", file.c_str());
  StIndex idx;
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      fail(TPPP_ERR_FORMAT, "%s: weight_map entry of '%s' is not a string", file.c_str(), it.key().c_str());
    const std::string s = it.value().get<std::string>();
    const char* tn = it.key().c_str();
    if (it.key().empty() || it.key().find('\0') != std::string::npos)
      fail(TPPP_ERR_FORMAT, "%s: a weight_map tensor name is empty or holds a NUL", file.c_str());
    if (s.empty() || s.find('\0') != std::string::npos)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shard name is empty or holds a NUL", file.c_str(), tn);
    if (s[0] == '/')
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shard '%s' is an absolute path", file.c_str(), tn, s.c_str());
    if (s == ".." || s.find("../") != std::string::npos || s.find("/..") != std::string::npos || s.find('\\') != std::string::npos)
      fail(TPPP_ERR_FORMAT, "%s: tensor '%s': shard '%s' leaves the checkpoint directory", file.c_str(), tn, s.c_str());
    idx.weight_map[it.key()] = s;
    shards.insert(s);
  }
  if (idx.weight_map.empty()) fail(TPPP_ERR_FORMAT, "%s: weight_map is empty", file.c_str());
  idx.shards.assign(shards.begin(), shards.end());
  return idx;
}

}  // namespace tppp
