// Password KDF (Argon2id) and the keys derived from it.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "shamirfs/error.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {

inline constexpr std::size_t kSaltBytes = 16;
inline constexpr std::size_t kKeySecretBytes = 16;

struct KdfParams {
    std::uint64_t ops = 3;                 // Argon2id passes
    std::uint64_t mem = 256ull << 20;      // bytes
    std::array<std::uint8_t, kSaltBytes> salt{};
};

// Floors (and ceilings) checked when a storage is created and when it is read.
struct KdfLimits {
    std::uint64_t min_ops, min_mem, max_ops, max_mem;
};
// Production limits: ops >= 2, mem >= 64 MiB (libsodium's INTERACTIVE level),
// ops <= 64, mem <= 4 GiB (a hostile file must not demand unbounded work).
KdfLimits production_kdf_limits();
// Cheap limits for unit tests only; never used by the binaries.
KdfLimits test_kdf_limits();
// Throws Error(code) naming the parameter that is out of range.
void check_kdf(const KdfParams& p, const KdfLimits& limits, Errc code);

// Keys of one partition, all derived from one Argon2id run.
struct PartitionKeys {
    SecureBuffer header_key;   // XChaCha20-Poly1305 key for the 36-byte header
    SecureBuffer body_key;     // XChaCha20-Poly1305 key for the document
    SecureBuffer order_key;    // BLAKE2b key of the stage-2 column order
};

// master = Argon2id(password, BLAKE2b-128("shamirfs-salt-v1" || file salt ||
// slot || key secret)); sub-keys by crypto_kdf_derive_from_key.
PartitionKeys derive_partition_keys(std::string_view password, const KdfParams& kdf,
                                    std::uint32_t slot,
                                    std::span<const std::uint8_t, kKeySecretBytes> key_secret);

}  // namespace shamirfs
