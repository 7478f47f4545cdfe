// The share matrix: rows are chunk slots (the capacity), columns are share
// slots. Columns are grouped into `slots` groups of n = `shares` consecutive
// columns; column c has the public share ID x = c + 1.
//
// Every group holds, in every row, n evaluations of one polynomial of degree
// t - 1 (a codeword). Its `pack` lowest coefficients are 512-bit chunks (format
// 1: one, the constant term; format 2: up to t, packed sharing), the others
// are uniform in [0, p). A partition's group carries its sealed document in the
// chunks of the first rows and random chunks after it; a group of no partition
// carries random chunks everywhere. So the groups of a written, an unwritten
// and an unassigned partition have exactly the same distribution (see
// man/shamirfs.5, "Why every group is a codeword").
//
// The matrix keeps the storage file's own text, each cell 88 base64
// characters at a fixed offset: format 1 one JSON string per row, format 2 one
// per column (in an order that spreads a slot's columns, so that a damaged
// disk block holds few cells of any one codeword). A commit rewrites its
// slot's cells in place and writes the text as it is, so cells it does not
// touch are kept byte for byte and nothing is serialised or copied.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shamirfs/big_buffer.hpp"
#include "shamirfs/codec.hpp"
#include "shamirfs/crypto.hpp"
#include "shamirfs/gf521.hpp"
#include "shamirfs/rng.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {

inline constexpr unsigned kFormatVersion = 2;  // what create writes; version 1 is still read and written
inline constexpr std::size_t kCellChars = 88;
inline constexpr unsigned kMaxSlots = 1024;
inline constexpr unsigned kMaxColumns = 4096;
inline constexpr std::size_t kMaxCapacity = std::size_t{1} << 22;  // rows
inline constexpr std::size_t kMinCapacity = 16;                     // format 2

enum class StorageMode { shared, deniable };

struct StorageParams {
    unsigned version = kFormatVersion;
    unsigned threshold = 3;
    unsigned shares = 9;
    unsigned slots = 4;
    unsigned pack = 3;    // chunks per row of a slot (format 1: 1)
    unsigned growth = 4;  // capacity classes per doubling (format 1: 1)
    StorageMode mode = StorageMode::shared;
    KdfParams kdf;
    unsigned columns() const { return slots * shares; }
    std::size_t row_bytes() const { return std::size_t{pack} * kChunkBytes; }  // document bytes per row
};

// Checks threshold/shares/slots/pack/growth against the format's rules
// (Error(corrupt) if `from_file`, else Error(usage)).
void check_params(const StorageParams& p, bool from_file);

// A byte range of the file text.
struct TextRange {
    std::size_t offset = 0, length = 0;
    const char* from = nullptr;  // where the bytes are, when not at `offset` in the text
};

class Matrix {
public:
    Matrix() = default;
    // A storage of `capacity` rows in the canonical layout (man/shamirfs.5);
    // every cell is "AAA...A" (0), or with !fill_cells not written at all:
    // fill before use.
    Matrix(StorageParams params, std::size_t capacity, bool fill_cells = true);
    // Adopts the text of a checked storage file whose cell (r, c) starts at
    // first + r * row_step + position(c) * column_step (storage_format.cpp
    // checks all of that).
    Matrix(StorageParams params, std::size_t capacity, BigBuffer text, std::size_t first, std::size_t row_step,
           std::size_t column_step);

    const StorageParams& params() const { return params_; }
    std::size_t capacity() const { return capacity_; }
    unsigned columns() const { return params_.columns(); }

    static gf::Fe share_id(unsigned column) { return gf::from_u64(column + 1ull); }
    std::vector<gf::Fe> slot_share_ids(unsigned slot) const;
    // Where column c's text stands among the columns (format 2 interleaves the
    // slots: share i of slot s is the (i * slots + s)-th column string).
    std::size_t position(unsigned column) const;

    gf::Fe get(std::size_t row, unsigned column) const;  // Error(corrupt) if the cell is not a value < p
    bool try_get(std::size_t row, unsigned column, gf::Fe& out) const;  // false: an erasure
    void set(std::size_t row, unsigned column, const gf::Fe& v);
    static void encode(const gf::Fe& v, char* cell);  // the kCellChars characters of a cell
    std::string_view cell_text(std::size_t row, unsigned column) const;
    // True if `other` has this capacity and every cell of `slot` equal.
    bool same_slot(const Matrix& other, unsigned slot) const;
    // Every cell of `slot` taken from `other` (same parameters and capacity).
    void copy_slot(const Matrix& other, unsigned slot);
    // The whole storage file, as it is written.
    std::string_view file_text() const { return text_.view(); }
    char* mutable_text() { return text_.data(); }

    // For writers that stream the file while slots are being written: the
    // bytes that write_slots' block `block` of `slots` makes final, and every
    // byte that it does not touch. Together they cover the file.
    std::vector<TextRange> block_ranges(std::span<const unsigned> slots, std::size_t block) const;
    std::vector<TextRange> ranges_outside(std::span<const unsigned> slots) const;
    // The cells of `slots` (format 2: their whole columns), in file order.
    std::vector<TextRange> slot_ranges(std::span<const unsigned> slots) const;

