#include "shamirfs/codec.hpp"

#include <sodium.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_customMem: zstd's work buffers in locked memory
#include <zstd.h>

#include <cstring>

#include "shamirfs/error.hpp"

namespace shamirfs::codec {
namespace {

constexpr unsigned char kHeaderAd[] = "shamirfs/v1/header";
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kZstd = 1;

void put_u64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_u64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
}

// zstd's windows and tables hold document text: allocate them like SecureBuffer.
// sodium_malloc puts a block right before a guard page, so its start is aligned
// only when the size is a multiple of the alignment: round up to 64 bytes.
void* zstd_alloc(void*, std::size_t n) {
    n = (n + 63) & ~std::size_t{63};
    void* p = sodium_malloc(n);
    if (p != nullptr) sodium_mlock(p, n);
    return p;
}
void zstd_free(void*, void* p) {
    if (p != nullptr) sodium_free(p);
}
constexpr ZSTD_customMem kSecureMem = {zstd_alloc, zstd_free, nullptr};

void encode_header(const Header& h, std::uint8_t out[kHeader]) {
    out[0] = kVersion;
    out[1] = kZstd;
    out[2] = out[3] = 0;
    put_u64(out + 4, h.compressed_len);
    put_u64(out + 12, h.document_len);
}

}  // namespace

std::vector<std::uint8_t> seal(std::span<const std::uint8_t> document, const PartitionKeys& keys, Rng& rng,
                               int level) {
    if (document.size() > kMaxDocument)
        throw Error(Errc::too_large, "document of " + std::to_string(document.size()) + " bytes exceeds the " +
                                         std::to_string(kMaxDocument >> 20) + " MiB limit");
    SecureBuffer compressed(ZSTD_compressBound(document.size()));
    ZSTD_CCtx* cctx = ZSTD_createCCtx_advanced(kSecureMem);
    if (cctx == nullptr) throw Error(Errc::internal, "zstd: out of memory");
    std::size_t clen = ZSTD_compressCCtx(cctx, compressed.data(), compressed.size(), document.data(), document.size(), level);
    ZSTD_freeCCtx(cctx);
    if (ZSTD_isError(clen)) throw Error(Errc::internal, std::string("zstd: ") + ZSTD_getErrorName(clen));

    Header h{clen, document.size()};
    std::vector<std::uint8_t> blob(h.rows() * kChunk);
    std::uint8_t* nonce = blob.data();
    rng.fill({nonce, kNonce});
    std::uint8_t header[kHeader];
    encode_header(h, header);
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + kNonce, nullptr, header, kHeader, kHeaderAd,
                                               sizeof(kHeaderAd) - 1, nullptr, nonce, keys.header_key.data());
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + kPrefix, nullptr, compressed.data(), clen, header,
                                               kHeader, nullptr, nonce, keys.body_key.data());
    std::size_t used = h.blob_bytes();
    rng.fill({blob.data() + used, blob.size() - used});
    return blob;
}

std::optional<Header> open_header(std::span<const std::uint8_t, kChunk> first, const PartitionKeys& keys) {
    std::uint8_t header[kHeader];
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(header, nullptr, nullptr, first.data() + kNonce,
                                                   kHeader + kTag, kHeaderAd, sizeof(kHeaderAd) - 1,
                                                   first.data(), keys.header_key.data()) != 0)
        return std::nullopt;
    // Authenticated from here on: a mismatch is a format error, not a guess.
    if (header[0] != kVersion) throw Error(Errc::damaged, "document sealed with unknown codec version");
    if (header[1] != kZstd || header[2] || header[3]) throw Error(Errc::damaged, "unknown document compression");
    Header h{get_u64(header + 4), get_u64(header + 12)};
    if (h.document_len > kMaxDocument || h.compressed_len > ZSTD_compressBound(kMaxDocument))
        throw Error(Errc::damaged, "sealed document header states an impossible size");
    return h;
}

std::optional<SecureBuffer> open_body(std::span<const std::uint8_t> blob, const Header& h, const PartitionKeys& keys) {
    if (blob.size() < h.blob_bytes()) throw Error(Errc::damaged, "sealed document is truncated");
    std::uint8_t header[kHeader];
    encode_header(h, header);
    SecureBuffer compressed(h.compressed_len);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(compressed.data(), nullptr, nullptr, blob.data() + kPrefix,
                                                   h.compressed_len + kTag, header, kHeader, blob.data(),
                                                   keys.body_key.data()) != 0)
        return std::nullopt;
    SecureBuffer doc(h.document_len);
    ZSTD_DCtx* dctx = ZSTD_createDCtx_advanced(kSecureMem);
    if (dctx == nullptr) throw Error(Errc::internal, "zstd: out of memory");
    std::size_t n = ZSTD_decompressDCtx(dctx, doc.data(), doc.size(), compressed.data(), compressed.size());
    ZSTD_freeDCtx(dctx);
    if (ZSTD_isError(n) || n != h.document_len)
        throw Error(Errc::damaged, "sealed document does not decompress to its stated length");
    return doc;
}

}  // namespace shamirfs::codec
