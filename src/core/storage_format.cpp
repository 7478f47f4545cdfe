#include "shamirfs/storage_format.hpp"

#include <fcntl.h>
#include <simdjson.h>
#include <sodium.h>
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

namespace {

std::string mode_name(StorageMode m) { return m == StorageMode::deniable ? "deniable" : "shared"; }

std::string kdf_text(const KdfParams& k) {
    return "\"kdf\":{\"algorithm\":\"" + std::string(kKdfAlgorithm) + "\",\"ops\":" + std::to_string(k.ops) +
           ",\"mem\":" + std::to_string(k.mem) + ",\"salt\":\"" + base64::encode(k.salt) + "\"}";
}

// Format 2: the parameters, up to and including "capacity" (the text the
// check covers).
std::string params_text(const StorageParams& p, std::size_t capacity) {
    return "{\"shamirfs\":2,\"field\":\"" + std::string(kFieldName) + "\",\"threshold\":" + std::to_string(p.threshold) +
           ",\"shares\":" + std::to_string(p.shares) + ",\"pack\":" + std::to_string(p.pack) +
           ",\"slots\":" + std::to_string(p.slots) + ",\"chunk\":" + std::to_string(kChunkBytes) + ",\"mode\":\"" +
           mode_name(p.mode) + "\",\"growth\":" + std::to_string(p.growth) + ",\n" + kdf_text(p.kdf) +
           ",\n\"capacity\":" + std::to_string(capacity) + ",";
}

std::array<std::uint8_t, 16> check_of(std::string_view params) {
    std::array<std::uint8_t, 16> h{};
    crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(params.data()), params.size(), nullptr, 0);
    return h;
}

std::string hex(std::span<const std::uint8_t> b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (auto c : b) s += {digits[c >> 4], digits[c & 15]};
    return s;
}

}  // namespace

std::string storage_header(const StorageParams& p, std::size_t capacity) {
    if (p.version == 1)
        return "{\"shamirfs\":1,\"field\":\"" + std::string(kFieldName) + "\",\"threshold\":" + std::to_string(p.threshold) +
               ",\"shares\":" + std::to_string(p.shares) + ",\"slots\":" + std::to_string(p.slots) +
               ",\"chunk\":" + std::to_string(kChunkBytes) + ",\n" + kdf_text(p.kdf) + ",\n\"capacity\":" +
               std::to_string(capacity) + ",\n\"rows\":[\n";
    const std::string params = params_text(p, capacity);
    return params + "\"check\":\"" + hex(check_of(params)) + "\",\n\"columns\":[\n";
}

std::string storage_trailer(const StorageParams& p, std::size_t capacity) {
    if (p.version == 1) return "]}\n";
    const std::string params = params_text(p, capacity);
    const auto check = check_of(params);
    std::vector<std::uint8_t> copy(params.begin(), params.end());
    copy.insert(copy.end(), check.begin(), check.end());
    return "],\n\"copy\":\"" + base64::encode(copy) + "\"}\n";
}

