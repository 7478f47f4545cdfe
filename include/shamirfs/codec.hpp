// Document <-> sealed blob of 64-byte chunks.
//
// blob = nonce (24) || AEAD(header_key, header (20), ad="shamirfs/v1/header") (36)
//        || AEAD(body_key, zstd(document), ad=header) (clen + 16) || random pad
// header = version u8 (1) || compression u8 (1 = zstd) || 0 u16 ||
//          compressed length u64 LE || document length u64 LE
// The first chunk therefore holds the nonce and the whole sealed header, so
// one row tells whether the credentials are right and how many rows follow.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "shamirfs/crypto.hpp"
#include "shamirfs/rng.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs::codec {

inline constexpr std::size_t kChunk = 64;
inline constexpr std::size_t kNonce = 24;
inline constexpr std::size_t kHeader = 20;
inline constexpr std::size_t kTag = 16;
inline constexpr std::size_t kPrefix = kNonce + kHeader + kTag;  // 60
inline constexpr std::uint64_t kMaxDocument = 256ull << 20;    // 256 MiB

struct Header {
    std::uint64_t compressed_len = 0;
    std::uint64_t document_len = 0;
    std::size_t blob_bytes() const { return kPrefix + compressed_len + kTag; }
    std::size_t rows() const { return (blob_bytes() + kChunk - 1) / kChunk; }
};

// Compresses and seals; the result is a whole number of chunks.
std::vector<std::uint8_t> seal(std::span<const std::uint8_t> document, const PartitionKeys& keys,
                               Rng& rng, int level = 1);

// Opens the header from the first chunk; nothing on authentication failure.
std::optional<Header> open_header(std::span<const std::uint8_t, kChunk> first,
                                  const PartitionKeys& keys);

// Opens the body (blob holds at least header.rows() chunks); nothing on
// authentication failure; Error(damaged) when the authenticated body does not
// decompress to the stated length.
std::optional<SecureBuffer> open_body(std::span<const std::uint8_t> blob, const Header& header,
                                      const PartitionKeys& keys);

}  // namespace shamirfs::codec
