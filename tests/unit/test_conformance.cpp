// A second, independent reader of the format, written from man/shamirfs.5
// only: nlohmann for the file, GMP mpz for GF(p), libsodium and zstd called
// directly. It opens the published test vectors (tests/data/vector-v1.json
// and vector-v2.json).
// With SHAMIRFS_PRINT_VECTOR=1 it prints the intermediate values that the man
// page lists.
#include <gmp.h>
#include <sodium.h>
#include <zstd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "helpers.hpp"

namespace {

using Bytes = std::vector<unsigned char>;

std::string hex(const Bytes& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s += d[c >> 4];
        s += d[c & 15];
    }
    return s;
}

Bytes b64(const std::string& s) {
    Bytes out(s.size());
    std::size_t len = 0;
    REQUIRE(sodium_base642bin(out.data(), out.size(), s.c_str(), s.size(), nullptr, &len, nullptr,
                              sodium_base64_VARIANT_ORIGINAL) == 0);
    out.resize(len);
    return out;
}

Bytes blake2b(std::size_t outlen, const Bytes& msg, const Bytes& key = {}) {
    Bytes out(outlen);
    crypto_generichash(out.data(), outlen, msg.data(), msg.size(), key.empty() ? nullptr : key.data(), key.size());
    return out;
}

Bytes be32(std::uint32_t v) { return {Bytes::value_type(v >> 24), Bytes::value_type(v >> 16), Bytes::value_type(v >> 8), Bytes::value_type(v)}; }

Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

Bytes str(const std::string& s) { return Bytes(s.begin(), s.end()); }

struct Mpz {
    mpz_t v;
    Mpz() { mpz_init(v); }
    ~Mpz() { mpz_clear(v); }
};

}  // namespace

