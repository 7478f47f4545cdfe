#include <catch2/catch.hpp>
#include <sodium.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>

#include "helpers.hpp"
#include "shamirfs/big_buffer.hpp"
#include "shamirfs/codec.hpp"
#include "shamirfs/commit_protocol.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/storage_format.hpp"
#include "shamirfs/store.hpp"

using namespace shamirfs;
using testutil::bytes;

namespace {
struct Fixture {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    CreateResult created;
    Store store;
    explicit Fixture(unsigned partitions = 2, CreateSpec spec = testutil::cheap_spec(),
                     StoreOptions options = testutil::test_options())
        : store(path, options) {
        spec.partitions = partitions;
        std::vector<SecureBuffer> pws;
        for (unsigned i = 0; i < partitions; ++i) {
            std::string pw = "password-" + std::to_string(i);
            pws.emplace_back(pw.data(), pw.size());
        }
        created = Store::create(path, spec, pws, testutil::test_options());
    }
    Partition open(unsigned i) {
        std::string pw = "password-" + std::to_string(i);
        return store.unlock(created.keys[i], pw);
    }
};

// The code of the Error f throws; nothing if it throws none.
std::optional<Errc> error_of(const std::function<void()>& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    return std::nullopt;
}
}  // namespace

TEST_CASE("create makes every partition open, holding {}", "[store]") {
    Fixture f(3);
    CHECK(f.created.keys.size() == 3);
    std::set<std::uint32_t> slots;
    for (unsigned i = 0; i < 3; ++i) {
        Partition p = f.open(i);
        CHECK(f.store.read(p).view() == "{}");
        slots.insert(p.slot);
    }
    CHECK(slots.size() == 3);  // disjoint column groups
    CHECK(f.store.load().params().slots == 4);  // a constant, whatever the partitions
    // create refuses to overwrite
    auto pw = testutil::passwords({"x"});
    CHECK(error_of([&] { Store::create(f.path, testutil::cheap_spec(1), pw, testutil::test_options()); }) == Errc::usage);
}

TEST_CASE("documents round-trip byte for byte", "[store]") {
    Fixture f;
    Partition a = f.open(0);
    std::vector<std::string> docs = {
        "{}",
        "{\"name\": \"J\xc3\xbcrgen \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91\", \"esc\": \"\\u00e9\\n\"}",
        testutil::make_document(1024, 2),
        testutil::make_document(1 << 20, 3),
        "{\n    \"pretty\": [\n        1,\n        2\n    ],\n\t\"tab\"  :  true   \n}\n\n",
        testutil::make_document(10 << 20, 4),
    };
    for (const auto& d : docs) {
        INFO("size " << d.size());
        CommitResult r = f.store.commit(a, bytes(d));
        CHECK(r.document_bytes == d.size());
        CHECK(r.capacity_after >= r.document_rows);
        CHECK(r.rows_rewritten == r.capacity_after);
        CHECK(r.shares_regenerated == r.capacity_after * 9 + 3 * (r.capacity_after - r.capacity_before) * 9);
        Store fresh(f.path, testutil::test_options());
        Partition again = fresh.unlock(f.created.keys[0], "password-0");
        CHECK(fresh.read(again).view() == d);
    }
    // The other partition is untouched by all of this.
    CHECK(f.store.read(f.open(1)).view() == "{}");
}

TEST_CASE("wrong key, wrong password and another storage's key fail alike", "[store][deniability]") {
    Fixture f, other;
    std::string m1, m2, m3, m4;
    auto e1 = error_of([&] { f.store.unlock(f.created.keys[0], "password-1"); }, &m1);            // wrong password
    auto e2 = error_of([&] { f.store.unlock(f.created.keys[1], "password-0"); }, &m2);            // other partition's key
    auto e3 = error_of([&] { f.store.unlock(other.created.keys[0], "password-0"); }, &m3);        // other storage's key
    MapKey missing = make_map_key(40);                                                             // no such slot
    auto e4 = error_of([&] { f.store.unlock(missing, "password-0"); }, &m4);
    CHECK(e1 == Errc::auth_failed);
    CHECK(e2 == e1);
    CHECK(e3 == e1);
    CHECK(e4 == e1);
    CHECK(m1 == kAuthFailedMessage);
    CHECK(m2 == m1);
    CHECK(m3 == m1);
    CHECK(m4 == m1);
}

