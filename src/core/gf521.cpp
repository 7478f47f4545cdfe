#include "shamirfs/gf521.hpp"

#include <gmp.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "shamirfs/error.hpp"

static_assert(GMP_NUMB_BITS == 64, "shamirfs needs 64-bit GMP limbs");
static_assert(sizeof(mp_limb_t) == sizeof(std::uint64_t));

namespace shamirfs::gf {
namespace {

// GMP's temporaries (mpz inversion, decimal conversion, Karatsuba scratch) may
// hold secret values: every block GMP frees or moves is wiped first.
void* gmp_alloc(std::size_t n) {
    void* p = std::malloc(n ? n : 1);
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void* gmp_realloc(void* old, std::size_t old_size, std::size_t n) {
    void* p = gmp_alloc(n);
    if (old != nullptr) {
        std::memcpy(p, old, std::min(old_size, n));
        sodium_memzero(old, old_size);
        std::free(old);
    }
    return p;
}
void gmp_free(void* p, std::size_t n) {
    if (p == nullptr) return;
    sodium_memzero(p, n);
    std::free(p);
}
const bool gmp_wiping_installed = [] {
    mp_set_memory_functions(gmp_alloc, gmp_realloc, gmp_free);
    return true;
}();

mp_limb_t* L(Fe& a) { return reinterpret_cast<mp_limb_t*>(a.limb.data()); }
const mp_limb_t* L(const Fe& a) { return reinterpret_cast<const mp_limb_t*>(a.limb.data()); }


// Input: a value < 2^522 (at most 2p). Output: the value mod p.
void fold(Fe& a) {
    std::uint64_t carry = a.limb[kLimbs - 1] >> kTopBits;
    a.limb[kLimbs - 1] &= kTopMask;
    if (carry) mpn_add_1(L(a), L(a), kLimbs, carry);
    if (is_p(a)) a = Fe{};
}

// Reduces a 2 * kLimbs product mod p: (t & p) + (t >> 521).
Fe reduce_wide(const mp_limb_t* t) {
    Fe lo, hi;
    for (std::size_t i = 0; i < kLimbs; ++i) lo.limb[i] = t[i];
    lo.limb[kLimbs - 1] &= kTopMask;
    constexpr unsigned s = kTopBits;
    for (std::size_t i = 0; i < kLimbs; ++i) {
        std::uint64_t a = t[kLimbs - 1 + i] >> s;
        std::uint64_t b = (kLimbs + i < 2 * kLimbs) ? t[kLimbs + i] << (64 - s) : 0;
        hi.limb[i] = a | b;
    }
    mpn_add_n(L(lo), L(lo), L(hi), kLimbs);  // < 2^522, fits in 576 bits
    fold(lo);
    return lo;
}

}  // namespace

Fe zero() { return Fe{}; }
Fe one() { return from_u64(1); }
Fe from_u64(std::uint64_t v) {
    Fe a;
    a.limb[0] = v;
    return a;
}
Fe max_element() {
    Fe a;
    for (std::size_t i = 0; i < kLimbs - 1; ++i) a.limb[i] = ~std::uint64_t{0};
    a.limb[kLimbs - 1] = kTopMask;
    a.limb[0] -= 1;
    return a;
}

bool is_zero(const Fe& a) {
    return std::all_of(a.limb.begin(), a.limb.end(), [](std::uint64_t x) { return x == 0; });
}

bool is_p(const Fe& a) {
    for (std::size_t i = 0; i < kLimbs - 1; ++i)
        if (a.limb[i] != ~std::uint64_t{0}) return false;
    return a.limb[kLimbs - 1] == kTopMask;
}

Fe add(const Fe& a, const Fe& b) {
    Fe r;
    mpn_add_n(L(r), L(a), L(b), kLimbs);
    fold(r);
    return r;
}

Fe sub(const Fe& a, const Fe& b) {
    Fe r;
    if (mpn_sub_n(L(r), L(a), L(b), kLimbs) != 0) {
        // Wrapped modulo 2^576: adding p (ignoring the carry out) gives a - b + p.
        Fe p = max_element();
        p.limb[0] += 1;
        mpn_add_n(L(r), L(r), L(p), kLimbs);
    }
    return r;
}

Fe neg(const Fe& a) { return sub(Fe{}, a); }

Fe mul(const Fe& a, const Fe& b) {
    mp_limb_t t[2 * kLimbs];
    mpn_mul_n(t, L(a), L(b), kLimbs);
    return reduce_wide(t);
}

Fe mul_u64(const Fe& a, std::uint64_t k) {
    Fe r;
    mp_limb_t hi = mpn_mul_1(L(r), L(a), kLimbs, k);  // a * k < 2^(521 + 64): r holds its low 576 bits
    // a * k mod p = (a * k & p) + (a * k >> 521); the high part is < 2^64.
    Fe h;
    h.limb[0] = (r.limb[kLimbs - 1] >> kTopBits) | (hi << (64 - kTopBits));
    h.limb[1] = hi >> kTopBits;
    r.limb[kLimbs - 1] &= kTopMask;
    mpn_add_n(L(r), L(r), L(h), kLimbs);  // < 2^521 + 2^64: fold handles it
    fold(r);
    return r;
}

Fe sqr(const Fe& a) {
    mp_limb_t t[2 * kLimbs];
    mpn_sqr(t, L(a), kLimbs);
    return reduce_wide(t);
}

Fe pow(const Fe& a, const Fe& e) {
    Fe r = one();
    for (int i = static_cast<int>(kBits) - 1; i >= 0; --i) {
        r = sqr(r);
        if ((e.limb[static_cast<std::size_t>(i) / 64] >> (i % 64)) & 1) r = mul(r, a);
    }
    return r;
}

Fe inv(const Fe& a) {
    if (is_zero(a)) throw Error(Errc::usage, "GF(p): zero has no inverse");
    // a^(p - 2), p - 2 = 2^521 - 3 = (2^519 - 1) * 4 + 1, by an addition
    // chain: x(k) = a^(2^k - 1), x(k + m) = x(k)^(2^m) * x(m). 520 squarings
    // and 13 multiplications (pow: 520 of each).
    auto up = [](Fe x, int squarings, const Fe& times) {
        while (squarings-- > 0) x = sqr(x);
        return mul(x, times);
    };
    const Fe x1 = a, x2 = up(x1, 1, x1), x4 = up(x2, 2, x2), x8 = up(x4, 4, x4), x16 = up(x8, 8, x8);
    const Fe x32 = up(x16, 16, x16), x64 = up(x32, 32, x32), x128 = up(x64, 64, x64), x256 = up(x128, 128, x128);
    const Fe x512 = up(x256, 256, x256), x516 = up(x512, 4, x4), x518 = up(x516, 2, x2), x519 = up(x518, 1, x1);
    return up(x519, 2, a);
}

// 66 big-endian bytes: 2 bytes of the top limb, then limbs 7..0 as 8 bytes each.
bool from_bytes(std::span<const std::uint8_t, kBytes> in, Fe& out) {
    Fe r;
    r.limb[kLimbs - 1] = (std::uint64_t{in[0]} << 8) | in[1];
    for (std::size_t i = 0; i < kLimbs - 1; ++i) {
        std::uint64_t be;
        std::memcpy(&be, in.data() + 2 + 8 * i, 8);
        r.limb[kLimbs - 2 - i] = __builtin_bswap64(be);
    }
    if ((r.limb[kLimbs - 1] >> kTopBits) != 0 || is_p(r)) return false;
    out = r;
    return true;
}

void to_bytes(const Fe& a, std::span<std::uint8_t, kBytes> out) {
    out[0] = static_cast<std::uint8_t>(a.limb[kLimbs - 1] >> 8);
    out[1] = static_cast<std::uint8_t>(a.limb[kLimbs - 1]);
    for (std::size_t i = 0; i < kLimbs - 1; ++i) {
        std::uint64_t be = __builtin_bswap64(a.limb[kLimbs - 2 - i]);
        std::memcpy(out.data() + 2 + 8 * i, &be, 8);
    }
}

Fe from_chunk(std::span<const std::uint8_t, 64> in) {
    Fe r;  // (big-endian: the first 8 bytes are limb 7)
    for (std::size_t i = 0; i < 8; ++i) {
        std::uint64_t be;
        std::memcpy(&be, in.data() + 8 * i, 8);
        r.limb[7 - i] = __builtin_bswap64(be);
    }
    return r;
}

bool to_chunk(const Fe& a, std::span<std::uint8_t, 64> out) {
    if (a.limb[kLimbs - 1] != 0) return false;
    for (std::size_t i = 0; i < 64; ++i) {
        std::size_t bit = (63 - i) * 8;
        out[i] = static_cast<std::uint8_t>(a.limb[bit / 64] >> (bit % 64));
    }
    return true;
}

std::string to_decimal(const Fe& a) {
    mpz_t z;
    mpz_init(z);
    mpz_import(z, kLimbs, -1, sizeof(std::uint64_t), 0, 0, a.limb.data());
    char* s = mpz_get_str(nullptr, 10, z);
    std::string out(s);
    void (*freefunc)(void*, size_t);
    mp_get_memory_functions(nullptr, nullptr, &freefunc);
    freefunc(s, out.size() + 1);
    mpz_clear(z);
    return out;
}

Fe from_decimal(const std::string& s) {
    mpz_t z, p;
    mpz_init(z);
    mpz_init(p);
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos ||
        mpz_set_str(z, s.c_str(), 10) != 0) {
        mpz_clear(z);
        mpz_clear(p);
        throw Error(Errc::usage, "GF(p): not a decimal integer");
    }
    mpz_ui_pow_ui(p, 2, kBits);
    mpz_sub_ui(p, p, 1);
    bool too_big = mpz_cmp(z, p) >= 0;
    Fe r;
    if (!too_big) mpz_export(r.limb.data(), nullptr, -1, sizeof(std::uint64_t), 0, 0, z);
    mpz_clear(z);
    mpz_clear(p);
    if (too_big) throw Error(Errc::usage, "GF(p): value >= p");
    return r;
}

}  // namespace shamirfs::gf
