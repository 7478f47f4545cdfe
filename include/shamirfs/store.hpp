// The service that owns one backing file (the seed's DbService): every
// mutation (create, commit, repair) goes through it, under an flock on
// "STORAGE.lock", through the write-ahead log (wal.hpp): a new file is written
// beside the storage (O_EXCL, 0600) and fsynced, then renamed over it, then the
// directory is fsynced. Recovery runs before every use. Each mutation returns
// what it changed.
#pragma once
#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shamirfs/codec.hpp"
#include "shamirfs/crypto.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/keys.hpp"
#include "shamirfs/matrix.hpp"
#include "shamirfs/secure_buffer.hpp"

namespace shamirfs {

struct StoreOptions {
    KdfLimits kdf_limits = production_kdf_limits();
    int compression_level = 1;  // zstd: on JSON as small as level 3 (bench), 2-3x faster
    int lock_tries = 5;                                   // seed: 5 tries
    std::chrono::milliseconds lock_backoff{100};          // seed: from 0.1 s, doubling, jittered
    // Whether a commit leaves the storage it wrote in memory (for the next
    // read or commit); a large one is then written past the page cache
    // (PagedWriter), which would hold a second copy. Without, the new cells
    // go from small buffers to the file, so a commit that lays out a large
    // file touches little memory beyond the page cache its write fills, and
    // the storage is read again when next needed: for a process that ends
    // after its command (the CLI), whose successor reads the page cache.
    bool keep_written_text = true;
};

struct CreateSpec {
    unsigned format = kFormatVersion;  // 1 only for tests of the old format
    unsigned partitions = 2;
    std::vector<std::string> labels;   // one per partition (format 2 seals it in the partition); default a, b, ...
    unsigned threshold = 3;
    unsigned shares = 9;
    unsigned slots = 4;        // a constant: it must not tell how many partitions there are
    unsigned pack = 0;         // chunks per row; 0: the threshold (format 2)
    unsigned growth = 4;       // capacity classes per doubling (format 2)
    StorageMode mode = StorageMode::shared;  // deniable: every commit rewrites every slot
    std::size_t capacity = kMinCapacity;  // initial rows (rounded up to a capacity class)
    std::uint64_t kdf_ops = 3;
    std::uint64_t kdf_mem = 256ull << 20;
};

struct CreateResult {
    std::vector<MapKey> keys;  // one per partition, in the order of the passwords
    std::size_t capacity = 0;
    std::uint64_t bytes_written = 0;
    double seconds = 0;
};

// An unlocked partition: the derived keys and where its shares are.
struct Partition {
    std::uint32_t slot = 0;
    std::vector<std::uint32_t> order;  // stage-2 order of the slot's columns
    PartitionKeys keys;
};

struct CommitResult {
    // Another writer committed since this Store loaded the file: the commit was
    // re-applied on top of it (only this partition's columns change).
    bool rebased = false;
    // ... and that writer had changed this same partition: its version was
    // replaced by this one (last writer wins; logged as a warning).
    bool replaced_concurrent_change = false;
    std::size_t document_bytes = 0;
    std::size_t document_rows = 0;     // rows the sealed document occupies
    std::size_t rows_rewritten = 0;    // rows of this partition's columns rewritten (all rows)
    std::size_t shares_regenerated = 0;
    std::size_t capacity_before = 0, capacity_after = 0;
    // A document that needed more rows was expected to need these (0: not
    // known before it was sealed; exact when it was compressed by then, else
    // estimated for a large one), and the file was laid out for them
    // meanwhile; when they fall in another capacity class it is laid out again.
    std::size_t estimated_rows = 0;
    std::uint64_t bytes_written = 0;   // size of the new storage file
    double seconds = 0;
};

struct DryRunResult {
    std::size_t rows_now = 0, rows_after = 0;
    std::size_t capacity_before = 0, capacity_after = 0;
    std::size_t bytes_now = 0, bytes_after = 0;  // document sizes
    double size_change_percent = 0;              // of the document's rows
    bool large_change = false;                   // |change| > 50 %
    double estimated_seconds = 0;
};

struct FsckReport {
    std::vector<std::string> recovery;         // actions of the recovery run
    std::size_t damaged_structure = 0;         // header, its copy or separators found damaged (set right in memory)
    std::size_t rows_checked = 0;              // slot-rows checked (rows x slots)
    std::size_t bad_cells = 0;                 // cells found inconsistent
    std::size_t repaired_cells = 0;            // of those, rewritten (--repair)
    std::size_t unrecoverable_rows = 0;        // slot-rows with too many bad cells
    std::size_t unrepaired_rows = 0;           // slot-rows decodable, but with too few cells left to be certain
    std::vector<std::string> problems;         // one line each
    bool document_checked = false;             // credentials given
    bool document_ok = false;                  // ... and the document authenticated
    bool clean() const {
        return damaged_structure == 0 && bad_cells == 0 && unrecoverable_rows == 0 && (!document_checked || document_ok);
    }
};

// A document on its way to a commit: from the moment it is prepared it is
// compressed and its JSON checked, each on a thread of its own. Neither needs
// the partition's key, so a caller that has yet to unlock (the KDF) prepares
// the document first. The document's bytes must outlive it.
class PreparedDocument {
public:
    PreparedDocument() = default;
    PreparedDocument(PreparedDocument&&) = default;
    PreparedDocument& operator=(PreparedDocument&&) = delete;  // (its work would have to be waited for first)
    ~PreparedDocument() { finish(); }
    std::span<const std::uint8_t> bytes() const { return document_; }

private:
    friend class Store;
    // Waits for the work begun on the document's bytes (which the caller
    // frees after this).
    void finish();
    std::span<const std::uint8_t> document_;
    std::shared_future<codec::Compressed> compressed_;
    std::future<void> checked_;  // Error(invalid_json)
    std::function<void()> still_valid_;
};

class Store {
public:
    explicit Store(std::string path, StoreOptions options = {});

