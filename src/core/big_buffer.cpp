#include "shamirfs/big_buffer.hpp"

#include <sys/mman.h>

#include <cstring>
#include <new>
#include <utility>

#include "shamirfs/error.hpp"

namespace shamirfs {

BigBuffer::BigBuffer(std::size_t capacity, bool huge) {
    if (capacity == 0) return;
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    mapped_ = (capacity + kHuge - 1) & ~(kHuge - 1);
    void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (huge) ::madvise(p, mapped_, MADV_HUGEPAGE);  // a hint: without huge pages it only costs more faults
    data_ = static_cast<char*>(p);
    capacity_ = mapped_;
}

BigBuffer::BigBuffer(std::string_view bytes, std::size_t spare) : BigBuffer(bytes.size() + spare) {
    if (!bytes.empty()) std::memcpy(data_, bytes.data(), bytes.size());
    size_ = bytes.size();
}

BigBuffer::~BigBuffer() { release(); }

BigBuffer::BigBuffer(const BigBuffer& other) : BigBuffer(other.view(), other.capacity_ - other.size_) {}

BigBuffer& BigBuffer::operator=(const BigBuffer& other) {
    if (this != &other) *this = BigBuffer(other);
    return *this;
}

BigBuffer::BigBuffer(BigBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

BigBuffer& BigBuffer::operator=(BigBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        capacity_ = std::exchange(other.capacity_, 0);
        mapped_ = std::exchange(other.mapped_, 0);
    }
    return *this;
}

void BigBuffer::resize(std::size_t n) {
    if (n > capacity_) throw Error(Errc::internal, "buffer resized past its capacity");
    size_ = n;
}

void BigBuffer::release() noexcept {
    if (data_ != nullptr) ::munmap(data_, mapped_);
    data_ = nullptr;
    size_ = capacity_ = mapped_ = 0;
}

}  // namespace shamirfs
