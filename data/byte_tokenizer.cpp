// The byte-level tokenizer (data/byte_tokenizer.h).
#include "data/byte_tokenizer.h"

namespace sl::data::bytes {

std::vector<int32_t> encode_document(std::string_view text) {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 2);
  ids.push_back(kBos);
  for (char c : text) ids.push_back(kFirstByte + int32_t(static_cast<unsigned char>(c)));
  ids.push_back(kEos);
  return ids;
}

std::string decode(const std::vector<int32_t>& ids) {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids)
    if (id >= kFirstByte && id < kVocabSize)
      out += char(static_cast<unsigned char>(id - kFirstByte));
  return out;
}

}  // namespace sl::data::bytes
