// Error reporting of the runtime: every failure is an ExecuTorch Error plus ONE ET_LOG line. The
// line is also kept per thread so the C API (c_api.h) can hand it to Python, which cannot read
// ExecuTorch's log.
#pragma once

#include <string>

#include <executorch/runtime/core/error.h>

namespace int4_cuda {

// Logs `message` once (ET_LOG Error), remembers it for this thread, and returns `error`.
executorch::runtime::Error report(executorch::runtime::Error error, const std::string& message);

// printf-style convenience over report().
executorch::runtime::Error reportf(executorch::runtime::Error error, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

// The last message report() logged on this thread ("" if none); cleared by clear_last_error().
const std::string& last_error();
void clear_last_error();

// Copies `s` into the C API caller's buffer out[len], truncated and always NUL-terminated;
// a null or empty buffer is left alone.
void copy_to_c_buffer(const std::string& s, char* out, size_t len);

}  // namespace int4_cuda
