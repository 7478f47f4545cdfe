#include "shamirfs/storage_format.hpp"

#include <simdjson.h>

#include <array>
#include <cstring>
#include <set>
#include <string>

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

// Every cell must be 88 base64 characters of a value < p. The first byte of
// the 66-byte big-endian value is 0 or 1, so the text starts with 'A' and a
// character of value < 32 ('A'..'Z', 'a'..'f'); and it is not the text of p.
void check_cells(const std::string& cells, std::size_t columns) {
    static const std::string p_text = [] {
        std::array<std::uint8_t, gf::kBytes> b{};
        b[0] = 1;
        for (std::size_t i = 1; i < b.size(); ++i) b[i] = 0xff;
        return base64::encode(b);
    }();
    static const auto valid = [] {
        std::array<bool, 256> t{};
        for (char c : std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
            t[static_cast<unsigned char>(c)] = true;
        return t;
    }();
    for (std::size_t off = 0; off < cells.size(); off += kCellChars) {
        const char* c = cells.data() + off;
        bool good = c[0] == 'A' && ((c[1] >= 'A' && c[1] <= 'Z') || (c[1] >= 'a' && c[1] <= 'f'));
        for (std::size_t i = 2; good && i < kCellChars; ++i) good = valid[static_cast<unsigned char>(c[i])];
        if (good && c[1] == 'f') good = std::memcmp(c, p_text.data(), kCellChars) != 0;
        if (!good) {
            std::size_t cell = off / kCellChars;
            corrupt("cell (row " + std::to_string(cell / columns) + ", column " + std::to_string(cell % columns) +
                    ") is not a base64 value < 2^521-1");
        }
    }
}

}  // namespace

Matrix parse_storage(std::string_view text, const KdfLimits& limits) {
    if (text.size() > kMaxStorageBytes) corrupt("larger than " + std::to_string(kMaxStorageBytes) + " bytes");
    simdjson::padded_string padded(text);
    simdjson::ondemand::parser parser(std::max<std::size_t>(padded.size(), 64));
    auto doc = ok_or(parser.iterate(padded), "not JSON");
    auto obj = ok_or(doc.get_object(), "the top level must be an object");

    StorageParams p;
    std::uint64_t version = 0, capacity = 0;
    std::string cells;
    cells.reserve(text.size());  // the cells are most of the text: no regrowth
    std::size_t rows = 0, row_chars = 0;
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
                std::string_view row = ok_or(item.get_string(), "every row must be a string");
                if (rows == 0) row_chars = row.size();
                if (row.size() != row_chars || row_chars == 0 || row_chars % kCellChars != 0)
                    corrupt("row " + std::to_string(rows) + " has a wrong length");
                if (++rows > kMaxCapacity) corrupt("more rows than the capacity limit");
                cells.append(row);
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
    if (rows != capacity) corrupt("\"capacity\" is " + std::to_string(capacity) + " but there are " + std::to_string(rows) + " rows");
    if (row_chars != std::size_t{p.columns()} * kCellChars)
        corrupt("rows hold " + std::to_string(row_chars / kCellChars) + " cells, expected slots x shares = " +
                std::to_string(p.columns()));
    check_cells(cells, p.columns());
    return Matrix(p, rows, std::move(cells));
}

Matrix load_storage(const std::string& path, const KdfLimits& limits) {
    std::string text;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) throw_errno("cannot open storage " + path, errno);
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        text.append(buf, n);
        if (text.size() > kMaxStorageBytes) {
            std::fclose(f);
            corrupt("larger than " + std::to_string(kMaxStorageBytes) + " bytes");
        }
    }
    int err = std::ferror(f) ? errno : 0;
    std::fclose(f);
    if (err) throw_errno("cannot read storage " + path, err);
    return parse_storage(text, limits);
}

std::string serialize_storage(const Matrix& m) {
    const auto& p = m.params();
    std::string head = "{\"shamirfs\":" + std::to_string(kFormatVersion) + ",\"field\":\"" + std::string(kField) +
                       "\",\"threshold\":" + std::to_string(p.threshold) + ",\"shares\":" + std::to_string(p.shares) +
                       ",\"slots\":" + std::to_string(p.slots) + ",\"chunk\":" + std::to_string(kChunkBytes) +
                       ",\n\"kdf\":{\"algorithm\":\"" + std::string(kKdfAlgorithm) + "\",\"ops\":" +
                       std::to_string(p.kdf.ops) + ",\"mem\":" + std::to_string(p.kdf.mem) + ",\"salt\":\"" +
                       base64::encode(p.kdf.salt) + "\"},\n\"capacity\":" + std::to_string(m.capacity()) +
                       ",\n\"rows\":[\n";
    std::string out;
    std::size_t row_chars = std::size_t{m.columns()} * kCellChars;
    out.reserve(head.size() + m.capacity() * (row_chars + 4) + 8);
    out += head;
    for (std::size_t r = 0; r < m.capacity(); ++r) {
        out += '"';
        out += m.row_text(r);
        out += r + 1 < m.capacity() ? "\",\n" : "\"\n";
    }
    out += "]}\n";
    return out;
}

}  // namespace shamirfs
