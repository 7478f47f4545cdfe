// Fault injection for the crash tests: when the build has it (meson option
// fault_injection) and SHAMIRFS_FAULT names a point, the process kills itself
// with SIGKILL on reaching that point ("stop:POINT": stops with SIGSTOP). Release builds compile it to nothing.
#pragma once

namespace shamirfs::fault {

#ifdef SHAMIRFS_FAULT_INJECTION
void point(const char* name);
#else
inline void point(const char*) {}
#endif

}  // namespace shamirfs::fault
