// Levelled logging. Never pass secrets or document text to these functions.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace shamirfs::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
// Route messages to syslog instead of stderr (after the daemon detaches).
void use_syslog(const char* ident);
void write(Level level, const std::string& message);
// The last lines written (at most 200, oldest first): `shamirfs status` shows
// them, so a machine without syslog still has the mount's log, in memory only.
std::vector<std::string> recent();

// "12.3": the milliseconds from a to b, for timings in messages.
std::string ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }

}  // namespace shamirfs::log
