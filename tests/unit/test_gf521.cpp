#include <gmp.h>

#include <catch2/catch.hpp>

#include "shamirfs/error.hpp"
#include "shamirfs/gf521.hpp"
#include "shamirfs/rng.hpp"

using namespace shamirfs;
using gf::Fe;

namespace {
// Independent oracle: plain mpz arithmetic mod p.
struct Oracle {
    mpz_t p;
    Oracle() {
        mpz_init(p);
        mpz_ui_pow_ui(p, 2, 521);
        mpz_sub_ui(p, p, 1);
    }
    ~Oracle() { mpz_clear(p); }
    std::string mul(const Fe& a, const Fe& b) const { return op(a, b, '*'); }
    std::string add(const Fe& a, const Fe& b) const { return op(a, b, '+'); }
    std::string sub(const Fe& a, const Fe& b) const { return op(a, b, '-'); }
    std::string op(const Fe& a, const Fe& b, char o) const {
        mpz_t x, y;
        mpz_init_set_str(x, gf::to_decimal(a).c_str(), 10);
        mpz_init_set_str(y, gf::to_decimal(b).c_str(), 10);
        if (o == '*') mpz_mul(x, x, y);
        if (o == '+') mpz_add(x, x, y);
        if (o == '-') mpz_sub(x, x, y);
        mpz_mod(x, x, p);
        char* s = mpz_get_str(nullptr, 10, x);
        std::string out(s);
        void (*freefunc)(void*, size_t);
        mp_get_memory_functions(nullptr, nullptr, &freefunc);
        freefunc(s, out.size() + 1);
        mpz_clear(x);
        mpz_clear(y);
        return out;
    }
};

std::vector<Fe> edge_values() {
    std::vector<Fe> v{gf::zero(), gf::one(), gf::from_u64(2), gf::max_element(),
                      gf::sub(gf::max_element(), gf::one()), gf::from_u64(~0ull)};
    Fe two512;
    two512.limb[8] = 1;  // 2^512
    v.push_back(two512);
    Fe two520;
    two520.limb[8] = 1ull << 8;  // 2^520
    v.push_back(two520);
    return v;
}
}  // namespace

TEST_CASE("GF(p) field laws hold on random and edge values", "[gf521]") {
    Rng rng;
    auto vals = edge_values();
    for (int i = 0; i < 40; ++i) vals.push_back(rng.field_element());
    for (std::size_t i = 0; i < vals.size(); ++i) {
        const Fe& a = vals[i];
        const Fe& b = vals[(i * 7 + 3) % vals.size()];
        const Fe& c = vals[(i * 13 + 5) % vals.size()];
        CHECK(gf::add(a, b) == gf::add(b, a));
        CHECK(gf::mul(a, b) == gf::mul(b, a));
        CHECK(gf::add(gf::add(a, b), c) == gf::add(a, gf::add(b, c)));
        CHECK(gf::mul(gf::mul(a, b), c) == gf::mul(a, gf::mul(b, c)));
        CHECK(gf::mul(a, gf::add(b, c)) == gf::add(gf::mul(a, b), gf::mul(a, c)));
        CHECK(gf::add(a, gf::zero()) == a);
        CHECK(gf::mul(a, gf::one()) == a);
        CHECK(gf::add(a, gf::neg(a)) == gf::zero());
        CHECK(gf::sub(gf::add(a, b), b) == a);
        CHECK(gf::sqr(a) == gf::mul(a, a));
        if (!gf::is_zero(a)) {
            CHECK(gf::mul(a, gf::inv(a)) == gf::one());
            Fe p_minus_2 = gf::max_element();  // (inv's addition chain against Fermat by pow)
            p_minus_2.limb[0] -= 1;
            CHECK(gf::inv(a) == gf::pow(a, p_minus_2));
        }
    }
}

TEST_CASE("GF(p) arithmetic agrees with plain GMP mpz arithmetic mod p", "[gf521]") {
    Oracle o;
    Rng rng;
    auto vals = edge_values();
    for (int i = 0; i < 60; ++i) vals.push_back(rng.field_element());
    for (const auto& a : vals)
        for (const auto& b : {vals[3], vals[7], vals[20], vals[41]}) {
            CHECK(gf::to_decimal(gf::mul(a, b)) == o.mul(a, b));
            CHECK(gf::to_decimal(gf::add(a, b)) == o.add(a, b));
            CHECK(gf::to_decimal(gf::sub(a, b)) == o.sub(a, b));
        }
}

