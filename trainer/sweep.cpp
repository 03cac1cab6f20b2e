// Sweeps (trainer/sweep.h). Children are fork+execve of the program with an environment built
// before the fork (the parent may have OpenMP threads, so the child only redirects and execs);
// the parent waits with waitpid and, on SIGINT/SIGTERM, launches nothing more, passes the signal
// to the running children (which checkpoint and exit) and still writes the tables.
#include "trainer/sweep.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/device.h"

extern char** environ;

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;
using Pairs = std::vector<std::pair<std::string, std::string>>;

std::string yaml_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._+-", c)) ? c : '_';
  return out;
}

std::string auto_name(const Pairs& set) {
  std::map<std::string, int> last_count;
  auto last = [](const std::string& k) { return k.substr(k.rfind('.') + 1); };
  for (auto& [k, v] : set) ++last_count[last(k)];
  std::string name;
  for (auto& [k, v] : set)
    name += (name.empty() ? "" : ",") + sanitize(last_count[last(k)] > 1 ? k : last(k)) + "=" +
            sanitize(v);
  if (name.empty()) return "base";
  if (name.size() > 120) {
    uint64_t h = 1469598103934665603ull;
    for (char c : name) h = (h ^ uint8_t(c)) * 1099511628211ull;
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    name = name.substr(0, 100) + "-" + hex;
  }
  return name;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

volatile std::sig_atomic_t g_sweep_signal = 0;
extern "C" void on_sweep_signal(int sig) {
  g_sweep_signal = sig;
}

// The GPU ids children may be pinned to: CUDA_VISIBLE_DEVICES's list when set, else 0..n-1.
std::vector<std::string> visible_gpus() {
  int n = cuda_device_count();
  std::vector<std::string> ids;
  if (const char* env = std::getenv("CUDA_VISIBLE_DEVICES"); env && *env) {
    std::stringstream ss(env);
    for (std::string id; std::getline(ss, id, ',') && int(ids.size()) < n;) ids.push_back(id);
  } else {
    for (int i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  }
  return ids;
}

Status write_tables(const SweepSpec& s, const std::vector<RunOutcome>& outcomes) {
  std::ofstream csv(fs::path(s.out_dir) / "results.csv", std::ios::trunc);
  std::ofstream md(fs::path(s.out_dir) / "results.md", std::ios::trunc);
  if (!csv || !md) return Status::IoError(s.out_dir + ": cannot write results.csv / results.md");
  csv << "name";
  md << "| name";
  for (const std::string& k : s.keys) csv << "," << csv_field(k), md << " | " << k;
  csv << ",status,steps,train_loss,eval_loss,eval_accuracy,seconds\n";
  md << " | status | steps | train loss | eval loss | eval accuracy | seconds |\n|---";
  for (size_t i = 0; i < s.keys.size() + 6; ++i) md << "|---";
  md << "|\n";
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const RunOutcome& o = outcomes[i];
    std::map<std::string, std::string> set(s.runs[i].set.begin(), s.runs[i].set.end());
    csv << csv_field(o.name);
    md << "| " << o.name;
    for (const std::string& k : s.keys) csv << "," << csv_field(set[k]), md << " | " << set[k];
    const RunResult& r = o.result;
    std::string steps = o.result.steps ? std::to_string(r.steps) : "";
    csv << "," << csv_field(o.status) << "," << steps << "," << num(r.train_loss) << ","
        << num(r.eval_loss) << "," << num(r.eval_accuracy) << "," << num(r.seconds) << "\n";
    md << " | " << o.status << " | " << steps << " | " << num(r.train_loss) << " | "
       << num(r.eval_loss) << " | " << num(r.eval_accuracy) << " | " << num(r.seconds) << " |\n";
  }
  csv.close();
  md.close();
  if (!csv || !md) return Status::IoError(s.out_dir + ": writing the results tables failed");
  return Status::Ok();
}

}  // namespace

