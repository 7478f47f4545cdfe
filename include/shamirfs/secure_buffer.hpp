// Move-only byte buffer in guarded, locked memory, wiped on release. Holds
// secrets (passwords, keys) and plaintext documents. Small buffers come from
// libsodium's sodium_malloc (canary, guard pages), a block of a power-of-two
// size that is wiped and kept for reuse when released; large ones (documents,
// from 1 MiB) from a mapping of their own between guard pages, kept out of
// core dumps: sodium_malloc fills a buffer twice before it is used, which for
// 100 MB costs as much as checking its JSON.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace shamirfs {

class SecureBuffer {
public:
    // How much of a large buffer is written: all of it (its pages are locked,
    // hence given memory, at once: cheaper than a fault per page), or a part
    // of unknown size (a buffer sized for the worst case: its pages are
    // locked as they are first touched, and only those are wiped).
    enum class Use { whole, part };
    SecureBuffer() = default;
    explicit SecureBuffer(std::size_t size, Use use = Use::whole);
    SecureBuffer(const void* data, std::size_t size);
    ~SecureBuffer();
    SecureBuffer(SecureBuffer&& other) noexcept;
    SecureBuffer& operator=(SecureBuffer&& other) noexcept;
    SecureBuffer(const SecureBuffer&) = delete;
    SecureBuffer& operator=(const SecureBuffer&) = delete;

    std::uint8_t* data() noexcept { return data_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    // Shrinks the visible size (the tail is wiped); never grows.
    void shrink(std::size_t new_size);
    std::span<const std::uint8_t> bytes() const noexcept { return {data_, size_}; }
    std::span<std::uint8_t> bytes() noexcept { return {data_, size_}; }
    // Locks the pages again (after fork(2), whose child inherits no locks).
    void relock() noexcept;
    std::string_view view() const noexcept {
        return {reinterpret_cast<const char*>(data_), size_};
    }

private:
    void release() noexcept;
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    void* mapping_ = nullptr;  // a large buffer's own mapping (nullptr: sodium_malloc)
    std::size_t mapped_ = 0;
    std::size_t block_ = 0;  // a small buffer's sodium_malloc block (size_ <= block_)
    bool part_ = false;  // Use::part
};

// Memory as a small SecureBuffer's (guarded, locked, wiped when freed, kept
// for reuse) for a library's own allocations that hold secrets (zstd's
// windows and tables); nullptr when out of memory.
void* secure_alloc(std::size_t bytes) noexcept;
void secure_free(void* p) noexcept;

// True once some allocation could not be locked (RLIMIT_MEMLOCK too small).
bool memory_lock_failed();

}  // namespace shamirfs
