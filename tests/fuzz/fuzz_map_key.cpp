// libFuzzer: partition map keys: parse or Error(malformed_key); what parses
// formats back to a key that parses to the same slot and secret.
#include <cstdint>
#include <string_view>

#include "shamirfs/error.hpp"
#include "shamirfs/keys.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        shamirfs::MapKey k = shamirfs::parse_map_key(std::string_view(reinterpret_cast<const char*>(data), size));
        shamirfs::MapKey again = shamirfs::parse_map_key(shamirfs::format_map_key(k).view());
        if (again.slot != k.slot || again.secret.view() != k.secret.view()) __builtin_trap();
    } catch (const shamirfs::Error& e) {
        if (e.code() != shamirfs::Errc::malformed_key) __builtin_trap();
    }
    return 0;
}
