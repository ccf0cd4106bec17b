// Unguessable bytes from getrandom(2), for ids, keys and tokens.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace sbx {

// Fills `out`. getrandom(2) blocks until the kernel's pool is initialised and then cannot fail
// for small requests; an error means no random source at all, and the process aborts rather
// than hand out a guessable secret.
void RandomBytes(std::span<unsigned char> out);
// `n` random bytes as 2n lowercase hex digits.
std::string RandomHex(size_t n);

}  // namespace sbx
