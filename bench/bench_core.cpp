// Times the core with the KDF excluded (scripts/bench): RUNS unlocks (KDF + one
// row), then RUNS commits of DOCUMENT and RUNS reads (load + parse + decode;
// "load" is the read-and-parse part alone).
// With --unlock-only: one unlock in this fresh process (paired with a mount by
// scripts/bench). With KEEP_KEYFILE KEEP_PASSFILE after RUNS, the commits keep
// that partition too (a deniable storage rewrites every slot). Each commit
// follows a floor of its own ("floor": write + fsync of a file the storage's
// size; "replace": the same, renamed over a file and the directory fsynced,
// what any crash-safe replacement costs; "commit_cpu": the CPU time of all the
// process's threads during each commit). Prints one JSON object of seconds.
#include <fcntl.h>
#include <sodium.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shamirfs/keys.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/store.hpp"

using namespace shamirfs;
using Clock = std::chrono::steady_clock;

static std::string slurp(const char* path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

static std::string list(const std::vector<double>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out + "]";
}

// CPU seconds of the whole process (every thread) so far.
static double cpu_seconds() {
    struct rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The floor (as scripts/bench measures it): a new file of `bytes` written in
// 1 MiB blocks, fsynced, closed; seconds. A file already at `path` is
// unlinked first and closed after the clock stops: it is freed then, as a
// commit frees the storage it replaced (truncating it inside the clock would
// add the freeing of its blocks, with a discard on some disks).
static double floor_write(const std::string& path, std::size_t bytes) {
    static const std::vector<char> block = [] {
        std::vector<char> b(1 << 20);
        randombytes_buf(b.data(), b.size());
        return b;
    }();
    const int old = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (old >= 0) ::unlink(path.c_str());
    auto t0 = Clock::now();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) std::exit(3);
    for (std::size_t left = bytes; left > 0;) {
        const ssize_t n = ::write(fd, block.data(), std::min(left, block.size()));
        if (n <= 0) std::exit(3);
        left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) std::exit(3);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (old >= 0) ::close(old);
    return seconds;
}

// The least any crash-safe replacement of a file costs (what an editor that
// syncs does): a new file of `bytes` written and fsynced (floor_write), renamed
// over `target`, and the directory fsynced; seconds.
// (The file replaced is closed after the clock stops, as a commit closes it in
// the background: its blocks are freed, with a discard on some disks.)
static double floor_replace(const std::string& temp, const std::string& target, std::size_t bytes) {
    const int old = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
    auto t0 = Clock::now();
    floor_write(temp, bytes);
    if (::rename(temp.c_str(), target.c_str()) != 0) std::exit(3);
    const std::string dir = std::filesystem::path(target).parent_path().string();
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0 || ::close(fd) != 0) std::exit(3);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (old >= 0) ::close(old);
    return seconds;
}

int main(int argc, char** argv) {
    const bool unlock_only = argc == 5 && std::string(argv[4]) == "--unlock-only";
    if (argc != 6 && argc != 8 && !unlock_only) {
        std::fprintf(stderr, "usage: bench_core STORAGE KEYFILE PASSFILE (DOCUMENT RUNS [KEEP_KEYFILE KEEP_PASSFILE] | --unlock-only)\n");
        return 2;
    }
    log::set_level(std::getenv("BENCH_DEBUG") ? log::Level::debug : log::Level::error);  // BENCH_DEBUG=1: commit phases
    Store store(argv[1]);
    store.load();
    std::string pw = slurp(argv[3]);
    pw = pw.substr(0, pw.find('\n'));
    const MapKey key = parse_map_key(slurp(argv[2]));
    if (unlock_only) {  // one unlock in a fresh process, as a mount does it
        auto t0 = Clock::now();
        store.unlock(key, pw);
        std::printf("{\"unlock\": %f}\n", std::chrono::duration<double>(Clock::now() - t0).count());
        return 0;
    }
    const int runs = std::stoi(argv[5]);
    std::vector<double> unlock;
    Partition p;
    // BENCH_COMMITS_ONLY=1 (for profiling commits): one unlock and one read
    const int others = std::getenv("BENCH_COMMITS_ONLY") ? 1 : runs;
    for (int i = 0; i < others; ++i) {
        auto t0 = Clock::now();
        p = store.unlock(key, pw);
        unlock.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::string doc = slurp(argv[4]);
    std::vector<const Partition*> keep;
    Partition kept;
    if (argc == 8) {
        std::string kpw = slurp(argv[7]);
        kept = store.unlock(parse_map_key(slurp(argv[6])), kpw.substr(0, kpw.find('\n')));
        keep.push_back(&kept);
    }
    // Each commit is paired with the floor measured right before it: write +
    // fsync of a file of the storage's size beside it (scripts/bench takes
    // the median of the pairs' ratios: the disk's speed drifts).
    const std::string floor_path = std::string(argv[1]) + ".floor";
    std::vector<double> commit, commit_cpu, floor, replace, read, load;
    const auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(10)); };  // (each starts on a quiet machine)
    for (int i = 0; i < runs; ++i) {
        settle();
        floor.push_back(floor_write(floor_path, std::filesystem::file_size(argv[1])));
        settle();
        replace.push_back(floor_replace(floor_path + ".new", floor_path, std::filesystem::file_size(argv[1])));
        settle();
        const double c0 = cpu_seconds();
        auto t0 = Clock::now();
        store.commit(p, std::span(reinterpret_cast<const std::uint8_t*>(doc.data()), doc.size()), keep);
        commit.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        commit_cpu.push_back(cpu_seconds() - c0);
    }
    std::filesystem::remove(floor_path);
    for (int i = 0; i < others; ++i) {
        auto t0 = Clock::now();
        store.load();
        load.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        SecureBuffer got = store.read(p);
        read.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        if (got.size() != doc.size()) return 1;
    }
    std::printf("{\"unlock\": %s, \"commit\": %s, \"commit_cpu\": %s, \"floor\": %s, \"replace\": %s, \"read\": %s, \"load\": %s}\n",
                list(unlock).c_str(), list(commit).c_str(), list(commit_cpu).c_str(), list(floor).c_str(), list(replace).c_str(), list(read).c_str(),
                list(load).c_str());
    return 0;
}