    // Codewords of random chunks in `slot`, rows [begin, end).
    void randomize_slot(unsigned slot, std::size_t begin, std::size_t end, Rng& rng);
    // Adds rows up to new_capacity, every group a random codeword.
    void grow(std::size_t new_capacity, Rng& rng);
    // Adds rows up to new_capacity and leaves them for the caller to fill
    // (write_slots with first_row = the old capacity); returns the old capacity.
    std::size_t grow_unfilled(std::size_t new_capacity);
    // Keeps rows [0, new_capacity) only (the caller knows no document needs more).
    void shrink(std::size_t new_capacity);

    // What the reader found and set right in memory (damaged header or
    // separators), one line each; a write of this text repairs them.
    std::vector<std::string> load_notes;

private:
    std::size_t cell_offset(std::size_t row, unsigned column) const {
        return first_ + row * row_step_ + position(column) * column_step_;
    }
    char* cell_ptr(std::size_t row, unsigned column) { return text_.data() + cell_offset(row, column); }
    void resize_rows(std::size_t new_capacity);  // grow_unfilled and shrink

    StorageParams params_;
    std::size_t capacity_ = 0;
    BigBuffer text_;                // the file
    std::size_t first_ = 0;         // offset of cell (0, 0)
    std::size_t row_step_ = 0;      // from a cell to the next row's
    std::size_t column_step_ = 0;   // from a column position to the next
};

// The capacity a storage needs for a document of `rows` rows: the current
// capacity, or the smallest capacity class >= rows (format 1: powers of two;
// format 2: `growth` classes per doubling, m * 2^e with growth <= m < 2 growth,
// at least kMinCapacity), capped at kMaxCapacity.
std::size_t capacity_for(const StorageParams& p, std::size_t current, std::size_t rows);
// Rows needed for `chunks` chunks of a sealed document.
inline std::size_t rows_for_chunks(const StorageParams& p, std::size_t chunks) { return (chunks + p.pack - 1) / p.pack; }

// Writes sealed blobs (whole numbers of chunks) into slots: chunk j is
// coefficient j % pack of row j / pack; the rest of each slot (all of it for
// an empty blob) gets random codewords. The matrix must already have the
// rows. Rows go in blocks (block_rows) to up to 8 threads; `block_done(b)`,
// if given, is called on the thread that finished block b of every slot, so a
// writer can follow (block_ranges).
// Rows per block: 1024, fewer in a small storage (at least 8 blocks of at
// least 64 rows), so that every core has a share of it and the writer follows.
inline std::size_t block_rows(std::size_t capacity) { return std::clamp<std::size_t>(capacity / 8, 64, 1024); }
inline std::size_t block_count(std::size_t capacity) { return (capacity + block_rows(capacity) - 1) / block_rows(capacity); }
struct SlotWrite {
    unsigned slot;
    std::span<const std::uint8_t> blob;
    std::size_t first_row = 0;  // rows before it are kept as they are
};
void write_slots(Matrix& m, std::span<const SlotWrite> writes, Rng& rng,
                 const std::function<void(std::size_t)>& block_done = {});
// Where write_slots can put each block's cells instead of the matrix (format
// 2): a buffer per block, the writes' columns one after another in the order
// of block_ranges (slot by slot, share by share), each holding the block's
// rows. A block's rows before a write's first_row are copied from the matrix.
// The matrix itself is left without those cells.
class BlockOut {
public:
    virtual ~BlockOut() = default;
    virtual char* take(std::size_t bytes) = 0;              // a buffer (may wait for one)
    virtual void done(std::size_t block, char* cells) = 0;  // filled
};
void write_slots(Matrix& m, std::span<const SlotWrite> writes, Rng& rng, BlockOut& out);
inline void write_slot(Matrix& m, unsigned slot, std::span<const std::uint8_t> blob, Rng& rng) {
    const SlotWrite w{slot, blob};
    write_slots(m, std::span(&w, 1), rng);
}

// Reads the chunks of rows [0, rows) of a slot (rows x pack x 64 bytes) using
// the first t columns of `order` (fast path). Returns false if a cell is not a
// value or an interpolated chunk is >= 2^512 (the row's shares are then
// inconsistent: use the checked read).
bool read_slot_fast(const Matrix& m, std::span<const std::uint32_t> order, std::size_t rows,
                    std::span<std::uint8_t> out);

struct RowRepair {
    std::size_t row;
    std::vector<std::uint32_t> columns;  // wrong or unreadable cells found in that row
    bool certain = true;                 // at least t + 1 cells agree with the decoded codeword
};
struct RowLoss {
    std::size_t row;
    std::size_t bad_cells;               // unreadable cells (erasures) in that row
};
struct RepairReport {
    std::vector<RowRepair> repaired;     // rows with bad cells that were decoded
    std::vector<RowLoss> unrecoverable;  // rows beyond the redundancy
};
// Reads rows [0, rows) from every readable cell: a row whose cells are all
// values and consistent is read directly; any other is decoded (cells that are
// not values are erasures, and Berlekamp-Welch corrects up to
// floor((n - erasures - t) / 2) wrong cells). `out` may be empty (only check).
// If `fix_into` is given (it may be &m), the bad cells of rows decoded with
// certainty are rewritten there; no other row is touched.
RepairReport read_slot_checked(const Matrix& m, unsigned slot, std::size_t rows, std::span<std::uint8_t> out,
                               Matrix* fix_into = nullptr);

}  // namespace shamirfs
