// Errors: one check family for programmer errors, and Status for recoverable ones.
//
// Programmer errors (a wrong shape passed to an op, an out-of-range index, a failing CUDA call)
// throw sl::Error from SL_CHECK and its variants. The message names the file, the line and the
// failing expression, followed by whatever the caller streams in:
//
//   SL_CHECK(x.dim() == 3) << "rmsnorm: input must be [B, T, C], got " << x.shape_str();
//
// Throwing (rather than aborting) lets the command-line program print one clean message and lets
// tests assert that bad input is rejected. Recoverable errors that a caller is expected to handle
// (a configuration key, a corrupt file) are values: functions return Status or StatusOr<T>.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace sl {

// Thrown by every SL_*CHECK. what() holds "file:line: check failed: expr: message".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

// Collects the streamed message and throws when the full expression ends. Only ever constructed
// by the macros below, as a temporary, so the throw happens at the end of the check statement.
class ErrorBuilder {
 public:
  ErrorBuilder(const char* file, int line, const char* kind, const char* expr);
  ErrorBuilder(const ErrorBuilder&) = delete;
  ErrorBuilder& operator=(const ErrorBuilder&) = delete;
  // Throws sl::Error, unless an exception is already propagating (something in the streamed
  // message threw): that exception then continues instead of terminating the process.
  ~ErrorBuilder() noexcept(false);

  template <class T>
  ErrorBuilder& operator<<(const T& v) {
    if (!has_message_) {
      os_ << ": ";
      has_message_ = true;
    }
    os_ << v;
    return *this;
  }

 private:
  std::ostringstream os_;
  bool has_message_ = false;
  int uncaught_at_start_;
};

}  // namespace detail

// `if (cond) {} else` keeps the macro a single statement that binds correctly inside if/else.
#define SL_CHECK(cond) \
  if (cond) {          \
  } else               \
    ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "check failed", #cond)

#define SL_FAIL() ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "error", "")

#define SL_CHECK_EQ(a, b) SL_CHECK((a) == (b)) << "(" << (a) << " vs " << (b) << ") "
#define SL_CHECK_LT(a, b) SL_CHECK((a) < (b)) << "(" << (a) << " vs " << (b) << ") "
#define SL_CHECK_LE(a, b) SL_CHECK((a) <= (b)) << "(" << (a) << " vs " << (b) << ") "
#define SL_CHECK_GE(a, b) SL_CHECK((a) >= (b)) << "(" << (a) << " vs " << (b) << ") "

// MPI: the call's return code must be MPI_SUCCESS.
#define SL_MPI_CHECK(call)                                                             \
  do {                                                                                 \
    int sl_mpi_rc_ = (call);                                                           \
    if (sl_mpi_rc_ != 0)                                                               \
      ::sl::detail::ErrorBuilder(__FILE__, __LINE__, "MPI call failed", #call)         \
          << "return code " << sl_mpi_rc_;                                             \
  } while (0)

// ---- Status: recoverable errors as values (configuration, files, checkpoints) ----

class Status {
 public:
  enum class Code { kOk, kInvalidArgument, kNotFound, kIoError, kCorruption, kUnimplemented };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {Code::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status IoError(std::string msg) { return {Code::kIoError, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status Unimplemented(std::string msg) { return {Code::kUnimplemented, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: model.safetensors: tensor 'x' ends past the end of the file"
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value or a non-OK Status. value() on an error is a programmer error and throws.
template <class T>
class StatusOr {
 public:
  StatusOr(T v) : v_(std::move(v)) {}  // NOLINT: implicit by design, like absl::StatusOr.
  StatusOr(Status s) : v_(std::move(s)) {
    SL_CHECK(!std::get<Status>(v_).ok()) << "StatusOr built from an OK status without a value";
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    SL_CHECK(ok()) << status().ToString();
    return std::get<T>(v_);
  }
  T&& value() && {
    SL_CHECK(ok()) << status().ToString();
    return std::get<T>(std::move(v_));
  }

 private:
  std::variant<T, Status> v_;
};

// Turns a non-OK Status into an sl::Error (for places where failure is not recoverable).
void ThrowIfError(const Status& s);

}  // namespace sl
