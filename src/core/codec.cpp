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

namespace shamirfs::codec {
namespace {

constexpr std::string_view kHeaderAd1 = "shamirfs/v1/header";
constexpr std::string_view kHeaderAd2 = "shamirfs/v2/header";
constexpr std::uint8_t kZstd = 1;
constexpr std::uint16_t kFlagDraft = 1;
constexpr std::size_t kPartFrom = std::size_t{4} << 20;  // the least a part of a text compressed in parts is

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
    const std::size_t parts =
        std::clamp<std::size_t>(std::min<std::size_t>(std::thread::hardware_concurrency(), text.size() / kPartFrom), 1, 4);
    if (parts == 1) return compress_frame(text, out.data() + at, out.size() - at, level);
    const std::size_t room = (out.size() - at) / parts, part = text.size() / parts;
    std::vector<std::future<std::optional<std::size_t>>> made;
    for (std::size_t i = 0; i < parts; ++i)
        made.push_back(std::async(std::launch::async, [&, i] {
            return compress_frame(text.subspan(i * part, i + 1 == parts ? std::dynamic_extent : part),
                                  out.data() + at + i * room, room, level);
        }));
    std::optional<std::size_t> total = 0;
    for (std::size_t i = 0; i < parts; ++i) {
        const auto n = made[i].get();
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

void check_document_size(std::size_t n) {
    if (n > kMaxDocument)
        throw Error(Errc::too_large, "document of " + std::to_string(n) + " bytes exceeds the " +
                                         std::to_string(kMaxDocument >> 20) + " MiB limit");
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
    for (std::size_t n : {document.size(), draft ? draft->size() : 0}) check_document_size(n);
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

FrameStream::FrameStream(std::span<const std::uint8_t> document, int level)
    : text_(document), level_(level), frames_(std::max<std::size_t>(1, (document.size() + kFrameInput - 1) / kFrameInput)) {
    check_document_size(document.size());
    const std::size_t last = document.size() - (frames_ - 1) * kFrameInput;
    out_.frames = SecureBuffer((frames_ - 1) * ZSTD_compressBound(kFrameInput) + ZSTD_compressBound(last),
                               SecureBuffer::Use::part);
    out_.document_len = document.size();
    const std::size_t threads = std::clamp<std::size_t>(
        std::min<std::size_t>(std::thread::hardware_concurrency(), document.size() / kPartFrom), 1, 4);
    try {
        for (std::size_t t = 0; t < threads; ++t) threads_.emplace_back([this, t, threads] { work(t, threads); });
    } catch (...) {
        {
            std::lock_guard lock(mutex_);
            error_ = std::current_exception();
            progress_.notify_all();
        }
        for (auto& t : threads_) t.join();
        throw;
    }
}

FrameStream::~FrameStream() {
    for (auto& t : threads_) t.join();
}

// Frames first, first + step, ...: with one thread each goes straight to its
// place; with several, each is made aside and moved in at its turn.
void FrameStream::work(std::size_t first, std::size_t step) {
    try {
        SecureBuffer aside;
        if (step > 1) aside = SecureBuffer(ZSTD_compressBound(kFrameInput), SecureBuffer::Use::part);
        for (std::size_t k = first; k < frames_; k += step) {
            const auto part = text_.subspan(k * kFrameInput, std::min(kFrameInput, text_.size() - k * kFrameInput));
            std::optional<std::size_t> n;
            if (step == 1) {  // (this thread alone changes compressed_len)
                n = compress_frame(part, out_.frames.data() + out_.compressed_len,
                                   out_.frames.size() - out_.compressed_len, level_);
            } else {
                n = compress_frame(part, aside.data(), aside.size(), level_);
            }
            if (!n) throw Error(Errc::internal, "zstd: a frame does not fit its bound");
            std::unique_lock lock(mutex_);
            progress_.wait(lock, [&] { return made_frames_ == k || error_; });
            if (error_) return;
            if (step > 1) std::memcpy(out_.frames.data() + out_.compressed_len, aside.data(), *n);
            out_.compressed_len += *n;
            ++made_frames_;
            progress_.notify_all();
        }
    } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        progress_.notify_all();
    }
}

FrameStream::Made FrameStream::wait_for(std::size_t bytes) {
    std::unique_lock lock(mutex_);
    progress_.wait(lock, [&] { return error_ || made_frames_ == frames_ || out_.compressed_len >= bytes; });
    if (error_) std::rethrow_exception(error_);
    return {out_.compressed_len, made_frames_ == frames_};
}

bool FrameStream::done() {
    std::lock_guard lock(mutex_);
    return made_frames_ == frames_;
}

const Compressed& FrameStream::result() {
    wait_for(SIZE_MAX);
    return out_;
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

Header seal_stream(unsigned version, FrameStream& frames, const Meta& meta, const PartitionKeys& keys, Rng& rng,
                   std::span<std::uint8_t> blob, const std::function<void(std::size_t)>& published) {
    if (version == 1 && !meta.label.empty()) throw Error(Errc::internal, "codec version 1 has no label");
    if (meta.label.size() > kMaxLabel) throw Error(Errc::usage, "labels are at most " + std::to_string(kMaxLabel) + " bytes");
    const std::size_t prefix = prefix_bytes(version), hb = header_bytes(version);
    if (blob.size() < prefix + kTag) throw DoesNotFit{};
    const std::size_t room = blob.size() - prefix - kTag;
    const std::uint8_t* nonce = blob.data();
    rng.fill(blob.first(kNonce));
    // crypto_aead_xchacha20poly1305_ietf_encrypt, in steps: HChaCha20 makes a
    // subkey from the key and the nonce's first 16 bytes; ChaCha20 (IETF)
    // under it, with 4 zero bytes and the nonce's last 8, makes block 0 (the
    // Poly1305 key), then from block 1 the body's keystream. The body is
    // encrypted 64 bytes (a block) at a time as the frames come; the tag,
    // over the header (the associated data), comes last.
    std::uint8_t subkey[crypto_core_hchacha20_OUTPUTBYTES];
    std::uint8_t nonce2[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
    crypto_core_hchacha20(subkey, nonce, keys.body_key.data(), nullptr);
    std::memcpy(nonce2 + 4, nonce + crypto_core_hchacha20_INPUTBYTES, sizeof nonce2 - 4);
    struct Wipe {
        std::uint8_t* p;
        std::size_t n;
        ~Wipe() { sodium_memzero(p, n); }
    } wipe_subkey{subkey, sizeof subkey};
    std::uint8_t* body = blob.data() + prefix;
    std::size_t sealed = 0;
    for (bool all = false; !all;) {
        const auto made = frames.wait_for(sealed + 64);
        all = made.all;
        const std::size_t upto = all ? made.bytes : made.bytes / 64 * 64;
        if (upto > room) throw DoesNotFit{};
        crypto_stream_chacha20_ietf_xor_ic(body + sealed, frames.data() + sealed, upto - sealed, nonce2,
                                           static_cast<std::uint32_t>(1 + sealed / 64), subkey);
        sealed = upto;
        if (!all) published(prefix + sealed);
    }
    Header h;
    h.version = version;
    h.meta = meta;
    h.document_len = frames.result().document_len;
    h.compressed_len = sealed;
    std::uint8_t header[header_bytes(2)];
    Wipe wipe_header{header, sizeof header};
    encode_header(h, header);
    const std::string_view ad = header_ad(version);
    crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + kNonce, nullptr, header, hb,
                                               reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                               nonce, keys.header_key.data());
    std::uint8_t block0[64] = {};
    Wipe wipe_block0{block0, sizeof block0};
    crypto_stream_chacha20_ietf(block0, sizeof block0, nonce2, subkey);
    crypto_onetimeauth_poly1305_state mac;
    crypto_onetimeauth_poly1305_init(&mac, block0);
    static constexpr std::uint8_t kZeros[16] = {};
    std::uint8_t lengths[16];
    put_u64(lengths, hb);
    put_u64(lengths + 8, sealed);
    crypto_onetimeauth_poly1305_update(&mac, header, hb);
    crypto_onetimeauth_poly1305_update(&mac, kZeros, (16 - hb % 16) % 16);
    crypto_onetimeauth_poly1305_update(&mac, body, sealed);
    crypto_onetimeauth_poly1305_update(&mac, kZeros, (16 - sealed % 16) % 16);
    crypto_onetimeauth_poly1305_update(&mac, lengths, sizeof lengths);
    crypto_onetimeauth_poly1305_final(&mac, body + sealed);
    sodium_memzero(&mac, sizeof mac);
    rng.fill(blob.subspan(prefix + sealed + kTag));  // the padding
    return h;
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
