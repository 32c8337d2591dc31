// genrec-lite: the Python module genrec_lite._core. The only files that know about Python are
// those of csrc/bindings/: convert.h (shared conversions and conventions) and one file per
// concept (quantizer.cc, trie.cc, search.cc), each adding its classes here.
#include "convert.h"

NB_MODULE(_core, m) {
  using namespace genrec_py;
  m.doc() = "genrec-lite C++ core: residual-quantizer lookup, the semantic-ID trie and beam search.";
  nb::register_exception_translator(translate_errors);

  bind_quantizer(m);
  bind_trie(m);
  bind_search(m);
}
