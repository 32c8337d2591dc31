// Runs the registered test cases (see check.h): all of them, or those whose name contains argv[1].
#include <cstdio>
#include <cstring>
#include <exception>

#include "check.h"

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : "";
  int ran = 0, failed_cases = 0;
  for (const auto& c : genrec_test::registry()) {
    if (std::strstr(c.name, filter) == nullptr) continue;
    const int before = genrec_test::failures();
    try {
      c.fn();
    } catch (const genrec_test::Abort&) {
      // a REQUIRE failed and was reported
    } catch (const std::exception& e) {
      genrec_test::fail(c.name, 0, std::string("unexpected exception: ") + e.what());
    } catch (...) {
      genrec_test::fail(c.name, 0, "unexpected non-std exception");
    }
    ++ran;
    const bool ok = genrec_test::failures() == before;
    failed_cases += ok ? 0 : 1;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
  }
  std::printf("%d test cases, %d failed, %d failed checks\n", ran, failed_cases, genrec_test::failures());
  if (ran == 0) {
    std::fprintf(stderr, "no test case matches '%s'\n", filter);
    return 1;
  }
  return genrec_test::failures() == 0 ? 0 : 1;
}
