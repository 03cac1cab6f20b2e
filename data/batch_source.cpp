// Batch sources (data/batch_source.h).
#include "data/batch_source.h"

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

StatusOr<std::unique_ptr<BatchSource>> make_batch_source(const SyntheticConfig& c,
                                                         const SourceShape& shape) {
  Status s = validate_synthetic(c, shape.vocab_size, shape.seq_len);
  if (!s.ok()) return s;
  return std::unique_ptr<BatchSource>(new SyntheticSource(c, shape));
}

}  // namespace sl::data
