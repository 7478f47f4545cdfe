#include "shamirfs/store.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <random>
#include <thread>

#include "shamirfs/codec.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/json_check.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/storage_format.hpp"

namespace shamirfs {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

// flock on "<storage>.lock", retried with exponential backoff and jitter.
class FileLock {
public:
    FileLock(const std::string& storage, const StoreOptions& o) {
        std::string lock_path = storage + ".lock";
        fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd_ < 0) throw_errno("cannot open lock file " + lock_path, errno);
        std::mt19937 jitter(static_cast<unsigned>(randombytes_random()));
        auto delay = o.lock_backoff;
        for (int attempt = 1;; ++attempt) {
            if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
            if (errno != EWOULDBLOCK && errno != EINTR) {
                int e = errno;
                ::close(fd_);
                throw_errno("cannot lock " + lock_path, e);
            }
            if (attempt >= o.lock_tries) {
                ::close(fd_);
                throw Error(Errc::busy, "storage busy: " + storage + " is locked by another process (" +
                                            std::to_string(attempt) + " tries)");
            }
            auto sleep = delay + std::chrono::milliseconds(jitter() % (delay.count() / 2 + 1));
            log::debug("storage locked, retrying in " + std::to_string(sleep.count()) + " ms");
            std::this_thread::sleep_for(sleep);
            delay *= 2;
        }
    }
    ~FileLock() { ::close(fd_); }  // closing releases the flock
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

void write_all(int fd, const std::string& data, const std::string& what) {
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
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

// Writes `data` to a new temp file beside `path` (O_EXCL, 0600), fsyncs it and
// renames it onto `path` (with RENAME_NOREPLACE when `must_not_exist`), then
// fsyncs the directory. A failure removes the temp file and leaves `path` as it was.
void replace_file(const std::string& path, const std::string& data, bool must_not_exist) {
    std::string dir = dir_of(path);
    char rnd[9];
    std::snprintf(rnd, sizeof(rnd), "%08x", randombytes_random());
    std::string tmp = dir + "/." + base_of(path) + ".tmp-" + std::to_string(::getpid()) + "-" + rnd;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("cannot create a temporary file in " + dir, errno);
    try {
        write_all(fd, data, tmp);
        if (::fsync(fd) != 0) throw_errno("cannot fsync " + tmp, errno);
        if (::close(fd) != 0) {
            fd = -1;
            throw_errno("cannot close " + tmp, errno);
        }
        fd = -1;
        int rc = must_not_exist ? ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE)
                                : ::rename(tmp.c_str(), path.c_str());
        if (rc != 0) {
            if (errno == EEXIST) throw Error(Errc::usage, path + " already exists");
            throw_errno("cannot rename the new storage onto " + path, errno);
        }
    } catch (...) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_dir(dir);
}

std::vector<std::uint8_t> read_rows(const Matrix& m, const Partition& p, std::size_t rows, bool checked) {
    std::vector<std::uint8_t> blob(rows * codec::kChunk);
    if (checked) {
        read_slot_checked(m, p.slot, rows, blob);
    } else if (!read_slot_fast(m, p.order, rows, blob)) {
        read_slot_checked(m, p.slot, rows, blob);
    }
    return blob;
}

std::optional<codec::Header> header_of(const Matrix& m, const Partition& p) {
    if (p.slot >= m.params().slots) return std::nullopt;
    for (bool checked : {false, true}) {
        auto first = read_rows(m, p, 1, checked);
        if (auto h = codec::open_header(std::span<const std::uint8_t, codec::kChunk>(first.data(), codec::kChunk), p.keys))
            return h;
    }
    return std::nullopt;
}

[[noreturn]] void auth_failed() { throw Error(Errc::auth_failed, kAuthFailedMessage); }

void require_valid_json(std::span<const std::uint8_t> doc) {
    auto v = check_json(std::string_view(reinterpret_cast<const char*>(doc.data()), doc.size()));
    if (!v.ok) throw Error(Errc::invalid_json, "invalid JSON at " + v.message);
}

}  // namespace

