#include "shamirfs/fileio.hpp"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "shamirfs/error.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/tasks.hpp"

namespace shamirfs {

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

FileLock::FileLock(const std::string& lock_path, int tries, std::chrono::milliseconds backoff) {
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw_errno("cannot open lock file " + lock_path, errno);
    std::mt19937 jitter(randombytes_random());
    auto delay = backoff;
    for (int attempt = 1;; ++attempt) {
        if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            ::close(fd_);
            throw_errno("cannot lock " + lock_path, e);
        }
        if (attempt >= tries) {
            ::close(fd_);
            throw Error(Errc::busy, "storage busy: " + lock_path + " is held by another process (" +
                                        std::to_string(attempt) + " tries)");
        }
        auto sleep = delay + std::chrono::milliseconds(jitter() % (static_cast<unsigned>(delay.count()) / 2 + 1));
        log::debug("storage locked, retrying in " + std::to_string(sleep.count()) + " ms");
        std::this_thread::sleep_for(sleep);
        delay *= 2;
    }
}

FileLock::~FileLock() {
    if (fd_ >= 0) ::close(fd_);
}

FileHandle::~FileHandle() {
    if (fd_ >= 0) ::close(fd_);
}

FileHandle& FileHandle::operator=(FileHandle&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}

void close_in_background(FileHandle h) {
    if (h.get() < 0) return;
    try {
        tasks::post([fd = h.get()] { ::close(fd); });
        h.release();
    } catch (const std::system_error&) {
        // no thread to be had: h closes here
    }
}

void write_all(int fd, std::string_view data, const std::string& what) {
    std::size_t off = 0;
    while (off < data.size()) {
        const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + what, errno);
        }
        off += static_cast<std::size_t>(n);
    }
}

void fsync_dir(const std::string& dir) {
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw_errno("cannot open directory " + dir, errno);
    int rc = ::fsync(dfd);
    int e = errno;
    ::close(dfd);
    if (rc != 0) throw_errno("cannot fsync directory " + dir, e);
}

FileHandle create_new_file(const std::string& path) {
    FileHandle fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() < 0) throw_errno("cannot create " + path, errno);
    return fd;
}

void write_new_file(const std::string& path, std::string_view data) {
    FileHandle fd = create_new_file(path);
    try {
        write_all(fd.get(), data, path);
        if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + path, errno);
        if (::close(fd.release()) != 0) throw_errno("cannot close " + path, errno);
    } catch (...) {
        ::unlink(path.c_str());
        throw;
    }
}

std::optional<std::string> read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        throw_errno("cannot open " + path, errno);
    }
    std::string out;
    struct stat st{};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            throw_errno("cannot read " + path, e);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

void remove_file(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("cannot remove " + path, errno);
}

std::string content_hash(std::string_view data) { return hash_hex(XXH3_128bits(data.data(), data.size())); }

namespace {
// Adds the page hashes of `length` bytes at `offset` (whole pages, the last
// one possibly the file's short one) to the sum modulo 2^128.
void add_pages(std::uint64_t& high, std::uint64_t& low, std::size_t offset, const char* bytes, std::size_t length) {
    for (std::size_t at = 0; at < length; at += kHashPage) {
        const XXH128_hash_t h = XXH3_128bits_withSeed(bytes + at, std::min(kHashPage, length - at), (offset + at) / kHashPage);
        low += h.low64;
        high += h.high64 + (low < h.low64);  // (the carry)
    }
}

std::string sum_digest(std::uint64_t high, std::uint64_t low, std::size_t size) {
    unsigned char last[24];
    for (int i = 0; i < 8; ++i) {
        last[i] = static_cast<unsigned char>(high >> (8 * (7 - i)));
        last[8 + i] = static_cast<unsigned char>(low >> (8 * (7 - i)));
        last[16 + i] = static_cast<unsigned char>(static_cast<std::uint64_t>(size) >> (8 * (7 - i)));
    }
    return hash_hex(XXH3_128bits(last, sizeof(last)));
}

constexpr std::size_t kDirectRequest = std::size_t{1} << 20;  // the most one O_DIRECT request writes
}  // namespace

std::string page_hash(std::string_view data) {
    std::uint64_t high = 0, low = 0;
    add_pages(high, low, 0, data.data(), data.size());
    return sum_digest(high, low, data.size());
}

PagedWriter::PagedWriter(int fd, std::string path, std::size_t size, bool skip_page_cache)
    : fd_(fd), path_(std::move(path)), size_(size) {
    if (!skip_page_cache || size_ < kDirectFrom) return;
    FileHandle direct(::open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
    struct stat a{}, b{};
    if (direct.get() < 0 || ::fstat(fd_, &a) != 0 || ::fstat(direct.get(), &b) != 0 || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev)
        return;  // (no O_DIRECT here: the page cache)
    // The blocks reserved at once: in place, O_DIRECT writes need no
    // allocation each, and a full disk shows here.
    if (::fallocate(fd_, 0, 0, static_cast<off_t>(size_)) != 0) {
        if (errno == ENOSPC || errno == EDQUOT) throw_errno("cannot write " + path_, errno);
        if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) return;
    }
    aio_context_t ctx = 0;
    if (::syscall(SYS_io_setup, kDirectQueue, &ctx) != 0) return;
    aio_ = ctx;
    direct_ = std::move(direct);
}

