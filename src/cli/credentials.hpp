// Reading secrets: prompts on the terminal without echo, or files, always into
// locked memory. Also reading whole documents into locked memory.
#pragma once
#include <string>

#include "shamirfs/secure_buffer.hpp"

namespace shamirfs::cli {

// Reads one line from /dev/tty with echo off. Error(usage) when there is no terminal.
SecureBuffer prompt_secret(const std::string& prompt, const std::string& hint_if_no_tty);
// First line of a file, without its line ending; Error(usage) if empty.
SecureBuffer read_secret_file(const std::string& path, const char* what);
// A whole file ("-": standard input).
SecureBuffer read_document(const std::string& path);
// Writes all bytes to fd 1.
void write_stdout(const SecureBuffer& data);

}  // namespace shamirfs::cli
