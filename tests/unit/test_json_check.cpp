#include <catch2/catch.hpp>

#include "shamirfs/json_check.hpp"
#include <nlohmann/json.hpp>

#include <random>
#include <regex>

using namespace shamirfs;

TEST_CASE("valid JSON texts are accepted", "[json]") {
    std::string deep(5000, '[');
    deep += std::string(5000, ']');
    for (const std::string& s :
         {std::string("{}"), std::string("[]"), std::string("\"x\""), std::string("1"), std::string(" null \n"),
          std::string("{\"n\": 123456789012345678901234567890}"), std::string("{\"a\":1,\"a\":2}"), deep,
          std::string("{\n  \"k\": \"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x94\x91\"\n}\n")}) {
        INFO(s.substr(0, 40));
        CHECK(check_json(s).ok);
    }
}

TEST_CASE("invalid JSON is refused with line and column, without quoting it", "[json]") {
    struct Case {
        std::string text;
        std::size_t line, column;
    };
    // The position is the character where parsing failed: the end of input,
    // the '}' where a value should be, the 'a' that makes "tr..." no literal,
    // the byte that is not UTF-8.
    std::vector<Case> cases = {
        {"", 1, 1},
        {"{", 1, 2},
        {"{\n  \"a\": 1,\n  \"b\": }\n", 3, 8},
        {"{\"a\": 1} trailing", 1, 12},
        {"{\"secretword\": tru}", 1, 19},
        {"[1, 2,]", 1, 7},
        {"{\"a\": \"\xff\"}", 1, 8},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto v = check_json(c.text);
        CHECK_FALSE(v.ok);
        CHECK(v.line == c.line);
        CHECK(v.column == c.column);
        CHECK_THAT(v.message, Catch::StartsWith("line " + std::to_string(c.line) + ", column "));
        CHECK(v.message.find("secretword") == std::string::npos);
        CHECK(v.message.find("tru") == std::string::npos);
        CHECK(v.message.find("last read") == std::string::npos);
    }
}

namespace {
// nlohmann's verdict alone (the slow path).
bool slow_accepts(const std::string& s) { return nlohmann::json::accept(s.begin(), s.end()); }
}  // namespace

TEST_CASE("the fast path accepts valid JSON and only valid JSON", "[json]") {
    // Valid texts the fast path decides itself.
    std::vector<std::string> valid = {
        "{}", "[]", " \t\r\n[ ] ", "\"\"", "0", "-0", "-0.0e+0", "1E5", "12.5e-7", "true", "false", "null",
        "{\"a\":{\"b\":[1,{},[],\"\"]}}", "[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"]", "\"\\u00e9\\u00E9\"",
        "\"\\ud83d\\udd11\"", "\"\x7f\"", "\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x94\x91\"",
        "[1e299, 1e-300, 123456789012345678901234567890]", std::string("\"") + std::string(100, 'x') + "\\n\"",
        std::string(100000, '[') + std::string(100000, ']')};
    for (const auto& s : valid) {
        INFO(s.substr(0, 60));
        CHECK(json_fast_accepts(s));
        CHECK(slow_accepts(s));
        CHECK(check_json(s).ok);
    }
    // Valid texts the fast path leaves to the slow path, which accepts them.
    for (const std::string& s : std::vector<std::string>{"\xef\xbb\xbf{}", "1e305", "[0.5e-400]", std::string(301, '1')}) {
        INFO(s);
        CHECK_FALSE(json_fast_accepts(s));
        CHECK(check_json(s).ok);
    }
    // Invalid texts: neither path accepts them.
    std::vector<std::string> invalid = {
        "", " ", "{", "}", "[", "]", "[}", "{]", "{\"a\"}", "{\"a\" 1}", "{\"a\":}", "{1:2}", "{'a':1}", "{\"a\":1,}",
        "[1,]", "[,1]", "[1 2]", "[1,,2]", "{} {}", "[]]", "01", "-", "-a", "1.", ".5", "1.e3", "1e", "1e+", "+1",
        "0x10", "NaN", "Infinity", "-Infinity", "tru", "nul", "True", "nulll", "\"abc", "\"\\\"", "\"\\x\"", "\"\\u12\"",
        "\"\\u12g4\"", "\"\\udc00\"", "\"\\ud800\"", "\"\\ud800x\"", "\"\\ud800\\u0041\"", "\"\\ud800\\ud800\"",
        std::string("\"\x01\""), std::string("\"a\nb\""), std::string("\"\t\""), std::string("\"\0\"", 3), "\"\xff\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe6\x97\"",
        "[\xc3\xa9]", "/* c */ {}", "{} // c", "1e400", "[-1e99999]", std::string(400, '9'), "\xef\xbb{}"};
    for (const auto& s : invalid) {
        INFO(s.substr(0, 60));
        CHECK_FALSE(json_fast_accepts(s));
        CHECK_FALSE(slow_accepts(s));
        CHECK_FALSE(check_json(s).ok);
    }
    // nlohmann takes a NUL byte for the end of its input and accepts what
    // comes before; it is not JSON, and check_json says where it is.
    for (const std::string s : {std::string("[1]\0", 4), std::string("{}\n\0{\"more\": 1}", 15)}) {
        INFO(s);
        CHECK_FALSE(json_fast_accepts(s));
        const JsonVerdict v = check_json(s);
        CHECK_FALSE(v.ok);
        CHECK(v.line == (s[2] == '\n' ? 2 : 1));
        CHECK(v.column == (s[2] == '\n' ? 1 : 4));
    }
}

TEST_CASE("the fast path agrees with nlohmann on mutated texts", "[json]") {
    // Random edits of a text that uses every construct: the fast path may only
    // say "no" where nlohmann says "yes" for what it leaves to the slow path
    // (a byte order mark, exponents of three or more digits, 300-digit runs).
    const std::string seed =
        "{\"k\": [true, false, null, -0.5e+3, 10, \"s\\u00e9\\ud83d\\udd11\\n\", \"\xe6\x97\xa5\"], \"o\": {}, \"a\": []}";
    const std::string alphabet = std::string("{}[]\":,.-+0123456789eEtrufalsn\\u \n\t\x7f\xc3\xa9\xed\xa0\x01", 42);
    const std::regex left_to_slow("\xef\xbb\xbf|[eE][+-]?[0-9]{3,}|[0-9]{300,}");
    std::mt19937 rng(2026);
    int agreed = 0, accepted = 0;
    for (int i = 0; i < 40000; ++i) {
        std::string s = seed;
        for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) {
            const std::size_t at = rng() % (s.size() + 1);
            const char c = alphabet[rng() % alphabet.size()];
            switch (rng() % 3) {
            case 0: s.insert(at, 1, c); break;
            case 1: if (at < s.size()) s.erase(at, 1); break;
            default: if (at < s.size()) s[at] = c;
            }
        }
        const bool fast = json_fast_accepts(s), slow = slow_accepts(s);
        INFO(s);
        REQUIRE((!fast || slow));
        if (fast == slow) ++agreed;
        else REQUIRE(std::regex_search(s, left_to_slow));
        accepted += slow;
    }
    CHECK(agreed > 39000);
    CHECK(accepted > 1000);  // the edits leave valid texts too, so both verdicts were compared
}
