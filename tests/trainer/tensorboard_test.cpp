// TensorBoard event files: CRC-32C against published check values; the file read back by a
// reader written here (bitwise CRC, generic protobuf decoding); a training run logs every metric;
// and the tensorboard Python package reads the file (skipped when it is not installed, unless
// SL_REQUIRE_TENSORBOARD=1).
#include "trainer/tensorboard.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tests/trainer/train_fixture.h"
#include "trainer/config.h"
#include "trainer/train.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

// CRC-32C one bit at a time, independent of the table the writer uses.
uint32_t crc32c_bitwise(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t mask(uint32_t c) {
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

template <class T>
T le(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= uint64_t(uint8_t(s[at + i])) << (8 * i);
  T out;
  std::memcpy(&out, &v, sizeof(T));
  return out;
}

// One protobuf field: its number, wire type and either an integer (varint / fixed) or bytes.
struct Field {
  int number, type;
  uint64_t num = 0;
  std::string bytes;
};

std::vector<Field> decode(const std::string& msg) {
  std::vector<Field> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      EXPECT_LT(i, msg.size()) << "truncated varint";
      if (i >= msg.size()) return v;
      uint8_t b = uint8_t(msg[i++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < msg.size()) {
    uint64_t key = varint();
    Field f;
    f.number = int(key >> 3);
    f.type = int(key & 7);
    if (f.type == 0) {
      f.num = varint();
    } else if (f.type == 1) {
      f.num = le<uint64_t>(msg, i), i += 8;
    } else if (f.type == 5) {
      f.num = le<uint32_t>(msg, i), i += 4;
    } else if (f.type == 2) {
      size_t len = size_t(varint());
      f.bytes = msg.substr(i, len), i += len;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.type;
      return out;
    }
    out.push_back(f);
  }
  EXPECT_EQ(i, msg.size()) << "protobuf message overran";
  return out;
}

struct Event {
  double wall_time = 0;
  int64_t step = -1;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;
};

// Every record of the file, CRCs checked, decoded as tensorflow.Event.
std::vector<Event> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::vector<Event> events;
  size_t at = 0;
  while (at < data.size()) {
    EXPECT_LE(at + 12, data.size()) << "truncated record header";
    if (at + 12 > data.size()) break;
    uint64_t len = le<uint64_t>(data, at);
    EXPECT_EQ(le<uint32_t>(data, at + 8), mask(crc32c_bitwise((const uint8_t*)&data[at], 8)))
        << "length CRC of record " << events.size();
    EXPECT_LE(at + 12 + len + 4, data.size()) << "truncated record";
    if (at + 12 + len + 4 > data.size()) break;
    std::string payload = data.substr(at + 12, len);
    EXPECT_EQ(le<uint32_t>(data, at + 12 + len),
              mask(crc32c_bitwise((const uint8_t*)payload.data(), payload.size())))
        << "payload CRC of record " << events.size();
    at += 12 + len + 4;
    Event e;
    for (const Field& f : decode(payload)) {
      if (f.number == 1 && f.type == 1) std::memcpy(&e.wall_time, &f.num, 8);
      if (f.number == 2 && f.type == 0) e.step = int64_t(f.num);
      if (f.number == 3 && f.type == 2) e.file_version = f.bytes;
      if (f.number != 5 || f.type != 2) continue;
      for (const Field& v : decode(f.bytes)) {  // Summary.value
        EXPECT_EQ(v.number, 1);
        std::pair<std::string, float> s{"", NAN};
        for (const Field& x : decode(v.bytes)) {
          if (x.number == 1 && x.type == 2) s.first = x.bytes;
          if (x.number == 2 && x.type == 5) {
            uint32_t bits = uint32_t(x.num);
            std::memcpy(&s.second, &bits, 4);
          }
        }
        e.scalars.push_back(s);
      }
    }
    events.push_back(e);
  }
  return events;
}

std::string temp_dir(const char* what) {
  fs::path p =
      fs::temp_directory_path() / ("sl_tb_" + std::to_string(::getpid()) + "_" + what + "_" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(p);
  return p.string();
}

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      out.push_back(e.path().string());
  return out;
}

TEST(Crc32c, PublishedCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8a9136aau);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62a8ab43u);
  EXPECT_EQ(masked_crc32c("123456789", 9), mask(0xe3069283u));
}