namespace {

// The partition map key of a key file: "sfk1-", base32 (RFC 4648, lower
// case), dashes ignored; 22 bytes: slot, key secret, checksum.
struct Key {
    std::uint32_t slot;
    Bytes secret;
};
Key read_key(const std::string& path) {
    std::string key = testutil::read_file(path);
    key = key.substr(5, key.find('\n') - 5);
    key.erase(std::remove(key.begin(), key.end(), '-'), key.end());
    REQUIRE(key.size() == 36);
    Bytes payload;
    unsigned acc = 0, bits = 0;
    for (char c : key) {
        acc = (acc << 5) | static_cast<unsigned>(std::string("abcdefghijklmnopqrstuvwxyz234567").find(c));
        bits += 5;
        if (bits >= 8) {
            payload.push_back(static_cast<unsigned char>(acc >> (bits - 8)));
            bits -= 8;
        }
    }
    REQUIRE(payload.size() == 22);
    const Bytes expect_check = blake2b(16, cat({str("shamirfs-key-v1"), Bytes(payload.begin(), payload.begin() + 18)}));
    CHECK(Bytes(payload.begin() + 18, payload.end()) == Bytes(expect_check.begin(), expect_check.begin() + 4));
    return {static_cast<std::uint32_t>((payload[0] << 8) | payload[1]), Bytes(payload.begin() + 2, payload.begin() + 18)};
}

// KDF: per-partition salt, Argon2id, sub-keys (BLAKE2b keyed by the master
// key, salt = id as 8 bytes little-endian + 8 zero bytes, personal = "shamirfs"
// + 8 zero bytes); stage 2: the slot's columns ordered by BLAKE2b-128(order
// key, column as u32 BE).
struct Derived {
    Bytes salt, master, header_key, body_key, order_key;
    std::vector<std::pair<Bytes, std::uint32_t>> order;
};
Derived derive(const nlohmann::json& file, const Key& key, const std::string& password, unsigned n) {
    Derived d;
    d.salt = blake2b(16, cat({str("shamirfs-salt-v1"), b64(file["kdf"]["salt"]), be32(key.slot), key.secret}));
    d.master.resize(32);
    REQUIRE(crypto_pwhash(d.master.data(), 32, password.data(), password.size(), d.salt.data(), file["kdf"]["ops"],
                          file["kdf"]["mem"], crypto_pwhash_ALG_ARGON2ID13) == 0);
    auto subkey = [&](unsigned char id) {
        unsigned char s[16] = {id}, personal[16] = {'s', 'h', 'a', 'm', 'i', 'r', 'f', 's'};
        Bytes out(32);
        crypto_generichash_blake2b_salt_personal(out.data(), 32, nullptr, 0, d.master.data(), 32, s, personal);
        return out;
    };
    d.header_key = subkey(1);
    d.body_key = subkey(2);
    d.order_key = subkey(3);
    for (std::uint32_t c = key.slot * n; c < key.slot * n + n; ++c) d.order.push_back({blake2b(16, be32(c), d.order_key), c});
    std::sort(d.order.begin(), d.order.end());
    return d;
}

void print_derived(const Key& key, const Derived& d) {
    std::cout << "slot " << key.slot << "\nkey secret " << hex(key.secret) << "\npartition salt " << hex(d.salt)
              << "\nmaster " << hex(d.master) << "\nheader key " << hex(d.header_key) << "\nbody key "
              << hex(d.body_key) << "\norder key " << hex(d.order_key) << "\norder";
    for (auto& o : d.order) std::cout << " " << o.second;
}

// Solves the t x t Vandermonde system V c = y mod p (V[i][m] = x_i^m).
std::vector<Bytes> coefficients_low512(const std::vector<unsigned long>& xs, const std::vector<Bytes>& cells, const Mpz& p) {
    const std::size_t t = xs.size();
    std::vector<std::vector<Mpz>> a(t);
    for (std::size_t i = 0; i < t; ++i) {
        a[i] = std::vector<Mpz>(t + 1);
        for (std::size_t m = 0; m < t; ++m) {
            mpz_ui_pow_ui(a[i][m].v, xs[i], m);
            mpz_mod(a[i][m].v, a[i][m].v, p.v);
        }
        mpz_import(a[i][t].v, cells[i].size(), 1, 1, 1, 0, cells[i].data());
    }
    for (std::size_t c = 0; c < t; ++c) {  // Gauss-Jordan
        std::size_t piv = c;
        while (mpz_sgn(a[piv][c].v) == 0) ++piv;
        std::swap(a[piv], a[c]);
        Mpz inv;
        REQUIRE(mpz_invert(inv.v, a[c][c].v, p.v) != 0);
        for (std::size_t k = 0; k <= t; ++k) {
            mpz_mul(a[c][k].v, a[c][k].v, inv.v);
            mpz_mod(a[c][k].v, a[c][k].v, p.v);
        }
        for (std::size_t i = 0; i < t; ++i) {
            if (i == c) continue;
            Mpz f;
            mpz_set(f.v, a[i][c].v);
            for (std::size_t k = 0; k <= t; ++k) {
                Mpz prod;
                mpz_mul(prod.v, f.v, a[c][k].v);
                mpz_sub(a[i][k].v, a[i][k].v, prod.v);
                mpz_mod(a[i][k].v, a[i][k].v, p.v);
            }
        }
    }
    std::vector<Bytes> out;
    for (std::size_t m = 0; m < t; ++m) {
        Mpz low;
        mpz_tdiv_r_2exp(low.v, a[m][t].v, 512);  // the chunk: the low 512 bits
        Bytes raw(64), chunk(64);
        std::size_t count = 0;
        mpz_export(raw.data(), &count, 1, 1, 1, 0, low.v);
        std::copy(raw.begin(), raw.begin() + static_cast<long>(count), chunk.begin() + static_cast<long>(64 - count));
        out.push_back(chunk);
    }
    return out;
}

// The sealed header of a blob: nonce (24 bytes), then `size` bytes sealed
// with XChaCha20-Poly1305 under the header key, associated data `ad`.
Bytes open_sealed_header(const Bytes& blob, const Bytes& header_key, std::size_t size, const std::string& ad) {
    Bytes header(size);
    REQUIRE(crypto_aead_xchacha20poly1305_ietf_decrypt(header.data(), nullptr, nullptr, blob.data() + 24, size + 16,
                                                       reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
                                                       blob.data(), header_key.data()) == 0);
    return header;
}

std::uint64_t le64(const Bytes& b, std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
    return v;
}

}  // namespace

