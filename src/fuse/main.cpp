// mount.shamirfs: unlocks partitions of a storage and mounts them as a FUSE
// file system. Runs as mount(8)'s helper and directly. Exit codes as shamirfs(1).
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <set>
#include <thread>

#include "common/credentials.hpp"
#include "common/exit_codes.hpp"
#include "common/labels.hpp"
#include "fuse_ops.hpp"
#include "memfs.hpp"
#include "mount_options.hpp"
#include "mount_point.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/keys.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/store.hpp"

using namespace shamirfs;

namespace {

const char* kUsage =
    "usage: mount.shamirfs STORAGE MOUNTPOINT [--foreground] [-d] [-v] [-f] [-N NS] [-o OPTIONS]\n"
    "options: keyfile=FILE, passfile=FILE (pair in order, repeatable), extpass=CMD, label=NAME,\n"
    "         ro, allow_other, uid=N, gid=N, umask=OCTAL, memory_max=BYTES, idle=DURATION,\n"
    "         nonempty, automerge, foreground\n"
    "-f: mount(8)'s fake mount (nothing is done). -N: mount in that mount namespace.\n"
    "Without keyfile= it asks for a partition map key and a password, then for more\n"
    "partitions until an empty key. See mount.shamirfs(8).\n";

std::string absolute(const std::string& path, bool must_be_dir) {
    char buf[PATH_MAX];
    if (::realpath(path.c_str(), buf) == nullptr) {
        if (errno == ENOTCONN)
            throw fs::MountPointRefused(path + " is a mount whose daemon has ended; unmount it first (fusermount3 -u " +
                                        path + ")");
        throw_errno("cannot find " + path, errno);
    }
    struct stat st{};
    if (must_be_dir && (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)))
        throw Error(Errc::usage, path + " is not a directory");
    return buf;
}

// fuse_opt escapes: ',' and '\' inside a value.
std::string escape_option(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == ',' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

// Said on the terminal, before the daemon leaves it: a log line alone goes to
// syslog, which an ordinary user does not read (and many machines lack).
void warn_if_not_locked() {
    if (!memory_lock_failed()) return;
    struct rlimit ml{};
    ::getrlimit(RLIMIT_MEMLOCK, &ml);
    std::cerr << "mount.shamirfs: warning: the documents could not all be locked in memory (RLIMIT_MEMLOCK is "
              << (ml.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(ml.rlim_cur / 1024) + " KiB")
              << "), so they may be written to swap. Raise the limit (ulimit -l, or a memlock line in "
                 "/etc/security/limits.conf) or use encrypted swap.\n";
}

// mount -N: a PID's mount namespace, or a namespace file.
void enter_mount_namespace(const std::string& ns) {
    const bool pid = ns.find_first_not_of("0123456789") == std::string::npos;
    const std::string path = pid ? "/proc/" + ns + "/ns/mnt" : ns;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open the mount namespace " + path, errno);
    if (::setns(fd, CLONE_NEWNS) != 0) {
        const int e = errno;
        ::close(fd);
        throw_errno("cannot enter the mount namespace " + path, e);
    }
    ::close(fd);
}

// -o idle=: unmounts (as fusermount3 -u would) once nothing used the mount
// for that long and no file is open, like gocryptfs -idle.
std::thread idle_watch(fs::MemFs& memfs, unsigned long seconds, const std::string& mountpoint) {
    return std::thread([&memfs, seconds, mountpoint] {
        const auto step = std::chrono::milliseconds(std::clamp<unsigned long>(seconds * 250, 100, 5000));
        while (!memfs.finished()) {
            std::this_thread::sleep_for(step);
            if (memfs.idle_seconds() < static_cast<double>(seconds) || memfs.has_open_files()) continue;
            log::info("unmounting after " + std::to_string(seconds) + " s without use (-o idle)");
            pid_t pid = ::fork();
            if (pid == 0) {
                ::execlp("fusermount3", "fusermount3", "-u", "-q", mountpoint.c_str(), static_cast<char*>(nullptr));
                ::_exit(127);
            }
            int status = 0;
            if (pid > 0) ::waitpid(pid, &status, 0);
            if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
            log::debug("the idle unmount failed (busy?); trying again later");
        }
    });
}

// Outside changes: inotify on the storage's directory wakes this thread at
// once (a commit or a sync tool's rename there), and it looks at least every
// 250 ms anyway (file systems without inotify events); names given a new
// inode are forgotten by the kernel, with no lock held (libfuse's rule for
// notifications).
std::thread outside_watch(fs::MemFs& memfs, fuse_session* se, const std::string& storage) {
    return std::thread([&memfs, se, storage] {
        const std::string dir = storage.substr(0, storage.rfind('/') + 1);
        int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (in >= 0 && ::inotify_add_watch(in, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_ATTRIB) < 0) {
            ::close(in);
            in = -1;
        }
        alignas(inotify_event) char buf[4096];
        while (!memfs.finished()) {
            if (in >= 0) {
                pollfd p{in, POLLIN, 0};
                ::poll(&p, 1, 250);
                while (::read(in, buf, sizeof(buf)) > 0) {}  // (every round looks at the storage anyway)
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(250));
            }
            for (const auto& name : memfs.watch_step())
                fuse_lowlevel_notify_inval_entry(se, FUSE_ROOT_ID, name.c_str(), name.size());
        }
        if (in >= 0) ::close(in);
    });
}

