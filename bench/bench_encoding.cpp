// Compares encodings of the cells (values < 2^521 - 1) as JSON text, for the
// expansion factor (scripts/bench, man/shamirfs.5 "Size and expansion"):
// characters per cell, and encode / decode-and-check speed over ROWS rows of
// COLUMNS random cells. Prints one JSON object per encoding.
#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "shamirfs/base64.hpp"
#include "shamirfs/gf521.hpp"
#include "shamirfs/rng.hpp"

using namespace shamirfs;
using Row = std::vector<gf::Fe>;

namespace {

// Z85 (ZeroMQ's base85): no '"' or '\', so it needs no escaping in JSON. 66
// bytes are padded to 68 (a multiple of 4) -> 85 characters.
const char kZ85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

void z85_encode(const std::uint8_t* in, std::size_t n, std::string& out) {
    for (std::size_t i = 0; i < n; i += 4) {
        std::uint32_t v = (std::uint32_t{in[i]} << 24) | (std::uint32_t{in[i + 1]} << 16) | (std::uint32_t{in[i + 2]} << 8) | in[i + 3];
        char c[5];
        for (int k = 4; k >= 0; --k, v /= 85) c[k] = kZ85[v % 85];
        out.append(c, 5);
    }
}

bool z85_decode(const char* s, std::size_t chars, std::uint8_t* out) {
    static const auto table = [] {
        std::array<int, 256> t{};
        t.fill(-1);
        for (int i = 0; i < 85; ++i) t[static_cast<unsigned char>(kZ85[i])] = i;
        return t;
    }();
    for (std::size_t i = 0; i < chars; i += 5) {
        std::uint64_t v = 0;
        for (int k = 0; k < 5; ++k) {
            int d = table[static_cast<unsigned char>(s[i + k])];
            if (d < 0) return false;
            v = v * 85 + static_cast<unsigned>(d);
        }
        if (v > 0xffffffffu) return false;
        for (int k = 0; k < 4; ++k) out[i / 5 * 4 + k] = static_cast<std::uint8_t>(v >> (24 - 8 * k));
    }
    return true;
}

struct Encoding {
    const char* name;
    std::function<void(const Row&, std::string&)> encode;  // appends one row's text
    std::function<bool(const std::string&, std::size_t columns)> decode;  // every cell back, checked < p
};

std::vector<Encoding> encodings() {
    std::vector<Encoding> e;
    e.push_back({"base64 per cell (format 1)",
                 [](const Row& row, std::string& out) {
                     for (const auto& v : row) {
                         std::uint8_t b[gf::kBytes];
                         gf::to_bytes(v, b);
                         out += base64::encode(b);
                     }
                 },
                 [](const std::string& text, std::size_t) {
                     std::uint8_t b[gf::kBytes];
                     gf::Fe v;
                     for (std::size_t off = 0; off < text.size(); off += 88)
                         if (!base64::decode(std::string_view(text).substr(off, 88), b) || !gf::from_bytes(b, v)) return false;
                     return true;
                 }});
    e.push_back({"hex per cell",
                 [](const Row& row, std::string& out) {
                     for (const auto& v : row) {
                         std::uint8_t b[gf::kBytes];
                         char hex[2 * gf::kBytes + 1];
                         gf::to_bytes(v, b);
                         sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));
                         out.append(hex + 1, 2 * gf::kBytes - 1);  // the top nibble is always 0
                     }
                 },
                 [](const std::string& text, std::size_t) {
                     std::uint8_t b[gf::kBytes];
                     gf::Fe v;
                     for (std::size_t off = 0; off < text.size(); off += 131) {
                         std::string h = "0" + text.substr(off, 131);
                         if (sodium_hex2bin(b, sizeof(b), h.data(), h.size(), nullptr, nullptr, nullptr) != 0 || !gf::from_bytes(b, v))
                             return false;
                     }
                     return true;
                 }});
    e.push_back({"decimal per cell (the seeds' integers)",
                 [](const Row& row, std::string& out) {
                     for (const auto& v : row) {
                         std::string d = gf::to_decimal(v);
                         out += std::string(157 - d.size(), '0') + d;  // fixed width, as cells are
                     }
                 },
                 [](const std::string& text, std::size_t) {
                     for (std::size_t off = 0; off < text.size(); off += 157) {
                         std::string d = text.substr(off, 157);
                         d.erase(0, std::min(d.find_first_not_of('0'), d.size() - 1));
                         gf::from_decimal(d);  // throws if >= p
                     }
                     return true;
                 }});
    e.push_back({"Z85 per cell",
                 [](const Row& row, std::string& out) {
                     for (const auto& v : row) {
                         std::uint8_t b[68] = {};
                         gf::to_bytes(v, std::span<std::uint8_t, gf::kBytes>(b + 2, gf::kBytes));
                         z85_encode(b, 68, out);
                     }
                 },
                 [](const std::string& text, std::size_t) {
                     std::uint8_t b[68];
                     gf::Fe v;
                     for (std::size_t off = 0; off < text.size(); off += 85)
                         if (!z85_decode(text.data() + off, 85, b) || b[0] || b[1] ||
                             !gf::from_bytes(std::span<const std::uint8_t, gf::kBytes>(b + 2, gf::kBytes), v))
                             return false;
                     return true;
                 }});
    e.push_back({"base64 of the row's 521-bit values packed",
                 [](const Row& row, std::string& out) {
                     std::vector<std::uint8_t> bits((row.size() * 521 + 7) / 8 + 1);
                     std::size_t at = 0;
                     for (const auto& v : row)
                         for (std::size_t i = 0; i < 521; ++i, ++at)
                             if ((v.limb[i / 64] >> (i % 64)) & 1) bits[at / 8] |= static_cast<std::uint8_t>(1u << (at % 8));
                     bits.resize((row.size() * 521 + 7) / 8);
                     out += base64::encode(bits);
                 },
                 [](const std::string& text, std::size_t columns) {
                     const std::size_t row_bytes = (columns * 521 + 7) / 8;
                     const std::size_t row_chars = base64::encoded_size(row_bytes);
                     std::vector<std::uint8_t> bits(row_bytes);
                     for (std::size_t off = 0; off < text.size(); off += row_chars) {
                         if (!base64::decode(std::string_view(text).substr(off, row_chars), bits)) return false;
                         for (std::size_t c = 0, at = 0; c < columns; ++c) {
                             gf::Fe v;
                             for (std::size_t i = 0; i < 521; ++i, ++at)
                                 if ((bits[at / 8] >> (at % 8)) & 1) v.limb[i / 64] |= std::uint64_t{1} << (i % 64);
                             std::uint8_t b[gf::kBytes];
                             gf::to_bytes(v, b);
                             if (!gf::from_bytes(b, v)) return false;
                         }
                     }
                     return true;
                 }});
    return e;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t rows = argc > 1 ? std::stoul(argv[1]) : 4096, columns = argc > 2 ? std::stoul(argv[2]) : 27;
    Rng rng;
    std::vector<Row> matrix(rows, Row(columns));
    for (auto& row : matrix)
        for (auto& v : row) v = rng.field_element();
    using Clock = std::chrono::steady_clock;
    std::printf("[\n");
    auto list = encodings();
    for (std::size_t k = 0; k < list.size(); ++k) {
        const auto& e = list[k];
        std::string text;
        auto t0 = Clock::now();
        for (const auto& row : matrix) e.encode(row, text);
        double enc = std::chrono::duration<double>(Clock::now() - t0).count();
        t0 = Clock::now();
        bool ok = e.decode(text, columns);
        double dec = std::chrono::duration<double>(Clock::now() - t0).count();
        const double cells = static_cast<double>(rows * columns);
        std::printf("{\"encoding\": \"%s\", \"chars_per_cell\": %.2f, \"vs_binary\": %.3f, \"encode_ns_per_cell\": %.0f, "
                    "\"decode_ns_per_cell\": %.0f, \"round_trip\": %s}%s\n",
                    e.name, static_cast<double>(text.size()) / cells, static_cast<double>(text.size()) / cells / (521.0 / 8),
                    enc / cells * 1e9, dec / cells * 1e9, ok ? "true" : "false", k + 1 < list.size() ? "," : "");
    }
    std::printf("]\n");
    return 0;
}
