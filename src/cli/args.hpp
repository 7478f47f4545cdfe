// Minimal argument parser for the shamirfs subcommands: "--name value",
// "--name=value" and boolean flags; everything else is positional.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace shamirfs::cli {

struct Args {
    std::vector<std::string> positional;
    std::multimap<std::string, std::string> values;
    std::set<std::string> flags;

    std::optional<std::string> value(const std::string& name) const;
    std::vector<std::string> all(const std::string& name) const;
    bool flag(const std::string& name) const { return flags.count(name) != 0; }
    unsigned long number(const std::string& name, unsigned long fallback) const;
};

// Throws Error(usage) for an unknown option or a missing value.
Args parse_args(int argc, char** argv, int first, const std::set<std::string>& valued,
                const std::set<std::string>& boolean);

}  // namespace shamirfs::cli
