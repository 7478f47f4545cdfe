#include <catch2/catch.hpp>
#include <regex>

#include "helpers.hpp"
#include <sodium.h>

#include "shamirfs/base64.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/storage_format.hpp"

using namespace shamirfs;

namespace {
std::string small_storage(unsigned capacity = 2, unsigned version = 1) {
    StorageParams p;
    p.version = version;
    p.pack = version == 1 ? 1 : 2;
    p.growth = version == 1 ? 1 : 4;
    p.threshold = 2;
    p.shares = 3;
    p.slots = 2;
    p.kdf.ops = 2;
    p.kdf.mem = 64ull << 20;
    Rng rng;
    Matrix m(p, 0);
    m.grow(capacity, rng);
    return std::string(m.file_text());
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    return s.replace(pos, from.size(), to);
}

// A row's cells (format 1 keeps them side by side in one JSON string).
std::string row_text(const Matrix& m, std::size_t r) {
    std::string out;
    for (unsigned c = 0; c < m.columns(); ++c) out += m.cell_text(r, c);
    return out;
}

void expect_corrupt(const std::string& text, const std::string& why, const KdfLimits& limits = production_kdf_limits()) {
    try {
        parse_storage(text, limits);
        FAIL("accepted; expected: " << why);
    } catch (const Error& e) {
        INFO(e.what());
        CHECK(e.code() == Errc::corrupt);
        CHECK_THAT(e.what(), Catch::Contains(why));
    }
}
}  // namespace

TEST_CASE("a storage serialises and parses back identically", "[format]") {
    std::string text = small_storage(4);
    Matrix m = parse_storage(text, production_kdf_limits());
    CHECK(m.capacity() == 4);
    CHECK(m.params().threshold == 2);
    CHECK(m.params().shares == 3);
    CHECK(m.params().slots == 2);
    CHECK(m.columns() == 6);
    CHECK(std::string(m.file_text()) == text);
    for (std::size_t r = 0; r < 4; ++r)
        for (unsigned c = 0; c < 6; ++c) CHECK_NOTHROW(m.get(r, c));
}

TEST_CASE("the reader refuses invalid storage files with a clear error", "[format]") {
    const std::string good = small_storage();
    REQUIRE_NOTHROW(parse_storage(good, production_kdf_limits()));
    std::string cell0 = good.substr(good.find("\"rows\":[\n\"") + 10, 88);
    std::string p_text = "Af" + std::string(86, '/');  // base64 of 2^521 - 1
    std::string salt = good.substr(good.find("\"salt\":\"") + 8, 24);

    expect_corrupt("", "not JSON");
    expect_corrupt("[1,2]", "top level must be an object");
    expect_corrupt("\"storage\"", "top level must be an object");
    expect_corrupt(good + "{}", "trailing content");
    expect_corrupt(good + "x", "");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":\"2\""), "\"threshold\" must be an unsigned integer");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":2.0"), "\"threshold\" must be an unsigned integer");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":-2"), "\"threshold\" must be an unsigned integer");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":1e400"), "\"threshold\"");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":99999999999999999999999999"), "\"threshold\"");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":1"), "outside [2, 64]");
    expect_corrupt(replace(good, "\"shares\":3", "\"shares\":1"), "\"shares\"");
    expect_corrupt(replace(good, "\"threshold\":2", "\"threshold\":4"), "shares per row must be at least the threshold");
    expect_corrupt(replace(good, "\"slots\":2", "\"slots\":0"), "\"slots\"");
    expect_corrupt(replace(good, "\"shamirfs\":1", "\"shamirfs\":3"), "unsupported format version 3");
    expect_corrupt(replace(good, "\"shamirfs\":1", "\"shamirfs\":1,\"shamirfs\":1"), "duplicate key \"shamirfs\"");
    expect_corrupt(replace(good, "\"chunk\":64", "\"chunk\":64,\"label_a\":\"x\""), "unknown key \"label_a\"");
    expect_corrupt(replace(good, "\"chunk\":64,", ""), "missing key \"chunk\"");
    expect_corrupt(replace(good, "\"chunk\":64", "\"chunk\":32"), "\"chunk\"");
    expect_corrupt(replace(good, "2^521-1", "2^127-1"), "unsupported field");
    expect_corrupt(replace(good, "\"ops\":2", "\"ops\":1"), "KDF ops 1 outside");
    expect_corrupt(replace(good, "\"mem\":67108864", "\"mem\":8192"), "KDF memory 8192 bytes outside");
    expect_corrupt(replace(good, "\"mem\":67108864", "\"mem\":99999999999999"), "KDF memory");
    expect_corrupt(replace(good, "argon2id13", "scrypt"), "unsupported KDF algorithm");
    expect_corrupt(replace(good, "\"salt\":\"" + salt, "\"salt\":\"AAAA"), "\"kdf.salt\" must be 16 bytes");
    expect_corrupt(replace(good, "\"salt\":", "\"pepper\":1,\"salt\":"), "unknown key \"pepper\" in \"kdf\"");
    expect_corrupt(replace(good, "\"capacity\":2", "\"capacity\":3"), "\"capacity\" is 3 but there are 2 rows");
    expect_corrupt(replace(good, "\"capacity\":2", "\"capacity\":0"), "\"capacity\"");
    // A cell that is not a value is no structural error: the readers take it
    // as an erasure (decoded around, reported by fsck).
    for (const std::string& bad : {p_text, "Ag" + cell0.substr(2), "B" + cell0.substr(1), cell0.substr(0, 87) + "*"}) {
        Matrix m = parse_storage(replace(good, cell0, bad), production_kdf_limits());
        gf::Fe v;
        CHECK_FALSE(m.try_get(0, 0, v));
        CHECK(m.try_get(0, 1, v));
    }
    expect_corrupt(replace(good, cell0, cell0.substr(0, 80)), "has a wrong length");
    expect_corrupt(replace(good, "\"rows\":[\n\"", "\"rows\":[\n7,\""), "every row must be a string");
    expect_corrupt(replace(good, "\"rows\":[", "\"rows\":{\"a\":["), "");
    // Rows of a number of cells other than slots x shares.
    expect_corrupt(replace(good, "\"slots\":2", "\"slots\":3"), "expected slots x shares = 9");
}