TEST(TensorBoardWriter, RecordsReadBackWithCrcsTagsStepsAndValues) {
  const std::string dir = temp_dir("rw");
  // Bracket the writes with the writer's own clock (system_clock): std::time may read a coarse
  // clock that lags it by a tick, which made this check fail across a second boundary.
  const auto now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const double before = now();
  {
    TensorBoardWriter w;
    ASSERT_TRUE(w.open(dir).ok());
    ASSERT_TRUE(w.is_open());
    w.write(0, {{"eval_loss", 5.25}});
    w.write(10, {{"loss", 1.0 / 3.0}, {"lr", 3e-4}, {"grad/norm", -2.5e7}});
    w.write(300, {{"loss", std::nan("")}});
  }
  const double after = now();
  std::vector<std::string> files = event_files(dir);
  ASSERT_EQ(files.size(), 1u);
  std::vector<Event> ev = read_events(files[0]);
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_TRUE(ev[0].scalars.empty());
  EXPECT_GE(ev[0].wall_time, before);
  EXPECT_LE(ev[0].wall_time, after);
  EXPECT_EQ(ev[1].step, 0);
  ASSERT_EQ(ev[1].scalars.size(), 1u);
  EXPECT_EQ(ev[1].scalars[0].first, "eval_loss");
  EXPECT_EQ(ev[1].scalars[0].second, 5.25f);
  EXPECT_EQ(ev[2].step, 10);
  ASSERT_EQ(ev[2].scalars.size(), 3u);
  EXPECT_EQ(ev[2].scalars[0], (std::pair<std::string, float>{"loss", float(1.0 / 3.0)}));
  EXPECT_EQ(ev[2].scalars[1], (std::pair<std::string, float>{"lr", 3e-4f}));
  EXPECT_EQ(ev[2].scalars[2], (std::pair<std::string, float>{"grad/norm", -2.5e7f}));
  EXPECT_GE(ev[2].wall_time, ev[0].wall_time);
  EXPECT_EQ(ev[3].step, 300);  // a two-byte varint
  EXPECT_TRUE(std::isnan(ev[3].scalars.at(0).second));
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, EmptyDirWritesNothingAndASecondWriterGetsItsOwnFile) {
  TensorBoardWriter off;
  ASSERT_TRUE(off.open("").ok());
  EXPECT_FALSE(off.is_open());
  off.write(1, {{"loss", 1.0}});

  const std::string dir = temp_dir("two");
  TensorBoardWriter a, b;
  ASSERT_TRUE(a.open(dir).ok());
  ASSERT_TRUE(b.open(dir).ok());
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(event_files(dir).size(), 2u);
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, UnwritableDirectoryIsAnErrorNamingIt) {
  const std::string dir = temp_dir("bad");
  fs::create_directories(fs::path(dir).parent_path());
  std::ofstream(dir) << "a file, not a directory";
  TensorBoardWriter w;
  Status s = w.open(dir + "/logs");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir), std::string::npos) << s.message();
  fs::remove_all(dir);
}

TEST(TensorBoardTraining, EveryJsonlMetricIsLogged) {
  const std::string dir = temp_dir("train");
  const std::string tiny = test::tiny_config(R"(
logging: {every: 1, eval_batches: 1}
steps: 3
batch_size: 2
seq_len: 16
)");
  StatusOr<TrainConfig> c = parse_train_config(
      tiny, "tiny.yaml",
      {"logging.tensorboard=" + dir + "/tb", "logging.metrics=" + dir + "/metrics.jsonl"});
  ASSERT_TRUE(c.ok()) << c.status().message();
  TrainHooks hooks;
  hooks.quiet = true;
  StatusOr<TrainResult> r = train(c.value(), hooks);
  ASSERT_TRUE(r.ok()) << r.status().message();

  std::map<std::string, std::set<int64_t>> steps_of;
  std::vector<std::string> files = event_files(dir + "/tb");
  ASSERT_EQ(files.size(), 1u);
  for (const Event& e : read_events(files[0]))
    for (const auto& [tag, v] : e.scalars) steps_of[tag].insert(e.step);
  // Every key of every JSONL record is a TensorBoard tag at the record's step.
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  int records = 0;
  while (std::getline(in, line)) {
    ++records;
    int64_t step = std::stoll(line.substr(line.find(':') + 1));
    for (size_t q = line.find('"', 1); q != std::string::npos; q = line.find('"', q + 1)) {
      size_t end = line.find('"', q + 1);
      std::string key = line.substr(q + 1, end - q - 1);
      q = end;
      if (key == "step") continue;
      EXPECT_TRUE(steps_of[key].count(step)) << key << " at step " << step << " not logged";
    }
  }
  EXPECT_GE(records, 5);  // eval at 0, steps 1-3, eval at 3
  for (const char* tag : {"loss", "lr", "tokens_per_s", "grad_norm", "eval_loss"})
    EXPECT_TRUE(steps_of.count(tag)) << tag;
  EXPECT_EQ(steps_of["loss"], (std::set<int64_t>{1, 2, 3}));
  EXPECT_EQ(steps_of["eval_loss"], (std::set<int64_t>{0, 3}));
  fs::remove_all(dir);
}

// The interpreter to run tests/trainer/tensorboard_read.py with: the setup.sh venv, $SL_PYTHON,
// python3.
std::string python() {
  const char* venv = std::getenv("SL_PY_VENV");
  const char* home = std::getenv("HOME");
  std::string v = venv ? venv : (home ? std::string(home) + "/.cache/superlinear/venv" : "");
  if (!v.empty() && ::access((v + "/bin/python").c_str(), X_OK) == 0) return v + "/bin/python";
  if (const char* p = std::getenv("SL_PYTHON"); p && *p) return p;
  return "python3";
}

TEST(TensorBoardPython, TheTensorboardPackageReadsTheScalars) {
  const std::string dir = temp_dir("py");
  {
    TensorBoardWriter w;
    ASSERT_TRUE(w.open(dir).ok());
    w.write(0, {{"eval_loss", 4.5}});
    w.write(1, {{"loss", 3.25}, {"lr", 1e-3}});
    w.write(2, {{"loss", 2.0}, {"lr", 5e-4}});
  }
  const std::string script = (fs::path(__FILE__).parent_path() / "tensorboard_read.py").string();
  ASSERT_TRUE(fs::exists(script)) << script;
  const std::string py = python();
  std::string cmd = "'" + py + "' '" + script + "' '" + dir +
                    "' eval_loss:0:4.5 loss:1:3.25 loss:2:2.0 lr:1:0.001 lr:2:0.0005 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  int status = ::pclose(p);
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  fs::remove_all(dir);
  if (rc == 3 || rc == 127) {
    const char* req = std::getenv("SL_REQUIRE_TENSORBOARD");
    if (req && std::string(req) == "1")
      FAIL() << "SL_REQUIRE_TENSORBOARD=1 but the tensorboard package is not usable with " << py
             << ": " << out;
    GTEST_SKIP() << "skipped: the tensorboard Python package is not installed for " << py
                 << " (scripts/setup.sh installs it): " << out;
  }
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
}

}  // namespace
}  // namespace sl::trainer
