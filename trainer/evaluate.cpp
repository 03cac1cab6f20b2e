// Held-out evaluation (trainer/evaluate.h). Losses are summed on the device per batch and read
// once per batch; the argmax is compared on the host.
#include "trainer/evaluate.h"

#include <cmath>
#include <vector>

#include "autograd/variable.h"
#include "kernels/cross_entropy.h"
#include "kernels/reduce.h"

namespace sl::trainer {

double EvalResult::perplexity() const {
  return std::exp(loss);
}

EvalResult evaluate_lm(layers::HybridLM& model, const data::BatchSource& source, int64_t n_batches,
                       Device dev, data::Split split) {
  ag::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t scored = 0, correct = 0;
  for (int64_t i = 0; i < n_batches; ++i) {
    data::Batch b = source.batch(i, split);
    const int64_t B = b.ids.size(0), T = b.ids.size(1);
    layers::SequenceInfo seq;
    if (b.seq_idx.defined()) seq.seq_idx = b.seq_idx.to(dev);
    Tensor logits = model.forward(b.ids.to(dev), seq).value();
    const int64_t V = logits.size(-1);
    logits = logits.reshape({B * T, V});
    Tensor targets = b.targets.reshape({B * T});
    loss_sum += kernels::cross_entropy_forward(logits, targets.to(dev), data::kIgnoreIndex,
                                               kernels::CeReduction::kSum)
                    .loss.item();
    std::vector<int64_t> pred = kernels::max(logits, 1).second.to_vector<int64_t>();
    std::vector<int64_t> want = targets.to_vector<int64_t>();
    for (size_t j = 0; j < want.size(); ++j) {
      if (want[j] == data::kIgnoreIndex) continue;
      ++scored;
      correct += pred[j] == want[j];
    }
  }
  EvalResult r;
  r.scored = scored;
  if (scored == 0) return r;
  r.loss = loss_sum / double(scored);
  r.accuracy = double(correct) / double(scored);
  return r;
}

}  // namespace sl::trainer