TEST_CASE("base64 encoding agrees with libsodium's for every length and decodes back", "[format]") {
    Rng rng;
    // (up to 200 bytes: the vector path takes 48 at a time, then what is left)
    for (std::size_t len = 0; len <= 200; ++len) {
        std::vector<std::uint8_t> in(len);
        rng.fill(in);
        std::string ours = base64::encode(in);
        std::string ref(sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL), '\0');
        sodium_bin2base64(ref.data(), ref.size(), in.data(), len, sodium_base64_VARIANT_ORIGINAL);
        ref.resize(ref.size() - 1);  // its NUL
        CHECK(ours == ref);
        std::vector<std::uint8_t> back(len);
        CHECK(base64::decode(ours, back));
        CHECK(back == in);
    }
}

TEST_CASE("storages laid out differently read the same and commit back", "[format]") {
    const std::string canonical = small_storage(4);
    const Matrix ref = parse_storage(canonical, production_kdf_limits());
    const std::size_t rows_at = canonical.find("\"rows\":[\n") + 9;
    // Indented rows (a fixed stride other than the canonical one), keys in
    // another order, and one row with different spacing (no fixed stride).
    std::string indented = canonical.substr(0, rows_at), uneven = indented;
    for (std::size_t r = 0; r < 4; ++r) {
        std::string row = "\"" + std::string(row_text(ref, r)) + "\"";
        indented += "    " + row + (r < 3 ? ",\n" : "\n");
        uneven += (r == 2 ? "  " : "") + row + (r < 3 ? ",\n" : "\n");
    }
    indented += "]}\n";
    uneven += "]}\n";
    std::string reordered = "{\"capacity\":4," + replace(indented.substr(1), "\"capacity\":4,", "");
    for (const std::string& text : {indented, uneven, reordered}) {
        INFO(text.substr(0, 300));
        Matrix m = parse_storage(text, production_kdf_limits());
        REQUIRE(m.capacity() == 4);
        for (std::size_t r = 0; r < 4; ++r) CHECK(row_text(m, r) == row_text(ref, r));
        // What the matrix writes after a change is a valid storage with the change.
        Rng rng;
        m.randomize_slot(1, 0, 4, rng);
        Matrix again = parse_storage(std::string(m.file_text()), production_kdf_limits());
        for (std::size_t r = 0; r < 4; ++r) {
            CHECK(row_text(again, r) == row_text(m, r));
            CHECK(row_text(again, r).substr(0, 3 * 88) == row_text(ref, r).substr(0, 3 * 88));  // slot 0 kept
            CHECK(row_text(again, r).substr(3 * 88) != row_text(ref, r).substr(3 * 88));        // slot 1 new
        }
    }
    // Layouts with a fixed stride are kept as they are (only cells change).
    Matrix kept = parse_storage(indented, production_kdf_limits());
    CHECK(kept.file_text() == indented);
    CHECK(parse_storage(uneven, production_kdf_limits()).file_text() == canonical);
}

TEST_CASE("every truncation of a storage file is refused", "[format]") {
    const std::string good = small_storage();
    int refused = 0;
    for (std::size_t cut = 0; cut < good.size() - 2; cut += (cut < 300 ? 1 : 37)) {
        try {
            parse_storage(good.substr(0, cut), production_kdf_limits());
        } catch (const Error& e) {
            CHECK(e.code() == Errc::corrupt);
            ++refused;
            continue;
        }
        FAIL("truncated at " << cut << " accepted");
    }
    CHECK(refused > 300);
}

TEST_CASE("the golden storage of format version 1 still reads", "[format][golden]") {
    // tests/data/golden-v1.json was made by `shamirfs create` (format version 1)
    // and must be readable by every later version. Its key and password are
    // beside it; its partition "a" holds golden-v1.a.json.
    const std::string dir = SHAMIRFS_TEST_DATA;
    Store store(dir + "/golden-v1.json");
    const Matrix& m = store.load();
    CHECK(m.params().threshold == 3);
    CHECK(m.params().shares == 9);
    std::string key = testutil::read_file(dir + "/golden-v1.a.key");
    Partition p = store.unlock(parse_map_key(key), "golden password a");
    CHECK(store.read(p).view() == testutil::read_file(dir + "/golden-v1.a.json"));
    Partition pb = store.unlock(parse_map_key(testutil::read_file(dir + "/golden-v1.b.key")), "golden password b");
    CHECK(store.read(pb).view() == "{}");
}