StatusOr<SweepSpec> parse_sweep(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap())
    return Status::InvalidArgument(file + ": expected a mapping (base, out_dir, ...)");
  auto bad = [&](const YAML::Node& n, const std::string& key, const std::string& msg) {
    return Status::InvalidArgument(file + ":" + std::to_string(n.Mark().line + 1) + ": " + key +
                                   ": " + msg);
  };
  auto pairs = [&](const YAML::Node& n, const std::string& key, Pairs* out) -> Status {
    if (!n.IsMap()) return bad(n, key, "expected a mapping of key: value overrides");
    for (auto it = n.begin(); it != n.end(); ++it)
      out->emplace_back(it->first.as<std::string>(), yaml_text(it->second));
    return Status::Ok();
  };
  SweepSpec s;
  s.file = file;
  const std::set<std::string> known = {"base", "out_dir", "set", "grid", "runs", "parallel"};
  for (auto it = root.begin(); it != root.end(); ++it)
    if (!known.count(it->first.as<std::string>()))
      return bad(it->first, it->first.as<std::string>(),
                 "unknown key (known: base, out_dir, set, grid, runs, parallel)");
  for (const char* key : {"base", "out_dir"})
    if (!root[key] || !root[key].IsScalar() || root[key].Scalar().empty())
      return Status::InvalidArgument(file + ": " + key + ": missing (expected a path)");
  fs::path base = root["base"].Scalar();
  s.base = base.is_absolute() ? base.string() : (fs::path(file).parent_path() / base).string();
  s.out_dir = root["out_dir"].Scalar();
  if (root["set"]) {
    Status st = pairs(root["set"], "set", &s.set);
    if (!st.ok()) return st;
  }
  if (YAML::Node p = root["parallel"]) {
    std::string v = p.IsScalar() ? p.Scalar() : "";
    if (v == "gpus") {
      s.gpus = true;
      s.parallel = 1 << 20;
    } else if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos &&
               v.size() < 6 && std::stoi(v) >= 1) {
      s.parallel = std::stoi(v);
    } else {
      return bad(p, "parallel", "'" + v + "' is not a positive integer or \"gpus\"");
    }
  }
  YAML::Node grid = root["grid"], runs = root["runs"];
  if (bool(grid) == bool(runs))
    return Status::InvalidArgument(file + ": expected exactly one of grid: or runs:");
  if (grid) {
    if (!grid.IsMap() || grid.size() == 0)
      return bad(grid, "grid", "expected a mapping of key: [values]");
    std::vector<std::pair<std::string, std::vector<std::string>>> axes;
    std::vector<int> axis_lines;
    for (auto it = grid.begin(); it != grid.end(); ++it) {
      std::string key = it->first.as<std::string>();
      std::vector<std::string> values;
      if (it->second.IsSequence()) {
        for (const YAML::Node& v : it->second) values.push_back(yaml_text(v));
      } else if (it->second.IsScalar()) {
        values.push_back(it->second.Scalar());
      }
      if (values.empty()) return bad(it->first, "grid." + key, "expected a non-empty list");
      axes.emplace_back(key, values);
      axis_lines.push_back(it->first.Mark().line + 1);
      s.keys.push_back(key);
    }
    std::vector<size_t> idx(axes.size(), 0);
    for (bool more = true; more;) {
      SweepRun r;
      r.line = grid.Mark().line + 1;
      r.set_lines = axis_lines;
      for (size_t a = 0; a < axes.size(); ++a)
        r.set.emplace_back(axes[a].first, axes[a].second[idx[a]]);
      s.runs.push_back(std::move(r));
      more = false;
      for (size_t a = axes.size(); a-- > 0;) {
        if (++idx[a] < axes[a].second.size()) {
          more = true;
          break;
        }
        idx[a] = 0;
      }
    }
  } else {
    if (!runs.IsSequence() || runs.size() == 0)
      return bad(runs, "runs", "expected a non-empty list of {name: ..., set: {...}}");
    for (const YAML::Node& n : runs) {
      if (!n.IsMap()) return bad(n, "runs", "each run is a mapping {name: ..., set: {...}}");
      SweepRun r;
      r.line = n.Mark().line + 1;
      for (auto it = n.begin(); it != n.end(); ++it) {
        std::string k = it->first.as<std::string>();
        if (k == "name" && it->second.IsScalar()) {
          r.name = it->second.Scalar();
        } else if (k == "set") {
          Status st = pairs(it->second, "runs.set", &r.set);
          if (!st.ok()) return st;
          for (auto kv = it->second.begin(); kv != it->second.end(); ++kv)
            r.set_lines.push_back(kv->first.Mark().line + 1);
        } else {
          return bad(it->first, "runs." + k, "unknown key (known: name, set)");
        }
      }
      for (auto& [k, v] : r.set)
        if (std::find(s.keys.begin(), s.keys.end(), k) == s.keys.end()) s.keys.push_back(k);
      s.runs.push_back(std::move(r));
    }
  }
  std::set<std::string> names;
  for (SweepRun& r : s.runs) {
    if (r.name.empty()) r.name = auto_name(r.set);
    if (r.name == "." || r.name == ".." || r.name.find('/') != std::string::npos)
      return Status::InvalidArgument(file + ":" + std::to_string(r.line) + ": runs.name: '" +
                                     r.name + "' is not a directory name");
    if (!names.insert(r.name).second)
      return Status::InvalidArgument(file + ":" + std::to_string(r.line) +
                                     ": two runs are named '" + r.name +
                                     "' (give them distinct names)");
  }
  return s;
}

