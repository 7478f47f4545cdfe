// The mounted file system without the kernel: inodes and lookup counts, open
// handles across renames and unlinks, scratch directories, POSIX details,
// commits, and changes made to the storage outside the mount.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <linux/fs.h>

#include <thread>

#include "../../src/fuse/memfs.hpp"
#include "helpers.hpp"
#include "shamirfs/error.hpp"

using namespace shamirfs;
using namespace shamirfs::fs;
using testutil::bytes;

namespace {

struct Mounted {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json");
    CreateResult created;
    Store store{path, testutil::test_options()};
    std::unique_ptr<MemFs> fs;
    Caller me{1000, 1000, {1000, 27}};

    explicit Mounted(std::size_t memory_max = std::size_t{1} << 30) {
        CreateSpec spec = testutil::cheap_spec(2);
        spec.labels = {"a", "b"};
        created = Store::create(path, spec, testutil::passwords({"pw-a", "pw-b"}), testutil::test_options());
        std::vector<MountedPartition> parts;
        std::vector<SecureBuffer> docs;
        std::vector<std::optional<SecureBuffer>> drafts;
        for (unsigned i = 0; i < 2; ++i) {
            Partition p = store.unlock(created.keys[i], i == 0 ? "pw-a" : "pw-b");
            docs.push_back(store.read(p));
            drafts.emplace_back();
            parts.push_back({i == 0 ? "a" : "b", std::move(p)});
        }
        FsOptions o;
        o.uid = 1000;
        o.gid = 1000;
        o.memory_max = memory_max;
        fs = std::make_unique<MemFs>(store, std::move(parts), std::move(docs), std::move(drafts), o, timespec{1, 0});
    }

    // What another process holding the same credentials sees in the storage.
    std::string committed(unsigned i) {
        Store other(path, testutil::test_options());
        Partition p = other.unlock(created.keys[i], i == 0 ? "pw-a" : "pw-b");
        return std::string(other.read(p).view());
    }
    void commit_elsewhere(unsigned i, const std::string& doc) {
        Store other(path, testutil::test_options());
        Partition p = other.unlock(created.keys[i], i == 0 ? "pw-a" : "pw-b");
        other.commit(p, bytes(doc));
    }

    Entry look(Ino parent, const std::string& name) {
        Entry e;
        REQUIRE(fs->lookup(parent, name, &e) == 0);
        return e;
    }
    std::string read_all(std::uint64_t fh) {
        std::string out;
        REQUIRE(fs->read(fh, 1 << 20, 0, [&](const char* d, std::size_t n) { out.assign(d, n); }) >= 0);
        return out;
    }
    std::uint64_t open(Ino ino, int flags = O_RDONLY) {
        std::uint64_t fh = 0;
        REQUIRE(fs->open(ino, flags, &fh) == 0);
        return fh;
    }
    // Writes `text` into a new scratch file `name` in `dir` and closes it.
    Entry put(Ino dir, const std::string& name, const std::string& text) {
        Entry e;
        std::uint64_t fh = 0;
        REQUIRE(fs->create(dir, name, 0600, O_WRONLY | O_CREAT, me, &e, &fh) == 0);
        REQUIRE(fs->write(fh, text.data(), text.size(), 0) == static_cast<long>(text.size()));
        REQUIRE(fs->flush(fh) == 0);
        REQUIRE(fs->release(fh) == 0);
        return e;
    }
    std::vector<std::string> names(Ino dir) {
        std::vector<DirEntry> entries;
        REQUIRE(fs->readdir(dir, entries) == 0);
        std::vector<std::string> out;
        for (auto& e : entries) out.push_back(e.name);
        return out;
    }
};

}  // namespace

TEST_CASE("partition files and scratch names are cached, the root is not; save by rename commits", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    CHECK(a.timeout > 0);  // (the watcher makes the kernel forget it when an outside commit shows)
    struct stat st{};
    double root_timeout = 1;
    REQUIRE(m.fs->getattr(kRootIno, &st, &root_timeout) == 0);
    CHECK(root_timeout == 0);
    CHECK(S_ISREG(a.attr.st_mode));
    CHECK(m.read_all(m.open(a.ino)) == "{}");
    Entry tmp = m.put(kRootIno, "a.json.tmp", "{\"k\": 1}");
    CHECK(tmp.timeout > 0);
    REQUIRE(m.fs->rename(kRootIno, "a.json.tmp", kRootIno, "a.json", 0) == 0);
    CHECK(m.committed(0) == "{\"k\": 1}");
    CHECK(m.look(kRootIno, "a.json").ino == tmp.ino);
    CHECK(m.names(kRootIno) == std::vector<std::string>{".", "..", "a.json", "b.json"});
}

