// Validation of a document before it is committed: any JSON text (RFC 8259,
// UTF-8). The fast path is a validator that builds and copies nothing; what it
// does not accept (invalid JSON, and a few valid texts it leaves alone: a byte
// order mark, numbers near a double's range) nlohmann's SAX parser decides,
// and reports the line and column of the first error.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace shamirfs {

struct JsonVerdict {
    bool ok = true;
    std::size_t line = 0, column = 0;  // 1-based, of the first error
    std::string message;               // "line L, column C: <reason>"; never quotes the text
};

JsonVerdict check_json(std::string_view text);

// The fast path alone (for tests and the fuzzer): true only for valid JSON.
bool json_fast_accepts(std::string_view text);

}  // namespace shamirfs