StatusOr<SweepSpec> load_sweep(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IoError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_sweep(ss.str(), path);
}

std::string run_dir(const SweepSpec& s, const SweepRun& r) {
  return (fs::path(s.out_dir) / r.name).string();
}

std::vector<std::string> run_overrides(const SweepSpec& s, const SweepRun& r) {
  std::vector<std::string> o;
  for (auto& [k, v] : s.set) o.push_back(k + "=" + v);
  for (auto& [k, v] : r.set) o.push_back(k + "=" + v);
  const std::string dir = run_dir(s, r);
  o.push_back("checkpoint.dir=" + dir);
  o.push_back("checkpoint.resume=auto");
  o.push_back("logging.metrics=" + dir + "/metrics.jsonl");
  return o;
}

Status validate_sweep(const SweepSpec& s) {
  if (!fs::exists(s.base)) return Status::IoError(s.file + ": base: " + s.base + ": no such file");
  for (const SweepRun& r : s.runs) {
    StatusOr<TrainConfig> c = load_train_config(s.base, run_overrides(s, r));
    if (c.ok()) continue;
    const std::string& m = c.status().message();
    int line = r.line;
    for (size_t i = 0; i < r.set.size() && i < r.set_lines.size(); ++i)
      if (m.find("--set " + r.set[i].first + "=") != std::string::npos) line = r.set_lines[i];
    return Status::InvalidArgument(s.file + ":" + std::to_string(line) + ": run '" + r.name +
                                   "': " + m);
  }
  return Status::Ok();
}

Status write_result_json(const std::string& dir, const TrainResult& r) {
  auto j = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return std::isfinite(v) ? std::string(buf) : std::string("null");
  };
  const std::string path = (fs::path(dir) / "result.json").string(), tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) return Status::IoError(tmp + ": cannot open for writing");
    f << "{\"steps\": " << r.end_step << ", \"start_step\": " << r.start_step
      << ", \"train_loss\": " << j(r.last_loss) << ", \"eval_loss\": " << j(r.final_eval_loss)
      << ", \"eval_accuracy\": " << j(r.final_eval_accuracy) << ", \"seconds\": " << j(r.seconds)
      << ", \"skipped\": " << r.skipped << "}\n";
    f.close();
    if (!f) return Status::IoError(tmp + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::IoError(path + ": " + ec.message());
  return Status::Ok();
}

