// The commit protocol of one storage, both sides: writing a new version
// (write_through_wal) and finishing or rolling back an interrupted one
// (Wal::recover). Under an flock on the lock file, a complete new file is
// written beside the storage (O_EXCL, 0600) and fsynced; then it is renamed
// to its ready name, which is the write-ahead record:
//   .STORAGE.shamirfs-ready-HASH[-DEV-INO]
// HASH the page_hash() of the new file, DEV-INO (hex) the identity of the
// version the commit was made from. Then it is swapped with the storage
// (renameat2(RENAME_EXCHANGE)) and the directory fsynced once: a crash keeps
// neither rename (a stale temp file, removed), the first (a complete file
// under its ready name: swapped in) or both (the ready name holds the
// displaced version, the storage has HASH: settled). The swap keeps the file
// it replaced: if that is not the version the commit was made from (a sync
// tool, which takes no lock, renamed another version in meanwhile), it is kept
// as a conflict copy and handed back, never dropped unseen.
//
// Builds before WAL version 4 wrote the record to a file of its own
// (.STORAGE.shamirfs-wal, or STORAGE.wal before format 2), a JSON object
//   {"wal":3,"state":"ready","temp":NAME,"new":HASH,"base":"DEV:INO"}
// (version 2: HASH the content_hash(); state "start": an unfinished temp
// file); recovery still finishes them.
//
// Every file beside the storage is named ".STORAGE.shamirfs-*" (lock,
// tmp-PID-RANDOM, ready-*), so that one ignore pattern keeps sync tools away
// from them (man/shamirfs.5).
#pragma once
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shamirfs/fileio.hpp"
#include "shamirfs/matrix.hpp"

namespace shamirfs {

std::string lock_path_of(const std::string& storage);  // DIR/.BASE.shamirfs-lock

// The file identity a swap compares: device and inode.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const FileId&) const = default;
};

// A write-ahead record: a ready name, or a record file of an older build.
struct WalRecord {
    std::string state;            // "start" or "ready"
    std::string temp;             // the new file's name, no directory
    std::string next;             // hash of the new storage (ready only)
    std::optional<FileId> base;   // the version the commit was made from (ready; none if none)
};

// Conflict copies of a storage beside it: what sync engines make when two
// devices changed it at once (Syncthing's STEM.sync-conflict-*, Dropbox's and
// Nextcloud's "STEM (... conflicted copy ...)") and what a commit keeps of a
// version it displaced (STEM.shamirfs-conflict-*), as full paths, sorted.
std::vector<std::string> conflict_copies(const std::string& storage);
// A new name for a displaced version: DIR/STEM.shamirfs-conflict-TIME-RANDOM.EXT.
std::string new_conflict_path(const std::string& storage);

class Wal {
public:
    explicit Wal(std::string storage_path);
    // A fresh temp file name beside the storage.
    std::string new_temp_name() const;
    // The name of a complete new file with this page hash, made from `base`.
    std::string ready_name(const std::string& hash, const std::optional<FileId>& base) const;
    std::string temp_path(const std::string& name) const;

    // Is there anything for recover() to do (a record, a ready or temp file)? Needs no lock.
    bool needs_recovery() const;
    // Finishes or rolls back an interrupted commit and removes stale temp
    // files. Call with the storage lock held (every temp file is then stale).
    // Returns the actions taken, each also logged. A record file that is not
    // valid is left in place: Error(corrupt).
    std::vector<std::string> recover();

private:
    std::optional<WalRecord> parse_ready_name(const std::string& name) const;
    std::string finish_ready(const WalRecord& r, std::string (*hash)(std::string_view));
    void recover_record(const std::string& wal_path, const std::function<void(const std::string&)>& act);
    std::vector<std::string> own_files() const;  // temp and ready files, sorted
    bool is_temp_name(const std::string& name) const;
    std::string storage_, dir_, base_, wal_path_, legacy_wal_path_;
};

// The longest storage file name a commit accepts: a ready name adds 83 bytes
// (".", ".shamirfs-ready-", the hash, two hex numbers of up to 16 digits),
// and a name has at most 255 (NAME_MAX).
inline constexpr std::size_t kMaxStorageName = 255 - 83;
void check_storage_name(const std::string& storage);  // Error(usage) when longer

// Writes `text` as the new version of `storage` through the protocol above;
// the lock must be held. With `next_ranges`, only the ranges it hands out are
// written at a time: it waits until more bytes are final and returns them
// (nothing: done); the bytes of the ranges one call returns may change once
// it is called again. `must_not_exist`: the storage must not exist (create).
// `base`: the version `text` was made from; a different file found in its
// place at the swap is kept as a conflict copy, named in `displaced`.
// `skip_page_cache`: the caller keeps the text in memory (PagedWriter).
struct Swapped {
    FileHandle written;     // the new file, still open
    std::string displaced;  // "" or the conflict copy of an unseen version it replaced
};
Swapped write_through_wal(const std::string& storage, std::string_view text, bool must_not_exist,
                          const std::function<std::vector<TextRange>()>& next_ranges = {},
                          std::optional<FileId> base = std::nullopt, bool skip_page_cache = false);

}  // namespace shamirfs
