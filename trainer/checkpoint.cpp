// Checkpoint files (trainer/checkpoint.h). The reader loads the whole file and checks the
// trailer and checksum before parsing a single record, so a damaged file is rejected as a whole.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[9] = "SLCKPT01";
constexpr char kEndMagic[9] = "SLCKEND1";
constexpr uint64_t kFnvOffset = 1469598103934665603ull, kFnvPrime = 1099511628211ull;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

// Writes and hashes; remembers the first failure.
class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) {}
  void put(const void* data, size_t n) {
    hash_ = fnv1a(hash_, data, n);
    raw(data, n);
  }
  template <class T>
  void put_pod(const T& v) {
    put(&v, sizeof(T));
  }
  void raw(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (ok_ && n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ok_ = false;
        err_ = errno;
        return;
      }
      p += w;
      n -= size_t(w);
    }
  }
  bool ok() const { return ok_; }
  int err() const { return err_; }
  uint64_t hash() const { return hash_; }

 private:
  int fd_;
  bool ok_ = true;
  int err_ = 0;
  uint64_t hash_ = kFnvOffset;
};

class Reader {
 public:
  Reader(const std::string& buf, size_t end) : buf_(buf), end_(end) {}
  bool get(void* out, size_t n) {
    if (n > end_ - pos_) return false;
    std::memcpy(out, buf_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  template <class T>
  bool get_pod(T* v) {
    return get(v, sizeof(T));
  }
  size_t remaining() const { return end_ - pos_; }

 private:
  const std::string& buf_;
  size_t end_, pos_ = 0;
};

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

Status corrupt(const std::string& path, const std::string& what) {
  return Status::Corruption(path + ": " + what + " (truncated or corrupt checkpoint)");
}

}  // namespace

const Tensor* CheckpointData::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

StatusOr<Tensor> CheckpointData::get(const std::string& name, const Dims& shape, DType dtype,
                                     const std::string& path) const {
  const Tensor* t = find(name);
  if (!t) return Status::Corruption(path + ": no tensor '" + name + "'");
  if (t->shape() != shape || t->dtype() != dtype)
    return Status::Corruption(path + ": tensor '" + name + "' is " + t->str() + ", expected " +
                              dtype_name(dtype) + shape.str());
  return *t;
}

Status CheckpointData::check_model_config(const std::string& model_yaml, const std::string& path,
                                          const std::string& advice) const {
  auto it = texts.find("model_config");
  if (it == texts.end()) return Status::Corruption(path + ": no model_config record");
  if (it->second != model_yaml)
    return Status::InvalidArgument(path +
                                   ": written for a different model configuration (stored:\n" +
                                   it->second + "); " + advice);
  return Status::Ok();
}

Status write_checkpoint(const std::string& path, const CheckpointData& data) {
  fs::path final_path(path);
  fs::path dir = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError(dir.string() + ": cannot create directory: " + ec.message());
  fs::path tmp_name = final_path.filename();
  tmp_name += ".tmp";
  std::string tmp = (dir / ".").string() + tmp_name.string();  // a hidden ".ckpt_....slck.tmp"
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(tmp + ": cannot create: " + std::strerror(errno));
  FdCloser closer{fd};

  Writer w(fd);
  w.put(kMagic, 8);
  w.put_pod(uint64_t(data.tensors.size() + data.texts.size()));
  auto record = [&](const std::string& name, uint8_t kind, uint8_t dtype, const Dims& shape,
                    const void* bytes, uint64_t n) {
    w.put_pod(uint32_t(name.size()));
    w.put(name.data(), name.size());
    uint8_t meta[4] = {kind, dtype, uint8_t(shape.size()), 0};
    w.put(meta, 4);
    for (int d = 0; d < shape.size(); ++d) w.put_pod(int64_t(shape[d]));
    w.put_pod(n);
    w.put(bytes, n);
  };
  for (const auto& [name, t] : data.tensors) {
    Tensor host = t.to(Device::cpu()).contiguous();
    record(name, 0, uint8_t(host.dtype()), host.shape(), host.data_ptr(), host.nbytes());
  }
  for (const auto& [name, text] : data.texts) record(name, 1, 0, Dims{}, text.data(), text.size());
  uint64_t h = w.hash();
  w.raw(&h, 8);
  w.raw(kEndMagic, 8);
  auto fail = [&](const std::string& what, int err) {
    ::unlink(tmp.c_str());
    return Status::IoError(tmp + ": " + what + ": " + std::strerror(err));
  };
  if (!w.ok()) return fail("write failed", w.err());
  if (::fsync(fd) != 0) return fail("fsync failed", errno);
  ::close(fd);
  closer.fd = -1;
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return fail("rename to " + path + " failed", errno);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

StatusOr<CheckpointData> read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open");
  std::string buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (buf.size() < 32 || std::memcmp(buf.data(), kMagic, 8) != 0)
    return corrupt(path, buf.size() < 32 ? "too short (" + std::to_string(buf.size()) + " bytes)"
                                         : "not a checkpoint (bad magic)");
  const size_t body = buf.size() - 16;
  if (std::memcmp(buf.data() + body + 8, kEndMagic, 8) != 0) return corrupt(path, "no trailer");
  uint64_t stored;
  std::memcpy(&stored, buf.data() + body, 8);
  if (fnv1a(kFnvOffset, buf.data(), body) != stored) return corrupt(path, "checksum mismatch");

  Reader r(buf, body);
  char magic[8];
  uint64_t count = 0;
  r.get(magic, 8);
  r.get_pod(&count);
  CheckpointData out;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t name_len = 0;
    if (!r.get_pod(&name_len) || name_len > r.remaining())
      return corrupt(path, "record " + std::to_string(i) + ": bad name");
    std::string name(name_len, '\0');
    r.get(name.data(), name_len);
    uint8_t meta[4];
    if (!r.get(meta, 4) || meta[0] > 1 || meta[2] > kMaxDims)
      return corrupt(path, "record '" + name + "': bad header");
    Dims shape;
    for (int d = 0; d < meta[2]; ++d) {
      int64_t s = -1;
      if (!r.get_pod(&s) || s < 0) return corrupt(path, "record '" + name + "': bad shape");
      shape.push_back(s);
    }
    uint64_t n = 0;
    if (!r.get_pod(&n) || n > r.remaining())
      return corrupt(path, "record '" + name + "': data past the end");
    if (meta[0] == 1) {
      std::string text(n, '\0');
      r.get(text.data(), n);
      out.texts[name] = std::move(text);
      continue;
    }
    DType dt = DType(meta[1]);
    if (meta[1] > uint8_t(DType::F64) || n != uint64_t(shape.numel()) * dtype_size(dt))
      return corrupt(path, "record '" + name + "': " + std::to_string(n) +
                               " bytes do not match its dtype and shape " + shape.str());
    Tensor t = Tensor::empty(shape, dt);
    r.get(t.data_ptr(), n);
    out.tensors.emplace_back(name, std::move(t));
  }
  if (r.remaining() != 0) return corrupt(path, "bytes after the last record");
  return out;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt_%08lld.slck", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string f = e.path().filename().string();
    if (f.size() != 18 || f.rfind("ckpt_", 0) != 0 || f.substr(13) != ".slck") continue;
    std::string digits = f.substr(5, 8);
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    out.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + size_t(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i].second, ec);
  }
}

StatusOr<std::string> latest_valid_checkpoint(const std::string& dir, CheckpointData* out,
                                              std::vector<std::string>* warnings) {
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    StatusOr<CheckpointData> d = read_checkpoint(it->second);
    if (d.ok()) {
      *out = std::move(d).value();
      return it->second;
    }
    if (warnings) warnings->push_back(d.status().message() + "; skipped");
  }
  return Status::NotFound(dir + ": no valid checkpoint");
}

}  // namespace sl::trainer
