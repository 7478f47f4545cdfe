#include "shamirfs/secure_buffer.hpp"

#include <sodium.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "shamirfs/error.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs {
namespace {
std::atomic<bool> g_lock_failed{false};

void ensure_sodium() {
    static const bool ok = sodium_init() >= 0;
    if (!ok) throw Error(Errc::internal, "libsodium failed to initialise");
}

void lock_failed() {
    if (!g_lock_failed.exchange(true))
        log::warn("memory is not locked (RLIMIT_MEMLOCK too small): secrets may be swapped out");
}

constexpr std::size_t kLargeFrom = std::size_t{1} << 20;

// Small buffers come and go several times a commit, and each sodium_malloc
// and sodium_free is five system calls (map, protect, lock, unprotect,
// unmap), the lock faults every page in, and the unmap interrupts every core
// the process runs on: released blocks of up to 512 KiB are wiped and kept,
// locked and guarded, for the next buffer of their size class (a power of
// two), a few per class and 2 MiB in all (they count against RLIMIT_MEMLOCK,
// 8 MiB by default).
class SmallPool {
public:
    static constexpr std::size_t kMaxBlock = std::size_t{512} << 10, kMaxKept = std::size_t{2} << 20, kPerClass = 4;
    static std::size_t block_for(std::size_t size) { return size <= kMaxBlock ? std::bit_ceil(std::max<std::size_t>(size, 64)) : size; }
    void* take(std::size_t block) {
        std::lock_guard lock(mutex_);
        if (const pid_t now = ::getpid(); now != owner_) {
            // A child of fork(2) (the daemon) inherits the kept blocks but
            // not their memory locks: locked again before they hold secrets.
            for (auto& list : free_)
                for (void* p : list)
                    if (sodium_mlock(p, block_of(list)) != 0) lock_failed();
            owner_ = now;
        }
        auto& list = free_[index(block)];
        if (block > kMaxBlock || list.empty()) return nullptr;
        void* p = list.back();
        list.pop_back();
        kept_ -= block;
        return p;
    }
    // Keeps a wiped block; false: the caller frees it.
    bool keep(void* p, std::size_t block) {
        std::lock_guard lock(mutex_);
        if (block > kMaxBlock || kept_ + block > kMaxKept) return false;
        auto& list = free_[index(block)];
        if (list.size() >= kPerClass) return false;
        list.push_back(p);
        kept_ += block;
        return true;
    }

private:
    static std::size_t index(std::size_t block) { return block > kMaxBlock ? 0 : static_cast<std::size_t>(std::countr_zero(block)); }
    std::size_t block_of(const std::vector<void*>& list) const { return std::size_t{1} << (&list - free_); }
    std::mutex mutex_;
    std::vector<void*> free_[64];
    std::size_t kept_ = 0;
    pid_t owner_ = ::getpid();
};

SmallPool& small_pool() {
    static auto* pool = new SmallPool;  // (never destroyed: buffers may be released while the process exits)
    return *pool;
}

// Locks a large buffer's pages: at once (Use::whole), or as they are first
// touched (Use::part: a buffer sized for the worst case costs only what is
// used, and locking does not hold the process's memory map for the whole
// range while other threads wait to fault in theirs).
bool lock_pages(void* p, std::size_t n, bool part) {
    if (part && ::mlock2(p, n, MLOCK_ONFAULT) == 0) return true;
    if (part && errno != EINVAL && errno != ENOSYS) return false;
    return ::mlock(p, n) == 0;  // (also a kernel without MLOCK_ONFAULT)
}

// Wipes the pages of [p, p + n) that were ever touched (the others were never
// given memory); p is page-aligned.
void wipe_touched(std::uint8_t* p, std::size_t n) {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), pages = (n + page - 1) / page;
    std::vector<unsigned char> resident(pages);
    if (::mincore(p, n, resident.data()) != 0) return sodium_memzero(p, n);
    for (std::size_t i = 0; i < pages;) {
        if (!(resident[i] & 1)) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < pages && (resident[j] & 1)) ++j;
        sodium_memzero(p + i * page, std::min(n, j * page) - i * page);
        i = j;
    }
}
// A block of `block` bytes from the pool, or a new one (zeroed).
void* take_block(std::size_t block) {
    if (void* p = small_pool().take(block)) return p;  // (wiped when it was kept)
    void* p = sodium_malloc(block);
    if (p == nullptr) throw std::bad_alloc();
    // sodium_malloc locks on a best-effort basis; ask again to learn whether it
    // worked, and keep working (with one warning) when RLIMIT_MEMLOCK is small.
    if (sodium_mlock(p, block) != 0) lock_failed();
    std::memset(p, 0, block);
    return p;
}

