// libFuzzer: the reader of the backing file must answer any input with a
// storage (format 2: damage between the cells set right, damaged cells left as
// erasures) or Error(corrupt), never anything else.
#include <cstdint>
#include <string_view>

#include "shamirfs/error.hpp"
#include "shamirfs/storage_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        shamirfs::Matrix m = shamirfs::parse_storage(
            std::string(reinterpret_cast<const char*>(data), size), shamirfs::test_kdf_limits());
        // What was accepted must be written and read back identically.
        std::string again(m.file_text());
        shamirfs::Matrix m2 = shamirfs::parse_storage(again, shamirfs::test_kdf_limits());
        if (m2.file_text() != m.file_text() || m2.capacity() != m.capacity() || !m2.load_notes.empty()) __builtin_trap();
        for (std::size_t r = 0; r < m.capacity(); ++r)
            for (unsigned c = 0; c < m.columns(); ++c)
                if (m2.cell_text(r, c) != m.cell_text(r, c)) __builtin_trap();
    } catch (const shamirfs::Error& e) {
        if (e.code() != shamirfs::Errc::corrupt) __builtin_trap();
    }
    return 0;
}
