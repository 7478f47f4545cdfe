#include <catch2/catch.hpp>

#include "deniability_fixture.hpp"

TEST_CASE("written, unwritten and unassigned columns cannot be told apart", "[deniability][stats]") {
    DeniabilityFixture f;
    REQUIRE(f.document_rows >= 700);  // most rows of the written slot carry ciphertext
    for (unsigned slot : {f.written, f.unwritten, f.unassigned}) {
        stats::GroupStats g = stats::analyse(f.m, slot);
        INFO("slot " << slot << ": chi bytes " << g.chi_bytes << ", chi top " << g.chi_top << ", KS " << g.ks_value
                     << ", chi secrets " << g.chi_secret);
        CHECK(g.cells == 1024u * 9u);
        CHECK(stats::looks_random(g));
    }
    auto a = stats::analyse(f.m, f.written), u = stats::analyse(f.m, f.unassigned), b = stats::analyse(f.m, f.unwritten);
    CHECK(stats::ks_two_sample(a.values, u.values) < stats::ks2_critical(a.cells, u.cells));
    CHECK(stats::ks_two_sample(b.values, u.values) < stats::ks2_critical(b.cells, u.cells));
}

TEST_CASE("the statistical checks catch broken variants", "[deniability][stats]") {
    DeniabilityFixture f;
    // Shares without the encryption layer: the cells still look uniform (Shamir
    // randomises them) but what they interpolate to is plaintext.
    stats::GroupStats plain = stats::analyse(f.without_encryption(), f.written);
    CHECK(plain.chi_secret > 10 * stats::kChi255);
    CHECK_FALSE(stats::looks_random(plain));
    // Garbage drawn from a smaller range than [0, p).
    stats::GroupStats small = stats::analyse(f.small_range_garbage(), f.unassigned);
    CHECK(small.ks_value > 10 * stats::ks_critical(small.cells));
    CHECK(small.chi_top > 10 * stats::kChi255);
    CHECK_FALSE(stats::looks_random(small));
}
