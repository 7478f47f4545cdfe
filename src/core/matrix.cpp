#include "shamirfs/matrix.hpp"
#include "shamirfs/progress.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "shamirfs/base64.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/shamir.hpp"
#include "shamirfs/storage_format.hpp"
#include "shamirfs/tasks.hpp"

namespace shamirfs {

void check_params(const StorageParams& p, bool from_file) {
    Errc code = from_file ? Errc::corrupt : Errc::usage;
    if (p.version != 1 && p.version != 2) throw Error(code, "unsupported format version " + std::to_string(p.version));
    if (p.threshold < shamir::kMinThreshold)
        throw Error(code, "threshold must be at least " + std::to_string(shamir::kMinThreshold));
    if (p.shares < p.threshold) throw Error(code, "shares per row must be at least the threshold");
    if (p.shares > shamir::kMaxShares)
        throw Error(code, "shares per row must be at most " + std::to_string(shamir::kMaxShares));
    if (p.slots < 1 || p.slots > kMaxSlots)
        throw Error(code, "slots must be between 1 and " + std::to_string(kMaxSlots));
    if (p.columns() > kMaxColumns)
        throw Error(code, "slots x shares must be at most " + std::to_string(kMaxColumns) + " columns");
    if (p.version == 1 && (p.pack != 1 || p.growth != 1 || p.mode != StorageMode::shared))
        throw Error(Errc::internal, "format 1 has no packing, growth classes or modes");
    if (p.pack < 1 || p.pack > p.threshold) throw Error(code, "chunks per row (pack) must be between 1 and the threshold");
    if (p.growth != 1 && p.growth != 2 && p.growth != 4) throw Error(code, "growth must be 1, 2 or 4 classes per doubling");
}

Matrix::Matrix(StorageParams params, std::size_t capacity, bool fill_cells) : params_(params), capacity_(capacity) {
    check_params(params_, false);
    if (capacity > kMaxCapacity) throw Error(Errc::too_large, "capacity exceeds " + std::to_string(kMaxCapacity) + " rows");
    // The canonical layout: the header, then '"' cells '",\n' per row
    // (format 1) or per column (format 2), the last without its comma, then
    // the trailer.
    const bool by_row = params_.version == 1;
    const std::size_t strings = by_row ? capacity_ : columns();
    const std::size_t chars = (by_row ? std::size_t{columns()} : capacity_) * kCellChars;
    const std::string head = storage_header(params_, capacity_), tail = storage_trailer(params_, capacity_);
    first_ = head.size() + 1;
    row_step_ = by_row ? chars + 4 : kCellChars;
    column_step_ = by_row ? kCellChars : chars + 4;
    // (Unfilled, the text is written by share threads, or only its separators
    // here and the cells through buffers to the file: 4 KiB pages.)
    text_ = BigBuffer(strings * (chars + 4) + head.size() + tail.size(), fill_cells);
    text_.resize(head.size());
    std::memcpy(text_.data(), head.data(), head.size());
    char* out = text_.data() + head.size();
    for (std::size_t i = 0; i < strings; ++i) {
        const bool last = i + 1 == strings;
        *out++ = '"';
        if (fill_cells) std::memset(out, 'A', chars);  // (else left zero, the mapping's own, for the caller)
        out += chars;
        std::memcpy(out, last ? "\"\n" : "\",\n", last ? 2 : 3);
        out += last ? 2 : 3;
    }
    std::memcpy(out, tail.data(), tail.size());
    text_.resize(static_cast<std::size_t>(out + tail.size() - text_.data()));
}

Matrix::Matrix(StorageParams params, std::size_t capacity, BigBuffer text, std::size_t first, std::size_t row_step,
               std::size_t column_step)
    : params_(params), capacity_(capacity), text_(std::move(text)), first_(first), row_step_(row_step),
      column_step_(column_step) {
    check_params(params_, true);
    if (capacity_ > 0 && first_ + (capacity_ - 1) * row_step_ + (columns() - 1) * column_step_ + kCellChars > text_.size())
        throw Error(Errc::internal, "matrix layout does not fit its text");
}

std::size_t Matrix::position(unsigned column) const {
    if (params_.version == 1) return column;
    return std::size_t{column % params_.shares} * params_.slots + column / params_.shares;
}

std::vector<gf::Fe> Matrix::slot_share_ids(unsigned slot) const {
    std::vector<gf::Fe> xs;
    for (unsigned i = 0; i < params_.shares; ++i) xs.push_back(share_id(slot * params_.shares + i));
    return xs;
}

std::string_view Matrix::cell_text(std::size_t row, unsigned column) const {
    return {text_.data() + cell_offset(row, column), kCellChars};
}

bool Matrix::try_get(std::size_t row, unsigned column, gf::Fe& v) const {
    std::uint8_t b[gf::kBytes];
    return base64::decode(cell_text(row, column), b) &&
           gf::from_bytes(std::span<const std::uint8_t, gf::kBytes>(b, gf::kBytes), v);
}

gf::Fe Matrix::get(std::size_t row, unsigned column) const {
    gf::Fe v;
    if (!try_get(row, column, v))
        throw Error(Errc::corrupt, "cell (" + std::to_string(row) + ", " + std::to_string(column) + ") is not a value < p");
    return v;
}

void Matrix::encode(const gf::Fe& v, char* cell) {
    std::uint8_t b[gf::kBytes];
    gf::to_bytes(v, b);
    base64::encode(b, cell);
}

void Matrix::set(std::size_t row, unsigned column, const gf::Fe& v) { encode(v, cell_ptr(row, column)); }

bool Matrix::same_slot(const Matrix& other, unsigned slot) const {
    if (other.capacity_ != capacity_ || other.params_.shares != params_.shares) return false;
    for (unsigned i = 0; i < params_.shares; ++i)
        for (std::size_t r = 0; r < capacity_; ++r)
            if (cell_text(r, slot * params_.shares + i) != other.cell_text(r, slot * params_.shares + i)) return false;
    return true;
}

void Matrix::copy_slot(const Matrix& other, unsigned slot) {
    if (other.capacity_ != capacity_ || other.params_.shares != params_.shares || slot >= params_.slots)
        throw Error(Errc::internal, "copy_slot between matrices of other shapes");
    for (unsigned i = 0; i < params_.shares; ++i)
        for (std::size_t r = 0; r < capacity_; ++r) {
            const std::string_view cell = other.cell_text(r, slot * params_.shares + i);
            std::memcpy(cell_ptr(r, slot * params_.shares + i), cell.data(), kCellChars);
        }
}

std::vector<TextRange> Matrix::block_ranges(std::span<const unsigned> slots, std::size_t block) const {
    const std::size_t rows = block_rows(capacity_), begin = block * rows, end = std::min(capacity_, begin + rows);
    if (begin >= end) return {};
    if (params_.version == 1) {  // whole rows: the other slots' cells in them are final already
        const std::size_t from = cell_offset(begin, 0);
        return {{from, (end == capacity_ ? text_.size() : cell_offset(end, 0)) - from}};
    }
    std::vector<TextRange> out;
    for (unsigned slot : slots)
        for (unsigned i = 0; i < params_.shares; ++i)
            out.push_back({cell_offset(begin, slot * params_.shares + i), (end - begin) * kCellChars});
    return out;
}

std::vector<TextRange> Matrix::slot_ranges(std::span<const unsigned> slots) const {
    if (params_.version == 1) throw Error(Errc::internal, "format 1 has no column strings");
    std::vector<TextRange> columns;
    for (unsigned slot : slots)
        for (unsigned i = 0; i < params_.shares; ++i)
            columns.push_back({cell_offset(0, slot * params_.shares + i), capacity_ * kCellChars});
    std::sort(columns.begin(), columns.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
    return columns;
}

std::vector<TextRange> Matrix::ranges_outside(std::span<const unsigned> slots) const {
    if (params_.version == 1) return {{0, first_}};
    std::vector<TextRange> out;
    std::size_t at = 0;
    for (const auto& c : slot_ranges(slots)) {
        if (c.offset > at) out.push_back({at, c.offset - at});
        at = c.offset + c.length;
    }
    if (at < text_.size()) out.push_back({at, text_.size() - at});
    return out;
}

namespace {

// The coefficients that carry row `row`'s `pack` chunks of a blob (random
// past its end). Format 1: the chunk itself (< 2^512). Format 2: the chunk in
// the low 512 bits under 9 random high bits, so that every coefficient, hence
// every cell, is uniform in [0, p) (man/shamirfs.5).
void row_chunks(std::span<const std::uint8_t> blob, std::size_t row, const StorageParams& p, gf::Fe* low, Rng& rng) {
    const std::size_t chunks = blob.size() / kChunkBytes;
    for (unsigned j = 0; j < p.pack; ++j) {
        const std::size_t k = row * p.pack + j;
        if (k >= chunks) {
            low[j] = p.version == 1 ? rng.chunk_element() : rng.field_element();
            continue;
        }
        low[j] = gf::from_chunk(std::span<const std::uint8_t, kChunkBytes>(blob.data() + k * kChunkBytes, kChunkBytes));
        if (p.version == 1) continue;
        do {  // the one value that would be p itself is drawn again
            std::uint8_t high[2];
            rng.fill(high);
            low[j].limb[8] = (high[0] | std::uint64_t{high[1]} << 8) & 511;
        } while (gf::is_p(low[j]));
    }
}

// The chunks of one row from its decoded coefficients. Format 1: false if one
// is >= 2^512 (its shares are then inconsistent). Format 2: the low 512 bits.
bool put_chunks(const gf::Fe* coeff, const StorageParams& p, std::uint8_t* out) {
    bool ok = true;
    for (unsigned j = 0; j < p.pack; ++j) {
        gf::Fe c = coeff[j];
        if (p.version >= 2) c.limb[8] = 0;
        ok = gf::to_chunk(c, std::span<std::uint8_t, kChunkBytes>(out + j * kChunkBytes, kChunkBytes)) && ok;
    }
    return ok;
}

// Runs work(rng) on up to 8 threads (one when there are few blocks), each with
// its own random stream; the first error stops the others and is rethrown.
void on_threads(std::size_t blocks, std::atomic<std::size_t>& next, Rng& rng, const std::function<void(Rng&)>& work) {
    const std::size_t threads = blocks >= 4 ? std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), 8) : 1;
    std::vector<std::unique_ptr<Rng>> rngs;
    std::vector<std::future<void>> helpers;
    std::exception_ptr error;
    try {
        for (std::size_t t = 1; t < threads; ++t) {
            rngs.push_back(std::make_unique<Rng>());
            helpers.push_back(tasks::async([&, r = rngs.back().get()] {
                try {
                    work(*r);
                } catch (...) {
                    next = blocks;  // the others stop too
                    throw;
                }
            }));
        }
        work(rng);
    } catch (...) {
        error = std::current_exception();
        next = blocks;
    }
    for (auto& h : helpers) h.wait();
    if (error) std::rethrow_exception(error);
    for (auto& h : helpers) h.get();
}

// Runs work(begin, end) over rows [0, rows): a large read takes a second
// thread for its second half.
void split_rows(std::size_t rows, const std::function<void(std::size_t, std::size_t)>& work) {
    if (rows < 4096) return work(0, rows);
    auto second = tasks::async([&] { work(rows / 2, rows); });
    try {
        work(0, rows / 2);
    } catch (...) {
        second.wait();
        throw;
    }
    second.get();
}

}  // namespace

