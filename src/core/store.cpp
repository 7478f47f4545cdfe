#include "shamirfs/store.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>
#include <climits>
#include <cstdlib>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <future>
#include <thread>
#include <memory>
#include <mutex>
#include <utility>

#include "shamirfs/codec.hpp"
#include "shamirfs/commit_protocol.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fault.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/progress.hpp"
#include "shamirfs/json_check.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/storage_format.hpp"
#include "shamirfs/tasks.hpp"

namespace shamirfs {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<std::uint8_t> read_rows(const Matrix& m, const Partition& p, std::size_t rows, bool checked) {
    std::vector<std::uint8_t> blob(rows * m.params().row_bytes());
    if (checked) {
        read_slot_checked(m, p.slot, rows, blob);
    } else if (!read_slot_fast(m, p.order, rows, blob)) {
        read_slot_checked(m, p.slot, rows, blob);
    }
    return blob;
}

// Rows that hold the sealed header.
std::size_t header_rows(const Matrix& m) {
    return rows_for_chunks(m.params(), (codec::prefix_bytes(m.params().version) + kChunkBytes - 1) / kChunkBytes);
}

std::optional<codec::Header> header_of(const Matrix& m, const Partition& p) {
    if (p.slot >= m.params().slots) return std::nullopt;
    const unsigned version = m.params().version;
    for (bool checked : {false, true}) {
        auto first = read_rows(m, p, header_rows(m), checked);
        if (auto h = codec::open_header(version, std::span(first).first(codec::prefix_bytes(version)), p.keys)) return h;
    }
    return std::nullopt;
}

// Whether damage that anyone can see without credentials (rows beyond the
// redundancy) covers the slot's sealed header: then a failed unlock says
// "damaged", not "wrong credentials".
bool header_damaged(const Matrix& m, std::uint32_t slot) {
    return slot < m.params().slots && !read_slot_checked(m, slot, header_rows(m), {}).unrecoverable.empty();
}

std::string damaged_message(const Matrix& m) {
    return "the partition's data is damaged beyond repair (more than " +
           std::to_string((m.params().shares - m.params().threshold) / 2) +
           " bad cells in a row); run shamirfs fsck";
}

[[noreturn]] void auth_failed() { throw Error(Errc::auth_failed, kAuthFailedMessage); }

// The keys that `password` and `key` give in a storage of these KDF parameters.
PartitionKeys keys_of(std::string_view password, const KdfParams& kdf, const MapKey& key) {
    return derive_partition_keys(password, kdf, key.slot,
                                 std::span<const std::uint8_t, kKeySecretBytes>(key.secret.data(), kKeySecretBytes));
}

// The byte ranges of the new file that are final, handed from the threads
// that make them to the one that writes the file, in the order they come;
// with the buffers ranges may point into (BlockOut), which the writer gives
// back once it has written them.
class FinalRanges {
public:
    struct Cancelled {};
    // `buffer` (if any, from take()): free again once these ranges are written.
    void push(std::vector<TextRange> more, char* buffer = nullptr) {
        {
            std::lock_guard lock(mutex_);
            if (cancelled_) throw Cancelled{};  // (the producer stops)
            ready_.insert(ready_.end(), more.begin(), more.end());
            if (buffer) pending_.push_back(buffer);
        }
        changed_.notify_all();
    }
    // A buffer of at least `bytes` for a block's cells; waits while every one
    // of the few there are is taken or not written yet.
    char* take(std::size_t bytes) {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return cancelled_ || !free_.empty() || buffers_.size() < kBuffers; });
        if (cancelled_) throw Cancelled{};
        std::vector<char>* b;
        if (!free_.empty()) {
            b = free_.back();
            free_.pop_back();
        } else {
            b = buffers_.emplace_back(std::make_unique<std::vector<char>>()).get();
        }
        if (b->size() < bytes) b->resize(bytes);
        return b->data();
    }
    // Nothing more comes: the file is complete, or (`error`) the writer stops
    // with that error.
    void finish(std::exception_ptr error = nullptr) {
        {
            std::lock_guard lock(mutex_);
            finished_ = true;
            error_ = std::move(error);
        }
        changed_.notify_all();
    }
    // While held, the threads that make the other slots' cells (those that
    // yield) wait before their next block: the cells the commit waits for,
    // its own document's, are made first.
    void hold(bool on) {
        {
            std::lock_guard lock(mutex_);
            held_ = on;
        }
        changed_.notify_all();
    }
    void yield() {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return cancelled_ || !held_; });
        if (cancelled_) throw Cancelled{};
    }
    // Nothing more is wanted (the writer failed, or the commit stops).
    void cancel() {
        {
            std::lock_guard lock(mutex_);
            cancelled_ = true;
        }
        changed_.notify_all();
    }
    // The writer's side: waits for ranges (the ones it had are written, and
    // their buffers free again); nothing once finished.
    std::vector<TextRange> next() {
        std::unique_lock lock(mutex_);
        for (char* data : std::exchange(handed_, {}))
            for (auto& b : buffers_)
                if (b->data() == data) free_.push_back(b.get());
        changed_.notify_all();
        changed_.wait(lock, [&] { return !ready_.empty() || finished_; });
        if (error_) std::rethrow_exception(error_);
        handed_ = std::exchange(pending_, {});
        return std::exchange(ready_, {});
    }

private:
    static constexpr std::size_t kBuffers = 6;  // two per share thread, and two being written
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<TextRange> ready_;
    std::vector<std::unique_ptr<std::vector<char>>> buffers_;
    std::vector<std::vector<char>*> free_;
    std::vector<char*> pending_, handed_;  // buffers of ranges ready, and of those being written
    bool finished_ = false, cancelled_ = false, held_ = false;
    std::exception_ptr error_;
};

