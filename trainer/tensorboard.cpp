// TensorBoard event files (trainer/tensorboard.h): CRC-32C by a 256-entry table, protobuf wire
// format by hand.
#include "trainer/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace sl::trainer {
namespace {

constexpr uint32_t kCastagnoliReflected = 0x82f63b78u;

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoliReflected : c >> 1;
    t[i] = c;
  }
  return t;
}

// Protobuf wire format: varint (type 0), fixed64 (1), length-delimited (2), fixed32 (5).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char(uint8_t(v) | 0x80);
    v >>= 7;
  }
  out += char(uint8_t(v));
}
void put_tag(std::string& out, int field, int wire_type) {
  put_varint(out, uint64_t(field) << 3 | uint64_t(wire_type));
}
template <class T>
void put_le(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out += char(uint8_t(uint64_t(v) >> (8 * i)));
}
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_tag(out, field, 1);
  put_le(out, bits);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_tag(out, field, 5);
  put_le(out, bits);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double wall_time() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);
}

Status TensorBoardWriter::open(const std::string& dir) {
  if (dir.empty()) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError(dir + ": cannot create the TensorBoard directory: " + ec.message());
  const double now = wall_time();
  const std::string base =
      dir + "/events.out.tfevents." + std::to_string(int64_t(now)) + "." + hostname();
  for (int n = 0; n < 1000 && !f_; ++n) {
    path_ = n == 0 ? base : base + "." + std::to_string(n);
    f_ = std::fopen(path_.c_str(), "wbx");
    if (!f_ && errno != EEXIST) break;
  }
  if (!f_) {
    std::string msg = path_ + ": cannot create the TensorBoard event file: " + std::strerror(errno);
    path_.clear();
    return Status::IoError(msg);
  }
  std::string ev;
  put_double(ev, 1, now);
  put_bytes(ev, 3, "brain.Event:2");
  record(ev);
  std::fflush(f_);
  return Status::Ok();
}

void TensorBoardWriter::write(int64_t step,
                              const std::vector<std::pair<std::string, double>>& values) {
  if (!f_) return;
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_float(value, 2, float(v));
    put_bytes(summary, 1, value);
  }
  std::string ev;
  put_double(ev, 1, wall_time());
  put_tag(ev, 2, 0);
  put_varint(ev, uint64_t(step));
  put_bytes(ev, 5, summary);
  record(ev);
  std::fflush(f_);
}

void TensorBoardWriter::record(const std::string& payload) {
  std::string header;
  put_le(header, uint64_t(payload.size()));
  put_le(header, masked_crc32c(header.data(), 8));
  std::string footer;
  put_le(footer, masked_crc32c(payload.data(), payload.size()));
  std::fwrite(header.data(), 1, header.size(), f_);
  std::fwrite(payload.data(), 1, payload.size(), f_);
  std::fwrite(footer.data(), 1, footer.size(), f_);
}

}  // namespace sl::trainer