void Matrix::randomize_slot(unsigned slot, std::size_t begin, std::size_t end, Rng& rng) {
    const shamir::Splitter splitter(params_.threshold, slot_share_ids(slot));
    std::vector<gf::Fe> ys(params_.shares), low(params_.pack);
    for (std::size_t r = begin; r < end; ++r) {
        row_chunks({}, r, params_, low.data(), rng);
        splitter.split_packed(low, ys, rng);
        for (unsigned i = 0; i < params_.shares; ++i) set(r, slot * params_.shares + i, ys[i]);
    }
}

void Matrix::grow(std::size_t new_capacity, Rng& rng) {
    const std::size_t old = grow_unfilled(new_capacity);
    for (unsigned s = 0; s < params_.slots && old < capacity_; ++s) randomize_slot(s, old, capacity_, rng);
}

void Matrix::resize_rows(std::size_t new_capacity) {
    // The canonical layout of the new capacity with the rows both have copied:
    // whole rows (format 1) or the top of each column (format 2). New rows
    // are left unfilled (write_slots fills them; filling them here first would
    // fault in a fresh mapping on one thread before the shares do on all).
    Matrix other(params_, new_capacity, false);
    other.load_notes = load_notes;
    const std::size_t rows = std::min(capacity_, new_capacity);
    if (params_.version == 1) {
        const std::size_t row_chars = std::size_t{columns()} * kCellChars;
        for (std::size_t r = 0; r < rows; ++r) std::memcpy(other.cell_ptr(r, 0), cell_ptr(r, 0), row_chars);
    } else if (rows > 0) {
        for (unsigned c = 0; c < columns(); ++c) std::memcpy(other.cell_ptr(0, c), cell_ptr(0, c), rows * kCellChars);
    }
    *this = std::move(other);
}

