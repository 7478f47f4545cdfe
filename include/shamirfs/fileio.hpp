// File-system helpers of the core: the storage lock, durable writes, hashing.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shamirfs {

std::string dir_of(const std::string& path);
std::string base_of(const std::string& path);

// flock(LOCK_EX) on `lock_path` (created 0600 if missing), retried `tries`
// times with exponential backoff from `backoff`, plus up to 50 % jitter; then
// Error(busy). The kernel releases it when the process dies, so it never goes stale.
class FileLock {
public:
    FileLock(const std::string& lock_path, int tries, std::chrono::milliseconds backoff);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

void write_all(int fd, std::string_view data, const std::string& what);
void fsync_dir(const std::string& dir);
// Creates `path` with O_EXCL, 0600, writes, fsyncs and closes it; on failure
// removes it and throws (Error(no_space) for ENOSPC).
void write_new_file(const std::string& path, std::string_view data);
// Replaces `path` durably: write_new_file(path + ".tmp"), rename, fsync dir.
void replace_small_file(const std::string& path, std::string_view data);
// Whole file (at most `limit` + 1 bytes of it, so a caller can tell it is too
// long), or nothing if it does not exist; Error(io) otherwise. The string has
// `spare` bytes of capacity past its end (simdjson's padding).
std::optional<std::string> read_file(const std::string& path, std::size_t spare = 0,
                                     std::size_t limit = std::size_t{1} << 40);
void remove_file(const std::string& path);  // ENOENT is fine

// XXH3-128 of the bytes, as 32 hex digits: tells whether bytes changed (a
// storage file, a temp file named in the WAL, a mounted document); never used
// against someone choosing the bytes. About 20 times faster than BLAKE2b,
// which would cost more than the disk write of a large storage.
std::string content_hash(std::string_view data);

}  // namespace shamirfs