PagedWriter::~PagedWriter() {
    stop_flusher();
    if (aio_ != 0) ::syscall(SYS_io_destroy, static_cast<aio_context_t>(aio_));  // (waits for what is in flight)
}

// Nothing is in flight; whatever comes later goes through the page cache.
// io_destroy waits for an RCU grace period (about 30 ms here), so another
// thread waits; a process that exits meanwhile does not wait for it again.
void PagedWriter::release_aio() {
    direct_ = FileHandle();
    if (aio_ == 0) return;
    const auto ctx = static_cast<aio_context_t>(std::exchange(aio_, 0));
    try {
        tasks::post([ctx] { ::syscall(SYS_io_destroy, ctx); });
    } catch (const std::system_error&) {
        ::syscall(SYS_io_destroy, ctx);
    }
}

void PagedWriter::add(std::size_t offset, std::string_view bytes) {
    if (offset > size_ || bytes.size() > size_ - offset) throw Error(Errc::internal, "a write beyond the new file's size");
    const char* from = bytes.data();
    for (std::size_t at = offset, end = offset + bytes.size(); at < end;) {
        const std::size_t index = at / kHashPage, start = index * kHashPage,
                          length = std::min(kHashPage, size_ - start), upto = std::min(end, start + length);
        if (at == start && upto == start + length) {  // whole pages, as far as they go
            const std::size_t run_end = end == size_ ? end : end / kHashPage * kHashPage;
            whole_pages(at, from, run_end - at);
            from += run_end - at;
            at = run_end;
            continue;
        }
        Page& p = partial_[index];
        if (!p.bytes) p.bytes = std::make_unique_for_overwrite<char[]>(length);
        std::memcpy(p.bytes.get() + (at - start), from, upto - at);
        if ((p.filled += upto - at) > length) throw Error(Errc::internal, "overlapping writes to the new file");
        if (p.filled == length) {  // (through the page cache: a request of its own would cost as much as a piece's)
            add_pages(sum_high_, sum_low_, start, p.bytes.get(), length);
            const char* bytes = p.bytes.get();
            write_buffered(start, bytes, length, std::move(p.bytes));
            partial_.erase(index);
        }
        from += upto - at;
        at = upto;
    }
    added_ += bytes.size();
}

void PagedWriter::whole_pages(std::size_t offset, const char* bytes, std::size_t length) {
    add_pages(sum_high_, sum_low_, offset, bytes, length);
    if (!direct() || reinterpret_cast<std::uintptr_t>(bytes) % kHashPage != 0 || length % kHashPage != 0) {
        write_buffered(offset, bytes, length);
        return;
    }
    for (std::size_t at = 0; at < length; at += kDirectRequest) {
        queued_.push_back({offset + at, std::min(kDirectRequest, length - at), bytes + at});
        if (queued_.size() == kDirectQueue) start();
    }
}

// Pieces that follow one another in the file are written together (one
// pwritev): page by page, the page cache costs several times more per byte
// than in runs of 64 KiB and more.
void PagedWriter::write_buffered(std::size_t offset, const char* bytes, std::size_t length, std::unique_ptr<char[]> owned) {
    if (!run_.empty() && (offset != run_at_ + run_bytes_ || run_.size() == kRunPieces)) write_run();
    if (owned) done_pages_.push_back(std::move(owned));
    if (run_.empty()) run_at_ = offset;
    run_.push_back({const_cast<char*>(bytes), length});
    run_bytes_ += length;
}

void PagedWriter::write_run() {
    if (run_.empty()) return;
    iovec* piece = run_.data();
    int left = static_cast<int>(run_.size());
    for (std::size_t at = run_at_; left > 0;) {
        const ssize_t n = ::pwritev(fd_, piece, left, static_cast<off_t>(at));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            throw_errno("cannot write " + path_, n < 0 ? errno : EIO);
        }
        auto done = static_cast<std::size_t>(n);
        at += done;
        for (; left > 0 && done >= piece->iov_len; --left, ++piece) done -= piece->iov_len;
        if (left > 0) {  // (short: the rest of this piece next)
            piece->iov_base = static_cast<char*>(piece->iov_base) + done;
            piece->iov_len -= done;
        }
    }
    unsynced_ += run_bytes_;
    run_.clear();
    run_bytes_ = 0;
    done_pages_.clear();
    if (unsynced_ < (std::size_t{1} << 20)) return;
    unsynced_ = 0;
    start_writeback();
}

