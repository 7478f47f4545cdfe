#include "shamirfs/base64.hpp"

#include <array>
#include <cstring>

namespace shamirfs::base64 {
namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> make_table() {
    std::array<std::int8_t, 256> t{};
    for (auto& v : t) v = -1;
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
    return t;
}
constexpr auto kTable = make_table();

// Two output characters for each 12-bit value.
constexpr std::array<std::array<char, 2>, 4096> make_pairs() {
    std::array<std::array<char, 2>, 4096> t{};
    for (int i = 0; i < 4096; ++i) t[static_cast<std::size_t>(i)] = {kAlphabet[i >> 6], kAlphabet[i & 63]};
    return t;
}
constexpr auto kPairs = make_pairs();
}  // namespace

std::size_t encoded_size(std::size_t bytes) { return (bytes + 2) / 3 * 4; }

void encode(std::span<const std::uint8_t> in, char* out) {
    std::size_t i = 0;
    // 6 bytes -> 8 characters per step, while an 8-byte load stays inside `in`.
    for (; i + 8 <= in.size(); i += 6) {
        std::uint64_t be;
        std::memcpy(&be, in.data() + i, 8);
        const std::uint64_t v = __builtin_bswap64(be) >> 16;  // the 6 bytes, big-endian
        std::memcpy(out + 0, kPairs[(v >> 36) & 4095].data(), 2);
        std::memcpy(out + 2, kPairs[(v >> 24) & 4095].data(), 2);
        std::memcpy(out + 4, kPairs[(v >> 12) & 4095].data(), 2);
        std::memcpy(out + 6, kPairs[v & 4095].data(), 2);
        out += 8;
    }
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
        *out++ = kAlphabet[v >> 18];
        *out++ = kAlphabet[(v >> 12) & 63];
        *out++ = kAlphabet[(v >> 6) & 63];
        *out++ = kAlphabet[v & 63];
    }
    std::size_t rest = in.size() - i;
    if (rest == 0) return;
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (rest == 2) v |= std::uint32_t{in[i + 1]} << 8;
    *out++ = kAlphabet[v >> 18];
    *out++ = kAlphabet[(v >> 12) & 63];
    *out++ = rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    *out++ = '=';
}

std::string encode(std::span<const std::uint8_t> in) {
    std::string s(encoded_size(in.size()), '\0');
    encode(in, s.data());
    return s;
}

long decoded_size(std::string_view in) {
    if (in.size() % 4 != 0) return -1;
    std::size_t pad = 0;
    if (!in.empty() && in.back() == '=') pad = (in.size() >= 2 && in[in.size() - 2] == '=') ? 2 : 1;
    return static_cast<long>(in.size() / 4 * 3 - pad);
}

bool decode(std::string_view in, std::span<std::uint8_t> out) {
    long size = decoded_size(in);
    if (size < 0 || static_cast<std::size_t>(size) != out.size()) return false;
    if (in.empty()) return true;
    // Every group but the last has no padding: no branches, invalid characters
    // (-1 in the table) noticed once at the end.
    const std::size_t groups = in.size() / 4;
    int bad = 0;
    std::size_t o = 0;
    for (std::size_t g = 0; g + 1 < groups; ++g) {
        const char* q = in.data() + 4 * g;
        const int a = kTable[static_cast<unsigned char>(q[0])], b = kTable[static_cast<unsigned char>(q[1])],
                  c = kTable[static_cast<unsigned char>(q[2])], d = kTable[static_cast<unsigned char>(q[3])];
        bad |= a | b | c | d;
        const std::uint32_t v = (std::uint32_t(a) << 18) | (std::uint32_t(b) << 12) | (std::uint32_t(c) << 6) | std::uint32_t(d);
        out[o] = static_cast<std::uint8_t>(v >> 16);
        out[o + 1] = static_cast<std::uint8_t>(v >> 8);
        out[o + 2] = static_cast<std::uint8_t>(v);
        o += 3;
    }
    if (bad < 0) return false;
    // The last group, with its padding rules.
    const char* q = in.data() + in.size() - 4;
    std::int8_t a = kTable[static_cast<unsigned char>(q[0])];
    std::int8_t b = kTable[static_cast<unsigned char>(q[1])];
    std::int8_t c = kTable[static_cast<unsigned char>(q[2])];
    std::int8_t d = kTable[static_cast<unsigned char>(q[3])];
    if (a < 0 || b < 0) return false;
    if (q[3] == '=') {
        if (q[2] == '=') {
            if (b & 15) return false;  // non-zero trailing bits
            out[o++] = static_cast<std::uint8_t>((a << 2) | (b >> 4));
            return true;
        }
        if (c < 0 || (c & 3)) return false;
        out[o++] = static_cast<std::uint8_t>((a << 2) | (b >> 4));
        out[o++] = static_cast<std::uint8_t>(((b & 15) << 4) | (c >> 2));
        return true;
    }
    if (c < 0 || d < 0) return false;
    std::uint32_t v = (std::uint32_t(a) << 18) | (std::uint32_t(b) << 12) | (std::uint32_t(c) << 6) | std::uint32_t(d);
    out[o++] = static_cast<std::uint8_t>(v >> 16);
    out[o++] = static_cast<std::uint8_t>(v >> 8);
    out[o++] = static_cast<std::uint8_t>(v);
    return true;
}

}  // namespace shamirfs::base64