Status record_train_result(const TrainConfig& cfg, const TrainResult& r) {
  const std::string& dir = cfg.checkpoint.dir;
  if (r.interrupted || dir.empty()) return Status::Ok();
  if (r.end_step == r.start_step && fs::exists(fs::path(dir) / "result.json")) return Status::Ok();
  return write_result_json(dir, r);
}

StatusOr<RunResult> read_result_json(const std::string& path) {
  try {
    YAML::Node n = YAML::LoadFile(path);
    RunResult r;
    auto d = [&](const char* k) {
      return n[k] && !n[k].IsNull() ? n[k].as<double>() : RunResult::kNaN;
    };
    r.steps = n["steps"] ? n["steps"].as<int64_t>() : 0;
    r.train_loss = d("train_loss");
    r.eval_loss = d("eval_loss");
    r.eval_accuracy = d("eval_accuracy");
    r.seconds = d("seconds");
    return r;
  } catch (const YAML::Exception& e) {
    return Status::Corruption(path + ": " + e.msg);
  }
}

StatusOr<std::vector<RunOutcome>> run_sweep(const SweepSpec& s, const SweepOptions& opt) {
  Status v = validate_sweep(s);
  if (!v.ok()) return v;
  std::vector<RunOutcome> out(s.runs.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < s.runs.size(); ++i) {
    out[i].name = s.runs[i].name;
    out[i].status = "not run";
    const std::string rj = run_dir(s, s.runs[i]) + "/result.json";
    if (!fs::exists(rj)) {
      todo.push_back(i);
      continue;
    }
    StatusOr<RunResult> r = read_result_json(rj);
    if (!r.ok()) return r.status();
    out[i].status = "done earlier";
    out[i].result = r.value();
  }
  std::vector<std::string> gpus = s.gpus ? visible_gpus() : std::vector<std::string>{};
  const size_t slots = s.gpus ? std::max<size_t>(gpus.size(), 1) : size_t(s.parallel);
  std::fprintf(opt.out, "sweep %s: %zu runs, %zu done earlier, %zu at a time%s\n", s.file.c_str(),
               s.runs.size(), s.runs.size() - todo.size(), slots,
               gpus.empty() ? "" : " (one per GPU)");

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_sweep_signal;
  sigemptyset(&sa.sa_mask);
  g_sweep_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  struct Child {
    pid_t pid;
    size_t run;
    int slot;
  };
  std::vector<Child> running;
  std::vector<bool> slot_busy(slots, false);
  bool forwarded = false;
  Status io = Status::Ok();
  for (size_t next = 0; next < todo.size() || !running.empty();) {
    while (!g_sweep_signal && io.ok() && running.size() < slots && next < todo.size()) {
      const SweepRun& r = s.runs[todo[next++]];
      const std::string dir = run_dir(s, r);
      std::error_code ec;
      fs::create_directories(dir, ec);
      int fd =
          ec ? -1
             : ::open((dir + "/log.txt").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) {
        io = Status::IoError(dir + "/log.txt: cannot open: " + std::strerror(errno));
        break;
      }
      int slot = 0;
      while (slot_busy[size_t(slot)]) ++slot;
      std::vector<std::string> args = {opt.exe, "train", s.base};
      for (const std::string& o : run_overrides(s, r)) args.insert(args.end(), {"--set", o});
      std::vector<std::string> env;
      for (char** e = environ; *e; ++e)
        if (gpus.empty() || std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0) env.push_back(*e);
      if (!gpus.empty()) env.push_back("CUDA_VISIBLE_DEVICES=" + gpus[size_t(slot)]);
      std::vector<char*> argv, envp;
      for (std::string& a : args) argv.push_back(a.data());
      for (std::string& e : env) envp.push_back(e.data());
      argv.push_back(nullptr);
      envp.push_back(nullptr);
      std::fprintf(opt.out, "run %s: starting%s (log %s/log.txt)\n", r.name.c_str(),
                   gpus.empty() ? "" : (" on GPU " + gpus[size_t(slot)]).c_str(), dir.c_str());
      std::fflush(opt.out);
      pid_t pid = ::fork();
      if (pid == 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execve(argv[0], argv.data(), envp.data());
        const char msg[] = "sweep: cannot execute the superlinear program\n";
        [[maybe_unused]] ssize_t w = ::write(2, msg, sizeof(msg) - 1);
        ::_exit(127);
      }
      ::close(fd);
      if (pid < 0) {
        io = Status::IoError(std::string("fork failed: ") + std::strerror(errno));
        break;
      }
      slot_busy[size_t(slot)] = true;
      running.push_back({pid, todo[next - 1], slot});
    }
    if (running.empty()) break;
    int wstatus = 0;
    pid_t pid = ::waitpid(-1, &wstatus, 0);
    if (pid < 0) {
      if (errno != EINTR) break;
      if (g_sweep_signal && !forwarded) {
        for (const Child& c : running) ::kill(c.pid, g_sweep_signal);
        forwarded = true;
      }
      continue;
    }
    auto it =
        std::find_if(running.begin(), running.end(), [&](const Child& c) { return c.pid == pid; });
    if (it == running.end()) continue;
    RunOutcome& o = out[it->run];
    const std::string rj = run_dir(s, s.runs[it->run]) + "/result.json";
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 && fs::exists(rj)) {
      StatusOr<RunResult> r = read_result_json(rj);
      o.status = r.ok() ? "done" : "failed (" + r.status().message() + ")";
      if (r.ok()) o.result = r.value();
    } else if (WIFEXITED(wstatus)) {
      o.status = WEXITSTATUS(wstatus) == 0
                     ? "interrupted"
                     : "failed (exit " + std::to_string(WEXITSTATUS(wstatus)) + ")";
    } else {
      o.status = "failed (signal " + std::to_string(WTERMSIG(wstatus)) + ")";
    }
    std::fprintf(opt.out, "run %s: %s%s\n", o.name.c_str(), o.status.c_str(),
                 o.status != "done" ? ""
                                    : ("; eval loss " + num(o.result.eval_loss) + ", accuracy " +
                                       num(o.result.eval_accuracy))
                                          .c_str());
    slot_busy[size_t(it->slot)] = false;
    running.erase(it);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!io.ok()) return io;
  std::error_code ec;
  fs::create_directories(s.out_dir, ec);
  Status t = write_tables(s, out);
  if (!t.ok()) return t;
  std::fprintf(opt.out, "results: %s/results.csv, %s/results.md\n", s.out_dir.c_str(),
               s.out_dir.c_str());
  return out;
}

int sweep_command(const std::vector<std::string>& args, const std::string& exe) {
  if (args.size() != 1 || args[0].rfind("-", 0) == 0) {
    std::fprintf(stderr, "usage: superlinear sweep SWEEP.yaml\n");
    return 2;
  }
  StatusOr<SweepSpec> s = load_sweep(args[0]);
  if (!s.ok()) {
    std::fprintf(stderr, "superlinear sweep: %s\n", s.status().message().c_str());
    return 1;
  }
  std::error_code ec;
  SweepOptions o;
  o.exe = fs::canonical(exe, ec).string();
  if (ec) o.exe = exe;
  StatusOr<std::vector<RunOutcome>> r = run_sweep(s.value(), o);
  if (!r.ok()) {
    std::fprintf(stderr, "superlinear sweep: %s\n", r.status().message().c_str());
    return 1;
  }
  for (const RunOutcome& x : r.value())
    if (x.status != "done" && x.status != "done earlier") return 1;
  return 0;
}

}  // namespace sl::trainer