void PagedWriter::start_writeback() {
    if (!flusher_) {
        flusher_ = std::make_unique<Flusher>();
        try {
            flusher_->running = tasks::async([f = flusher_.get(), fd = fd_] {
                std::unique_lock lock(f->mutex);
                for (;;) {
                    f->wanted.wait(lock, [f] { return f->pending || f->stop; });
                    if (f->stop) return;
                    f->pending = false;
                    lock.unlock();
                    ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // a hint: errors come back from fsync
                    lock.lock();
                }
            });
        } catch (const std::system_error&) {  // (no thread: the writer starts the writeback itself)
            flusher_.reset();
            ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
            return;
        }
    }
    {
        std::lock_guard lock(flusher_->mutex);
        flusher_->pending = true;
    }
    flusher_->wanted.notify_one();
}

void PagedWriter::stop_flusher() {
    if (!flusher_) return;
    {
        std::lock_guard lock(flusher_->mutex);
        flusher_->stop = true;
    }
    flusher_->wanted.notify_one();
    flusher_->running.wait();
    flusher_.reset();
}

// Submits what is queued (O_DIRECT, asynchronous), waiting only while
// kDirectQueue requests are in flight.
void PagedWriter::start() {
    while (!queued_.empty()) {
        while (in_flight_.size() >= kDirectQueue) reap();
        if (!direct()) {  // (reap found that O_DIRECT does not work here)
            for (const Request& r : std::exchange(queued_, {})) write_buffered(r.offset, r.bytes, r.length);
            return;
        }
        const std::size_t n = std::min(kDirectQueue - in_flight_.size(), queued_.size());
        std::vector<iocb> blocks(n);
        std::vector<iocb*> pointers(n);
        for (std::size_t i = 0; i < n; ++i) {
            const Request& r = queued_[i];
            iocb& b = blocks[i];
            b.aio_data = next_request_;
            b.aio_lio_opcode = IOCB_CMD_PWRITE;
            b.aio_fildes = static_cast<std::uint32_t>(direct_.get());
            b.aio_buf = reinterpret_cast<std::uintptr_t>(r.bytes);
            b.aio_nbytes = r.length;
            b.aio_offset = static_cast<std::int64_t>(r.offset);
            pointers[i] = &b;
            in_flight_.emplace(next_request_++, r);
        }
        std::size_t submitted = 0;
        while (submitted < n) {
            const long got = ::syscall(SYS_io_submit, static_cast<aio_context_t>(aio_), n - submitted, pointers.data() + submitted);
            if (got > 0) submitted += static_cast<std::size_t>(got);
            else if (got < 0 && errno == EINTR) continue;
            else break;
        }
        for (std::size_t i = submitted; i < n; ++i) {  // not taken: through the page cache
            in_flight_.erase(blocks[i].aio_data);
            write_buffered(queued_[i].offset, queued_[i].bytes, queued_[i].length);
        }
        queued_.erase(queued_.begin(), queued_.begin() + static_cast<std::ptrdiff_t>(n));
        if (submitted == 0) direct_ = FileHandle();  // no AIO here: the page cache from now on
    }
}

// Waits for at least one request in flight. Where O_DIRECT turns out not to
// work (EINVAL before any request succeeded: an alignment this file system
// does not take), the request goes through the page cache, and so does every
// later one.
void PagedWriter::reap() {
    io_event events[kDirectQueue];
    long n;
    while ((n = ::syscall(SYS_io_getevents, static_cast<aio_context_t>(aio_), 1, kDirectQueue, events, nullptr)) < 0)
        if (errno != EINTR) throw_errno("cannot wait for the writes of " + path_, errno);
    int error = 0;
    for (long i = 0; i < n; ++i) {
        const auto it = in_flight_.find(events[i].data);
        if (it == in_flight_.end()) throw Error(Errc::internal, "an unknown write completed");
        const Request r = it->second;
        in_flight_.erase(it);
        const std::int64_t res = events[i].res;
        if (res == static_cast<std::int64_t>(r.length)) {
            direct_worked_ = true;
        } else if (res == -EINVAL && !direct_worked_) {
            direct_ = FileHandle();
            write_buffered(r.offset, r.bytes, r.length);
        } else if (res < 0) {
            error = static_cast<int>(-res);
        } else {  // short: the rest through the page cache
            const auto done = static_cast<std::size_t>(res);
            write_buffered(r.offset + done, r.bytes + done, r.length - done);
        }
    }
    if (error != 0) throw_errno("cannot write " + path_, error);
}

void PagedWriter::flush() {
    start();
    while (!in_flight_.empty()) reap();
    write_run();
}

std::string PagedWriter::digest() {
    flush();
    release_aio();
    stop_flusher();
    if (added_ != size_ || !partial_.empty()) throw Error(Errc::internal, "the new file was not written whole");
    return sum_digest(sum_high_, sum_low_, size_);
}

std::string hash_hex(XXH128_hash_t h) {
    char hex[33];
    std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    return hex;
}

}  // namespace shamirfs
