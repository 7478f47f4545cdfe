#include "shamirfs/storage_format.hpp"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "shamirfs/base64.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/shamir.hpp"

namespace shamirfs {
namespace {

constexpr std::string_view kField = "2^521-1";
constexpr std::string_view kKdfAlgorithm = "argon2id13";
constexpr std::uint64_t kChunkBytes = 64;

[[noreturn]] void corrupt(const std::string& why) { throw Error(Errc::corrupt, "invalid storage file: " + why); }

template <typename T>
T ok_or(simdjson::simdjson_result<T> r, const std::string& what) {
    T v;
    auto err = std::move(r).get(v);
    if (err) corrupt(what + " (" + simdjson::error_message(err) + ")");
    return v;
}

std::uint64_t get_uint(simdjson::ondemand::value v, const char* name, std::uint64_t lo, std::uint64_t hi) {
    std::uint64_t x = ok_or(v.get_uint64(), std::string("\"") + name + "\" must be an unsigned integer");
    if (x < lo || x > hi)
        corrupt(std::string("\"") + name + "\" = " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
    return x;
}

void seen_once(std::set<std::string, std::less<>>& seen, std::string_view key, const char* where) {
    if (!seen.emplace(key).second) corrupt(std::string("duplicate key \"") + std::string(key) + "\" in " + where);
}

KdfParams parse_kdf(simdjson::ondemand::value v) {
    auto obj = ok_or(v.get_object(), "\"kdf\" must be an object");
    KdfParams k;
    std::set<std::string, std::less<>> seen;
    for (auto field : obj) {
        std::string_view key = ok_or(field.unescaped_key(), "bad key in \"kdf\"");
        seen_once(seen, key, "\"kdf\"");
        auto val = ok_or(field.value(), "bad value in \"kdf\"");
        if (key == "algorithm") {
            if (ok_or(val.get_string(), "\"kdf.algorithm\" must be a string") != kKdfAlgorithm)
                corrupt("unsupported KDF algorithm (expected \"argon2id13\")");
        } else if (key == "ops") {
            k.ops = get_uint(val, "kdf.ops", 0, UINT64_MAX);
        } else if (key == "mem") {
            k.mem = get_uint(val, "kdf.mem", 0, UINT64_MAX);
        } else if (key == "salt") {
            std::string_view s = ok_or(val.get_string(), "\"kdf.salt\" must be a string");
            if (!base64::decode(s, k.salt)) corrupt("\"kdf.salt\" must be 16 bytes in base64");
        } else {
            corrupt("unknown key \"" + std::string(key) + "\" in \"kdf\"");
        }
    }
    for (const char* req : {"algorithm", "ops", "mem", "salt"})
        if (!seen.count(req)) corrupt(std::string("missing key \"kdf.") + req + "\"");
    return k;
}

// True if every character is in the standard base64 alphabet: 16 characters
// a step with GCC/Clang vector extensions (SSE2, NEON, or plain code), so the
// 78 MB of a large storage take ~8 ms in every build type.
bool all_base64(const char* s, std::size_t n) {
    using V = unsigned char __attribute__((vector_size(16)));
    V bad = {};
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        V c;
        std::memcpy(&c, s + i, 16);
        V ok = (V)((V)(c - 'A') < 26) | (V)((V)(c - 'a') < 26) | (V)((V)(c - '0') < 10) | (V)(c == '+') | (V)(c == '/');
        bad |= ~ok;
    }
    unsigned char any = 0;
    for (int k = 0; k < 16; ++k) any |= bad[k];
    for (; i < n; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        const bool ok = static_cast<unsigned char>(c - 'A') < 26 || static_cast<unsigned char>(c - 'a') < 26 ||
                        static_cast<unsigned char>(c - '0') < 10 || c == '+' || c == '/';
        any |= ok ? 0 : 1;
    }
    return any == 0;
}

// Every cell must be 88 base64 characters of a value < p. The first byte of
// the 66-byte big-endian value is 0 or 1, so the text starts with 'A' and a
// character of value < 32 ('A'..'Z', 'a'..'f'); and it is not the text of p.
void check_row(const char* row, std::size_t r, unsigned columns) {
    static const std::string p_text = [] {
        std::array<std::uint8_t, gf::kBytes> b{};
        b[0] = 1;
        for (std::size_t i = 1; i < b.size(); ++i) b[i] = 0xff;
        return base64::encode(b);
    }();
    auto prefix_ok = [](const char* cell) {
        return cell[0] == 'A' && ((cell[1] >= 'A' && cell[1] <= 'Z') || (cell[1] >= 'a' && cell[1] <= 'f')) &&
               !(cell[1] == 'f' && std::memcmp(cell, p_text.data(), kCellChars) == 0);
    };
    bool good = all_base64(row, std::size_t{columns} * kCellChars);
    for (unsigned c = 0; good && c < columns; ++c) good = prefix_ok(row + std::size_t{c} * kCellChars);
    if (good) return;
    unsigned c = 0;  // name the first bad cell
    while (c < columns && all_base64(row + std::size_t{c} * kCellChars, kCellChars) && prefix_ok(row + std::size_t{c} * kCellChars)) ++c;
    corrupt("cell (row " + std::to_string(r) + ", column " + std::to_string(c) + ") is not a base64 value < 2^521-1");
}

// A row of the "rows" array: a JSON string token (with the whitespace after
// it, as simdjson hands it out). Its content is checked to be base64 later, so
// it holds no escapes and its characters are the cells.
std::string_view row_content(simdjson::ondemand::value item) {
    std::string_view tok = item.raw_json_token();
    while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\n' || tok.back() == '\r' || tok.back() == '\t'))
        tok.remove_suffix(1);
    if (tok.size() < 2 || tok.front() != '"' || tok.back() != '"') corrupt("every row must be a string");
    return tok.substr(1, tok.size() - 2);
}

}  // namespace

std::string storage_header(const StorageParams& p, std::size_t capacity) {
    return "{\"shamirfs\":" + std::to_string(kFormatVersion) + ",\"field\":\"" + std::string(kField) +
           "\",\"threshold\":" + std::to_string(p.threshold) + ",\"shares\":" + std::to_string(p.shares) +
           ",\"slots\":" + std::to_string(p.slots) + ",\"chunk\":" + std::to_string(kChunkBytes) +
           ",\n\"kdf\":{\"algorithm\":\"" + std::string(kKdfAlgorithm) + "\",\"ops\":" + std::to_string(p.kdf.ops) +
           ",\"mem\":" + std::to_string(p.kdf.mem) + ",\"salt\":\"" + base64::encode(p.kdf.salt) +
           "\"},\n\"capacity\":" + std::to_string(capacity) + ",\n\"rows\":[\n";
}

static_assert(kParsePadding == simdjson::SIMDJSON_PADDING);

Matrix parse_storage(std::string_view text, const KdfLimits& limits) {
    return parse_storage(BigBuffer(text.substr(0, std::min(text.size(), kMaxStorageBytes + 1)), kParsePadding), limits);
}

Matrix parse_storage(BigBuffer text, const KdfLimits& limits) {
    if (text.size() > kMaxStorageBytes) corrupt("larger than " + std::to_string(kMaxStorageBytes) + " bytes");
    // simdjson reads up to SIMDJSON_PADDING bytes past the end.
    if (text.capacity() < text.size() + kParsePadding) text = BigBuffer(text.view(), kParsePadding);
    simdjson::padded_string_view padded(text.data(), text.size(), text.capacity());
    simdjson::ondemand::parser parser(std::max<std::size_t>(text.size(), 64));
    auto doc = ok_or(parser.iterate(padded), "not JSON");
    auto obj = ok_or(doc.get_object(), "the top level must be an object");

    StorageParams p;
    std::uint64_t version = 0, capacity = 0;
    std::vector<std::size_t> row_at;  // offset of each row's content in `text`
    std::size_t row_chars = 0;
    std::set<std::string, std::less<>> seen;
    for (auto field : obj) {
        std::string_view key = ok_or(field.unescaped_key(), "bad key");
        seen_once(seen, key, "the top level");
        auto val = ok_or(field.value(), "bad value");
        if (key == "shamirfs") {
            version = get_uint(val, "shamirfs", 0, UINT64_MAX);
            if (version != kFormatVersion)
                corrupt("unsupported format version " + std::to_string(version) + " (this build reads version " +
                        std::to_string(kFormatVersion) + ")");
        } else if (key == "field") {
            if (ok_or(val.get_string(), "\"field\" must be a string") != kField)
                corrupt("unsupported field (expected \"2^521-1\")");
        } else if (key == "threshold") {
            p.threshold = static_cast<unsigned>(get_uint(val, "threshold", 2, shamir::kMaxShares));
        } else if (key == "shares") {
            p.shares = static_cast<unsigned>(get_uint(val, "shares", 2, shamir::kMaxShares));
        } else if (key == "slots") {
            p.slots = static_cast<unsigned>(get_uint(val, "slots", 1, kMaxSlots));
        } else if (key == "chunk") {
            get_uint(val, "chunk", kChunkBytes, kChunkBytes);
        } else if (key == "kdf") {
            p.kdf = parse_kdf(val);
        } else if (key == "capacity") {
            capacity = get_uint(val, "capacity", 1, kMaxCapacity);
        } else if (key == "rows") {
            auto arr = ok_or(val.get_array(), "\"rows\" must be an array");
            for (auto item : arr) {
                std::string_view row = row_content(ok_or(std::move(item), "bad row"));
                if (row_at.empty()) row_chars = row.size();
                if (row.size() != row_chars || row_chars == 0 || row_chars % kCellChars != 0)
                    corrupt("row " + std::to_string(row_at.size()) + " has a wrong length");
                if (row_at.size() >= kMaxCapacity) corrupt("more rows than the capacity limit");
                row_at.push_back(static_cast<std::size_t>(row.data() - text.data()));
            }
        } else {
            corrupt("unknown key \"" + std::string(key) + "\"");
        }
    }
    if (doc.current_location().error() == simdjson::SUCCESS) corrupt("trailing content after the storage object");
    for (const char* req : {"shamirfs", "field", "threshold", "shares", "slots", "chunk", "kdf", "capacity", "rows"})
        if (!seen.count(req)) corrupt(std::string("missing key \"") + req + "\"");
    check_params(p, true);
    check_kdf(p.kdf, limits, Errc::corrupt);
    const std::size_t rows = row_at.size();
    if (rows != capacity) corrupt("\"capacity\" is " + std::to_string(capacity) + " but there are " + std::to_string(rows) + " rows");
    if (row_chars != std::size_t{p.columns()} * kCellChars)
        corrupt("rows hold " + std::to_string(row_chars / kCellChars) + " cells, expected slots x shares = " +
                std::to_string(p.columns()));
    for (std::size_t r = 0; r < rows; ++r) check_row(text.data() + row_at[r], r, p.columns());

    // Rows at a fixed stride (always so in files shamirfs writes): the matrix
    // keeps this text. Otherwise the cells move into the canonical layout.
    const std::size_t stride = rows > 1 ? row_at[1] - row_at[0] : row_chars + 4;
    bool uniform = true;
    for (std::size_t r = 0; r < rows && uniform; ++r) uniform = row_at[r] == row_at[0] + r * stride;
    if (uniform) return Matrix(p, rows, std::move(text), row_at[0], stride);
    Matrix m(p, rows);
    for (std::size_t r = 0; r < rows; ++r)
        std::memcpy(const_cast<char*>(m.row_text(r).data()), text.data() + row_at[r], row_chars);
    return m;
}

std::optional<StorageParams> peek_storage_params(const std::string& path, const KdfLimits& limits) {
    std::string head(std::size_t{1} << 16, '\0');
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    ssize_t n = ::pread(fd, head.data(), head.size(), 0);
    ::close(fd);
    if (n <= 0) return std::nullopt;
    head.resize(static_cast<std::size_t>(n));
    const std::size_t rows = head.find("\"rows\"");
    if (rows == std::string::npos) return std::nullopt;
    try {
        simdjson::padded_string text(head.substr(0, rows) + "\"rows\":0}");
        simdjson::ondemand::parser parser;
        auto doc = ok_or(parser.iterate(text), "not JSON");
        StorageParams p;
        bool kdf = false, slots = false;
        for (auto field : ok_or(doc.get_object(), "not an object")) {
            std::string_view key = ok_or(field.unescaped_key(), "bad key");
            auto val = ok_or(field.value(), "bad value");
            if (key == "kdf") kdf = (p.kdf = parse_kdf(val), true);
            else if (key == "slots") slots = (p.slots = static_cast<unsigned>(get_uint(val, "slots", 1, kMaxSlots)), true);
        }
        if (!kdf || !slots) return std::nullopt;
        check_kdf(p.kdf, limits, Errc::corrupt);
        return p;
    } catch (const Error&) {
        return std::nullopt;
    }
}

Matrix read_storage(int fd, const std::string& path, const KdfLimits& limits) {
    struct stat st{};
    if (::fstat(fd, &st) != 0) throw_errno("cannot read storage " + path, errno);
    // Up to one byte past the size limit, so a larger file is refused as such.
    const std::size_t want = std::min(static_cast<std::size_t>(st.st_size), kMaxStorageBytes) + 1;
    BigBuffer text(want + kParsePadding);
    std::size_t used = 0;
    while (used < want) {
        ssize_t n = ::pread(fd, text.data() + used, want - used, static_cast<off_t>(used));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot read storage " + path, errno);
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    text.resize(used);
    return parse_storage(std::move(text), limits);
}

}  // namespace shamirfs
