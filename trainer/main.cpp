// The `superlinear` command-line program.
#include <cstdio>
#include <cstring>
#include <string>

#include "core/device.h"
#include "core/errors.h"

namespace {

int usage() {
  std::printf(
      "usage: superlinear <command> [args]\n"
      "commands:\n"
      "  info      print the build (CUDA or CPU-only) and the visible devices\n");
  return 2;
}

int cmd_info() {
  std::printf("superlinear: %s build\n", SL_WITH_CUDA ? "CUDA" : "CPU-only");
  std::printf("CUDA devices visible: %d\n", sl::cuda_device_count());
  std::printf("default device: %s\n", sl::default_device().str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  try {
    if (cmd == "info") return cmd_info();
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      usage();
      return 0;
    }
    std::fprintf(stderr, "superlinear: unknown command '%s'\n", cmd.c_str());
    return usage();
  } catch (const sl::Error& e) {
    std::fprintf(stderr, "superlinear: error: %s\n", e.what());
    return 1;
  }
}
