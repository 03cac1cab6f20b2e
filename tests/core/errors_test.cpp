// The error-check family (core/errors.h) and the op argument checks (core/tensor.h): messages name
// the file, line, expression and streamed text; Status and StatusOr behave as values.
#include "core/errors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace sl {
namespace {

// Runs f, which must throw sl::Error; returns what().
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no sl::Error thrown";
  return "";
}

void expect_contains(const std::string& s, const std::string& needle) {
  EXPECT_NE(s.find(needle), std::string::npos) << "'" << needle << "' not in: " << s;
}

TEST(Check, MessageNamesFileLineExpressionAndStreamedText) {
  int line = 0;
  std::string msg = error_of([&] {
    int a = 2;
    line = __LINE__ + 1;
    SL_CHECK(a + 1 == 4) << "streamed " << 42 << " and " << std::string("more");
  });
  expect_contains(msg, "errors_test.cpp:" + std::to_string(line) + ":");
  expect_contains(msg, "check failed");
  expect_contains(msg, "a + 1 == 4");
  expect_contains(msg, "streamed 42 and more");
}

TEST(Check, PassingCheckThrowsNothingAndDoesNotEvaluateTheMessage) {
  int evaluated = 0;
  auto side_effect = [&] { return ++evaluated; };
  EXPECT_NO_THROW(SL_CHECK(1 + 1 == 2) << side_effect());
  EXPECT_EQ(evaluated, 0);
  EXPECT_THROW(SL_CHECK(1 + 1 == 3) << side_effect(), Error);
  EXPECT_EQ(evaluated, 1);
}

TEST(Check, IsOneStatementInsideIfElse) {
  bool else_taken = false;
  bool cond = false;
  if (cond) {
    SL_CHECK(false) << "not reached";
  } else {
    else_taken = true;
  }
  EXPECT_TRUE(else_taken);
  // Without braces, the macro's own else must not capture the caller's.
  int branch = 0;
  for (int flag = 0; flag < 2; ++flag) {
    if (flag == 1) SL_CHECK(true) << "x"; else branch = 7;  // NOLINT
  }
  EXPECT_EQ(branch, 7);
}

// An exception thrown while the message is being built (a checked accessor in the message, say
// `<< x.size(5)`) should propagate like any other error, not terminate the process (the builder's
// destructor must not throw while that exception unwinds). The death-test child catches whatever
// escapes and exits 0; a builder that throws regardless makes it abort, and this test fails.
int throwing_message_part() {
  SL_FAIL() << "inner error";
  return 0;
}
TEST(CheckDeathTest, ExceptionWhileStreamingTheMessagePropagates) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        try {
          SL_CHECK(1 + 1 == 3) << "value " << throwing_message_part();
        } catch (const Error&) {
          std::exit(0);
        }
        std::exit(1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(Check, ComparisonVariantsPrintBothValues) {
  std::string m = error_of([] { SL_CHECK_EQ(3, 4) << "sizes"; });
  expect_contains(m, "(3) == (4)");
  expect_contains(m, "(3 vs 4)");
  expect_contains(m, "sizes");
  expect_contains(error_of([] { SL_CHECK_LT(5, 5); }), "(5 vs 5)");
  expect_contains(error_of([] { SL_CHECK_LE(6, 5); }), "(6 vs 5)");
  expect_contains(error_of([] { SL_CHECK_GE(1, 2); }), "(1 vs 2)");
  EXPECT_NO_THROW(SL_CHECK_LE(5, 5));
  std::string f = error_of([] { SL_FAIL() << "plain failure " << 1.5; });
  expect_contains(f, "errors_test.cpp:");
  expect_contains(f, "error");
  expect_contains(f, "plain failure 1.5");
}

TEST(StatusTest, CodesMessagesAndToString) {
  EXPECT_TRUE(Status().ok());
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  Status c = Status::Corruption("model.safetensors: truncated");
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.code(), Status::Code::kCorruption);
  EXPECT_EQ(c.message(), "model.safetensors: truncated");
  EXPECT_EQ(c.ToString(), "Corruption: model.safetensors: truncated");
  EXPECT_EQ(Status::InvalidArgument("k").ToString(), "Invalid argument: k");
  EXPECT_EQ(Status::NotFound("f").ToString(), "Not found: f");
  EXPECT_EQ(Status::IoError("d").ToString(), "I/O error: d");
  EXPECT_EQ(Status::Unimplemented("u").ToString(), "Unimplemented: u");
  EXPECT_NO_THROW(ThrowIfError(Status::Ok()));
  expect_contains(error_of([&] { ThrowIfError(c); }), "Corruption: model.safetensors: truncated");
}

StatusOr<int> parse_positive(int x) {
  if (x <= 0) return Status::InvalidArgument("not positive: " + std::to_string(x));
  return x * 10;
}

TEST(StatusOrTest, HoldsAValueOrAnError) {
  StatusOr<int> good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good.status().ok());
  EXPECT_EQ(good.value(), 30);
  StatusOr<int> bad = parse_positive(-1);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalidArgument);
  expect_contains(error_of([&] { (void)bad.value(); }), "Invalid argument: not positive: -1");
  // An OK status is not an error: building a StatusOr from one is a programmer error.
  expect_contains(error_of([] { StatusOr<int> s(Status::Ok()); }), "without a value");
  // Move-only values move out of an rvalue.
  StatusOr<std::unique_ptr<int>> p(std::make_unique<int>(5));
  std::unique_ptr<int> owned = std::move(p).value();
  EXPECT_EQ(*owned, 5);
}

TEST(ArgumentChecks, ShapeDtypeDeviceMessagesNameOpArgumentAndShapes) {
  Tensor x = Tensor::zeros({2, 3, 5}, DType::F32);
  std::string m = error_of([&] { SL_CHECK_SHAPE("rmsnorm", x, 2, -1, 4); });
  expect_contains(m, "errors_test.cpp:");
  expect_contains(m, "rmsnorm");
  expect_contains(m, "'x'");
  expect_contains(m, "[2, 3, 5]");
  expect_contains(m, "expected [2, *, 4]");
  expect_contains(error_of([&] { SL_CHECK_SHAPE("rmsnorm", x, 2, 3); }), "expected [2, 3]");
  EXPECT_NO_THROW(SL_CHECK_SHAPE("rmsnorm", x, 2, -1, 5));
  std::string d = error_of([&] { SL_CHECK_DTYPE("matmul", x, DType::BF16, DType::F16); });
  expect_contains(d, "matmul");
  expect_contains(d, "'x' has dtype f32");
  expect_contains(d, "expected bf16 or f16");
  EXPECT_NO_THROW(SL_CHECK_DTYPE("matmul", x, DType::F32));
  std::string v = error_of([&] { SL_CHECK_DEVICE("matmul", x, Device::cuda(0)); });
  expect_contains(v, "'x' is on cpu");
  expect_contains(v, "cuda:0");
  Tensor undefined;
  expect_contains(error_of([&] { SL_CHECK_DEFINED("softmax", undefined); }),
                  "softmax: 'undefined' is undefined");
  expect_contains(error_of([&] { SL_CHECK_SHAPE("softmax", undefined, 1); }), "is undefined");
}

}  // namespace
}  // namespace sl
