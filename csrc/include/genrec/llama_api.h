// genrec-lite: the part of llama.cpp's C ABI that the runtime drives from C++.
//
// llama.cpp is not linked at build time: the llama-cpp-python package already ships and loads
// libllama, and the runtime hands us the addresses of the few functions we call (taken from that
// loaded library). That keeps one copy of llama.cpp in the process, avoids shipping its headers,
// and lets the search loop run entirely in C++ with the GIL released. The declarations below
// mirror llama.h of the pinned llama-cpp-python (0.3.36). A mismatch would corrupt memory rather
// than fail, so the Python side refuses any other llama-cpp-python release, and a context-params
// layout without the fields it sets (kv_unified...), before it creates a context or hands over an
// address (genrec_lite/runtime/llama_backend.py, check_llama_abi).
#pragma once

#include <cstdint>

namespace genrec {
namespace llama {

using token = int32_t;
using pos = int32_t;
using seq_id = int32_t;
struct context;  // opaque llama_context
struct memory;   // opaque llama_memory_i

// struct llama_batch, passed by value to llama_decode.
struct batch {
  int32_t n_tokens;
  token* tokens;
  float* embd;
  pos* positions;
  int32_t* n_seq_id;
  seq_id** seq_ids;
  int8_t* logits;
};

using decode_fn = int32_t (*)(context*, batch);
using get_logits_fn = float* (*)(context*);
using get_logits_ith_fn = float* (*)(context*, int32_t);
using get_memory_fn = memory* (*)(const context*);
using memory_clear_fn = void (*)(memory*, bool);
using memory_seq_rm_fn = bool (*)(memory*, seq_id, pos, pos);
using memory_seq_cp_fn = void (*)(memory*, seq_id, seq_id, pos, pos);
using memory_seq_keep_fn = void (*)(memory*, seq_id);

// The functions the search calls, resolved by the caller.
struct Api {
  decode_fn decode = nullptr;
  get_logits_fn get_logits = nullptr;
  get_logits_ith_fn get_logits_ith = nullptr;
  get_memory_fn get_memory = nullptr;
  memory_clear_fn memory_clear = nullptr;
  memory_seq_rm_fn memory_seq_rm = nullptr;
  memory_seq_cp_fn memory_seq_cp = nullptr;
  memory_seq_keep_fn memory_seq_keep = nullptr;

  bool complete() const noexcept {
    return decode && get_logits && get_logits_ith && get_memory && memory_clear &&
           memory_seq_rm && memory_seq_cp && memory_seq_keep;
  }
};

}  // namespace llama
}  // namespace genrec