// Gives a block back, wiped first.
void give_block(void* p, std::size_t used, std::size_t block) noexcept {
    sodium_memzero(p, used);
    if (!small_pool().keep(p, block)) sodium_free(p);  // wipes and unlocks
}

// secure_alloc's blocks start with their size; the caller's bytes follow.
constexpr std::size_t kBlockHeader = 64;  // (keeps them 64-byte aligned)
}  // namespace

bool memory_lock_failed() { return g_lock_failed; }

void* secure_alloc(std::size_t bytes) noexcept {
    try {
        ensure_sodium();
        const std::size_t block = SmallPool::block_for(bytes + kBlockHeader);
        auto* p = static_cast<std::uint8_t*>(take_block(block));
        std::memcpy(p, &block, sizeof(block));
        return p + kBlockHeader;
    } catch (...) {
        return nullptr;
    }
}

void secure_free(void* p) noexcept {
    if (p == nullptr) return;
    auto* start = static_cast<std::uint8_t*>(p) - kBlockHeader;
    std::size_t block = 0;
    std::memcpy(&block, start, sizeof(block));
    give_block(start, block, block);
}

SecureBuffer::SecureBuffer(std::size_t size, Use use) {
    if (size == 0) return;
    ensure_sodium();
    if (size >= kLargeFrom) {
        // [guard page][data, to a page boundary][guard page]
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t rounded = (size + page - 1) / page * page;
        mapped_ = page + rounded + page;
        mapping_ = ::mmap(nullptr, mapped_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping_ == MAP_FAILED) {
            mapping_ = nullptr;
            throw std::bad_alloc();
        }
        auto* p = static_cast<std::uint8_t*>(mapping_) + page;
        if (::mprotect(p, rounded, PROT_READ | PROT_WRITE) != 0) {
            ::munmap(mapping_, mapped_);
            mapping_ = nullptr;
            throw std::bad_alloc();
        }
        ::madvise(mapping_, mapped_, MADV_DONTDUMP);
        part_ = use == Use::part;
        if (!lock_pages(p, rounded, part_)) lock_failed();  // (a fresh mapping is already zero)
        data_ = p;
        size_ = size;
        return;
    }
    block_ = SmallPool::block_for(size);
    data_ = static_cast<std::uint8_t*>(take_block(block_));
    size_ = size;
}

SecureBuffer::SecureBuffer(const void* data, std::size_t size) : SecureBuffer(size) {
    if (size) std::memcpy(data_, data, size);
}

SecureBuffer::~SecureBuffer() { release(); }

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapped_(std::exchange(other.mapped_, 0)),
      block_(std::exchange(other.block_, 0)),
      part_(std::exchange(other.part_, false)) {}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mapping_ = std::exchange(other.mapping_, nullptr);
        mapped_ = std::exchange(other.mapped_, 0);
        block_ = std::exchange(other.block_, 0);
        part_ = std::exchange(other.part_, false);
    }
    return *this;
}

void SecureBuffer::shrink(std::size_t new_size) {
    if (new_size >= size_) return;
    sodium_memzero(data_ + new_size, size_ - new_size);
    size_ = new_size;
}

void SecureBuffer::relock() noexcept {
    if (data_ != nullptr && !(mapping_ != nullptr ? lock_pages(data_, size_, part_) : sodium_mlock(data_, block_) == 0))
        lock_failed();
}

void SecureBuffer::release() noexcept {
    if (mapping_ != nullptr) {
        if (part_) wipe_touched(data_, size_);  // shrink() wiped the rest
        else sodium_memzero(data_, size_);
        ::munmap(mapping_, mapped_);   // and unlocks
    } else if (data_ != nullptr) {
        give_block(data_, size_, block_);  // (shrink() wiped the rest)
    }
    data_ = nullptr;
    size_ = 0;
    mapping_ = nullptr;
    mapped_ = 0;
    block_ = 0;
    part_ = false;
}

}  // namespace shamirfs
