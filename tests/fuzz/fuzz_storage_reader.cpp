// libFuzzer: the strict reader of the backing file must answer any input with
// a storage or Error(corrupt), never anything else.
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
        if (m2.file_text() != m.file_text() || m2.capacity() != m.capacity()) __builtin_trap();
        for (std::size_t r = 0; r < m.capacity(); ++r)
            if (m2.row_text(r) != m.row_text(r)) __builtin_trap();
    } catch (const shamirfs::Error& e) {
        if (e.code() != shamirfs::Errc::corrupt) __builtin_trap();
    }
    return 0;
}
