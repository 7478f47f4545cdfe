#include "shamirfs/crypto.hpp"

#include <sodium.h>

#include <cstring>
#include <string>

#include "shamirfs/error.hpp"

namespace shamirfs {

KdfLimits production_kdf_limits() {
    return {crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE, crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE, 64,
            std::uint64_t{4} << 30};
}

KdfLimits test_kdf_limits() { return {1, 8192, 64, std::uint64_t{4} << 30}; }

void check_kdf(const KdfParams& p, const KdfLimits& l, Errc code) {
    if (p.ops < l.min_ops || p.ops > l.max_ops)
        throw Error(code, "KDF ops " + std::to_string(p.ops) + " outside [" +
                                       std::to_string(l.min_ops) + ", " + std::to_string(l.max_ops) + "]");
    if (p.mem < l.min_mem || p.mem > l.max_mem)
        throw Error(code, "KDF memory " + std::to_string(p.mem) + " bytes outside [" +
                                       std::to_string(l.min_mem) + ", " + std::to_string(l.max_mem) + "]");
}

PartitionKeys derive_partition_keys(std::string_view password, const KdfParams& kdf, std::uint32_t slot,
                                    std::span<const std::uint8_t, kKeySecretBytes> key_secret) {
    if (sodium_init() < 0) throw Error(Errc::internal, "libsodium failed to initialise");
    // Per-partition salt: the file's salt bound to the slot and the key secret.
    std::uint8_t salt[crypto_pwhash_SALTBYTES];
    static_assert(crypto_pwhash_SALTBYTES == kSaltBytes);
    crypto_generichash_state st;
    static const char ctx[] = "shamirfs-salt-v1";
    std::uint8_t slot_be[4] = {std::uint8_t(slot >> 24), std::uint8_t(slot >> 16), std::uint8_t(slot >> 8),
                               std::uint8_t(slot)};
    crypto_generichash_init(&st, nullptr, 0, sizeof(salt));
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(ctx), sizeof(ctx) - 1);
    crypto_generichash_update(&st, kdf.salt.data(), kdf.salt.size());
    crypto_generichash_update(&st, slot_be, sizeof(slot_be));
    crypto_generichash_update(&st, key_secret.data(), key_secret.size());
    crypto_generichash_final(&st, salt, sizeof(salt));

    SecureBuffer master(crypto_kdf_KEYBYTES);
    if (crypto_pwhash(master.data(), master.size(), password.data(), password.size(), salt, kdf.ops,
                      static_cast<std::size_t>(kdf.mem), crypto_pwhash_ALG_ARGON2ID13) != 0)
        // (its only failure with checked parameters: it could not allocate)
        throw Error(Errc::too_large, "out of memory: Argon2id could not get its " + std::to_string(kdf.mem >> 20) +
                                         " MiB (ulimit -v, cgroup limits)");

    PartitionKeys k{SecureBuffer(32), SecureBuffer(32), SecureBuffer(32)};
    static const char kdf_ctx[crypto_kdf_CONTEXTBYTES] = {'s', 'h', 'a', 'm', 'i', 'r', 'f', 's'};
    crypto_kdf_derive_from_key(k.header_key.data(), 32, 1, kdf_ctx, master.data());
    crypto_kdf_derive_from_key(k.body_key.data(), 32, 2, kdf_ctx, master.data());
    crypto_kdf_derive_from_key(k.order_key.data(), 32, 3, kdf_ctx, master.data());
    return k;
}

}  // namespace shamirfs
