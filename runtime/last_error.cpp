#include "last_error.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <executorch/runtime/platform/log.h>

namespace int4_cuda {
namespace {
thread_local std::string t_last_error;
}

executorch::runtime::Error report(executorch::runtime::Error error, const std::string& message) {
  ET_LOG(Error, "%s", message.c_str());
  t_last_error = message;
  return error;
}

executorch::runtime::Error reportf(executorch::runtime::Error error, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return report(error, buf);
}

const std::string& last_error() { return t_last_error; }
void clear_last_error() { t_last_error.clear(); }

void copy_to_c_buffer(const std::string& s, char* out, size_t len) {
  if (out == nullptr || len == 0) return;
  const size_t n = s.size() < len - 1 ? s.size() : len - 1;
  std::memcpy(out, s.data(), n);
  out[n] = '\0';
}

}  // namespace int4_cuda
