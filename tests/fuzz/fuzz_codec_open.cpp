// libFuzzer: the codec's decrypt path. (1) Arbitrary bytes as a sealed blob:
// never open. (2) Arbitrary bytes sealed with the right keys as if they were a
// zstd frame, with lengths chosen by the input (an attacker who knows the
// password): open_body answers a document or Error(damaged), never crashes.
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
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace shamirfs;
    static const PartitionKeys k = keys();
    try {
        if (size >= codec::kChunk) {
            auto h = codec::open_header(std::span<const std::uint8_t, codec::kChunk>(data, codec::kChunk), k);
            if (h) __builtin_trap();  // forging the tag is not expected of a fuzzer
        }
        if (size < 4) return 0;
        // Authenticated but hostile content.
        std::uint32_t stated = 0;
        std::memcpy(&stated, data, 4);
        const std::uint8_t* body = data + 4;
        std::size_t clen = size - 4;
        std::uint8_t header[codec::kHeader] = {1, 1, 0, 0};
        for (int i = 0; i < 8; ++i) header[4 + i] = static_cast<std::uint8_t>(std::uint64_t{clen} >> (8 * i));
        for (int i = 0; i < 8; ++i) header[12 + i] = static_cast<std::uint8_t>(std::uint64_t{stated % (1u << 20)} >> (8 * i));
        codec::Header h{clen, stated % (1u << 20)};
        std::vector<std::uint8_t> blob(h.rows() * codec::kChunk);
        static const unsigned char ad[] = "shamirfs/v1/header";
        crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + codec::kNonce, nullptr, header, codec::kHeader, ad,
                                                   sizeof(ad) - 1, nullptr, blob.data(), k.header_key.data());
        crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + codec::kPrefix, nullptr, body, clen, header,
                                                   codec::kHeader, nullptr, blob.data(), k.body_key.data());
        auto opened = codec::open_header(std::span<const std::uint8_t, codec::kChunk>(blob.data(), codec::kChunk), k);
        if (!opened) __builtin_trap();
        auto doc = codec::open_body(blob, *opened, k);
        if (!doc || doc->size() != opened->document_len) __builtin_trap();
    } catch (const Error& e) {
        if (e.code() != Errc::damaged) __builtin_trap();
    }
    return 0;
}
