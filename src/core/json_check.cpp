#include "shamirfs/json_check.hpp"

#include <nlohmann/json.hpp>
#include <simdjson.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

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
// string buffer; wipe them. Only the parts this parse wrote: the buffers are
// sized for the capacity (9 bytes per input byte), and clearing all of that
// would cost more than the parse. The tape (simdjson's doc/tape.md): word 0 is
// the root, whose payload is the number of words written; a string word's
// payload is its offset in the string buffer, where a 4-byte length, the bytes
// and a NUL follow; numbers take a second word. Strings are appended in order.
// A parse that failed may not have written the root: then everything is wiped.
//
// The buffer sizes below are simdjson 3.0's own formulas (document::allocate in
// simdjson/dom/document-inl.h: tape words = ROUNDUP_N(capacity + 3, 64),
// string bytes = ROUNDUP_N(5 * capacity / 3 + SIMDJSON_PADDING, 64)). They are
// private: a different size would make this wipe write out of bounds, so the
// build stops on any other simdjson until someone has checked them.
static_assert(simdjson::SIMDJSON_VERSION_MAJOR == 3 && simdjson::SIMDJSON_VERSION_MINOR == 0,
              "simdjson is not 3.0.x: check that document::allocate still sizes the tape as "
              "ROUNDUP_N(capacity + 3, 64) words and the string buffer as "
              "ROUNDUP_N(5 * capacity / 3 + SIMDJSON_PADDING, 64) bytes (src/core/json_check.cpp, wipe), "
              "then widen this check");
void wipe(simdjson::dom::parser& parser, bool parsed) {
    auto& doc = parser.doc;
    if (doc.capacity() == 0 || !doc.tape) return;
    constexpr std::uint64_t kPayload = (std::uint64_t{1} << 56) - 1;
    const std::size_t tape_words = SIMDJSON_ROUNDUP_N(doc.capacity() + 3, 64);
    const std::size_t string_bytes = SIMDJSON_ROUNDUP_N(5 * doc.capacity() / 3 + simdjson::SIMDJSON_PADDING, 64);
    if (!parsed) {
        sodium_memzero(doc.tape.get(), tape_words * sizeof(std::uint64_t));
        if (doc.string_buf) sodium_memzero(doc.string_buf.get(), string_bytes);
        return;
    }
    const std::size_t words = std::min<std::size_t>(doc.tape[0] & kPayload, tape_words);
    std::size_t strings_end = 0;
    for (std::size_t i = 1; i < words; ++i) {
        const auto type = static_cast<char>(doc.tape[i] >> 56);
        if (type == 'l' || type == 'u' || type == 'd') {
            ++i;
        } else if (type == '"' && doc.string_buf) {
            const std::size_t off = doc.tape[i] & kPayload;
            std::uint32_t len;
            std::memcpy(&len, doc.string_buf.get() + off, sizeof(len));
            strings_end = off + sizeof(len) + len + 1;
        }
    }
    sodium_memzero(doc.tape.get(), words * sizeof(std::uint64_t));
    if (doc.string_buf) sodium_memzero(doc.string_buf.get(), std::min(strings_end, string_bytes));
}

// The padded copy simdjson needs (in locked memory too; none when the text
// can be read past its end) and the parser are kept for the next document,
// whichever thread checks it (a mount commits again and again, each time on a
// new thread): fresh ones would cost more in page faults than the parse. Both
// are wiped after every use. One pair is kept; a check while it is in use
// makes its own.
struct Checker {
    SecureBuffer padded;
    simdjson::dom::parser parser;
};
std::mutex g_kept_mutex;
std::unique_ptr<Checker> g_kept;
bool g_keep = true;

}  // namespace

void keep_json_parser(bool keep) {
    std::lock_guard lock(g_kept_mutex);
    g_keep = keep;
    if (!keep) g_kept.reset();
}

JsonVerdict check_json(std::string_view text, std::size_t readable_after) {
    {
        std::unique_ptr<Checker> c;
        {
            std::lock_guard lock(g_kept_mutex);
            c = std::move(g_kept);
        }
        if (!c) c = std::make_unique<Checker>();
        const bool in_place = readable_after >= simdjson::SIMDJSON_PADDING;
        if (!in_place && c->padded.size() < text.size() + simdjson::SIMDJSON_PADDING)
            c->padded = SecureBuffer(text.size() + simdjson::SIMDJSON_PADDING);
        if (!in_place && !text.empty()) std::memcpy(c->padded.data(), text.data(), text.size());
        const auto* input = in_place ? reinterpret_cast<const std::uint8_t*>(text.data()) : c->padded.data();
        bool ok = c->parser.parse(input, text.size(), false).error() == simdjson::SUCCESS;
        wipe(c->parser, ok);
        if (!in_place) sodium_memzero(c->padded.data(), text.size());
        {
            std::lock_guard lock(g_kept_mutex);
            if (!g_kept && g_keep) g_kept = std::move(c);
        }
        c.reset();  // not kept: freed here, on the checking thread
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
