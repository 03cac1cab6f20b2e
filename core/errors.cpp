#include "core/errors.h"

#include <exception>

namespace sl {
namespace detail {

ErrorBuilder::ErrorBuilder(const char* file, int line, const char* kind, const char* expr)
    : uncaught_at_start_(std::uncaught_exceptions()) {
  os_ << file << ":" << line << ": " << kind;
  if (expr && expr[0]) os_ << ": " << expr;
}

ErrorBuilder::~ErrorBuilder() noexcept(false) {
  if (std::uncaught_exceptions() > uncaught_at_start_) return;
  throw Error(os_.str());
}

}  // namespace detail

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: name = "Invalid argument"; break;
    case Code::kNotFound: name = "Not found"; break;
    case Code::kIoError: name = "I/O error"; break;
    case Code::kCorruption: name = "Corruption"; break;
    case Code::kUnimplemented: name = "Unimplemented"; break;
  }
  return std::string(name) + ": " + message_;
}

void ThrowIfError(const Status& s) {
  if (!s.ok()) throw Error(s.ToString());
}

}  // namespace sl
