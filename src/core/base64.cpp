#include "shamirfs/base64.hpp"

#include <immintrin.h>

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
// AVX-512 VBMI (Ice Lake and later): 48 bytes -> 64 characters per step.
// Each 3-byte group (a b c) is spread over a 32-bit lane as b a c b, so that
// the four 6-bit fields start at bits 10, 4, 22 and 16 of the lane; one
// multishift picks them (the top two bits of each byte are ignored by the
// lookup), one permute turns them into the alphabet. Returns the bytes done
// (whole groups of 3); writes 4 characters for each group.
#if defined(__x86_64__)
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12, inside the intrinsics' own headers
#endif
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) std::size_t encode_vbmi(const std::uint8_t* in, std::size_t n,
                                                                            char* out) {
    const __m512i spread = _mm512_set_epi32(0x2e2f2d2e, 0x2b2c2a2b, 0x28292728, 0x25262425, 0x22232122, 0x1f201e1f,
                                            0x1c1d1b1c, 0x191a1819, 0x16171516, 0x13141213, 0x10110f10, 0x0d0e0c0d,
                                            0x0a0b090a, 0x07080607, 0x04050304, 0x01020001);
    const __m512i shifts = _mm512_set1_epi64(0x3036242a1016040a);
    const __m512i alphabet = _mm512_loadu_si512(kAlphabet);
    std::size_t done = 0;
    while (done + 3 <= n) {
        const std::size_t bytes = std::min<std::size_t>(48, (n - done) / 3 * 3), chars = bytes / 3 * 4;
        const __mmask64 load = bytes == 64 ? ~__mmask64{0} : (__mmask64{1} << bytes) - 1;
        const __mmask64 store = chars == 64 ? ~__mmask64{0} : (__mmask64{1} << chars) - 1;
        __m512i v = _mm512_maskz_loadu_epi8(load, in + done);
        v = _mm512_permutexvar_epi8(spread, v);
        v = _mm512_multishift_epi64_epi8(shifts, v);
        _mm512_mask_storeu_epi8(out, store, _mm512_permutexvar_epi8(v, alphabet));
        done += bytes;
        out += chars;
    }
    return done;
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
const bool kVbmi = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vbmi");
#else
std::size_t encode_vbmi(const std::uint8_t*, std::size_t, char*) { return 0; }
const bool kVbmi = false;
#endif
}  // namespace

std::size_t encoded_size(std::size_t bytes) { return (bytes + 2) / 3 * 4; }

void encode(std::span<const std::uint8_t> in, char* out) {
    std::size_t i = 0;
    if (kVbmi) {
        i = encode_vbmi(in.data(), in.size(), out);
        out += i / 3 * 4;
    }
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