TEST_CASE("an independent reader built from man/shamirfs.5 opens the test vector", "[conformance]") {
    REQUIRE(sodium_init() >= 0);
    const std::string dir = SHAMIRFS_TEST_DATA;
    auto file = nlohmann::json::parse(testutil::read_file(dir + "/vector-v1.json"));
    const std::string password = "vector password";
    const std::string expected_document = "{\"v\":1}";
    const unsigned t = file["threshold"], n = file["shares"];
    REQUIRE(file["shamirfs"] == 1);
    REQUIRE(file["chunk"] == 64);

    const Key key = read_key(dir + "/vector-v1.a.key");
    const Derived d = derive(file, key, password, n);
    const auto& [slot, secret] = key;
    const auto& [salt, master, header_key, body_key, order_key, order] = d;

    // Each row: interpolate the first t ordered columns at 0 (x = column + 1).
    Mpz p;
    mpz_ui_pow_ui(p.v, 2, 521);
    mpz_sub_ui(p.v, p.v, 1);
    Bytes blob;
    for (const auto& row : file["rows"]) {
        std::string text = row;
        Mpz sum;
        for (unsigned i = 0; i < t; ++i) {
            std::uint32_t col = order[i].second;
            Bytes cell = b64(text.substr(col * 88, 88));
            REQUIRE(cell.size() == 66);
            Mpz y, num, den, tmp;
            mpz_import(y.v, 66, 1, 1, 1, 0, cell.data());
            REQUIRE(mpz_cmp(y.v, p.v) < 0);
            mpz_set_ui(num.v, 1);
            mpz_set_ui(den.v, 1);
            for (unsigned j = 0; j < t; ++j) {
                if (j == i) continue;
                mpz_mul_ui(num.v, num.v, order[j].second + 1);
                mpz_set_si(tmp.v, static_cast<long>(order[j].second) - static_cast<long>(col));
                mpz_mul(den.v, den.v, tmp.v);
            }
            mpz_mod(den.v, den.v, p.v);
            REQUIRE(mpz_invert(den.v, den.v, p.v) != 0);
            mpz_mul(y.v, y.v, num.v);
            mpz_mul(y.v, y.v, den.v);
            mpz_add(sum.v, sum.v, y.v);
        }
        mpz_mod(sum.v, sum.v, p.v);
        REQUIRE(mpz_sizeinbase(sum.v, 2) <= 512);
        Bytes chunk(64);
        std::size_t count = 0;
        Bytes raw(64);
        mpz_export(raw.data(), &count, 1, 1, 1, 0, sum.v);
        std::copy(raw.begin(), raw.begin() + static_cast<long>(count), chunk.begin() + static_cast<long>(64 - count));
        blob.insert(blob.end(), chunk.begin(), chunk.end());
    }

    // The sealed document: nonce, sealed header, sealed zstd frame.
    const Bytes header = open_sealed_header(blob, header_key, 20, "shamirfs/v1/header");
    CHECK(header[0] == 1);
    CHECK(header[1] == 1);
    const std::uint64_t clen = le64(header, 4), dlen = le64(header, 12);
    REQUIRE(60 + clen + 16 <= blob.size());
    Bytes compressed(clen);
    REQUIRE(crypto_aead_xchacha20poly1305_ietf_decrypt(compressed.data(), nullptr, nullptr, blob.data() + 60, clen + 16,
                                                       header.data(), 20, blob.data(), body_key.data()) == 0);
    std::string document(dlen, '\0');
    REQUIRE(ZSTD_decompress(document.data(), dlen, compressed.data(), clen) == dlen);
    CHECK(document == expected_document);

    // The intermediate values published in man/shamirfs.5, TEST VECTOR.
    CHECK(slot == 1);
    CHECK(hex(salt) == "5c496a194ec9bf27ab7020b3335e95ae");
    CHECK(hex(header_key) == "bb2e802a834404967aa6a3e83651de18948aca6ea433b37901fd64cb88f7ad37");
    CHECK(hex(body_key) == "b3090c616b7f4fcb4f28c8f82e495a79393999c355d1641c147a8f38e14ab8fb");
    CHECK(hex(order_key) == "7df43079b5e19847fa4b4816b55ceb5815bfdeed0df007f1741a11aa193cce92");
    CHECK((order[0].second == 5 && order[1].second == 3 && order[2].second == 4));
    CHECK(hex(Bytes(blob.begin(), blob.begin() + 64)) ==
          "c4aa45d511b4ec31d22818ec631801c93c59d5490330267b382f38ac5d1000ef"
          "816d0ac3cad544066aca4d17ce1b0013c27f0f3bdf3194860fbc6d16c35412fe");
    CHECK(hex(header) == "0101000010000000000000000700000000000000");

    if (std::getenv("SHAMIRFS_PRINT_VECTOR")) {
        print_derived(key, d);
        std::cout << "\nrow 0 chunk " << hex(Bytes(blob.begin(), blob.begin() + 64)) << "\nheader " << hex(header)
                  << "\n";
    }
}


