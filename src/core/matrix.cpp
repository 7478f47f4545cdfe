#include "shamirfs/matrix.hpp"

#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <exception>
#include <thread>

#include "shamirfs/base64.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/shamir.hpp"
#include "shamirfs/storage_format.hpp"

namespace shamirfs {

void check_params(const StorageParams& p, bool from_file) {
    Errc code = from_file ? Errc::corrupt : Errc::usage;
    if (p.threshold < shamir::kMinThreshold)
        throw Error(code, "threshold must be at least " + std::to_string(shamir::kMinThreshold));
    if (p.shares < p.threshold) throw Error(code, "shares per row must be at least the threshold");
    if (p.shares > shamir::kMaxShares)
        throw Error(code, "shares per row must be at most " + std::to_string(shamir::kMaxShares));
    if (p.slots < 1 || p.slots > kMaxSlots)
        throw Error(code, "slots must be between 1 and " + std::to_string(kMaxSlots));
    if (p.columns() > kMaxColumns)
        throw Error(code, "slots x shares must be at most " + std::to_string(kMaxColumns) + " columns");
}

Matrix::Matrix(StorageParams params, std::size_t capacity) : params_(params), capacity_(capacity) {
    check_params(params_, false);
    if (capacity > kMaxCapacity) throw Error(Errc::too_large, "capacity exceeds " + std::to_string(kMaxCapacity) + " rows");
    // The canonical layout: the header, then '"' cells '",\n' per row, the last
    // row without its comma, then "]}\n".
    const std::size_t row_chars = std::size_t{columns()} * kCellChars;
    const std::string head = storage_header(params_, capacity_);
    first_ = head.size() + 1;
    stride_ = row_chars + 4;
    text_ = BigBuffer(head, capacity_ * stride_ + 3);
    char* out = text_.data() + head.size();
    for (std::size_t r = 0; r < capacity_; ++r) {
        *out++ = '"';
        std::memset(out, 'A', row_chars);
        out += row_chars;
        std::memcpy(out, r + 1 < capacity_ ? "\",\n" : "\"\n", r + 1 < capacity_ ? 3 : 2);
        out += r + 1 < capacity_ ? 3 : 2;
    }
    std::memcpy(out, "]}\n", 3);
    text_.resize(static_cast<std::size_t>(out + 3 - text_.data()));
}

Matrix::Matrix(StorageParams params, std::size_t capacity, BigBuffer text, std::size_t first, std::size_t stride)
    : params_(params), capacity_(capacity), text_(std::move(text)), first_(first), stride_(stride) {
    check_params(params_, true);
    const std::size_t row_chars = std::size_t{columns()} * kCellChars;
    if (capacity_ > 0 && (stride_ < row_chars || first_ + (capacity_ - 1) * stride_ + row_chars > text_.size()))
        throw Error(Errc::internal, "matrix layout does not fit its text");
}

std::vector<gf::Fe> Matrix::slot_share_ids(unsigned slot) const {
    std::vector<gf::Fe> xs;
    for (unsigned i = 0; i < params_.shares; ++i) xs.push_back(share_id(slot * params_.shares + i));
    return xs;
}

std::string_view Matrix::cell_text(std::size_t row, unsigned column) const {
    return {text_.data() + first_ + row * stride_ + column * kCellChars, kCellChars};
}

std::string_view Matrix::row_text(std::size_t row) const {
    return {text_.data() + first_ + row * stride_, std::size_t{columns()} * kCellChars};
}

gf::Fe Matrix::get(std::size_t row, unsigned column) const {
    std::uint8_t b[gf::kBytes];
    gf::Fe v;
    if (!base64::decode(cell_text(row, column), b) ||
        !gf::from_bytes(std::span<const std::uint8_t, gf::kBytes>(b, gf::kBytes), v))
        throw Error(Errc::corrupt, "cell (" + std::to_string(row) + ", " + std::to_string(column) + ") is not a value < p");
    return v;
}

void Matrix::set(std::size_t row, unsigned column, const gf::Fe& v) {
    std::uint8_t b[gf::kBytes];
    gf::to_bytes(v, b);
    base64::encode(b, cell_ptr(row, column));
}

void Matrix::randomize_slot(unsigned slot, std::size_t begin, std::size_t end, Rng& rng) {
    const shamir::Splitter splitter(params_.threshold, slot_share_ids(slot));
    std::vector<gf::Fe> ys(params_.shares);
    for (std::size_t r = begin; r < end; ++r) {
        splitter.split(rng.chunk_element(), ys, rng);
        for (unsigned i = 0; i < params_.shares; ++i) set(r, slot * params_.shares + i, ys[i]);
    }
}

void Matrix::grow(std::size_t new_capacity, Rng& rng) {
    if (new_capacity <= capacity_) return;
    Matrix bigger(params_, new_capacity);
    const std::size_t row_chars = std::size_t{columns()} * kCellChars;
    for (std::size_t r = 0; r < capacity_; ++r) std::memcpy(bigger.cell_ptr(r, 0), cell_ptr(r, 0), row_chars);
    const std::size_t old = capacity_;
    *this = std::move(bigger);
    for (unsigned s = 0; s < params_.slots; ++s) randomize_slot(s, old, new_capacity, rng);
}

std::size_t capacity_for(std::size_t current, std::size_t rows) {
    if (rows <= current) return current;
    if (rows > kMaxCapacity) throw Error(Errc::too_large, "document needs more than " + std::to_string(kMaxCapacity) + " rows");
    std::size_t c = 1;
    while (c < rows) c <<= 1;
    return std::min(c, kMaxCapacity);
}

void write_slot(Matrix& m, unsigned slot, std::span<const std::uint8_t> blob, Rng& rng,
                const std::function<void(std::size_t)>& block_done) {
    const auto& p = m.params();
    const std::size_t rows = blob.size() / 64, capacity = m.capacity();
    if (blob.size() % 64 != 0 || rows > capacity) throw Error(Errc::internal, "blob does not fit the matrix");
    const shamir::Splitter splitter(p.threshold, m.slot_share_ids(slot));
    const std::size_t blocks = (capacity + kBlockRows - 1) / kBlockRows;
    std::atomic<std::size_t> next{0};
    // Each thread takes the next block: shares of the blob's chunks, then
    // codewords of random secrets; every thread writes only its blocks' cells.
    auto work = [&](Rng& r) {
        std::vector<gf::Fe> ys(p.shares);
        for (std::size_t b; (b = next.fetch_add(1)) < blocks;) {
            for (std::size_t row = b * kBlockRows; row < std::min(capacity, (b + 1) * kBlockRows); ++row) {
                gf::Fe secret = row < rows ? gf::from_chunk(std::span<const std::uint8_t, 64>(blob.data() + row * 64, 64))
                                           : r.chunk_element();
                splitter.split(secret, ys, r);
                for (unsigned i = 0; i < p.shares; ++i) m.set(row, slot * p.shares + i, ys[i]);
            }
            if (block_done) block_done(b);
        }
    };
    // Each thread has its own random stream.
    const std::size_t threads = blocks >= 4 ? std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), 8) : 1;
    std::vector<std::thread> pool;
    std::vector<std::unique_ptr<Rng>> rngs;
    std::vector<std::exception_ptr> errors(threads);
    for (std::size_t t = 1; t < threads; ++t) {
        rngs.push_back(std::make_unique<Rng>());
        pool.emplace_back([&, t, r = rngs.back().get()] {
            try {
                work(*r);
            } catch (...) {
                errors[t] = std::current_exception();
                next = blocks;  // the others stop too
            }
        });
    }
    try {
        work(rng);
    } catch (...) {
        errors[0] = std::current_exception();
        next = blocks;
    }
    for (auto& th : pool) th.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

