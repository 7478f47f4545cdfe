// The mount point: checks before mounting, and a guard that keeps editors
// from writing plaintext into it after a lazy unmount.
#pragma once
#include <stdexcept>
#include <string>

namespace shamirfs::fs {

// A mount point that must not be used; its message names the fix
// (exit status 15, mount.shamirfs(8)).
struct MountPointRefused : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Refuses a directory that is already a mount point, that is not empty
// (unless `nonempty`), or that contains the storage (its own directory or
// any directory above it). Both paths are absolute and resolved.
void check_mount_point(const std::string& mountpoint, const std::string& storage, bool nonempty);

// The directory under the mount, made unwritable while mounted (mode 0, and
// immutable where the caller may set that, which root's bypass of permissions
// needs): after a lazy unmount an editor still running cannot write its text
// there. The original mode is kept in an extended attribute of the directory
// so that the next mount sets it right after a crash. Open it before
// mounting, protect() after.
class MountPointGuard {
public:
    // Opens the directory and undoes what a crashed mount left on it.
    explicit MountPointGuard(const std::string& dir);
    ~MountPointGuard();
    MountPointGuard(const MountPointGuard&) = delete;
    MountPointGuard& operator=(const MountPointGuard&) = delete;
    // Returns "" or why the directory could not be protected.
    std::string protect();
    void restore();

private:
    std::string dir_;
    int fd_ = -1;
    unsigned mode_ = 0;
    bool protected_ = false;
};

}  // namespace shamirfs::fs
