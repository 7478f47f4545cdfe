// The mounted file system, independent of libfuse: a tree of inodes in memory
// (contents in libsodium locked memory), addressed as the kernel addresses
// them (inode numbers, names in a directory, lookup counts, open handles), so
// that an inode lives while a name, the kernel or an open handle holds it.
//
// Files linked in the root at a partition's name ("<label>.json") are that
// partition's document: their content is committed through the Store at the
// commit points (close, fsync, rename onto the name, truncate by name). A text
// that could not be committed is kept as the partition's draft at unmount
// (sealed in the storage) and shows again as "<label>.draft.json". Every other
// file and directory is scratch space that lives in memory only.
//
// Outside changes: a watcher (inotify on the storage's directory) and every
// lookup of a partition's name compare the storage file's identity with the
// one last read; when another process (a CLI update, a second mount, a sync
// tool's rename, a restored backup) changed it, the new text is put at the
// name as a new inode, so open handles keep the text they opened, and the
// kernel is told to forget the name, so the next open or stat sees the new
// size and mtime.
//
// Threading: every method may be called from several threads; one mutex
// guards the tree in memory and is never held across disk I/O, and a second
// one serialises the storage's reads and commits (taken before the tree's,
// never after it), which requests that only look at the tree never wait for.
// Every method returns 0 or a byte count on success and -errno on failure; no
// exception leaves it.
#pragma once
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "shamirfs/secure_buffer.hpp"
#include "shamirfs/store.hpp"

namespace shamirfs::fs {

using Ino = std::uint64_t;
constexpr Ino kRootIno = 1;
// The largest write the kernel sends at once, and the block size files report
// (what cp and others write at a time): fewer requests for a large save.
constexpr std::size_t kWriteChunk = std::size_t{1} << 20;

struct FsOptions {
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t umask = 077;                            // partition files 0666 & ~umask, root 0777 & ~umask
    std::size_t memory_max = std::size_t{1} << 30;  // file contents and directories together (ENOSPC beyond)
    bool automerge = false;  // merge conflict copies of the storage into the partitions mounted
};

struct MountedPartition {
    std::string label;
    Partition partition;
};

// Who makes a request: new inodes are theirs; chown/chgrp checks their groups.
struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups (read only where needed)
};

// A name's inode as the kernel is told it, and for how long it may keep the
// name and the attributes (0 for names whose inode may change outside).
struct Entry {
    Ino ino = 0;
    struct stat attr {};
    double timeout = 0;
};

struct DirEntry {
    std::string name;
    Ino ino = 0;
    mode_t mode = 0;
};

// What setattr changes (the fields of `attr` that count).
struct SetAttr {
    std::optional<mode_t> mode;
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::optional<off_t> size;
    std::optional<struct timespec> atime, mtime;  // UTIME_NOW allowed in tv_nsec
};

class MemFs {
public:
    // `documents[i]` is the committed document of `partitions[i]`, `drafts[i]`
    // the draft kept beside it, if any.
    MemFs(Store& store, std::vector<MountedPartition> partitions, std::vector<SecureBuffer> documents,
          std::vector<std::optional<SecureBuffer>> drafts, FsOptions options, struct timespec mtime);
    ~MemFs();
    MemFs(const MemFs&) = delete;
    MemFs& operator=(const MemFs&) = delete;

    // Name operations: each one that answers an Entry counts one lookup of
    // its inode, which forget() gives back.
    int lookup(Ino parent, const std::string& name, Entry* e);
    void forget(Ino ino, std::uint64_t nlookup);
    int getattr(Ino ino, struct stat* st, double* timeout);
    int setattr(Ino ino, std::uint64_t fh, const SetAttr& set, const Caller& caller, struct stat* st, double* timeout);
    int readdir(Ino ino, std::vector<DirEntry>& out);
    int mkdir(Ino parent, const std::string& name, mode_t mode, const Caller& caller, Entry* e);
    int rmdir(Ino parent, const std::string& name);
    int create(Ino parent, const std::string& name, mode_t mode, int flags, const Caller& caller, Entry* e,
               std::uint64_t* fh);
    int symlink(const std::string& target, Ino parent, const std::string& name, const Caller& caller, Entry* e);
    int readlink(Ino ino, std::string* target);
    int unlink(Ino parent, const std::string& name);
    int rename(Ino parent, const std::string& name, Ino new_parent, const std::string& new_name, unsigned flags);

    int open(Ino ino, int flags, std::uint64_t* fh);
    // Hands `reply` up to `size` bytes at `offset` (the file's own memory,
    // valid during the call); returns their count, or -errno without a call.
    long read(std::uint64_t fh, std::size_t size, off_t offset, const std::function<void(const char*, std::size_t)>& reply);
    long write(std::uint64_t fh, const char* buf, std::size_t size, off_t offset);
    int flush(std::uint64_t fh);
    int fsync(std::uint64_t fh);
    int release(std::uint64_t fh);

    long getxattr(Ino ino, const std::string& name, char* value, std::size_t size);
    long listxattr(Ino ino, char* list, std::size_t size);
    int setxattr(Ino ino);
    int removexattr(Ino ino);
    int statfs(struct statvfs* st);

