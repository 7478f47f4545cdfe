#include "args.hpp"

#include "shamirfs/error.hpp"

namespace shamirfs::cli {

std::optional<std::string> Args::value(const std::string& name) const {
    auto range = values.equal_range(name);
    if (range.first == range.second) return std::nullopt;
    if (std::next(range.first) != range.second) throw Error(Errc::usage, "--" + name + " given more than once");
    return range.first->second;
}

std::vector<std::string> Args::all(const std::string& name) const {
    std::vector<std::string> out;
    for (auto [it, end] = values.equal_range(name); it != end; ++it) out.push_back(it->second);
    return out;
}

unsigned long Args::number(const std::string& name, unsigned long fallback) const {
    auto v = value(name);
    if (!v) return fallback;
    std::size_t used = 0;
    unsigned long n = 0;
    try {
        if (v->empty() || (*v)[0] == '-') throw std::invalid_argument("negative");
        n = std::stoul(*v, &used, 10);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != v->size()) throw Error(Errc::usage, "--" + name + " needs a non-negative integer");
    return n;
}

Args parse_args(int argc, char** argv, int first, const std::set<std::string>& valued_given,
                const std::set<std::string>& boolean) {
    // Every command that reads a password file also runs a password command.
    std::set<std::string> valued = valued_given;
    if (valued.count("passfile")) valued.insert("extpass");
    Args a;
    bool options_done = false;
    for (int i = first; i < argc; ++i) {
        std::string s = argv[i];
        if (options_done || s.size() < 3 || s.rfind("--", 0) != 0) {
            if (s == "--") options_done = true;
            else a.positional.push_back(s);
            continue;
        }
        std::string name = s.substr(2), val;
        bool has_val = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            val = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_val = true;
        }
        if (boolean.count(name)) {
            if (has_val) throw Error(Errc::usage, "--" + name + " takes no value");
            a.flags.insert(name);
        } else if (valued.count(name)) {
            if (!has_val) {
                if (i + 1 >= argc) throw Error(Errc::usage, "--" + name + " needs a value");
                val = argv[++i];
            }
            a.values.emplace(name, val);
        } else {
            throw Error(Errc::usage, "unknown option --" + name);
        }
    }
    return a;
}

}  // namespace shamirfs::cli
