// Statistics for the deniability evidence: can the columns of a written
// partition, an unwritten one and an unassigned slot be told apart?
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "shamirfs/matrix.hpp"
#include "shamirfs/shamir.hpp"

namespace stats {

// Critical values at a significance level of about 1e-5 (a correct
// implementation fails a check once in 100 000 runs).
inline constexpr double kChi255 = 363.0;  // chi-square, 255 degrees of freedom
inline double ks_critical(std::size_t n) { return 2.47 / std::sqrt(static_cast<double>(n)); }
inline double ks2_critical(std::size_t n, std::size_t m) {
    return 2.47 * std::sqrt(static_cast<double>(n + m) / (static_cast<double>(n) * static_cast<double>(m)));
}

inline double chi_square(const std::array<std::size_t, 256>& counts) {
    std::size_t total = 0;
    for (auto c : counts) total += c;
    double expect = static_cast<double>(total) / 256.0, chi = 0;
    for (auto c : counts) chi += (static_cast<double>(c) - expect) * (static_cast<double>(c) - expect) / expect;
    return chi;
}

// One-sample Kolmogorov-Smirnov distance to U(0, 1).
inline double ks_uniform(std::vector<double> xs) {
    std::sort(xs.begin(), xs.end());
    double d = 0, n = static_cast<double>(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i)
        d = std::max({d, (static_cast<double>(i) + 1) / n - xs[i], xs[i] - static_cast<double>(i) / n});
    return d;
}

inline double ks_two_sample(std::vector<double> a, std::vector<double> b) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::size_t i = 0, j = 0;
    double d = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i] <= b[j]) ++i;
        else ++j;
        d = std::max(d, std::fabs(static_cast<double>(i) / static_cast<double>(a.size()) -
                                  static_cast<double>(j) / static_cast<double>(b.size())));
    }
    return d;
}

struct GroupStats {
    double chi_bytes = 0;    // cell bytes 1..65 (byte 0 only holds bit 520)
    double chi_top = 0;      // bits 520..513 of each value
    double ks_value = 0;     // value / p against U(0, 1)
    double chi_secret = 0;   // bytes of the secrets a row's shares interpolate to
    std::size_t cells = 0;
    std::vector<double> values;
};

// A value as a double in [0, 1): value / 2^521 (p = 2^521 - 1).
inline double unit(const shamirfs::gf::Fe& v) {
    return (static_cast<double>(v.limb[8]) * 18446744073709551616.0 + static_cast<double>(v.limb[7])) /
           std::ldexp(1.0, 73);
}

inline GroupStats analyse(const shamirfs::Matrix& m, unsigned slot) {
    using namespace shamirfs;
    const unsigned n = m.params().shares, t = m.params().threshold;
    std::array<std::size_t, 256> bytes{}, top{}, secret{};
    GroupStats g;
    auto xs = m.slot_share_ids(slot);
    shamir::Interpolator basis(std::span<const gf::Fe>(xs.data(), t));
    std::vector<gf::Fe> ys(t);
    for (std::size_t r = 0; r < m.capacity(); ++r) {
        for (unsigned i = 0; i < n; ++i) {
            gf::Fe v = m.get(r, slot * n + i);
            std::array<std::uint8_t, gf::kBytes> b;
            gf::to_bytes(v, b);
            for (std::size_t k = 1; k < b.size(); ++k) ++bytes[b[k]];
            ++top[(v.limb[8] >> 1) & 0xff];
            g.values.push_back(unit(v));
            if (i < t) ys[i] = v;
        }
        for (unsigned j = 0; j < m.params().pack; ++j) {  // every chunk of the row
            std::array<std::uint8_t, 64> chunk;
            gf::Fe c = shamir::Interpolator::apply(basis.coefficient(j), ys);
            if (m.params().version >= 2) c.limb[8] = 0;  // format 2: the chunk is the low 512 bits
            if (gf::to_chunk(c, chunk))
                for (auto c : chunk) ++secret[c];
            else
                ++secret[0];  // not a 64-byte secret at all: counts against uniformity
        }
    }
    g.chi_bytes = chi_square(bytes);
    g.chi_top = chi_square(top);
    g.ks_value = ks_uniform(g.values);
    g.chi_secret = chi_square(secret);
    g.cells = g.values.size();
    return g;
}

inline bool looks_random(const GroupStats& g) {
    return g.chi_bytes < kChi255 && g.chi_top < kChi255 && g.ks_value < ks_critical(g.cells) && g.chi_secret < kChi255;
}

}  // namespace stats
