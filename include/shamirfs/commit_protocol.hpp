// The commit protocol of one storage, both sides: writing a new version
// (write_through_wal) and finishing or rolling back an interrupted one
// (Wal::recover). Under an flock on the lock file, a complete new file is
// written beside the storage (O_EXCL, 0600) and fsynced, its hash recorded in
// the write-ahead log, then it is swapped with the storage
// (renameat2(RENAME_EXCHANGE)) and the directory fsynced, then the log is
// removed. The swap keeps the file it replaced: if that is not the version the
// commit was made from (a sync tool, which takes no lock, renamed another
// version in meanwhile), it is kept as a conflict copy and handed back, never
// dropped unseen.
//
// The log is a small JSON record written durably (temp, fsync, rename,
// directory fsync) once the new file is complete and fsynced:
//   ready  {"wal":3,"state":"ready","temp":NAME,"new":HASH,"base":"DEV:INO"}
// (Records of the state "start", which builds before version 3 wrote first,
// are still recovered: their temp file is removed.)
// NAME is the temp file's name in the storage's directory, HASH the
// page_hash() of the new file (version 2 records, still recovered: its
// content_hash()), DEV:INO the identity of the version the commit was made
// from (optional).
//
// Every file beside the storage is named ".STORAGE.shamirfs-*" (lock, wal,
// wal.tmp, tmp-PID-RANDOM), so that one ignore pattern keeps sync tools away
// from them (man/shamirfs.5). Builds before format 2 used "STORAGE.lock",
// "STORAGE.wal" and ".STORAGE.tmp-*": recovery still finishes their commits.
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

struct WalRecord {
    std::string state;  // "start" or "ready"
    std::string temp;   // file name, no directory
    std::string next;   // hash of the new storage (ready only)
    std::string base;   // "DEV:INO" of the version the commit was made from (ready; "" if none)
};

// The file identity a swap compares: device and inode.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const FileId&) const = default;
};
std::string to_string(const FileId& id);  // "DEV:INO"

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
    std::string temp_path(const std::string& name) const;

    void write(const WalRecord& r);  // durable
    void remove(bool durable = true);

    // Is there anything for recover() to do (a WAL or temp files)? Needs no lock.
    bool needs_recovery() const;
    // Finishes or rolls back an interrupted commit and removes stale temp
    // files. Call with the storage lock held (every temp file is then stale).
    // Returns the actions taken, each also logged. A WAL that is not a valid
    // record is left in place: Error(corrupt).
    std::vector<std::string> recover();

private:
    std::vector<std::string> recover_record(const std::string& wal_path);
    std::vector<std::string> temp_files() const;
    bool is_temp_name(const std::string& name) const;
    std::string storage_, dir_, base_, wal_path_, legacy_wal_path_;
};

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
