// Validation of a document before it is committed: any JSON text (RFC 8259,
// UTF-8). Fast path simdjson; the slow path (only when simdjson refuses, e.g.
// numbers beyond 64 bits) decides with nlohmann's SAX parser and reports the
// line and column of the first error.
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

// `readable_after`: bytes that can be read past the text's end; with 64 or
// more (a large SecureBuffer's) the text is parsed where it is, not copied.
JsonVerdict check_json(std::string_view text, std::size_t readable_after = 0);

// Whether the parser's buffers are kept for the next check (the default: a
// mount checks again and again). A command that checks once frees them as
// soon as it is done, on the checking thread, instead of at its exit.
void keep_json_parser(bool keep);

}  // namespace shamirfs