bool read_slot_fast(const Matrix& m, std::span<const std::uint32_t> order, std::size_t rows, std::span<std::uint8_t> out) {
    const unsigned t = m.params().threshold;
    if (order.size() < t || out.size() < rows * 64 || rows > m.capacity()) throw Error(Errc::internal, "bad slot read");
    std::vector<gf::Fe> xs(t);
    for (unsigned i = 0; i < t; ++i) xs[i] = Matrix::share_id(order[i]);
    const shamir::LagrangeAtZero basis(xs);
    std::atomic<bool> ok{true};
    auto work = [&](std::size_t begin, std::size_t end) {
        std::vector<gf::Fe> ys(t);
        for (std::size_t r = begin; r < end; ++r) {
            for (unsigned i = 0; i < t; ++i) ys[i] = m.get(r, order[i]);
            if (!gf::to_chunk(basis.combine(ys), std::span<std::uint8_t, 64>(out.data() + r * 64, 64))) {
                std::memset(out.data() + r * 64, 0, 64);
                ok = false;
            }
        }
    };
    // Rows are independent: a large read takes a second thread for its second half.
    if (rows < 4096) {
        work(0, rows);
    } else {
        std::exception_ptr error;
        std::thread second([&] {
            try {
                work(rows / 2, rows);
            } catch (...) {
                error = std::current_exception();
            }
        });
        try {
            work(0, rows / 2);
        } catch (...) {
            second.join();
            throw;
        }
        second.join();
        if (error) std::rethrow_exception(error);
    }
    return ok;
}