TEST_CASE("updating partition a leaves b byte-identical in its cells and readable", "[store]") {
    Fixture f;
    Partition a = f.open(0), b = f.open(1);
    f.store.commit(b, bytes(testutil::make_document(2000, 9)));
    Matrix before = f.store.load();
    f.store.commit(a, bytes(testutil::make_document(300000, 5)));  // grows the capacity
    const Matrix& after = f.store.load();
    REQUIRE(after.capacity() > before.capacity());
    const unsigned n = before.params().shares;
    std::size_t changed_a = 0;
    for (std::size_t r = 0; r < before.capacity(); ++r)
        for (unsigned c = 0; c < before.columns(); ++c) {
            bool in_a = c / n == a.slot;
            if (in_a) changed_a += before.cell_text(r, c) != after.cell_text(r, c);
            else CHECK(before.cell_text(r, c) == after.cell_text(r, c));
        }
    CHECK(changed_a == before.capacity() * n);  // all of a's cells were rewritten
    CHECK(f.store.read(b).view() == testutil::make_document(2000, 9));
}

TEST_CASE("reads survive up to floor((n-t)/2) corrupted cells per row", "[store]") {
    Fixture f;
    Partition a = f.open(0);
    std::string doc = testutil::make_document(20000, 11);
    f.store.commit(a, bytes(doc));
    Matrix m = f.store.load();
    auto rows = document_rows(m, a);
    REQUIRE(rows);
    Rng rng;
    // Three bad cells in every row, including the stage-2 fast-path columns.
    for (std::size_t r = 0; r < *rows; ++r)
        for (unsigned k = 0; k < 3; ++k) m.set(r, a.order[(r + k) % 9], rng.field_element());
    testutil::write_file(f.path, std::string(m.file_text()));
    Store reread(f.path, testutil::test_options());
    Partition again = reread.unlock(f.created.keys[0], "password-0");
    CHECK(reread.read(again).view() == doc);
    // The checked read reports and fixes them.
    std::vector<std::uint8_t> out(*rows * m.params().row_bytes());
    Matrix fixed = reread.load();
    auto report = read_slot_checked(fixed, a.slot, *rows, out, &fixed);
    CHECK(report.repaired.size() == *rows);
    CHECK(report.unrecoverable.empty());
    for (const auto& rr : report.repaired) CHECK(rr.columns.size() == 3);
    auto report2 = read_slot_checked(fixed, a.slot, *rows, out);
    CHECK(report2.repaired.empty());

    // A fourth bad cell in one row is beyond repair: a clear error, no garbage.
    m.set(1, a.order[8], rng.field_element());
    m.set(1, a.order[7], rng.field_element());
    testutil::write_file(f.path, std::string(m.file_text()));
    Store broken(f.path, testutil::test_options());
    Partition p = broken.unlock(f.created.keys[0], "password-0");
    std::string msg;
    CHECK(error_of([&] { broken.read(p); }, &msg) == Errc::damaged);
    CHECK_THAT(msg, Catch::Contains("damaged beyond repair"));
}

TEST_CASE("an invalid document is refused and the storage stays as it was", "[store]") {
    Fixture f;
    Partition a = f.open(0);
    std::string before = testutil::read_file(f.path);
    std::string msg;
    CHECK(error_of([&] { f.store.commit(a, bytes("{\"a\": [1, 2}")); }, &msg) == Errc::invalid_json);
    CHECK_THAT(msg, Catch::Contains("line 1, column"));
    CHECK(error_of([&] { f.store.commit(a, bytes("")); }) == Errc::invalid_json);
    CHECK(testutil::read_file(f.path) == before);
    CHECK(f.store.read(a).view() == "{}");
}

