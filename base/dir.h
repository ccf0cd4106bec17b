// Reading a directory's names through a descriptor.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/result.h"

namespace sbx {

// The names in a directory (an fd opened O_RDONLY | O_DIRECTORY; it is not moved or closed),
// without "." and "..", sorted bytewise, at most `max`. Past it: with `more`, the first `max`
// names read are returned and *more is set; without, kResourceExhausted. readdir errors are
// errors.
Result<std::vector<std::string>> ListDirNames(int dir_fd, size_t max, bool* more = nullptr);

}  // namespace sbx