// The partitions the credentials open, with their documents and drafts.
struct Unlocked {
    std::vector<fs::MountedPartition> parts;
    std::vector<SecureBuffer> docs;
    std::vector<std::optional<SecureBuffer>> drafts;
};

Unlocked unlock_partitions(Store& store, const fs::MountArgs& a, const std::string& storage) {
    Unlocked u;
    std::set<std::string> labels;
    // The file is named after the label sealed in the partition (format 2),
    // whatever order the keys come in; -o label= overrides it.
    auto add = [&](MapKey key, const SecureBuffer& password, std::string label, bool explicit_label) {
        Partition p = store.unlock(key, password.view());
        for (const auto& other : u.parts)
            if (other.partition.slot == p.slot) throw Error(Errc::usage, "the same partition is given twice");
        codec::Meta meta;
        codec::Opened opened = store.open(p, &meta);
        if (!explicit_label && !meta.label.empty()) label = meta.label;
        cli::check_label(label);
        if (!labels.insert(label).second) throw Error(Errc::usage, "label \"" + label + "\" is given twice");
        u.docs.push_back(std::move(opened.document));
        u.drafts.push_back(std::move(opened.draft));
        u.parts.push_back({label, std::move(p)});
    };
    auto label_at = [&](std::size_t i, const std::string& fallback) { return i < a.labels.size() ? a.labels[i] : fallback; };
    // `label` is what is known before the password opens the partition (its
    // sealed label is known only after): -o label=, the key file's name, or
    // the label in a pasted key line; "" if none.
    auto password_for = [&](std::size_t i, const std::string& label) {
        if (i < a.passfiles.size()) return cli::read_secret_file(a.passfiles[i], "password file");
        if (!a.extpass.empty()) return cli::run_extpass(a.extpass, label, storage);
        return cli::prompt_secret(label.empty() ? "Password for this partition: " : "Password for partition " + label + ": ",
                                  "use -o passfile=FILE or -o extpass=CMD");
    };
    if (!a.keyfiles.empty()) {
        for (std::size_t i = 0; i < a.keyfiles.size(); ++i) {
            SecureBuffer text = cli::read_secret_file(a.keyfiles[i], "key file");
            const std::string known = label_at(i, cli::label_before_unlock(a.keyfiles[i], text.view()));
            MapKey key = parse_map_key(text.view());
            add(std::move(key), password_for(i, known), known.empty() ? cli::default_label(static_cast<unsigned>(i)) : known,
                i < a.labels.size());
        }
    } else {
        // The key is echoed (it is not a password) or may be a key file's
        // path; a wrong key or password is asked again, keeping what was
        // unlocked so far.
        for (std::size_t i = 0;; ++i) {
            std::string prompt = i == 0 ? "Key for the first partition (or its key file): "
                                        : "Key for the next partition (empty to finish): ";
            SecureBuffer text = cli::prompt_key(prompt, "use -o keyfile=FILE");
            if (text.empty()) break;
            std::string known = label_at(i, cli::label_in_key_line(text.view()));
            for (int attempt = 1;; ++attempt) {
                try {
                    MapKey key = parse_map_key(text.view());
                    add(std::move(key), password_for(i, known),
                        known.empty() ? cli::default_label(static_cast<unsigned>(i)) : known, i < a.labels.size());
                    break;
                } catch (const Error& e) {
                    if ((e.code() != Errc::auth_failed && e.code() != Errc::malformed_key) || attempt == 3 ||
                        !a.extpass.empty())
                        throw;
                    std::cerr << "mount.shamirfs: " << e.what() << "; again\n";
                    text = cli::prompt_key(prompt, "use -o keyfile=FILE");
                    if (text.empty()) throw;
                    known = label_at(i, cli::label_in_key_line(text.view()));
                }
            }
        }
    }
    if (u.parts.empty()) throw Error(Errc::usage, "nothing to mount: no partition was unlocked");
    return u;
}

