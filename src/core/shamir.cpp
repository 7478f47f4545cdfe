#include "shamirfs/shamir.hpp"

#include <sodium.h>

#include <algorithm>
#include <string>

#include "shamirfs/error.hpp"

namespace shamirfs::shamir {

using gf::Fe;

void validate(unsigned threshold, std::span<const Fe> xs) {
    if (threshold < kMinThreshold)
        throw Error(Errc::usage, "shamir: threshold must be at least " + std::to_string(kMinThreshold));
    if (xs.size() > kMaxShares)
        throw Error(Errc::usage, "shamir: at most " + std::to_string(kMaxShares) + " shares");
    if (xs.size() < threshold) throw Error(Errc::usage, "shamir: fewer shares than the threshold");
    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (gf::is_zero(xs[i])) throw Error(Errc::usage, "shamir: share ID 0 would reveal the secret");
        for (std::size_t j = 0; j < i; ++j)
            if (xs[i] == xs[j]) throw Error(Errc::usage, "shamir: duplicate share ID");
    }
}

Splitter::Splitter(unsigned threshold, std::span<const Fe> xs) : t_(threshold), xs_(xs.begin(), xs.end()) {
    validate(threshold, xs);
    for (const auto& x : xs) {
        if (!std::all_of(x.limb.begin() + 1, x.limb.end(), [](std::uint64_t l) { return l == 0; })) {
            small_.clear();
            break;
        }
        small_.push_back(x.limb[0]);
    }
}

void Splitter::split(const Fe& secret, std::span<Fe> ys, Rng& rng) const {
    if (ys.size() != xs_.size()) throw Error(Errc::usage, "shamir: output size differs from share count");
    Fe coeff[kMaxShares];
    for (unsigned k = 1; k < t_; ++k) coeff[k] = rng.field_element();
    // Horner: y = ((c_{t-1} x + c_{t-2}) x + ...) x + secret.
    auto times = [&](const Fe& y, std::size_t i) { return small_.empty() ? gf::mul(y, xs_[i]) : gf::mul_u64(y, small_[i]); };
    for (std::size_t i = 0; i < xs_.size(); ++i) {
        Fe y = coeff[t_ - 1];
        for (unsigned k = t_ - 1; k-- > 1;) y = gf::add(times(y, i), coeff[k]);
        ys[i] = gf::add(times(y, i), secret);
    }
    sodium_memzero(coeff, sizeof(coeff));
}

void split(const Fe& secret, unsigned threshold, std::span<const Fe> xs, std::span<Fe> ys, Rng& rng) {
    Splitter(threshold, xs).split(secret, ys, rng);
}

LagrangeAtZero::LagrangeAtZero(std::span<const Fe> xs) {
    validate(static_cast<unsigned>(xs.size()), xs);
    coeff_.resize(xs.size());
    // l_i(0) = prod_{j != i} x_j / (x_j - x_i)
    for (std::size_t i = 0; i < xs.size(); ++i) {
        Fe num = gf::one(), den = gf::one();
        for (std::size_t j = 0; j < xs.size(); ++j) {
            if (j == i) continue;
            num = gf::mul(num, xs[j]);
            den = gf::mul(den, gf::sub(xs[j], xs[i]));
        }
        coeff_[i] = gf::mul(num, gf::inv(den));
    }
}

Fe LagrangeAtZero::combine(std::span<const Fe> ys) const {
    if (ys.size() != coeff_.size()) throw Error(Errc::usage, "shamir: share count differs from the basis");
    Fe s;
    for (std::size_t i = 0; i < ys.size(); ++i) s = gf::add(s, gf::mul(coeff_[i], ys[i]));
    return s;
}

Fe combine(std::span<const Fe> xs, std::span<const Fe> ys) {
    if (xs.size() != ys.size()) throw Error(Errc::usage, "shamir: as many share IDs as shares needed");
    return LagrangeAtZero(xs).combine(ys);
}

Fe interpolate_at(std::span<const Fe> xs, std::span<const Fe> ys, const Fe& x) {
    if (xs.size() != ys.size() || xs.empty()) throw Error(Errc::usage, "shamir: bad interpolation input");
    Fe s;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        Fe num = gf::one(), den = gf::one();
        for (std::size_t j = 0; j < xs.size(); ++j) {
            if (j == i) continue;
            num = gf::mul(num, gf::sub(x, xs[j]));
            den = gf::mul(den, gf::sub(xs[i], xs[j]));
        }
        s = gf::add(s, gf::mul(ys[i], gf::mul(num, gf::inv(den))));
    }
    return s;
}

