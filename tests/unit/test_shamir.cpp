#include <catch2/catch.hpp>
#include <functional>

#include "shamirfs/error.hpp"
#include "shamirfs/shamir.hpp"

using namespace shamirfs;
using gf::Fe;

namespace {
std::vector<Fe> ids(unsigned n, unsigned offset = 1) {
    std::vector<Fe> xs;
    for (unsigned i = 0; i < n; ++i) xs.push_back(gf::from_u64(i + offset));
    return xs;
}

void for_each_subset(unsigned n, unsigned k, const std::function<void(const std::vector<unsigned>&)>& f) {
    std::vector<unsigned> idx(k);
    for (unsigned i = 0; i < k; ++i) idx[i] = i;
    while (true) {
        f(idx);
        int i = static_cast<int>(k) - 1;
        while (i >= 0 && idx[static_cast<unsigned>(i)] == n - k + static_cast<unsigned>(i)) --i;
        if (i < 0) return;
        ++idx[static_cast<unsigned>(i)];
        for (unsigned j = static_cast<unsigned>(i) + 1; j < k; ++j) idx[j] = idx[j - 1] + 1;
    }
}
}  // namespace

TEST_CASE("every t-subset of the shares recombines to the secret", "[shamir]") {
    Rng rng;
    for (auto [t, n] : {std::pair{2u, 3u}, {3u, 9u}, {4u, 7u}, {5u, 5u}}) {
        Fe secret = rng.chunk_element();
        auto xs = ids(n, 17);
        std::vector<Fe> ys(n);
        shamir::split(secret, t, xs, ys, rng);
        int subsets = 0;
        for_each_subset(n, t, [&](const std::vector<unsigned>& s) {
            std::vector<Fe> sx, sy;
            for (unsigned i : s) {
                sx.push_back(xs[i]);
                sy.push_back(ys[i]);
            }
            CHECK(shamir::combine(sx, sy) == secret);
            CHECK(shamir::LagrangeAtZero(sx).combine(sy) == secret);
            ++subsets;
        });
        // C(n, t) subsets were tried.
        long expect = 1;
        for (unsigned i = 0; i < t; ++i) expect = expect * (n - i) / (i + 1);
        CHECK(subsets == expect);
    }
}

TEST_CASE("the splitter's word-sized and full-size share IDs give consistent codewords", "[shamir]") {
    Rng rng;
    Fe big = gf::max_element();  // an ID >= 2^64 takes the full product
    // (consecutive word-sized IDs take differences after the first t values)
    for (const auto& xs : {ids(9, 1), ids(9, 4000), std::vector<Fe>{big, gf::from_u64(2), gf::sub(big, gf::from_u64(7)), gf::from_u64(5)}})
    for (unsigned t : {2u, 3u, 4u, 6u}) {
        if (t > xs.size()) continue;
        INFO("t = " << t << ", " << xs.size() << " IDs");
        shamir::Splitter splitter(t, xs);
        for (int round = 0; round < 20; ++round) {
            Fe secret = rng.chunk_element();
            std::vector<Fe> ys(xs.size());
            splitter.split(secret, ys, rng);
            CHECK(shamir::combine(std::span(xs).first(t), std::span(ys).first(t)) == secret);
            CHECK(shamir::combine(std::span(xs).last(t), std::span(ys).last(t)) == secret);
            // Every other share lies on the polynomial through the first t.
            for (std::size_t j = t; j < xs.size(); ++j)
                CHECK(shamir::interpolate_at(std::span(xs).first(t), std::span(ys).first(t), xs[j]) == ys[j]);
        }
    }
    CHECK_THROWS_AS(shamir::Splitter(3, ids(2)), Error);
}

