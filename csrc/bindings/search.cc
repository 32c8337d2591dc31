// genrec-lite Python bindings: the beam search, driven from Python level by level (BeamSearch)
// or run whole over a llama.cpp context (LlamaContext: search, replay).
#include "convert.h"

#include <mutex>
#include <optional>

#include "genrec/beam_search.h"
#include "genrec/llama_search.h"
#include "genrec/sid_trie.h"

namespace genrec_py {
using namespace nb::literals;

namespace {

// BeamSearch (driven from Python one SID level at a time, e.g. over onnxruntime logits)

genrec::SidTokenTable token_table_from(nb::handle obj) {
  AnyArray a = as_array(obj, "token_table");
  if (a.ndim() != 2 || a.shape(0) == 0 || a.shape(1) == 0 ||
      a.shape(1) > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw InvalidArgument("token_table has shape " + shape_str(a) +
                          "; expected (levels, max codebook size), -1 where a level has no code");
  }
  genrec::SidTokenTable t;
  t.levels = static_cast<int>(a.shape(0));
  t.max_size = static_cast<int>(a.shape(1));
  std::vector<int32_t> storage;
  const int32_t* p = int_data<int32_t>(a, storage, "token_table");
  t.ids.assign(p, p + a.size());
  return t;
}

// The token table of a search: a TokenTable made once (the runtime's), or an array converted for
// this call only.
const genrec::SidTokenTable& token_table_of(nb::handle obj, std::optional<genrec::SidTokenTable>& own) {
  genrec::SidTokenTable* made = nullptr;
  if (nb::try_cast<genrec::SidTokenTable*>(obj, made) && made != nullptr) return *made;
  own.emplace(token_table_from(obj));
  return *own;
}

// Item ids of an allow/deny entry: a list, tuple or array, or any other iterable (set, range...).
void read_ids(nb::handle obj, std::vector<int64_t>& out, const std::string& name) {
  if (nb::isinstance<nb::list>(obj) || nb::isinstance<nb::tuple>(obj) || nb::ndarray_check(obj)) {
    read_sequence<int64_t>(obj, out, name.c_str());
    return;
  }
  PyObject* as_list = PySequence_List(obj.ptr());
  if (as_list == nullptr) {
    PyErr_Clear();
    throw InvalidArgument(name + " is " + py_str(nb::repr(obj)) + "; expected an iterable of item ids or None");
  }
  read_sequence<int64_t>(nb::steal(as_list), out, name.c_str());
}

std::vector<genrec::SearchRequest> requests_from(nb::handle obj) {
  if (!nb::isinstance<nb::list>(obj) && !nb::isinstance<nb::tuple>(obj)) {
    throw InvalidArgument("requests is " + py_str(obj.type().attr("__name__")) +
                          "; expected a list of dicts {k, beam, allow, deny}");
  }
  const size_t n = nb::len(obj);
  std::vector<genrec::SearchRequest> out(n);
  for (size_t i = 0; i < n; ++i) {
    nb::handle d = obj[i];
    const std::string where = "requests[" + std::to_string(i) + "]";
    if (!nb::isinstance<nb::dict>(d)) {
      throw InvalidArgument(where + " is " + py_str(nb::repr(d)) + "; expected a dict {k, beam, allow, deny}");
    }
    nb::dict dict = nb::borrow<nb::dict>(d);
    genrec::SearchRequest& q = out[i];
    for (auto [key, value] : dict) {
      const std::string name = py_str(key);
      if (name == "k" || name == "beam") {
        int64_t v = 0;
        const bool is_int = !nb::isinstance<nb::float_>(value) && !PyBool_Check(value.ptr()) &&
                            nb::try_cast(value, v, true);
        if (!is_int || v < 1 || v > (1 << 20)) {
          throw InvalidArgument(where + "['" + name + "'] is " + py_str(nb::repr(value)) +
                                "; expected an integer, 1 <= " + name + " <= 2^20");
        }
        (name == "k" ? q.k : q.beam) = static_cast<int>(v);
      } else if (name == "allow") {
        q.has_allow = !value.is_none();
        if (q.has_allow) read_ids(value, q.allow, where + "['allow']");
      } else if (name == "deny") {
        if (!value.is_none()) read_ids(value, q.deny, where + "['deny']");
      } else {
        throw InvalidArgument(where + " has the unknown key '" + name + "'; expected k, beam, allow, deny");
      }
    }
  }
  return out;
}

// levels < 0: infer it from the first result with beams (old callers).
nb::list results_to_python(std::vector<genrec::SearchResult>&& results, int levels = -1) {
  nb::list out;
  for (auto& r : results) {
    const size_t n_beams = r.sid_scores.size();
    const size_t L = levels >= 0 ? static_cast<size_t>(levels) : (n_beams ? r.sids.size() / n_beams : 0);
    nb::dict d;
    d["items"] = vector_array(std::move(r.items));
    d["scores"] = vector_array(std::move(r.scores));
    d["logprobs"] = vector_array(std::move(r.logprobs));
    auto* heap = new std::vector<int32_t>(std::move(r.sids));
    if (heap->capacity() == 0) heap->reserve(1);
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
    d["sids"] = nb::ndarray<nb::numpy, int32_t>(heap->data(), {n_beams, L}, owner);
    d["sid_scores"] = vector_array(std::move(r.sid_scores));
    d["sid_logprobs"] = vector_array(std::move(r.sid_logprobs));
    out.append(d);
  }
  return out;
}

// Keeps the tries alive while the search exists, owns the search, and lets one thread at a time
// use it (the step runs without the GIL, so two Python threads could otherwise overlap).
struct PyBeamSearch {
  PyBeamSearch(nb::object t, nb::object d, std::unique_ptr<genrec::BeamSearch> s)
      : trie_ref(std::move(t)), delta_ref(std::move(d)), search(std::move(s)) {}
  nb::object trie_ref, delta_ref;
  std::unique_ptr<genrec::BeamSearch> search;
  mutable std::mutex busy;
};

// Holds a search's lock for a call; a second thread gets an error instead of a data race.
class SearchLock {
 public:
  explicit SearchLock(const PyBeamSearch& b) : lock_(b.busy, std::try_to_lock) {
    if (!lock_.owns_lock()) {
      throw InvalidArgument("this BeamSearch is in use by another thread; drive one search from one thread");
    }
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

const char* kTokenTableDoc = R"doc(The model token of each SID code, checked once.

TokenTable(table): table is int32 (levels, max codebook size), the token id of each (level, code),
-1 where a level has no such code. Searches take it in place of the array, so a server converts
and checks its tables once, at load.)doc";

const char* kBeamDoc = R"doc(Batched constrained beam search over SIDs; the caller runs the model.

BeamSearch(trie, token_table, requests, delta=None)
  delta: a second SidTrie with the same levels and code ranges holding other items (the items
  added since trie was built); the search then runs over both as over one trie holding both.
  token_table: a TokenTable, or an array it is made from (int32 (levels, max codebook size), the
  token id of each (level, code), -1 for none).
  requests: a list of dicts {k, beam, allow, deny} (k, beam: ints >= 1, default 10 and 20;
  allow / deny: iterables of item ids or None; ids the trie lacks are ignored).
Protocol: while not done, give step() the logits of the `rows` current rows (level 0: each
request's prompt, last position, in request order). After a step, row j of the next level extends
row parents[j] by token tokens[j]; rows are grouped by request (row_request) and ranked best
first. results() after the last level: per request {items (int64, <= k), scores (float32),
logprobs (float32), sids (int32, (beams, levels)), sid_scores (float32), sid_logprobs
(float32)}, best first.

At each level the logits of the allowed SID tokens (codes with an active item below them that
passes the request's allow/deny lists) are log-softmaxed (float64) over those codes only; a
request keeps its `beam` best candidates (ties: the smaller SID first). A score is the sum of
those renormalised log-probabilities, so it moves when the allowed codes change (a paused or
filtered sibling raises it). A logprob is the model's raw log-probability of the SID: the sum over
levels of logit[token] - logsumexp(the whole logits row), which no catalog change moves. A NaN or
+inf among a row's allowed logits, or anywhere in the row of a beam that continues, raises
ModelOutputError (naming the request, level, token and value); -inf is a mask (a row of -inf
only is a dead beam). The same rule as the PyTorch reference decoder. The trie is kept alive by
the search; many searches may run at once on one trie, also while set_active() changes it. The
GIL is released in step() and results().)doc";

void beam_init(PyBeamSearch* self, nb::object trie, nb::handle token_table, nb::handle requests,
               nb::object delta) {
  const genrec::SidTrie& t = nb::cast<const genrec::SidTrie&>(trie);
  const genrec::SidTrie* d = delta.is_none() ? nullptr : &nb::cast<const genrec::SidTrie&>(delta);
  std::optional<genrec::SidTokenTable> own;
  const genrec::SidTokenTable& table = token_table_of(token_table, own);
  std::vector<genrec::SearchRequest> reqs = requests_from(requests);
  std::unique_ptr<genrec::BeamSearch> s;
  {
    nb::gil_scoped_release release;
    s = std::make_unique<genrec::BeamSearch>(t, d, table, std::move(reqs));
  }
  new (self) PyBeamSearch(std::move(trie), std::move(delta), std::move(s));
}

void beam_step(PyBeamSearch& self, nb::handle logits) {
  SearchLock lock(self);
  genrec::BeamSearch& s = *self.search;
  if (s.done()) s.step(nullptr, 1);  // raises the "search is done" error
  AnyArray a = as_array(logits, "logits");
  const int64_t rows = s.rows();
  if (a.ndim() != 2 || static_cast<int64_t>(a.shape(0)) != rows || (rows > 0 && a.shape(1) == 0)) {
    throw InvalidArgument("logits has shape " + shape_str(a) + "; expected (" + std::to_string(rows) +
                          ", vocab), one row per current beam (level " + std::to_string(s.level()) + ")");
  }
  if (rows == 0) {
    nb::gil_scoped_release release;
    s.step(nullptr, 1);
    return;
  }
  const int64_t vocab = static_cast<int64_t>(a.shape(1));
  // float32 rows with contiguous values are read in place, whatever their row stride (e.g. a
  // slice of a (batch, seq, vocab) array); anything else is converted to a C-order copy.
  const bool in_place = a.dtype() == nb::dtype<float>() &&
                        (is_c_contiguous(a) ||
                         ((vocab == 1 || a.stride(1) == 1) && (rows == 1 || a.stride(0) >= vocab)));
  nb::gil_scoped_release release;
  if (in_place) {
    const int64_t stride = (rows == 1 || is_c_contiguous(a)) ? vocab : static_cast<int64_t>(a.stride(0));
    s.step(static_cast<const float*>(a.data()), stride, vocab);
  } else {
    std::vector<float> storage;
    s.step(float32_data(a, storage, "logits"), vocab, vocab);
  }
}

template <class T>
nb::ndarray<nb::numpy, T> locked_copy(const PyBeamSearch& b, const std::vector<T>& (genrec::BeamSearch::*get)() const) {
  SearchLock lock(b);
  return vector_array(std::vector<T>(((*b.search).*get)()));
}

// ---------------------------------------------------------------------------------------------
// Beam search over llama.cpp: the functions (LlamaApi) and each context (LlamaContext) are made
// once, when the model loads; a search then sends only its own data.

genrec::llama::Api llama_api_from(nb::handle obj) {
  std::vector<int64_t> a;
  read_sequence(obj, a, "addresses");
  if (a.size() != 8) {
    throw InvalidArgument("addresses has " + std::to_string(a.size()) + " values; expected 8");
  }
  auto fn = [&](size_t i) { return reinterpret_cast<void*>(static_cast<uintptr_t>(a[i])); };
  genrec::llama::Api api;
  api.decode = reinterpret_cast<genrec::llama::decode_fn>(fn(0));
  api.get_logits = reinterpret_cast<genrec::llama::get_logits_fn>(fn(1));
  api.get_logits_ith = reinterpret_cast<genrec::llama::get_logits_ith_fn>(fn(2));
  api.get_memory = reinterpret_cast<genrec::llama::get_memory_fn>(fn(3));
  api.memory_clear = reinterpret_cast<genrec::llama::memory_clear_fn>(fn(4));
  api.memory_seq_rm = reinterpret_cast<genrec::llama::memory_seq_rm_fn>(fn(5));
  api.memory_seq_cp = reinterpret_cast<genrec::llama::memory_seq_cp_fn>(fn(6));
  api.memory_seq_keep = reinterpret_cast<genrec::llama::memory_seq_keep_fn>(fn(7));
  if (!api.complete()) throw InvalidArgument("addresses holds a null function address");
  return api;
}

nb::tuple api_addresses(const genrec::llama::Api& api) {
  auto n = [](auto f) { return nb::int_(static_cast<int64_t>(reinterpret_cast<uintptr_t>(f))); };
  return nb::make_tuple(n(api.decode), n(api.get_logits), n(api.get_logits_ith), n(api.get_memory),
                        n(api.memory_clear), n(api.memory_seq_rm), n(api.memory_seq_cp),
                        n(api.memory_seq_keep));
}

nb::dict llama_stats_dict(const genrec::LlamaSearchStats& s) {
  nb::dict d;
  d["total_s"] = s.total_s;
  d["decode_s"] = s.decode_s;
  d["decode_calls"] = s.decode_calls;
  d["decoded_tokens"] = s.decoded_tokens;
  d["groups"] = s.groups;
  return d;
}

const char* kLlamaApiDoc = R"doc(The libllama functions the C++ search calls, by address.

LlamaApi(addresses): the addresses of (llama_decode, llama_get_logits, llama_get_logits_ith,
llama_get_memory, llama_memory_clear, llama_memory_seq_rm, llama_memory_seq_cp,
llama_memory_seq_keep) in the loaded libllama, as ints; checked once here.)doc";

const char* kLlamaContextDoc = R"doc(One llama.cpp context, ready for batched constrained beam search.

LlamaContext(api, ctx, n_ctx, n_seq_max, n_batch, n_vocab, prefix_cache=True)
api: a LlamaApi; ctx: the address of a llama_context created with a unified KV cache, which the
caller frees after the last call; n_ctx, n_seq_max, n_batch, n_vocab: its limits; prefix_cache:
keep the prompt prefix the requests share (set_prefix_stems) in the KV cache between calls, under
the last sequence id. Everything is checked once, here. One call at a time: a second thread
calling while a search runs gets InvalidArgumentError.)doc";

const char* kLlamaSearchDoc = R"doc(Batched constrained beam search on this context.

search(trie, token_table, prompts, requests, record=False, delta=None)
  -> (results, stats, schedule or None)
prompts: one list of token ids per request; trie, token_table, requests, delta: as for BeamSearch
(token_table a TokenTable, or an array it is made from). The whole search, prompt decode and every
SID level, runs in C++ with the GIL released. record: also return the LlamaSchedule of llama.cpp
operations, for replay().)doc";

// The search of every LlamaContext method: prompts and requests read from Python, the search
// run with the GIL released. space_of null: every request in spaces[0].
nb::tuple run_llama_search(genrec::LlamaContext& self, const std::vector<genrec::SearchSpace>& spaces,
                           const std::vector<int32_t>* space_of, nb::handle prompts_obj,
                           nb::handle requests_obj, bool record) {
  std::vector<genrec::SearchRequest> requests = requests_from(requests_obj);
  const std::vector<int32_t> all_first(space_of == nullptr ? requests.size() : 0, 0);
  if (space_of == nullptr) space_of = &all_first;
  std::vector<std::vector<int32_t>> prompts;
  if (!nb::isinstance<nb::list>(prompts_obj) && !nb::isinstance<nb::tuple>(prompts_obj)) {
    throw InvalidArgument("prompts must be a list of token-id lists");
  }
  const size_t n = nb::len(prompts_obj);
  prompts.resize(n);
  for (size_t i = 0; i < n; ++i) read_sequence(prompts_obj[i], prompts[i], "prompts[i]");
  genrec::LlamaSearchStats stats;
  std::unique_ptr<genrec::LlamaSchedule> schedule;
  if (record) schedule = std::make_unique<genrec::LlamaSchedule>();
  std::vector<genrec::SearchResult> results;
  {
    nb::gil_scoped_release release;
    results = self.search(spaces, *space_of, prompts, requests, &stats, schedule.get());
  }
  nb::object sched = nb::none();
  if (schedule) sched = nb::cast(std::move(*schedule));
  return nb::make_tuple(results_to_python(std::move(results)), llama_stats_dict(stats), sched);
}

nb::tuple llama_search_py(genrec::LlamaContext& self, const genrec::SidTrie& trie, nb::handle token_table,
                          nb::handle prompts_obj, nb::handle requests_obj, bool record,
                          const genrec::SidTrie* delta) {
  std::optional<genrec::SidTokenTable> own;
  const genrec::SidTokenTable& table = token_table_of(token_table, own);
  return run_llama_search(self, {genrec::SearchSpace{&trie, delta, &table}}, nullptr, prompts_obj,
                          requests_obj, record);
}

const char* kLlamaSearchSpacesDoc = R"doc(Batched constrained beam search over several search spaces.

search_spaces(spaces, space_of, prompts, requests, record=False)
  -> (results, stats, schedule or None)
spaces: a list of (trie, token_table, delta or None), e.g. one per SID view of a bundle; space_of:
for each request, the index of the space it is searched in. Requests of different spaces share
the decode calls (all the views of a request cost one pass over the model's levels, not one per
view); each answer is the one search() in that space alone gives. The rest as for search().)doc";

