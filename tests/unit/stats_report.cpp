// Prints the deniability statistics (scripts/deniability-report).
#include <cstdio>

#include "deniability_fixture.hpp"
#include "shamirfs/log.hpp"

int main() {
    shamirfs::log::set_level(shamirfs::log::Level::warn);
    DeniabilityFixture f;
    std::printf("storage: 4 slots x 9 shares, capacity 1024 rows; partition a written (%zu rows of ciphertext),\n"
                "partition b never written, 2 slots unassigned. Critical values (alpha ~ 1e-5): chi-square(255) < %.0f,\n"
                "KS < %.4f (one sample of %zu), two-sample KS < %.4f\n\n",
                f.document_rows, stats::kChi255, stats::ks_critical(9216), std::size_t{9216}, stats::ks2_critical(9216, 9216));
    std::printf("%-34s %12s %12s %10s %14s  %s\n", "columns", "chi bytes", "chi top8", "KS v/p", "chi secrets", "verdict");
    auto row = [](const char* name, const stats::GroupStats& g) {
        std::printf("%-34s %12.1f %12.1f %10.4f %14.1f  %s\n", name, g.chi_bytes, g.chi_top, g.ks_value, g.chi_secret,
                    stats::looks_random(g) ? "random" : "DISTINGUISHABLE");
    };
    auto a = stats::analyse(f.m, f.written), b = stats::analyse(f.m, f.unwritten), u = stats::analyse(f.m, f.unassigned);
    row("written partition", a);
    row("unwritten partition", b);
    row("unassigned slot", u);
    row("broken: no encryption layer", stats::analyse(f.without_encryption(), f.written));
    row("broken: garbage < 2^512", stats::analyse(f.small_range_garbage(), f.unassigned));
    std::printf("\ntwo-sample KS written vs unassigned: %.4f, unwritten vs unassigned: %.4f\n",
                stats::ks_two_sample(a.values, u.values), stats::ks_two_sample(b.values, u.values));
    return 0;
}
