// Times the core with the KDF excluded (scripts/bench): RUNS unlocks (KDF + one
// row), then RUNS commits of DOCUMENT and RUNS reads (load + parse + decode;
// "load" is the read-and-parse part alone).
// With --unlock-only: one unlock in this fresh process (paired with a mount by
// scripts/bench). With KEEP_KEYFILE KEEP_PASSFILE after RUNS, the commits keep
// that partition too (a deniable storage rewrites every slot). Prints one JSON
// object of seconds.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
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
    std::vector<double> commit, read, load;
    for (int i = 0; i < runs; ++i) {
        auto t0 = Clock::now();
        store.commit(p, std::span(reinterpret_cast<const std::uint8_t*>(doc.data()), doc.size()), keep);
        commit.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    for (int i = 0; i < others; ++i) {
        auto t0 = Clock::now();
        store.load();
        load.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        SecureBuffer got = store.read(p);
        read.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        if (got.size() != doc.size()) return 1;
    }
    std::printf("{\"unlock\": %s, \"commit\": %s, \"read\": %s, \"load\": %s}\n", list(unlock).c_str(), list(commit).c_str(),
                list(read).c_str(), list(load).c_str());
    return 0;
}
