#include <catch2/catch.hpp>

#include "shamirfs/json_check.hpp"

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
