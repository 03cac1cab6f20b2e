// Safetensors reading and writing (layers/safetensors.h): the header is validated as a whole
// before any data is read; each tensor is then read straight into its own buffer.
#include "layers/safetensors.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

namespace sl::layers {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kSupported[] = {{"F32", DType::F32}, {"BF16", DType::BF16},
                                    {"F16", DType::F16}, {"F64", DType::F64},
                                    {"I64", DType::I64}, {"I32", DType::I32}};
constexpr const char* kKnownUnsupported[] = {"BOOL", "U8",  "I8",      "I16",     "U16",
                                             "U32",  "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                             "F4",   "F6_E2M3", "F6_E3M2", "C64"};

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

Status write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::IoError(path + ": write failed: " + std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
  return Status::Ok();
}

// Writes through `body(fd, tmp_path)` into a hidden temporary file beside `path`, then renames.
template <class Body>
Status atomic_write(const std::string& path, Body body) {
  fs::path final_path(path);
  fs::path dir = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir.string() + ": cannot create directory: " + ec.message());
  std::string tmp = (dir / ("." + final_path.filename().string() + ".tmp")).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(tmp + ": cannot create: " + std::strerror(errno));
  {
    FdCloser closer{fd};
    Status s = body(fd, tmp);
    if (s.ok() && ::fsync(fd) != 0)
      s = Status::IoError(tmp + ": fsync failed: " + std::strerror(errno));
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Status::IoError(path + ": rename failed: " + std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Status corrupt(const std::string& path, const std::string& what) {
  return Status::Corruption(path + ": " + what);
}

std::string tensor_at(const std::string& name) { return "tensor '" + name + "': "; }

// A non-negative integer scalar, or false.
bool get_uint(const YAML::Node& n, uint64_t* out) {
  if (!n.IsScalar()) return false;
  try {
    int64_t v = n.as<int64_t>();
    if (v < 0) return false;
    *out = uint64_t(v);
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

// Parses one tensor entry; its offsets are checked against each other by the caller.
Status parse_entry(const std::string& path, const std::string& name, const YAML::Node& v,
                   SafetensorsEntry* e) {
  const std::string at = tensor_at(name);
  if (!v.IsMap()) return corrupt(path, at + "entry is not a JSON object");
  for (const auto& kv : v) {
    std::string key = kv.first.as<std::string>();
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return corrupt(path, at + "unknown field \"" + key + "\"");
  }
  if (!v["dtype"] || !v["shape"] || !v["data_offsets"])
    return corrupt(path, at + "needs \"dtype\", \"shape\" and \"data_offsets\"");
  if (!v["dtype"].IsScalar()) return corrupt(path, at + "dtype is not a string");
  const std::string dt = v["dtype"].as<std::string>();
  bool found = false;
  for (const DTypeName& d : kSupported)
    if (dt == d.name) e->dtype = d.dtype, found = true;
  if (!found) {
    for (const char* u : kKnownUnsupported)
      if (dt == u)
        return Status::InvalidArgument(path + ": " + at + "dtype " + dt +
                                       " is not supported (F32, BF16, F16, F64, I64, I32)");
    return corrupt(path, at + "unknown dtype \"" + dt + "\"");
  }
  const YAML::Node& shape = v["shape"];
  if (!shape.IsSequence()) return corrupt(path, at + "shape is not a list");
  if (shape.size() > size_t(kMaxDims))
    return corrupt(path, at + "shape has " + std::to_string(shape.size()) + " dimensions (at most " +
                             std::to_string(kMaxDims) + ")");
  unsigned __int128 bytes = dtype_size(e->dtype);
  for (const auto& d : shape) {
    uint64_t n = 0;
    if (!get_uint(d, &n)) return corrupt(path, at + "shape holds a value that is not a size");
    e->shape.push_back(int64_t(n));
    bytes *= n;
    if (bytes > (unsigned __int128)(1) << 62) return corrupt(path, at + "shape is too large");
  }
  const YAML::Node& off = v["data_offsets"];
  if (!off.IsSequence() || off.size() != 2 || !get_uint(off[0], &e->begin) ||
      !get_uint(off[1], &e->end))
    return corrupt(path, at + "data_offsets must be two non-negative integers");
  if (e->end < e->begin)
    return corrupt(path, at + "data_offsets [" + std::to_string(e->begin) + ", " +
                             std::to_string(e->end) + "] end before they begin");
  if (uint64_t(bytes) != e->end - e->begin)
    return corrupt(path, at + "shape " + Dims(e->shape).str() + " of " + dt + " is " +
                             std::to_string(uint64_t(bytes)) + " bytes but data_offsets span " +
                             std::to_string(e->end - e->begin));
  return Status::Ok();
}

struct Header {
  std::vector<SafetensorsEntry> entries;  // sorted by offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;
};

StatusOr<Header> parse_header(const std::string& path, std::ifstream& in) {
  std::error_code ec;
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) return Status::IoError(path + ": cannot open: " + ec.message());
  if (!in) return Status::IoError(path + ": cannot open");
  if (file_size < 8) return corrupt(path, "file of " + std::to_string(file_size) +
                                              " bytes has no header length (truncated?)");
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  if (!in) return Status::IoError(path + ": read failed");
  if (n > kMaxHeaderBytes || n > file_size - 8)
    return corrupt(path, "header length " + std::to_string(n) + " exceeds the file (" +
                             std::to_string(file_size) + " bytes; truncated or corrupt)");
  std::string text(n, '\0');
  in.read(text.data(), std::streamsize(n));
  if (!in) return Status::IoError(path + ": read failed");
  if (n == 0 || text[0] != '{') return corrupt(path, "header does not start with '{'");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return corrupt(path, "header is not valid JSON: " + e.msg + " (column " +
                             std::to_string(e.mark.column + 1) + ")");
  }
  if (!root.IsMap()) return corrupt(path, "header is not a JSON object");
  Header h;
  h.data_start = 8 + n;
  std::set<std::string> names;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) return corrupt(path, "header has a key that is not a string");
    std::string name = kv.first.as<std::string>();
    if (!names.insert(name).second) return corrupt(path, tensor_at(name) + "appears twice");
    if (name == "__metadata__") {
      if (!kv.second.IsMap()) return corrupt(path, "__metadata__ is not a JSON object");
      for (const auto& m : kv.second) {
        if (!m.second.IsScalar())
          return corrupt(path, "__metadata__ value of \"" + m.first.as<std::string>() +
                                   "\" is not a string");
        h.metadata[m.first.as<std::string>()] = m.second.as<std::string>();
      }
      continue;
    }
    SafetensorsEntry e;
    e.name = name;
    if (Status s = parse_entry(path, name, kv.second, &e); !s.ok()) return s;
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_size = file_size - h.data_start;
  uint64_t expect = 0;
  for (const SafetensorsEntry& e : h.entries) {
    if (e.begin < expect)
      return corrupt(path, tensor_at(e.name) + "data_offsets [" + std::to_string(e.begin) + ", " +
                               std::to_string(e.end) + "] overlap the previous tensor");
    if (e.begin > expect)
      return corrupt(path, tensor_at(e.name) + "data_offsets begin at " + std::to_string(e.begin) +
                               ", leaving a gap after byte " + std::to_string(expect));
    if (e.end > data_size)
      return corrupt(path, tensor_at(e.name) + "data_offsets end at " + std::to_string(e.end) +
                               ", past the data section of " + std::to_string(data_size) +
                               " bytes (truncated?)");
    expect = e.end;
  }
  if (expect != data_size)
    return corrupt(path, "data section holds " + std::to_string(data_size) +
                             " bytes but the tensors cover " + std::to_string(expect));
  return h;
}

}  // namespace

const Tensor* SafetensorsData::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const char* safetensors_dtype_name(DType t) {
  for (const DTypeName& d : kSupported)
    if (d.dtype == t) return d.name;
  return "?";
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

Status write_file_atomic(const std::string& path, const std::string& contents) {
  return atomic_write(path, [&](int fd, const std::string& tmp) {
    return write_all(fd, contents.data(), contents.size(), tmp);
  });
}

StatusOr<std::vector<SafetensorsEntry>> read_safetensors_header(
    const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream in(path, std::ios::binary);
  StatusOr<Header> h = parse_header(path, in);
  if (!h.ok()) return h.status();
  if (metadata) *metadata = h.value().metadata;
  return std::move(h.value().entries);
}

StatusOr<SafetensorsData> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  StatusOr<Header> hs = parse_header(path, in);
  if (!hs.ok()) return hs.status();
  const Header& h = hs.value();
  SafetensorsData out;
  out.metadata = h.metadata;
  for (const SafetensorsEntry& e : h.entries) {
    Tensor t = Tensor::empty(Dims(e.shape), e.dtype);
    in.seekg(std::streamoff(h.data_start + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), std::streamsize(e.end - e.begin));
    if (!in) return Status::IoError(path + ": " + tensor_at(e.name) + "read failed");
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

Status write_safetensors(const std::string& path, const SafetensorsData& data) {
  std::vector<size_t> order(data.tensors.size());
  std::set<std::string> names;
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
    const auto& [name, t] = data.tensors[i];
    if (name.empty() || name == "__metadata__" || !names.insert(name).second)
      return Status::InvalidArgument(path + ": tensor name '" + name +
                                     "' is empty, reserved or repeated");
    if (!t.defined()) return Status::InvalidArgument(path + ": " + tensor_at(name) + "undefined");
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    size_t sa = dtype_size(data.tensors[a].second.dtype());
    size_t sb = dtype_size(data.tensors[b].second.dtype());
    return sa != sb ? sa > sb : data.tensors[a].first < data.tensors[b].first;
  });
  std::string header = "{";
  if (!data.metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : data.metadata) {
      header += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = data.tensors[i];
    if (header.size() > 1) header += ",";
    header += json_quote(name) + ":{\"dtype\":\"" + safetensors_dtype_name(t.dtype()) +
              "\",\"shape\":[";
    for (int d = 0; d < t.dim(); ++d) header += (d ? "," : "") + std::to_string(t.size(d));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.nbytes()) + "]}";
    offset += t.nbytes();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  return atomic_write(path, [&](int fd, const std::string& tmp) -> Status {
    uint64_t n = header.size();
    if (Status s = write_all(fd, &n, 8, tmp); !s.ok()) return s;
    if (Status s = write_all(fd, header.data(), header.size(), tmp); !s.ok()) return s;
    for (size_t i : order) {
      Tensor host = data.tensors[i].second.to(Device::cpu()).contiguous();
      if (Status s = write_all(fd, host.data_ptr(), host.nbytes(), tmp); !s.ok()) return s;
    }
    return Status::Ok();
  });
}

StatusOr<SafetensorsData> read_safetensors_dir(const std::string& dir) {
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  if (!fs::exists(index_path)) {
    const std::string single = (fs::path(dir) / "model.safetensors").string();
    if (!fs::exists(single))
      return Status::NotFound(dir + ": neither model.safetensors nor " +
                              "model.safetensors.index.json");
    return read_safetensors(single);
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(index_path);
  } catch (const YAML::Exception& e) {
    return corrupt(index_path, "not valid JSON: " + e.msg);
  }
  if (!root.IsMap() || !root["weight_map"] || !root["weight_map"].IsMap())
    return corrupt(index_path, "no \"weight_map\" object");
  std::map<std::string, std::string> where;  // tensor -> shard
  std::vector<std::string> shards;
  for (const auto& kv : root["weight_map"]) {
    std::string name = kv.first.as<std::string>();
    if (!kv.second.IsScalar()) return corrupt(index_path, tensor_at(name) + "shard is not a string");
    std::string shard = kv.second.as<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard[0] == '.')
      return corrupt(index_path, tensor_at(name) + "shard \"" + shard + "\" is not a file name");
    if (!where.emplace(name, shard).second)
      return corrupt(index_path, tensor_at(name) + "appears twice in weight_map");
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
  }
  SafetensorsData out;
  std::set<std::string> seen;
  for (const std::string& shard : shards) {
    const std::string path = (fs::path(dir) / shard).string();
    StatusOr<SafetensorsData> part = read_safetensors(path);
    if (!part.ok()) return part.status();
    if (out.tensors.empty() && out.metadata.empty()) out.metadata = part.value().metadata;
    for (auto& [name, t] : part.value().tensors) {
      auto it = where.find(name);
      if (it == where.end() || it->second != shard)
        return corrupt(path, tensor_at(name) + (it == where.end()
                                                    ? "is not in the index's weight_map"
                                                    : "is listed under " + it->second +
                                                          " in the index's weight_map"));
      seen.insert(name);
      out.tensors.emplace_back(name, std::move(t));
    }
  }
  for (const auto& [name, shard] : where)
    if (!seen.count(name))
      return corrupt(index_path, tensor_at(name) + "is not in its shard " + shard);
  return out;
}

StatusOr<std::vector<std::string>> write_safetensors_dir(const std::string& dir,
                                                         const SafetensorsData& data,
                                                         int64_t max_shard_bytes) {
  const fs::path d(dir);
  uint64_t total = 0;
  for (const auto& [name, t] : data.tensors) total += t.nbytes();
  std::error_code ec;
  if (max_shard_bytes <= 0 || total <= uint64_t(max_shard_bytes)) {
    if (Status s = write_safetensors((d / "model.safetensors").string(), data); !s.ok()) return s;
    fs::remove(d / "model.safetensors.index.json", ec);
    return std::vector<std::string>{"model.safetensors"};
  }
  std::vector<SafetensorsData> parts(1);
  uint64_t in_part = 0;
  for (const auto& [name, t] : data.tensors) {
    if (!parts.back().tensors.empty() && in_part + t.nbytes() > uint64_t(max_shard_bytes)) {
      parts.emplace_back();
      in_part = 0;
    }
    parts.back().add(name, t);
    in_part += t.nbytes();
  }
  std::vector<std::string> files;
  std::string map;
  for (size_t i = 0; i < parts.size(); ++i) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, parts.size());
    parts[i].metadata = data.metadata;
    if (Status s = write_safetensors((d / buf).string(), parts[i]); !s.ok()) return s;
    files.push_back(buf);
    for (const auto& [name, t] : parts[i].tensors)
      map += std::string(map.empty() ? "" : ",\n") + "    " + json_quote(name) + ": " +
             json_quote(buf);
  }
  std::string index = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) +
                      "},\n  \"weight_map\": {\n" + map + "\n  }\n}\n";
  if (Status s = write_file_atomic((d / "model.safetensors.index.json").string(), index); !s.ok())
    return s;
  fs::remove(d / "model.safetensors", ec);
  files.push_back("model.safetensors.index.json");
  return files;
}

}  // namespace sl::layers