namespace {
std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}
std::string big_document(std::size_t n) {
    std::string d = "{\"k\": [";
    for (std::size_t i = 0; d.size() < n; ++i) d += std::to_string(i * 7919 % 100003) + ", ";
    return d + "0]}";
}
StoreOptions keeping(bool keep) {
    StoreOptions o = testutil::test_options();
    o.keep_written_text = keep;
    return o;
}
// Each storage mode, a fresh two-partition storage with both unlocked; the
// written text kept in memory, and not (the new cells through buffers).
void in_both_modes(const std::function<void(Fixture&, Partition&, Partition&)>& test) {
    for (StorageMode mode : {StorageMode::shared, StorageMode::deniable})
        for (bool keep : {true, false}) {
            INFO((mode == StorageMode::deniable ? "deniable" : "shared") << (keep ? "" : ", text not kept"));
            CreateSpec spec = testutil::cheap_spec();
            spec.mode = mode;
            Fixture f(2, spec, keeping(keep));
            Partition a = f.open(0), b = f.open(1);
            test(f, a, b);
        }
}
}  // namespace

// Commits are a pipeline: the file is written while the JSON is checked and
// the document sealed. A refusal found meanwhile leaves nothing behind, and
// a document that needs more rows lays the file out again.
TEST_CASE("a commit refused while its file is being written leaves no trace and the store goes on", "[store][pipeline]") {
    in_both_modes([](Fixture& f, Partition& a, Partition& b) {
        const std::vector<const Partition*> keep_b{&b};
        const std::string doc = big_document(600000);
        f.store.commit(a, bytes(doc), keep_b);  // a large file, so that much is written before the check fails
        f.store.commit(b, bytes("{\"b\": 1}"), std::vector<const Partition*>{&a});
        const std::string before = testutil::read_file(f.path);
        const auto names = names_in(f.dir.path());
        std::string invalid = doc;
        invalid.back() = ',';  // invalid at the very end
        CHECK(error_of([&] { f.store.commit(a, bytes(invalid), keep_b); }) == Errc::invalid_json);
        CHECK(testutil::read_file(f.path) == before);
        CHECK(names_in(f.dir.path()) == names);  // no WAL, no temporary file
        CHECK(f.store.read(a).view() == doc);
        f.store.commit(a, bytes("{\"after\": true}"), keep_b);
        CHECK(f.store.read(a).view() == "{\"after\": true}");
        CHECK(f.store.read(b).view() == "{\"b\": 1}");
        CHECK(names_in(f.dir.path()) == names);
    });
}

TEST_CASE("a commit that needs more rows lays the file out again, keeping the other partitions", "[store][pipeline]") {
    in_both_modes([](Fixture& f, Partition& a, Partition& b) {
        f.store.commit(b, bytes("{\"b\": \"kept\"}"), std::vector<const Partition*>{&a});
        const std::size_t before = f.store.matrix().capacity();
        std::string doc;
        for (std::size_t size : {20000u, 300000u}) {  // each needs more rows than the storage has
            doc = big_document(size);
            CommitResult r = f.store.commit(a, bytes(doc), std::vector<const Partition*>{&b});
            CHECK(r.capacity_after > r.capacity_before);
        }
        CHECK(f.store.matrix().capacity() > before);
        Store fresh(f.path, testutil::test_options());
        CHECK(fresh.read(fresh.unlock(f.created.keys[0], "password-0")).view() == doc);
        CHECK(fresh.read(fresh.unlock(f.created.keys[1], "password-1")).view() == "{\"b\": \"kept\"}");
        CHECK(fresh.fsck(nullptr, false).clean());
    });
}

