#include "shamirfs/rng.hpp"

#include <sodium.h>

#include <cstring>

#include "shamirfs/error.hpp"

namespace shamirfs {

Rng::Rng() {
    if (sodium_init() < 0) throw Error(Errc::internal, "libsodium failed to initialise");
    randombytes_buf(key_.data(), key_.size());
}

Rng::Rng(std::span<const std::uint8_t, 32> seed) {
    if (sodium_init() < 0) throw Error(Errc::internal, "libsodium failed to initialise");
    std::memcpy(key_.data(), seed.data(), key_.size());
}

Rng::~Rng() {
    sodium_memzero(key_.data(), key_.size());
    sodium_memzero(buf_.data(), buf_.size());
}

void Rng::refill() {
    // Each block: XChaCha20 key stream under the seed, nonce = block counter.
    std::uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {};
    std::uint64_t c = counter_++;
    std::memcpy(nonce, &c, sizeof(c));
    crypto_stream_xchacha20(buf_.data(), buf_.size(), nonce, key_.data());
    pos_ = 0;
}

void Rng::fill(std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
        if (pos_ == buf_.size()) refill();
        std::size_t n = std::min(out.size() - done, buf_.size() - pos_);
        std::memcpy(out.data() + done, buf_.data() + pos_, n);
        pos_ += n;  // (no key stream is handed out twice; the next refill overwrites it)
        done += n;
    }
}

gf::Fe Rng::field_element() {
    gf::Fe r;
    do {  // 521 random bits (the top limb keeps 9); p itself, all ones, is drawn again
        fill({reinterpret_cast<std::uint8_t*>(r.limb.data()), sizeof(r.limb)});
        r.limb[gf::kLimbs - 1] &= gf::kTopMask;
    } while (gf::is_p(r));
    return r;
}

gf::Fe Rng::chunk_element() {
    std::uint8_t b[64];
    fill(b);
    gf::Fe r = gf::from_chunk(b);
    sodium_memzero(b, sizeof(b));
    return r;
}

}  // namespace shamirfs
