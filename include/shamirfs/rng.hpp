// Bulk randomness: an XChaCha20 key stream seeded once from the system CSPRNG
// (or from a fixed seed in tests), instead of one system call per value.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "shamirfs/gf521.hpp"

namespace shamirfs {

class Rng {
public:
    Rng();                                                   // seeded from randombytes_buf
    explicit Rng(std::span<const std::uint8_t, 32> seed);    // deterministic (tests, vectors)
    ~Rng();
    Rng(const Rng&) = delete;
    Rng& operator=(const Rng&) = delete;

    void fill(std::span<std::uint8_t> out);
    // Uniform in [0, p) (rejection sampling on 521-bit strings).
    gf::Fe field_element();
    // Uniform in [0, 2^512): what a chunk of ciphertext looks like.
    gf::Fe chunk_element();

private:
    void refill();
    std::array<std::uint8_t, 32> key_{};
    std::uint64_t counter_ = 0;
    std::array<std::uint8_t, 16384> buf_{};
    std::size_t pos_ = sizeof(buf_);
};

}  // namespace shamirfs
