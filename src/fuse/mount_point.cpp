#include "mount_point.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "shamirfs/log.hpp"

namespace shamirfs::fs {
namespace {

constexpr const char* kModeXattr = "user.shamirfs.mountpoint_mode";

// /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

bool is_mount_point(const std::string& dir) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, point;
        if (fields >> id >> parent >> devno >> root >> point && unescape(point) == dir) return true;
    }
    return false;
}

bool is_empty_dir(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return true;  // (unreadable: the mount itself says why)
    bool empty = true;
    while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
    ::closedir(d);
    return empty;
}

int get_flags(int fd) {
    int flags = 0;
    return ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 ? flags : -1;
}

void set_immutable(int fd, bool on) {
    int flags = get_flags(fd);
    if (flags < 0 || static_cast<bool>(flags & FS_IMMUTABLE_FL) == on) return;
    flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
    ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
}

}  // namespace

void check_mount_point(const std::string& mountpoint, const std::string& storage, bool nonempty) {
    if (is_mount_point(mountpoint))
        throw MountPointRefused(mountpoint + " is already a mount point; unmount it first (fusermount3 -u " + mountpoint +
                                ") or choose another directory");
    const std::string prefix = mountpoint == "/" ? "/" : mountpoint + "/";
    if (storage.rfind(prefix, 0) == 0)
        throw MountPointRefused("the storage " + storage + " is inside the mount point " + mountpoint +
                                ", where the mount would hide it; mount on a directory outside the storage's directory");
    if (!nonempty && !is_empty_dir(mountpoint))
        throw MountPointRefused(mountpoint + " is not empty, and the mount would hide its files; use an empty directory, or -o nonempty");
}

MountPointGuard::MountPointGuard(const std::string& dir) : dir_(dir) {
    // A mount that ended without restoring the directory left its mode in an
    // attribute: set it back first.
    // (Its owner reads the attribute of a mode 0 directory only after giving
    // itself access; root reads it whatever the mode.)
    struct stat st{};
    const bool opened_up = ::stat(dir.c_str(), &st) == 0 && (st.st_mode & 07777) == 0 && ::geteuid() != 0 &&
                           st.st_uid == ::geteuid() && ::chmod(dir.c_str(), 0700) == 0;
    char saved[16] = {};
    if (::getxattr(dir.c_str(), kModeXattr, saved, sizeof(saved) - 1) > 0) {
        int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            set_immutable(fd, false);  // (root's: the mode cannot change before)
            ::fchmod(fd, static_cast<mode_t>(std::strtoul(saved, nullptr, 8) & 07777));
            ::fremovexattr(fd, kModeXattr);
            ::close(fd);
            log::info("set the mount point's mode back after a mount that did not end cleanly");
        }
    } else if (opened_up) {
        ::chmod(dir.c_str(), 0);  // a mode 0 directory of its own making
    }
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ >= 0 && ::fstat(fd_, &st) == 0) mode_ = st.st_mode & 07777;
}

MountPointGuard::~MountPointGuard() {
    restore();
    if (fd_ >= 0) ::close(fd_);
}

std::string MountPointGuard::protect() {
    if (fd_ < 0) return "cannot open " + dir_;
    char saved[16];
    std::snprintf(saved, sizeof(saved), "%o", mode_);
    if (::fsetxattr(fd_, kModeXattr, saved, std::strlen(saved), 0) != 0)
        return std::string("cannot keep its mode in an extended attribute: ") + std::strerror(errno);
    if (::fchmod(fd_, 0) != 0) {
        const int e = errno;
        ::fremovexattr(fd_, kModeXattr);
        return std::string("cannot change its mode: ") + std::strerror(e);
    }
    protected_ = true;
    if (::geteuid() == 0) set_immutable(fd_, true);  // root passes over modes, not over this flag
    return "";
}

void MountPointGuard::restore() {
    if (!protected_) return;
    protected_ = false;
    set_immutable(fd_, false);
    ::fchmod(fd_, static_cast<mode_t>(mode_));
    ::fremovexattr(fd_, kModeXattr);
}

}  // namespace shamirfs::fs