std::size_t Matrix::grow_unfilled(std::size_t new_capacity) {
    const std::size_t old = capacity_;
    if (new_capacity > capacity_) resize_rows(new_capacity);
    return old;
}

void Matrix::shrink(std::size_t new_capacity) {
    if (new_capacity < capacity_) resize_rows(new_capacity);
}

std::size_t capacity_for(const StorageParams& p, std::size_t current, std::size_t rows) {
    if (rows <= current) return current;
    if (rows > kMaxCapacity) throw Error(Errc::too_large, "document needs more than " + std::to_string(kMaxCapacity) + " rows");
    const std::size_t floor = p.version == 1 ? 1 : kMinCapacity;
    // Classes m * 2^e with growth <= m < 2 * growth.
    for (std::size_t e = 0;; ++e)
        for (std::size_t m = p.growth; m < 2 * p.growth; ++m) {
            const std::size_t c = m << e;
            if (c >= rows && c >= floor) return std::min(c, kMaxCapacity);
        }
}

namespace {
// write_slots, the cells of each block going to the matrix, or to `out`.
void write_slots_to(Matrix& m, std::span<const SlotWrite> writes, Rng& rng,
                    const std::function<void(std::size_t)>& block_done, BlockOut* out) {
    const auto& p = m.params();
    const std::size_t capacity = m.capacity();
    if (out && p.version < 2) throw Error(Errc::internal, "format 1 rows are written in the matrix");
    std::vector<shamir::Splitter> splitters;
    for (const auto& w : writes) {
        if (w.slot >= p.slots || w.blob.size() % kChunkBytes != 0 || rows_for_chunks(p, w.blob.size() / kChunkBytes) > capacity)
            throw Error(Errc::internal, "blob does not fit the matrix");
        splitters.emplace_back(p.threshold, m.slot_share_ids(w.slot));
    }
    const std::size_t rows_per_block = block_rows(capacity), blocks = block_count(capacity);
    progress::start(blocks);
    std::atomic<std::size_t> next{0};
    // Each thread takes the next block: shares of the blobs' chunks, then
    // codewords of random chunks; every thread writes only its blocks' cells.
    on_threads(blocks, next, rng, [&](Rng& r) {
        std::vector<gf::Fe> ys(p.shares), low(p.pack);
        for (std::size_t b; (b = next.fetch_add(1)) < blocks;) {
            const std::size_t begin = b * rows_per_block, end = std::min(capacity, begin + rows_per_block);
            const std::size_t column_bytes = (end - begin) * kCellChars;
            char* cells = out ? out->take(writes.size() * p.shares * column_bytes) : nullptr;
            // Where cell (row, share i) of write k goes.
            auto at = [&](std::size_t k, unsigned i, std::size_t row) {
                return cells + (k * p.shares + i) * column_bytes + (row - begin) * kCellChars;
            };
            for (std::size_t k = 0; k < writes.size(); ++k) {
                const unsigned first_column = writes[k].slot * p.shares;
                if (cells)
                    for (std::size_t row = begin; row < std::min(end, writes[k].first_row); ++row)
                        for (unsigned i = 0; i < p.shares; ++i)
                            std::memcpy(at(k, i, row), m.cell_text(row, first_column + i).data(), kCellChars);
                for (std::size_t row = std::max(begin, writes[k].first_row); row < end; ++row) {
                    row_chunks(writes[k].blob, row, p, low.data(), r);
                    splitters[k].split_packed(low, ys, r);
                    for (unsigned i = 0; i < p.shares; ++i) {
                        if (cells) Matrix::encode(ys[i], at(k, i, row));
                        else m.set(row, first_column + i, ys[i]);
                    }
                }
            }
            progress::advance();
            if (out) out->done(b, cells);
            else if (block_done) block_done(b);
        }
    });
}
}  // namespace

