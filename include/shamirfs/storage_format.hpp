// The backing file: a strict reader (every field walked, unknown and duplicate
// keys, wrong types, out-of-range numbers and trailing content rejected, sizes
// capped, KDF floors enforced, every cell checked < p) and a fast writer.
// The exact format is man/shamirfs.5.
#pragma once
#include <string>
#include <string_view>

#include "shamirfs/crypto.hpp"
#include "shamirfs/matrix.hpp"

namespace shamirfs {

// simdjson parses documents of up to 4 GiB.
inline constexpr std::size_t kMaxStorageBytes = (std::size_t{4} << 30) - 4096;

// Throws Error(corrupt) with a message naming the field.
Matrix parse_storage(std::string_view text, const KdfLimits& limits);
// Throws Error(io) if the file cannot be read, else as parse_storage.
Matrix load_storage(const std::string& path, const KdfLimits& limits);
std::string serialize_storage(const Matrix& m);

}  // namespace shamirfs
