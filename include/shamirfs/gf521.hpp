// Arithmetic in GF(p), p = 2^521 - 1 (a Mersenne prime), on GMP's mpn layer
// with fixed-size operands (no heap allocation) and the Mersenne reduction
// x mod p = (x & p) + (x >> 521).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace shamirfs::gf {

inline constexpr std::size_t kBits = 521;
inline constexpr std::size_t kLimbs = 9;    // 9 x 64 = 576 bits
inline constexpr std::size_t kBytes = 66;   // big-endian serialisation, ceil(521/8)
inline constexpr unsigned kTopBits = kBits - 64 * (kLimbs - 1);               // 9: p's bits in the top limb
inline constexpr std::uint64_t kTopMask = (std::uint64_t{1} << kTopBits) - 1;

struct Fe {
    std::array<std::uint64_t, kLimbs> limb{};  // little-endian limbs, always < p
    friend bool operator==(const Fe&, const Fe&) = default;
};

Fe zero();
Fe one();
Fe from_u64(std::uint64_t v);
// p - 1, the largest element.
Fe max_element();

Fe add(const Fe& a, const Fe& b);
Fe sub(const Fe& a, const Fe& b);
Fe neg(const Fe& a);
Fe mul(const Fe& a, const Fe& b);
// a * k for a word k: one 9 x 1 limb product and a fold (share IDs are small).
Fe mul_u64(const Fe& a, std::uint64_t k);
Fe sqr(const Fe& a);
Fe pow(const Fe& a, const Fe& e);
// Throws Error(usage) for 0.
Fe inv(const Fe& a);
bool is_zero(const Fe& a);
// True for the unreduced value p itself (all 521 bits one), which stands for 0.
bool is_p(const Fe& a);

// Big-endian 66 bytes. Returns false if the value is >= p.
bool from_bytes(std::span<const std::uint8_t, kBytes> in, Fe& out);
void to_bytes(const Fe& a, std::span<std::uint8_t, kBytes> out);

// A 64-byte chunk as an element (always < 2^512 < p), and back (false if >= 2^512).
Fe from_chunk(std::span<const std::uint8_t, 64> in);
bool to_chunk(const Fe& a, std::span<std::uint8_t, 64> out);

// Decimal, for tests and diagnostics of public values only.
std::string to_decimal(const Fe& a);
// Parses a decimal integer; reduces nothing: throws Error(usage) if >= p.
Fe from_decimal(const std::string& s);

}  // namespace shamirfs::gf
