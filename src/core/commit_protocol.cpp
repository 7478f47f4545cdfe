#include "shamirfs/commit_protocol.hpp"

#include <dirent.h>
#include <sodium.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <ctime>
#include <nlohmann/json.hpp>

#include <fcntl.h>

#include "shamirfs/error.hpp"
#include "shamirfs/fault.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs {
namespace {

bool is_hex(const std::string& s, std::size_t digits) {
    return s.size() == digits && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string aux_path(const std::string& storage, const std::string& what) {
    return dir_of(storage) + "/." + base_of(storage) + ".shamirfs-" + what;
}

std::optional<FileId> parse_file_id(const std::string& s) {
    unsigned long long dev = 0, ino = 0;
    char end = 0;
    if (std::sscanf(s.c_str(), "%llu:%llu%c", &dev, &ino, &end) != 2) return std::nullopt;
    return FileId{static_cast<dev_t>(dev), static_cast<ino_t>(ino)};
}

std::optional<FileId> file_id_of(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileId{st.st_dev, st.st_ino};
}

// "enc.json" -> {"enc", ".json"}; a name without an extension has none.
std::pair<std::string, std::string> stem_and_ext(const std::string& base) {
    auto dot = base.rfind('.');
    if (dot == std::string::npos || dot == 0) return {base, ""};
    return {base.substr(0, dot), base.substr(dot)};
}

// Swaps the new file at `temp` with the storage; false if the storage was
// missing or the file system cannot swap (then a plain rename was done, and
// nothing is left at `temp`).
bool swap_into_place(const std::string& temp, const std::string& storage) {
    if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, storage.c_str(), RENAME_EXCHANGE) == 0) return true;
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        throw_errno("cannot swap the new storage into " + storage, errno);
    if (::rename(temp.c_str(), storage.c_str()) != 0) throw_errno("cannot rename the new storage onto " + storage, errno);
    return false;
}

// After a swap, `temp` holds the file that was in the storage's place: the
// version the commit was made from is removed; any other (a sync tool put it
// there meanwhile) is kept as a conflict copy, whose path is returned.
std::string settle_displaced(const std::string& temp, const std::string& storage, const std::optional<FileId>& base) {
    auto got = file_id_of(temp);
    if (!got) return "";
    if (!base || *got == *base) {
        remove_file(temp);
        return "";
    }
    std::string copy = new_conflict_path(storage);
    if (::rename(temp.c_str(), copy.c_str()) != 0) throw_errno("cannot keep a displaced version as " + copy, errno);
    log::warn("another version of " + storage + " was put in its place during a commit (a sync tool takes no lock): "
              "it is kept as " + copy);
    return copy;
}

}  // namespace

