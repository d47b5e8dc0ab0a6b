// Blob loader/validator: bytes of one int4_cuda delegate blob -> a verified Graph (graph.h).
//
// A pure host-side function (no CUDA, no ExecuTorch runtime calls), so it runs in CPU-only tests
// and under a fuzzer (issue #8). It makes the checks int4_cuda/blob.py makes, in the same order
// where messages overlap (identifier, flatbuffer structure, version, references, constants,
// weights), plus what the CUDA executor relies on: op arity and arguments, dtypes and ranks the
// kernels handle, values defined before use, one output per op.
//
// Every failure returns an ExecuTorch Error and exactly one message line naming the thing, what
// was found and the fix. A legacy-layout weight yields Error::DelegateInvalidCompatibility and
// exactly the text of int4_cuda.errors.LEGACY_LAYOUT_MESSAGE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <executorch/runtime/core/error.h>

#include "graph.h"

namespace int4_cuda {

// Byte size of the named data stored under `key`, or -1 when the program has no such entry.
using NamedDataSize = std::function<int64_t(const std::string& key)>;

// Same text as int4_cuda/errors.py LEGACY_LAYOUT_MESSAGE with {weight} filled in.
std::string legacy_layout_message(const std::string& weight);

// Verifies `size` bytes at `data`. On success fills *graph and returns Error::Ok; on failure
// returns the error and sets *message (one line). Never throws, never aborts.
executorch::runtime::Error verify_blob(const void* data, size_t size, const NamedDataSize& named_size,
                                       Graph* graph, std::string* message);

}  // namespace int4_cuda
