// libFuzzer: JSON validation at commit: a verdict for every input; a refusal
// has a position inside the text (or just past its end) and never quotes it;
// the fast path accepts nothing that nlohmann (the slow path) refuses.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "shamirfs/json_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    shamirfs::JsonVerdict v = shamirfs::check_json(text);
    if (!v.ok) {
        if (v.line < 1 || v.column < 1 || v.message.empty()) __builtin_trap();
        if (v.message.find("last read") != std::string::npos) __builtin_trap();
    }
    if (shamirfs::json_fast_accepts(text) && !nlohmann::json::accept(text.begin(), text.end())) __builtin_trap();
    return 0;
}