void write_slots(Matrix& m, std::span<const SlotWrite> writes, Rng& rng,
                 const std::function<void(std::size_t)>& block_done) {
    write_slots_to(m, writes, rng, block_done, nullptr);
}

void write_slots(Matrix& m, std::span<const SlotWrite> writes, Rng& rng, BlockOut& out) {
    write_slots_to(m, writes, rng, {}, &out);
}

bool read_slot_fast(const Matrix& m, std::span<const std::uint32_t> order, std::size_t rows, std::span<std::uint8_t> out) {
    const unsigned t = m.params().threshold, pack = m.params().pack;
    const std::size_t row_bytes = m.params().row_bytes();
    if (order.size() < t || out.size() < rows * row_bytes || rows > m.capacity()) throw Error(Errc::internal, "bad slot read");
    std::vector<gf::Fe> xs(t);
    for (unsigned i = 0; i < t; ++i) xs[i] = Matrix::share_id(order[i]);
    const auto basis_kept = shamir::Interpolator::cached(xs);
    const shamir::Interpolator& basis = *basis_kept;
    std::atomic<bool> ok{true};
    split_rows(rows, [&](std::size_t begin, std::size_t end) {
        std::vector<gf::Fe> ys(t), coeff(pack);
        for (std::size_t r = begin; r < end; ++r) {
            bool row_ok = true;
            for (unsigned i = 0; i < t; ++i) row_ok = m.try_get(r, order[i], ys[i]) && row_ok;
            for (unsigned j = 0; j < pack && row_ok; ++j) coeff[j] = shamir::Interpolator::apply(basis.coefficient(j), ys);
            if (!row_ok || !put_chunks(coeff.data(), m.params(), out.data() + r * row_bytes)) {
                std::memset(out.data() + r * row_bytes, 0, row_bytes);
                ok = false;
            }
        }
    });
    return ok;
}

