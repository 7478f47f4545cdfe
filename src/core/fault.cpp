#include "shamirfs/fault.hpp"

#ifdef SHAMIRFS_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>

namespace shamirfs::fault {

// SHAMIRFS_FAULT=POINT kills the process there (SIGKILL); "stop:POINT" stops
// it there (SIGSTOP), as if it had been paused mid-commit. A comma-separated
// list names several ("stop:after-ready-name,after-rename": paused, then killed).
void point(const char* name) {
    const char* want = std::getenv("SHAMIRFS_FAULT");
    if (want == nullptr) return;
    std::istringstream list(want);
    for (std::string item; std::getline(list, item, ',');) {
        if (item == name) ::kill(::getpid(), SIGKILL);
        if (item == std::string("stop:") + name) ::kill(::getpid(), SIGSTOP);
    }
}

}  // namespace shamirfs::fault
#endif
