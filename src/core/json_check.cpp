#include "shamirfs/json_check.hpp"

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace shamirfs {
namespace {

// The fast path: a validator that builds nothing and copies nothing (no
// document text lands in any buffer of its own, so there is nothing to wipe),
// one pass over the text with a stack of one byte per open container. UTF-8
// is checked over the whole text first (simdjson's, at many GB/s); outside
// strings every byte >= 0x80 is then a grammar error anyway.
//
// It must never accept what the slow path refuses. Where the two could differ
// it says "no" and lets the slow path decide: a byte order mark, and numbers
// whose magnitude could be outside a double's range (nlohmann refuses those
// as overflow). A "no" costs only time.
enum : std::uint8_t { kOther = 0, kWs = 1, kDigit = 2 };
constexpr std::array<std::uint8_t, 256> kClass = [] {
    std::array<std::uint8_t, 256> c{};
    for (unsigned char ch : {' ', '\t', '\n', '\r'}) c[ch] = kWs;
    for (int ch = '0'; ch <= '9'; ++ch) c[ch] = kDigit;
    return c;
}();

class Validator {
public:
    explicit Validator(std::string_view text)
        : p_(reinterpret_cast<const unsigned char*>(text.data())), end_(p_ + text.size()) {}

    bool run() {
        std::vector<std::uint8_t> open;  // 1: an object, 0: an array
        skip_ws();
    value:
        if (p_ == end_) return false;
        switch (*p_) {
        case '{':
        case '[': {
            const bool object = *p_++ == '{';
            skip_ws();
            if (p_ != end_ && *p_ == (object ? '}' : ']')) {
                ++p_;
                goto after_value;
            }
            open.push_back(object);
            if (object) goto key;
            goto value;
        }
        case '"':
            if (!string()) return false;
            goto after_value;
        case 't':
            if (!literal("true")) return false;
            goto after_value;
        case 'f':
            if (!literal("false")) return false;
            goto after_value;
        case 'n':
            if (!literal("null")) return false;
            goto after_value;
        default:
            if (!number()) return false;
            goto after_value;
        }
    key:
        if (p_ == end_ || *p_ != '"' || !string()) return false;
        skip_ws();
        if (p_ == end_ || *p_ != ':') return false;
        ++p_;
        skip_ws();
        goto value;
    after_value:
        skip_ws();
        if (open.empty()) return p_ == end_;
        if (p_ == end_) return false;
        if (*p_ == ',') {
            ++p_;
            skip_ws();
            if (open.back()) goto key;
            goto value;
        }
        if (*p_ != (open.back() ? '}' : ']')) return false;
        ++p_;
        open.pop_back();
        goto after_value;
    }

private:
    const unsigned char* p_;
    const unsigned char* const end_;

    void skip_ws() {
        while (p_ != end_ && kClass[*p_] == kWs) ++p_;
    }

    bool literal(std::string_view word) {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
            return false;
        p_ += word.size();
        return true;
    }

    std::size_t digits() {
        const unsigned char* start = p_;
        while (p_ != end_ && kClass[*p_] == kDigit) ++p_;
        return static_cast<std::size_t>(p_ - start);
    }

    bool number() {
        if (*p_ == '-') ++p_;
        if (p_ == end_ || kClass[*p_] != kDigit) return false;
        // A leading zero stands alone: a digit after it is a grammar error
        // where the value ends.
        const std::size_t int_digits = *p_ == '0' ? (++p_, 1) : digits();
        if (p_ != end_ && *p_ == '.') {
            ++p_;
            if (digits() == 0) return false;
        }
        long exponent = 0;
        if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
            ++p_;
            bool negative = false;
            if (p_ != end_ && (*p_ == '+' || *p_ == '-')) negative = *p_++ == '-';
            if (p_ == end_ || kClass[*p_] != kDigit) return false;
            for (; p_ != end_ && kClass[*p_] == kDigit; ++p_)
                if (exponent < 100000) exponent = exponent * 10 + (*p_ - '0');
            if (negative) exponent = -exponent;
        }
        // Under 10^300 and over 10^-300 a double holds it (nlohmann refuses an
        // overflow); beyond, the slow path decides.
        return static_cast<long>(int_digits) + exponent <= 300 && exponent >= -300;
    }

    static int hex(unsigned char c) {
        if (c >= '0' && c <= '9') return c - '0';
        c |= 0x20;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    }

    // The four hex digits of a \u escape at p_; -1 when they are not.
    long hex4() {
        if (end_ - p_ < 4) return -1;
        long v = 0;
        for (int i = 0; i < 4; ++i) {
            int h = hex(p_[i]);
            if (h < 0) return -1;
            v = v * 16 + h;
        }
        p_ += 4;
        return v;
    }

    // The first '"', '\\' or control character at or after p_, or end_.
    const unsigned char* special(const unsigned char* q) const {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1f);
        for (; end_ - q >= 16; q += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
            const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                             _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
            if (const int mask = _mm_movemask_epi8(hit)) return q + __builtin_ctz(static_cast<unsigned>(mask));
        }
#endif
        while (q != end_ && *q != '"' && *q != '\\' && *q >= 0x20) ++q;
        return q;
    }

    bool string() {
        ++p_;  // the opening quote
        for (;;) {
            p_ = special(p_);
            if (p_ == end_ || *p_ < 0x20) return false;
            if (*p_++ == '"') return true;
            if (p_ == end_) return false;
            switch (*p_++) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                break;
            case 'u': {
                const long cp = hex4();
                if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff)) return false;  // a low surrogate alone
                if (cp >= 0xd800 && cp <= 0xdbff) {  // a high surrogate: its low one must follow
                    if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
                    p_ += 2;
                    const long low = hex4();
                    if (low < 0xdc00 || low > 0xdfff) return false;
                }
                break;
            }
            default:
                return false;
            }
        }
    }
};

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

}  // namespace

bool json_fast_accepts(std::string_view text) {
    return simdjson::validate_utf8(text.data(), text.size()) && Validator(text).run();
}

JsonVerdict check_json(std::string_view text) {
    if (json_fast_accepts(text)) return {};
    // nlohmann decides what the fast path did not accept, and says where the
    // first error is.
    NullSax sax;
    if (nlohmann::json::sax_parse(text.begin(), text.end(), &sax)) {
        // nlohmann takes a NUL byte for the end of its input (inside a string
        // it refuses one): what it accepted ended before a NUL that is not JSON.
        const auto nul = text.find('\0');
        if (nul == std::string_view::npos) return {};
        sax.error_position = nul + 1;
        sax.error_reason = "syntax error - unexpected NUL byte; expected end of input";
    }
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
