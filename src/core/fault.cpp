#include "shamirfs/fault.hpp"

#ifdef SHAMIRFS_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace shamirfs::fault {

// SHAMIRFS_FAULT=POINT kills the process there (SIGKILL); "stop:POINT" stops
// it there (SIGSTOP), as if it had been paused mid-commit.
void point(const char* name) {
    const char* want = std::getenv("SHAMIRFS_FAULT");
    if (want == nullptr) return;
    if (std::strcmp(want, name) == 0) ::kill(::getpid(), SIGKILL);
    if (std::strncmp(want, "stop:", 5) == 0 && std::strcmp(want + 5, name) == 0) ::kill(::getpid(), SIGSTOP);
}

}  // namespace shamirfs::fault
#endif
