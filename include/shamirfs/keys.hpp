// Partition map keys (stage 1) and the password's column order (stage 2).
//
// A key is one line: "sfk1-" followed by 36 base32 characters (RFC 4648
// alphabet, lower case, dashes every 6 characters ignored when parsing) that
// encode 22 bytes: slot (u16 big-endian) || key secret (16 bytes) ||
// checksum (first 4 bytes of BLAKE2b("shamirfs-key-v1" || slot || secret)).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shamirfs/crypto.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {

struct MapKey {
    std::uint32_t slot = 0;
    SecureBuffer secret;  // kKeySecretBytes
};

MapKey make_map_key(std::uint32_t slot);  // fresh random secret
// The key's text, in locked memory that is wiped when freed.
SecureBuffer format_map_key(const MapKey& key);
// Throws Error(malformed_key) with "malformed key: <reason>". Accepts the
// line create prints ("LABEL: sfk1-..."); makes no copy of the text.
MapKey parse_map_key(std::string_view text);

// Stage 1: the slot's share columns are slot*n .. slot*n + n - 1.
// Stage 2: those columns ordered by BLAKE2b(order_key, column); a read uses the
// first t of them and keeps the other n - t as redundancy.
std::vector<std::uint32_t> stage2_order(std::uint32_t slot, unsigned shares,
                                        const SecureBuffer& order_key);

}  // namespace shamirfs
