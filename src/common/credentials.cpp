#include "common/credentials.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <sodium.h>

#include "common/exit_codes.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"

namespace shamirfs::cli {
namespace {

// The longest password or key line, typed or read (shamirfs(1), CREDENTIALS).
constexpr std::size_t kMaxSecret = 4096;

// Reads everything from fd into locked memory, growing by copying (and wiping).
SecureBuffer read_fd(int fd, const std::string& what, std::size_t limit) {
    // A regular file is read into a buffer of its size (one more byte shows
    // that it did not grow); anything else into one that doubles as it fills.
    struct stat st{};
    std::size_t first = 64 * 1024;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0)
        first = std::min(limit, std::max<std::size_t>(static_cast<std::size_t>(st.st_size) + 1, 4096));
    SecureBuffer buf(first);
    std::size_t used = 0;
    for (;;) {
        if (used == buf.size()) {
            if (buf.size() >= limit) throw Error(Errc::too_large, what + " is too large");
            SecureBuffer bigger(std::min(limit, buf.size() * 2));
            std::memcpy(bigger.data(), buf.data(), used);
            buf = std::move(bigger);
        }
        ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + what, errno);
        }
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    buf.shrink(used);
    return buf;
}

// The first line of what fd holds (the rest is not kept; with `drain` it is
// read and dropped, so that a command writing more is not cut off), at most
// kMaxSecret bytes; Error(usage) if empty or longer.
SecureBuffer read_first_line(int fd, const std::string& what, bool drain) {
    SecureBuffer line(kMaxSecret + 1);
    std::size_t used = 0;
    bool ended = false;
    std::uint8_t scratch[4096];
    for (;;) {
        std::uint8_t* into = ended || used > kMaxSecret ? scratch : line.data() + used;
        const std::size_t room = ended || used > kMaxSecret ? sizeof(scratch) : line.size() - used;
        ssize_t n = ::read(fd, into, room);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot read " + what, errno);
        if (n == 0) break;
        if (into == scratch) {
            sodium_memzero(scratch, sizeof(scratch));
            continue;
        }
        const auto* nl = static_cast<const std::uint8_t*>(std::memchr(into, '\n', static_cast<std::size_t>(n)));
        used += nl ? static_cast<std::size_t>(nl - into) : static_cast<std::size_t>(n);
        if (nl) {
            ended = true;
            sodium_memzero(line.data() + used, line.size() - used);  // what followed the line
            if (!drain) break;
        }
        if (!ended && used > kMaxSecret && !drain) break;
    }
    if (used > kMaxSecret)
        throw Error(Errc::usage, what + ": its first line is longer than " + std::to_string(kMaxSecret) + " bytes");
    if (used > 0 && line.data()[used - 1] == '\r') --used;
    if (used == 0) throw Error(Errc::usage, what + " is empty");
    line.shrink(used);
    return line;
}

FileHandle open_to_read(const std::string& path, const std::string& what) {
    FileHandle f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.get() < 0) throw_errno("cannot open " + what + " " + path, errno);
    return f;
}

}  // namespace

SecureBuffer prompt_secret(const std::string& prompt, const std::string& hint_if_no_tty, bool echo) {
    int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) throw Error(Errc::usage, "no terminal to ask on: " + hint_if_no_tty);
    termios old{};
    bool is_tty = ::tcgetattr(fd, &old) == 0;
    if (is_tty && !echo) {
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        ::tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    (void)!::write(fd, prompt.data(), prompt.size());
    SecureBuffer line(kMaxSecret);
    std::size_t n = 0;
    bool too_long = false;
    char c;
    for (;;) {
        ssize_t r = ::read(fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || c == '\n') break;
        if (n < line.size()) line.data()[n++] = static_cast<std::uint8_t>(c);
        else too_long = true;  // read to the end of the line all the same
    }
    c = 0;
    if (is_tty && !echo) ::tcsetattr(fd, TCSAFLUSH, &old);
    ::close(fd);
    if (too_long) throw Error(Errc::usage, "what was typed is longer than " + std::to_string(kMaxSecret) + " bytes");
    if (n > 0 && line.data()[n - 1] == '\r') --n;
    line.shrink(n);
    return line;
}

SecureBuffer prompt_key(const std::string& prompt, const std::string& hint_if_no_tty) {
    SecureBuffer text = prompt_secret(prompt, hint_if_no_tty, true);
    const std::string_view v = text.view();
    struct stat st{};
    if (!v.empty() && v.find("sfk1-") == std::string_view::npos &&
        ::stat(std::string(v).c_str(), &st) == 0 && S_ISREG(st.st_mode))
        return read_secret_file(std::string(v), "key file");
    return text;
}