namespace {
// A JSON string of n bytes: random hex (which compresses about 2:1) in the
// share `at_samples` of each region that codec::estimate_compressed samples
// (four MiB evenly spaced) and in the share `elsewhere` of every other MiB,
// the rest one repeated letter (which compresses to almost nothing).
std::string patchy_document(std::size_t n, double at_samples, double elsewhere) {
    constexpr std::size_t kMiB = std::size_t{1} << 20;
    std::string text(n, 'a');
    text.front() = text[n - 1] = '"';
    std::vector<bool> sampled(n / kMiB + 1, false);
    for (std::size_t i = 0; i < 4; ++i) {
        const std::size_t at = i * (n - kMiB) / 3;
        for (std::size_t j = 0; j < kMiB; j += 4096) sampled[(at + j) / kMiB] = true;
    }
    static const char kHex[] = "0123456789abcdef";
    std::mt19937_64 rng(7);
    for (std::size_t at = 1; at + 1 < n; at += 4096) {
        const double share = sampled[at / kMiB] ? at_samples : elsewhere;
        for (std::size_t j = 0; j < static_cast<std::size_t>(share * 4096) && at + j + 1 < n; ++j) text[at + j] = kHex[rng() & 15];
    }
    return text;
}
}  // namespace

// A large document that needs more rows has the file laid out for an estimate
// while it is compressed; whichever way the estimate misses, the file is laid
// out again and ends as a commit without an estimate would leave it.
TEST_CASE("a layout from an estimate that misses is made again, in the class the document needs", "[store][pipeline]") {
    bool under = false, over = false, right = false;
    for (StorageMode mode : {StorageMode::shared, StorageMode::deniable})
        for (auto [at_samples, elsewhere] : {std::pair{0.5, 0.5}, std::pair{1.0, 0.0}, std::pair{0.1, 1.0}}) {
            const bool keep = at_samples == 0.5;  // the misses with the new cells through buffers
            INFO((mode == StorageMode::deniable ? "deniable: " : "shared: ") << at_samples << " random at the samples, "
                                                                              << elsewhere << " elsewhere");
            CreateSpec spec = testutil::cheap_spec();
            spec.mode = mode;
            Fixture f(2, spec, keeping(keep));
            Partition a = f.open(0), b = f.open(1);
            f.store.commit(b, bytes("{\"b\": \"kept\"}"), std::vector<const Partition*>{&a});
            const StorageParams params = f.store.matrix().params();
            const std::string doc = patchy_document(12u << 20, at_samples, elsewhere);
            const std::size_t before = f.store.matrix().capacity();
            CommitResult r = f.store.commit(a, bytes(doc), std::vector<const Partition*>{&b});
            REQUIRE(r.estimated_rows > 0);
            CHECK(r.capacity_before == before);
            CHECK(r.capacity_after == capacity_for(params, before, r.document_rows));
            const std::size_t guessed = capacity_for(params, before, r.estimated_rows);
            (guessed < r.capacity_after ? under : guessed > r.capacity_after ? over : right) = true;
            Store fresh(f.path, testutil::test_options());
            CHECK(fresh.matrix().capacity() == r.capacity_after);
            CHECK(fresh.read(fresh.unlock(f.created.keys[0], "password-0")).view() == doc);
            CHECK(fresh.read(fresh.unlock(f.created.keys[1], "password-1")).view() == "{\"b\": \"kept\"}");
            CHECK(fresh.fsck(nullptr, false).clean());
        }
    CHECK(right);
    CHECK(under);
    CHECK(over);
}

TEST_CASE("dry run reports the change without writing", "[store]") {
    Fixture f;
    Partition a = f.open(0);
    std::string before = testutil::read_file(f.path);
    std::string doc = testutil::make_document(5000, 3);
    DryRunResult d = f.store.dry_run(a, bytes(doc));
    CHECK(d.rows_now == 1);  // "{}" and its sealed header: 3 chunks, one row of 3
    CHECK(d.rows_after > 1);
    CHECK(d.size_change_percent == Approx(100.0 * (double(d.rows_after) - 1.0)));
    CHECK(d.large_change);
    CHECK(d.estimated_seconds > 0);
    CHECK(testutil::read_file(f.path) == before);
    DryRunResult same = f.store.dry_run(a, bytes("{ }"));
    CHECK(same.rows_after == 1);
    CHECK_FALSE(same.large_change);
}

