#include "shamirfs/shamir.hpp"

#include <sodium.h>

#include <algorithm>
#include <mutex>
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
    // x^0 .. x^(t-1) of every ID as words, if each is below 2^57: t <= 64
    // products of a limb and such a power, and a carry, then fit in 128 bits.
    constexpr std::uint64_t kPowerLimit = std::uint64_t{1} << 57;
    for (const auto& x : xs) {
        bool fits = std::all_of(x.limb.begin() + 1, x.limb.end(), [](std::uint64_t l) { return l == 0; });
        std::uint64_t power = 1;
        for (unsigned k = 0; fits && k < t_; ++k) {
            powers_.push_back(power);
            if (k + 1 == t_) break;
            fits = power <= (kPowerLimit - 1) / x.limb[0];  // the next power too (IDs are non-zero)
            power *= x.limb[0];
        }
        if (!fits) {
            powers_.clear();
            break;
        }
    }
}

namespace {

using u128 = unsigned __int128;
using gf::kTopBits;
using gf::kTopMask;

// y = sum_k c[k] * power[k] (power[0] = 1, each below 2^57, t <= 64), kept
// below 2^522 (not reduced): one pass over the limbs, then the bits from 521
// up folded once, (y & p) + (y >> 521). Inline, without GMP's calls, because
// a commit evaluates one of these for every cell it writes.
inline void evaluate_powers(const Fe* c, unsigned t, const std::uint64_t* power, Fe& y) {
    u128 acc = 0;
    for (std::size_t i = 0; i < gf::kLimbs; ++i) {
        acc += c[0].limb[i];
        for (unsigned k = 1; k < t; ++k) acc += static_cast<u128>(c[k].limb[i]) * power[k];  // < 2^121 each
        y.limb[i] = static_cast<std::uint64_t>(acc);
        acc >>= 64;
    }
    // The sum is below 64 * 2^521 * 2^57 = 2^584: its bits from 521 up fit a word.
    const auto over = static_cast<std::uint64_t>(acc);  // bits 576.. of the sum
    const std::uint64_t high = (y.limb[gf::kLimbs - 1] >> kTopBits) | (over << (64 - kTopBits));
    y.limb[gf::kLimbs - 1] &= kTopMask;
    acc = high;
    for (std::size_t i = 0; i < gf::kLimbs && acc != 0; ++i) {
        acc += y.limb[i];
        y.limb[i] = static_cast<std::uint64_t>(acc);
        acc >>= 64;
    }
}

// y < 2^522 reduced to [0, p).
inline void reduce(Fe& y) {
    for (int round = 0; round < 2; ++round) {  // the first leaves y <= 2^521; the second folds 2^521 to 1
        const std::uint64_t carry = y.limb[gf::kLimbs - 1] >> kTopBits;
        y.limb[gf::kLimbs - 1] &= kTopMask;
        for (std::size_t i = 0; carry != 0 && i < gf::kLimbs; ++i)
            if (++y.limb[i] != 0) break;
    }
    if (gf::is_p(y)) y = Fe{};
}

}  // namespace

void Splitter::split(const Fe& secret, std::span<Fe> ys, Rng& rng) const {
    split_packed(std::span<const Fe>(&secret, 1), ys, rng);
}

void Splitter::split_packed(std::span<const Fe> low, std::span<Fe> ys, Rng& rng) const {
    if (ys.size() != xs_.size()) throw Error(Errc::usage, "shamir: output size differs from share count");
    if (low.empty() || low.size() > t_) throw Error(Errc::usage, "shamir: 1 to t given coefficients");
    if (low.size() == t_) return evaluate_all(low.data(), ys);  // packed rows: every coefficient given
    std::vector<Fe> coeff(low.begin(), low.end());
    coeff.resize(t_);
    for (std::size_t k = low.size(); k < t_; ++k) coeff[k] = rng.field_element();
    evaluate_all(coeff.data(), ys);
    sodium_memzero(coeff.data(), coeff.size() * sizeof(Fe));
}

void Splitter::evaluate_all(const Fe* coeff, std::span<Fe> ys) const {
    for (std::size_t i = 0; i < xs_.size(); ++i) {
        Fe& y = ys[i];
        if (!powers_.empty()) {
            evaluate_powers(coeff, t_, powers_.data() + i * t_, y);
            reduce(y);
            continue;
        }
        // Horner: y = ((c_{t-1} x + c_{t-2}) x + ...) x + c_0.
        y = coeff[t_ - 1];
        for (unsigned k = t_ - 1; k-- > 0;) y = gf::add(gf::mul(y, xs_[i]), coeff[k]);
    }
}

