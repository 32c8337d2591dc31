// genrec-lite: the error types of the C++ core.
//
// Every error names the bad value and what was expected. The Python bindings translate them:
//   InvalidArgument, OutOfRange  -> genrec_lite.errors.InvalidArgumentError
//   UnknownItem                  -> genrec_lite.errors.UnknownItemError
//   ModelOutputError             -> genrec_lite.errors.ModelOutputError
//   any other Error              -> genrec_lite.errors.GenrecError
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace genrec {

/// Base class of every error the core throws on purpose.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// An argument has the wrong value, shape or type.
class InvalidArgument : public Error {
 public:
  explicit InvalidArgument(const std::string& what) : Error(what) {}
};

/// A value (a code, an index, a length) lies outside its valid range.
class OutOfRange : public InvalidArgument {
 public:
  explicit OutOfRange(const std::string& what) : InvalidArgument(what) {}
};

/// An item id that the structure does not contain.
class UnknownItem : public InvalidArgument {
 public:
  UnknownItem(const std::string& what, int64_t item_id) : InvalidArgument(what), item_id_(item_id) {}
  int64_t item_id() const noexcept { return item_id_; }

 private:
  int64_t item_id_;
};

/// The model's logits hold a NaN or +inf where a search reads them: a broken model output, which
/// must not pass for an answer (an empty or a wrong list). Names the request (its index in the
/// batch), the SID level, the token and the value; code is the token's SID code at that level when
/// it is one the trie allowed there, -1 for another token of the row.
class ModelOutputError : public Error {
 public:
  ModelOutputError(int64_t request, int level, int32_t token, int32_t code, double value)
      : Error(message(request, level, token, code, value)),
        request_(request), level_(level), token_(token), code_(code), value_(value) {}
  int64_t request() const noexcept { return request_; }
  int level() const noexcept { return level_; }
  int32_t token() const noexcept { return token_; }
  int32_t code() const noexcept { return code_; }
  double value() const noexcept { return value_; }
  /// The same error for a caller that numbers the requests from `first` (a batch searched in groups).
  ModelOutputError for_batch(int64_t first) const { return {first + request_, level_, token_, code_, value_}; }

 private:
  static std::string message(int64_t request, int level, int32_t token, int32_t code, double value) {
    const std::string where = code >= 0 ? " (SID code " + std::to_string(code) + ", allowed)"
                                        : " (in the row of a beam that continues)";
    return "request " + std::to_string(request) + ", SID level " + std::to_string(level) +
           ": the model's logit of token " + std::to_string(token) + where + " is " +
           (std::isnan(value) ? "nan" : "inf") + "; expected a finite value or -inf (the model's output is broken)";
  }
  int64_t request_;
  int level_;
  int32_t token_, code_;
  double value_;
};

}  // namespace genrec