namespace {

// Checks a row of a slot whose cells are all values, cheaply: the first t
// shares determine the polynomial; each other share must equal its prediction
// (t multiplications each).
class RowChecker {
public:
    RowChecker(const std::vector<gf::Fe>& xs, unsigned t) : t_(t), basis_(std::span(xs).first(t)) {
        for (std::size_t j = t; j < xs.size(); ++j) predict_.push_back(basis_.weights_at(xs[j]));
    }
    bool consistent(const std::vector<gf::Fe>& ys) const {
        for (std::size_t j = 0; j < predict_.size(); ++j)
            if (!(shamir::Interpolator::apply(predict_[j], std::span(ys).first(t_)) == ys[t_ + j])) return false;
        return true;
    }
    gf::Fe coefficient(const std::vector<gf::Fe>& ys, unsigned m) const {
        return shamir::Interpolator::apply(basis_.coefficient(m), std::span(ys).first(t_));
    }

private:
    unsigned t_;
    shamir::Interpolator basis_;
    std::vector<std::vector<gf::Fe>> predict_;
};

}  // namespace

RepairReport read_slot_checked(const Matrix& m, unsigned slot, std::size_t rows, std::span<std::uint8_t> out,
                               Matrix* fix_into) {
    const auto& p = m.params();
    const std::size_t row_bytes = p.row_bytes();
    const bool want_chunks = !out.empty();
    if ((want_chunks && out.size() < rows * row_bytes) || rows > m.capacity()) throw Error(Errc::internal, "bad slot read");
    auto xs = m.slot_share_ids(slot);
    RowChecker checker(xs, p.threshold);
    std::vector<gf::Fe> ys(xs.size()), coeff(p.pack), gx, gy;
    std::vector<unsigned> good;  // indices of the cells that are values
    std::vector<std::uint8_t> scratch(row_bytes);
    RepairReport report;
    for (std::size_t r = 0; r < rows; ++r) {
        good.clear();
        for (unsigned i = 0; i < p.shares; ++i)
            if (m.try_get(r, slot * p.shares + i, ys[i])) good.push_back(i);
        std::uint8_t* dest = want_chunks ? out.data() + r * row_bytes : scratch.data();
        if (good.size() == p.shares && checker.consistent(ys)) {
            for (unsigned j = 0; j < p.pack; ++j) coeff[j] = checker.coefficient(ys, j);
            if (!put_chunks(coeff.data(), p, dest)) report.unrecoverable.push_back({r, 0});
            continue;
        }
        // Decode from the cells that are values; the others are erasures.
        gx.clear();
        gy.clear();
        for (unsigned i : good) {
            gx.push_back(xs[i]);
            gy.push_back(ys[i]);
        }
        const std::size_t erased = p.shares - good.size();
        auto d = good.size() >= p.threshold ? shamir::decode(gx, gy, p.threshold) : std::nullopt;
        if (!d || !put_chunks(d->poly.data(), p, dest)) {
            if (want_chunks) std::memset(dest, 0, row_bytes);
            report.unrecoverable.push_back({r, erased});
            continue;
        }
        // Certain: at least t + 1 cells agree with the decoded codeword.
        RowRepair rr{r, {}, good.size() - d->bad.size() > p.threshold};
        std::vector<unsigned> bad;
        for (unsigned i = 0, g = 0; i < p.shares; ++i) {
            const bool is_good = g < good.size() && good[g] == i;
            const bool wrong = is_good && std::find(d->bad.begin(), d->bad.end(), g) != d->bad.end();
            if (is_good) ++g;
            if (!is_good || wrong) bad.push_back(i);
        }
        for (unsigned i : bad) rr.columns.push_back(slot * p.shares + i);
        if (fix_into != nullptr && rr.certain)
            for (unsigned i : bad) fix_into->set(r, slot * p.shares + i, shamir::evaluate(d->poly, xs[i]));
        report.repaired.push_back(std::move(rr));
    }
    return report;
}

}  // namespace shamirfs
