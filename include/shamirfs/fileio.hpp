// File-system helpers of the core: the storage lock, durable writes, hashing.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <xxhash.h>

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
    FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

// An open file descriptor, closed when dropped.
class FileHandle {
public:
    FileHandle() = default;
    explicit FileHandle(int fd) : fd_(fd) {}
    ~FileHandle();
    FileHandle(FileHandle&& o) noexcept : fd_(o.release()) {}
    FileHandle& operator=(FileHandle&& o) noexcept;
    FileHandle(const FileHandle&) = delete;
    FileHandle& operator=(const FileHandle&) = delete;
    int get() const { return fd_; }
    int release() { int fd = fd_; fd_ = -1; return fd; }

private:
    int fd_ = -1;
};
// Closes on a thread of its own. Closing the last descriptor of an unlinked
// file frees its page cache and blocks (tens of ms for a large storage), which
// need not delay the caller.
void close_in_background(FileHandle h);

void write_all(int fd, std::string_view data, const std::string& what);
void write_all_at(int fd, std::string_view data, std::size_t offset, const std::string& what);
void fsync_dir(const std::string& dir);
// Creates `path` read-write (a new storage is read back for its hash) with
// O_EXCL, 0600; Error(io) if it cannot.
FileHandle create_new_file(const std::string& path);
// Creates `path` (create_new_file), writes, fsyncs and closes it; on failure
// removes it and throws (Error(no_space) for ENOSPC).
void write_new_file(const std::string& path, std::string_view data);
// Replaces `path` durably: write_new_file(path + ".tmp"), rename, fsync dir.
void replace_small_file(const std::string& path, std::string_view data);
// Whole file, or nothing if it does not exist; Error(io) otherwise.
std::optional<std::string> read_file(const std::string& path);
void remove_file(const std::string& path);  // ENOENT is fine

// XXH3-128 of the bytes, as 32 hex digits: tells whether bytes changed (a
// storage file, a temp file named in the WAL, a mounted document); never used
// against someone choosing the bytes. About 20 times faster than BLAKE2b,
// which would cost more than the disk write of a large storage.
std::string content_hash(std::string_view data);
// The same of the first `size` bytes of an open file of our own (a temp file:
// it is mapped, and must not be truncated meanwhile).
std::string content_hash_of(int fd, std::size_t size, const std::string& what);
// The same, from a digest (of a file hashed piece by piece).
std::string hash_hex(XXH128_hash_t digest);

}  // namespace shamirfs