TEST_CASE("invalid JSON is refused at close with EINVAL and the reason in the error attribute", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    std::uint64_t fh = m.open(a.ino, O_WRONLY | O_TRUNC);
    REQUIRE(m.fs->write(fh, "{oops", 5, 0) == 5);
    CHECK(m.fs->flush(fh) == -EINVAL);
    char value[512];
    long n = m.fs->getxattr(a.ino, "user.shamirfs.error", value, sizeof(value));
    REQUIRE(n > 0);
    CHECK(std::string(value, static_cast<std::size_t>(n)).find("JSON") != std::string::npos);
    CHECK(m.committed(0) == "{}");
    m.fs->release(fh);
}

TEST_CASE("an open handle keeps its text after a rename over its name and after unlink", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    std::uint64_t reader = m.open(a.ino);
    m.put(kRootIno, "new", "{\"v\": 2}");
    REQUIRE(m.fs->rename(kRootIno, "new", kRootIno, "a.json", 0) == 0);
    CHECK(m.read_all(reader) == "{}");
    struct stat st{};
    double timeout = 0;
    REQUIRE(m.fs->getattr(a.ino, &st, &timeout) == 0);  // the kernel still holds it: fstat works
    CHECK(st.st_nlink == 0);
    Entry now = m.look(kRootIno, "a.json");
    CHECK(now.ino != a.ino);
    CHECK(m.read_all(m.open(now.ino)) == "{\"v\": 2}");

    Entry s = m.put(kRootIno, "scratch", "text");
    std::uint64_t fh = m.open(s.ino);
    REQUIRE(m.fs->unlink(kRootIno, "scratch") == 0);
    CHECK(m.read_all(fh) == "text");
    REQUIRE(m.fs->getattr(s.ino, &st, &timeout) == 0);
    CHECK(st.st_nlink == 0);
    m.fs->release(fh);
    // Once the kernel forgets it too, the inode is gone.
    m.fs->forget(s.ino, 2);  // put's create and the lookup count... create counted one
    CHECK(m.fs->getattr(s.ino, &st, &timeout) == -ENOENT);
    m.fs->release(reader);
}

TEST_CASE("scratch directories: nested, renamed, removed; rules of rmdir and rename", "[memfs]") {
    Mounted m;
    Entry d;
    REQUIRE(m.fs->mkdir(kRootIno, "d", 0700, m.me, &d) == 0);
    CHECK(S_ISDIR(d.attr.st_mode));
    CHECK(d.attr.st_uid == 1000);
    Entry sub;
    REQUIRE(m.fs->mkdir(d.ino, "sub", 0755, m.me, &sub) == 0);
    Entry f = m.put(sub.ino, "a.json", "not a partition here");
    CHECK(m.fs->rmdir(kRootIno, "d") == -ENOTEMPTY);
    CHECK(m.fs->rename(kRootIno, "d", sub.ino, "inside", 0) == -EINVAL);  // into itself
    CHECK(m.fs->mkdir(kRootIno, "a.json", 0700, m.me, &sub) == -EEXIST);
    REQUIRE(m.fs->rename(d.ino, "sub", kRootIno, "moved", 0) == 0);
    Entry moved = m.look(kRootIno, "moved");
    CHECK(m.look(moved.ino, "a.json").ino == f.ino);
    std::vector<DirEntry> entries;
    REQUIRE(m.fs->readdir(moved.ino, entries) == 0);
    CHECK(entries[1].name == "..");
    CHECK(entries[1].ino == kRootIno);
    CHECK(m.fs->rename(kRootIno, "moved", kRootIno, "b.json", 0) == -ENOTDIR);  // a directory onto a file
    CHECK(m.fs->rename(kRootIno, "b.json", kRootIno, "moved", 0) == -EISDIR);   // a file onto a directory
    REQUIRE(m.fs->unlink(kRootIno, "b.json") == 0);
    CHECK(m.fs->mkdir(kRootIno, "b.json", 0700, m.me, &sub) == -EPERM);  // a partition's name is for its document
    CHECK(m.fs->rmdir(kRootIno, "moved") == -ENOTEMPTY);
    REQUIRE(m.fs->unlink(moved.ino, "a.json") == 0);
    REQUIRE(m.fs->rmdir(kRootIno, "moved") == 0);
    REQUIRE(m.fs->rmdir(kRootIno, "d") == 0);
    CHECK(m.names(kRootIno) == std::vector<std::string>{".", "..", "a.json"});
    CHECK(m.committed(1) == "{}");  // unlinking a document does not erase it
}

