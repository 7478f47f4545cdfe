#include <catch2/catch.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <unordered_set>

#include "helpers.hpp"
#include "shamirfs/codec.hpp"
#include "shamirfs/shamir.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/storage_format.hpp"

using namespace shamirfs;
using testutil::bytes;

namespace {

// The interpolation attack (anyone with the file can pick t cells and
// interpolate): for every row and every t-subset of ALL columns,
// interpolate at 0 and look for plaintext in the 64-byte value: any 8-byte
// window of the document, or a chunk that is mostly printable ASCII.
struct AttackResult {
    long interpolations = 0;
    long plaintext_hits = 0;
    long printable_chunks = 0;
};

AttackResult attack(const Matrix& m, const std::string& doc) {
    const unsigned t = m.params().threshold, cols = m.columns();
    std::vector<std::vector<gf::Fe>> cell(m.capacity(), std::vector<gf::Fe>(cols));
    for (std::size_t r = 0; r < m.capacity(); ++r)
        for (unsigned c = 0; c < cols; ++c) cell[r][c] = m.get(r, c);
    std::unordered_set<std::string> windows;
    for (std::size_t i = 0; i + 8 <= doc.size(); ++i) windows.insert(doc.substr(i, 8));
    AttackResult res;
    std::vector<unsigned> idx(t);
    for (unsigned i = 0; i < t; ++i) idx[i] = i;
    while (true) {
        std::vector<gf::Fe> xs;
        for (unsigned i : idx) xs.push_back(Matrix::share_id(i));
        // Every coefficient that can carry a chunk (format 2 packs `pack` of them).
        shamir::Interpolator basis(xs);
        std::vector<gf::Fe> ys(t);
        for (std::size_t r = 0; r < m.capacity(); ++r)
          for (unsigned j = 0; j < m.params().pack; ++j) {
            for (unsigned i = 0; i < t; ++i) ys[i] = cell[r][idx[i]];
            std::array<std::uint8_t, 64> chunk;
            ++res.interpolations;
            gf::Fe c = shamir::Interpolator::apply(basis.coefficient(j), ys);
            if (m.params().version >= 2) c.limb[8] = 0;  // format 2: the chunk is the low 512 bits
            if (!gf::to_chunk(c, chunk)) continue;
            std::string s(chunk.begin(), chunk.end());
            int printable = 0;
            for (unsigned char ch : s) printable += (ch >= 0x20 && ch < 0x7f) || ch == '\n';
            if (printable > 48) ++res.printable_chunks;
            for (std::size_t i = 0; i + 8 <= s.size(); ++i)
                if (windows.count(s.substr(i, 8))) {
                    ++res.plaintext_hits;
                    break;
                }
        }
        int i = static_cast<int>(t) - 1;
        while (i >= 0 && idx[static_cast<unsigned>(i)] == cols - t + static_cast<unsigned>(i)) --i;
        if (i < 0) break;
        ++idx[static_cast<unsigned>(i)];
        for (unsigned j = static_cast<unsigned>(i) + 1; j < t; ++j) idx[j] = idx[j - 1] + 1;
    }
    return res;
}

std::string secret_document() {
    std::string d = "{\"note\": \"DENIABILITY-MARKER the launch codes are 0000\", \"items\": [";
    for (int i = 0; i < 30; ++i) d += (i ? "," : "") + std::string("{\"k\": \"value number ") + std::to_string(i) + "\"}";
    return d + "]}";
}

std::string masked_structure(const std::string& text) {
    // Replace every cell and the salt by a placeholder: what is left is the structure.
    // (The header's check and copy depend on the salt alone.)
    std::string s = std::regex_replace(text, std::regex("[A-Za-z0-9+/]{88}"), "C");
    s = std::regex_replace(s, std::regex("\"check\":\"[^\"]*\""), "\"check\":\"H\"");
    s = std::regex_replace(s, std::regex("\"copy\":\"[^\"]*\""), "\"copy\":\"H\"");
    return std::regex_replace(s, std::regex("\"salt\":\"[^\"]*\""), "\"salt\":\"S\"");
}

}  // namespace

TEST_CASE("interpolating any t cells of any row finds no plaintext (exhaustive)", "[deniability][attack]") {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    auto created = Store::create(path, testutil::cheap_spec(), testutil::passwords({"pa", "pb"}), testutil::test_options());
    Store store(path, testutil::test_options());
    Partition a = store.unlock(created.keys[0], "pa");
    Partition b = store.unlock(created.keys[1], "pb");
    const std::string doc = secret_document();
    store.commit(a, bytes(doc));
    store.commit(b, bytes(testutil::make_document(1500, 8)));
    const Matrix& m = store.load();
    REQUIRE(m.columns() == 36);
    AttackResult res = attack(m, doc);
    CHECK(res.interpolations == 7140L * static_cast<long>(m.capacity() * m.params().pack));  // C(36,3) subsets x rows x chunks
    CHECK(res.plaintext_hits == 0);
    CHECK(res.printable_chunks == 0);

    // The same attack on a broken variant (shares without the encryption layer)
    // finds the plaintext: the test can fail.
    Matrix broken = m;
    std::vector<std::uint8_t> raw((doc.size() + 63) / 64 * 64, ' ');
    std::copy(doc.begin(), doc.end(), raw.begin());
    Rng rng;
    write_slot(broken, a.slot, raw, rng);
    AttackResult leak = attack(broken, doc);
    CHECK(leak.plaintext_hits > 0);
    CHECK(leak.printable_chunks > 0);
}

