// Command line of mount.shamirfs, both run directly and as mount(8)'s helper
// ("STORAGE MOUNTPOINT [-sfnv] [-N ns] [-t type] [-o options]").
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace shamirfs::fs {

struct MountArgs {
    std::string storage, mountpoint;
    bool foreground = false, debug = false, verbose = false, help = false, version = false;
    bool fake = false;                 // -f from mount(8): do everything but mount
    std::string mount_namespace;       // -N: a PID or a path of a mount namespace to mount in
    unsigned long idle_seconds = 0;    // -o idle=DURATION: unmount after that long unused (0: never)
    std::vector<std::string> keyfiles, passfiles, labels;
    std::string extpass;
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    mode_t umask = 077;
    std::size_t memory_max = std::size_t{1} << 30;
    bool read_only = false;
    bool nonempty = false;  // mount over a directory that has files (hiding them)
    bool automerge = false;  // merge conflict copies of the storage into the mounted partitions
    std::vector<std::string> kernel_options;  // passed on to the FUSE mount
};

// Throws Error(usage) for unknown options (unless -s, "sloppy") or bad values.
MountArgs parse_mount_args(int argc, char** argv);

}  // namespace shamirfs::fs
