#include <catch2/catch.hpp>
#include <zstd.h>

#include <thread>

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
unsigned version = 2;  // set by each test case (GENERATE)
std::span<const std::uint8_t> first(const std::vector<std::uint8_t>& b) {
    return std::span(b).first(codec::prefix_bytes(version));
}
std::vector<std::uint8_t> seal(std::span<const std::uint8_t> doc, const PartitionKeys& k, Rng& rng) {
    return codec::seal(version, doc, std::nullopt, {}, k, rng);
}
}  // namespace

TEST_CASE("seal and open round-trip byte for byte", "[codec]") {
    version = GENERATE(1u, 2u);
    Rng rng;
    auto k = keys_from(1);
    for (const std::string& doc : {std::string("{}"), std::string("[1,2,3]\n"), testutil::make_document(1000),
                                   testutil::make_document(200000), std::string("{\"\xe2\x82\xac\": \"\xf0\x9f\x94\x91\"}")}) {
        auto blob = seal(testutil::bytes(doc), k, rng);
        CHECK(blob.size() % 64 == 0);
        auto h = codec::open_header(version, first(blob), k);
        REQUIRE(h);
        CHECK(h->document_len == doc.size());
        CHECK(h->chunks() * 64 == blob.size());
        auto back = codec::open_body(blob, *h, k);
        REQUIRE(back);
        CHECK(back->document.view() == doc);
        CHECK_FALSE(back->draft);
    }
}

TEST_CASE("wrong keys and tampering are refused, never returned", "[codec]") {
    version = GENERATE(1u, 2u);
    Rng rng;
    auto k = keys_from(1), other = keys_from(2);
    std::string doc = testutil::make_document(3000);
    auto blob = seal(testutil::bytes(doc), k, rng);
    CHECK_FALSE(codec::open_header(version, first(blob), other));
    auto h = codec::open_header(version, first(blob), k);
    REQUIRE(h);
    CHECK_FALSE(codec::open_body(blob, *h, other));
    for (std::size_t pos : {std::size_t{0}, std::size_t{30}, codec::prefix_bytes(version) + 1, blob.size() / 2, h->blob_bytes() - 1}) {
        auto bad = blob;
        bad[pos] ^= 0x01;
        auto hh = codec::open_header(version, first(bad), k);
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
    version = GENERATE(1u, 2u);
    Rng rng;
    auto k = keys_from(1);
    std::vector<std::uint8_t> huge(codec::kMaxDocument + 1, ' ');
    try {
        seal(huge, k, rng);
        FAIL("accepted");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::too_large);
    }
}

TEST_CASE("seal and open work for document sizes across the range", "[codec]") {
    version = GENERATE(1u, 2u);
    // zstd's work buffers live in sodium_malloc'd memory, whose alignment
    // depends on the requested size: sweep sizes so that every buffer shape occurs.
    Rng rng;
    auto k = keys_from(3);
    std::size_t tried = 0;
    for (double size = 16; size < 2.1e6; size *= 1.3) {
        std::string doc = testutil::make_document(static_cast<std::size_t>(size), static_cast<unsigned>(size));
        auto blob = seal(testutil::bytes(doc), k, rng);
        auto h = codec::open_header(version, first(blob), k);
        REQUIRE(h);
        auto back = codec::open_body(blob, *h, k);
        REQUIRE(back);
        CHECK(back->document.view() == doc);
        CHECK_FALSE(back->draft);
        ++tried;
    }
    CHECK(tried >= 40);
}

