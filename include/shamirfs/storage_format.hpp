// The backing file: a strict reader of its structure (every field walked,
// unknown and duplicate keys, wrong types, out-of-range numbers and trailing
// content rejected, sizes capped, KDF floors enforced; format 2's header
// checked against its check value and restored from its copy). Cells are not
// checked here: one that is not a value is an erasure for the readers
// (matrix.hpp). Writing is the matrix's own text.
// The exact format is man/shamirfs.5.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "shamirfs/big_buffer.hpp"
#include "shamirfs/crypto.hpp"
#include "shamirfs/matrix.hpp"

namespace shamirfs {

// The public constants of the format (man/shamirfs.5).
inline constexpr std::string_view kFieldName = "2^521-1";
inline constexpr std::string_view kKdfAlgorithm = "argon2id13";

// simdjson parses documents of up to 4 GiB.
inline constexpr std::size_t kMaxStorageBytes = (std::size_t{4} << 30) - 4096;

// Throws Error(corrupt) with a message naming the field. The matrix keeps
// `text` when its rows are at a fixed stride (as shamirfs writes them); give it
// kParsePadding bytes of spare capacity to spare a copy.
Matrix parse_storage(BigBuffer text, const KdfLimits& limits);
Matrix parse_storage(std::string_view text, const KdfLimits& limits);  // copies
inline constexpr std::size_t kParsePadding = 64;  // simdjson::SIMDJSON_PADDING
// The open storage file `fd` (named `path` in errors): Error(io) if it cannot
// be read, else as parse_storage.
Matrix read_storage(int fd, const std::string& path, const KdfLimits& limits);
// The slots and KDF parameters from the header before "rows" in the first
// 64 KiB (where shamirfs writes them), within the limits; nothing if they are
// not there. Not a check of the file: load it to know it is a storage.
std::optional<StorageParams> peek_storage_params(const std::string& path, const KdfLimits& limits);
// The canonical text before the cells (what a Matrix of these parameters and
// capacity starts with); the file is then '"' cells '",\n' per row (format
// 1) or column (format 2), the last without the comma, then the trailer.
std::string storage_header(const StorageParams& p, std::size_t capacity);
std::string storage_trailer(const StorageParams& p, std::size_t capacity);

}  // namespace shamirfs
