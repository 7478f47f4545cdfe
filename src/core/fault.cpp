#include "shamirfs/fault.hpp"

#ifdef SHAMIRFS_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace shamirfs::fault {

void point(const char* name) {
    const char* want = std::getenv("SHAMIRFS_FAULT");
    if (want != nullptr && std::strcmp(want, name) == 0) ::kill(::getpid(), SIGKILL);
}

}  // namespace shamirfs::fault
#endif
