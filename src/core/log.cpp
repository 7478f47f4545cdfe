#include "shamirfs/log.hpp"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <deque>
#include <cstdio>
#include <mutex>

namespace shamirfs::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::atomic<bool> g_syslog{false};
std::mutex g_mutex;
std::deque<std::string> g_recent;  // guarded by g_mutex
constexpr std::size_t kRecent = 200;

const char* name(Level l) {
    switch (l) {
    case Level::debug: return "DEBUG";
    case Level::info: return "INFO";
    case Level::warn: return "WARN";
    case Level::error: return "ERROR";
    }
    return "?";
}
int syslog_priority(Level l) {
    switch (l) {
    case Level::debug: return LOG_DEBUG;
    case Level::info: return LOG_INFO;
    case Level::warn: return LOG_WARNING;
    case Level::error: return LOG_ERR;
    }
    return LOG_ERR;
}
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void use_syslog(const char* ident) {
    openlog(ident, LOG_PID, LOG_DAEMON);
    g_syslog = true;
}

void write(Level l, const std::string& message) {
    if (l < g_level.load()) return;
    std::lock_guard<std::mutex> lock(g_mutex);
    time_t now = ::time(nullptr);
    char stamp[32];
    struct tm local{};
    std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", ::localtime_r(&now, &local));
    g_recent.push_back(std::string(stamp) + " " + name(l) + ": " + message);
    if (g_recent.size() > kRecent) g_recent.pop_front();
    // (Where no syslog daemon listens, syslog(3) tries to connect on every
    // call and drops the message: the recent ones are kept above either way.)
    if (g_syslog && ::access(_PATH_LOG, F_OK) == 0) syslog(syslog_priority(l), "%s: %s", name(l), message.c_str());
    else std::fprintf(stderr, "shamirfs: %s: %s\n", name(l), message.c_str());
}

std::vector<std::string> recent() {
    std::lock_guard<std::mutex> lock(g_mutex);
    return {g_recent.begin(), g_recent.end()};
}

std::string ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    char out[32];
    std::snprintf(out, sizeof(out), "%.1f", std::chrono::duration<double, std::milli>(b - a).count());
    return out;
}

}  // namespace shamirfs::log