std::optional<std::size_t> document_rows(const Matrix& m, const Partition& p) {
    auto h = header_of(m, p);
    if (!h) return std::nullopt;
    return h->rows();
}

Store::Store(std::string path, StoreOptions options) : path_(std::move(path)), options_(options) {}

const Matrix& Store::load() {
    auto t0 = Clock::now();
    matrix_ = load_storage(path_, options_.kdf_limits);
    last_load_seconds_ = since(t0);
    return *matrix_;
}

const Matrix& Store::matrix() { return matrix_ ? *matrix_ : load(); }

CreateResult Store::create(const std::string& path, const CreateSpec& spec, const std::vector<SecureBuffer>& passwords,
                           const StoreOptions& options) {
    auto t0 = Clock::now();
    if (spec.partitions < 1) throw Error(Errc::usage, "at least one partition is needed");
    if (passwords.size() != spec.partitions) throw Error(Errc::usage, "one password per partition is needed");
    for (const auto& pw : passwords)
        if (pw.empty()) throw Error(Errc::usage, "empty passwords are not allowed");
    StorageParams params;
    params.threshold = spec.threshold;
    params.shares = spec.shares;
    params.slots = spec.slots ? spec.slots : spec.partitions + 2;
    check_params(params, false);
    if (spec.partitions > params.slots) throw Error(Errc::usage, "more partitions than slots");
    if (spec.capacity < 1 || spec.capacity > kMaxCapacity)
        throw Error(Errc::usage, "capacity must be between 1 and " + std::to_string(kMaxCapacity) + " rows");
    params.kdf.ops = spec.kdf_ops;
    params.kdf.mem = spec.kdf_mem;
    randombytes_buf(params.kdf.salt.data(), params.kdf.salt.size());
    check_kdf(params.kdf, options.kdf_limits, Errc::usage);

    Rng rng;
    Matrix m(params, 0);
    m.grow(spec.capacity, rng);  // every slot a random codeword in every row

    // Partitions take distinct slots, chosen at random (Fisher-Yates).
    std::vector<std::uint32_t> slots(params.slots);
    for (std::uint32_t i = 0; i < params.slots; ++i) slots[i] = i;
    for (std::uint32_t i = params.slots - 1; i > 0; --i) std::swap(slots[i], slots[randombytes_uniform(i + 1)]);

    CreateResult result;
    static const std::uint8_t kEmpty[] = {'{', '}'};
    for (unsigned i = 0; i < spec.partitions; ++i) {
        MapKey key = make_map_key(slots[i]);
        Partition p{key.slot, {}, derive_partition_keys(passwords[i].view(), params.kdf, key.slot,
                                                        std::span<const std::uint8_t, kKeySecretBytes>(key.secret.data(), kKeySecretBytes))};
        auto blob = codec::seal(kEmpty, p.keys, rng, options.compression_level);
        m.grow(capacity_for(m.capacity(), blob.size() / codec::kChunk), rng);
        write_slot(m, p.slot, blob, rng);
        result.keys.push_back(std::move(key));
    }
    std::string text = serialize_storage(m);
    {
        FileLock lock(path, options);
        replace_file(path, text, true);
    }
    result.capacity = m.capacity();
    result.bytes_written = text.size();
    result.seconds = since(t0);
    log::info("created " + path + ": " + std::to_string(spec.partitions) + " partition(s), capacity " +
              std::to_string(m.capacity()) + " rows, " + std::to_string(text.size()) + " bytes");
    return result;
}

