#include "shamirfs/keys.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "shamirfs/error.hpp"

namespace shamirfs {
namespace {

constexpr char kPrefix[] = "sfk1-";
constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
constexpr std::size_t kPayload = 2 + kKeySecretBytes + 4;  // 22 bytes
constexpr std::size_t kChars = (kPayload * 8 + 4) / 5;     // 36
constexpr std::size_t kGroup = 6;

void checksum(std::uint32_t slot, const std::uint8_t* secret, std::uint8_t out[4]) {
    static const char ctx[] = "shamirfs-key-v1";
    std::uint8_t slot_be[2] = {std::uint8_t(slot >> 8), std::uint8_t(slot)};
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, crypto_generichash_BYTES_MIN);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(ctx), sizeof(ctx) - 1);
    crypto_generichash_update(&st, slot_be, 2);
    crypto_generichash_update(&st, secret, kKeySecretBytes);
    std::uint8_t h[crypto_generichash_BYTES_MIN];
    crypto_generichash_final(&st, h, sizeof(h));
    std::copy(h, h + 4, out);
}

[[noreturn]] void malformed(const std::string& why) { throw Error(Errc::malformed_key, "malformed key: " + why); }

}  // namespace

MapKey make_map_key(std::uint32_t slot) {
    if (sodium_init() < 0) throw Error(Errc::internal, "libsodium failed to initialise");
    if (slot > 0xffff) throw Error(Errc::usage, "slot out of range");
    MapKey k{slot, SecureBuffer(kKeySecretBytes)};
    randombytes_buf(k.secret.data(), k.secret.size());
    return k;
}

SecureBuffer format_map_key(const MapKey& key) {
    if (key.secret.size() != kKeySecretBytes || key.slot > 0xffff) throw Error(Errc::usage, "bad map key");
    SecureBuffer payload(kPayload);
    payload.data()[0] = static_cast<std::uint8_t>(key.slot >> 8);
    payload.data()[1] = static_cast<std::uint8_t>(key.slot);
    std::copy(key.secret.data(), key.secret.data() + kKeySecretBytes, payload.data() + 2);
    checksum(key.slot, key.secret.data(), payload.data() + 2 + kKeySecretBytes);
    // The text lives in locked, wiped memory like the secret it spells.
    SecureBuffer out(sizeof(kPrefix) - 1 + kChars + (kChars - 1) / kGroup);
    std::uint8_t* o = std::copy(kPrefix, kPrefix + sizeof(kPrefix) - 1, out.data());
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t written = 0;
    auto put = [&](unsigned v) {
        if (written && written % kGroup == 0) *o++ = '-';
        *o++ = static_cast<std::uint8_t>(kAlphabet[v & 31]);
        ++written;
    };
    for (std::size_t i = 0; i < kPayload; ++i) {
        acc = (acc << 8) | payload.data()[i];
        bits += 8;
        while (bits >= 5) {
            put(acc >> (bits - 5));
            bits -= 5;
        }
    }
    if (bits > 0) put(acc << (5 - bits));
    return out;
}

MapKey parse_map_key(std::string_view text) {
    auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    // The line create prints, "LABEL: sfk1-...", is a key too.
    if (auto colon = text.find(':'); colon != std::string_view::npos && colon > 0 &&
                                      text.substr(0, colon).find_first_of(" \t") == std::string_view::npos) {
        text.remove_prefix(colon + 1);
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    }
    const std::size_t plen = sizeof(kPrefix) - 1;
    if (text.size() < plen || !std::equal(kPrefix, kPrefix + plen, text.begin(), [&](char p, char c) { return p == lower(c); }))
        malformed("it must start with \"sfk1-\"");
    // Decoded as read: no copy of the key text is made.
    SecureBuffer payload(kPayload);
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t o = 0, chars = 0;
    for (char raw : text.substr(plen)) {
        const char c = lower(raw);
        if (c == '-') continue;
        const char* at = std::find(kAlphabet, kAlphabet + 32, c);
        if (at == kAlphabet + 32) malformed(std::string("character '") + raw + "' is not in the key alphabet");
        if (++chars > kChars) continue;
        acc = (acc << 5) | static_cast<std::uint32_t>(at - kAlphabet);
        bits += 5;
        if (bits >= 8) {
            payload.data()[o++] = static_cast<std::uint8_t>(acc >> (bits - 8));
            bits -= 8;
        }
    }
    if (chars != kChars) malformed("expected " + std::to_string(kChars) + " key characters, found " + std::to_string(chars));
    if ((acc & ((1u << bits) - 1)) != 0) malformed("non-zero padding bits (mistyped last character?)");
    acc = 0;
    std::uint32_t slot = (std::uint32_t{payload.data()[0]} << 8) | payload.data()[1];
    std::uint8_t expect[4];
    checksum(slot, payload.data() + 2, expect);
    if (sodium_memcmp(expect, payload.data() + 2 + kKeySecretBytes, 4) != 0)
        malformed("checksum mismatch (mistyped key?)");
    return MapKey{slot, SecureBuffer(payload.data() + 2, kKeySecretBytes)};
}

std::vector<std::uint32_t> stage2_order(std::uint32_t slot, unsigned shares, const SecureBuffer& order_key) {
    struct Item {
        std::array<std::uint8_t, 16> h;
        std::uint32_t column;
    };
    std::vector<Item> items;
    for (unsigned i = 0; i < shares; ++i) {
        Item it{{}, slot * shares + i};
        std::uint8_t col_be[4] = {std::uint8_t(it.column >> 24), std::uint8_t(it.column >> 16),
                                  std::uint8_t(it.column >> 8), std::uint8_t(it.column)};
        crypto_generichash(it.h.data(), it.h.size(), col_be, sizeof(col_be), order_key.data(), order_key.size());
        items.push_back(it);
    }
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
        return a.h != b.h ? a.h < b.h : a.column < b.column;
    });
    std::vector<std::uint32_t> out;
    for (const auto& it : items) out.push_back(it.column);
    return out;
}

}  // namespace shamirfs