TEST_CASE("create validates its parameters", "[store]") {
    testutil::TempDir dir;
    auto bad = [&](CreateSpec s, unsigned pws, const char* why) {
        std::vector<SecureBuffer> p;
        for (unsigned i = 0; i < pws; ++i) p.emplace_back("pw", 2);
        std::string msg;
        CHECK(error_of([&] { Store::create(dir.file("x.json"), s, p, testutil::test_options()); }, &msg) == Errc::usage);
        CHECK_THAT(msg, Catch::Contains(why));
    };
    auto s = testutil::cheap_spec();
    auto t = s;
    t.threshold = 1;
    bad(t, 2, "threshold must be at least 2");
    t = s;
    t.shares = 2;
    bad(t, 2, "shares per row must be at least the threshold");
    t = s;
    t.slots = 1;
    bad(t, 2, "more partitions than slots");
    t = s;
    t.capacity = 0;
    bad(t, 2, "capacity");
    bad(s, 1, "one password per partition");
    Store::create(dir.file("y.json"), s, testutil::passwords({"a", "b"}), testutil::test_options());
    std::string msg;
    CHECK(error_of([&] { Store::create(dir.file("z.json"), s, testutil::passwords({"a", "b"})); }, &msg) == Errc::usage);
    CHECK_THAT(msg, Catch::Contains("KDF ops 1"));  // production floors apply by default
    CHECK(error_of([&] { Store::create(dir.file("w.json"), s, testutil::passwords({"a", ""}), testutil::test_options()); }) == Errc::usage);
}

TEST_CASE("a commit rebases on another writer's commit of a different partition", "[store][conflict]") {
    Fixture f;
    Store w1(f.path, testutil::test_options()), w2(f.path, testutil::test_options());
    Partition a = w1.unlock(f.created.keys[0], "password-0");
    Partition b = w2.unlock(f.created.keys[1], "password-1");
    CommitResult rb = w2.commit(b, bytes("{\"b\": 1}"));
    CHECK_FALSE(rb.rebased);
    CommitResult ra = w1.commit(a, bytes("{\"a\": 1}"));  // w1 loaded before b's commit
    CHECK(ra.rebased);
    CHECK_FALSE(ra.replaced_concurrent_change);
    Store check(f.path, testutil::test_options());
    CHECK(check.read(check.unlock(f.created.keys[0], "password-0")).view() == "{\"a\": 1}");
    CHECK(check.read(check.unlock(f.created.keys[1], "password-1")).view() == "{\"b\": 1}");
}

TEST_CASE("the same partition changed by two writers: the last commit wins and says so", "[store][conflict]") {
    Fixture f;
    Store w1(f.path, testutil::test_options()), w2(f.path, testutil::test_options());
    Partition a1 = w1.unlock(f.created.keys[0], "password-0");
    Partition a2 = w2.unlock(f.created.keys[0], "password-0");
    w2.commit(a2, bytes("{\"by\": 2}"));
    CommitResult r = w1.commit(a1, bytes("{\"by\": 1}"));
    CHECK(r.rebased);
    CHECK(r.replaced_concurrent_change);
    Store check(f.path, testutil::test_options());
    CHECK(check.read(check.unlock(f.created.keys[0], "password-0")).view() == "{\"by\": 1}");
    // A writer that committed last itself has no conflict on its next commit.
    CommitResult again = w1.commit(a1, bytes("{\"by\": 3}"));
    CHECK_FALSE(again.rebased);
}