// Below this size a commit makes the file in its text and writes whole
// columns (write_slots_locked).
constexpr std::size_t kWholeColumnsBelow = std::size_t{16} << 20;

// write_slots' blocks to the writer, through buffers of its own.
class ToWriter : public BlockOut {
public:
    ToWriter(FinalRanges& ranges, const Matrix& m, std::vector<unsigned> slots, bool yields)
        : ranges_(ranges), m_(m), slots_(std::move(slots)), yields_(yields) {}
    char* take(std::size_t bytes) override {
        if (yields_) ranges_.yield();
        return ranges_.take(bytes);
    }
    void done(std::size_t block, char* cells) override {
        auto ranges = m_.block_ranges(slots_, block);
        const char* from = cells;
        for (auto& r : ranges) {
            r.from = from;
            from += r.length;
        }
        ranges_.push(std::move(ranges), cells);
    }

private:
    FinalRanges& ranges_;
    const Matrix& m_;
    const std::vector<unsigned> slots_;
    const bool yields_;
};

// A commit whose document needs more rows than the file has: the file is
// laid out again (write_slots_locked without a late write).
struct Relayout {};

void require_valid_json(std::span<const std::uint8_t> doc) {
    auto v = check_json(std::string_view(reinterpret_cast<const char*>(doc.data()), doc.size()));
    if (!v.ok) throw Error(Errc::invalid_json, "invalid JSON at " + v.message);
}

}  // namespace

std::optional<std::size_t> document_rows(const Matrix& m, const Partition& p) {
    auto h = header_of(m, p);
    if (!h) return std::nullopt;
    return rows_for_chunks(m.params(), h->chunks());
}


namespace {
FileLock lock_storage(const std::string& path, const StoreOptions& o) {
    return FileLock(lock_path_of(path), o.lock_tries, o.lock_backoff);
}

// The storage's real path: symlinks followed (as editors do), so that the
// commit, the lock and the log all go to the file itself. A path that does
// not exist yet (create) stays as it is.
std::string real_path(const std::string& path) {
    char buf[PATH_MAX];
    return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}
}  // namespace

Store::Store(std::string path, StoreOptions options) : path_(real_path(path)), options_(options) {}

std::vector<std::string> Store::recover() {
    Wal wal(path_);
    if (!wal.needs_recovery()) return {};
    // Readers never wait: the rename keeps the storage file whole, so when a
    // commit holds the lock the file is read as it is; when recovery cannot
    // run here (no write access, a read-only copy), too.
    try {
        FileLock lock(lock_path_of(path_), 1, std::chrono::milliseconds(0));
        return wal.recover();
    } catch (const Error& e) {
        if (e.code() == Errc::busy) return {};
        if (e.code() != Errc::read_only && e.code() != Errc::io) throw;
        log::warn("a commit to " + path_ + " was interrupted and cannot be finished here (" + e.what() +
                  "); reading the storage as it is: the last complete commit");
        return {};
    }
}

bool Store::FileIdentity::operator==(const FileIdentity& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec && ctime.tv_nsec == o.ctime.tv_nsec;
}