nb::tuple llama_search_spaces_py(genrec::LlamaContext& self, nb::handle spaces_obj, nb::handle space_of_obj,
                                 nb::handle prompts_obj, nb::handle requests_obj, bool record) {
  if (!nb::isinstance<nb::list>(spaces_obj) && !nb::isinstance<nb::tuple>(spaces_obj)) {
    throw InvalidArgument("spaces must be a list of (trie, token_table, delta or None) tuples");
  }
  const size_t n_spaces = nb::len(spaces_obj);
  // references held for the call (the GIL is released while the search reads them)
  std::vector<nb::object> held;
  std::vector<std::optional<genrec::SidTokenTable>> own(n_spaces);
  std::vector<genrec::SearchSpace> spaces(n_spaces);
  for (size_t s = 0; s < n_spaces; ++s) {
    nb::object item = nb::borrow(spaces_obj[s]);
    if ((!nb::isinstance<nb::tuple>(item) && !nb::isinstance<nb::list>(item)) || nb::len(item) != 3) {
      throw InvalidArgument("spaces[" + std::to_string(s) + "] is " + py_str(nb::repr(item)) +
                            "; expected a (trie, token_table, delta or None) tuple");
    }
    held.push_back(item);
    genrec::SidTrie* trie = nullptr;
    if (!nb::try_cast<genrec::SidTrie*>(item[0], trie) || trie == nullptr) {
      throw InvalidArgument("spaces[" + std::to_string(s) + "][0] is " + py_str(nb::repr(item[0])) +
                            "; expected a SidTrie");
    }
    genrec::SidTrie* delta = nullptr;
    if (!item[2].is_none() && (!nb::try_cast<genrec::SidTrie*>(item[2], delta) || delta == nullptr)) {
      throw InvalidArgument("spaces[" + std::to_string(s) + "][2] is " + py_str(nb::repr(item[2])) +
                            "; expected a SidTrie or None");
    }
    spaces[s] = {trie, delta, &token_table_of(item[1], own[s])};
  }
  std::vector<int32_t> space_of;
  read_sequence(space_of_obj, space_of, "space_of");
  return run_llama_search(self, spaces, &space_of, prompts_obj, requests_obj, record);
}

