// File-system helpers of the core: the storage lock, durable writes, hashing.
#pragma once
#include <sys/uio.h>
#include <array>
#include <memory>
#include <mutex>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

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
// Closes on another thread (tasks.hpp). Closing the last descriptor of an unlinked
// file frees its page cache and blocks (tens of ms for a large storage), which
// need not delay the caller.
void close_in_background(FileHandle h);

void write_all(int fd, std::string_view data, const std::string& what);
void fsync_dir(const std::string& dir);
// Creates `path` for writing with O_EXCL, 0600; Error(io) if it cannot.
FileHandle create_new_file(const std::string& path);
// Creates `path` (create_new_file), writes, fsyncs and closes it; on failure
// removes it and throws (Error(no_space) for ENOSPC).
void write_new_file(const std::string& path, std::string_view data);
// Whole file, or nothing if it does not exist; Error(io) otherwise.
std::optional<std::string> read_file(const std::string& path);
void remove_file(const std::string& path);  // ENOENT is fine

// XXH3-128 of the bytes, as 32 hex digits: tells whether bytes changed (a
// storage file, a temp file named in the WAL, a mounted document); never used
// against someone choosing the bytes. About 20 times faster than BLAKE2b,
// which would cost more than the disk write of a large storage.
std::string content_hash(std::string_view data);
// 32 hex digits of a digest, high 64 bits first.
std::string hash_hex(XXH128_hash_t digest);

// The hash a write-ahead log record (version 3) names a new file by: the file
// is cut into kHashPage-byte pages (the last one shorter), page i's XXH3-128
// with seed i is added up modulo 2^128, and that sum (16 bytes, big-endian)
// followed by the file's size (8 bytes, big-endian) is hashed once more with
// XXH3-128 (32 hex digits, as content_hash). Pages can be hashed in any order,
// so a file written in pieces is hashed from the bytes as they are written
// (PagedWriter), and nothing is read back.
inline constexpr std::size_t kHashPage = 4096;
std::string page_hash(std::string_view data);

// A new file of `size` bytes written in pieces, in any order, at their
// offsets (pieces never overlap: Error(internal) where that shows). Each page
// is written and hashed (page_hash) once whole: at once where a piece covers
// it, else from a copy assembled from the pieces.
//
// Where the caller keeps the file's bytes in memory anyway (the mount: its
// storage text), a copy in the page cache serves no one, and the kernel's
// copying cost about as much CPU time as making the shares. With
// `skip_page_cache`, a file of kDirectFrom bytes or more has its whole pages
// written with O_DIRECT from the caller's memory where a piece lies in it as
// in the file modulo kHashPage (a storage text does), up to kDirectQueue
// requests in flight (Linux AIO), into blocks reserved first (a full disk
// shows before anything is written). Everything else goes through the page
// cache, with writeback started every MB on a thread of its own (the
// block layer's writeback throttling may make it wait for the disk, and the
// writer must not: it has the next pieces to copy): a smaller file, assembled
// pages, the last page, a file system without O_DIRECT or AIO, and a process
// that ends after its command (the next one reads the new file from the page
// cache).
class PagedWriter {
public:
    static constexpr std::size_t kDirectFrom = std::size_t{16} << 20, kDirectQueue = 64;
    // `fd`: the new file, open for writing, empty; `path` names it.
    // `skip_page_cache`: O_DIRECT where it applies (see above).
    PagedWriter(int fd, std::string path, std::size_t size, bool skip_page_cache);
    ~PagedWriter();
    PagedWriter(const PagedWriter&) = delete;
    PagedWriter& operator=(const PagedWriter&) = delete;
    // Adds a piece at `offset`; its bytes must stay as they are until flush().
    void add(std::size_t offset, std::string_view bytes);
    // Waits until every write begun is done (the pieces' buffers may then be
    // reused); Error(io/no_space) if one failed.
    void flush();
    bool direct() const { return direct_.get() >= 0; }
    // Waits for every write, then the page hash; Error(internal) unless every
    // byte was added.
    std::string digest();

private:
    struct Page {
        std::size_t filled = 0;
        std::unique_ptr<char[]> bytes;
    };
    struct Request {
        std::size_t offset, length;
        const char* bytes;
    };
    void whole_pages(std::size_t offset, const char* bytes, std::size_t length);
    // Joins the run (`owned`: the bytes' buffer, kept until it is written).
    void write_buffered(std::size_t offset, const char* bytes, std::size_t length, std::unique_ptr<char[]> owned = {});
    void write_run();
    void start_writeback();  // of what is written so far, on the flusher thread
    void start();
    void reap();
    void release_aio();
    void stop_flusher();
    int fd_;
    std::string path_;
    std::size_t size_, added_ = 0, unsynced_ = 0;
    std::uint64_t sum_high_ = 0, sum_low_ = 0;       // the pages' hashes, summed modulo 2^128
    std::unordered_map<std::size_t, Page> partial_;  // pages written in part, by index
    static constexpr std::size_t kRunPieces = 1024;  // (IOV_MAX)
    std::vector<iovec> run_;                          // pieces that follow one another, not yet written
    std::size_t run_at_ = 0, run_bytes_ = 0;
    std::vector<std::unique_ptr<char[]>> done_pages_;  // pages completed here, in the run
    FileHandle direct_;                              // the file again, with O_DIRECT (or none)
    unsigned long aio_ = 0;                          // the AIO context
    bool direct_worked_ = false;                     // an O_DIRECT write succeeded
    std::vector<Request> queued_;
    std::unordered_map<std::uint64_t, Request> in_flight_;  // by request number
    std::uint64_t next_request_ = 0;
    // Starts the writeback of what is written, on its own thread (from the
    // first MB), while the writer goes on.
    struct Flusher {
        std::mutex mutex;
        std::condition_variable wanted;
        bool pending = false, stop = false;
        std::future<void> running;
    };
    std::unique_ptr<Flusher> flusher_;
};

}  // namespace shamirfs
