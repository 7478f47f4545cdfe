#include <catch2/catch.hpp>

#include "shamirfs/error.hpp"
#include "shamirfs/keys.hpp"

using namespace shamirfs;

namespace {
void expect_malformed(const std::string& text, const std::string& why) {
    INFO("key text: " << text);
    try {
        parse_map_key(text);
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::malformed_key);
        CHECK_THAT(e.what(), Catch::StartsWith("malformed key: ") && Catch::Contains(why));
    }
}
}  // namespace

TEST_CASE("map keys round-trip and are one line with a checksum", "[keys]") {
    for (std::uint32_t slot : {0u, 1u, 3u, 1023u, 65535u}) {
        MapKey k = make_map_key(slot);
        std::string text(format_map_key(k).view());
        CHECK(text.rfind("sfk1-", 0) == 0);
        CHECK(text.find('\n') == std::string::npos);
        CHECK(text.size() == 5 + 36 + 5);  // 36 characters in groups of 6
        MapKey back = parse_map_key(text);
        CHECK(back.slot == slot);
        CHECK(back.secret.view() == k.secret.view());
        // Case, dashes and surrounding whitespace do not matter.
        std::string loose = "  SFK1-";
        for (char c : text.substr(5))
            if (c != '-') loose.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
        loose += " \n";
        CHECK(parse_map_key(loose).slot == slot);
    }
    CHECK(format_map_key(make_map_key(1)).view() != format_map_key(make_map_key(1)).view());  // fresh secrets
}

TEST_CASE("malformed keys are refused with a reason", "[keys]") {
    std::string good(format_map_key(make_map_key(2)).view());
    expect_malformed("", "must start with");
    expect_malformed("sfk2-" + good.substr(5), "must start with");
    expect_malformed(good.substr(0, good.size() - 1), "expected 36 key characters");
    expect_malformed(good + "a", "expected 36 key characters");
    expect_malformed(good.substr(0, 10) + "1" + good.substr(11), "not in the key alphabet");
    expect_malformed(good.substr(0, 10) + "!" + good.substr(11), "not in the key alphabet");
}

TEST_CASE("every single-character typo in a key is caught", "[keys]") {
    std::string good(format_map_key(make_map_key(7)).view());
    const std::string alphabet = "abcdefghijklmnopqrstuvwxyz234567";
    int tried = 0;
    for (std::size_t i = 5; i < good.size(); ++i) {
        if (good[i] == '-') continue;
        for (char c : alphabet) {
            if (c == good[i]) continue;
            std::string typo = good;
            typo[i] = c;
            CHECK_THROWS_AS(parse_map_key(typo), Error);
            ++tried;
        }
    }
    CHECK(tried == 36 * 31);
}

TEST_CASE("stage 2 orders the slot's columns by the password's key", "[keys]") {
    SecureBuffer k1(32), k2(32);
    for (std::size_t i = 0; i < 32; ++i) {
        k1.data()[i] = static_cast<std::uint8_t>(i);
        k2.data()[i] = static_cast<std::uint8_t>(i * 7 + 1);
    }
    auto o1 = stage2_order(2, 9, k1), again = stage2_order(2, 9, k1), o2 = stage2_order(2, 9, k2);
    CHECK(o1 == again);
    CHECK(o1 != o2);
    auto sorted = o1;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::uint32_t> expect;
    for (std::uint32_t c = 18; c < 27; ++c) expect.push_back(c);
    CHECK(sorted == expect);
}