    // Compares the storage file with the one last read and shows what changed
    // outside this mount (called by the methods above where a partition's name
    // or inode is looked at; public for a watcher and for tests).
    void check_outside();
    // For the watcher thread (woken by inotify on the storage's directory, and
    // at least every 250 ms): shows an outside change if there is one (it
    // waits for a commit in progress), and returns the partition file names
    // given a new inode since the last call, for the kernel to forget
    // (fuse_lowlevel_notify_inval_entry; called with no lock held).
    std::vector<std::string> watch_step();
    // Locks all secrets and contents in memory again (after daemonising).
    void relock();
    // At unmount: commits what changed and holds JSON; keeps the rest as the
    // partition's draft (or drops a draft whose file was removed); names the
    // scratch files that vanish. Idempotent.
    void finish();
    // What `shamirfs status` shows (the root's user.shamirfs.status): JSON.
    std::string status();
    // -o idle: seconds since the last request, and whether a file is open.
    void touch();
    double idle_seconds() const;
    bool has_open_files() const;
    bool finished() const { return finished_; }
    // A commit is being written (its text taken: a write now goes to a copy).
    bool commit_running() const { return commit_running_; }

    struct Node;
    struct Handle;

private:
    struct PartState {
        std::string committed_hash;             // of the committed document
        std::optional<std::string> draft_hash;  // of the draft kept in the storage
        std::string refusal;                    // why the last commit was refused ("" after a commit)
        std::string note;                       // what the last commit replaced (last writer wins), if anything
        std::string vanished;                   // why the storage no longer opens this partition ("" while it does)
        bool stale_base = false;                // the text being edited predates an outside commit
        bool outside_unread = false;            // an outside commit is shown, and nobody read it here since
        struct timespec refused_at {}, committed_at{};
    };
    // A commit prepared under the tree lock and run without it.
    struct CommitJob {
        std::size_t part = 0;
        std::shared_ptr<const SecureBuffer> text;  // the node's buffer, shared (copy-on-write)
        std::size_t size = 0;
        std::string hash;
        std::shared_ptr<Node> node;
    };
    using Lock = std::unique_lock<std::mutex>;

    std::shared_ptr<Node> node(Ino ino) const;
    std::shared_ptr<Node> child(const Node& dir, const std::string& name) const;
    // The directory `parent` and its entry `name` (lookup, rmdir, unlink, a
    // rename's source): 0, or the errno.
    int existing(Ino parent, const std::string& name, std::shared_ptr<Node>& dir, std::shared_ptr<Node>& n) const;
    // The directory `parent`, where a new `name` may be made (mkdir, create,
    // symlink): 0, or the errno.
    int place_for(Ino parent, const std::string& name, std::shared_ptr<Node>& dir) const;
    std::shared_ptr<Node> new_node(mode_t mode, uid_t uid, gid_t gid);
    void link(Node& dir, const std::string& name, const std::shared_ptr<Node>& n);
    void unlink_node(Node& dir, const std::string& name);
    void drop_if_unused(const std::shared_ptr<Node>& n);
    Entry entry_of(const std::shared_ptr<Node>& n);  // counts a lookup
    double timeout_of(const Node& n) const;      // how long the kernel may keep its name and attributes
    bool changes_outside(const Node& n) const;   // the root, a document or a draft
    int partition_index(const Node& dir, const std::string& name) const;  // -1 for scratch names
    int partition_of(const std::shared_ptr<Node>& n) const;
    std::shared_ptr<Node> document(std::size_t part) const;
    void fill_stat(const Node& n, struct stat* st) const;
    // New bytes read as zeros, except those from `written_from` on, which the
    // caller writes at once (a write past the end zeroes only the gap).
    int resize(Node& n, std::size_t size, std::size_t written_from = SIZE_MAX);
    int charge(std::size_t bytes);
    Handle* handle(std::uint64_t fh);

    // Commits: prepare (tree lock held), run (released; takes the storage
    // lock), record (tree lock taken again). `commit` does all three; the
    // caller holds `tree`, which is released and taken again.
    std::optional<CommitJob> prepare_commit(const std::shared_ptr<Node>& n, int part);
    int commit(Lock& tree, const std::shared_ptr<Node>& n, int part, const char* why);
    int commit_handle(Lock& tree, std::uint64_t fh, const char* why);
    // The storage read again, partition by partition; storage lock held.
    void refresh(Lock& storage);
    // Conflict copies beside the storage (a sync engine's): logged when they
    // change, merged with -o automerge. Looked for once a second at most.
    void check_conflict_copies(Lock& storage);

    std::string draft_name(std::size_t part) const;
    std::shared_ptr<Node> draft_node(std::size_t part) const;
    std::vector<const Partition*> others(std::size_t part) const;
    std::vector<std::pair<std::string, std::size_t>> scratch_files() const;
    std::string error_of(const std::shared_ptr<Node>& n) const;

    Store& store_;
    std::vector<MountedPartition> parts_;
    std::vector<PartState> state_;
    FsOptions opt_;
    std::mutex storage_mu_;  // the Store: commits, drafts and reads of the file (before tree_mu_)
    mutable std::mutex tree_mu_;
    std::atomic<bool> commit_running_{false};  // checks for outside changes do not wait for it
    bool force_refresh_ = false;  // a commit here was laid over another writer's: read the others again
    std::chrono::steady_clock::time_point copies_checked_{};
    std::vector<std::string> replaced_names_;  // documents given a new inode, for watch_step (tree lock)
    std::vector<std::string> copies_;  // conflict copies last seen (and, with automerge, merged as far as they go)
    std::size_t memory_used_ = 0;  // declared before the nodes: they update it when destroyed
    std::shared_ptr<Node> root_;
    std::unordered_map<Ino, std::shared_ptr<Node>> inodes_;  // linked or looked up
    std::map<std::uint64_t, std::unique_ptr<Handle>> handles_;
    std::uint64_t next_fh_ = 1;
    Ino next_ino_ = kRootIno + 1;
    std::atomic<bool> finished_{false};
    std::atomic<std::int64_t> last_use_ns_{0};  // steady clock
};

}  // namespace shamirfs::fs