Partition Store::unlock(const MapKey& key, std::string_view password) {
    const Matrix& m = matrix();
    const auto& params = m.params();
    // A slot that does not exist costs the same work as a wrong password.
    bool exists = key.slot < params.slots && key.secret.size() == kKeySecretBytes;
    std::uint32_t slot = exists ? key.slot : 0;
    SecureBuffer secret = exists ? SecureBuffer(key.secret.data(), kKeySecretBytes) : SecureBuffer(kKeySecretBytes);
    Partition p{slot, {}, derive_partition_keys(password, params.kdf, slot,
                                                std::span<const std::uint8_t, kKeySecretBytes>(secret.data(), kKeySecretBytes))};
    p.order = stage2_order(slot, params.shares, p.keys.order_key);
    auto h = header_of(m, p);
    if (!exists || !h) auth_failed();
    return p;
}

SecureBuffer Store::read(const Partition& p) {
    const Matrix& m = matrix();
    auto h = header_of(m, p);
    if (!h) auth_failed();
    if (h->rows() > m.capacity()) throw Error(Errc::damaged, "sealed document is longer than the storage");
    for (bool checked : {false, true}) {
        auto blob = read_rows(m, p, h->rows(), checked);
        if (auto doc = codec::open_body(blob, *h, p.keys)) return std::move(*doc);
    }
    throw Error(Errc::damaged, "the partition's data is damaged beyond repair (more than " +
                                   std::to_string((m.params().shares - m.params().threshold) / 2) +
                                   " bad cells in a row); run shamirfs fsck");
}

CommitResult Store::commit(const Partition& p, std::span<const std::uint8_t> document) {
    auto t0 = Clock::now();
    require_valid_json(document);
    FileLock lock(path_, options_);
    load();  // under the lock: other partitions' latest commits are kept as they are
    Matrix& m = *matrix_;
    if (!header_of(m, p)) auth_failed();  // the file was replaced by another storage
    Rng rng;
    auto blob = codec::seal(document, p.keys, rng, options_.compression_level);
    CommitResult r;
    r.document_bytes = document.size();
    r.document_rows = blob.size() / codec::kChunk;
    r.capacity_before = m.capacity();
    m.grow(capacity_for(m.capacity(), r.document_rows), rng);
    r.capacity_after = m.capacity();
    write_slot(m, p.slot, blob, rng);
    r.rows_rewritten = m.capacity();
    r.shares_regenerated = m.capacity() * m.params().shares;
    std::string text = serialize_storage(m);
    replace_file(path_, text, false);
    r.bytes_written = text.size();
    r.seconds = since(t0);
    log::info("committed " + std::to_string(r.document_rows) + " rows to " + path_ + " (capacity " +
              std::to_string(r.capacity_before) + " -> " + std::to_string(r.capacity_after) + ")");
    return r;
}

DryRunResult Store::dry_run(const Partition& p, std::span<const std::uint8_t> document) {
    require_valid_json(document);
    const Matrix& m = matrix();
    auto h = header_of(m, p);
    if (!h) auth_failed();
    auto t0 = Clock::now();
    Rng rng;
    auto blob = codec::seal(document, p.keys, rng, options_.compression_level);
    Matrix copy = m;  // the whole commit in memory, to time it
    copy.grow(capacity_for(copy.capacity(), blob.size() / codec::kChunk), rng);
    write_slot(copy, p.slot, blob, rng);
    serialize_storage(copy);
    DryRunResult d;
    d.rows_now = h->rows();
    d.rows_after = blob.size() / codec::kChunk;
    d.bytes_now = h->document_len;
    d.bytes_after = document.size();
    d.capacity_before = m.capacity();
    d.capacity_after = copy.capacity();
    d.size_change_percent = 100.0 * (static_cast<double>(d.rows_after) - static_cast<double>(d.rows_now)) /
                            static_cast<double>(d.rows_now);
    d.large_change = std::fabs(d.size_change_percent) > 50.0;
    // The in-memory work measured now, plus writing the file at the speed this
    // storage was just read (a rough stand-in for write + fsync).
    d.estimated_seconds = since(t0) + last_load_seconds_ * static_cast<double>(copy.capacity()) /
                                          static_cast<double>(m.capacity());
    return d;
}

}  // namespace shamirfs
