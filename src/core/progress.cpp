#include "shamirfs/progress.hpp"

#include <algorithm>
#include <atomic>

namespace shamirfs::progress {
namespace {
std::atomic<std::uint64_t> g_done{0}, g_total{0};
}  // namespace

void start(std::uint64_t total) {
    g_done = 0;
    g_total = total;
}

void advance(std::uint64_t n) { g_done += n; }

double fraction() {
    const std::uint64_t total = g_total;
    if (total == 0) return -1;
    return std::min(1.0, static_cast<double>(g_done.load()) / static_cast<double>(total));
}

}  // namespace shamirfs::progress
