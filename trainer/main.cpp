// The `superlinear` command-line program: `info` and `train`.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/errors.h"
#include "data/build_command.h"
#include "trainer/bench_command.h"
#include "trainer/config.h"
#include "trainer/eval_command.h"
#include "trainer/sweep.h"
#include "trainer/train.h"

namespace {

int usage(std::FILE* out = stderr) {
  std::fprintf(out,
               "usage: superlinear <command> [args]\n"
               "commands:\n"
               "  info                                  print the build (CUDA or CPU-only) and "
               "the visible devices\n"
               "  eval CONFIG.yaml [--checkpoint PATH] [--set key=value] [--batches N] "
               "[--out DIR]\n"
               "                                        eval-split loss and the eval.niah grid of "
               "a checkpoint\n"
               "  sweep SWEEP.yaml                      train a grid or list of runs of one base "
               "config (resumable)\n"
               "  train CONFIG.yaml [--set key=value]   train as the config says; --set overrides "
               "one key\n"
               "                                        (e.g. --set optimizer.lr=1e-3 --set "
               "steps=50)\n"
               "  data build --output OUT.h5 INPUT...   tokenise text into an HDF5 token file "
               "(superlinear data help)\n"
               "  bench attention [--L 4K,1M] [--gqa 1,8] [--out DIR] ...\n"
               "                                        superlinear vs dense attention: time, "
               "TFLOP/s, memory (GPU)\n");
  return 2;
}

int cmd_info() {
  std::printf("superlinear: %s build\n", SL_WITH_CUDA ? "CUDA" : "CPU-only");
  std::printf("CUDA devices visible: %d\n", sl::cuda_device_count());
  std::printf("default device: %s\n", sl::default_device().str().c_str());
  return 0;
}

std::string percent_change(double from, double to) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f -> %.2f (%+.0f%%)", from, to, 100.0 * (to - from) / from);
  return buf;
}

int cmd_train(int argc, char** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--set") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "superlinear train: --set needs key=value\n");
        return 2;
      }
      overrides.push_back(argv[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      overrides.push_back(a.substr(6));
    } else if (a.rfind("-", 0) == 0 || !config_path.empty()) {
      std::fprintf(stderr, "superlinear train: unexpected argument '%s'\n", a.c_str());
      return usage();
    } else {
      config_path = a;
    }
  }
  if (config_path.empty()) return usage();
  sl::StatusOr<sl::trainer::TrainConfig> cfg =
      sl::trainer::load_train_config(config_path, overrides);
  if (!cfg.ok()) {
    std::fprintf(stderr, "superlinear train: %s\n", cfg.status().message().c_str());
    return 1;
  }
  std::printf("# resolved configuration (%s)\n%s", config_path.c_str(),
              sl::trainer::to_yaml(cfg.value()).c_str());
  std::fflush(stdout);
  sl::StatusOr<sl::trainer::TrainResult> r = sl::trainer::train(cfg.value());
  if (!r.ok()) {
    std::fprintf(stderr, "superlinear train: %s\n", r.status().message().c_str());
    return 1;
  }
  const sl::trainer::TrainResult& res = r.value();
  sl::Status rs = sl::trainer::record_train_result(cfg.value(), res);
  if (!rs.ok()) std::fprintf(stderr, "superlinear train: %s\n", rs.message().c_str());
  if (res.interrupted || res.end_step == res.start_step) return 0;
  std::string summary =
      "done: steps " + std::to_string(res.start_step) + " -> " + std::to_string(res.end_step);
  char secs[32];
  std::snprintf(secs, sizeof(secs), " in %.1f s", res.seconds);
  summary += secs;
  if (std::isfinite(res.initial_eval_loss) && std::isfinite(res.final_eval_loss)) {
    summary += "; eval loss " + percent_change(res.initial_eval_loss, res.final_eval_loss);
    char acc[64];
    std::snprintf(acc, sizeof(acc), ", accuracy %.3f -> %.3f", res.initial_eval_accuracy,
                  res.final_eval_accuracy);
    summary += acc;
  } else if (std::isfinite(res.first_loss)) {
    summary += "; train loss " + percent_change(res.first_loss, res.last_loss);
  }
  if (res.skipped) summary += "; " + std::to_string(res.skipped) + " steps skipped";
  if (!res.last_checkpoint.empty()) summary += "; checkpoint " + res.last_checkpoint;
  std::printf("%s\n", summary.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  try {
    if (cmd == "info") return cmd_info();
    if (cmd == "train") return cmd_train(argc, argv);
    if (cmd == "eval") return sl::trainer::eval_command({argv + 2, argv + argc});
    if (cmd == "sweep")
      return sl::trainer::sweep_command({argv + 2, argv + argc}, "/proc/self/exe");
    if (cmd == "data") return sl::data::data_command({argv + 2, argv + argc});
    if (cmd == "bench") return sl::trainer::bench_command({argv + 2, argv + argc});
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "superlinear: unknown command '%s'\n", cmd.c_str());
    return usage();
  } catch (const sl::Error& e) {
    std::fprintf(stderr, "superlinear: error: %s\n", e.what());
    return 1;
  }
}
