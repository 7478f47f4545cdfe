// After the calls of `shamirfs cat`, `update` and a mount's unlock (key and
// password files read, the key parsed, the partition unlocked, read and
// committed), no copy of the key text or the password remains in this
// process's writable heap: every copy lived in wiping buffers. A deliberately
// leaked ordinary string is found: the scan can fail.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <sstream>

#include "common/credentials.hpp"
#include "helpers.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/keys.hpp"
#include "shamirfs/secure_buffer.hpp"

using namespace shamirfs;

namespace {

constexpr std::uint8_t kMask = 0x5a;

// The pattern is kept masked (XOR kMask), so that the test's own copy is not
// what the scan finds.
std::vector<std::uint8_t> masked(std::string_view s) {
    std::vector<std::uint8_t> m(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) m[i] = static_cast<std::uint8_t>(s[i]) ^ kMask;
    return m;
}

// Occurrences of the (masked) pattern in the writable heap and anonymous
// writable mappings of this process, read through /proc/self/mem into a
// mapping of the scan's own (left out of the scan).
std::size_t count_in_memory(const std::vector<std::uint8_t>& pattern) {
    constexpr std::size_t kChunk = 1 << 20;
    auto* buf = static_cast<std::uint8_t*>(::mmap(nullptr, kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(buf != MAP_FAILED);
    const auto own = reinterpret_cast<std::uintptr_t>(buf);
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> regions;
    {
        std::ifstream maps("/proc/self/maps");
        std::string line;
        while (std::getline(maps, line)) {
            std::istringstream f(line);
            std::string range, perms, offset, dev, inode, name;
            f >> range >> perms >> offset >> dev >> inode;
            std::getline(f, name);
            name.erase(0, name.find_first_not_of(' '));
            if (perms.size() < 2 || perms[0] != 'r' || perms[1] != 'w') continue;
            if (!name.empty() && name != "[heap]") continue;  // the heap and anonymous memory
            const auto dash = range.find('-');
            const std::uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16), hi = std::stoull(range.substr(dash + 1), nullptr, 16);
            if (lo <= own && own < hi) continue;
            if (hi - lo > (std::uintptr_t{1} << 34)) continue;  // a reservation, not a heap (16 GiB and more)
            regions.emplace_back(lo, hi);
        }
    }
    const int fd = ::open("/proc/self/mem", O_RDONLY);
    REQUIRE(fd >= 0);
    std::size_t found = 0;
    for (auto [lo, hi] : regions) {
        // Chunks overlap by the pattern's length, so nothing is missed at a seam.
        for (std::uintptr_t at = lo; at < hi; at += kChunk - pattern.size()) {
            const std::size_t want = std::min<std::uintptr_t>(kChunk, hi - at);
            const ssize_t n = ::pread(fd, buf, want, static_cast<off_t>(at));
            if (n <= 0) break;
            for (std::size_t i = 0; i + pattern.size() <= static_cast<std::size_t>(n); ++i) {
                std::size_t k = 0;
                while (k < pattern.size() && (buf[i + k] ^ kMask) == pattern[k]) ++k;
                if (k == pattern.size()) ++found;
            }
            if (want < kChunk) break;
        }
    }
    ::close(fd);
    ::munmap(buf, kChunk);
    return found;
}

struct Secrets {
    testutil::TempDir dir;
    std::string path = dir.file("enc.json"), key_path = dir.file("a.key"), pw_path = dir.file("a.pass");
    std::vector<std::uint8_t> key_text, key_body, password;  // masked

    Secrets() {
        // The password: random, made and written from locked memory only.
        SecureBuffer pw(32);
        randombytes_buf(pw.data(), 24);
        for (std::size_t i = 0; i < 24; ++i) pw.data()[i] = static_cast<std::uint8_t>('a' + pw.data()[i] % 26);
        pw.data()[24] = '\n';
        write_new_file(pw_path, std::string_view(reinterpret_cast<const char*>(pw.data()), 25));
        password = masked(std::string_view(reinterpret_cast<const char*>(pw.data()), 24));
        std::vector<SecureBuffer> pws;
        pws.emplace_back(pw.data(), 24);
        CreateSpec spec = testutil::cheap_spec(1);
        auto created = Store::create(path, spec, pws, testutil::test_options());
        SecureBuffer text = format_map_key(created.keys[0]);
        write_new_file(key_path, text.view());
        key_text = masked(text.view());
        for (char c : text.view())
            if (c != '-') key_body.push_back(static_cast<std::uint8_t>(c) ^ kMask);
    }

    // What `cat`, `update` and a mount's unlock do with the files.
    void use() {
        Store store(path, testutil::test_options());
        SecureBuffer key_file = cli::read_secret_file(key_path, "key file");
        SecureBuffer pw = cli::read_secret_file(pw_path, "password file");
        MapKey key = parse_map_key(key_file.view());
        Partition p = store.unlock(key, pw.view());
        CHECK(store.read(p).size() >= 2);
        store.commit(p, testutil::bytes("{\"x\": 1}"));
        CHECK(store.read(p).view() == "{\"x\": 1}");
    }
};

}  // namespace

// Under AddressSanitizer the heap is the sanitizer's (with terabytes of shadow
// mappings that a scan would fault in): the ordinary run holds this test.
#if !defined(__SANITIZE_ADDRESS__)
TEST_CASE("no copy of the key text or the password stays in the heap", "[secrets]") {
    Secrets s;
    s.use();
    CHECK(count_in_memory(s.key_text) == 0);
    CHECK(count_in_memory(s.key_body) == 0);
    CHECK(count_in_memory(s.password) == 0);

    // The broken control: the same calls, with the key text once copied into
    // an ordinary string (as parse_map_key used to): the scan finds it.
    static std::string leaked;
    s.use();
    {
        SecureBuffer key_file = cli::read_secret_file(s.key_path, "key file");
        leaked.assign(key_file.view().begin(), key_file.view().end());
    }
    CHECK(count_in_memory(s.key_text) >= 1);
    leaked.assign(leaked.size(), 'x');
}
#endif

TEST_CASE("a secure buffer given back is wiped before the next one of its size takes its memory", "[secrets]") {
    // Small buffers and secure_alloc blocks are kept for reuse once released:
    // the next holder must find zeros, never the text of the one before.
    for (std::size_t size : {std::size_t{100}, std::size_t{5000}, std::size_t{300000}}) {
        INFO("size " << size);
        const std::uint8_t* first = nullptr;
        bool reused = false;
        for (int round = 0; round < 3; ++round) {
            SecureBuffer b(size);
            CHECK(std::all_of(b.data(), b.data() + size, [](std::uint8_t c) { return c == 0; }));
            reused = reused || b.data() == first;
            first = b.data();
            std::memset(b.data(), 0xa5, size);
        }
        CHECK(reused);  // (the memory was given again: the check above saw a used block)
        void* p = secure_alloc(size);
        REQUIRE(p != nullptr);
        std::memset(p, 0xa5, size);
        secure_free(p);
        void* q = secure_alloc(size);
        REQUIRE(q != nullptr);
        CHECK(std::all_of(static_cast<std::uint8_t*>(q), static_cast<std::uint8_t*>(q) + size,
                          [](std::uint8_t c) { return c == 0; }));
        secure_free(q);
    }
}

// (Not in the sanitizer build: AddressSanitizer turns mlock into a no-op, so
// nothing there is locked to begin with.)
#ifndef __SANITIZE_ADDRESS__
namespace {
// kB of the mapping that holds `p` that are locked (/proc/self/smaps); -1 if not found.
long locked_kb_at(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {
            inside = at >= lo && at < hi;
        } else if (inside && line.rfind("Locked:", 0) == 0) {
            return std::stol(line.substr(7));
        }
    }
    return -1;
}
}  // namespace

TEST_CASE("a kept secure block is locked again in a child of fork", "[secrets]") {
    const void* kept = nullptr;
    {
        SecureBuffer b(3000);
        kept = b.data();
        REQUIRE(locked_kb_at(kept) > 0);
    }  // (wiped and kept)
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // fork(2) passes no memory locks on: the block the child takes again
        // must have been locked again.
        const bool unlocked_before = locked_kb_at(kept) == 0;
        SecureBuffer again(3000);
        const bool same = again.data() == kept, locked = locked_kb_at(again.data()) > 0;
        ::_exit(unlocked_before && same && locked ? 0 : 1 + unlocked_before * 2 + same * 4 + locked * 8);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
#endif
