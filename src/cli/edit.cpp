// shamirfs edit: the document in $VISUAL/$EDITOR, for machines without FUSE,
// as sops edit does. The text lives only in a private directory of a
// memory-backed file system ($XDG_RUNTIME_DIR, else /dev/shm), which is wiped
// and removed on every way out; invalid JSON reopens the editor with the error
// shown, and a text left invalid is kept as the partition's draft.
#include "edit.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/credentials.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/json_check.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs::cli {
namespace {

// The scratch directory, for the signal handler (which may only unlink).
char g_dir[4096];
char g_file[4096 + 16];

bool memory_backed(const std::string& dir) {
    struct statfs fs{};
    return ::statfs(dir.c_str(), &fs) == 0 &&
           (static_cast<unsigned long>(fs.f_type) == TMPFS_MAGIC || static_cast<unsigned long>(fs.f_type) == RAMFS_MAGIC);
}

// Overwrites and removes every file in the directory (the editor's swap and
// backup files too), then the directory.
void wipe_dir(const char* dir) {
    if (DIR* d = ::opendir(dir)) {
        while (dirent* e = ::readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            std::string path = std::string(dir) + "/" + e->d_name;
            int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
            struct stat st{};
            if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                static const char zeros[4096] = {};
                for (off_t off = 0; off < st.st_size; off += sizeof(zeros))
                    if (::pwrite(fd, zeros, sizeof(zeros), off) < 0) break;
            }
            if (fd >= 0) ::close(fd);
            ::unlink(path.c_str());
        }
        ::closedir(d);
    }
    ::rmdir(dir);
}

extern "C" void on_signal(int sig) {
    // Async-signal-safe: the document file goes; the rest follows the same way.
    ::unlink(g_file);
    ::rmdir(g_dir);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

class ScratchDir {
public:
    ScratchDir() {
        std::string base;
        for (const char* c : {static_cast<const char*>(std::getenv("XDG_RUNTIME_DIR")), "/dev/shm"})
            if (c && *c && memory_backed(c)) {
                base = c;
                break;
            }
        if (base.empty())
            throw Error(Errc::io, "no memory-backed directory for the text ($XDG_RUNTIME_DIR or /dev/shm on tmpfs); "
                                  "shamirfs edit does not put plaintext on a disk");
        std::string tmpl = base + "/shamirfs-edit-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw_errno("cannot make a directory in " + base, errno);
        dir_ = tmpl;
        file_ = dir_ + "/document.json";
        std::snprintf(g_dir, sizeof(g_dir), "%s", dir_.c_str());
        std::snprintf(g_file, sizeof(g_file), "%s", file_.c_str());
        for (int sig : {SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, on_signal);
    }
    ~ScratchDir() {
        wipe_dir(dir_.c_str());
        for (int sig : {SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, SIG_DFL);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    const std::string& file() const { return file_; }

private:
    std::string dir_, file_;
};

void write_text(const std::string& path, std::span<const std::uint8_t> text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) throw_errno("cannot write " + path, errno);
    try {
        write_all(fd, std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), path);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
}

// Runs the editor on the file and waits for it (SIGINT goes to the editor,
// which shares the terminal; this process waits).
void run_editor(const std::string& file) {
    const char* editor = std::getenv("VISUAL");
    if (!editor || !*editor) editor = std::getenv("EDITOR");
    if (!editor || !*editor) editor = "vi";
    struct sigaction ignore{}, old_int{}, old_quit{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGINT, &ignore, &old_int);
    ::sigaction(SIGQUIT, &ignore, &old_quit);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::sigaction(SIGINT, &old_int, nullptr);
        ::sigaction(SIGQUIT, &old_quit, nullptr);
        const std::string cmd = std::string(editor) + " \"$1\"";
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), "sh", file.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGQUIT, &old_quit, nullptr);
    if (pid < 0) throw_errno("cannot start the editor", errno);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error(Errc::usage, std::string("the editor (") + editor + ") failed; nothing was committed");
}

}  // namespace

int edit_document(Store& store, const Partition& p, std::span<const Partition* const> keep) {
    codec::Opened opened = store.open(p);
    ScratchDir scratch;
    // A kept draft is what was being written last: edit that.
    const SecureBuffer& start = opened.draft ? *opened.draft : opened.document;
    if (opened.draft) std::cerr << "shamirfs: editing the draft kept for this partition (a text that was not committed)\n";
    write_text(scratch.file(), start.bytes());
    std::optional<std::string> last_invalid;
    for (;;) {
        run_editor(scratch.file());
        SecureBuffer text = read_document(scratch.file());
        if (text.view() == opened.document.view() && !opened.draft) {
            std::cerr << "shamirfs: no change; nothing committed\n";
            return 0;
        }
        JsonVerdict v = check_json(text.view());
        if (v.ok) {
            CommitResult r = store.commit(p, text.bytes(), keep);
            std::cerr << "shamirfs: committed " << r.document_bytes << " bytes\n";
            return 0;
        }
        const std::string hash = content_hash(text.view());
        if (last_invalid == hash) {
            // Closed again without a change: kept, sealed, not lost.
            store.save_draft(p, text.bytes(), keep);
            throw Error(Errc::invalid_json, "the text is still not valid JSON (" + v.message +
                                                "); it is kept as the partition's draft (shamirfs cat --draft; "
                                                "shamirfs edit opens it again)");
        }
        last_invalid = hash;
        std::cerr << "shamirfs: not valid JSON: " << v.message
                  << "\nshamirfs: the editor opens again; close it without a change to keep the text as a draft\n";
    }
}

}  // namespace shamirfs::cli
