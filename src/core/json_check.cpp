#include "shamirfs/json_check.hpp"

#include <nlohmann/json.hpp>
#include <simdjson.h>
#include <sodium.h>

#include <cstring>

#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {
namespace {

// A SAX consumer that builds nothing: nlohmann's parser is iterative, so any
// nesting depth is fine, and it only needs to tell where the first error is.
struct NullSax {
    std::size_t error_position = 0;  // characters read, the offending one included
    std::string error_reason;

    bool null() { return true; }
    bool boolean(bool) { return true; }
    bool number_integer(nlohmann::json::number_integer_t) { return true; }
    bool number_unsigned(nlohmann::json::number_unsigned_t) { return true; }
    bool number_float(nlohmann::json::number_float_t, const std::string&) { return true; }
    bool string(std::string&) { return true; }
    bool binary(nlohmann::json::binary_t&) { return true; }
    bool start_object(std::size_t) { return true; }
    bool key(std::string&) { return true; }
    bool end_object() { return true; }
    bool start_array(std::size_t) { return true; }
    bool end_array() { return true; }
    bool parse_error(std::size_t position, const std::string&, const nlohmann::json::exception& ex) {
        error_position = position;
        error_reason = ex.what();
        return false;
    }
};

// nlohmann's message quotes the last token read ("last read: '...'"), which is
// document text: keep only the reason around it.
std::string redact(std::string msg) {
    auto colon = msg.find(": ");
    if (colon != std::string::npos && msg.rfind("[json.exception", 0) == 0) msg.erase(0, colon + 2);
    auto lr = msg.find("; last read: '");
    if (lr != std::string::npos) {
        auto end = msg.rfind('\'');
        msg = msg.substr(0, lr) + (end != std::string::npos && end > lr + 13 ? msg.substr(end + 1) : "");
    }
    return msg;
}

// simdjson keeps copies of the document's strings and numbers in its tape and
// string buffer; wipe them (sizes as document::allocate in simdjson 3.0.1).
void wipe(simdjson::dom::parser& parser) {
    std::size_t cap = parser.doc.capacity();
    if (cap == 0) return;
    if (parser.doc.string_buf)
        sodium_memzero(parser.doc.string_buf.get(), SIMDJSON_ROUNDUP_N(5 * cap / 3 + simdjson::SIMDJSON_PADDING, 64));
    if (parser.doc.tape) sodium_memzero(parser.doc.tape.get(), SIMDJSON_ROUNDUP_N(cap + 3, 64) * sizeof(std::uint64_t));
}

}  // namespace

JsonVerdict check_json(std::string_view text) {
    {
        // The padded copy simdjson needs lives in locked memory too.
        SecureBuffer padded(text.size() + simdjson::SIMDJSON_PADDING);
        if (!text.empty()) std::memcpy(padded.data(), text.data(), text.size());
        simdjson::dom::parser parser;
        bool ok = parser.parse(padded.data(), text.size(), false).error() == simdjson::SUCCESS;
        wipe(parser);
        if (ok) return {};
    }
    // simdjson refuses some valid JSON (integers beyond 64 bits, deep nesting):
    // nlohmann decides, and says where the first error is.
    NullSax sax;
    if (nlohmann::json::sax_parse(text.begin(), text.end(), &sax)) return {};
    JsonVerdict v;
    v.ok = false;
    // Point at the character where parsing failed (the end of input counts as one).
    std::size_t pos = std::min(sax.error_position, text.size() + 1);
    std::size_t consumed = pos > 0 ? pos - 1 : 0;
    v.line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < consumed; ++i)
        if (text[i] == '\n') {
            ++v.line;
            line_start = i + 1;
        }
    v.column = consumed - line_start + 1;
    v.message = "line " + std::to_string(v.line) + ", column " + std::to_string(v.column) + ": " + redact(sax.error_reason);
    return v;
}

}  // namespace shamirfs