TEST_CASE("a store unlocks while loading, and without the header in front", "[store]") {
    CreateSpec v1 = testutil::cheap_spec();
    v1.format = 1;  // its JSON may put the keys in any order
    Fixture f(2, v1);
    f.store.commit(f.open(1), bytes("{\"b\": 2}"));
    const std::string text = testutil::read_file(f.path);
    REQUIRE(peek_storage_params(f.path, testutil::test_options().kdf_limits));
    CHECK(peek_storage_params(f.path, testutil::test_options().kdf_limits)->slots == 4);
    // "rows" first: nothing to peek; the KDF then waits for the whole file.
    const std::size_t rows_at = text.find("\"rows\":");
    std::string rows = text.substr(rows_at, text.rfind(']') + 1 - rows_at);
    std::string reordered = "{" + rows + "," + text.substr(1, rows_at - 1) + "}\n";
    reordered.erase(reordered.find(",\n}"), 2);
    for (const std::string& t : {text, reordered}) {
        testutil::write_file(f.path, t);
        Store fresh(f.path, testutil::test_options());
        CHECK(peek_storage_params(f.path, testutil::test_options().kdf_limits).has_value() == (t == text));
        Partition b = fresh.unlock(f.created.keys[1], "password-1");
        CHECK(fresh.read(b).view() == "{\"b\": 2}");
        CHECK(error_of([&] { Store(f.path, testutil::test_options()).unlock(f.created.keys[1], "wrong"); }) == Errc::auth_failed);
    }
}

TEST_CASE("recovery finishes a ready commit and rolls back a mismatch, under both file names", "[store][wal]") {
    Fixture f;
    const std::string old_text = testutil::read_file(f.path);
    f.store.commit(f.open(0), bytes("{\"new\": true}"));
    const std::string new_text = testutil::read_file(f.path);
    REQUIRE(new_text != old_text);
    // Both the names of this version and those of builds before format 2.
    for (const auto& [wal_name, temp] : {std::pair<std::string, std::string>{".enc.json.shamirfs-wal", ".enc.json.shamirfs-tmp-1-0000abcd"},
                                         {"enc.json.wal", ".enc.json.tmp-1-0000abcd"}}) {
    const std::string wal = f.dir.file(wal_name);
    struct Case {
        std::string record;
        const std::string* expect;
    };
    for (const auto& c : {
             Case{"{\"wal\":2,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + content_hash(new_text) + "\"}", &new_text},
             Case{"{\"wal\":2,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + content_hash(old_text) + "\"}", &old_text},
             Case{"{\"wal\":2,\"state\":\"start\",\"temp\":\"" + temp + "\"}", &old_text},
             // Version 3 names the file by its page hash; a hash of the other
             // kind matches neither file, and the commit is rolled back.
             Case{"{\"wal\":3,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + page_hash(new_text) + "\"}", &new_text},
             Case{"{\"wal\":3,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + page_hash(old_text) + "\"}", &old_text},
             Case{"{\"wal\":3,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + content_hash(new_text) + "\"}", &old_text},
             Case{"{\"wal\":2,\"state\":\"ready\",\"temp\":\"" + temp + "\",\"new\":\"" + page_hash(new_text) + "\"}", &old_text},
             Case{"{\"wal\":3,\"state\":\"start\",\"temp\":\"" + temp + "\"}", &old_text},
         }) {
        INFO(c.record);
        testutil::write_file(f.path, old_text);
        testutil::write_file(f.dir.file(temp), new_text);
        testutil::write_file(wal, c.record);
        CHECK(!Store(f.path, testutil::test_options()).recover().empty());
        CHECK(testutil::read_file(f.path) == *c.expect);
        CHECK(access(f.dir.file(temp).c_str(), F_OK) != 0);
        CHECK(access(wal.c_str(), F_OK) != 0);
    }
    }
    CHECK(content_hash(new_text).size() == 32);
}

