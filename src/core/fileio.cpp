#include "shamirfs/fileio.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <system_error>
#include <thread>

#include "shamirfs/error.hpp"
#include "shamirfs/log.hpp"

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
        std::thread([fd = h.get()] { ::close(fd); }).detach();
        h.release();
    } catch (const std::system_error&) {
        // no thread to be had: h closes here
    }
}

namespace {
// Writes all of `data` at the file position (at < 0) or at offset `at`.
void write_fully(int fd, std::string_view data, off_t at, const std::string& what) {
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = at < 0 ? ::write(fd, data.data() + off, data.size() - off)
                           : ::pwrite(fd, data.data() + off, data.size() - off, at + static_cast<off_t>(off));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + what, errno);
        }
        off += static_cast<std::size_t>(n);
    }
}
}  // namespace

void write_all(int fd, std::string_view data, const std::string& what) { write_fully(fd, data, -1, what); }

void write_all_at(int fd, std::string_view data, std::size_t offset, const std::string& what) {
    write_fully(fd, data, static_cast<off_t>(offset), what);
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

void replace_small_file(const std::string& path, std::string_view data) {
    std::string tmp = path + ".tmp";
    remove_file(tmp);
    write_new_file(tmp, data);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw_errno("cannot rename " + tmp + " onto " + path, e);
    }
    fsync_dir(dir_of(path));
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

void PageHash::add_page(std::size_t index, const char* page, std::size_t length) {
    const XXH128_hash_t h = XXH3_128bits_withSeed(page, length, index);
    sum_low_ += h.low64;
    sum_high_ += h.high64 + (sum_low_ < h.low64);  // (the carry)
}

void PageHash::add(std::size_t offset, std::string_view bytes) {
    if (offset > size_ || bytes.size() > size_ - offset) throw Error(Errc::internal, "a write beyond the new file's size");
    const char* from = bytes.data();
    for (std::size_t at = offset, end = offset + bytes.size(); at < end;) {
        const std::size_t index = at / kHashPage, start = index * kHashPage,
                          length = std::min(kHashPage, size_ - start), upto = std::min(end, start + length);
        if (at == start && upto == start + length) {
            add_page(index, from, length);
        } else {
            Partial& p = partial_[index];
            p.bytes.resize(length);
            std::memcpy(p.bytes.data() + (at - start), from, upto - at);
            if ((p.filled += upto - at) > length) throw Error(Errc::internal, "overlapping writes to the new file");
            if (p.filled == length) {
                add_page(index, p.bytes.data(), length);
                partial_.erase(index);
            }
        }
        from += upto - at;
        at = upto;
    }
    added_ += bytes.size();
}

std::string PageHash::digest() const {
    if (added_ != size_ || !partial_.empty()) throw Error(Errc::internal, "the new file was not written whole");
    unsigned char last[24];
    for (int i = 0; i < 8; ++i) {
        last[i] = static_cast<unsigned char>(sum_high_ >> (8 * (7 - i)));
        last[8 + i] = static_cast<unsigned char>(sum_low_ >> (8 * (7 - i)));
    }
    for (int i = 0; i < 8; ++i) last[16 + i] = static_cast<unsigned char>(static_cast<std::uint64_t>(size_) >> (8 * (7 - i)));
    return hash_hex(XXH3_128bits(last, sizeof(last)));
}

std::string page_hash(std::string_view data) {
    PageHash h(data.size());
    h.add(0, data);
    return h.digest();
}

std::string hash_hex(XXH128_hash_t h) {
    char hex[33];
    std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    return hex;
}

}  // namespace shamirfs