std::vector<std::string> conflict_copies(const std::string& storage) {
    const std::string dir = dir_of(storage);
    const auto [stem, ext] = stem_and_ext(base_of(storage));
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    auto ends = [&ext = ext](const std::string& n) {  // (clang before 16 cannot capture a structured binding by [&])
        return n.size() >= ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0;
    };
    while (dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n.rfind(stem, 0) != 0 || !ends(n)) continue;
        const std::string rest = n.substr(stem.size());
        if (rest.rfind(".sync-conflict-", 0) == 0 || rest.rfind(".shamirfs-conflict-", 0) == 0 ||
            (rest.rfind(" (", 0) == 0 && rest.find("conflicted copy") != std::string::npos))
            out.push_back(dir + "/" + n);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string new_conflict_path(const std::string& storage) {
    const auto [stem, ext] = stem_and_ext(base_of(storage));
    char when[32];
    std::time_t now = std::time(nullptr);
    struct tm utc{};
    std::strftime(when, sizeof(when), "%Y%m%d-%H%M%S", ::gmtime_r(&now, &utc));
    char rnd[9];
    std::snprintf(rnd, sizeof(rnd), "%08x", randombytes_random());
    return dir_of(storage) + "/" + stem + ".shamirfs-conflict-" + when + "-" + rnd + ext;
}

std::string lock_path_of(const std::string& storage) { return aux_path(storage, "lock"); }

void check_storage_name(const std::string& storage) {
    if (base_of(storage).size() > kMaxStorageName)
        throw Error(Errc::usage, "the file name of " + storage + " is longer than " + std::to_string(kMaxStorageName) +
                                     " bytes: the files a commit makes beside it add 83 bytes to it, and a name has "
                                     "at most 255; rename it");
}

Wal::Wal(std::string storage_path)
    : storage_(std::move(storage_path)), dir_(dir_of(storage_)), base_(base_of(storage_)),
      wal_path_(aux_path(storage_, "wal")), legacy_wal_path_(storage_ + ".wal") {}

std::string Wal::new_temp_name() const {
    char rnd[9];
    std::snprintf(rnd, sizeof(rnd), "%08x", randombytes_random());
    return "." + base_ + ".shamirfs-tmp-" + std::to_string(::getpid()) + "-" + rnd;
}

bool Wal::is_temp_name(const std::string& name) const {
    return (name.rfind("." + base_ + ".shamirfs-tmp-", 0) == 0 || name.rfind("." + base_ + ".tmp-", 0) == 0) &&
           name.find('/') == std::string::npos;
}

std::string Wal::temp_path(const std::string& name) const { return dir_ + "/" + name; }

std::string Wal::ready_name(const std::string& hash, const std::optional<FileId>& base) const {
    std::string name = "." + base_ + ".shamirfs-ready-" + hash;
    if (base) {
        char id[40];
        std::snprintf(id, sizeof(id), "-%llx-%llx", static_cast<unsigned long long>(base->dev),
                      static_cast<unsigned long long>(base->ino));
        name += id;
    }
    return name;
}

std::optional<WalRecord> Wal::parse_ready_name(const std::string& name) const {
    const std::string prefix = "." + base_ + ".shamirfs-ready-";
    if (name.rfind(prefix, 0) != 0) return std::nullopt;
    WalRecord r{"ready", name, name.substr(prefix.size(), 32), std::nullopt};
    const std::string rest = name.substr(std::min(name.size(), prefix.size() + 32));
    unsigned long long dev = 0, ino = 0;
    int used = 0;
    if (!is_hex(r.next, 32)) return std::nullopt;
    if (!rest.empty()) {
        if (std::sscanf(rest.c_str(), "-%llx-%llx%n", &dev, &ino, &used) != 2 || static_cast<std::size_t>(used) != rest.size())
            return std::nullopt;
        r.base = FileId{static_cast<dev_t>(dev), static_cast<ino_t>(ino)};
    }
    return r;
}

std::vector<std::string> Wal::own_files() const {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) throw_errno("cannot list " + dir_, errno);
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (is_temp_name(name) || parse_ready_name(name)) out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

bool Wal::needs_recovery() const {
    for (const auto& p : {wal_path_, legacy_wal_path_})
        if (::access(p.c_str(), F_OK) == 0 || ::access((p + ".tmp").c_str(), F_OK) == 0) return true;
    return !own_files().empty();
}

std::vector<std::string> Wal::recover() {
    std::vector<std::string> actions;
    auto act = [&](const std::string& a) {
        log::warn("recovery of " + storage_ + ": " + a);
        actions.push_back(a);
    };
    // Records of builds before WAL version 4 first (their temp files are
    // named in them), then the ready files, then what is left: stale.
    for (const auto& wal : {legacy_wal_path_, wal_path_}) recover_record(wal, act);
    auto names = own_files();
    for (const auto& name : names)
        if (auto r = parse_ready_name(name)) act(finish_ready(*r, page_hash));
    for (const auto& name : names) {
        if (!is_temp_name(name)) continue;
        remove_file(temp_path(name));
        act("removed stale temp file " + name);
    }
    if (!actions.empty()) fsync_dir(dir_);
    return actions;
}

std::string Wal::finish_ready(const WalRecord& r, std::string (*hash)(std::string_view)) {
    const std::string temp = temp_path(r.temp);
    const auto& base = r.base;
    auto data = read_file(temp);
    auto storage_is_new = [&] {
        auto current = read_file(storage_);
        return current && hash(*current) == r.next;
    };
    if (data && hash(*data) == r.next) {
        std::string kept;
        if (swap_into_place(temp, storage_)) kept = settle_displaced(temp, storage_, base);
        return "finished an interrupted commit (swapped its complete new file into place)" +
               (kept.empty() ? std::string() : "; the version it displaced is kept as " + kept);
    }
    if (data && storage_is_new()) {
        // Swapped, then interrupted: the ready name holds the file it displaced.
        std::string kept = settle_displaced(temp, storage_, base);
        return kept.empty() ? "completed commit: removed the version it replaced"
                            : "completed commit: the version it displaced is kept as " + kept;
    }
    if (data) {
        remove_file(temp);
        return "rolled back an interrupted commit whose new file does not match its hash";
    }
    return storage_is_new() ? "completed commit: removed its write-ahead log"
                            : "interrupted commit lost its new file; the storage is the previous version";
}

void Wal::recover_record(const std::string& wal_path, const std::function<void(const std::string&)>& act) {
    if (auto text = read_file(wal_path)) {
        WalRecord r;
        std::string why;
        int version = 0;
        try {
            auto j = nlohmann::json::parse(*text);
            version = j.at("wal").get<int>();
            if (version != 2 && version != 3) why = "unknown WAL version";
            for (auto& [k, v] : j.items())
                if (k != "wal" && k != "state" && k != "temp" && k != "new" && k != "base")
                    why = "unknown key " + k;
            r.state = j.at("state").get<std::string>();
            r.temp = j.at("temp").get<std::string>();
            if (r.state == "ready") r.next = j.at("new").get<std::string>();
            else if (r.state != "start") why = "unknown state";
            if (!is_temp_name(r.temp)) why = "temp file name outside the protocol";
            if (r.state == "ready" && !is_hex(r.next, 32)) why = "bad hash";
            if (const std::string base = j.value("base", std::string()); !base.empty())
                if (!(r.base = parse_file_id(base))) why = "bad base";
        } catch (const std::exception& e) {
            why = "not a WAL record";
        }
        if (!why.empty())
            throw Error(Errc::corrupt, "the write-ahead log " + wal_path + " is not valid (" + why +
                                           "); it was left in place: check it, then move it away");
        if (r.state == "start") {
            remove_file(temp_path(r.temp));
            act("rolled back an interrupted commit (removed its unfinished new file)");
        } else {
            // Version 2 named the new file by the XXH3-128 of its bytes.
            act(finish_ready(r, version == 2 ? content_hash : page_hash));
        }
        fsync_dir(dir_);  // (what it did is durable before the record goes)
        remove_file(wal_path);
        fsync_dir(dir_);
    }
    if (::access((wal_path + ".tmp").c_str(), F_OK) == 0) {
        remove_file(wal_path + ".tmp");
        act("removed an unfinished write-ahead log record");
    }
}

Swapped write_through_wal(const std::string& storage, std::string_view text, bool must_not_exist,
                          const std::function<std::vector<TextRange>()>& next_ranges, std::optional<FileId> base,
                          bool skip_page_cache) {
    check_storage_name(storage);
    // Nothing is begun before the first bytes are final.
    std::vector<TextRange> first;
    if (next_ranges) first = next_ranges();
    Wal wal(storage);
    const std::string dir = dir_of(storage);
    std::string current = wal.temp_path(wal.new_temp_name());  // where the new file is
    bool swapped = false;
    // Until the new file has its ready name, a crash leaves only an unfinished
    // or unnamed temp file, which recovery removes as stale (it holds the
    // lock, so no commit is in progress).
    fault::point("before-temp-create");
    FileHandle written;
    try {
        // The text is written as far as it is final, while the rest may still
        // be being made (PagedWriter: hashed as it goes, a large file with
        // O_DIRECT).
        written = create_new_file(current);
        fault::point("after-temp-create");
        const auto t_start = std::chrono::steady_clock::now();
        PagedWriter out(written.get(), current, text.size(), skip_page_cache);
        auto put = [&](std::span<const TextRange> ranges) {
            std::size_t total = 0;
            for (const auto& r : ranges) {
                out.add(r.offset, r.from ? std::string_view(r.from, r.length) : text.substr(r.offset, r.length));
                total += r.length;
            }
            out.flush();  // (the ranges' bytes may change once next_ranges is called again)
            return total;
        };
        if (!next_ranges) {
            const TextRange all{0, text.size()};
            put(std::span(&all, 1));
        } else {
            std::size_t total = 0;
            for (auto ranges = std::move(first); !ranges.empty(); ranges = next_ranges()) total += put(ranges);
            if (total != text.size()) throw Error(Errc::internal, "the new storage was not completed");
        }
        const std::string new_hash = out.digest();
        const auto t_written = std::chrono::steady_clock::now();
        fault::point("after-temp-write");
        if (::fsync(written.get()) != 0) throw_errno("cannot fsync " + current, errno);
        log::debug("new file: written " + log::ms_between(t_start, t_written) + " ms, fsynced " +
                   log::ms_between(t_written, std::chrono::steady_clock::now()) + " ms");
        fault::point("after-temp-fsync");
        if (must_not_exist) {
            if (::renameat2(AT_FDCWD, current.c_str(), AT_FDCWD, storage.c_str(), RENAME_NOREPLACE) != 0) {
                if (errno == EEXIST) throw Error(Errc::usage, storage + " already exists");
                throw_errno("cannot rename the new storage onto " + storage, errno);
            }
        } else {
            // The write-ahead record: the complete, synced file takes a name
            // that holds its hash and the version it replaces. The directory
            // is synced once, after the swap: a crash keeps none of the two
            // renames, the first, or both, and recovery settles each.
            const std::string ready = wal.temp_path(wal.ready_name(new_hash, base));
            if (::rename(current.c_str(), ready.c_str()) != 0) throw_errno("cannot rename the new storage to " + ready, errno);
            current = ready;
            fault::point("after-ready-name");
            swapped = swap_into_place(ready, storage);
        }
    } catch (...) {
        // Not swapped: roll back now (what recovery would do).
        ::unlink(current.c_str());
        throw;
    }
    fault::point("after-rename");
    // (If this fails, the ready name stays and recovery settles the displaced file.)
    std::string displaced = swapped ? settle_displaced(current, storage, base) : "";
    fsync_dir(dir);  // if this fails, the ready name may stay and recovery completes it
    fault::point("after-dir-fsync");
    return {std::move(written), std::move(displaced)};
}

}  // namespace shamirfs
