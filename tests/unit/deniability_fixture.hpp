// The storage the statistical tests and the report look at: 4 slots, capacity
// 1024 rows; partition a written with a large document, partition b never
// written (it holds "{}"), two slots unassigned. Also the two broken variants.
#pragma once
#include "helpers.hpp"
#include "shamirfs/codec.hpp"
#include "stats.hpp"

struct DeniabilityFixture {
    testutil::TempDir dir;
    shamirfs::Matrix m;
    unsigned written = 0, unwritten = 0, unassigned = 0;
    std::size_t document_rows = 0;
    std::string document = testutil::make_document(960000, 3);  // about 750 rows of 3 chunks: most of the 1024

    DeniabilityFixture() {
        using namespace shamirfs;
        std::string path = dir.file("enc.json");
        CreateSpec spec = testutil::cheap_spec(2);
        spec.capacity = 1024;
        auto created = Store::create(path, spec, testutil::passwords({"pa", "pb"}), testutil::test_options());
        Store store(path, testutil::test_options());
        Partition a = store.unlock(created.keys[0], "pa"), b = store.unlock(created.keys[1], "pb");
        store.commit(a, testutil::bytes(document));
        m = store.load();
        written = a.slot;
        unwritten = b.slot;
        for (unsigned s = 0; s < m.params().slots; ++s)
            if (s != a.slot && s != b.slot) unassigned = s;
        document_rows = *shamirfs::document_rows(m, a);
    }

    // Broken variant 1: the shares carry the plaintext (no encryption layer).
    shamirfs::Matrix without_encryption() const {
        shamirfs::Matrix broken = m;
        std::vector<std::uint8_t> raw(std::min(document.size(), m.capacity() * m.params().row_bytes()) / 64 * 64);
        std::copy_n(document.begin(), raw.size(), raw.begin());
        shamirfs::Rng rng;
        shamirfs::write_slot(broken, written, raw, rng);
        return broken;
    }
    // Broken variant 2: an unassigned slot filled with garbage from [0, 2^512).
    shamirfs::Matrix small_range_garbage() const {
        shamirfs::Matrix broken = m;
        shamirfs::Rng rng;
        for (std::size_t r = 0; r < m.capacity(); ++r)
            for (unsigned i = 0; i < m.params().shares; ++i)
                broken.set(r, unassigned * m.params().shares + i, rng.chunk_element());
        return broken;
    }
};
