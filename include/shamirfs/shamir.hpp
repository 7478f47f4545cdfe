// Shamir secret sharing over GF(2^521 - 1).
// Public: threshold t, the share IDs (x-coordinates). Secret: the secret and
// the random coefficients. Share IDs must be distinct and non-zero.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "shamirfs/gf521.hpp"
#include "shamirfs/rng.hpp"

namespace shamirfs::shamir {

inline constexpr unsigned kMinThreshold = 2;
inline constexpr unsigned kMaxShares = 64;

// Checks t and the share IDs; throws Error(usage) with one message per rule.
void validate(unsigned threshold, std::span<const gf::Fe> xs);

// Evaluates a fresh random polynomial of degree t-1 with constant term
// `secret` at every x; ys.size() must equal xs.size().
void split(const gf::Fe& secret, unsigned threshold, std::span<const gf::Fe> xs,
           std::span<gf::Fe> ys, Rng& rng);

// split() for many secrets over one set of share IDs: the IDs are checked once,
// and where every x^(t-1) is below 2^57 (every column's ID at the defaults) a
// share costs t - 1 word products per limb and one reduction.
// Packed: split_packed() takes the k <= t lowest coefficients (format 2 keeps
// k chunks of a row there) and draws the other t - k at random; k = 1 is
// split().
class Splitter {
public:
    Splitter(unsigned threshold, std::span<const gf::Fe> xs);
    void split(const gf::Fe& secret, std::span<gf::Fe> ys, Rng& rng) const;
    void split_packed(std::span<const gf::Fe> low, std::span<gf::Fe> ys, Rng& rng) const;

private:
    void evaluate_all(const gf::Fe* coeff, std::span<gf::Fe> ys) const;  // t coefficients

    unsigned t_;
    std::vector<gf::Fe> xs_;
    std::vector<std::uint64_t> powers_;  // x_i^k as words (t per ID), or empty if one is >= 2^57
};

// The Lagrange basis of a fixed set of t share IDs, computed once (the only
// place it is computed): the polynomial through (xs, ys) has coefficient m
// equal to sum_i coefficient(m)[i] * ys[i], and value at x equal to
// sum_i weights_at(x)[i] * ys[i]. Each row then costs t multiplications per
// wanted value.
class Interpolator {
public:
    explicit Interpolator(std::span<const gf::Fe> xs);
    // The same, kept for the next call with these points (the last few sets
    // are kept): every read of a partition interpolates at the same share IDs,
    // and making a basis costs t inversions.
    static std::shared_ptr<const Interpolator> cached(std::span<const gf::Fe> xs);
    unsigned size() const { return static_cast<unsigned>(xs_.size()); }
    // The weights that give coefficient m (m < size()).
    const std::vector<gf::Fe>& coefficient(unsigned m) const { return coeff_[m]; }
    // The weights that give the value at x.
    std::vector<gf::Fe> weights_at(const gf::Fe& x) const;
    static gf::Fe apply(std::span<const gf::Fe> weights, std::span<const gf::Fe> ys);

private:
    std::vector<gf::Fe> xs_;
    std::vector<std::vector<gf::Fe>> coeff_;  // coeff_[m][i]: x^m in the i-th basis polynomial
};

// The secret (value at 0) from exactly t shares.
class LagrangeAtZero {
public:
    explicit LagrangeAtZero(std::span<const gf::Fe> xs) : basis_((validate(static_cast<unsigned>(xs.size()), xs), xs)) {}
    gf::Fe combine(std::span<const gf::Fe> ys) const;

private:
    Interpolator basis_;
};

// Interpolates at 0 from exactly the given shares (at least 2; all used).
gf::Fe combine(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys);

// Error-correcting decode (Berlekamp-Welch): up to floor((n - t) / 2) wrong
// shares among n are located and corrected. Returns nothing when the shares
// are not within that distance of any polynomial of degree < t.
// Erasures (cells that are not values at all) are left out of xs/ys by the
// caller: with e of them, floor((n - e - t) / 2) wrong shares are corrected.
struct Decoded {
    std::vector<gf::Fe> poly;      // the t coefficients, constant term first
    std::vector<std::size_t> bad;  // indices into xs/ys of the corrected shares
};
std::optional<Decoded> decode(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys,
                              unsigned threshold);

// The polynomial with these coefficients (constant term first) at x.
gf::Fe evaluate(std::span<const gf::Fe> poly, const gf::Fe& x);

// Evaluates the degree < t polynomial through (xs, ys) (t points) at x.
gf::Fe interpolate_at(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys, const gf::Fe& x);

}  // namespace shamirfs::shamir