TEST_CASE("storages with one and with two partitions written look the same", "[deniability]") {
    testutil::TempDir dir;
    auto make = [&](const std::string& name, bool write_b) {
        std::string path = dir.file(name);
        auto created = Store::create(path, testutil::cheap_spec(), testutil::passwords({"pa", "pb"}), testutil::test_options());
        Store store(path, testutil::test_options());
        store.commit(store.unlock(created.keys[0], "pa"), bytes(testutil::make_document(1500, 1)));
        if (write_b) store.commit(store.unlock(created.keys[1], "pb"), bytes(testutil::make_document(1200, 2)));
        return testutil::read_file(path);
    };
    std::string only_a = make("one.json", false), both = make("two.json", true);
    std::string untouched;
    {
        std::string path = dir.file("zero.json");
        Store::create(path, testutil::cheap_spec(), testutil::passwords({"pa", "pb"}), testutil::test_options());
        untouched = testutil::read_file(path);
    }
    CHECK(only_a.size() == both.size());
    CHECK(untouched.size() == both.size());
    CHECK(masked_structure(only_a) == masked_structure(both));
    CHECK(masked_structure(untouched) == masked_structure(both));
    CHECK(only_a != both);
}

TEST_CASE("the file holds public parameters only: no per-partition field", "[deniability]") {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    Store::create(path, testutil::cheap_spec(3), testutil::passwords({"a", "b", "c"}), testutil::test_options());
    auto j = nlohmann::json::parse(testutil::read_file(path));
    std::set<std::string> keys, kdf_keys;
    for (auto& [k, v] : j.items()) keys.insert(k);
    for (auto& [k, v] : j["kdf"].items()) kdf_keys.insert(k);
    CHECK(keys == std::set<std::string>{"shamirfs", "field", "threshold", "shares", "pack", "slots", "chunk", "mode",
                                        "growth", "kdf", "capacity", "check", "columns", "copy"});
    CHECK(kdf_keys == std::set<std::string>{"algorithm", "ops", "mem", "salt"});
    for (auto& column : j["columns"]) CHECK(column.get<std::string>().size() == 88u * j["capacity"].get<unsigned>());
    CHECK(j["columns"].size() == j["slots"].get<unsigned>() * 9);
    // The partition count in use appears nowhere: "slots" is the maximum, 4 by default whatever the partitions.
    CHECK(j["slots"] == 4);
}

namespace {

// Every chunk-carrying coefficient of every row of every slot, as bytes.
std::vector<std::string> chunks_of(const Matrix& m) {
    std::vector<std::string> out;
    const unsigned t = m.params().threshold, n = m.params().shares;
    for (unsigned s = 0; s < m.params().slots; ++s) {
        auto xs = m.slot_share_ids(s);
        shamir::Interpolator basis(std::span<const gf::Fe>(xs).first(t));
        std::vector<gf::Fe> ys(t);
        for (std::size_t r = 0; r < m.capacity(); ++r) {
            for (unsigned i = 0; i < t; ++i) ys[i] = m.get(r, s * n + i);
            for (unsigned j = 0; j < m.params().pack; ++j) out.push_back(gf::to_decimal(shamir::Interpolator::apply(basis.coefficient(j), ys)));
        }
    }
    return out;
}

// A storage of two partitions a and b in the given mode, both unlocked.
struct TwoPartitions {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    CreateResult created;
    Store store{path, testutil::test_options()};
    Partition a, b;
    explicit TwoPartitions(StorageMode mode) {
        CreateSpec spec = testutil::cheap_spec();
        spec.mode = mode;
        created = Store::create(path, spec, testutil::passwords({"pa", "pb"}), testutil::test_options());
        a = store.unlock(created.keys[0], "pa");
        b = store.unlock(created.keys[1], "pb");
    }
};

struct VersionDiff {
    std::size_t cells = 0, cells_same = 0, chunks = 0, chunks_same = 0;
};

VersionDiff diff(const Matrix& before, const Matrix& after) {
    VersionDiff d;
    const std::size_t rows = std::min(before.capacity(), after.capacity());
    for (std::size_t r = 0; r < rows; ++r)
        for (unsigned c = 0; c < before.columns(); ++c) {
            ++d.cells;
            d.cells_same += before.cell_text(r, c) == after.cell_text(r, c);
        }
    auto a = chunks_of(before), b = chunks_of(after);
    // Compare per slot and row over the rows both versions have.
    const std::size_t per_slot_a = before.capacity() * before.params().pack, per_slot_b = after.capacity() * after.params().pack;
    for (unsigned s = 0; s < before.params().slots; ++s)
        for (std::size_t k = 0; k < rows * before.params().pack; ++k) {
            ++d.chunks;
            d.chunks_same += a[s * per_slot_a + k] == b[s * per_slot_b + k];
        }
    return d;
}

}  // namespace

