#include "shamirfs/error.hpp"

#include <cerrno>
#include <cstring>

namespace shamirfs {

void throw_errno(const std::string& context, int err) {
    Errc code = Errc::io;
    if (err == ENOSPC || err == EDQUOT) code = Errc::no_space;
    else if (err == EROFS || err == EACCES || err == EPERM) code = Errc::read_only;
    throw Error(code, context + ": " + std::strerror(err));
}

}  // namespace shamirfs
