// Exit codes of shamirfs and mount.shamirfs: one constant each, mapped from
// the core's Errc here only, documented in shamirfs(1) and mount.shamirfs(8),
// never renumbered.
#pragma once
#include "shamirfs/error.hpp"

namespace exit_code {
constexpr int ok = 0;
constexpr int internal = 1;       // unexpected failure (a bug)
constexpr int usage = 2;          // bad command line or parameters
constexpr int io = 3;             // a file could not be read or written
constexpr int corrupt = 4;        // the storage file is invalid
constexpr int malformed_key = 5;  // the partition map key is malformed
constexpr int auth_failed = 6;    // wrong key or password, or no such partition
constexpr int damaged = 7;        // unlocked, but the data cannot be recovered
constexpr int invalid_json = 8;   // the new document is not valid JSON
constexpr int too_large = 9;      // a size limit was exceeded
constexpr int busy = 10;          // the storage is locked by another process
constexpr int no_space = 11;      // no space left on the device
constexpr int read_only = 12;     // the storage or its directory is not writable
constexpr int repaired = 13;      // fsck: damage was found and all of it repaired
constexpr int pending = 14;       // status: something is not committed yet (a draft, an unsaved text, scratch files)
constexpr int mount_point = 15;   // mount: the mount point is already a mount, not empty, or holds the storage
}  // namespace exit_code

inline int exit_for(shamirfs::Errc c) {
    using shamirfs::Errc;
    switch (c) {
    case Errc::internal: return exit_code::internal;
    case Errc::usage: return exit_code::usage;
    case Errc::io: return exit_code::io;
    case Errc::no_space: return exit_code::no_space;
    case Errc::corrupt: return exit_code::corrupt;
    case Errc::malformed_key: return exit_code::malformed_key;
    case Errc::auth_failed: return exit_code::auth_failed;
    case Errc::damaged: return exit_code::damaged;
    case Errc::invalid_json: return exit_code::invalid_json;
    case Errc::too_large: return exit_code::too_large;
    case Errc::busy: return exit_code::busy;
    case Errc::read_only: return exit_code::read_only;
    }
    return exit_code::internal;
}