nb::dict llama_replay_py(genrec::LlamaContext& self, const genrec::LlamaSchedule& schedule) {
  genrec::LlamaSearchStats stats;
  {
    nb::gil_scoped_release release;
    self.replay(schedule, &stats);
  }
  return llama_stats_dict(stats);
}

void llama_context_init(genrec::LlamaContext* self, const genrec::llama::Api& api, int64_t ctx,
                        int64_t n_ctx, int64_t n_seq_max, int64_t n_batch, int64_t n_vocab,
                        bool prefix_cache) {
  genrec::LlamaContextInfo info;
  info.ctx = reinterpret_cast<genrec::llama::context*>(static_cast<uintptr_t>(ctx));
  info.n_ctx = n_ctx;
  info.n_seq_max = n_seq_max;
  info.n_batch = n_batch;
  info.n_vocab = n_vocab;
  new (self) genrec::LlamaContext(api, info, prefix_cache);
}

}  // namespace

void bind_search(nb::module_& m) {
  nb::class_<genrec::SidTokenTable>(m, "TokenTable", kTokenTableDoc)
      .def("__init__", [](genrec::SidTokenTable* t, nb::handle table) {
        new (t) genrec::SidTokenTable(token_table_from(table));
      }, "table"_a)
      .def_prop_ro("levels", [](const genrec::SidTokenTable& t) { return t.levels; })
      .def_prop_ro("max_size", [](const genrec::SidTokenTable& t) { return t.max_size; },
                   "Columns: the largest codebook.")
      .def("to_numpy", [](const genrec::SidTokenTable& t) {
        auto* heap = new std::vector<int32_t>(t.ids);
        nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
        return nb::ndarray<nb::numpy, int32_t>(heap->data(), {static_cast<size_t>(t.levels),
                                                             static_cast<size_t>(t.max_size)}, owner);
      }, nb::rv_policy::move, "A copy as an int32 array (levels, max_size).")
      .def("__repr__", [](const genrec::SidTokenTable& t) {
        return "TokenTable(levels=" + std::to_string(t.levels) + ", max_size=" + std::to_string(t.max_size) + ")";
      });
  nb::class_<PyBeamSearch>(m, "BeamSearch", kBeamDoc)
      .def("__init__", &beam_init, "trie"_a, "token_table"_a, "requests"_a, "delta"_a = nb::none())
      .def_prop_ro("level", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->level(); },
                   "The SID level the next step() scores (levels once done).")
      .def_prop_ro("levels", [](const PyBeamSearch& b) { return b.search->levels(); })
      .def_prop_ro("done", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->done(); })
      .def_prop_ro("n_requests", [](const PyBeamSearch& b) { return b.search->n_requests(); })
      .def_prop_ro("rows", [](const PyBeamSearch& b) { SearchLock l(b); return b.search->rows(); },
                   "Logit rows the next step() expects.")
      .def_prop_ro("row_request", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_request);
      }, nb::rv_policy::move, "Request index of each current row (int32).")
      .def_prop_ro("row_scores", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_scores);
      }, nb::rv_policy::move, "Score of each current row so far (float64).")
      .def_prop_ro("row_logprobs", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::row_logprobs);
      }, nb::rv_policy::move, "Raw log-probability of each current row so far (float64).")
      .def("step", &beam_step, "logits"_a,
           "Score one level: logits (rows, vocab), float32 (other dtypes are converted); rows may "
           "be any stride apart.")
      .def_prop_ro("parents", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::parents);
      }, nb::rv_policy::move, "For each new row, the previous row it extends (int32).")
      .def_prop_ro("tokens", [](const PyBeamSearch& b) {
        return locked_copy(b, &genrec::BeamSearch::tokens);
      }, nb::rv_policy::move, "For each new row, the SID token to feed (int32).")
      .def("results", [](const PyBeamSearch& b) {
        std::vector<genrec::SearchResult> r;
        {
          SearchLock lock(b);
          nb::gil_scoped_release release;
          r = b.search->results();
        }
        return results_to_python(std::move(r), b.search->levels());
      }, "Per request: {items, scores, logprobs, sids, sid_scores, sid_logprobs}, after the last level.")
      .def("__repr__", [](const PyBeamSearch& b) -> std::string {
        std::unique_lock<std::mutex> lock(b.busy, std::try_to_lock);
        if (!lock.owns_lock()) return "BeamSearch(<in use by another thread>)";
        const genrec::BeamSearch& s = *b.search;
        return "BeamSearch(requests=" + std::to_string(s.n_requests()) + ", level=" + std::to_string(s.level()) +
               "/" + std::to_string(s.levels()) + ", rows=" + std::to_string(s.rows()) + ")";
      });

  nb::class_<genrec::LlamaSchedule>(m, "LlamaSchedule",
                                     "The llama.cpp operations of one search, for LlamaContext.replay.")
      .def_prop_ro("n_ops", [](const genrec::LlamaSchedule& s) { return s.ops.size(); })
      .def_prop_ro("n_tokens", [](const genrec::LlamaSchedule& s) { return s.tokens.size(); });
  nb::class_<genrec::llama::Api>(m, "LlamaApi", kLlamaApiDoc)
      .def("__init__", [](genrec::llama::Api* a, nb::handle addresses) {
        new (a) genrec::llama::Api(llama_api_from(addresses));
      }, "addresses"_a)
      .def_prop_ro("addresses", &api_addresses, "The eight function addresses, in order (ints).");
  nb::class_<genrec::LlamaContext>(m, "LlamaContext", kLlamaContextDoc)
      .def("__init__", &llama_context_init, "api"_a, "ctx"_a, "n_ctx"_a, "n_seq_max"_a, "n_batch"_a,
           "n_vocab"_a, "prefix_cache"_a = true)
      .def("search", &llama_search_py, "trie"_a, "token_table"_a, "prompts"_a, "requests"_a,
           "record"_a = false, "delta"_a.none() = nb::none(), kLlamaSearchDoc)
      .def("search_spaces", &llama_search_spaces_py, "spaces"_a, "space_of"_a, "prompts"_a,
           "requests"_a, "record"_a = false, kLlamaSearchSpacesDoc)
      .def("replay", &llama_replay_py, "schedule"_a,
           "Replay a recorded schedule: the same decode calls and KV operations, no search (the\n"
           "latency floor). A schedule recorded with the prefix cache replays from the prefix it\n"
           "started from.")
      .def("set_prefix_stems", [](genrec::LlamaContext& c, std::vector<std::vector<int32_t>> stems) {
        c.set_stems(std::move(stems));
      }, "stems"_a, "The prompt prefixes (token-id lists) worth keeping: the prefix cache then keeps,\n"
                    "per search, the longest one every prompt starts with. No-op without the cache.")
      .def_prop_rw("api", [](const genrec::LlamaContext& c) { return c.api(); },
                   [](genrec::LlamaContext& c, const genrec::llama::Api& a) { c.set_api(a); },
                   "The libllama functions this context calls (a LlamaApi).")
      .def_prop_ro("n_ctx", [](const genrec::LlamaContext& c) { return c.info().n_ctx; }, "KV cells.")
      .def_prop_ro("n_seq_max", [](const genrec::LlamaContext& c) { return c.info().n_seq_max; },
                   "Sequences (the prefix cache, if any, reserves the last one).")
      .def_prop_ro("n_batch", [](const genrec::LlamaContext& c) { return c.info().n_batch; },
                   "Tokens one decode call may take.")
      .def_prop_ro("n_vocab", [](const genrec::LlamaContext& c) { return c.info().n_vocab; },
                   "Length of a logits row.")
      .def_prop_ro("prefix_cache", &genrec::LlamaContext::has_prefix_cache,
                   "Whether the context keeps a shared prompt prefix between calls.")
      .def_prop_ro("prefix_stems", &genrec::LlamaContext::stems,
                   "The prefixes worth keeping (lists of token ids).")
      .def_prop_ro("prefix_tokens", &genrec::LlamaContext::cached_tokens,
                   "The prompt prefix the KV cache holds now (a list of token ids; empty: none).");
}

}  // namespace genrec_py
