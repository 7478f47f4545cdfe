// Shamir secret sharing over GF(2^521 - 1).
// Public: threshold t, the share IDs (x-coordinates). Secret: the secret and
// the random coefficients. Share IDs must be distinct and non-zero.
#pragma once
#include <cstddef>
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
// and IDs below 2^64 (every column's ID) cost one word product per Horner step.
class Splitter {
public:
    Splitter(unsigned threshold, std::span<const gf::Fe> xs);
    void split(const gf::Fe& secret, std::span<gf::Fe> ys, Rng& rng) const;
    std::size_t size() const { return xs_.size(); }

private:
    unsigned t_;
    std::vector<gf::Fe> xs_;
    std::vector<std::uint64_t> small_;  // the IDs as words, or empty if one is >= 2^64
};

// Lagrange basis at 0 for a fixed set of t share IDs: computed once, then each
// row costs t multiplications.
class LagrangeAtZero {
public:
    explicit LagrangeAtZero(std::span<const gf::Fe> xs);
    gf::Fe combine(std::span<const gf::Fe> ys) const;
    std::size_t size() const { return coeff_.size(); }

private:
    std::vector<gf::Fe> coeff_;
};

// Interpolates at 0 from exactly the given shares (at least 2; all used).
gf::Fe combine(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys);

// Error-correcting decode (Berlekamp-Welch): up to floor((n - t) / 2) wrong
// shares among n are located and corrected. Returns nothing when the shares
// are not within that distance of any polynomial of degree < t.
struct Decoded {
    gf::Fe secret;
    std::vector<std::size_t> bad;  // indices into xs/ys of the corrected shares
};
std::optional<Decoded> decode(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys,
                              unsigned threshold);

// Evaluates the degree < t polynomial through (xs, ys) (t points) at x.
gf::Fe interpolate_at(std::span<const gf::Fe> xs, std::span<const gf::Fe> ys, const gf::Fe& x);

}  // namespace shamirfs::shamir