// libfuse's session, mount and signal handlers, undone in reverse order
// whatever happens after they were set up.
class FuseMount {
public:
    FuseMount(fs::MemFs& memfs, const fs::MountArgs& a, const std::string& storage, const std::string& mountpoint,
              const char* argv0) {
        try {
            set_up(memfs, a, storage, mountpoint, argv0);
        } catch (...) {
            close();
            throw;
        }
    }
    ~FuseMount() { close(); }
    FuseMount(const FuseMount&) = delete;
    FuseMount& operator=(const FuseMount&) = delete;

    fuse_session* session() const { return se_; }

    // Serves requests until unmounted or signalled; true for a clean end
    // (unmount, SIGTERM, SIGINT or SIGHUP).
    bool serve() {
        // Several threads take requests (MemFs lets them run side by side,
        // except that commits go one at a time): a request is picked up by a
        // thread already waiting for it. Two idle threads are kept; more would
        // only hold memory.
        fuse_loop_config loop{};
        loop.clone_fd = 0;
        loop.max_idle_threads = 2;
        const int rc = fuse_session_loop_mt(se_, &loop);
        return rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP;
    }

private:
    void set_up(fs::MemFs& memfs, const fs::MountArgs& a, const std::string& storage, const std::string& mountpoint,
                const char* argv0) {
        std::string opts = "fsname=" + escape_option(storage) + ",subtype=shamirfs";
        for (const auto& k : a.kernel_options) opts += "," + k;
        fuse_args args = FUSE_ARGS_INIT(0, nullptr);
        fuse_opt_add_arg(&args, argv0);
        fuse_opt_add_arg(&args, "-o");
        fuse_opt_add_arg(&args, opts.c_str());
        if (a.debug) fuse_opt_add_arg(&args, "-d");
        se_ = fuse_session_new(&args, &fs::operations(), sizeof(fuse_lowlevel_ops), &memfs);
        fuse_opt_free_args(&args);
        if (se_ == nullptr) throw Error(Errc::usage, "cannot set up FUSE with options " + opts);
        if (fuse_session_mount(se_, mountpoint.c_str()) != 0)
            throw Error(Errc::io, "cannot mount on " + mountpoint + " (is /dev/fuse usable and fusermount3 installed?)");
        mounted_ = true;
        if (fuse_set_signal_handlers(se_) != 0)
            throw Error(Errc::io, "cannot install the signal handlers that unmount on SIGTERM and SIGINT");
        handlers_ = true;
    }
    void close() {
        if (handlers_) fuse_remove_signal_handlers(se_);
        if (mounted_) fuse_session_unmount(se_);
        if (se_) fuse_session_destroy(se_);
        handlers_ = mounted_ = false;
        se_ = nullptr;
    }

    fuse_session* se_ = nullptr;
    bool mounted_ = false, handlers_ = false;
};

// Where locking costs nothing and cannot fail later (root, or no limit), lock
// everything, libfuse's request buffers included; else SecureBuffers only.
// Every mapping is either current or future when mlockall runs, so it may run
// beside the loop's first requests (it takes ~0.4 ms, a third of what follows
// the KDF).
std::thread lock_all_memory() {
    struct rlimit ml{};
    if (::geteuid() != 0 && !(::getrlimit(RLIMIT_MEMLOCK, &ml) == 0 && ml.rlim_cur == RLIM_INFINITY)) return {};
    return std::thread([] {
        if (::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) log::warn("mlockall failed; secrets stay in locked buffers only");
    });
}

