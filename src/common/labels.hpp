// Partition labels: the file names "<label>.json" shown by the mount and the
// key file names "<label>.key" written by create. Not stored in the storage.
#pragma once
#include <string>

#include "shamirfs/error.hpp"

namespace shamirfs::cli {

inline void check_label(const std::string& l) {
    if (l.empty() || l.size() > 64 || l[0] == '.' ||
        l.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos)
        throw Error(Errc::usage, "label \"" + l + "\" must be 1-64 of [A-Za-z0-9._-], not starting with '.'");
}

// a, b, ..., z, then p27, p28, ...
inline std::string default_label(unsigned i) {
    if (i < 26) return std::string(1, static_cast<char>('a' + i));
    return "p" + std::to_string(i + 1);
}

}  // namespace shamirfs::cli