TEST_CASE("an independent reader built from man/shamirfs.5 opens the format 2 test vector", "[conformance]") {
    REQUIRE(sodium_init() >= 0);
    const std::string dir = SHAMIRFS_TEST_DATA;
    const std::string text = testutil::read_file(dir + "/vector-v2.json");
    auto file = nlohmann::json::parse(text);
    REQUIRE(file["shamirfs"] == 2);
    const unsigned t = file["threshold"], n = file["shares"], slots = file["slots"], pack = file["pack"];
    const std::size_t capacity = file["capacity"];

    // The header check: BLAKE2b-128 of the text before "check", in hex; the
    // copy at the end: base64 of that text followed by the check's 16 bytes.
    const std::string params = text.substr(0, text.find("\"check\":\""));
    const Bytes check = blake2b(16, str(params));
    CHECK(file["check"] == hex(check));
    CHECK(b64(file["copy"]) == cat({str(params), check}));

    const Key key = read_key(dir + "/vector-v2.a.key");
    const Derived d = derive(file, key, "vector password", n);
    const auto& [slot, secret] = key;
    const auto& [salt, master, header_key, body_key, order_key, order] = d;

    // Cell (r, c) is the r-th 88 characters of column string (c mod n) * slots + c / n.
    Mpz p;
    mpz_ui_pow_ui(p.v, 2, 521);
    mpz_sub_ui(p.v, p.v, 1);
    std::vector<unsigned long> xs;
    for (unsigned i = 0; i < t; ++i) xs.push_back(order[i].second + 1);
    Bytes blob;
    for (std::size_t r = 0; r < capacity; ++r) {
        std::vector<Bytes> cells;
        for (unsigned i = 0; i < t; ++i) {
            const std::uint32_t c = order[i].second;
            const std::string column = file["columns"][(c % n) * slots + c / n];
            cells.push_back(b64(column.substr(r * 88, 88)));
        }
        auto chunks = coefficients_low512(xs, cells, p);
        for (unsigned j = 0; j < pack; ++j) blob.insert(blob.end(), chunks[j].begin(), chunks[j].end());
    }

    // The sealed document: nonce, sealed 112-byte header, sealed document and draft.
    const Bytes header = open_sealed_header(blob, header_key, 112, "shamirfs/v2/header");
    CHECK(header[0] == 2);
    CHECK(header[1] == 1);
    const std::uint64_t clen = le64(header, 8), dlen = le64(header, 16), draft_clen = le64(header, 24);
    CHECK(header[2] == 0);  // no draft
    CHECK(draft_clen == 0);
    CHECK(le64(header, 40) == 1);  // one commit since create
    CHECK(std::string(header.begin() + 56, header.begin() + 56 + header[4]) == "a");
    Bytes compressed(clen);
    REQUIRE(crypto_aead_xchacha20poly1305_ietf_decrypt(compressed.data(), nullptr, nullptr, blob.data() + 152, clen + 16,
                                                       header.data(), 112, blob.data(), body_key.data()) == 0);
    std::string document(dlen, '\0');
    REQUIRE(ZSTD_decompress(document.data(), dlen, compressed.data(), clen) == dlen);
    CHECK(document == "{\"v\":2}");

    // The intermediate values published in man/shamirfs.5, TEST VECTOR.
    CHECK(slot == 1);
    CHECK(hex(salt) == "55c60ac3440c2e5c986edd0e94e8c1ff");
    CHECK(hex(header_key) == "0dcff311e70bff8e12d17b6263ca1725ce0854a579e6c139cc3044f38361cb15");
    CHECK(hex(body_key) == "3717a1c25c2ab0f8de4365183fa02d1d162ec18b87736cc23d6d7e6c99e3ea2f");
    CHECK(hex(order_key) == "840bd16291063324ceaf51e5cde52ceb15f975adb8b48a6d649fec318b8bcb50");
    CHECK((order[0].second == 3 && order[1].second == 4 && order[2].second == 5));
    CHECK(hex(check) == "3516ac8989a370af49043301182100dd");
    CHECK(hex(Bytes(blob.begin(), blob.begin() + 128)) ==
          "6332f59212adc5ea29f0f71bc56d61ddaefe77ad5bbb4476bbe5e1cebda65bc96c156102f41667c392cbb3c63c297ace"
          "208719a804d6e48ca57a42a29ca93d4dcba2561b6ec1206aab50df0a1c38b329d5760cd6ee413ab3cf597268d3b75251"
          "132dbf86f53fcdc9256d47cdf8ec19f2752ab3e532fdfc875f67d874eed48692");
    CHECK(hex(header) ==
          "020100000100000010000000000000000700000000000000000000000000000000000000000000000100000000000000"
          "93e90e6b0000000061000000000000000000000000000000000000000000000000000000000000000000000000000000"
          "00000000000000000000000000000000");

    if (std::getenv("SHAMIRFS_PRINT_VECTOR")) {
        print_derived(key, d);
        std::cout << "\ncheck " << hex(check) << "\nrow 0 chunks " << hex(Bytes(blob.begin(), blob.begin() + 128))
                  << "\nheader " << hex(header) << "\n";
    }
}
