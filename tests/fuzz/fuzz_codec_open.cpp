// libFuzzer: the codec's decrypt path, both versions. (1) Arbitrary bytes as a
// sealed blob: never open. (2) Arbitrary bytes sealed with the right keys as if
// they were zstd frames (a document and maybe a draft), with lengths chosen by
// the input (an attacker who knows the password): open_body answers the texts
// or Error(damaged), never crashes.
#include <sodium.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "shamirfs/codec.hpp"
#include "shamirfs/error.hpp"

namespace {
shamirfs::PartitionKeys keys() {
    shamirfs::PartitionKeys k{shamirfs::SecureBuffer(32), shamirfs::SecureBuffer(32), shamirfs::SecureBuffer(32)};
    for (std::size_t i = 0; i < 32; ++i) {
        k.header_key.data()[i] = static_cast<std::uint8_t>(i);
        k.body_key.data()[i] = static_cast<std::uint8_t>(i + 100);
    }
    return k;
}

void put_u64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace shamirfs;
    static const PartitionKeys k = keys();
    for (unsigned version : {1u, 2u}) {
        try {
            const std::size_t prefix = codec::prefix_bytes(version), hb = codec::header_bytes(version);
            if (size >= prefix && codec::open_header(version, std::span(data, prefix), k))
                __builtin_trap();  // forging the tag is not expected of a fuzzer
            if (size < 6) continue;
            // Authenticated but hostile content: the first bytes choose the stated
            // lengths and where the draft's frame starts.
            std::uint32_t stated = 0;
            std::memcpy(&stated, data, 4);
            const bool draft = version == 2 && (data[4] & 1);
            const std::uint8_t* body = data + 6;
            const std::size_t clen = size - 6, split = draft ? clen * data[5] / 256 : clen;
            std::vector<std::uint8_t> header(hb, 0);
            header[0] = static_cast<std::uint8_t>(version);
            header[1] = 1;
            if (version == 1) {
                put_u64(header.data() + 4, clen);
                put_u64(header.data() + 12, stated % (1u << 20));
            } else {
                header[2] = draft ? 1 : 0;
                put_u64(header.data() + 8, split);
                put_u64(header.data() + 16, stated % (1u << 20));
                put_u64(header.data() + 24, clen - split);
                put_u64(header.data() + 32, draft ? (stated >> 12) % (1u << 20) : 0);
            }
            std::vector<std::uint8_t> blob((prefix + clen + codec::kTag + 63) / 64 * 64);
            const std::string ad = version == 1 ? "shamirfs/v1/header" : "shamirfs/v2/header";
            crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + codec::kNonce, nullptr, header.data(), hb,
                                                       reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
                                                       nullptr, blob.data(), k.header_key.data());
            crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + prefix, nullptr, body, clen, header.data(), hb,
                                                       nullptr, blob.data(), k.body_key.data());
            auto opened = codec::open_header(version, std::span(blob).first(prefix), k);
            if (!opened) __builtin_trap();
            auto doc = codec::open_body(blob, *opened, k);
            if (!doc || doc->document.size() != opened->document_len || doc->draft.has_value() != opened->has_draft)
                __builtin_trap();
        } catch (const Error& e) {
            if (e.code() != Errc::damaged) __builtin_trap();
        }
    }
    return 0;
}