void split(const Fe& secret, unsigned threshold, std::span<const Fe> xs, std::span<Fe> ys, Rng& rng) {
    Splitter(threshold, xs).split(secret, ys, rng);
}

Interpolator::Interpolator(std::span<const Fe> xs) : xs_(xs.begin(), xs.end()) {
    if (xs.empty() || xs.size() > kMaxShares) throw Error(Errc::usage, "shamir: 1 to " + std::to_string(kMaxShares) + " points");
    for (std::size_t i = 0; i < xs.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (xs[i] == xs[j]) throw Error(Errc::usage, "shamir: duplicate share ID");
    const std::size_t t = xs.size();
    // P(x) = prod_j (x - x_j); basis polynomial i = P(x) / (x - x_i) / prod_{j != i} (x_i - x_j).
    std::vector<Fe> full(t + 1);
    full[0] = gf::one();
    for (std::size_t j = 0; j < t; ++j) {  // multiply by (x - x_j)
        for (std::size_t m = j + 1; m-- > 0;) {
            full[m + 1] = gf::add(full[m + 1], full[m]);
            full[m] = gf::neg(gf::mul(full[m], xs[j]));
        }
    }
    coeff_.assign(t, std::vector<Fe>(t));
    std::vector<Fe> q(t);
    for (std::size_t i = 0; i < t; ++i) {
        // Synthetic division of P by (x - x_i): q_{t-1} = 1, q_{m-1} = P_m + x_i q_m.
        q[t - 1] = full[t];
        for (std::size_t m = t - 1; m-- > 0;) q[m] = gf::add(full[m + 1], gf::mul(xs[i], q[m + 1]));
        Fe den = gf::one();
        for (std::size_t j = 0; j < t; ++j)
            if (j != i) den = gf::mul(den, gf::sub(xs[i], xs[j]));
        const Fe iden = gf::inv(den);
        for (std::size_t m = 0; m < t; ++m) coeff_[m][i] = gf::mul(q[m], iden);
    }
}

std::shared_ptr<const Interpolator> Interpolator::cached(std::span<const Fe> xs) {
    static std::mutex mutex;
    static std::vector<std::shared_ptr<const Interpolator>> kept;  // newest last
    const auto same = [&](const std::shared_ptr<const Interpolator>& b) { return std::ranges::equal(b->xs_, xs); };
    {
        std::lock_guard lock(mutex);
        if (auto it = std::find_if(kept.begin(), kept.end(), same); it != kept.end()) return *it;
    }
    auto made = std::make_shared<const Interpolator>(xs);
    std::lock_guard lock(mutex);
    if (kept.size() >= 8) kept.erase(kept.begin());
    kept.push_back(made);
    return made;
}

std::vector<Fe> Interpolator::weights_at(const Fe& x) const {
    std::vector<Fe> w(xs_.size());
    Fe xp = gf::one();
    for (const auto& row : coeff_) {
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = gf::add(w[i], gf::mul(row[i], xp));
        xp = gf::mul(xp, x);
    }
    return w;
}

Fe Interpolator::apply(std::span<const Fe> weights, std::span<const Fe> ys) {
    if (ys.size() != weights.size()) throw Error(Errc::usage, "shamir: share count differs from the basis");
    Fe s;
    for (std::size_t i = 0; i < ys.size(); ++i) s = gf::add(s, gf::mul(weights[i], ys[i]));
    return s;
}

Fe LagrangeAtZero::combine(std::span<const Fe> ys) const { return Interpolator::apply(basis_.coefficient(0), ys); }

Fe combine(std::span<const Fe> xs, std::span<const Fe> ys) {
    if (xs.size() != ys.size()) throw Error(Errc::usage, "shamir: as many share IDs as shares needed");
    return LagrangeAtZero(xs).combine(ys);
}

Fe interpolate_at(std::span<const Fe> xs, std::span<const Fe> ys, const Fe& x) {
    if (xs.size() != ys.size() || xs.empty()) throw Error(Errc::usage, "shamir: bad interpolation input");
    return Interpolator::apply(Interpolator(xs).weights_at(x), ys);
}

Fe evaluate(std::span<const Fe> poly, const Fe& x) {
    Fe y;
    for (std::size_t k = poly.size(); k-- > 0;) y = gf::add(gf::mul(y, x), poly[k]);
    return y;
}

namespace {

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
    Decoded out{std::move(p), {}};
    for (std::size_t i = 0; i < n; ++i)
        if (!(evaluate(out.poly, xs[i]) == ys[i])) out.bad.push_back(i);
    if (out.bad.size() > e) return std::nullopt;
    return out;
}

}  // namespace shamirfs::shamir
