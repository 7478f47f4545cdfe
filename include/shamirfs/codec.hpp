// Document <-> sealed blob of 64-byte chunks.
//
// Version 1 (in format 1 storages):
//   blob = nonce (24) || AEAD(header_key, header (20), ad="shamirfs/v1/header") (36)
//          || AEAD(body_key, zstd(document), ad=header) (clen + 16) || random pad
//   header = version u8 (1) || compression u8 (1 = zstd) || 0 u16 ||
//            compressed length u64 LE || document length u64 LE
// Version 2 (in format 2 storages) adds what the partition's owner alone may
// see: its label, its generation (a commit counter) and commit time, and a
// draft (a text that could not be committed) sealed beside the document:
//   blob = nonce (24) || AEAD(header_key, header (112), ad="shamirfs/v2/header") (128)
//          || AEAD(body_key, zstd(document) || zstd(draft), ad=header) || random pad
// (man/shamirfs.5 gives the header's fields.) The sealed header comes first,
// so the first row of a slot tells whether the credentials are right and how
// many rows follow.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shamirfs/crypto.hpp"
#include "shamirfs/rng.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {
inline constexpr std::size_t kChunkBytes = 64;  // bytes of a sealed document per chunk
}

namespace shamirfs::codec {

inline constexpr std::size_t kNonce = 24;
inline constexpr std::size_t kTag = 16;
inline constexpr std::uint64_t kMaxDocument = 256ull << 20;  // 256 MiB
inline constexpr std::size_t kMaxLabel = 56;                 // bytes of UTF-8

constexpr std::size_t header_bytes(unsigned version) { return version == 1 ? 20 : 112; }
// Nonce and sealed header: what open_header needs.
constexpr std::size_t prefix_bytes(unsigned version) { return kNonce + header_bytes(version) + kTag; }

// What a version 2 header carries besides the lengths.
struct Meta {
    std::string label;
    std::uint64_t generation = 0;  // commits of this partition so far
    std::uint64_t time = 0;        // Unix seconds of the last commit
};

struct Header {
    unsigned version = 2;
    std::uint64_t compressed_len = 0;
    std::uint64_t document_len = 0;
    bool has_draft = false;
    std::uint64_t draft_compressed_len = 0;
    std::uint64_t draft_len = 0;
    Meta meta;
    std::size_t blob_bytes() const { return prefix_bytes(version) + compressed_len + draft_compressed_len + kTag; }
    std::size_t chunks() const { return (blob_bytes() + kChunkBytes - 1) / kChunkBytes; }
};

struct Opened {
    SecureBuffer document;
    std::optional<SecureBuffer> draft;
};

// A document (and a draft) compressed, in locked memory: the first step of
// seal, which needs no key, so that it can start before the unlock.
struct Compressed {
    SecureBuffer frames;  // the document's zstd frames, then the draft's
    std::uint64_t document_len = 0, compressed_len = 0;
    bool has_draft = false;
    std::uint64_t draft_len = 0, draft_compressed_len = 0;
};
Compressed compress(std::span<const std::uint8_t> document, const std::optional<std::span<const std::uint8_t>>& draft,
                    int level = 1);
// What compress(document) is expected to make of it (compressed_len), from a
// few MiB sampled evenly across it and compressed together: within about 1 %
// on documents that are alike throughout, wrong on others. Documents of
// kEstimateFrom bytes or more (smaller ones are compressed whole).
inline constexpr std::size_t kEstimateFrom = std::size_t{8} << 20;
std::size_t estimate_compressed(std::span<const std::uint8_t> document, int level = 1);

// Seals; the result is a whole number of chunks. Version 1 takes no draft and
// no meta.
std::vector<std::uint8_t> seal(unsigned version, const Compressed& texts, const Meta& meta, const PartitionKeys& keys,
                               Rng& rng);
// compress, then seal.
std::vector<std::uint8_t> seal(unsigned version, std::span<const std::uint8_t> document,
                               const std::optional<std::span<const std::uint8_t>>& draft, const Meta& meta,
                               const PartitionKeys& keys, Rng& rng, int level = 1);

// Opens the header from the first prefix_bytes(version) bytes; nothing on
// authentication failure.
std::optional<Header> open_header(unsigned version, std::span<const std::uint8_t> first, const PartitionKeys& keys);

// Opens the body (blob holds at least header.chunks() chunks); nothing on
// authentication failure; Error(damaged) when the authenticated body does not
// decompress to the stated lengths.
std::optional<Opened> open_body(std::span<const std::uint8_t> blob, const Header& header, const PartitionKeys& keys);
// The body's zstd frames, as sealed (authenticated, not decompressed); nothing
// on authentication failure. seal() takes them again: a partition that
// another's commit keeps is sealed anew without being decompressed and
// compressed again.
std::optional<Compressed> open_frames(std::span<const std::uint8_t> blob, const Header& header, const PartitionKeys& keys);

}  // namespace shamirfs::codec
