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
// Whole file, or nothing if it does not exist; Error(io) otherwise.
std::optional<std::string> read_file(const std::string& path);
void remove_file(const std::string& path);  // ENOENT is fine

// BLAKE2b-256 of the bytes, as 64 hex digits.
std::string content_hash(std::string_view data);

}  // namespace shamirfs
