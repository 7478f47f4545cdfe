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
// First line of everything readable from fd (at most 4 KiB); Error(usage) if empty.
SecureBuffer read_secret_fd(int fd, const std::string& what);
// The first line printed by `sh -c command` (like gocryptfs's -extpass), run
// with SHAMIRFS_LABEL and SHAMIRFS_STORAGE in its environment.
SecureBuffer run_extpass(const std::string& command, const std::string& label, const std::string& storage);
// A whole file ("-": standard input).
SecureBuffer read_document(const std::string& path);
// Writes all bytes to fd 1.
void write_stdout(const SecureBuffer& data);

}  // namespace shamirfs::cli