namespace {

Fe eval(const std::vector<Fe>& poly, const Fe& x) {
    Fe y;
    for (std::size_t k = poly.size(); k-- > 0;) y = gf::add(gf::mul(y, x), poly[k]);
    return y;
}

// Solves A z = b (rows x cols, augmented in the last column); free variables
// are set to 0. Returns false when the system is inconsistent.
bool solve(std::vector<std::vector<Fe>>& a, std::size_t cols, std::vector<Fe>& z) {
    std::size_t rows = a.size(), r = 0;
    std::vector<std::size_t> pivot_col;
    for (std::size_t c = 0; c < cols && r < rows; ++c) {
        std::size_t p = r;
        while (p < rows && gf::is_zero(a[p][c])) ++p;
        if (p == rows) continue;
        std::swap(a[p], a[r]);
        Fe iv = gf::inv(a[r][c]);
        for (std::size_t k = c; k <= cols; ++k) a[r][k] = gf::mul(a[r][k], iv);
        for (std::size_t i = 0; i < rows; ++i) {
            if (i == r || gf::is_zero(a[i][c])) continue;
            Fe f = a[i][c];
            for (std::size_t k = c; k <= cols; ++k) a[i][k] = gf::sub(a[i][k], gf::mul(f, a[r][k]));
        }
        pivot_col.push_back(c);
        ++r;
    }
    for (std::size_t i = r; i < rows; ++i)
        if (!gf::is_zero(a[i][cols])) return false;
    z.assign(cols, Fe{});
    for (std::size_t i = 0; i < r; ++i) z[pivot_col[i]] = a[i][cols];
    return true;
}

}  // namespace

std::optional<Decoded> decode(std::span<const Fe> xs, std::span<const Fe> ys, unsigned threshold) {
    validate(threshold, xs);
    if (ys.size() != xs.size()) throw Error(Errc::usage, "shamir: as many share IDs as shares needed");
    const std::size_t n = xs.size();
    const std::size_t e = (n - threshold) / 2;
    // Unknowns: Q (degree < e + t: e + t coefficients), E monic of degree e
    // (e coefficients). Q(x_i) - y_i E'(x_i) = y_i x_i^e.
    const std::size_t nq = e + threshold, cols = nq + e;
    std::vector<std::vector<Fe>> a(n, std::vector<Fe>(cols + 1));
    for (std::size_t i = 0; i < n; ++i) {
        Fe xp = gf::one();
        for (std::size_t k = 0; k < nq; ++k) {
            a[i][k] = xp;
            if (k < e) a[i][nq + k] = gf::neg(gf::mul(ys[i], xp));
            if (k == e) a[i][cols] = gf::mul(ys[i], xp);
            xp = gf::mul(xp, xs[i]);
        }
    }
    std::vector<Fe> z;
    if (!solve(a, cols, z)) return std::nullopt;
    std::vector<Fe> q(z.begin(), z.begin() + static_cast<long>(nq));
    std::vector<Fe> ecoef(z.begin() + static_cast<long>(nq), z.end());
    ecoef.push_back(gf::one());  // monic
    // P = Q / E by long division; the remainder must vanish.
    std::vector<Fe> p(threshold);
    for (std::size_t k = nq; k-- > e;) {
        Fe c = q[k];              // leading coefficient (E is monic)
        std::size_t shift = k - e;  // < t, since deg Q < e + t
        p[shift] = c;
        for (std::size_t j = 0; j <= e; ++j) q[shift + j] = gf::sub(q[shift + j], gf::mul(c, ecoef[j]));
    }
    for (std::size_t k = 0; k < e; ++k)
        if (!gf::is_zero(q[k])) return std::nullopt;
    Decoded out{p[0], {}};
    for (std::size_t i = 0; i < n; ++i)
        if (!(eval(p, xs[i]) == ys[i])) out.bad.push_back(i);
    if (out.bad.size() > e) return std::nullopt;
    for (auto& c : p) c = Fe{};
    return out;
}

}  // namespace shamirfs::shamir