std::optional<Store::FileIdentity> Store::identity_of(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileIdentity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

bool Store::changed_on_disk() const {
    auto now = identity_of(path_);
    return now && !(loaded_identity_ && *now == *loaded_identity_);
}

Store::FileIdentity Store::identity_of(int fd) {
    struct stat st{};
    if (::fstat(fd, &st) != 0) throw_errno("cannot stat the storage", errno);
    return FileIdentity{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

const Matrix& Store::load() {
    auto t0 = Clock::now();
    // O_NONBLOCK: a FIFO or device in the storage's place must not block the
    // open; read_storage refuses anything but a regular file.
    FileHandle file(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    // A sync tool replacing the file may leave its name empty for a moment:
    // a missing storage is looked for again for up to kMissingRetry.
    for (auto until = Clock::now() + kMissingRetry; file.get() < 0 && errno == ENOENT && Clock::now() < until;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        file = FileHandle(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    }
    if (file.get() < 0) throw_errno("cannot open storage " + path_, errno);
    // The identity is taken before reading: if the file changes meanwhile, the
    // next commit sees a different identity and reads it again.
    loaded_identity_ = identity_of(file.get());
    matrix_.reset();  // its memory is free before the next copy is read
    matrix_ = read_storage(file.get(), path_, options_.kdf_limits);
    close_in_background(std::exchange(pinned_, std::move(file)));
    last_load_seconds_ = since(t0);
    return *matrix_;
}

const Matrix& Store::matrix() { return matrix_ ? *matrix_ : load(); }

std::string Store::write_locked(std::string_view text, bool must_not_exist,
                                const std::function<std::vector<TextRange>()>& next_ranges) {
    std::optional<FileId> base;
    if (loaded_identity_) base = FileId{loaded_identity_->dev, loaded_identity_->ino};
    Swapped s = write_through_wal(path_, text, must_not_exist, next_ranges, base, options_.keep_written_text);
    loaded_identity_ = identity_of(s.written.get());  // what we wrote is what is loaded now
    close_in_background(std::exchange(pinned_, std::move(s.written)));
    return s.displaced;
}

StorageParams check_create_spec(const CreateSpec& spec) {
    if (spec.partitions < 1) throw Error(Errc::usage, "at least one partition is needed");
    StorageParams params;
    params.version = spec.format;
    params.threshold = spec.threshold;
    params.shares = spec.shares;
    params.slots = spec.slots;
    params.pack = spec.format == 1 ? 1 : spec.pack ? spec.pack : spec.threshold;
    params.growth = spec.format == 1 ? 1 : spec.growth;
    params.mode = spec.format == 1 ? StorageMode::shared : spec.mode;
    check_params(params, false);
    if (spec.partitions > params.slots)
        throw Error(Errc::usage, "more partitions than slots (" + std::to_string(params.slots) +
                                     "): the slots are the most partitions a storage can ever hold; use --slots");
    if (!spec.labels.empty() && spec.labels.size() != spec.partitions) throw Error(Errc::usage, "one label per partition is needed");
    if (spec.capacity < 1 || spec.capacity > kMaxCapacity)
        throw Error(Errc::usage, "capacity must be between 1 and " + std::to_string(kMaxCapacity) + " rows");
    return params;
}

CreateResult Store::create(const std::string& path, const CreateSpec& spec, const std::vector<SecureBuffer>& passwords,
                           const StoreOptions& options) {
    auto t0 = Clock::now();
    check_storage_name(path);
    if (passwords.size() != spec.partitions) throw Error(Errc::usage, "one password per partition is needed");
    for (const auto& pw : passwords)
        if (pw.empty()) throw Error(Errc::usage, "empty passwords are not allowed");
    StorageParams params = check_create_spec(spec);
    params.kdf.ops = spec.kdf_ops;
    params.kdf.mem = spec.kdf_mem;
    randombytes_buf(params.kdf.salt.data(), params.kdf.salt.size());
    check_kdf(params.kdf, options.kdf_limits, Errc::usage);
    if (::access(path.c_str(), F_OK) == 0) throw Error(Errc::usage, path + " already exists");

    Rng rng;
    Matrix m(params, 0);
    m.grow(capacity_for(params, 0, spec.capacity), rng);  // every slot a random codeword in every row

    // Partitions take distinct slots, chosen at random (Fisher-Yates).
    std::vector<std::uint32_t> slots(params.slots);
    for (std::uint32_t i = 0; i < params.slots; ++i) slots[i] = i;
    for (std::uint32_t i = params.slots - 1; i > 0; --i) std::swap(slots[i], slots[randombytes_uniform(i + 1)]);

    CreateResult result;
    static const std::uint8_t kEmpty[] = {'{', '}'};
    for (unsigned i = 0; i < spec.partitions; ++i) {
        MapKey key = make_map_key(slots[i]);
        Partition p{key.slot, {}, keys_of(passwords[i].view(), params.kdf, key)};
        codec::Meta meta;
        if (params.version >= 2) meta.label = spec.labels.empty() ? std::string(1, static_cast<char>('a' + i % 26)) : spec.labels[i];
        auto blob = codec::seal(params.version, kEmpty, std::nullopt, meta, p.keys, rng, options.compression_level);
        m.grow(capacity_for(params, m.capacity(), rows_for_chunks(params, blob.size() / kChunkBytes)), rng);
        write_slot(m, p.slot, blob, rng);
        result.keys.push_back(std::move(key));
    }
    Store store(path, options);
    {
        FileLock lock = lock_storage(path, options);
        Wal(path).recover();
        store.write_locked(m.file_text(), true);
    }
    result.capacity = m.capacity();
    result.bytes_written = m.file_text().size();
    result.seconds = since(t0);
    log::debug("created " + path + ": " + std::to_string(spec.partitions) + " partition(s), capacity " +
              std::to_string(m.capacity()) + " rows, " + std::to_string(result.bytes_written) + " bytes");
    return result;
}

Partition Store::unlock(const MapKey& key, std::string_view password) {
    // A slot that does not exist costs the same work as a wrong password.
    auto derive = [&](const StorageParams& params) {
        const bool exists = key.slot < params.slots && key.secret.size() == kKeySecretBytes;
        SecureBuffer secret = exists ? SecureBuffer(key.secret.data(), kKeySecretBytes) : SecureBuffer(kKeySecretBytes);
        return derive_partition_keys(password, params.kdf, exists ? key.slot : 0,
                                     std::span<const std::uint8_t, kKeySecretBytes>(secret.data(), kKeySecretBytes));
    };
    // Not loaded yet: the file is read on another thread while the KDF runs
    // here, with the parameters of its header; used if the file agrees.
    std::optional<std::pair<StorageParams, PartitionKeys>> early;
    if (!matrix_) {
        if (auto peeked = peek_storage_params(path_, options_.kdf_limits)) {
            auto loading = std::async(std::launch::async, [this] { load(); });
            try {
                early.emplace(*peeked, derive(*peeked));
            } catch (...) {
                loading.wait();
                throw;
            }
            loading.get();
        }
    }
    const Matrix& m = matrix();
    const auto& params = m.params();
    const bool exists = key.slot < params.slots && key.secret.size() == kKeySecretBytes;
    const std::uint32_t slot = exists ? key.slot : 0;
    const bool same = early && early->first.slots == params.slots && early->first.kdf.ops == params.kdf.ops &&
                      early->first.kdf.mem == params.kdf.mem && early->first.kdf.salt == params.kdf.salt;
    Partition p{slot, {}, same ? std::move(early->second) : derive(params)};
    p.order = stage2_order(slot, params.shares, p.keys.order_key);
    auto h = header_of(m, p);
    if (exists && !h && header_damaged(m, slot)) throw Error(Errc::damaged, damaged_message(m));
    if (!exists || !h) auth_failed();
    return p;
}

void Store::read_blob(const Partition& p, codec::Meta* meta,
                      const std::function<bool(std::span<const std::uint8_t>, const codec::Header&)>& take) {
    const Matrix& m = matrix();
    auto h = header_of(m, p);
    if (!h) {
        if (header_damaged(m, p.slot)) throw Error(Errc::damaged, damaged_message(m));
        auth_failed();
    }
    const std::size_t rows = rows_for_chunks(m.params(), h->chunks());
    if (rows > m.capacity()) throw Error(Errc::damaged, "sealed document is longer than the storage");
    for (bool checked : {false, true}) {
        if (take(read_rows(m, p, rows, checked), *h)) {
            if (meta) *meta = h->meta;
            return;
        }
    }
    throw Error(Errc::damaged, damaged_message(m));
}

codec::Opened Store::open(const Partition& p, codec::Meta* meta) {
    std::optional<codec::Opened> opened;
    read_blob(p, meta, [&](auto blob, const auto& h) { return (opened = codec::open_body(blob, h, p.keys)).has_value(); });
    return std::move(*opened);
}

SecureBuffer Store::read(const Partition& p) { return std::move(open(p).document); }

namespace {

// What the next commit of a partition seals in its header: the label kept,
// the generation one more, the time now.
codec::Meta next_meta(codec::Meta m) {
    ++m.generation;
    m.time = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    return m;
}

}  // namespace

PreparedDocument Store::prepare(std::span<const std::uint8_t> document, std::function<void()> still_valid) const {
    PreparedDocument d;
    d.document_ = document;
    d.still_valid_ = std::move(still_valid);
    // A small document (below 16 KiB) is compressed and checked when the
    // commit needs it, on its thread: for it a thread costs more than the work.
    auto compress = [document, level = options_.compression_level] { return codec::compress(document, std::nullopt, level); };
    auto check = [document] { require_valid_json(document); };
    if (document.size() < (std::size_t{16} << 10)) {
        d.compressed_ = std::async(std::launch::deferred, compress).share();
        d.checked_ = std::async(std::launch::deferred, check);
    } else {
        d.compressed_ = tasks::async(compress).share();
        d.checked_ = tasks::async(check);
    }
    return d;
}

void PreparedDocument::finish() {
    const auto running = [](const auto& f) {
        return f.valid() && f.wait_for(std::chrono::seconds(0)) != std::future_status::deferred;
    };
    if (running(compressed_)) compressed_.wait();
    if (running(checked_)) checked_.wait();
}

std::size_t Store::expected_rows(PreparedDocument& document, const codec::Header& now) const {
    const auto& params = matrix_->params();
    codec::Header h;
    h.version = params.version;
    if (document.compressed_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        const codec::Compressed& c = document.compressed_.get();  // (exact)
        h.compressed_len = c.compressed_len;
        h.draft_compressed_len = c.draft_compressed_len;
    } else {
        // Only where it matters: a large document that would need more rows
        // than the file has if it did not compress at all.
        const std::size_t size = document.bytes().size();
        h.compressed_len = size;
        if (size < codec::kEstimateFrom || rows_for_chunks(params, h.chunks()) <= matrix_->capacity()) return 0;
        // A new version of a document of about its size (an edit) compresses
        // as the one it replaces: its ratio, unless that says the file must
        // grow; then (and for a document unlike the one before) a sample.
        if (now.document_len >= size / 2 && now.document_len <= size * 2) {
            h.compressed_len = static_cast<std::size_t>(static_cast<double>(now.compressed_len) /
                                                        static_cast<double>(now.document_len) * static_cast<double>(size));
            if (rows_for_chunks(params, h.chunks()) <= matrix_->capacity()) return 0;
        }
        h.compressed_len = codec::estimate_compressed(document.bytes(), options_.compression_level);
    }
    const std::size_t rows = rows_for_chunks(params, h.chunks());
    return rows > matrix_->capacity() && rows <= kMaxCapacity ? rows : 0;
}

CommitResult Store::commit(const Partition& p, PreparedDocument document, std::span<const Partition* const> keep) {
    auto t0 = Clock::now();
    CommitResult r;
    FileLock lock = lock_for_commit(p, r);
    const auto header = header_of(*matrix_, p);
    if (!header) auth_failed();
    auto t_locked = Clock::now();
    // The pipeline: the document is compressed and checked on threads of its
    // own (prepare); meanwhile the bytes of the new file that do not depend on
    // it (the other slots' cells, or in a deniable storage their new
    // codewords) go to the disk; the document's own cells come last, sealed
    // once compressed. (Invalid JSON stops the commit; the new file is removed.)
    // A large document that will need more rows has the file laid out for the
    // rows its estimated compressed size needs, so that the other slots' new
    // cells are made and written while it is compressed.
    std::vector<std::uint8_t> blob;
    Rng rng;
    std::vector<std::vector<std::uint8_t>> kept;
    auto writes = writes_for(std::nullopt, keep, rng, kept);
    const StorageParams params = matrix_->params();
    const std::size_t capacity_before = matrix_->capacity();
    r.estimated_rows = expected_rows(document, *header);
    // Sealed once compressed, by the thread that makes its cells (while the
    // other slots' cells are made on others).
    const LateWrite own{p.slot,
                        [&, meta = next_meta(header->meta)] {
                            Rng seal_rng;
                            blob = codec::seal(params.version, document.compressed_.get(), meta, p.keys, seal_rng);
                            return SlotWrite{p.slot, blob};
                        },
                        r.estimated_rows};
    const auto check = [&] {
        document.checked_.get();
        if (document.still_valid_) document.still_valid_();
    };
    Clock::time_point t_shared;
    try {
        t_shared = write_slots_locked(writes, rng, r, &own, check);
    } catch (const Relayout&) {
        // The blob needs another capacity than the file was laid out for: it
        // is laid out again, from the rows it had (so every new cell is made
        // again, wherever the first ones went).
        if (matrix_->capacity() > capacity_before) matrix_->shrink(capacity_before);
        writes.push_back({p.slot, blob});
        t_shared = write_slots_locked(writes, rng, r, nullptr, check);
    }
    r.document_bytes = document.bytes().size();
    r.document_rows = rows_for_chunks(params, blob.size() / kChunkBytes);
    r.seconds = since(t0);
    log::info("committed to " + path_);
    log::debug("committed " + std::to_string(r.document_rows) + " rows (capacity " + std::to_string(r.capacity_before) +
               " -> " + std::to_string(r.capacity_after) + "); phases (ms): lock and reload " + log::ms_between(t0, t_locked) +
               ", check, seal and shares " + log::ms_between(t_locked, t_shared) +
               " (the file written meanwhile), rest of the write through the WAL " + log::ms_between(t_shared, Clock::now()));
    return r;
}

void Store::refuse_hard_links() const {
    struct stat st{};
    if (::stat(path_.c_str(), &st) == 0 && st.st_nlink > 1)
        throw Error(Errc::usage, path_ + " has " + std::to_string(st.st_nlink) +
                                     " hard links: a commit replaces the file by rename, so the other names would keep "
                                     "the old version; remove the other links (a symlink is fine)");
}

FileLock Store::lock_for_write() {
    FileLock lock = lock_storage(path_, options_);
    Wal(path_).recover();
    refuse_hard_links();
    return lock;
}

FileLock Store::lock_for_commit(const Partition& p, CommitResult& r) {
    FileLock lock = lock_for_write();
    reload_for_commit(p, r);
    return lock;
}

void Store::reload_for_commit(const Partition& p, CommitResult& r) {
    // Under the lock, the file is read again unless it is still the version
    // loaded (same identity): other partitions' commits are kept as they are.
    if (matrix_ && loaded_identity_ && identity_of(path_) == loaded_identity_) return;
    std::optional<Matrix> before = std::move(matrix_);
    load();
    if (!before || before->file_text() == matrix_->file_text()) return;
    // Another writer committed since we loaded: rebase (only our columns change).
    r.rebased = true;
    r.replaced_concurrent_change = !before->same_slot(*matrix_, p.slot);
    if (r.replaced_concurrent_change)
        log::warn("this partition was changed by another writer since it was read; that version is replaced by this commit");
    else
        log::info("another partition was committed meanwhile; this commit is applied on top of it");
}

std::vector<SlotWrite> Store::writes_for(std::optional<SlotWrite> own, std::span<const Partition* const> keep, Rng& rng,
                                         std::vector<std::vector<std::uint8_t>>& blobs) {
    std::vector<SlotWrite> writes;
    if (own) writes.push_back(*own);
    if (matrix_->params().mode != StorageMode::deniable) return writes;
    // Deniable: the other unlocked partitions keep their text (and draft, label,
    // generation) under a fresh nonce, their compressed frames sealed again
    // as they are (not decompressed); a slot to keep that no longer opens
    // (another device's commit erased it) is said and left to the random fill.
    blobs.clear();
    blobs.reserve(keep.size());  // the writes point into it
    for (const Partition* q : keep) {
        if (own && q->slot == own->slot) throw Error(Errc::internal, "a kept partition is the committing one");
        codec::Meta meta;
        try {
            std::optional<codec::Compressed> frames;
            read_blob(*q, &meta, [&](auto blob, const auto& h) {
                return (frames = codec::open_frames(blob, h, q->keys)).has_value();
            });
            blobs.push_back(codec::seal(matrix_->params().version, *frames, meta, q->keys, rng));
        } catch (const Error& e) {
            if (e.code() != Errc::auth_failed && e.code() != Errc::damaged) throw;
            log::warn("an unlocked partition no longer opens and is not kept by this commit: " + std::string(e.what()));
            blobs.emplace_back();
        }
        writes.push_back({q->slot, blobs.back()});
    }
    return writes;
}

namespace {
std::size_t rows_of(const StorageParams& p, std::span<const SlotWrite> writes) {
    std::size_t rows = 0;
    for (const auto& w : writes) rows = std::max(rows, rows_for_chunks(p, w.blob.size() / kChunkBytes));
    return rows;
}

// The writes with the capacity of `m` grown as they need (and to at least
// `rows`), plus the random fill of the other slots (new rows; every slot in a
// deniable storage) but `late` (a slot written afterwards).
std::vector<SlotWrite> plan_writes(Matrix& m, std::vector<SlotWrite> writes, std::optional<unsigned> late = {},
                                   std::size_t rows = 0) {
    rows = std::max(rows, rows_of(m.params(), writes));
    const std::size_t old = m.grow_unfilled(capacity_for(m.params(), m.capacity(), rows));
    // The slots not written here get random codewords: in their new rows
    // (if the capacity grew), or everywhere in a deniable storage (a
    // partition not unlocked now is erased). write_slots does it on its
    // threads, with the rest.
    const bool deniable = m.params().mode == StorageMode::deniable;
    const std::size_t given = writes.size();
    for (unsigned s = 0; s < m.params().slots; ++s)
        if ((deniable || old < m.capacity()) && s != late &&
            std::none_of(writes.begin(), writes.begin() + static_cast<std::ptrdiff_t>(given),
                         [&](const SlotWrite& w) { return w.slot == s; }))
            writes.push_back({s, {}, deniable ? 0 : old});
    return writes;
}

std::vector<unsigned> slots_of(std::span<const SlotWrite> writes) {
    std::vector<unsigned> out;
    for (const auto& w : writes) out.push_back(w.slot);
    return out;
}
}  // namespace

Store::Clock::time_point Store::write_slots_locked(std::vector<SlotWrite> writes, Rng& rng, CommitResult& r,
                                                   const LateWrite* late, const std::function<void()>& check) {
    Matrix& m = *matrix_;
    auto t_shared = Clock::now();
    r.capacity_before = m.capacity();
    const std::size_t early_rows = rows_of(m.params(), writes);
    std::vector<SlotWrite> given = writes;  // what a displaced version gets applied again
    // Unless the written text is kept (or the file is small), the new cells
    // go from small buffers to the file and never into the matrix: a file
    // laid out again costs no memory of its size (which is slow to fault in).
    // The matrix is then read again when next needed.
    bool through_buffers = false;
    try {
        writes = plan_writes(m, std::move(writes), late ? std::optional(late->slot) : std::nullopt,
                             late ? late->expected_rows : 0);
        r.capacity_after = m.capacity();
        // A small file is made in its text, and each group of slots (the
        // others, then the document's own) goes to the writer as whole
        // columns once made: written block by block, its pieces (a few KiB
        // each at this size) would cost the page cache several times more
        // than large writes do.
        const bool small = m.file_text().size() < kWholeColumnsBelow;
        through_buffers = !options_.keep_written_text && m.params().version >= 2 && !small;
        const bool whole_columns = small && m.params().version >= 2;
        const std::vector<unsigned> early = slots_of(writes);
        std::vector<unsigned> slots = early;
        if (late) slots.push_back(late->slot);
        // Shares are made on worker threads while this one writes the parts
        // of the file that are final (from the first: those no slot write
        // touches, at once, however busy the cores are).
        FinalRanges final_ranges;
        final_ranges.push(m.ranges_outside(slots));
        // (`yields`: the other slots' cells, made meanwhile, which wait while
        // the commit's own are made.)
        auto put_slots = [&](std::span<const SlotWrite> these, std::vector<unsigned> their_slots, Rng& r, bool yields) {
            if (through_buffers) {
                ToWriter out(final_ranges, m, their_slots, yields);
                write_slots(m, these, r, out);
            } else {
                std::atomic<std::size_t> made{0};
                write_slots(m, these, r, [&](std::size_t b) {
                    if (!whole_columns) final_ranges.push(m.block_ranges(their_slots, b));
                    else if (++made == block_count(m.capacity())) final_ranges.push(m.slot_ranges(their_slots));
                    if (yields) final_ranges.yield();
                });
            }
        };
        // A small file (a block or two of rows) is made here, then written:
        // threads would cost more than they let run side by side.
        const bool here = block_count(m.capacity()) <= 2 && m.file_text().size() < (std::size_t{128} << 10);
        auto make = [&] {
            std::future<void> others;  // the other slots' cells, while the own document is sealed
            try {
                if (!writes.empty() && late && !here)
                    others = tasks::async([&] {
                        Rng others_rng;
                        put_slots(writes, early, others_rng, true);
                    });
                else if (!writes.empty())
                    put_slots(writes, early, rng, false);
                std::optional<SlotWrite> own;
                if (late) {
                    own = late->make();
                    const std::size_t own_rows = rows_for_chunks(m.params(), own->blob.size() / kChunkBytes);
                    if (capacity_for(m.params(), r.capacity_before, std::max(early_rows, own_rows)) != m.capacity())
                        throw Relayout{};
                }
                if (check) check();
                if (own) {
                    given.push_back(*own);
                    final_ranges.hold(true);
                    put_slots(std::span(&*own, 1), {own->slot}, rng, false);
                    final_ranges.hold(false);
                }
                if (others.valid()) others.get();
                t_shared = Clock::now();
                final_ranges.finish();
            } catch (...) {
                final_ranges.finish(std::current_exception());
                if (others.valid()) {
                    final_ranges.cancel();
                    try {
                        others.get();
                    } catch (...) {
                    }
                }
                throw;
            }
        };
        auto making = here ? std::async(std::launch::deferred, make) : tasks::async(make);
        if (here) making.wait();  // (its error reaches write_locked through final_ranges)
        std::string displaced;
        try {
            displaced = write_locked(m.file_text(), false, [&] { return final_ranges.next(); });
        } catch (...) {
            // A failure of the worker reaches this thread through final_ranges.
            final_ranges.cancel();
            try {
                making.get();
            } catch (...) {
            }
            throw;
        }
        making.get();
        r.rows_rewritten = m.capacity();
        for (const auto& w : writes) r.shares_regenerated += (m.capacity() - w.first_row) * m.params().shares;
        if (late) r.shares_regenerated += m.capacity() * m.params().shares;
        // A sync tool renamed another version in while this commit was made:
        // this commit's slots are applied on top of it, and swapped in again.
        for (int round = 0; !displaced.empty(); ++round) {
            if (round == 5) {
                log::warn("versions kept being put in place during this commit; the last one is kept as " + displaced +
                          " (shamirfs merge takes it back)");
                break;
            }
            displaced = reapply_on(displaced, given, rng, r);
        }
        r.bytes_written = matrix_->file_text().size();
        if (through_buffers) {
            matrix_.reset();
            loaded_identity_.reset();
        }
    } catch (const Relayout&) {
        // Nothing was written to the document's slot; the other slots' new
        // cells are in the matrix, unless they went through buffers (the
        // caller lays the file out again from the rows it had).
        throw;
    } catch (...) {
        matrix_.reset();  // the in-memory matrix may no longer match the file: read it again next time
        loaded_identity_.reset();
        throw;
    }
    return t_shared;
}

std::string Store::reapply_on(const std::string& displaced, std::span<const SlotWrite> writes, Rng& rng,
                              CommitResult& r) {
    FileHandle file(::open(displaced.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.get() < 0) throw_errno("cannot open " + displaced, errno);
    std::optional<Matrix> other;
    try {
        other = read_storage(file.get(), displaced, options_.kdf_limits);
    } catch (const Error& e) {
        log::warn("the version put in place during this commit is not a readable storage; it is kept as " + displaced);
        return "";
    }
    const StorageParams &mine = matrix_->params(), &theirs = other->params();
    if (theirs.version != mine.version || theirs.slots != mine.slots || theirs.shares != mine.shares ||
        theirs.threshold != mine.threshold || theirs.pack != mine.pack || theirs.kdf.salt != mine.kdf.salt) {
        log::warn("the version put in place during this commit is another storage; it is kept as " + displaced);
        return "";
    }
    r.rebased = true;
    log::warn("another version was put in place during this commit (a sync tool?); this commit is applied on top of it");
    matrix_ = std::move(*other);
    auto all = plan_writes(*matrix_, std::vector<SlotWrite>(writes.begin(), writes.end()));
    r.capacity_after = matrix_->capacity();
    write_slots(*matrix_, all, rng);
    std::string again = write_locked(matrix_->file_text(), false);
    remove_file(displaced);  // it is in the storage now
    fsync_dir(dir_of(path_));
    return again;
}

CommitResult Store::save_draft(const Partition& p, const std::optional<std::span<const std::uint8_t>>& draft,
                               std::span<const Partition* const> keep) {
    if (matrix().params().version < 2)
        throw Error(Errc::usage, "this storage is format 1, which keeps no drafts");
    CommitResult r = reseal_under(p, p.keys, keep, &draft);
    log::info(draft ? "kept a draft in " + path_ : "dropped the draft kept in " + path_);
    return r;
}

CommitResult Store::reseal_under(const Partition& p, const PartitionKeys& keys, std::span<const Partition* const> keep,
                                 const std::optional<std::span<const std::uint8_t>>* new_draft) {
    auto t0 = Clock::now();
    Rng rng;
    CommitResult r;
    FileLock lock = lock_for_commit(p, r);
    codec::Meta meta;
    codec::Opened current = open(p, &meta);
    std::optional<std::span<const std::uint8_t>> draft;
    if (new_draft) draft = *new_draft;
    else if (current.draft) draft = current.draft->bytes();
    auto blob = codec::seal(matrix_->params().version, current.document.bytes(), draft, next_meta(meta), keys, rng,
                            options_.compression_level);
    write_blob_locked(p.slot, blob, current.document.size(), keep, rng, r);
    r.seconds = since(t0);
    return r;
}

CommitResult Store::commit_merged(const Partition& p, std::span<const std::uint8_t> document,
                                  const std::optional<std::span<const std::uint8_t>>& draft,
                                  const codec::Meta& newest, std::span<const Partition* const> keep) {
    auto t0 = Clock::now();
    require_valid_json(document);
    Rng rng;
    CommitResult r;
    FileLock lock = lock_for_commit(p, r);
    codec::Meta meta = newest;  // (the storage may no longer hold this partition: a deniable one erased it)
    try {
        open(p, &meta);
    } catch (const Error& e) {
        if (e.code() != Errc::auth_failed && e.code() != Errc::damaged) throw;
    }
    meta = next_meta(meta);
    meta.generation = std::max(meta.generation, newest.generation + 1);
    auto blob = codec::seal(matrix_->params().version, document, draft, meta, p.keys, rng, options_.compression_level);
    write_blob_locked(p.slot, blob, document.size(), keep, rng, r);
    r.seconds = since(t0);
    return r;
}

void Store::write_blob_locked(unsigned slot, std::span<const std::uint8_t> blob, std::size_t document_bytes,
                              std::span<const Partition* const> keep, Rng& rng, CommitResult& r) {
    r.document_bytes = document_bytes;
    r.document_rows = rows_for_chunks(matrix_->params(), blob.size() / kChunkBytes);
    std::vector<std::vector<std::uint8_t>> kept;
    write_slots_locked(writes_for(SlotWrite{slot, blob}, keep, rng, kept), rng, r);
}

CommitResult Store::copy_slots_from(const Matrix& other, std::span<const unsigned> slots) {
    auto t0 = Clock::now();
    CommitResult r;
    FileLock lock = lock_for_write();
    if (!matrix_ || !loaded_identity_ || !(identity_of(path_) == loaded_identity_)) load();
    if (other.capacity() != matrix_->capacity()) throw Error(Errc::usage, "the versions have different capacities");
    r.capacity_before = r.capacity_after = matrix_->capacity();
    try {
        for (unsigned s : slots) matrix_->copy_slot(other, s);
        std::string displaced = write_locked(matrix_->file_text(), false);
        if (!displaced.empty()) log::warn("a version put in place during the merge is kept as " + displaced);
    } catch (...) {
        matrix_.reset();
        loaded_identity_.reset();
        throw;
    }
    r.bytes_written = matrix_->file_text().size();
    r.seconds = since(t0);
    return r;
}

CommitResult Store::passwd(const Partition& p, const MapKey& key, std::string_view new_password,
                           std::span<const Partition* const> keep) {
    if (new_password.empty()) throw Error(Errc::usage, "empty passwords are not allowed");
    if (key.slot != p.slot || key.secret.size() != kKeySecretBytes) throw Error(Errc::internal, "the key is not the partition's");
    return reseal_under(p, keys_of(new_password, matrix().params().kdf, key), keep);
}

CommitResult Store::rekey(const Partition& p, const MapKey& new_key, std::string_view password,
                          std::span<const Partition* const> keep) {
    if (password.empty()) throw Error(Errc::usage, "empty passwords are not allowed");
    if (new_key.slot != p.slot || new_key.secret.size() != kKeySecretBytes) throw Error(Errc::internal, "a key of another slot");
    return reseal_under(p, keys_of(password, matrix().params().kdf, new_key), keep);
}

MapKey Store::add(std::span<const Partition* const> unlocked, std::string_view password, const std::string& label) {
    if (password.empty()) throw Error(Errc::usage, "empty passwords are not allowed");
    const StorageParams params = matrix().params();
    if (params.version < 2) throw Error(Errc::usage, "add needs a format 2 storage");
    std::vector<std::uint32_t> free;
    for (std::uint32_t s = 0; s < params.slots; ++s)
        if (std::none_of(unlocked.begin(), unlocked.end(), [&](const Partition* q) { return q->slot == s; })) free.push_back(s);
    if (free.empty()) throw Error(Errc::usage, "every slot holds an unlocked partition: the storage is full");
    MapKey key = make_map_key(free[randombytes_uniform(static_cast<std::uint32_t>(free.size()))]);
    Partition p{key.slot, {}, keys_of(password, params.kdf, key)};
    Rng rng;
    codec::Meta meta;
    meta.label = label;
    static const std::uint8_t kEmpty[] = {'{', '}'};
    auto blob = codec::seal(params.version, kEmpty, std::nullopt, meta, p.keys, rng, options_.compression_level);
    CommitResult r;
    FileLock lock = lock_for_commit(p, r);
    if (!(matrix_->params().slots == params.slots && matrix_->params().kdf.salt == params.kdf.salt))
        throw Error(Errc::usage, "the storage was replaced while the key was made; run add again");
    write_blob_locked(p.slot, blob, 2, unlocked, rng, r);
    return key;
}

CommitResult Store::shrink(std::span<const Partition* const> unlocked) {
    auto t0 = Clock::now();
    FileLock lock = lock_for_write();
    load();
    Matrix& m = *matrix_;
    std::size_t rows = 1;
    for (const Partition* q : unlocked) {
        auto h = header_of(m, *q);
        if (!h) auth_failed();
        rows = std::max(rows, rows_for_chunks(m.params(), h->chunks()));
    }
    CommitResult r;
    r.capacity_before = m.capacity();
    const std::size_t target = capacity_for(m.params(), 0, rows);
    if (target >= m.capacity()) {
        r.capacity_after = m.capacity();
        return r;
    }
    Rng rng;
    std::vector<std::vector<std::uint8_t>> kept;
    auto writes = writes_for(std::nullopt, unlocked, rng, kept);  // read before the rows go
    m.shrink(target);
    // A shared storage writes nothing new (the rows kept are as they were); a
    // deniable one the kept partitions and random codewords.
    const std::size_t before = r.capacity_before;
    write_slots_locked(writes, rng, r);
    r.capacity_before = before;
    r.seconds = since(t0);
    return r;
}

DryRunResult Store::dry_run(const Partition& p, std::span<const std::uint8_t> document) {
    require_valid_json(document);
    const Matrix& m = matrix();
    auto h = header_of(m, p);
    if (!h) auth_failed();
    auto t0 = Clock::now();
    Rng rng;
    auto blob = codec::seal(m.params().version, document, std::nullopt, h->meta, p.keys, rng, options_.compression_level);
    Matrix copy = m;  // the whole commit in memory, the way a commit does it, to time it
    const auto& params = m.params();
    write_slots(copy, plan_writes(copy, {SlotWrite{p.slot, blob}}), rng);
    DryRunResult d;
    d.rows_now = rows_for_chunks(params, h->chunks());
    d.rows_after = rows_for_chunks(params, blob.size() / kChunkBytes);
    d.bytes_now = h->document_len;
    d.bytes_after = document.size();
    d.capacity_before = m.capacity();
    d.capacity_after = copy.capacity();
    d.size_change_percent = 100.0 * (static_cast<double>(d.rows_after) - static_cast<double>(d.rows_now)) /
                            static_cast<double>(d.rows_now);
    d.large_change = std::fabs(d.size_change_percent) > 50.0;
    // The in-memory work measured now, plus writing the new file at the speed
    // this storage was read (a rough stand-in for write + fsync), but no
    // slower than 200 MB/s: a small file's read time is mostly fixed costs,
    // which do not grow with the size.
    const double old_bytes = static_cast<double>(m.file_text().size());
    const double rate = std::max(last_load_seconds_ > 0 ? old_bytes / last_load_seconds_ : 0.0, 200e6);
    d.estimated_seconds = since(t0) + static_cast<double>(copy.file_text().size()) / rate;
    return d;
}

FsckReport Store::fsck(const Partition* p, bool repair) {
    FsckReport rep;
    std::optional<FileLock> lock;
    if (repair) {
        lock.emplace(lock_path_of(path_), options_.lock_tries, options_.lock_backoff);
        rep.recovery = Wal(path_).recover();
    } else {
        rep.recovery = recover();
    }
    load();
    Matrix& m = *matrix_;
    for (const auto& note : m.load_notes) rep.problems.push_back(note + (repair ? " (repaired)" : " (repairable)"));
    rep.damaged_structure = m.load_notes.size();
    progress::start(m.params().slots);
    for (unsigned slot = 0; slot < m.params().slots; ++slot) {
        RepairReport r = read_slot_checked(m, slot, m.capacity(), {}, repair ? &m : nullptr);
        progress::advance();
        rep.rows_checked += m.capacity();
        for (const auto& row : r.repaired) {
            rep.bad_cells += row.columns.size();
            std::string cols;
            for (auto c : row.columns) cols += " " + std::to_string(c);
            if (!row.certain) ++rep.unrepaired_rows;
            rep.problems.push_back("row " + std::to_string(row.row) + ": bad cells in columns" + cols +
                                   (!row.certain ? " (readable, but too few cells are left to repair it with certainty)"
                                    : repair     ? " (repaired)"
                                                 : " (repairable)"));
            if (repair && row.certain) rep.repaired_cells += row.columns.size();
        }
        for (const auto& row : r.unrecoverable) {
            rep.bad_cells += row.bad_cells;
            rep.problems.push_back("row " + std::to_string(row.row) + ", slot " + std::to_string(slot) + ": " +
                                   std::to_string(row.bad_cells) +
                                   " unreadable cell(s) and more bad cells than the redundancy can correct (left as is)");
        }
        rep.unrecoverable_rows += r.unrecoverable.size();
    }
    if (repair && (rep.repaired_cells > 0 || rep.damaged_structure > 0)) {
        write_locked(m.file_text(), false);
        m.load_notes.clear();
    }
    if (p != nullptr) {
        rep.document_checked = true;
        try {
            read(*p);
            rep.document_ok = true;
        } catch (const Error& e) {
            if (e.code() == Errc::auth_failed) throw;
            rep.problems.push_back(std::string("document: ") + e.what());
        }
    }
    return rep;
}

}  // namespace shamirfs
