#include "shamirfs/codec.hpp"

#include <sodium.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_customMem: zstd's work buffers in locked memory
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "shamirfs/error.hpp"
#include "shamirfs/tasks.hpp"

namespace shamirfs::codec {
namespace {

constexpr std::string_view kHeaderAd1 = "shamirfs/v1/header";
constexpr std::string_view kHeaderAd2 = "shamirfs/v2/header";
constexpr std::uint8_t kZstd = 1;
constexpr std::uint16_t kFlagDraft = 1;
constexpr std::size_t kPartFrom = std::size_t{400} << 10;  // the least a part of a text compressed in parts is

void put_u64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_u64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
}

// zstd's windows and tables hold document text: allocate them like SecureBuffer.
void* zstd_alloc(void*, std::size_t n) { return secure_alloc(n); }
void zstd_free(void*, void* p) { secure_free(p); }
constexpr ZSTD_customMem kSecureMem = {zstd_alloc, zstd_free, nullptr};

// zstd contexts kept for the next seal or open: their tables, in locked
// memory, cost more to make than a small document to compress. A lease
// gives one back when it ends; at most two are kept (one per core).
template <class Ctx, Ctx* (*Make)(ZSTD_customMem), std::size_t (*Free)(Ctx*)>
class CtxPool {
public:
    ~CtxPool() {
        for (Ctx* c : idle_) Free(c);
    }
    struct GiveBack {
        CtxPool* pool;
        void operator()(Ctx* done) const {
            std::lock_guard lock(pool->mutex_);
            if (pool->idle_.size() < 2) pool->idle_.push_back(done);
            else Free(done);
        }
    };
    std::unique_ptr<Ctx, GiveBack> lease() {
        Ctx* c = nullptr;
        {
            std::lock_guard lock(mutex_);
            if (!idle_.empty()) {
                c = idle_.back();
                idle_.pop_back();
            }
        }
        if (c == nullptr && (c = Make(kSecureMem)) == nullptr) throw Error(Errc::internal, "zstd: out of memory");
        return {c, GiveBack{this}};
    }

private:
    std::mutex mutex_;
    std::vector<Ctx*> idle_;
};
CtxPool<ZSTD_CCtx, ZSTD_createCCtx_advanced, ZSTD_freeCCtx> compressors;
CtxPool<ZSTD_DCtx, ZSTD_createDCtx_advanced, ZSTD_freeDCtx> decompressors;

void encode_header(const Header& h, std::uint8_t* out) {
    std::fill_n(out, header_bytes(h.version), 0);
    out[0] = static_cast<std::uint8_t>(h.version);
    out[1] = kZstd;
    if (h.version == 1) {
        put_u64(out + 4, h.compressed_len);
        put_u64(out + 12, h.document_len);
        return;
    }
    out[2] = h.has_draft ? kFlagDraft : 0;
    out[4] = static_cast<std::uint8_t>(h.meta.label.size());
    put_u64(out + 8, h.compressed_len);
    put_u64(out + 16, h.document_len);
    put_u64(out + 24, h.draft_compressed_len);
    put_u64(out + 32, h.draft_len);
    put_u64(out + 40, h.meta.generation);
    put_u64(out + 48, h.meta.time);
    std::copy(h.meta.label.begin(), h.meta.label.end(), out + 56);
}

// The fields of an authenticated header; Error(damaged) for what no writer makes.
Header decode_header(unsigned version, const std::uint8_t* in) {
    if (in[0] != version) throw Error(Errc::damaged, "document sealed with an unknown codec version");
    if (in[1] != kZstd) throw Error(Errc::damaged, "unknown document compression");
    Header h;
    h.version = version;
    if (version == 1) {
        if (in[2] || in[3]) throw Error(Errc::damaged, "unknown document flags");
        h.compressed_len = get_u64(in + 4);
        h.document_len = get_u64(in + 12);
    } else {
        if ((in[2] & ~kFlagDraft) || in[3] || in[4] > kMaxLabel || in[5] || in[6] || in[7])
            throw Error(Errc::damaged, "unknown document flags");
        h.has_draft = in[2] & kFlagDraft;
        h.compressed_len = get_u64(in + 8);
        h.document_len = get_u64(in + 16);
        h.draft_compressed_len = get_u64(in + 24);
        h.draft_len = get_u64(in + 32);
        h.meta.generation = get_u64(in + 40);
        h.meta.time = get_u64(in + 48);
        h.meta.label.assign(reinterpret_cast<const char*>(in + 56), in[4]);
    }
    const auto bound = ZSTD_compressBound(kMaxDocument);
    if (h.document_len > kMaxDocument || h.compressed_len > bound || h.draft_len > kMaxDocument ||
        h.draft_compressed_len > bound || (!h.has_draft && (h.draft_len || h.draft_compressed_len)))
        throw Error(Errc::damaged, "sealed document header states an impossible size");
    return h;
}

std::string_view header_ad(unsigned version) { return version == 1 ? kHeaderAd1 : kHeaderAd2; }

// One zstd frame of `text` in [to, to + room): its length, or nothing when
// it does not fit.
std::optional<std::size_t> compress_frame(std::span<const std::uint8_t> text, std::uint8_t* to, std::size_t room, int level) {
    auto cctx = compressors.lease();
    std::size_t n = ZSTD_compressCCtx(cctx.get(), to, room, text.data(), text.size(), level);
    if (ZSTD_isError(n) && ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall) return std::nullopt;
    if (ZSTD_isError(n)) throw Error(Errc::internal, std::string("zstd: ") + ZSTD_getErrorName(n));
    return n;
}

// zstd frames of `text` appended to `out` at `at` (in locked memory); their
// length, or nothing when `out` is too small. A large text is cut in parts,
// one per core, compressed at once each into its share of the room, then
// moved together: a commit waits for its document's compression (man
// shamirfs.5: the frames one after the other are the document).
std::optional<std::size_t> compress_into(std::span<const std::uint8_t> text, SecureBuffer& out, std::size_t at, int level) {
    // (hardware_concurrency() reads /sys: not asked for a text of one part)
    const std::size_t by_size = text.size() / kPartFrom;
    const std::size_t parts =
        by_size < 2 ? 1 : std::clamp<std::size_t>(std::min<std::size_t>(std::thread::hardware_concurrency(), by_size), 1, 4);
    if (parts == 1) return compress_frame(text, out.data() + at, out.size() - at, level);
    const std::size_t room = (out.size() - at) / parts, part = text.size() / parts;
    auto frame = [&](std::size_t i) {
        return compress_frame(text.subspan(i * part, i + 1 == parts ? std::dynamic_extent : part),
                              out.data() + at + i * room, room, level);
    };
    // Part 0 here, the others on other threads.
    std::vector<std::future<std::optional<std::size_t>>> made;
    std::vector<std::optional<std::size_t>> sizes(parts);
    std::exception_ptr error;
    try {
        for (std::size_t i = 1; i < parts; ++i) made.push_back(tasks::async([&frame, i] { return frame(i); }));
        sizes[0] = frame(0);
    } catch (...) {
        error = std::current_exception();
    }
    for (auto& m : made) m.wait();
    if (error) std::rethrow_exception(error);
    for (std::size_t i = 1; i < parts; ++i) sizes[i] = made[i - 1].get();
    std::optional<std::size_t> total = 0;
    for (std::size_t i = 0; i < parts; ++i) {
        const auto n = sizes[i];
        if (!n || !total) {
            total.reset();
            continue;
        }
        std::memmove(out.data() + at + *total, out.data() + at + i * room, *n);
        *total += *n;
    }
    // A part that did not fit its share: in the whole bound, one frame always
    // fits; in a smaller buffer, the caller tries the whole bound (a frame
    // tried here would mostly not fit either, and cost a compression more).
    if (!total && out.size() - at >= ZSTD_compressBound(text.size()))
        return compress_frame(text, out.data() + at, out.size() - at, level);
    return total;
}

SecureBuffer decompress(const std::uint8_t* in, std::size_t n, std::size_t expect) {
    SecureBuffer out(expect);
    std::size_t got = ZSTD_decompressDCtx(decompressors.lease().get(), out.data(), out.size(), in, n);
    if (ZSTD_isError(got) || got != expect)
        throw Error(Errc::damaged, "sealed document does not decompress to its stated length");
    return out;
}

}  // namespace