namespace {

// Checks a row of a slot cheaply: the first t shares determine the polynomial;
// each other share must equal its Lagrange prediction (t multiplications each).
class RowChecker {
public:
    RowChecker(const std::vector<gf::Fe>& xs, unsigned t) : t_(t), at_zero_(std::span(xs).first(t)) {
        std::vector<gf::Fe> base(xs.begin(), xs.begin() + t);
        for (std::size_t j = t; j < xs.size(); ++j) {
            std::vector<gf::Fe> c(t);
            for (unsigned i = 0; i < t; ++i) {
                gf::Fe num = gf::one(), den = gf::one();
                for (unsigned k = 0; k < t; ++k) {
                    if (k == i) continue;
                    num = gf::mul(num, gf::sub(xs[j], base[k]));
                    den = gf::mul(den, gf::sub(base[i], base[k]));
                }
                c[i] = gf::mul(num, gf::inv(den));
            }
            predict_.push_back(std::move(c));
        }
    }
    bool consistent(const std::vector<gf::Fe>& ys) const {
        for (std::size_t j = 0; j < predict_.size(); ++j) {
            gf::Fe y;
            for (unsigned i = 0; i < t_; ++i) y = gf::add(y, gf::mul(predict_[j][i], ys[i]));
            if (!(y == ys[t_ + j])) return false;
        }
        return true;
    }
    gf::Fe secret(const std::vector<gf::Fe>& ys) const { return at_zero_.combine(std::span(ys).first(t_)); }

private:
    unsigned t_;
    shamir::LagrangeAtZero at_zero_;
    std::vector<std::vector<gf::Fe>> predict_;
};

}  // namespace

RepairReport read_slot_checked(const Matrix& m, unsigned slot, std::size_t rows, std::span<std::uint8_t> out,
                               Matrix* fix_into) {
    const auto& p = m.params();
    const bool want_chunks = !out.empty();
    if ((want_chunks && out.size() < rows * 64) || rows > m.capacity()) throw Error(Errc::internal, "bad slot read");
    auto xs = m.slot_share_ids(slot);
    RowChecker checker(xs, p.threshold);
    std::vector<gf::Fe> ys(xs.size());
    RepairReport report;
    for (std::size_t r = 0; r < rows; ++r) {
        bool readable = true;
        for (unsigned i = 0; i < p.shares; ++i) {
            try {
                ys[i] = m.get(r, slot * p.shares + i);
            } catch (const Error&) {
                ys[i] = gf::zero();  // treated as a wrong share
                readable = false;
            }
        }
        std::array<std::uint8_t, 64> chunk{};
        if (readable && checker.consistent(ys)) {
            if (!gf::to_chunk(checker.secret(ys), chunk)) report.unrecoverable.push_back(r);
            else if (want_chunks) std::copy(chunk.begin(), chunk.end(), out.begin() + static_cast<long>(r * 64));
            continue;
        }
        auto d = shamir::decode(xs, ys, p.threshold);
        if (!d || !gf::to_chunk(d->secret, chunk)) {
            if (want_chunks) std::fill_n(out.begin() + static_cast<long>(r * 64), 64, 0);
            report.unrecoverable.push_back(r);
            continue;
        }
        if (want_chunks) std::copy(chunk.begin(), chunk.end(), out.begin() + static_cast<long>(r * 64));
        RowRepair rr{r, {}};
        for (auto i : d->bad) rr.columns.push_back(slot * p.shares + static_cast<unsigned>(i));
        if (fix_into != nullptr) {
            // Re-evaluate the decoded polynomial at the bad share IDs from t good shares.
            std::vector<gf::Fe> gx, gy;
            for (unsigned i = 0; i < p.shares && gx.size() < p.threshold; ++i) {
                if (std::find(d->bad.begin(), d->bad.end(), i) != d->bad.end()) continue;
                gx.push_back(xs[i]);
                gy.push_back(ys[i]);
            }
            for (auto i : d->bad)
                fix_into->set(r, slot * p.shares + static_cast<unsigned>(i), shamir::interpolate_at(gx, gy, xs[i]));
        }
        report.repaired.push_back(std::move(rr));
    }
    return report;
}

}  // namespace shamirfs
