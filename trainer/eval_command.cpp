// `superlinear eval` (trainer/eval_command.h). Each NIAH cell is its own batch source (the
// config's data section with the grid's task, depth and length), so a cell's rows are the same
// whatever else is in the grid, and two checkpoints are compared on identical rows.
#include "trainer/eval_command.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "layers/config_io.h"
#include "trainer/png.h"

namespace sl::trainer {
namespace {

namespace fs = std::filesystem;

StatusOr<Device> eval_device(const std::string& d) {
  if (d == "auto") return default_device();
  if (d == "cpu") return Device::cpu();
  int index = d == "cuda" ? 0 : std::stoi(d.substr(5));
  if (index >= cuda_device_count())
    return Status::InvalidArgument("device: \"" + d + "\" requested but " +
                                   std::to_string(cuda_device_count()) +
                                   " CUDA device(s) are visible (use --set device=cpu)");
  return Device::cuda(index);
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string depth_label(double d) {
  return d < 0 ? "rand" : fixed(d, 2);
}

void print_niah_table(std::FILE* out, const NiahEvalConfig& n, const std::vector<NiahCell>& c) {
  std::fprintf(out, "NIAH %s accuracy (rows: depth, columns: length)\n%8s", n.task.c_str(),
               "depth");
  for (int64_t len : n.lengths) std::fprintf(out, " %8lld", static_cast<long long>(len));
  std::fprintf(out, "\n");
  for (size_t d = 0; d < n.depths.size(); ++d) {
    std::fprintf(out, "%8s", depth_label(n.depths[d]).c_str());
    for (size_t l = 0; l < n.lengths.size(); ++l)
      std::fprintf(out, " %8.3f", c[l * n.depths.size() + d].accuracy);
    std::fprintf(out, "\n");
  }
}

}  // namespace

Status load_model_params(layers::HybridLM& model, const CheckpointData& ck,
                         const std::string& path) {
  Status mc = ck.check_model_config(layers::to_yaml(model.config()), path,
                                    "the config's model section describes another model");
  if (!mc.ok()) return mc;
  for (auto& [name, p] : model.named_parameters()) {
    StatusOr<Tensor> t = ck.get("param/" + name, p.value().shape(), DType::F32, path);
    if (!t.ok()) return t.status();
    Tensor dst = p.value();
    dst.copy_(t.value());
  }
  return Status::Ok();
}

std::vector<NiahCell> evaluate_niah(layers::HybridLM& model, const TrainConfig& cfg, Device dev) {
  const NiahEvalConfig& n = cfg.eval.niah;
  std::vector<NiahCell> cells;
  const int64_t n_batches = (n.samples + n.batch_size - 1) / n.batch_size;
  for (int64_t len : n.lengths)
    for (double depth : n.depths) {
      data::SourceShape shape;
      shape.vocab_size = cfg.model.vocab_size;
      shape.batch_size = n.batch_size;
      shape.seq_len = len;
      shape.seed = cfg.seed;
      const data::SyntheticConfig cell = n.cell(cfg.data, depth);
      auto src = data::make_batch_source(cell, shape);
      ThrowIfError(src.status());
      EvalResult r = evaluate_lm(model, *src.value(), n_batches, dev);
      cells.push_back({len, depth, r.accuracy, r.loss, n_batches * n.batch_size, r.scored});
    }
  return cells;
}

Status write_niah_csv(const std::string& path, const TrainConfig& cfg,
                      const std::vector<NiahCell>& cells, const std::string& checkpoint) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return Status::IoError(path + ": cannot open for writing");
  f << "# NIAH " << cfg.eval.niah.task
    << ": accuracy = fraction of answer tokens predicted exactly (argmax), loss = their mean "
       "cross-entropy; depth -1 = uniform random; checkpoint "
    << checkpoint << "\n";
  f << "length,depth,accuracy,loss,rows,scored\n";
  for (const NiahCell& c : cells)
    f << c.length << "," << c.depth << "," << fixed(c.accuracy, 6) << "," << fixed(c.loss, 6) << ","
      << c.rows << "," << c.scored << "\n";
  f.close();
  if (!f) return Status::IoError(path + ": write failed");
  return Status::Ok();
}

Status write_niah_png(const std::string& path, const TrainConfig& cfg,
                      const std::vector<NiahCell>& cells) {
  const NiahEvalConfig& n = cfg.eval.niah;
  std::vector<std::vector<double>> v(n.depths.size(), std::vector<double>(n.lengths.size()));
  std::vector<std::string> rows, cols;
  for (size_t d = 0; d < n.depths.size(); ++d)
    rows.push_back(n.depths[d] < 0 ? "-1" : fixed(100 * n.depths[d], 0) + "%");
  for (size_t l = 0; l < n.lengths.size(); ++l) {
    cols.push_back(std::to_string(n.lengths[l]));
    for (size_t d = 0; d < n.depths.size(); ++d) v[d][l] = cells[l * n.depths.size() + d].accuracy;
  }
  return write_png(path, heatmap(v, rows, cols));
}

StatusOr<EvalReport> run_eval(const EvalOptions& o, std::FILE* out) {
  StatusOr<TrainConfig> loaded = load_train_config(o.config_path, o.overrides);
  if (!loaded.ok()) return loaded.status();
  const TrainConfig& cfg = loaded.value();
  StatusOr<Device> dev = eval_device(cfg.device);
  if (!dev.ok()) return dev.status();

  EvalReport rep;
  CheckpointData ck;
  if (!o.checkpoint.empty()) {
    StatusOr<CheckpointData> d = read_checkpoint(o.checkpoint);
    if (!d.ok()) return d.status();
    ck = std::move(d).value();
    rep.checkpoint = o.checkpoint;
  } else {
    if (cfg.checkpoint.dir.empty())
      return Status::InvalidArgument(o.config_path +
                                     ": checkpoint.dir is empty; pass --checkpoint PATH");
    std::vector<std::string> warnings;
    StatusOr<std::string> p = latest_valid_checkpoint(cfg.checkpoint.dir, &ck, &warnings);
    for (const std::string& w : warnings) std::fprintf(out, "warning: %s\n", w.c_str());
    if (!p.ok())
      return Status::NotFound("no valid checkpoint in checkpoint.dir = " + cfg.checkpoint.dir +
                              " (train first, or pass --checkpoint PATH)");
    rep.checkpoint = p.value();
  }
  if (const Tensor* st = ck.find("trainer/state"); st && st->numel() > 0)
    rep.step = st->to_vector<int64_t>()[0];

  Generator gen(cfg.seed);
  layers::HybridLM model(cfg.model, gen);
  Status ls = load_model_params(model, ck, rep.checkpoint);
  if (!ls.ok()) return ls;
  const bool bf16 = cfg.precision == "bf16" || (cfg.precision == "auto" && dev.value().is_cuda());
  model.to(dev.value(), bf16 ? DType::BF16 : DType::F32);
  std::fprintf(out, "checkpoint %s (step %lld); model %lld parameters on %s, %s\n",
               rep.checkpoint.c_str(), static_cast<long long>(rep.step),
               static_cast<long long>(model.num_parameters()), dev.value().str().c_str(),
               bf16 ? "bf16" : "f32");

  const int64_t batches = o.batches >= 0 ? o.batches : cfg.logging.eval_batches;
  if (batches > 0) {
    data::SourceShape shape;
    shape.vocab_size = cfg.model.vocab_size;
    shape.batch_size = cfg.batch_size;
    shape.seq_len = cfg.seq_len;
    shape.seed = cfg.seed;
    auto src = data::make_batch_source(cfg.data, shape);
    if (!src.ok()) return src.status();
    rep.lm = evaluate_lm(model, *src.value(), batches, dev.value());
    std::fprintf(out,
                 "eval split (%lld batches, %lld scored tokens): loss %.4f, perplexity %.3f, "
                 "accuracy %.4f\n",
                 static_cast<long long>(batches), static_cast<long long>(rep.lm.scored),
                 rep.lm.loss, rep.lm.perplexity(), rep.lm.accuracy);
  }

  if (cfg.eval.niah.enabled()) {
    rep.niah = evaluate_niah(model, cfg, dev.value());
    print_niah_table(out, cfg.eval.niah, rep.niah);
    std::string dir = !o.out_dir.empty()            ? o.out_dir
                      : !cfg.checkpoint.dir.empty() ? cfg.checkpoint.dir
                                                    : ".";
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::IoError(dir + ": cannot create directory: " + ec.message());
    rep.csv_path = (fs::path(dir) / "niah.csv").string();
    rep.png_path = (fs::path(dir) / "niah.png").string();
    Status s = write_niah_csv(rep.csv_path, cfg, rep.niah, rep.checkpoint);
    if (s.ok()) s = write_niah_png(rep.png_path, cfg, rep.niah);
    if (!s.ok()) return s;
    std::fprintf(out, "wrote %s and %s\n", rep.csv_path.c_str(), rep.png_path.c_str());
  }
  return rep;
}

int eval_command(const std::vector<std::string>& args) {
  EvalOptions o;
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: superlinear eval CONFIG.yaml [--checkpoint PATH] [--set key=value]... "
                 "[--batches N] [--out DIR]\n");
    return 2;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= args.size()) return false;
      *dst = args[++i];
      return true;
    };
    std::string v;
    if (a == "--set") {
      if (!value(&v)) return usage();
      o.overrides.push_back(v);
    } else if (a == "--checkpoint") {
      if (!value(&o.checkpoint)) return usage();
    } else if (a == "--out") {
      if (!value(&o.out_dir)) return usage();
    } else if (a == "--batches") {
      if (!value(&v) || v.empty() || v.find_first_not_of("0123456789") != std::string::npos) {
        std::fprintf(stderr, "superlinear eval: --batches needs a non-negative integer\n");
        return 2;
      }
      o.batches = std::stoll(v);
    } else if (a.rfind("-", 0) == 0 || !o.config_path.empty()) {
      std::fprintf(stderr, "superlinear eval: unexpected argument '%s'\n", a.c_str());
      return usage();
    } else {
      o.config_path = a;
    }
  }
  if (o.config_path.empty()) return usage();
  StatusOr<EvalReport> r = run_eval(o, stdout);
  if (!r.ok()) {
    std::fprintf(stderr, "superlinear eval: %s\n", r.status().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace sl::trainer
