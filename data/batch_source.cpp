// Batch sources (data/batch_source.h).
#include "data/batch_source.h"

#include "data/packed_source.h"

namespace sl::data {
namespace {

class SyntheticSource : public BatchSource {
 public:
  SyntheticSource(const SyntheticConfig& c, const SourceShape& s) : BatchSource(s), c_(c) {}
  Batch batch(int64_t index, Split split) const override {
    return synthetic_batch(c_, shape_.vocab_size, shape_.batch_size, shape_.seq_len, shape_.seed,
                           index, shape_.rank, split);
  }
  std::string describe() const override {
    if (c_.task == "copy") return "synthetic copy";
    return "synthetic " + c_.task + " (" + std::to_string(c_.n_pairs) + " pairs)";
  }

 private:
  SyntheticConfig c_;
};

}  // namespace

Status validate_data_config(const DataConfig& c, int64_t vocab_size, int64_t seq_len) {
  if (c.source == "synthetic") return validate_synthetic(c, vocab_size, seq_len);
  if (c.source != "hdf5")
    return Status::InvalidArgument("data.source: \"" + c.source +
                                   "\" is not one of synthetic, hdf5");
  if (c.path.empty())
    return Status::InvalidArgument(
        "data.path: empty; source hdf5 needs a token file (make one "
        "with `superlinear data build --output FILE.h5 TEXT...`)");
  if (c.eval_path.empty() && !(c.eval_fraction > 0 && c.eval_fraction < 1))
    return Status::InvalidArgument("data.eval_fraction: " + std::to_string(c.eval_fraction) +
                                   " must be in (0, 1) when data.eval_path is empty");
  return Status::Ok();
}

StatusOr<std::unique_ptr<BatchSource>> make_batch_source(const DataConfig& c,
                                                         const SourceShape& shape) {
  Status s = validate_data_config(c, shape.vocab_size, shape.seq_len);
  if (!s.ok()) return s;
  if (c.source == "synthetic")
    return make_batch_source(static_cast<const SyntheticConfig&>(c), shape);
  StatusOr<std::unique_ptr<PackedSource>> p = PackedSource::open(c, shape);
  if (!p.ok()) return p.status();
  return std::unique_ptr<BatchSource>(std::move(p).value());
}

StatusOr<std::unique_ptr<BatchSource>> make_batch_source(const SyntheticConfig& c,
                                                         const SourceShape& shape) {
  Status s = validate_synthetic(c, shape.vocab_size, shape.seq_len);
  if (!s.ok()) return s;
  return std::unique_ptr<BatchSource>(new SyntheticSource(c, shape));
}

}  // namespace sl::data