TEST_CASE("recovery settles a file under its ready name: swapped in, displaced, or rolled back", "[store][wal]") {
    Fixture f;
    const std::string old_text = testutil::read_file(f.path);
    f.store.commit(f.open(0), bytes("{\"new\": true}"));
    const std::string new_text = testutil::read_file(f.path);
    REQUIRE(new_text != old_text);
    Wal wal(f.path);
    testutil::write_file(f.path, old_text);
    struct stat st{};
    REQUIRE(::stat(f.path.c_str(), &st) == 0);
    const FileId storage_id{st.st_dev, st.st_ino};
    const std::string ready = f.dir.file(wal.ready_name(page_hash(new_text), storage_id));
    const auto conflicts = [&] { return conflict_copies(f.path).size(); };
    // Named ready, not swapped: swapped in; the version it displaced was the
    // base (same inode): removed.
    testutil::write_file(ready, new_text);
    CHECK(!Store(f.path, testutil::test_options()).recover().empty());
    CHECK(testutil::read_file(f.path) == new_text);
    CHECK(access(ready.c_str(), F_OK) != 0);
    CHECK(conflicts() == 0);
    // Swapped, then interrupted: the ready name holds the version it displaced.
    for (bool is_base : {true, false}) {
        INFO("displaced is the base: " << is_base);
        testutil::write_file(ready, old_text);
        REQUIRE(::stat(ready.c_str(), &st) == 0);
        const std::string name = wal.ready_name(page_hash(new_text), is_base ? FileId{st.st_dev, st.st_ino} : storage_id);
        REQUIRE(::rename(ready.c_str(), f.dir.file(name).c_str()) == 0);
        CHECK(!Store(f.path, testutil::test_options()).recover().empty());
        CHECK(testutil::read_file(f.path) == new_text);
        CHECK(access(f.dir.file(name).c_str(), F_OK) != 0);
        CHECK(conflicts() == (is_base ? 0u : 1u));  // an unseen version is never dropped
    }
    for (const auto& copy : conflict_copies(f.path)) {
        CHECK(testutil::read_file(copy) == old_text);
        ::unlink(copy.c_str());
    }
    // Neither the storage nor the file has the hash: the file is removed.
    testutil::write_file(f.path, old_text);
    testutil::write_file(ready, new_text.substr(0, new_text.size() / 2));
    CHECK(!Store(f.path, testutil::test_options()).recover().empty());
    CHECK(testutil::read_file(f.path) == old_text);
    CHECK(access(ready.c_str(), F_OK) != 0);
    // Names of other shapes are not the protocol's: left alone.
    const std::string other = f.dir.file(".enc.json.shamirfs-ready-not-a-hash");
    testutil::write_file(other, new_text);
    CHECK(Store(f.path, testutil::test_options()).recover().empty());
    CHECK(access(other.c_str(), F_OK) == 0);
}

