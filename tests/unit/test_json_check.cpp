#include <catch2/catch.hpp>

#include "shamirfs/json_check.hpp"
#include "shamirfs/secure_buffer.hpp"

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

TEST_CASE("a text checked where it lies, in a large buffer, gets the verdict of a copied one", "[json]") {
    // A large SecureBuffer can be read 64 bytes past its end (zeros), so the
    // check parses it without copying; the text ends at the buffer's end, at
    // every distance from a page boundary around 64.
    for (const std::string text : {std::string("{\"a\": [1, 2, {\"b\": null}]}\n"), std::string("{\"a\": [1, 2,]}"),
                                   std::string("{\"a\": \"x"), std::string("[\"\\u00e9\", 1e5, true]")}) {
        for (std::size_t pad : {0, 1, 63, 64, 65, 4000, 4031, 4032, 4033, 4095}) {
            const std::string whole = std::string((std::size_t{1} << 20) + pad, ' ') + text;
            SecureBuffer buf(whole.data(), whole.size());
            INFO(text << " after " << whole.size() - text.size() << " spaces");
            REQUIRE(buf.readable_after() >= SecureBuffer::kReadPadding);
            for (std::size_t i = 0; i < SecureBuffer::kReadPadding; ++i) REQUIRE(buf.data()[buf.size() + i] == 0);
            const JsonVerdict in_place = check_json(buf.view(), buf.readable_after()), copied = check_json(whole);
            CHECK(in_place.ok == copied.ok);
            CHECK(in_place.line == copied.line);
            CHECK(in_place.column == copied.column);
            CHECK(in_place.ok == (text.find(",]") == std::string::npos && text.find("\"x") == std::string::npos));
        }
    }
}