TEST_CASE("directories count against memory_max", "[memfs]") {
    Mounted m(64 * 1024);  // the two "{}" documents and fifteen directories
    Entry e;
    int made = 0, r = 0;
    while ((r = m.fs->mkdir(kRootIno, "d" + std::to_string(made), 0700, m.me, &e)) == 0) ++made;
    CHECK(r == -ENOSPC);
    CHECK(made == 15);
}

TEST_CASE("names over 255 bytes: ENAMETOOLONG everywhere; directory times move", "[memfs]") {
    Mounted m;
    const std::string longname(256, 'x'), ok(255, 'y');
    Entry e;
    std::uint64_t fh = 0;
    CHECK(m.fs->lookup(kRootIno, longname, &e) == -ENAMETOOLONG);
    CHECK(m.fs->create(kRootIno, longname, 0600, O_WRONLY, m.me, &e, &fh) == -ENAMETOOLONG);
    CHECK(m.fs->mkdir(kRootIno, longname, 0700, m.me, &e) == -ENAMETOOLONG);
    CHECK(m.fs->symlink("t", kRootIno, longname, m.me, &e) == -ENAMETOOLONG);
    CHECK(m.fs->unlink(kRootIno, longname) == -ENAMETOOLONG);
    struct stat root{};
    double t = 0;
    REQUIRE(m.fs->getattr(kRootIno, &root, &t) == 0);
    m.put(kRootIno, ok, "x");
    CHECK(m.fs->rename(kRootIno, ok, kRootIno, longname, 0) == -ENAMETOOLONG);
    struct stat after{};
    REQUIRE(m.fs->getattr(kRootIno, &after, &t) == 0);
    CHECK(after.st_mtim.tv_sec > root.st_mtim.tv_sec);  // (created at t=1)
    CHECK(after.st_ctim.tv_sec > root.st_ctim.tv_sec);
}

TEST_CASE("chgrp to one's own group works, to another group or owner does not", "[memfs]") {
    Mounted m;
    Entry f = m.put(kRootIno, "f", "x");
    struct stat st{};
    double t = 0;
    SetAttr grp;
    grp.gid = 27;  // a supplementary group of the caller
    REQUIRE(m.fs->setattr(f.ino, 0, grp, m.me, &st, &t) == 0);
    CHECK(st.st_gid == 27);
    grp.gid = 4242;
    CHECK(m.fs->setattr(f.ino, 0, grp, m.me, &st, &t) == -EPERM);
    SetAttr own;
    own.uid = 0;
    CHECK(m.fs->setattr(f.ino, 0, own, m.me, &st, &t) == -EPERM);
    Caller root{0, 0, {}};
    CHECK(m.fs->setattr(f.ino, 0, own, root, &st, &t) == 0);
    CHECK(st.st_uid == 0);
}

TEST_CASE("a commit made outside the mount shows as a new inode; open handles keep the old text", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    std::uint64_t reader = m.open(a.ino);
    m.commit_elsewhere(0, "{\"from\": \"cli\"}");
    CHECK(m.fs->watch_step() == std::vector<std::string>{"a.json"});  // the name the kernel must forget
    CHECK(m.fs->watch_step().empty());
    Entry now = m.look(kRootIno, "a.json");
    CHECK(now.ino != a.ino);
    CHECK(now.attr.st_size == 15);
    CHECK(now.attr.st_mtim.tv_sec > a.attr.st_mtim.tv_sec);
    CHECK(m.read_all(m.open(now.ino)) == "{\"from\": \"cli\"}");
    CHECK(m.read_all(reader) == "{}");
    // b is untouched and keeps its inode.
    CHECK(m.look(kRootIno, "b.json").ino == m.look(kRootIno, "b.json").ino);
    // The mount's own commit afterwards is not taken for an outside change.
    m.put(kRootIno, "t", "{\"mine\": 1}");
    REQUIRE(m.fs->rename(kRootIno, "t", kRootIno, "a.json", 0) == 0);
    Entry mine = m.look(kRootIno, "a.json");
    CHECK(m.look(kRootIno, "a.json").ino == mine.ino);
    CHECK(m.committed(0) == "{\"mine\": 1}");
}

