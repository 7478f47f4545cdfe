// Reading secrets: prompts on the terminal without echo, or files, always into
// locked memory. Also reading whole documents into locked memory, or mapping
// a large one where it lies (DocumentFile::bytes).
#pragma once
#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shamirfs/fileio.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs::cli {

// Passwords and key lines are at most 4096 bytes, typed or read from a file
// (shamirfs(1), CREDENTIALS).
//
// Reads one line from /dev/tty, with echo off unless `echo` (a key is not a
// password: seeing it typed or pasted helps). Error(usage) when there is no
// terminal, or the line is longer than the limit.
SecureBuffer prompt_secret(const std::string& prompt, const std::string& hint_if_no_tty, bool echo = false);
// A partition map key typed or pasted at the terminal (echoed), or the path of
// a key file typed there instead (then its first line).
SecureBuffer prompt_key(const std::string& prompt, const std::string& hint_if_no_tty);
// The label before ": " in a key line as create prints it ("a: sfk1-..."), or "".
std::string label_in_key_line(std::string_view line);
// The label known before the password opens a partition (its sealed label
// is known only after): the key line's, else the key file's name without
// ".key"; "" if neither.
std::string label_before_unlock(const std::optional<std::string>& keyfile, std::string_view key_text);
// The first line of a file, without its line ending, however long the file;
// Error(usage) if empty or longer than the limit.
SecureBuffer read_secret_file(const std::string& path, const char* what);
// The first line of everything readable from fd (the rest is read and
// dropped); Error(usage) if empty or longer than the limit.
SecureBuffer read_secret_fd(int fd, const std::string& what);
// The first line printed by `sh -c command` (like gocryptfs's -extpass), run
// with SHAMIRFS_LABEL and SHAMIRFS_STORAGE in its environment.
SecureBuffer run_extpass(const std::string& command, const std::string& label, const std::string& storage);
// A whole file ("-": standard input).
SecureBuffer read_document(const std::string& path);
// The same in two steps: opened now (a file that is missing or unreadable is
// said at once, before any prompt), read later, possibly on another thread.
class DocumentFile {
public:
    explicit DocumentFile(std::string path);
    ~DocumentFile();
    DocumentFile(const DocumentFile&) = delete;
    DocumentFile& operator=(const DocumentFile&) = delete;
    bool is_stdin() const { return path_ == "-"; }
    SecureBuffer read();
    // The document's bytes, valid while this object lives. A regular file of
    // kMapFrom bytes or more is mapped read-only where it lies in the page
    // cache (nothing is copied; a file's clean pages never go to swap);
    // anything else is read into locked memory.
    static constexpr std::size_t kMapFrom = std::size_t{1} << 20;
    std::span<const std::uint8_t> bytes();
    // Error(io) when the mapped file was changed since it was mapped (its
    // bytes may then be a mix of versions); nothing for a document read.
    void check_unchanged() const;

private:
    std::string path_;
    FileHandle file_;
    SecureBuffer read_;
    void* map_ = nullptr;
    std::size_t map_size_ = 0;
    struct stat mapped_ {};
};
// Writes all bytes to fd 1.
void write_stdout(const SecureBuffer& data);

}  // namespace shamirfs::cli
