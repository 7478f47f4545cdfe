#include "shamirfs/wal.hpp"

#include <dirent.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs {
namespace {

bool is_hex(const std::string& s, std::size_t digits) {
    return s.size() == digits && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The hash a record of `version` names: content_hash() since version 2,
// BLAKE2b-256 in version 1.
std::string hash_for(int version, std::string_view data) {
    if (version >= 2) return content_hash(data);
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), reinterpret_cast<const unsigned char*>(data.data()), data.size(), nullptr, 0);
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    return hex;
}

}  // namespace

Wal::Wal(std::string storage_path)
    : storage_(std::move(storage_path)), dir_(dir_of(storage_)), base_(base_of(storage_)), wal_path_(storage_ + ".wal") {}

std::string Wal::new_temp_name() const {
    char rnd[9];
    std::snprintf(rnd, sizeof(rnd), "%08x", randombytes_random());
    return "." + base_ + ".tmp-" + std::to_string(::getpid()) + "-" + rnd;
}

std::string Wal::temp_path(const std::string& name) const { return dir_ + "/" + name; }

void Wal::write(const WalRecord& r) {
    nlohmann::ordered_json j = {{"wal", 2}, {"state", r.state}, {"temp", r.temp}};
    if (r.state == "ready") j["new"] = r.next;
    replace_small_file(wal_path_, j.dump() + "\n");
}

void Wal::remove() {
    remove_file(wal_path_);
    fsync_dir(dir_);
}

std::vector<std::string> Wal::temp_files() const {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir_.c_str());
    if (d == nullptr) throw_errno("cannot list " + dir_, errno);
    const std::string prefix = "." + base_ + ".tmp-";
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind(prefix, 0) == 0) out.push_back(name);
    }
    ::closedir(d);
    return out;
}

bool Wal::needs_recovery() const {
    return ::access(wal_path_.c_str(), F_OK) == 0 || ::access((wal_path_ + ".tmp").c_str(), F_OK) == 0 ||
           !temp_files().empty();
}

std::vector<std::string> Wal::recover() {
    std::vector<std::string> actions;
    auto act = [&](const std::string& a) {
        log::warn("recovery of " + storage_ + ": " + a);
        actions.push_back(a);
    };
    if (auto text = read_file(wal_path_)) {
        WalRecord r;
        std::string why;
        int version = 0;
        try {
            auto j = nlohmann::json::parse(*text);
            version = j.at("wal").get<int>();
            if (version != 1 && version != 2) why = "unknown WAL version";
            for (auto& [k, v] : j.items())
                if (k != "wal" && k != "state" && k != "temp" && k != "new" && !(k == "base" && version == 1))
                    why = "unknown key " + k;
            r.state = j.at("state").get<std::string>();
            r.temp = j.at("temp").get<std::string>();
            const std::size_t digits = version == 1 ? 64 : 32;
            if (version == 1) {
                auto base = j.at("base").get<std::string>();
                if (!base.empty() && !is_hex(base, digits)) why = "bad hash";
            }
            if (r.state == "ready") r.next = j.at("new").get<std::string>();
            else if (r.state != "start") why = "unknown state";
            if (r.temp.rfind("." + base_ + ".tmp-", 0) != 0 || r.temp.find('/') != std::string::npos)
                why = "temp file name outside the protocol";
            if (r.state == "ready" && !is_hex(r.next, digits)) why = "bad hash";
        } catch (const std::exception& e) {
            why = "not a WAL record";
        }
        if (!why.empty())
            throw Error(Errc::corrupt, "the write-ahead log " + wal_path_ + " is not valid (" + why +
                                           "); it was left in place: check it, then move it away");
        std::string temp = temp_path(r.temp);
        if (r.state == "start") {
            remove_file(temp);
            act("rolled back an interrupted commit (removed its unfinished new file)");
        } else {
            auto data = read_file(temp);
            if (data && hash_for(version, *data) == r.next) {
                if (::rename(temp.c_str(), storage_.c_str()) != 0) throw_errno("cannot rename " + temp, errno);
                fsync_dir(dir_);
                act("finished an interrupted commit (renamed its complete new file into place)");
            } else if (data) {
                remove_file(temp);
                act("rolled back an interrupted commit whose new file does not match its hash");
            } else {
                auto current = read_file(storage_);
                if (current && hash_for(version, *current) == r.next) act("completed commit: removed its write-ahead log");
                else act("interrupted commit lost its new file; the storage is the previous version");
            }
        }
        remove();
    }
    if (::access((wal_path_ + ".tmp").c_str(), F_OK) == 0) {
        remove_file(wal_path_ + ".tmp");
        act("removed an unfinished write-ahead log record");
    }
    for (const auto& name : temp_files()) {
        remove_file(temp_path(name));
        act("removed stale temp file " + name);
    }
    if (!actions.empty()) fsync_dir(dir_);
    return actions;
}

}  // namespace shamirfs