    // Writes a new storage (fails if the path exists). Each password opens the
    // partition of the key at the same index; every partition holds "{}".
    static CreateResult create(const std::string& path, const CreateSpec& spec,
                               const std::vector<SecureBuffer>& passwords,
                               const StoreOptions& options = {});

    const std::string& path() const { return path_; }
    // Finishes or rolls back an interrupted commit and removes stale temp files
    // (takes the lock only when there is something to do, and never waits for
    // it: while a commit holds it, or where recovery cannot write, the storage
    // file is read as it is, which the rename keeps whole). Returns the actions.
    std::vector<std::string> recover();
    // Loads (or reloads) the backing file; a missing one is looked for again
    // for up to kMissingRetry (a sync tool swapping it in), then Error(io).
    static constexpr std::chrono::milliseconds kMissingRetry{2000};
    const Matrix& load();
    // Whether the file at the path is no longer the one last loaded or
    // written here (another writer's commit, a rename onto it, a restored
    // copy); false while it is missing.
    bool changed_on_disk() const;
    const Matrix& matrix();

    // Throws Error(auth_failed) with kAuthFailedMessage for a wrong key, a wrong
    // password and a slot that does not exist alike (the same work is done).
    // If the file is not loaded yet, it is loaded while the KDF runs.
    Partition unlock(const MapKey& key, std::string_view password);

    SecureBuffer read(const Partition& p);
    // The document with what its sealed header says (label, generation,
    // commit time) and its draft, if one is kept.
    codec::Opened open(const Partition& p, codec::Meta* meta = nullptr);
    // Commits under the lock; the JSON is checked while the document is
    // sealed (Error(invalid_json): the storage is left as it was).
    // In a deniable storage every other slot is rewritten too: the partitions
    // in `keep` keep their documents (sealed again), every other one is erased
    // (random codewords). A shared storage ignores `keep`.
    CommitResult commit(const Partition& p, PreparedDocument document, std::span<const Partition* const> keep = {});
    CommitResult commit(const Partition& p, std::span<const std::uint8_t> document,
                        std::span<const Partition* const> keep = {}) {
        return commit(p, prepare(document), keep);
    }
    // `still_valid` (if any) runs once the document is compressed and checked,
    // before the commit is made durable, and may throw to refuse it (a
    // document read where it lies, which someone changed meanwhile).
    PreparedDocument prepare(std::span<const std::uint8_t> document, std::function<void()> still_valid = {}) const;
    DryRunResult dry_run(const Partition& p, std::span<const std::uint8_t> document);
    // Keeps `draft` (any text: invalid JSON, empty, or a commit that failed)
    // sealed beside the partition's committed document, or drops the draft
    // kept (nothing). The document does not change. Format 2 only
    // (Error(usage) for format 1). `keep` as for commit.
    CommitResult save_draft(const Partition& p, const std::optional<std::span<const std::uint8_t>>& draft,
                            std::span<const Partition* const> keep = {});

