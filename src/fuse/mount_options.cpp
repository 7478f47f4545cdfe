#include "mount_options.hpp"

#include <set>

#include "shamirfs/error.hpp"

namespace shamirfs::fs {
namespace {

unsigned long number(const std::string& name, const std::string& v, int base) {
    std::size_t used = 0;
    unsigned long n = 0;
    try {
        if (!v.empty() && v[0] != '-') n = std::stoul(v, &used, base);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != v.size()) throw Error(Errc::usage, "mount option " + name + "=" + v + " is not a number");
    return n;
}

std::vector<std::string> split_options(const std::string& list) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : list) {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

// "90", "90s", "15m", "2h": seconds.
unsigned long duration(const std::string& v) {
    std::string digits = v;
    unsigned long unit = 1;
    if (!v.empty() && (v.back() == 's' || v.back() == 'm' || v.back() == 'h')) {
        unit = v.back() == 'h' ? 3600 : v.back() == 'm' ? 60 : 1;
        digits.pop_back();
    }
    unsigned long n = number("idle", digits, 10);
    if (n == 0) throw Error(Errc::usage, "mount option idle=" + v + " must be above zero");
    return n * unit;
}

}  // namespace

MountArgs parse_mount_args(int argc, char** argv) {
    MountArgs a;
    std::vector<std::string> positional, option_lists;
    bool sloppy = false;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "-o") {
            if (i + 1 >= argc) throw Error(Errc::usage, "-o needs a list of options");
            option_lists.push_back(argv[++i]);
        } else if (s.rfind("-o", 0) == 0 && s.size() > 2) {
            option_lists.push_back(s.substr(2));
        } else if (s == "-N") {
            if (i + 1 >= argc) throw Error(Errc::usage, "-N needs a mount namespace (a PID or a path)");
            a.mount_namespace = argv[++i];
        } else if (s == "-t") {
            ++i;  // mount(8): the type; nothing to do with it
        } else if (s == "-h" || s == "--help") {
            a.help = true;
        } else if (s == "-V" || s == "--version") {
            a.version = true;
        } else if (s.size() > 1 && s[0] == '-' && s[1] != '-') {
            for (char c : s.substr(1)) {
                switch (c) {
                case 'f': a.fake = true; break;  // mount(8): do everything but mount
                case 'd': a.debug = a.foreground = true; break;
                case 'v': a.verbose = true; break;
                case 's': sloppy = true; break;
                case 'n': break;  // mount(8): no mtab
                default: throw Error(Errc::usage, std::string("unknown flag -") + c);
                }
            }
        } else if (s == "--foreground") {
            a.foreground = true;
        } else if (s == "--debug") {
            a.debug = a.foreground = true;
        } else {
            positional.push_back(s);
        }
    }
    if (a.help || a.version) return a;
    if (positional.size() != 2) throw Error(Errc::usage, "expected STORAGE and MOUNTPOINT");
    a.storage = positional[0];
    a.mountpoint = positional[1];

    // Kernel/generic options FUSE understands; mount(8)'s own are ignored.
    static const std::set<std::string> kernel = {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                                                 "noatime", "atime", "relatime", "sync", "async", "dirsync",
                                                 "allow_other", "default_permissions"};
    static const std::set<std::string> ignored = {"nofail", "_netdev", "user", "users", "auto", "noauto",
                                                  "defaults", "nouser", "owner", "group", "loud", "silent"};
    for (const auto& list : option_lists) {
        for (const auto& opt : split_options(list)) {
            auto eq = opt.find('=');
            std::string key = opt.substr(0, eq), val = eq == std::string::npos ? "" : opt.substr(eq + 1);
            bool has_val = eq != std::string::npos;
            auto need = [&] {
                if (!has_val || val.empty()) throw Error(Errc::usage, "mount option " + key + " needs a value");
            };
            if (key == "keyfile") { need(); a.keyfiles.push_back(val); }
            else if (key == "passfile") { need(); a.passfiles.push_back(val); }
            else if (key == "extpass") { need(); a.extpass = val; }
            else if (key == "label") { need(); a.labels.push_back(val); }
            else if (key == "uid") { need(); a.uid = static_cast<uid_t>(number(key, val, 10)); }
            else if (key == "gid") { need(); a.gid = static_cast<gid_t>(number(key, val, 10)); }
            else if (key == "umask") { need(); a.umask = static_cast<mode_t>(number(key, val, 8) & 0777); }
            else if (key == "memory_max") { need(); a.memory_max = number(key, val, 10); }
            else if (key == "debug") { a.debug = a.foreground = true; }
            else if (key == "foreground" && !has_val) { a.foreground = true; }
            else if (key == "remount")
                throw Error(Errc::usage, "-o remount is not supported: unmount (fusermount3 -u MOUNTPOINT) and mount again");
            else if (key == "idle") { need(); a.idle_seconds = duration(val); }
            else if (key == "nonempty" && !has_val) { a.nonempty = true; }
            else if (key == "automerge" && !has_val) { a.automerge = true; }
            else if (kernel.count(key) && !has_val) {
                if (key == "ro") a.read_only = true;
                if (key == "rw") a.read_only = false;
                if (key == "allow_other") a.kernel_options.push_back("default_permissions");
                a.kernel_options.push_back(key);
            }
            else if (ignored.count(key) || key.rfind("x-", 0) == 0 || key == "comment") {}
            else if (!sloppy) throw Error(Errc::usage, "unknown mount option " + key);
        }
    }
    if (a.passfiles.size() > a.keyfiles.size())
        throw Error(Errc::usage, "more passfile= than keyfile= options (they pair in order)");
    return a;
}

}  // namespace shamirfs::fs