TEST_CASE("a deniable storage: two versions differ in every cell and chunk; a shared one shows the written slot", "[deniability][history]") {
    for (StorageMode mode : {StorageMode::deniable, StorageMode::shared}) {
        TwoPartitions s(mode);
        Store& store = s.store;
        const Partition &a = s.a, &b = s.b;
        const std::string doc_a = testutil::make_document(3000, 1), doc_b = testutil::make_document(2000, 2);
        std::vector<const Partition*> keep_b{&b}, keep_a{&a};
        store.commit(a, bytes(doc_a), keep_b);
        store.commit(b, bytes(doc_b), keep_a);
        struct Step {
            const char* what;
            std::function<void()> commit;
        };
        const std::string big = testutil::make_document(120000, 3);
        std::vector<Step> steps = {
            {"a commit to a", [&] { store.commit(a, bytes(testutil::make_document(3100, 4)), keep_b); }},
            {"a commit to b", [&] { store.commit(b, bytes(doc_b + " "), keep_a); }},
            {"a commit to a with the same text", [&] { store.commit(a, bytes(testutil::make_document(3100, 4)), keep_b); }},
            {"a commit that grows the capacity", [&] { store.commit(a, bytes(big), keep_b); }},
        };
        for (const auto& step : steps) {
            INFO((mode == StorageMode::deniable ? "deniable: " : "shared: ") << step.what);
            const Matrix before = store.load();
            step.commit();
            const Matrix& after = store.load();
            VersionDiff d = diff(before, after);
            if (mode == StorageMode::deniable) {
                CHECK(d.cells_same == 0);
                CHECK(d.chunks_same == 0);
            } else {
                // The broken control: the slots not written are the same cells and chunks in both versions.
                CHECK(d.cells_same >= d.cells / 2);
                CHECK(d.chunks_same >= d.chunks / 2);
            }
        }
        // Both partitions still read.
        CHECK(store.read(a).view() == big);
        CHECK(store.read(b).view() == doc_b + " ");
    }
}

TEST_CASE("a deniable commit erases every partition that is not unlocked", "[deniability][history]") {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    CreateSpec spec = testutil::cheap_spec();
    spec.mode = StorageMode::deniable;
    auto created = Store::create(path, spec, testutil::passwords({"pa", "pb"}), testutil::test_options());
    Store store(path, testutil::test_options());
    Partition a = store.unlock(created.keys[0], "pa");
    store.commit(a, bytes("{\"only\": \"a\"}"));
    CHECK(store.read(a).view() == "{\"only\": \"a\"}");
    try {
        Store(path, testutil::test_options()).unlock(created.keys[1], "pb");
        FAIL("b still opens");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::auth_failed);
    }
}

TEST_CASE("add and shrink round-trip with every partition intact", "[deniability][lifecycle]") {
    for (StorageMode mode : {StorageMode::shared, StorageMode::deniable}) {
        INFO((mode == StorageMode::deniable ? "deniable" : "shared"));
        TwoPartitions s(mode);
        Store& store = s.store;
        const std::string& path = s.path;
        const Partition &a = s.a, &b = s.b;
        std::vector<const Partition*> both{&a, &b};
        const std::string big = testutil::make_document(10 << 20, 5);
        store.commit(a, bytes(big), std::vector<const Partition*>{&b});
        const std::size_t grown = store.load().capacity();
        CHECK(grown > 1000);
        // A third partition in a free slot.
        MapKey c_key = store.add(both, "pc", "c");
        Partition c = Store(path, testutil::test_options()).unlock(c_key, "pc");
        CHECK(c.slot != a.slot);
        CHECK(c.slot != b.slot);
        Store fresh(path, testutil::test_options());
        codec::Meta meta;
        CHECK(fresh.open(c, &meta).document.view() == "{}");
        CHECK(meta.label == "c");
        CHECK(fresh.read(a).view() == big);
        CHECK(fresh.read(b).view() == "{}");
        // Back to small documents: shrink returns to the minimum capacity.
        std::vector<const Partition*> all{&a, &b, &c};
        store.commit(a, bytes("{\"small\": 1}"), std::vector<const Partition*>{&b, &c});
        CHECK(store.load().capacity() == grown);
        CommitResult r = store.shrink(all);
        CHECK(r.capacity_before == grown);
        CHECK(r.capacity_after == kMinCapacity);
        Store after(path, testutil::test_options());
        CHECK(after.load().capacity() == kMinCapacity);
        CHECK(after.read(a).view() == "{\"small\": 1}");
        CHECK(after.read(b).view() == "{}");
        CHECK(after.read(c).view() == "{}");
        CHECK(after.fsck(nullptr, false).clean());
    }
}