    // Partition lifecycle, meaningful only with every partition of the
    // storage unlocked (in a shared storage a slot that none of `unlocked`
    // uses may hold someone else's partition: the caller must know it does
    // not; in a deniable one the others are erased by any commit anyway).
    // add: a free slot becomes a new partition holding "{}" with this password
    // and label; returns its key. shrink: the capacity becomes the smallest
    // class that the unlocked partitions' documents need.
    MapKey add(std::span<const Partition* const> unlocked, std::string_view password, const std::string& label);

    // Credentials that live as long as the data: the partition sealed again
    // under a new password (passwd) or a new key secret (rekey), through the
    // commit path; the old credentials stop working. Nothing else changes (a
    // deniable storage keeps `keep` and erases the rest, as any commit).
    // (`key` is the map key `p` was unlocked with.)
    CommitResult passwd(const Partition& p, const MapKey& key, std::string_view new_password,
                        std::span<const Partition* const> keep = {});
    // rekey: `new_key` (make_map_key(p.slot)) replaces the key; the caller
    // keeps it safe (written to its file) before calling.
    CommitResult rekey(const Partition& p, const MapKey& new_key, std::string_view password,
                       std::span<const Partition* const> keep = {});
    CommitResult shrink(std::span<const Partition* const> unlocked);
    // Merging versions (merge.hpp): commits `document` with `draft` (or no
    // draft), its generation above `newest`'s (the newest generation merged),
    // so that it orders after every version it was merged from.
    CommitResult commit_merged(const Partition& p, std::span<const std::uint8_t> document,
                               const std::optional<std::span<const std::uint8_t>>& draft, const codec::Meta& newest,
                               std::span<const Partition* const> keep = {});
    // ... and the cells of `slots` taken from `other` (a version of this
    // storage with the same capacity), under the lock.
    CommitResult copy_slots_from(const Matrix& other, std::span<const unsigned> slots);
    // Recovery, structure, and every row of every slot checked for consistent
    // shares (needs no credentials: share IDs are public); with a partition also
    // its document's authenticity. With `repair`, correctable cells are rewritten
    // through the WAL protocol.
    FsckReport fsck(const Partition* p, bool repair);

private:
    // The file's identity when it was read: a commit renames a new inode into
    // place and any write changes ctime, so an equal identity means equal bytes.
    struct FileIdentity {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = -1;
        struct timespec mtime {}, ctime{};
        bool operator==(const FileIdentity& o) const;
    };
    using Clock = std::chrono::steady_clock;
    static std::optional<FileIdentity> identity_of(const std::string& path);
    // Steps of a commit, lock held: read the file again if another writer
    // replaced it (noting that in r), then write the sealed blob into the
    // partition's slot and the file through the WAL (returns when the shares
    // were done).
    void reload_for_commit(const Partition& p, CommitResult& r);
    // The first steps of every write: the lock, recovery, the hard-link
    // check; for a commit also the file read again if another writer
    // replaced it.
    FileLock lock_for_write();
    FileLock lock_for_commit(const Partition& p, CommitResult& r);
    void refuse_hard_links() const;
    // Reads the partition's blob (the fast read, then the checked one) and
    // hands it to `take`, which authenticates it (false: it does not);
    // Error(damaged) when neither read does, Error(auth_failed) as unlock.
    void read_blob(const Partition& p, codec::Meta* meta,
                   const std::function<bool(std::span<const std::uint8_t>, const codec::Header&)>& take);
    // The partition's document sealed again under `keys` (its slot stays),
    // with its draft, or with `*new_draft` instead when given.
    CommitResult reseal_under(const Partition& p, const PartitionKeys& keys, std::span<const Partition* const> keep,
                              const std::optional<std::span<const std::uint8_t>>* new_draft = nullptr);
    // The rows the document needs when that is more than the file has (else
    // 0): exact once it is compressed (the other slots' new rows are then
    // made while it is sealed); before, estimated for a large document (from
    // `now`, the header of the version it replaces, or from a sample).
    std::size_t expected_rows(PreparedDocument& document, const codec::Header& now) const;
    // A slot write that is still being made (a commit's own document, sealed
    // on another thread) when the file begins to be written: `make` runs
    // while the bytes already final go to the disk.
    struct LateWrite {
        unsigned slot;
        std::function<SlotWrite()> make;  // the sealed blob
        std::size_t expected_rows = 0;    // the rows its blob is expected to need (0: not known)
    };
    // Lock held: writes the blobs into their slots (a deniable storage: random
    // codewords into every other slot), growing the capacity as they need,
    // and the file through the WAL; returns when the shares were made. With
    // `late`, the file is laid out for its expected rows (or as it is) before
    // its blob is there: Relayout is thrown (nothing written to its slot) when
    // the blob needs another capacity, and the caller calls again without it.
    // `check` (which may refuse the commit: the new file is then removed) runs
    // on the worker before the late slot's shares, or without one after the
    // others'.
    Clock::time_point write_slots_locked(std::vector<SlotWrite> writes, Rng& rng, CommitResult& r,
                                         const LateWrite* late = nullptr, const std::function<void()>& check = {});
    // Lock held: a sealed blob (of a document of `document_bytes`) into
    // `slot`, the partitions in `keep` beside it (a deniable storage).
    void write_blob_locked(unsigned slot, std::span<const std::uint8_t> blob, std::size_t document_bytes,
                           std::span<const Partition* const> keep, Rng& rng, CommitResult& r);
    // A version a swap displaced (kept at `displaced`) that this commit did
    // not see: `writes` applied on top of it, swapped in again; the copy is
    // removed. Returns what that swap displaced in turn ("" when none).
    std::string reapply_on(const std::string& displaced, std::span<const SlotWrite> writes, Rng& rng, CommitResult& r);
    // The slot writes of a commit: `own` (if any), and in a deniable storage
    // the partitions in `keep` sealed again with fresh nonces (their blobs
    // held in `blobs`, which must outlive the writes).
    std::vector<SlotWrite> writes_for(std::optional<SlotWrite> own, std::span<const Partition* const> keep, Rng& rng,
                                      std::vector<std::vector<std::uint8_t>>& blobs);
    static FileIdentity identity_of(int fd);
    // Writes `text` as the new storage through the WAL protocol; lock held.
    // With `next_ranges`, only the ranges it hands out are written at a time:
    // it waits until more bytes are final and returns them (nothing: done).
    // Returns "" or the conflict copy of an unseen version the swap displaced.
    std::string write_locked(std::string_view text, bool must_not_exist,
                      const std::function<std::vector<TextRange>()>& next_ranges = {});

    std::string path_;
    StoreOptions options_;
    std::optional<Matrix> matrix_;
    std::optional<FileIdentity> loaded_identity_;
    // The file matrix_ came from, kept open so that renaming a new version over
    // it frees nothing on the commit's path: the old one is closed afterwards,
    // in the background. (After another writer's commit this keeps the old
    // version's blocks until the next load or commit here.)
    FileHandle pinned_;
    double last_load_seconds_ = 0;
};

// The parameters a CreateSpec makes; Error(usage) for a spec create refuses
// (checked before anyone types a password).
StorageParams check_create_spec(const CreateSpec& spec);

// Exposed for tests: the sealed header of a partition, or nothing.
std::optional<std::size_t> document_rows(const Matrix& m, const Partition& p);

}  // namespace shamirfs