TEST_CASE("version 2 seals the label, generation, time and a draft beside the document", "[codec]") {
    version = 2;
    Rng rng;
    auto k = keys_from(4);
    const std::string doc = testutil::make_document(5000), draft = "{\"half\": ";
    codec::Meta meta{"personal", 41, 1767225600};
    auto blob = codec::seal(2, testutil::bytes(doc), testutil::bytes(draft), meta, k, rng);
    auto h = codec::open_header(2, first(blob), k);
    REQUIRE(h);
    CHECK(h->meta.label == "personal");
    CHECK(h->meta.generation == 41);
    CHECK(h->meta.time == 1767225600);
    CHECK(h->has_draft);
    auto back = codec::open_body(blob, *h, k);
    REQUIRE(back);
    CHECK(back->document.view() == doc);
    REQUIRE(back->draft);
    CHECK(back->draft->view() == draft);
    // An empty draft is a draft too.
    auto empty = codec::seal(2, testutil::bytes(doc), testutil::bytes(std::string()), meta, k, rng);
    auto he = codec::open_header(2, first(empty), k);
    REQUIRE(he);
    auto eb = codec::open_body(empty, *he, k);
    REQUIRE(eb);
    REQUIRE(eb->draft);
    CHECK(eb->draft->size() == 0);
    // The header is authenticated: a changed label or generation does not open the body.
    codec::Header lie = *h;
    lie.meta.generation = 42;
    CHECK_FALSE(codec::open_body(blob, lie, k));
    lie = *h;
    lie.meta.label = "persona1";
    CHECK_FALSE(codec::open_body(blob, lie, k));
    // Labels are limited; version 1 has no room for any of this.
    CHECK_THROWS_AS(codec::seal(2, testutil::bytes(doc), std::nullopt, codec::Meta{std::string(57, 'x'), 0, 0}, k, rng), Error);
    CHECK_THROWS_AS(codec::seal(1, testutil::bytes(doc), testutil::bytes(draft), {}, k, rng), Error);
    // A version 1 blob does not open as version 2 or the other way round.
    auto v1 = codec::seal(1, testutil::bytes(doc), std::nullopt, {}, k, rng);
    CHECK_FALSE(codec::open_header(2, std::span(v1).first(codec::prefix_bytes(2)), k));
}

TEST_CASE("a text that does not compress is sealed too (the larger compression buffer)", "[codec]") {
    version = 2;
    Rng rng;
    auto k = keys_from(5);
    std::vector<std::uint8_t> noise(300000), draft(200000);
    rng.fill(noise);
    rng.fill(draft);
    auto blob = codec::seal(2, noise, std::span<const std::uint8_t>(draft), {}, k, rng);
    auto h = codec::open_header(2, first(blob), k);
    REQUIRE(h);
    CHECK(h->compressed_len > noise.size() / 3);
    auto back = codec::open_body(blob, *h, k);
    REQUIRE(back);
    CHECK(std::equal(noise.begin(), noise.end(), back->document.data()));
    REQUIRE(back->draft);
    CHECK(std::equal(draft.begin(), draft.end(), back->draft->data()));
}

// A large document is compressed in parts, one frame each, on as many cores
// as there are (up to 4, parts of at least 400 KiB); the frames one after the
// other are the document. Noise does not fit the first, smaller buffer, and
// is compressed again, in parts, into the whole bound.
TEST_CASE("a large document is compressed in parts, one zstd frame each, and opens whole", "[codec]") {
    version = 2;
    Rng rng;
    auto k = keys_from(7);
    const std::string json = testutil::make_document(9u << 20, 9);
    std::vector<std::uint8_t> noise(9u << 20);
    rng.fill(noise);
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    for (const auto doc : {testutil::bytes(json), std::span<const std::uint8_t>(noise)}) {
        INFO((doc.data() == noise.data() ? "noise" : "JSON"));
        const codec::Compressed c = codec::compress(doc, std::nullopt);
        std::size_t frames = 0, content = 0;
        for (std::size_t at = 0; at < c.compressed_len; ++frames) {
            const std::size_t n = ZSTD_findFrameCompressedSize(c.frames.data() + at, c.compressed_len - at);
            REQUIRE_FALSE(ZSTD_isError(n));
            content += ZSTD_getFrameContentSize(c.frames.data() + at, n);
            at += n;
        }
        CHECK(content == doc.size());
        CHECK(frames == std::min<std::size_t>(cores, 4));
        auto blob = codec::seal(2, doc, std::nullopt, {}, k, rng);
        auto h = codec::open_header(2, first(blob), k);
        REQUIRE(h);
        auto back = codec::open_body(blob, *h, k);
        REQUIRE(back);
        CHECK(std::equal(doc.begin(), doc.end(), back->document.data()));
    }
}
