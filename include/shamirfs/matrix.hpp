// The share matrix: rows are 64-byte chunk slots (the capacity), columns are
// share slots. Columns are grouped into `slots` groups of n = `shares`
// consecutive columns; column c has the public share ID x = c + 1.
//
// Every group holds, in every row, n evaluations of one polynomial of degree
// t - 1 (a Shamir codeword). A partition's group carries its sealed document in
// the first rows and codewords of random 512-bit secrets after it; a group of
// no partition carries codewords of random 512-bit secrets everywhere. So the
// groups of a written, an unwritten and an unassigned partition have exactly
// the same distribution (see man/shamirfs.5, "Why every group is a codeword").
//
// The matrix keeps the storage file's own text: the header, then one JSON
// string per row at a fixed stride, each cell 88 base64 characters. A commit
// rewrites its slot's cells in place and writes the text as it is, so cells it
// does not touch are kept byte for byte and nothing is serialised or copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shamirfs/big_buffer.hpp"
#include "shamirfs/crypto.hpp"
#include "shamirfs/gf521.hpp"
#include "shamirfs/rng.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {

inline constexpr unsigned kFormatVersion = 1;
inline constexpr std::size_t kCellChars = 88;
inline constexpr unsigned kMaxSlots = 1024;
inline constexpr unsigned kMaxColumns = 4096;
inline constexpr std::size_t kMaxCapacity = std::size_t{1} << 22;  // rows (256 MiB of chunks)

struct StorageParams {
    unsigned threshold = 3;
    unsigned shares = 9;
    unsigned slots = 4;
    KdfParams kdf;
    unsigned columns() const { return slots * shares; }
};

// Checks threshold/shares/slots against the format's rules (Error(corrupt) if
// `from_file`, else Error(usage)).
void check_params(const StorageParams& p, bool from_file);

class Matrix {
public:
    Matrix() = default;
    // A storage of `capacity` rows in the canonical layout (man/shamirfs.5);
    // every cell is "AAA...A" (0): fill before use.
    Matrix(StorageParams params, std::size_t capacity);
    // Adopts the text of a checked storage file whose row r's cells start at
    // first + r * stride (storage_format.cpp checks all of that).
    Matrix(StorageParams params, std::size_t capacity, BigBuffer text, std::size_t first, std::size_t stride);

    const StorageParams& params() const { return params_; }
    std::size_t capacity() const { return capacity_; }
    unsigned columns() const { return params_.columns(); }

    static gf::Fe share_id(unsigned column) { return gf::from_u64(column + 1ull); }
    std::vector<gf::Fe> slot_share_ids(unsigned slot) const;

    gf::Fe get(std::size_t row, unsigned column) const;  // Error(corrupt) if the text is bad
    void set(std::size_t row, unsigned column, const gf::Fe& v);
    std::string_view cell_text(std::size_t row, unsigned column) const;
    std::string_view row_text(std::size_t row) const;  // the row's cells, without quotes
    // Where row `row`'s cells start in file_text() (row == capacity(): its size).
    std::size_t row_offset(std::size_t row) const { return row < capacity_ ? first_ + row * stride_ : text_.size(); }
    // The whole storage file, as it is written.
    std::string_view file_text() const { return text_.view(); }

    // Codewords of random 512-bit secrets in `slot`, rows [begin, end).
    void randomize_slot(unsigned slot, std::size_t begin, std::size_t end, Rng& rng);
    // Adds rows up to new_capacity, every group a random codeword.
    void grow(std::size_t new_capacity, Rng& rng);

private:
    char* cell_ptr(std::size_t row, unsigned column) { return text_.data() + first_ + row * stride_ + column * kCellChars; }

    StorageParams params_;
    std::size_t capacity_ = 0;
    BigBuffer text_;          // the file
    std::size_t first_ = 0;   // offset of row 0's first cell
    std::size_t stride_ = 0;  // from one row's first cell to the next's
};

// The capacity a storage needs for a document of `rows` rows: the current
// capacity, or the next power of two >= rows (capped at kMaxCapacity).
std::size_t capacity_for(std::size_t current, std::size_t rows);

// Writes a sealed blob into `slot` (rows past the blob get random codewords).
// The matrix must already have capacity >= blob rows. Rows go in blocks of
// kBlockRows to up to 8 threads; `block_done(b)`, if given, is called on the
// thread that finished block b (rows [b * kBlockRows, (b + 1) * kBlockRows)),
// so a writer can follow (store.cpp streams the file out while shares are made).
inline constexpr std::size_t kBlockRows = 1024;
void write_slot(Matrix& m, unsigned slot, std::span<const std::uint8_t> blob, Rng& rng,
                const std::function<void(std::size_t)>& block_done = {});

// Reads rows [0, rows) of a slot into chunks using the first t columns of
// `order` (fast path). Returns false if an interpolated value is >= 2^512
// (then the row's shares are inconsistent: use the repairing read).
bool read_slot_fast(const Matrix& m, std::span<const std::uint32_t> order, std::size_t rows,
                    std::span<std::uint8_t> out);

struct RowRepair {
    std::size_t row;
    std::vector<std::uint32_t> columns;  // corrupted cells found in that row
};
struct RepairReport {
    std::vector<RowRepair> repaired;     // rows with corrupted cells that were decoded
    std::vector<std::size_t> unrecoverable;
};
// Reads rows [0, rows) from all n shares of every row: a row whose shares are
// consistent is read directly, any other is decoded (Berlekamp-Welch corrects up
// to floor((n - t) / 2) bad cells per row). `out` may be empty (only check).
// If `fix_into` is given (it may be &m), corrected cells are rewritten there.
RepairReport read_slot_checked(const Matrix& m, unsigned slot, std::size_t rows, std::span<std::uint8_t> out,
                               Matrix* fix_into = nullptr);

}  // namespace shamirfs