TEST_CASE("a file written in pieces, in any order, holds its bytes and has their page hash", "[store][wal]") {
    testutil::TempDir dir;
    std::mt19937_64 gen(7);
    const std::size_t large = PagedWriter::kDirectFrom + 3 * kHashPage + 17;  // O_DIRECT, the last page short
    // (5 MiB: through the page cache, its writeback started on the writer's thread of its own)
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, kHashPage - 1, kHashPage, 3 * kHashPage + 17, std::size_t{200000},
                             std::size_t{5} << 20, large}) {
        INFO("size " << size);
        // The text in page-aligned memory (as a storage's text is), and a copy
        // that is not: pieces from either.
        BigBuffer text(size);
        text.resize(size);
        for (std::size_t i = 0; i < size; ++i) text.data()[i] = static_cast<char>(gen());
        const std::string copy(text.view());
        const std::string whole = page_hash(text.view());
        CHECK(whole.size() == 32);
        // Cut at random places, added in a random order, in batches.
        std::vector<std::size_t> cuts{0, size};
        for (int i = 0; i < 40 && size > 1; ++i) cuts.push_back(gen() % size);
        std::sort(cuts.begin(), cuts.end());
        cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
        std::vector<std::pair<std::size_t, std::size_t>> pieces;
        for (std::size_t i = 0; i + 1 < cuts.size(); ++i) pieces.emplace_back(cuts[i], cuts[i + 1] - cuts[i]);
        std::shuffle(pieces.begin(), pieces.end(), gen);
        const std::string path = dir.file("new" + std::to_string(size));
        FileHandle fd = create_new_file(path);
        PagedWriter w(fd.get(), path, size, true);
        struct statfs fs{};
        if (size >= PagedWriter::kDirectFrom && ::statfs(path.c_str(), &fs) == 0 && fs.f_type == EXT4_SUPER_MAGIC)
            CHECK(w.direct());  // (here the whole pages of the aligned pieces skip the page cache)
        for (std::size_t i = 0; i < pieces.size(); ++i) {
            if (i + 1 == pieces.size() && size > 0) CHECK(error_of([&] { (void)w.digest(); }) == Errc::internal);  // not whole yet
            const auto [at, n] = pieces[i];
            w.add(at, i % 3 == 2 ? std::string_view(copy).substr(at, n) : text.view().substr(at, n));
            if (i % 4 == 3) w.flush();
        }
        CHECK(w.digest() == whole);
        fd = FileHandle();
        CHECK(testutil::read_file(path) == copy);
        if (size == 0) continue;
        // One byte changed, one byte more, or the same bytes at other places: another hash.
        std::string changed = copy;
        changed[gen() % size] ^= 1;
        CHECK(page_hash(changed) != whole);
        CHECK(page_hash(copy + '\0') != whole);
        if (size >= 2 * kHashPage) CHECK(page_hash(copy.substr(kHashPage) + copy.substr(0, kHashPage)) != whole);
        // A piece given twice is refused, at the latest by digest(); a piece
        // past the end at once.
        const std::string again = dir.file("again" + std::to_string(size));
        FileHandle fd2 = create_new_file(again);
        PagedWriter twice(fd2.get(), again, size, true);
        twice.add(0, copy);
        CHECK(error_of([&] {
                  twice.add(0, std::string_view(copy).substr(0, 1));
                  (void)twice.digest();
              }) == Errc::internal);
        CHECK(error_of([&] { twice.add(size, "x"); }) == Errc::internal);
    }
    // The definition (man/shamirfs.5, write-ahead log), computed here by hand
    // for two pages: the sum of the pages' seeded hashes, then the size.
    const std::string two = std::string(kHashPage, 'a') + "shamirfs";
    const XXH128_hash_t p0 = XXH3_128bits_withSeed(two.data(), kHashPage, 0),
                        p1 = XXH3_128bits_withSeed(two.data() + kHashPage, 8, 1);
    const std::uint64_t low = p0.low64 + p1.low64, high = p0.high64 + p1.high64 + (low < p0.low64);
    unsigned char last[24] = {};
    for (int i = 0; i < 8; ++i) {
        last[i] = static_cast<unsigned char>(high >> (8 * (7 - i)));
        last[8 + i] = static_cast<unsigned char>(low >> (8 * (7 - i)));
    }
    last[23] = static_cast<unsigned char>(two.size() & 0xff);
    last[22] = static_cast<unsigned char>(two.size() >> 8);
    CHECK(page_hash(two) == hash_hex(XXH3_128bits(last, sizeof(last))));
}

TEST_CASE("fsck finds and repairs bad cells in every slot without credentials", "[store][fsck]") {
    Fixture f;
    f.store.commit(f.open(0), bytes(testutil::make_document(4000, 1)));
    Matrix m = f.store.load();
    Rng rng;
    m.set(0, 0, rng.field_element());                   // slot 0
    m.set(5, m.columns() - 1, rng.field_element());     // last slot
    m.set(5, m.columns() - 2, rng.field_element());
    testutil::write_file(f.path, std::string(m.file_text()));
    Store s(f.path, testutil::test_options());
    FsckReport r = s.fsck(nullptr, false);
    CHECK(r.bad_cells == 3);
    CHECK(r.repaired_cells == 0);
    CHECK(r.unrecoverable_rows == 0);
    CHECK(r.rows_checked == m.capacity() * m.params().slots);
    CHECK_FALSE(r.clean());
    FsckReport fixed = s.fsck(nullptr, true);
    CHECK(fixed.repaired_cells == 3);
    FsckReport after = s.fsck(nullptr, false);
    CHECK(after.clean());
    Partition a = s.unlock(f.created.keys[0], "password-0");
    FsckReport with_doc = s.fsck(&a, false);
    CHECK(with_doc.document_checked);
    CHECK(with_doc.document_ok);
    CHECK(s.read(a).view() == testutil::make_document(4000, 1));
}
