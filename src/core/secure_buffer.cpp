#include "shamirfs/secure_buffer.hpp"

#include <sodium.h>

#include <atomic>
#include <cstring>
#include <new>

#include "shamirfs/error.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs {
namespace {
std::atomic<bool> g_lock_failed{false};

void ensure_sodium() {
    static const bool ok = sodium_init() >= 0;
    if (!ok) throw Error(Errc::internal, "libsodium failed to initialise");
}
}  // namespace

bool memory_lock_failed() { return g_lock_failed; }

SecureBuffer::SecureBuffer(std::size_t size) {
    if (size == 0) return;
    ensure_sodium();
    void* p = sodium_malloc(size);
    if (p == nullptr) throw std::bad_alloc();
    // sodium_malloc locks on a best-effort basis; ask again to learn whether it
    // worked, and keep working (with one warning) when RLIMIT_MEMLOCK is small.
    if (sodium_mlock(p, size) != 0 && !g_lock_failed.exchange(true)) {
        log::warn("memory is not locked (RLIMIT_MEMLOCK too small): secrets may be swapped out");
    }
    std::memset(p, 0, size);
    data_ = static_cast<std::uint8_t*>(p);
    size_ = size;
}

SecureBuffer::SecureBuffer(const void* data, std::size_t size) : SecureBuffer(size) {
    if (size) std::memcpy(data_, data, size);
}

SecureBuffer::~SecureBuffer() { release(); }

SecureBuffer::SecureBuffer(SecureBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
}

SecureBuffer& SecureBuffer::operator=(SecureBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = other.data_;
        size_ = other.size_;
        other.data_ = nullptr;
        other.size_ = 0;
    }
    return *this;
}

void SecureBuffer::shrink(std::size_t new_size) {
    if (new_size >= size_) return;
    sodium_memzero(data_ + new_size, size_ - new_size);
    size_ = new_size;
}

void SecureBuffer::relock() noexcept {
    if (data_ != nullptr && sodium_mlock(data_, size_) != 0 && !g_lock_failed.exchange(true))
        log::warn("memory is not locked (RLIMIT_MEMLOCK too small): secrets may be swapped out");
}

void SecureBuffer::release() noexcept {
    if (data_ != nullptr) sodium_free(data_);  // wipes and unlocks
    data_ = nullptr;
    size_ = 0;
}

}  // namespace shamirfs