// The document's and the draft's frames, one after the other, in locked
// memory. A buffer of ZSTD_compressBound is the size of the text: for a large
// document, locking, filling and wiping it costs more than compressing (JSON
// shrinks 3 to 10 times), so a third is tried first.
Compressed compress(std::span<const std::uint8_t> document, const std::optional<std::span<const std::uint8_t>>& draft,
                    int level) {
    for (std::size_t n : {document.size(), draft ? draft->size() : 0})
        if (n > kMaxDocument)
            throw Error(Errc::too_large, "document of " + std::to_string(n) + " bytes exceeds the " +
                                             std::to_string(kMaxDocument >> 20) + " MiB limit");
    const std::size_t bound = ZSTD_compressBound(document.size()) + (draft ? ZSTD_compressBound(draft->size()) : 0);
    for (std::size_t size : {std::min(bound, bound / 3 + 65536), bound}) {
        Compressed c;
        c.frames = SecureBuffer(size, SecureBuffer::Use::part);  // (JSON compresses 3 to 10 times)
        auto doc = compress_into(document, c.frames, 0, level);
        if (!doc) continue;
        c.document_len = document.size();
        c.compressed_len = *doc;
        if (draft) {
            auto d = compress_into(*draft, c.frames, *doc, level);
            if (!d) continue;
            c.has_draft = true;
            c.draft_len = draft->size();
            c.draft_compressed_len = *d;
        }
        return c;
    }
    throw Error(Errc::internal, "zstd: the output does not fit its bound");
}