namespace {

constexpr std::string_view kV1Start = "{\"shamirfs\":1,";
constexpr std::string_view kCheckKey = "\"check\":\"";
constexpr std::string_view kColumnsOpen = "\",\n\"columns\":[\n";
constexpr std::string_view kCopyKey = "\"copy\":\"";
constexpr std::string_view kTrailerEnd = "\"}\n";
constexpr std::size_t kHeaderWindow = std::size_t{1} << 16;  // a header is far shorter

struct Header2 {
    StorageParams params;
    std::size_t capacity = 0;
    bool primary_ok = false;
};

// Format 2's parameters from their text (which its check has confirmed):
// every field once, nothing else, and the text exactly as a writer makes it.
Header2 parse_params_text(std::string_view text, const KdfLimits& limits) {
    simdjson::padded_string json(std::string(text) + "\"columns\":0}");
    simdjson::ondemand::parser parser;
    auto doc = ok_or(parser.iterate(json), "header is not JSON");
    Header2 h;
    StorageParams& p = h.params;
    std::set<std::string, std::less<>> seen;
    for (auto field : ok_or(doc.get_object(), "the top level must be an object")) {
        std::string_view key = ok_or(field.unescaped_key(), "bad key");
        seen_once(seen, key, "the header");
        auto val = ok_or(field.value(), "bad value");
        if (key == "shamirfs") p.version = static_cast<unsigned>(get_uint(val, "shamirfs", 2, 2));
        else if (key == "field") {
            if (ok_or(val.get_string(), "\"field\" must be a string") != kFieldName) corrupt("unsupported field");
        } else if (key == "threshold") p.threshold = static_cast<unsigned>(get_uint(val, "threshold", 2, shamir::kMaxShares));
        else if (key == "shares") p.shares = static_cast<unsigned>(get_uint(val, "shares", 2, shamir::kMaxShares));
        else if (key == "pack") p.pack = static_cast<unsigned>(get_uint(val, "pack", 1, shamir::kMaxShares));
        else if (key == "slots") p.slots = static_cast<unsigned>(get_uint(val, "slots", 1, kMaxSlots));
        else if (key == "chunk") get_uint(val, "chunk", kChunkBytes, kChunkBytes);
        else if (key == "growth") p.growth = static_cast<unsigned>(get_uint(val, "growth", 1, 4));
        else if (key == "mode") {
            std::string_view m = ok_or(val.get_string(), "\"mode\" must be a string");
            if (m == "shared") p.mode = StorageMode::shared;
            else if (m == "deniable") p.mode = StorageMode::deniable;
            else corrupt("unknown mode \"" + std::string(m) + "\"");
        } else if (key == "kdf") p.kdf = parse_kdf(val);
        else if (key == "capacity") h.capacity = get_uint(val, "capacity", 1, kMaxCapacity);
        else if (key != "columns") corrupt("unknown key \"" + std::string(key) + "\"");
    }
    for (const char* req : {"shamirfs", "field", "threshold", "shares", "pack", "slots", "chunk", "mode", "growth", "kdf", "capacity"})
        if (!seen.count(req)) corrupt(std::string("missing key \"") + req + "\"");
    check_params(p, true);
    check_kdf(p.kdf, limits, Errc::corrupt);
    if (params_text(p, h.capacity) != text) corrupt("the header is not in the canonical form");
    return h;
}

// The header at the start of the file, if its check holds.
std::optional<Header2> primary_header(std::string_view head, const KdfLimits& limits) {
    const std::size_t at = head.substr(0, kHeaderWindow).find(kCheckKey);
    if (at == std::string_view::npos || head.size() < at + kCheckKey.size() + 32 + kColumnsOpen.size()) return std::nullopt;
    const std::string_view params = head.substr(0, at);
    if (head.substr(at + kCheckKey.size(), 32) != hex(check_of(params)) ||
        head.substr(at + kCheckKey.size() + 32, kColumnsOpen.size()) != kColumnsOpen)
        return std::nullopt;
    Header2 h = parse_params_text(params, limits);
    h.primary_ok = true;
    return h;
}

// The copy of the header at the end of the file, if its check holds.
std::optional<Header2> header_copy(std::string_view tail, const KdfLimits& limits) {
    if (tail.size() < kTrailerEnd.size() || tail.substr(tail.size() - kTrailerEnd.size()) != kTrailerEnd) return std::nullopt;
    const std::size_t at = tail.rfind(kCopyKey);
    if (at == std::string_view::npos) return std::nullopt;
    const std::string_view b64 = tail.substr(at + kCopyKey.size(), tail.size() - kTrailerEnd.size() - at - kCopyKey.size());
    const long n = base64::decoded_size(b64);
    if (n <= 16 || static_cast<std::size_t>(n) > kHeaderWindow) return std::nullopt;
    std::vector<std::uint8_t> copy(static_cast<std::size_t>(n));
    if (!base64::decode(b64, copy)) return std::nullopt;
    const std::string_view params(reinterpret_cast<const char*>(copy.data()), copy.size() - 16);
    if (!std::equal(copy.end() - 16, copy.end(), check_of(params).begin())) return std::nullopt;
    return parse_params_text(params, limits);
}

std::size_t storage_size(const StorageParams& p, std::size_t capacity) {
    return storage_header(p, capacity).size() + p.columns() * (capacity * kCellChars + 4) - 1 +
           storage_trailer(p, capacity).size();
}

std::optional<Header2> find_header2(std::string_view text, const KdfLimits& limits) {
    if (auto h = primary_header(text, limits)) return h;
    return header_copy(text.substr(text.size() - std::min(text.size(), kHeaderWindow)), limits);
}

// Format 2: the layout follows from the header; every byte between the cells
// is known, so damage there is set right in memory and noted (a commit or
// fsck --repair writes it back), and a damaged cell is an erasure for the
// readers. Only a header that is damaged in both copies, or a size that is
// not the header's, makes the file unreadable.
Matrix parse_storage2(BigBuffer text, const Header2& h) {
    const StorageParams& p = h.params;
    const std::size_t want = storage_size(p, h.capacity);
    if (text.size() != want)
        corrupt("the file has " + std::to_string(text.size()) + " bytes where its header says " + std::to_string(want) +
                " (truncated or extended)");
    std::vector<std::string> notes;
    const std::string head = storage_header(p, h.capacity), tail = storage_trailer(p, h.capacity);
    char* t = text.data();
    if (!h.primary_ok) {
        std::memcpy(t, head.data(), head.size());
        notes.push_back("the header is damaged; its copy at the end of the file is intact and was used");
    }
    // (Checked either way: an intact copy can still sit in damaged bytes.)
    if (std::string_view(t + want - tail.size(), tail.size()) != tail) {
        std::memcpy(t + want - tail.size(), tail.data(), tail.size());
        notes.push_back("the end of the file (the copy of the header) is damaged");
    }
    const std::size_t column_step = h.capacity * kCellChars + 4;
    std::size_t damaged = 0, first_damage = 0;
    auto expect = [&](std::size_t at, char c) {
        if (t[at] == c) return;
        if (damaged++ == 0) first_damage = at;
        t[at] = c;
    };
    for (unsigned i = 0; i < p.columns(); ++i) {
        const std::size_t at = head.size() + i * column_step, end = at + 1 + h.capacity * kCellChars;
        expect(at, '"');
        expect(end, '"');
        if (i + 1 < p.columns()) {
            expect(end + 1, ',');
            expect(end + 2, '\n');
        } else {
            expect(end + 1, '\n');
        }
    }
    if (damaged)
        notes.push_back(std::to_string(damaged) + " byte(s) between the cells are damaged (the first at offset " +
                        std::to_string(first_damage) + ")");
    Matrix m(p, h.capacity, std::move(text), head.size() + 1, kCellChars, column_step);
    m.load_notes = std::move(notes);
    return m;
}

}  // namespace