int run(int argc, char** argv) {
    fs::MountArgs a = fs::parse_mount_args(argc, argv);
    if (a.help) {
        std::cout << kUsage;
        return exit_code::ok;
    }
    if (a.version) {
        std::cout << "mount.shamirfs 0.1.0 (storage format " << kFormatVersion << ")\n";
        return exit_code::ok;
    }
    if (a.verbose || a.debug) log::set_level(log::Level::debug);
    if (a.fake) return exit_code::ok;  // mount -f: everything but the mount, and there is nothing else
    if (!a.mount_namespace.empty()) enter_mount_namespace(a.mount_namespace);
    const std::string storage = absolute(a.storage, false);
    const std::string mountpoint = absolute(a.mountpoint, true);
    // Before anyone types: a mount point that would stack, hide files or
    // deadlock is refused, and a crashed mount's protection is undone.
    fs::check_mount_point(mountpoint, storage, a.nonempty);
    fs::MountPointGuard guard(mountpoint);

    Store store(storage);
    store.recover();
    // Before prompting, the storage is read (a bad file is told before anyone
    // types); with every credential from files or extpass it is read while the
    // first KDF runs.
    if (a.keyfiles.empty() || (a.passfiles.size() < a.keyfiles.size() && a.extpass.empty())) store.load();
    Unlocked u = unlock_partitions(store, a, storage);
    if (store.matrix().params().mode == StorageMode::deniable && !a.read_only)
        std::cerr << "mount.shamirfs: deniable storage: every save rewrites every slot; the " << u.parts.size()
                  << " partition(s) unlocked in this mount are kept, every other partition is ERASED at the first save\n";

    struct stat st{};
    ::stat(storage.c_str(), &st);
    fs::FsOptions fo;
    fo.uid = a.uid.value_or(::getuid());
    fo.gid = a.gid.value_or(::getgid());
    fo.umask = a.umask;
    fo.memory_max = a.memory_max;
    fo.automerge = a.automerge;
    fs::MemFs memfs(store, std::move(u.parts), std::move(u.docs), std::move(u.drafts), fo, st.st_mtim);

    bool clean;
    {
        FuseMount mount(memfs, a, storage, mountpoint, argv[0]);
        log::info("mounted " + storage + " on " + mountpoint);
        if (std::string why = guard.protect(); !why.empty())
            std::cerr << "mount.shamirfs: warning: the directory under the mount could not be made unwritable (" << why
                      << "): after a lazy unmount (umount -l) an editor still open could save its text there in plain\n";
        warn_if_not_locked();
        if (fuse_daemonize(a.foreground ? 1 : 0) != 0) log::warn("could not run in the background");
        if (!a.foreground) {
            log::use_syslog("mount.shamirfs");
            memfs.relock();  // fork(2) does not pass memory locks on to the child
        }
        std::thread locker = lock_all_memory();
        std::thread idle;
        if (a.idle_seconds) idle = idle_watch(memfs, a.idle_seconds, mountpoint);
        std::thread watch = outside_watch(memfs, mount.session(), storage);
        clean = mount.serve();
        memfs.finish();  // commit what holds JSON, keep the rest as drafts (and the watchers end)
        if (idle.joinable()) idle.join();
        watch.join();
        if (locker.joinable()) locker.join();
    }
    log::info("unmounted " + mountpoint);
    return clean ? exit_code::ok : exit_code::io;
}

}  // namespace

int main(int argc, char** argv) {
    // A core dump would hold keys and documents.
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    try {
        return run(argc, argv);
    } catch (const fs::MountPointRefused& e) {
        std::cerr << "mount.shamirfs: " << e.what() << "\n";
        return exit_code::mount_point;
    } catch (const Error& e) {
        std::cerr << "mount.shamirfs: " << e.what() << "\n";
        if (e.code() == Errc::usage) std::cerr << "(mount.shamirfs --help for usage)\n";
        return exit_for(e.code());
    } catch (const std::bad_alloc&) {
        std::cerr << "mount.shamirfs: out of memory: the storage or documents are too large for the memory this "
                     "process may use (ulimit -v, cgroup limits)\n";
        return exit_code::too_large;
    } catch (const std::exception& e) {
        std::cerr << "mount.shamirfs: internal error: " << e.what() << "\n";
        return exit_code::internal;
    }
}
