// The mounted file system, independent of libfuse: a flat directory of
// in-memory files (contents in libsodium locked memory). Files linked at a
// partition's name ("<label>.json") are that partition's document: their
// content is committed through the Store at the commit points. A text that
// could not be committed is kept as the partition's draft at unmount (sealed
// in the storage) and shows again as "<label>.draft.json"; saving valid JSON
// to the document or removing the draft file drops it. Every other name is a
// scratch file that lives in memory only. Every method returns 0 or
// a byte count on success and -errno on failure; no exception leaves it.
// Not thread-safe: the FUSE adapters call it one request at a time.
#pragma once
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shamirfs/secure_buffer.hpp"
#include "shamirfs/store.hpp"

namespace shamirfs::fs {

struct FsOptions {
    uid_t uid = 0;
    gid_t gid = 0;
    mode_t umask = 077;                            // partition files 0666 & ~umask, root 0777 & ~umask
    std::size_t memory_max = std::size_t{1} << 30;  // all file contents together (ENOSPC beyond)
};

struct MountedPartition {
    std::string label;
    Partition partition;
};

class MemFs {
public:
    // `documents[i]` is the committed document of `partitions[i]`, `drafts[i]`
    // the draft kept beside it, if any.
    MemFs(Store& store, std::vector<MountedPartition> partitions, std::vector<SecureBuffer> documents,
          std::vector<std::optional<SecureBuffer>> drafts, FsOptions options, struct timespec mtime);
    ~MemFs();

    int getattr(const char* path, std::uint64_t fh, struct stat* st);
    int list(std::vector<std::pair<std::string, struct stat>>& out);
    int create(const char* path, mode_t mode, int flags, uid_t uid, gid_t gid, std::uint64_t* fh);
    int open(const char* path, int flags, std::uint64_t* fh);
    long read(std::uint64_t fh, char* buf, std::size_t size, off_t offset);
    long write(std::uint64_t fh, const char* buf, std::size_t size, off_t offset);
    int truncate(const char* path, std::uint64_t fh, off_t size);
    int flush(std::uint64_t fh);
    int fsync(std::uint64_t fh);
    int release(std::uint64_t fh);
    int unlink(const char* path);
    int rename(const char* from, const char* to, unsigned flags);
    int symlink(const char* target, const char* path, uid_t uid, gid_t gid);
    int readlink(const char* path, char* buf, std::size_t size);
    int chmod(const char* path, std::uint64_t fh, mode_t mode);
    int chown(const char* path, std::uint64_t fh, uid_t uid, gid_t gid, uid_t caller);
    int utimens(const char* path, std::uint64_t fh, const struct timespec tv[2]);
    long getxattr(const char* path, const char* name, char* value, std::size_t size);
    long listxattr(const char* path, char* list, std::size_t size);
    int setxattr(const char* path, const char* name);
    int removexattr(const char* path, const char* name);
    int statfs(struct statvfs* st);
    // Locks all secrets and contents in memory again (after daemonising).
    void relock();
    // At unmount: commits what changed and holds JSON; keeps the rest as the
    // partition's draft (or drops a draft whose file was removed); names the
    // scratch files that vanish. Idempotent.
    void finish();
    // What `shamirfs status` shows (the root's user.shamirfs.status): JSON.
    std::string status() const;

    struct Node;
    struct Handle;

private:
    std::shared_ptr<Node> lookup(const char* path, int* err);
    std::shared_ptr<Node> node_of(const char* path, std::uint64_t fh, int* err);
    Handle* handle(std::uint64_t fh);
    int partition_index(const std::string& name) const;  // -1 for scratch names
    int partition_of(const std::shared_ptr<Node>& n) const;
    int commit(const std::shared_ptr<Node>& n, int part, const char* why);
    // fsync and close: commit what this handle wrote, if it is at a document's name.
    int commit_handle(std::uint64_t fh, const char* why);
    void fill_stat(const Node& n, struct stat* st) const;
    int resize(Node& n, std::size_t size);

    // The draft of partition i: the file "<label>.draft.json", if there is one.
    std::string draft_name(std::size_t part) const;
    std::shared_ptr<Node> draft_node(std::size_t part) const;
    std::vector<const Partition*> others(std::size_t part) const;
    std::vector<std::pair<std::string, std::size_t>> scratch_files() const;
    std::string error_of(const std::shared_ptr<Node>& n) const;

    struct PartState {
        std::string committed_hash;                 // of the committed document
        std::optional<std::string> draft_hash;      // of the draft kept in the storage
        std::string refusal;                        // why the last commit was refused ("" after a commit)
        struct timespec refused_at {}, committed_at{};
    };
    Store& store_;
    std::vector<MountedPartition> parts_;
    std::vector<PartState> state_;
    FsOptions opt_;
    std::shared_ptr<Node> root_;  // the directory itself: attributes only
    std::size_t memory_used_ = 0;  // declared before the nodes: they update it when destroyed
    std::map<std::string, std::shared_ptr<Node>> entries_;
    std::map<std::uint64_t, std::unique_ptr<Handle>> handles_;
    std::uint64_t next_fh_ = 1, next_ino_ = 2;
    bool finished_ = false;
};

}  // namespace shamirfs::fs