static_assert(kParsePadding == simdjson::SIMDJSON_PADDING);

Matrix parse_storage(std::string_view text, const KdfLimits& limits) {
    return parse_storage(BigBuffer(text.substr(0, std::min(text.size(), kMaxStorageBytes + 1)), kParsePadding), limits);
}

Matrix parse_storage(BigBuffer text, const KdfLimits& limits) {
    if (text.size() > kMaxStorageBytes) corrupt("larger than " + std::to_string(kMaxStorageBytes) + " bytes");
    if (!text.view().starts_with(kV1Start)) {
        if (auto h = find_header2(text.view(), limits)) return parse_storage2(std::move(text), *h);
        if (text.view().starts_with("{\"shamirfs\":2,"))
            corrupt("the header and its copy at the end of the file are both damaged");
    }
    // simdjson reads up to SIMDJSON_PADDING bytes past the end.
    if (text.capacity() < text.size() + kParsePadding) text = BigBuffer(text.view(), kParsePadding);
    simdjson::padded_string_view padded(text.data(), text.size(), text.capacity());
    simdjson::ondemand::parser parser(std::max<std::size_t>(text.size(), 64));
    auto doc = ok_or(parser.iterate(padded), "not JSON");
    auto obj = ok_or(doc.get_object(), "the top level must be an object");

    StorageParams p;
    p.version = 1;
    p.pack = 1;
    p.growth = 1;
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
            if (version != 1)
                corrupt("unsupported format version " + std::to_string(version) + " (this build reads versions 1 and 2)");
        } else if (key == "field") {
            if (ok_or(val.get_string(), "\"field\" must be a string") != kFieldName)
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

    // Rows at a fixed stride (always so in files shamirfs writes): the matrix
    // keeps this text. Otherwise the cells move into the canonical layout.
    const std::size_t stride = rows > 1 ? row_at[1] - row_at[0] : row_chars + 4;
    bool uniform = true;
    for (std::size_t r = 0; r < rows && uniform; ++r) uniform = row_at[r] == row_at[0] + r * stride;
    if (uniform) return Matrix(p, rows, std::move(text), row_at[0], stride, kCellChars);
    Matrix m(p, rows);
    const std::size_t first = storage_header(p, rows).size() + 1;
    for (std::size_t r = 0; r < rows; ++r) std::memcpy(m.mutable_text() + first + r * (row_chars + 4), text.data() + row_at[r], row_chars);
    return m;
}

