// Damage tolerance of format 2 (man/shamirfs.5, "Damage"): bit flips, byte
// substitutions and zeroed 4 KiB blocks anywhere in the cells, a changed
// character anywhere in the header or its copy. Each case reads both
// partitions byte for byte, has fsck report the damage, repairs it and finds
// the repaired file clean. Format 1's row-major layout is the broken control.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <tuple>

#include "helpers.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/storage_format.hpp"
#include "shamirfs/store.hpp"

using namespace shamirfs;
using testutil::bytes;

namespace {

struct Damaged {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    std::string doc_a, doc_b = testutil::make_document(3000, 9);
    std::string good;  // the undamaged file
    Partition a, b;

    explicit Damaged(std::size_t size_a, unsigned format = 2) : doc_a(testutil::make_document(size_a, 5)) {
        CreateSpec spec = testutil::cheap_spec();
        spec.format = format;
        auto created = Store::create(path, spec, testutil::passwords({"pa", "pb"}), testutil::test_options());
        Store store(path, testutil::test_options());
        a = store.unlock(created.keys[0], "pa");
        b = store.unlock(created.keys[1], "pb");
        store.commit(a, bytes(doc_a));
        store.commit(b, bytes(doc_b));
        good = testutil::read_file(path);
    }

    // Both partitions as a fresh reader sees them now.
    bool both_read() const {
        Store s(path, testutil::test_options());
        try {
            return s.read(a).view() == doc_a && s.read(b).view() == doc_b;
        } catch (const Error&) {
            return false;
        }
    }

    // The damaged file `text`: both partitions read, fsck reports it, repair
    // leaves a file that reads and reports clean.
    void check_survives(const std::string& text, const std::string& what) {
        INFO(what);
        testutil::write_file(path, text);
        REQUIRE(both_read());
        Store checker(path, testutil::test_options());
        FsckReport before = checker.fsck(nullptr, false);
        CHECK_FALSE(before.clean());
        Store repairer(path, testutil::test_options());
        FsckReport repaired = repairer.fsck(&a, true);
        CHECK(repaired.unrecoverable_rows == 0);
        CHECK(repaired.document_ok);
        Store after(path, testutil::test_options());
        CHECK(after.fsck(nullptr, false).clean());
        CHECK(both_read());
    }
};

// The cells' region of a format 2 file: after the header, before the trailer.
std::pair<std::size_t, std::size_t> cells_region(const Matrix& m) {
    const std::size_t begin = storage_header(m.params(), m.capacity()).size();
    return {begin, m.file_text().size() - storage_trailer(m.params(), m.capacity()).size()};
}

}  // namespace

TEST_CASE("single bit flips and byte substitutions anywhere in the cells cost nothing", "[damage]") {
    Damaged d(20000);
    const Matrix m = parse_storage(d.good, test_kdf_limits());
    auto [begin, end] = cells_region(m);
    std::mt19937_64 rng(7);
    for (int trial = 0; trial < 250 / testutil::kTrialDivisor; ++trial) {
        std::string text = d.good;
        const std::size_t at = begin + rng() % (end - begin);
        if (trial < 200 / testutil::kTrialDivisor) {
            text[at] = static_cast<char>(text[at] ^ (1 << (rng() % 8)));
        } else {
            char c;
            do c = static_cast<char>(rng() % 256);
            while (c == text[at]);
            text[at] = c;
        }
        d.check_survives(text, "trial " + std::to_string(trial) + ", offset " + std::to_string(at));
    }
}

TEST_CASE("no aligned 4 KiB block holds more than floor((n - t) / 2) cells of one row of one slot", "[damage]") {
    for (std::size_t capacity : {std::size_t{16}, std::size_t{40}, std::size_t{1024}})
        for (unsigned slots : {1u, 4u}) {
            StorageParams p;
            p.slots = slots;
            p.kdf.ops = 1;
            p.kdf.mem = 8192;
            Rng rng;
            Matrix m(p, capacity);
            const std::size_t limit = (p.shares - p.threshold) / 2;
            // Cells per (block, row, slot): every cell lands in one or two blocks.
            std::map<std::tuple<std::size_t, std::size_t, unsigned>, std::size_t> count;
            const char* base = m.file_text().data();
            for (std::size_t r = 0; r < capacity; ++r)
                for (unsigned c = 0; c < m.columns(); ++c) {
                    const std::size_t off = static_cast<std::size_t>(m.cell_text(r, c).data() - base);
                    for (std::size_t blk = off / 4096; blk <= (off + kCellChars - 1) / 4096; ++blk)
                        ++count[{blk, r, c / p.shares}];
                }
            std::size_t worst = 0;
            for (const auto& [k, n] : count) worst = std::max(worst, n);
            INFO("capacity " << capacity << ", slots " << slots);
            CHECK(worst <= limit);
        }
}