TEST_CASE("GF(p) products by a word agree with full products", "[gf521]") {
    Oracle o;
    Rng rng;
    auto vals = edge_values();
    for (int i = 0; i < 60; ++i) vals.push_back(rng.field_element());
    for (const auto& a : vals)
        for (std::uint64_t k : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{9}, std::uint64_t{4096},
                                std::uint64_t{1} << 63, ~std::uint64_t{0}}) {
            CHECK(gf::mul_u64(a, k) == gf::mul(a, gf::from_u64(k)));
            CHECK(gf::to_decimal(gf::mul_u64(a, k)) == o.mul(a, gf::from_u64(k)));
        }
}

TEST_CASE("GF(p) known answers", "[gf521]") {
    const Fe pm1 = gf::max_element();
    CHECK(gf::to_decimal(pm1) ==
          "6864797660130609714981900799081393217269435300143305409394463459185543183397656052122559640661454554977296311391480858037121987999716643812574028291115057150");
    CHECK(gf::mul(pm1, pm1) == gf::one());                          // (-1)^2 = 1
    CHECK(gf::pow(gf::from_u64(2), gf::from_u64(521)) == gf::one());  // 2^521 = 1 mod p
    Fe two520;
    two520.limb[8] = 1ull << 8;
    CHECK(gf::inv(gf::from_u64(2)) == two520);                       // 1/2 = 2^520
    CHECK(gf::add(pm1, gf::one()) == gf::zero());
    CHECK(gf::sub(gf::zero(), gf::one()) == pm1);
    CHECK(gf::mul(gf::from_u64(3), gf::inv(gf::from_u64(3))) == gf::one());
    CHECK(gf::to_decimal(gf::mul(gf::from_u64(1ull << 63), gf::from_u64(1ull << 63))) == "85070591730234615865843651857942052864");
}

TEST_CASE("GF(p) serialisation rejects values >= p", "[gf521]") {
    std::array<std::uint8_t, gf::kBytes> b{};
    b[0] = 1;
    for (std::size_t i = 1; i < b.size(); ++i) b[i] = 0xff;  // exactly p
    Fe out;
    CHECK_FALSE(gf::from_bytes(b, out));
    b[0] = 2;  // 2^521 and above
    CHECK_FALSE(gf::from_bytes(b, out));
    b[0] = 0x80;
    CHECK_FALSE(gf::from_bytes(b, out));
    b[0] = 1;
    b[65] = 0xfe;  // p - 1
    REQUIRE(gf::from_bytes(b, out));
    CHECK(out == gf::max_element());
    CHECK_THROWS_AS(gf::from_decimal(gf::to_decimal(gf::max_element()) + "0"), Error);
    CHECK_THROWS_AS(gf::from_decimal("-1"), Error);
    CHECK_THROWS_AS(gf::from_decimal(""), Error);
    CHECK_THROWS_AS(gf::inv(gf::zero()), Error);

    Rng rng;
    for (int i = 0; i < 50; ++i) {
        Fe a = rng.field_element(), back;
        std::array<std::uint8_t, gf::kBytes> buf;
        gf::to_bytes(a, buf);
        REQUIRE(gf::from_bytes(buf, back));
        CHECK(back == a);
        CHECK(gf::from_decimal(gf::to_decimal(a)) == a);
        std::array<std::uint8_t, 64> chunk;
        rng.fill(chunk);
        std::array<std::uint8_t, 64> again;
        REQUIRE(gf::to_chunk(gf::from_chunk(chunk), again));
        CHECK(again == chunk);
    }
    std::array<std::uint8_t, 64> chunk;
    Fe two512;
    two512.limb[8] = 1;
    CHECK_FALSE(gf::to_chunk(two512, chunk));
}

TEST_CASE("Rng field elements use all 521 bits", "[gf521][rng]") {
    Rng rng;
    int top_bit = 0, high_limb_bits = 0;
    for (int i = 0; i < 2000; ++i) {
        Fe a = rng.field_element();
        if (a.limb[8] >> 8) ++top_bit;  // bit 520
        if (a.limb[8] & 0xff) ++high_limb_bits;
    }
    // Bit 520 is set with probability 1/2: 2000 draws are far from 0 or 2000.
    CHECK(top_bit > 850);
    CHECK(top_bit < 1150);
    CHECK(high_limb_bits > 1900);
    std::array<std::uint8_t, 32> seed{};
    Rng a(seed), b(seed);
    CHECK(a.field_element() == b.field_element());
}
