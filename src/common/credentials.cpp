#include "common/credentials.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"

namespace shamirfs::cli {
namespace {

constexpr std::size_t kMaxSecret = 4096;

// Reads everything from fd into locked memory, growing by copying (and wiping).
SecureBuffer read_fd(int fd, const std::string& what, std::size_t limit) {
    SecureBuffer buf(64 * 1024);
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

SecureBuffer first_line(SecureBuffer data, const std::string& what) {
    std::size_t n = 0;
    while (n < data.size() && data.data()[n] != '\n') ++n;
    if (n > 0 && data.data()[n - 1] == '\r') --n;
    if (n == 0) throw Error(Errc::usage, what + " is empty");
    data.shrink(n);
    return data;
}

SecureBuffer read_path(const std::string& path, const std::string& what, std::size_t limit) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open " + what + " " + path, errno);
    try {
        SecureBuffer data = read_fd(fd, what + " " + path, limit);
        ::close(fd);
        return data;
    } catch (...) {
        ::close(fd);
        throw;
    }
}

}  // namespace

SecureBuffer prompt_secret(const std::string& prompt, const std::string& hint_if_no_tty) {
    int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) throw Error(Errc::usage, "no terminal to ask on: " + hint_if_no_tty);
    termios old{};
    bool is_tty = ::tcgetattr(fd, &old) == 0;
    if (is_tty) {
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        ::tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    (void)!::write(fd, prompt.data(), prompt.size());
    SecureBuffer line(kMaxSecret);
    std::size_t n = 0;
    char c;
    while (n < line.size()) {
        ssize_t r = ::read(fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || c == '\n') break;
        line.data()[n++] = static_cast<std::uint8_t>(c);
    }
    c = 0;
    if (is_tty) ::tcsetattr(fd, TCSAFLUSH, &old);
    ::close(fd);
    if (n > 0 && line.data()[n - 1] == '\r') --n;
    line.shrink(n);
    return line;
}

SecureBuffer read_secret_file(const std::string& path, const char* what) {
    return first_line(read_path(path, what, kMaxSecret), std::string(what) + " " + path);
}

SecureBuffer read_secret_fd(int fd, const std::string& what) {
    return first_line(read_fd(fd, what, kMaxSecret), what);
}

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

SecureBuffer read_document(const std::string& path) {
    if (path == "-") return read_fd(0, "standard input", std::size_t{1} << 30);
    return read_path(path, "document", std::size_t{1} << 30);
}

void write_stdout(const SecureBuffer& data) { write_all(1, data.view(), "standard output"); }

}  // namespace shamirfs::cli