std::size_t estimate_compressed(std::span<const std::uint8_t> document, int level) {
    if (document.size() < kEstimateFrom) throw Error(Errc::internal, "a small document is compressed, not estimated");
    constexpr std::size_t kSamples = 4, kSample = std::size_t{1} << 20;
    SecureBuffer sample(kSamples * kSample);
    for (std::size_t i = 0; i < kSamples; ++i)
        std::memcpy(sample.data() + i * kSample, document.data() + i * (document.size() - kSample) / (kSamples - 1), kSample);
    SecureBuffer out(ZSTD_compressBound(sample.size()));
    const auto n = compress_into(sample.bytes(), out, 0, level);
    if (!n) throw Error(Errc::internal, "zstd: the output does not fit its bound");
    return static_cast<std::size_t>(static_cast<double>(*n) / static_cast<double>(sample.size()) *
                                    static_cast<double>(document.size()));
}

std::vector<std::uint8_t> seal(unsigned version, const Compressed& texts, const Meta& meta, const PartitionKeys& keys,
                               Rng& rng) {
    if (version == 1 && (texts.has_draft || !meta.label.empty()))
        throw Error(Errc::internal, "codec version 1 has no draft or label");
    if (meta.label.size() > kMaxLabel) throw Error(Errc::usage, "labels are at most " + std::to_string(kMaxLabel) + " bytes");
    Header h;
    h.version = version;
    h.meta = meta;
    h.has_draft = texts.has_draft;
    h.document_len = texts.document_len;
    h.compressed_len = texts.compressed_len;
    h.draft_len = texts.draft_len;
    h.draft_compressed_len = texts.draft_compressed_len;
    const std::size_t clen = h.compressed_len + h.draft_compressed_len, hb = header_bytes(version);
    const std::string_view ad = header_ad(version);

    std::vector<std::uint8_t> blob(h.chunks() * kChunkBytes);
    std::uint8_t* nonce = blob.data();
    rng.fill({nonce, kNonce});
    std::uint8_t header[header_bytes(2)];
    encode_header(h, header);
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + kNonce, nullptr, header, hb,
                                               reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                               nonce, keys.header_key.data());
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + prefix_bytes(version), nullptr, texts.frames.data(), clen,
                                               header, hb, nullptr, nonce, keys.body_key.data());
    std::size_t used = h.blob_bytes();
    rng.fill({blob.data() + used, blob.size() - used});
    return blob;
}

std::vector<std::uint8_t> seal(unsigned version, std::span<const std::uint8_t> document,
                               const std::optional<std::span<const std::uint8_t>>& draft, const Meta& meta,
                               const PartitionKeys& keys, Rng& rng, int level) {
    return seal(version, compress(document, draft, level), meta, keys, rng);
}

std::optional<Header> open_header(unsigned version, std::span<const std::uint8_t> first, const PartitionKeys& keys) {
    const std::size_t hb = header_bytes(version);
    if (first.size() < prefix_bytes(version)) throw Error(Errc::internal, "short sealed header");
    const std::string_view ad = header_ad(version);
    std::uint8_t header[header_bytes(2)];
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(header, nullptr, nullptr, first.data() + kNonce, hb + kTag,
                                                   reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
                                                   first.data(), keys.header_key.data()) != 0)
        return std::nullopt;
    // Authenticated from here on: a mismatch is a format error, not a guess.
    return decode_header(version, header);
}

std::optional<Compressed> open_frames(std::span<const std::uint8_t> blob, const Header& h, const PartitionKeys& keys) {
    if (blob.size() < h.blob_bytes()) throw Error(Errc::damaged, "sealed document is truncated");
    const std::size_t hb = header_bytes(h.version), clen = h.compressed_len + h.draft_compressed_len;
    std::uint8_t header[header_bytes(2)];
    encode_header(h, header);
    Compressed c{SecureBuffer(clen), h.document_len, h.compressed_len, h.has_draft, h.draft_len, h.draft_compressed_len};
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(c.frames.data(), nullptr, nullptr, blob.data() + prefix_bytes(h.version),
                                                   clen + kTag, header, hb, blob.data(), keys.body_key.data()) != 0)
        return std::nullopt;
    return c;
}

std::optional<Opened> open_body(std::span<const std::uint8_t> blob, const Header& h, const PartitionKeys& keys) {
    auto c = open_frames(blob, h, keys);
    if (!c) return std::nullopt;
    Opened out{decompress(c->frames.data(), h.compressed_len, h.document_len), std::nullopt};
    if (h.has_draft) out.draft = decompress(c->frames.data() + h.compressed_len, h.draft_compressed_len, h.draft_len);
    return out;
}

}  // namespace shamirfs::codec
