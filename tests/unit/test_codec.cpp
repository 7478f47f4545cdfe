#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "shamirfs/codec.hpp"
#include "shamirfs/error.hpp"

using namespace shamirfs;

namespace {
PartitionKeys keys_from(std::uint8_t seed) {
    PartitionKeys k{SecureBuffer(32), SecureBuffer(32), SecureBuffer(32)};
    for (std::size_t i = 0; i < 32; ++i) {
        k.header_key.data()[i] = static_cast<std::uint8_t>(seed + i);
        k.body_key.data()[i] = static_cast<std::uint8_t>(seed * 3 + i);
        k.order_key.data()[i] = static_cast<std::uint8_t>(seed * 5 + i);
    }
    return k;
}
std::span<const std::uint8_t, 64> first(const std::vector<std::uint8_t>& b) {
    return std::span<const std::uint8_t, 64>(b.data(), 64);
}
}  // namespace

TEST_CASE("seal and open round-trip byte for byte", "[codec]") {
    Rng rng;
    auto k = keys_from(1);
    for (const std::string& doc : {std::string("{}"), std::string("[1,2,3]\n"), testutil::make_document(1000),
                                   testutil::make_document(200000), std::string("{\"\xe2\x82\xac\": \"\xf0\x9f\x94\x91\"}")}) {
        auto blob = codec::seal(testutil::bytes(doc), k, rng);
        CHECK(blob.size() % 64 == 0);
        auto h = codec::open_header(first(blob), k);
        REQUIRE(h);
        CHECK(h->document_len == doc.size());
        CHECK(h->rows() * 64 == blob.size());
        auto back = codec::open_body(blob, *h, k);
        REQUIRE(back);
        CHECK(back->view() == doc);
    }
}

TEST_CASE("wrong keys and tampering are refused, never returned", "[codec]") {
    Rng rng;
    auto k = keys_from(1), other = keys_from(2);
    std::string doc = testutil::make_document(3000);
    auto blob = codec::seal(testutil::bytes(doc), k, rng);
    CHECK_FALSE(codec::open_header(first(blob), other));
    auto h = codec::open_header(first(blob), k);
    REQUIRE(h);
    CHECK_FALSE(codec::open_body(blob, *h, other));
    for (std::size_t pos : {std::size_t{0}, std::size_t{30}, std::size_t{61}, blob.size() / 2, h->blob_bytes() - 1}) {
        auto bad = blob;
        bad[pos] ^= 0x01;
        auto hh = codec::open_header(first(bad), k);
        bool refused = !hh || !codec::open_body(bad, *hh, k);
        CHECK(refused);
    }
    // The random padding after the sealed bytes is not authenticated data.
    if (h->blob_bytes() < blob.size()) {
        auto pad = blob;
        pad.back() ^= 0xff;
        CHECK(codec::open_body(pad, *h, k));
    }
    // A sealed header whose stated length is wrong does not open the body.
    codec::Header lie = *h;
    lie.compressed_len -= 1;
    CHECK_FALSE(codec::open_body(blob, lie, k));
}

TEST_CASE("seal refuses documents over the size limit", "[codec]") {
    Rng rng;
    auto k = keys_from(1);
    std::vector<std::uint8_t> huge(codec::kMaxDocument + 1, ' ');
    try {
        codec::seal(huge, k, rng);
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::too_large);
    }
}

TEST_CASE("seal and open work for document sizes across the range", "[codec]") {
    // zstd's work buffers live in sodium_malloc'd memory, whose alignment
    // depends on the requested size: sweep sizes so that every buffer shape occurs.
    Rng rng;
    auto k = keys_from(3);
    std::size_t tried = 0;
    for (double size = 16; size < 2.1e6; size *= 1.3) {
        std::string doc = testutil::make_document(static_cast<std::size_t>(size), static_cast<unsigned>(size));
        auto blob = codec::seal(testutil::bytes(doc), k, rng);
        auto h = codec::open_header(first(blob), k);
        REQUIRE(h);
        auto back = codec::open_body(blob, *h, k);
        REQUIRE(back);
        CHECK(back->view() == doc);
        ++tried;
    }
    CHECK(tried >= 40);
}