std::optional<StorageParams> peek_storage_params(const std::string& path, const KdfLimits& limits) {
    std::string head(std::size_t{1} << 16, '\0');
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
    if (fd < 0) return std::nullopt;
    struct stat st{};
    ssize_t n = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? ::pread(fd, head.data(), head.size(), 0) : -1;
    ::close(fd);
    if (n <= 0) return std::nullopt;
    head.resize(static_cast<std::size_t>(n));
    if (!std::string_view(head).starts_with(kV1Start)) {
        try {
            if (auto h = primary_header(head, limits)) return h->params;
        } catch (const Error&) {
        }
        return std::nullopt;
    }
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

namespace {

void read_at(int fd, char* out, std::size_t length, std::size_t offset, const std::string& path, std::size_t& got) {
    got = 0;
    while (got < length) {
        ssize_t n = ::pread(fd, out + got, length - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot read storage " + path, errno);
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
}

}  // namespace

Matrix read_storage(int fd, const std::string& path, const KdfLimits& limits) {
    struct stat st{};
    if (::fstat(fd, &st) != 0) throw_errno("cannot read storage " + path, errno);
    if (!S_ISREG(st.st_mode)) throw Error(Errc::usage, path + " is not a regular file");
    const auto size = static_cast<std::size_t>(st.st_size);
    // The size a format 2 header states is checked before the whole file is
    // read, so a large foreign file costs no memory.
    std::size_t got = 0;
    std::string head(std::min(size, kHeaderWindow), '\0');
    read_at(fd, head.data(), head.size(), 0, path, got);
    head.resize(got);
    if (!std::string_view(head).starts_with(kV1Start)) {
        std::optional<Header2> h = primary_header(head, limits);
        if (!h) {
            std::string tail = head;
            if (size > head.size()) {
                tail.assign(std::min(size, kHeaderWindow), '\0');
                read_at(fd, tail.data(), tail.size(), size - tail.size(), path, got);
                tail.resize(got);
            }
            h = header_copy(tail, limits);
        }
        if (h && storage_size(h->params, h->capacity) != size)
            corrupt("the file has " + std::to_string(size) + " bytes where its header says " +
                    std::to_string(storage_size(h->params, h->capacity)) + " (truncated or extended)");
        if (!h && !std::string_view(head).starts_with("{"))
            corrupt("not a shamirfs storage (no header at its start, none at its end)");
    }
    // Up to one byte past the size limit, so a larger file is refused as such.
    const std::size_t want = std::min(size, kMaxStorageBytes) + 1;
    BigBuffer text(want + kParsePadding);
    read_at(fd, text.data(), want, 0, path, got);
    text.resize(got);
    return parse_storage(std::move(text), limits);
}

}  // namespace shamirfs
