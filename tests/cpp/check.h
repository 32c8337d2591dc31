// genrec-lite's C++ test harness: a registry of test cases and CHECK / REQUIRE macros.
//
//   TEST_CASE(trie_allowed_next) { CHECK_EQ(trie.levels(), 2); REQUIRE(ok); ... }
//
// CHECK* records a failure and goes on; REQUIRE* records it and ends the test case. main.cc runs
// every case (or those whose name contains argv[1]) and exits 1 when any check failed.
#pragma once

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace genrec_test {

struct Case {
  const char* name;
  void (*fn)();
};
inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
struct Register {
  Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};
struct Abort {};  // thrown by a failed REQUIRE: ends the test case
inline int& failures() {
  static int n = 0;
  return n;
}
inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
}

template <class T> void show(std::ostream& os, const T& v) { os << v; }
template <class T> void show(std::ostream& os, const std::vector<T>& v) {  // the first 12 values
  os << '[';
  for (size_t i = 0; i < v.size() && i < 12; ++i) { if (i) os << ", "; show(os, v[i]); }
  if (v.size() > 12) os << ", ... (" << v.size() << " values)";
  os << ']';
}
template <class A, class B> std::string mismatch(const char* expr, const A& a, const B& b) {
  std::ostringstream os;
  os.precision(17);
  os << expr << "  with  ";
  show(os, a);
  os << "  vs  ";
  show(os, b);
  return os.str();
}
template <class T> std::string mismatch(const char* expr, const std::vector<T>& a, const std::vector<T>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::ostringstream os;
  os.precision(17);
  os << expr << "  with sizes " << a.size() << " vs " << b.size();
  if (i < a.size() && i < b.size()) { os << ", first difference at [" << i << "]: "; show(os, a[i]); os << " vs "; show(os, b[i]); }
  os << "  (";
  show(os, a);
  os << "  vs  ";
  show(os, b);
  os << ')';
  return os.str();
}

}  // namespace genrec_test

#define GT_CAT2(a, b) a##b
#define GT_CAT(a, b) GT_CAT2(a, b)
#define TEST_CASE(name)                                                      \
  static void name();                                                        \
  static genrec_test::Register GT_CAT(gt_register_, name)(#name, &name);     \
  static void name()

#define GT_CHECK(cond, what, on_fail) \
  do { if (!(cond)) { genrec_test::fail(__FILE__, __LINE__, what); on_fail; } } while (0)
#define CHECK(c) GT_CHECK((c), #c, (void)0)
#define REQUIRE(c) GT_CHECK((c), #c, throw genrec_test::Abort{})
#define CHECK_EQ(a, b) GT_CHECK((a) == (b), genrec_test::mismatch(#a " == " #b, (a), (b)), (void)0)
#define REQUIRE_EQ(a, b) GT_CHECK((a) == (b), genrec_test::mismatch(#a " == " #b, (a), (b)), throw genrec_test::Abort{})
#define CHECK_NEAR(a, b, tol) \
  GT_CHECK(std::fabs(double(a) - double(b)) <= (tol), genrec_test::mismatch(#a " ~= " #b, (a), (b)), (void)0)
// expr must throw exactly this type or a subclass; a different exception or none is a failure.
#define CHECK_THROWS_AS(expr, type)                                                  \
  do {                                                                               \
    bool gt_thrown = false;                                                          \
    try { (void)(expr); } catch (const type&) { gt_thrown = true; } catch (...) {}   \
    GT_CHECK(gt_thrown, #expr " throws " #type, (void)0);                            \
  } while (0)