TEST_CASE("the splitter's word arithmetic agrees with the field's, at the edges", "[shamir]") {
    // Every coefficient given (k = t), so each share is the polynomial's value:
    // compared with evaluate (GMP) for coefficients at the edges (sums that
    // are exactly p or 2p reduce to 0), for IDs whose powers up to x^(t-1)
    // reach the word path's bound (below 2^57) and for IDs beyond it (the
    // field's products).
    Rng rng;
    const Fe top = gf::max_element();  // p - 1
    const std::vector<Fe> edges{gf::zero(), gf::one(), gf::from_u64(2), top, gf::sub(top, gf::one()),
                                gf::sub(top, gf::from_u64(2))};
    // The largest x with x^(t-1) < 2^57.
    const auto largest_word_id = [](unsigned t) {
        std::uint64_t lo = 1, hi = std::uint64_t{1} << 57;
        const auto fits = [t](std::uint64_t x) {  // (long double: exact near the bound, where a power has < 64 bits)
            long double v = 1;
            for (unsigned k = 1; k < t; ++k) v *= static_cast<long double>(x);
            return v < 0x1p57L;
        };
        while (lo < hi) {
            const std::uint64_t mid = lo + (hi - lo + 1) / 2;
            if (fits(mid)) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    };
    const auto check = [&](const shamir::Splitter& splitter, const std::vector<Fe>& xs, const std::vector<Fe>& coeff) {
        std::vector<Fe> ys(xs.size());
        splitter.split_packed(coeff, ys, rng);
        for (std::size_t i = 0; i < xs.size(); ++i) {
            INFO("t = " << coeff.size() << ", share " << i);
            REQUIRE(ys[i] == shamir::evaluate(coeff, xs[i]));
        }
    };
    for (unsigned t : {2u, 3u, 6u}) {
        const std::uint64_t w = largest_word_id(t);
        INFO("largest word ID for t = " << t << ": " << w);
        const std::vector<std::vector<Fe>> id_sets{
            {gf::from_u64(1), gf::from_u64(2), gf::from_u64(3), gf::from_u64(36), gf::from_u64(w / 2), gf::from_u64(w - 1),
             gf::from_u64(w)},
            {gf::from_u64(1), gf::from_u64(36), gf::from_u64(w + 1), gf::from_u64(std::uint64_t{1} << 63),
             gf::from_u64(~std::uint64_t{0}), gf::from_u64(0xfffffffffffffffeull)}};
        for (const auto& xs : id_sets) {
            const shamir::Splitter splitter(t, xs);
            if (t == 2) {  // every pair of edges
                int zeros = 0;
                for (const Fe& c1 : edges)
                    for (const Fe& c0 : edges) {
                        check(splitter, xs, {c0, c1});
                        zeros += gf::is_zero(shamir::evaluate(std::vector<Fe>{c0, c1}, xs[0]));
                    }
                CHECK(zeros >= 3);  // (0, 0), (1, p - 1), (2, p - 2): the sum p itself was met
            }
            for (int round = 0; round < 200; ++round) {
                std::vector<Fe> coeff(t);
                for (auto& c : coeff) c = round % 2 ? rng.field_element() : edges[rng.field_element().limb[0] % edges.size()];
                check(splitter, xs, coeff);
            }
        }
    }
}

TEST_CASE("t-1 shares do not determine the secret", "[shamir]") {
    Rng rng;
    const unsigned t = 3, n = 9;
    auto xs = ids(n);
    for (int trial = 0; trial < 20; ++trial) {
        Fe secret = rng.chunk_element();
        std::vector<Fe> ys(n);
        shamir::split(secret, t, xs, ys, rng);
        std::vector<Fe> sx(xs.begin(), xs.begin() + t - 1), sy(ys.begin(), ys.begin() + t - 1);
        CHECK_FALSE(shamir::combine(sx, sy) == secret);
        // Any candidate secret is consistent with t-1 shares: the polynomial
        // through them and (0, guess) exists for every guess.
        Fe guess = rng.field_element();
        std::vector<Fe> gx = sx, gy = sy;
        gx.push_back(xs[5]);
        std::vector<Fe> px = {sx[0], sx[1], gf::zero()}, py = {sy[0], sy[1], guess};
        gy.push_back(shamir::interpolate_at(px, py, xs[5]));
        CHECK(shamir::combine(gx, gy) == guess);
    }
}

TEST_CASE("split and combine reject invalid input with clear errors", "[shamir]") {
    Rng rng;
    std::vector<Fe> ys(3);
    struct Case {
        const char* name;
        unsigned t;
        std::vector<Fe> xs;
        const char* msg;
    };
    std::vector<Case> cases = {
        {"threshold 1", 1, ids(3), "threshold must be at least 2"},
        {"threshold 0", 0, ids(3), "threshold must be at least 2"},
        {"fewer shares than t", 4, ids(3), "fewer shares than the threshold"},
        {"share ID 0", 2, {gf::from_u64(1), gf::zero(), gf::from_u64(3)}, "share ID 0"},
        {"duplicate IDs", 2, {gf::from_u64(1), gf::from_u64(2), gf::from_u64(1)}, "duplicate share ID"},
        {"too many shares", 2, ids(65), "at most 64 shares"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        std::vector<Fe> out(c.xs.size());
        try {
            shamir::split(gf::one(), c.t, c.xs, out, rng);
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::usage);
            CHECK_THAT(e.what(), Catch::Contains(c.msg));
        }
    }
    CHECK_THROWS_AS(shamir::split(gf::one(), 2, ids(3), std::span<Fe>(ys.data(), 2), rng), Error);
    CHECK_THROWS_AS(shamir::combine(ids(3), std::vector<Fe>(2)), Error);
    CHECK_THROWS_AS(shamir::combine(ids(1), std::vector<Fe>(1)), Error);
    std::vector<Fe> dup = {gf::from_u64(4), gf::from_u64(4)};
    CHECK_THROWS_AS(shamir::LagrangeAtZero(dup), Error);
    CHECK_THROWS_AS(shamir::LagrangeAtZero(ids(3)).combine(std::vector<Fe>(4)), Error);
    CHECK_THROWS_AS(shamir::decode(ids(3), std::vector<Fe>(2), 2), Error);
}

TEST_CASE("Berlekamp-Welch corrects up to floor((n-t)/2) bad shares and locates them", "[shamir]") {
    Rng rng;
    for (auto [t, n] : {std::pair{3u, 9u}, {2u, 3u}, {2u, 7u}, {4u, 9u}}) {
        const unsigned e = (n - t) / 2;
        auto xs = ids(n, 5);
        for (int trial = 0; trial < 10; ++trial) {
            Fe secret = rng.chunk_element();
            std::vector<Fe> ys(n);
            shamir::split(secret, t, xs, ys, rng);
            for (unsigned errors = 0; errors <= e; ++errors) {
                auto bad = ys;
                std::vector<std::size_t> where;
                for (unsigned k = 0; k < errors; ++k) {
                    std::size_t i = (static_cast<std::size_t>(trial) + k * 2) % n;
                    bad[i] = rng.field_element();
                    where.push_back(i);
                }
                std::sort(where.begin(), where.end());
                auto d = shamir::decode(xs, bad, t);
                REQUIRE(d.has_value());
                CHECK(d->poly[0] == secret);
                CHECK(d->bad == where);
            }
            if (e + 1 + t <= n) {
                // One error too many: refused, never a wrong secret.
                auto bad = ys;
                for (unsigned k = 0; k <= e; ++k) bad[k] = rng.field_element();
                auto d = shamir::decode(xs, bad, t);
                CHECK_FALSE(d.has_value());
            }
        }
    }
}

TEST_CASE("with n = t + 1 one bad share is detected, not corrected", "[shamir]") {
    Rng rng;
    auto xs = ids(4);
    std::vector<Fe> ys(4);
    Fe secret = rng.chunk_element();
    shamir::split(secret, 3, xs, ys, rng);
    auto good = shamir::decode(xs, ys, 3);
    REQUIRE(good);
    CHECK(good->poly[0] == secret);
    ys[2] = gf::add(ys[2], gf::one());
    CHECK_FALSE(shamir::decode(xs, ys, 3).has_value());
}
