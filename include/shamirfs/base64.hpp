// Standard base64 (RFC 4648, '+' '/'), used for the cells (66 bytes -> 88
// characters, no padding) and the salt (16 bytes -> 24 with "==").
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace shamirfs::base64 {

std::size_t encoded_size(std::size_t bytes);
void encode(std::span<const std::uint8_t> in, char* out);  // writes encoded_size(in.size())
std::string encode(std::span<const std::uint8_t> in);
// Strict: canonical padding, no whitespace, zero trailing bits. False on error.
bool decode(std::string_view in, std::span<std::uint8_t> out);
// The number of bytes `in` decodes to, or -1 if the length is impossible.
long decoded_size(std::string_view in);

}  // namespace shamirfs::base64
