// The built-in byte-level tokenizer: every byte of UTF-8 (or any) text is one token, so it needs
// no vocabulary file and round-trips any input exactly.
//
// Id layout (vocab_size 259; the tokenizer attribute of a token file is "bytes"):
//   0          padding (data::kPadToken; never produced by encode)
//   1          BOS, beginning of a document (equal to data::kSepToken of the synthetic tasks)
//   2          EOS, end of a document
//   3 + b      byte b, for b in 0 .. 255
// A document is encoded as BOS, its bytes, EOS, so a packed row always shows where a document
// starts and ends and the model learns to predict the end of a document.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sl::data::bytes {

inline constexpr int32_t kPad = 0;
inline constexpr int32_t kBos = 1;
inline constexpr int32_t kEos = 2;
inline constexpr int32_t kFirstByte = 3;
inline constexpr int64_t kVocabSize = kFirstByte + 256;
inline constexpr const char* kTokenizerName = "bytes";

// BOS, one id per byte, EOS.
std::vector<int32_t> encode_document(std::string_view text);
// The bytes of the byte ids; special ids (pad, BOS, EOS) and ids outside the vocabulary are
// skipped.
std::string decode(const std::vector<int32_t>& ids);

}  // namespace sl::data::bytes
