// genrec-lite: the error types of the C++ core.
//
// Every error names the bad value and what was expected. The Python bindings translate them:
//   InvalidArgument, OutOfRange  -> genrec_lite.errors.InvalidArgumentError
//   UnknownItem                  -> genrec_lite.errors.UnknownItemError
//   any other Error              -> genrec_lite.errors.GenrecError
#pragma once

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

}  // namespace genrec