TEST_CASE("an outside commit while a text is being edited: the edit stays, its save says it replaced it", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    std::uint64_t w = m.open(a.ino, O_WRONLY | O_TRUNC);
    REQUIRE(m.fs->write(w, "{\"x\":", 5, 0) == 5);
    m.commit_elsewhere(0, "{\"other\": 1}");
    CHECK(m.look(kRootIno, "a.json").ino == a.ino);  // the text being written stays
    REQUIRE(m.fs->write(w, "1}", 2, 5) == 2);
    REQUIRE(m.fs->flush(w) == 0);
    CHECK(m.committed(0) == "{\"x\":1}");
    char value[512];
    long n = m.fs->getxattr(a.ino, "user.shamirfs.error", value, sizeof(value));
    REQUIRE(n > 0);
    CHECK(std::string(value, static_cast<std::size_t>(n)).find("replaced") != std::string::npos);
    m.fs->release(w);
}

TEST_CASE("a storage replaced by one these credentials do not open: EIO, never the stale text", "[memfs]") {
    Mounted m;
    Entry a = m.look(kRootIno, "a.json");
    testutil::TempDir other;
    const std::string p2 = other.file("enc.json");
    Store::create(p2, testutil::cheap_spec(2), testutil::passwords({"x", "y"}), testutil::test_options());
    REQUIRE(::rename(p2.c_str(), m.path.c_str()) == 0);
    Entry now = m.look(kRootIno, "a.json");
    CHECK(now.ino != a.ino);
    std::uint64_t fh = 0;
    CHECK(m.fs->open(now.ino, O_RDONLY, &fh) == -EIO);
    char value[512];
    CHECK(m.fs->getxattr(now.ino, "user.shamirfs.error", value, sizeof(value)) > 0);
    CHECK(m.fs->status().find("\"vanished\":\"") != std::string::npos);
}

TEST_CASE("fifos and devices are not made; symlinks are, not at a partition's name", "[memfs]") {
    Mounted m;
    Entry e;
    REQUIRE(m.fs->symlink("a.json", kRootIno, "link", m.me, &e) == 0);
    std::string target;
    REQUIRE(m.fs->readlink(e.ino, &target) == 0);
    CHECK(target == "a.json");
    CHECK(m.fs->symlink("x", kRootIno, "b.json", m.me, &e) == -EEXIST);
    REQUIRE(m.fs->unlink(kRootIno, "b.json") == 0);
    CHECK(m.fs->symlink("x", kRootIno, "b.json", m.me, &e) == -EPERM);
    CHECK(m.committed(1) == "{}");  // unlinking a document does not erase it
}

TEST_CASE("reads go on while a commit runs", "[memfs]") {
    Mounted m;
    Entry b = m.look(kRootIno, "b.json");
    std::uint64_t reader = m.open(b.ino);
    std::string big = "{\"k\": \"" + std::string(4 << 20, 'z') + "\"}";
    Entry t = m.put(kRootIno, "t", big);
    std::uint64_t writer_fh = m.open(t.ino, O_WRONLY);
    std::atomic<bool> started{false}, done{false};
    std::atomic<int> renamed{1};
    int reads_during = 0;
    std::thread writer([&] {  // (no Catch assertion on this thread: Catch2 is not thread-safe)
        started = true;
        renamed = m.fs->rename(kRootIno, "t", kRootIno, "a.json", 0);  // a commit of 4 MiB: many milliseconds
        done = true;
    });
    while (!started) std::this_thread::yield();
    while (!m.fs->commit_running() && !done) std::this_thread::yield();  // the rename has taken the text
    bool wrote_during = false;
    while (!done) {
        if (m.read_all(reader) == "{}") ++reads_during;
        if (!wrote_during && reads_during > 5 && !done) {
            // A write to the text being committed: it gets its own copy.
            wrote_during = m.fs->write(writer_fh, "X", 1, 0) == 1;
        }
    }
    writer.join();
    CHECK(renamed == 0);
    CHECK(reads_during > 10);  // a lock held across the commit would let one through at most
    const std::string committed = m.committed(0);
    CHECK(committed.size() == big.size());
    CHECK(committed[0] == '{');  // the commit kept the text as it was when it began
    if (wrote_during) CHECK(m.read_all(m.open(m.look(kRootIno, "a.json").ino))[0] == 'X');
    m.fs->release(writer_fh);
}
