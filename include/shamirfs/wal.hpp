// The write-ahead log of one storage: "STORAGE.wal", a small JSON record that
// is replaced durably (temp, fsync, rename, directory fsync) at each state:
//   start  {"wal":2,"state":"start","temp":NAME}
//   ready  {"wal":2,"state":"ready","temp":NAME,"new":HASH}
// and removed once the new storage is renamed into place and the directory
// fsynced. NAME is the temp file's name in the storage's directory
// (".STORAGE.tmp-PID-RANDOM"), HASH the content_hash() of the new file.
// Records of version 1 (with "base", and BLAKE2b-256 hashes) still recover.
#pragma once
#include <string>
#include <vector>

namespace shamirfs {

struct WalRecord {
    std::string state;  // "start" or "ready"
    std::string temp;   // file name, no directory
    std::string next;   // hash of the new storage (ready only)
};

class Wal {
public:
    explicit Wal(std::string storage_path);
    const std::string& path() const { return wal_path_; }
    // A fresh temp file name beside the storage.
    std::string new_temp_name() const;
    std::string temp_path(const std::string& name) const;

    void write(const WalRecord& r);  // durable
    void remove();                   // durable

    // Is there anything for recover() to do (a WAL or temp files)? Needs no lock.
    bool needs_recovery() const;
    // Finishes or rolls back an interrupted commit and removes stale temp
    // files. Call with the storage lock held (every temp file is then stale).
    // Returns the actions taken, each also logged. A WAL that is not a valid
    // record is left in place: Error(corrupt).
    std::vector<std::string> recover();

private:
    std::vector<std::string> temp_files() const;
    std::string storage_, dir_, base_, wal_path_;
};

}  // namespace shamirfs