std::string label_in_key_line(std::string_view line) {
    const auto colon = line.find(": ");
    if (colon == std::string_view::npos || colon == 0 || line.find("sfk1-") < colon) return "";
    return std::string(line.substr(0, colon));
}

std::string label_before_unlock(const std::optional<std::string>& keyfile, std::string_view key_text) {
    std::string label = label_in_key_line(key_text);
    if (label.empty() && keyfile) {
        const auto slash = keyfile->rfind('/');
        std::string base = keyfile->substr(slash == std::string::npos ? 0 : slash + 1);
        if (base.size() > 4 && base.compare(base.size() - 4, 4, ".key") == 0) label = base.substr(0, base.size() - 4);
    }
    return label;
}

SecureBuffer read_secret_file(const std::string& path, const char* what) {
    return read_first_line(open_to_read(path, what).get(), std::string(what) + " " + path, false);
}

SecureBuffer read_secret_fd(int fd, const std::string& what) { return read_first_line(fd, what, true); }

SecureBuffer run_extpass(const std::string& command, const std::string& label, const std::string& storage) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) throw_errno("cannot run extpass", errno);
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("cannot run extpass", errno);
    if (pid == 0) {
        ::dup2(pipefd[1], 1);
        ::setenv("SHAMIRFS_LABEL", label.c_str(), 1);
        ::setenv("SHAMIRFS_STORAGE", storage.c_str(), 1);
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(pipefd[1]);
    SecureBuffer out;
    std::string error;
    try {
        out = read_secret_fd(pipefd[0], "the output of extpass");
    } catch (const Error& e) {
        error = e.what();
    }
    ::close(pipefd[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Error(Errc::usage, "the extpass command failed (" +
                                     (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                        : std::string("killed")) + ")");
    if (!error.empty()) throw Error(Errc::usage, error);
    return out;
}

constexpr std::size_t kMaxDocumentFile = std::size_t{1} << 30;

DocumentFile::DocumentFile(std::string path) : path_(std::move(path)) {
    if (!is_stdin()) file_ = open_to_read(path_, "document");
}

DocumentFile::~DocumentFile() {
    if (map_ != nullptr) ::munmap(map_, map_size_);
}

namespace {
// A mapped document cut short while it is read faults on the missing pages.
// Nothing is committed then (the commit's new file is not in place yet, and
// the next command rolls it back): say so and stop.
void on_sigbus(int) {
    static const char kMessage[] = "shamirfs: the document file was truncated while it was read; nothing was committed\n";
    (void)!::write(2, kMessage, sizeof(kMessage) - 1);
    ::_exit(exit_code::io);
}

bool same_file_state(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}
}  // namespace

std::span<const std::uint8_t> DocumentFile::bytes() {
    if (map_ != nullptr) return {static_cast<const std::uint8_t*>(map_), map_size_};
    if (!is_stdin() && read_.empty() && ::fstat(file_.get(), &mapped_) == 0 && S_ISREG(mapped_.st_mode) &&
        static_cast<std::size_t>(mapped_.st_size) >= kMapFrom) {
        const auto size = static_cast<std::size_t>(mapped_.st_size);
        if (size > kMaxDocumentFile) throw Error(Errc::too_large, "document " + path_ + " is too large");
        struct sigaction sa{};
        sa.sa_handler = on_sigbus;
        ::sigemptyset(&sa.sa_mask);
        ::sigaction(SIGBUS, &sa, nullptr);
        void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, file_.get(), 0);
        if (m != MAP_FAILED) {
            ::madvise(m, size, MADV_DONTDUMP);
            map_ = m;
            map_size_ = size;
            return {static_cast<const std::uint8_t*>(map_), map_size_};
        }
    }
    if (read_.empty()) read_ = read();
    return read_.bytes();
}

void DocumentFile::check_unchanged() const {
    if (map_ == nullptr) return;
    struct stat now{};
    if (::fstat(file_.get(), &now) != 0 || !same_file_state(now, mapped_))
        throw Error(Errc::io, "document " + path_ + " changed while it was read; nothing was committed (try again)");
}

SecureBuffer DocumentFile::read() {
    return is_stdin() ? read_fd(0, "standard input", kMaxDocumentFile) : read_fd(file_.get(), "document " + path_, kMaxDocumentFile);
}

SecureBuffer read_document(const std::string& path) { return DocumentFile(path).read(); }

void write_stdout(const SecureBuffer& data) { write_all(1, data.view(), "standard output"); }

}  // namespace shamirfs::cli