TEST_CASE("a zeroed or overwritten 4 KiB block costs nothing in format 2 and a document in format 1", "[damage]") {
    Damaged d(1 << 20);
    std::mt19937_64 rng(11);
    const std::size_t blocks = (d.good.size() + 4095) / 4096;
    for (int trial = 0; trial < 200 / testutil::kTrialDivisor; ++trial) {
        std::string text = d.good;
        const std::size_t blk = trial == 0 ? 0 : trial == 1 ? blocks - 1 : rng() % blocks;
        const std::size_t len = std::min<std::size_t>(4096, text.size() - blk * 4096);
        for (std::size_t i = 0; i < len; ++i)
            text[blk * 4096 + i] = trial % 2 ? '\0' : static_cast<char>(rng() % 256);
        d.check_survives(text, "block " + std::to_string(blk) + " of " + std::to_string(blocks));
    }

    // The broken control: format 1 keeps a row in one JSON string, so one
    // block holds every share of a row of partition a, and a's document is lost.
    Damaged v1(1 << 20, 1);
    const Matrix m1 = parse_storage(v1.good, test_kdf_limits());
    const std::size_t row1 = static_cast<std::size_t>(m1.cell_text(1, 0).data() - m1.file_text().data());
    std::string text = v1.good;
    const std::size_t blk = (row1 + 4095) / 4096;  // the first block wholly inside rows 1 and 2
    for (std::size_t i = 0; i < 4096; ++i)
        if (text[blk * 4096 + i] != '"' && text[blk * 4096 + i] != ',' && text[blk * 4096 + i] != '\n')
            text[blk * 4096 + i] = 'A' + static_cast<char>(i % 26);  // still JSON, cells all wrong
    testutil::write_file(v1.path, text);
    CHECK_FALSE(v1.both_read());
}

TEST_CASE("a changed character anywhere in the header or its copy is found and restored", "[damage]") {
    Damaged d(2000);
    const Matrix m = parse_storage(d.good, test_kdf_limits());
    auto [cells_begin, cells_end] = cells_region(m);
    std::vector<std::size_t> where;
    for (std::size_t i = 0; i < cells_begin; i += testutil::kTrialDivisor) where.push_back(i);
    for (std::size_t i = cells_end; i < d.good.size(); i += testutil::kTrialDivisor) where.push_back(i);
    for (std::size_t at : where) {
        std::string text = d.good;
        text[at] = text[at] == 'x' ? 'y' : 'x';
        d.check_survives(text, "offset " + std::to_string(at) + " of the header or its copy");
        CHECK(testutil::read_file(d.path) == d.good);  // restored exactly
    }
    // Both copies damaged: a clear error, not a wrong password.
    std::string both = d.good;
    both[20] = 'x';
    both[both.size() - 20] = '!';
    testutil::write_file(d.path, both);
    Store s(d.path, testutil::test_options());
    try {
        s.load();
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::corrupt);
        CHECK_THAT(e.what(), Catch::Contains("both damaged"));
    }
}

TEST_CASE("damage beyond the limit is reported as damage, and repair never guesses", "[damage]") {
    Damaged d(5000);
    Matrix m = parse_storage(d.good, test_kdf_limits());
    const unsigned n = m.params().shares;
    // Row 0 of partition a (its sealed header) loses 7 of its 9 cells: that is
    // visible without credentials, so unlocking says "damaged", not "wrong password".
    std::string text = d.good;
    for (unsigned i = 0; i < 7; ++i) {
        const std::size_t off = static_cast<std::size_t>(m.cell_text(0, d.a.slot * n + i).data() - m.file_text().data());
        text[off + 5] = '*';
    }
    testutil::write_file(d.path, text);
    {
        Store s(d.path, testutil::test_options());
        try {
            s.read(d.a);
            FAIL("read");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::damaged);
        }
        CHECK(s.read(d.b).view() == d.doc_b);
        FsckReport r = s.fsck(nullptr, true);
        CHECK(r.unrecoverable_rows == 1);
        CHECK(r.bad_cells >= 7);
    }
    CHECK(testutil::read_file(d.path) == text);  // nothing was "repaired"

    // Six erasures leave exactly t cells: the row still reads (the AEAD checks
    // it), but no t + 1 cells confirm it, so repair leaves it alone.
    text = d.good;
    for (unsigned i = 0; i < 6; ++i) {
        const std::size_t off = static_cast<std::size_t>(m.cell_text(1, d.a.slot * n + i).data() - m.file_text().data());
        text[off + 7] = '#';
    }
    testutil::write_file(d.path, text);
    CHECK(d.both_read());
    Store s(d.path, testutil::test_options());
    FsckReport r = s.fsck(nullptr, true);
    CHECK(r.unrepaired_rows == 1);
    CHECK(r.repaired_cells == 0);
    CHECK(testutil::read_file(d.path) == text);
}

TEST_CASE("a damaged header with damage around its intact copy is set right in one read", "[damage]") {
    // Found by the fuzzer: the copy was used, but the bytes before it stayed
    // damaged until a second read.
    Damaged d(2000);
    std::string text = d.good;
    text[20] = 'x';                                   // the header
    const std::size_t copy = text.rfind("\"copy\":\"");
    text[copy - 2] = '?';                             // the "," before the copy
    Matrix m = parse_storage(text, test_kdf_limits());
    CHECK(m.load_notes.size() == 2);
    CHECK(std::string(m.file_text()) == d.good);
    CHECK(parse_storage(std::string(m.file_text()), test_kdf_limits()).load_notes.empty());
    d.check_survives(text, "header and the bytes before its copy");
}
