// Shared helpers of the unit tests: scratch directories (removed afterwards),
// cheap KDF parameters (test limits only), documents.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "shamirfs/store.hpp"

namespace testutil {

// Under AddressSanitizer the unit tests run many times slower; the heaviest
// randomized tests then take a tenth of their trials (that run is there for
// memory errors, the ordinary run for the statistics).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr int kTrialDivisor = 10;
#else
inline constexpr int kTrialDivisor = 1;
#endif

class TempDir {
public:
    TempDir() {
        std::string base = std::filesystem::current_path().string() + "/unit-scratch-XXXXXX";
        std::vector<char> tmpl(base.begin(), base.end());
        tmpl.push_back('\0');
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl.data();
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline shamirfs::StoreOptions test_options() {
    shamirfs::StoreOptions o;
    o.kdf_limits = shamirfs::test_kdf_limits();
    return o;
}

inline shamirfs::CreateSpec cheap_spec(unsigned partitions = 2) {
    shamirfs::CreateSpec s;
    s.partitions = partitions;
    s.kdf_ops = 1;
    s.kdf_mem = 8192;
    return s;
}

inline std::vector<shamirfs::SecureBuffer> passwords(std::initializer_list<std::string> pws) {
    std::vector<shamirfs::SecureBuffer> out;
    for (const auto& p : pws) out.emplace_back(p.data(), p.size());
    return out;
}

inline std::span<const std::uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
}

// A realistic JSON document of about `size` bytes: nested objects, strings,
// numbers, unicode. Deterministic for a given seed.
inline std::string make_document(std::size_t size, unsigned seed = 1) {
    std::mt19937 rng(seed);
    std::ostringstream o;
    o << "{\"users\":[";
    std::size_t i = 0;
    while (static_cast<std::size_t>(o.tellp()) < size) {
        if (i) o << ',';
        o << "{\"id\":" << i << ",\"name\":\"user-" << rng() % 100000 << " \\u00e9\xc3\xa5\xe6\x97\xa5\","
          << "\"score\":" << (rng() % 1000000) / 100.0 << ",\"tags\":[\"t" << rng() % 50 << "\",\"x" << rng() % 7
          << "\"],\"active\":" << ((rng() & 1) ? "true" : "false") << "}";
        ++i;
    }
    o << "]}";
    return o.str();
}

}  // namespace testutil
