// shamirfs command line: create, cat, update, info. Exit codes are mapped from
// the core's Errc here and only here; they are documented in man/shamirfs.1 and
// never renumbered.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include <cstdio>
#include <iostream>
#include <chrono>
#include <mutex>
#include <condition_variable>
#include <future>
#include <thread>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "args.hpp"
#include "edit.hpp"
#include "common/credentials.hpp"
#include "common/exit_codes.hpp"
#include "common/labels.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/json_check.hpp"
#include "shamirfs/keys.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/merge.hpp"
#include "shamirfs/progress.hpp"
#include "shamirfs/commit_protocol.hpp"
#include "shamirfs/storage_format.hpp"
#include "shamirfs/store.hpp"

using namespace shamirfs;
using shamirfs::cli::Args;
using shamirfs::cli::check_label;
using shamirfs::cli::default_label;

namespace {

// Each command ends with the process: what a commit wrote is not kept in
// memory (StoreOptions::keep_written_text).
StoreOptions cli_options() {
    StoreOptions o;
    o.keep_written_text = false;
    return o;
}

const char* kUsage =
    "usage: shamirfs [-v|-q] COMMAND ...\n"
    "  create STORAGE [--partitions N] [--labels a,b] [--threshold T] [--shares N] [--slots S]\n"
    "                 [--pack K] [--growth G] [--capacity ROWS] [--kdf-ops X] [--kdf-mem BYTES] [--key-dir DIR]\n"
    "                 [--deniable]\n"
    "                 [--passfile LABEL=FILE]...\n"
    "  cat STORAGE [--keyfile FILE] [--passfile FILE] [--draft]\n"
    "  status MOUNTPOINT\n"
    "  passwd STORAGE [--keyfile FILE] [--passfile FILE] [--new-passfile FILE]\n"
    "  rekey STORAGE [--keyfile FILE] [--passfile FILE] --new-key-out FILE\n"
    "  update STORAGE NEW.json|- [--keyfile FILE [--passfile FILE]]... [--dry-run]\n"
    "         (deniable storages: the first pair is updated, the others are kept; every other partition is erased)\n"
    "  add STORAGE --keyfile FILE [--passfile FILE]... --label L --key-out FILE [--new-passfile FILE] [--all-unlocked]\n"
    "  shrink STORAGE --keyfile FILE [--passfile FILE]... [--all-unlocked]\n"
    "  edit STORAGE [--keyfile FILE [--passfile FILE]]...   ($VISUAL or $EDITOR on a copy in memory)\n"
    "  merge STORAGE [COPY...] [--base OLD] [--keyfile FILE [--passfile FILE]]... [--remove]\n"
    "         (COPY: conflict copies or other versions; default the conflict copies beside STORAGE)\n"
    "  info STORAGE [--json]\n"
    "  fsck STORAGE [--keyfile FILE [--passfile FILE]] [--repair]\n"
    "  STORAGE MOUNTPOINT [-o OPTIONS]   (runs mount.shamirfs; for fstab type fuse.shamirfs)\n"
    "See shamirfs(1).\n";

std::string fixed(double v, int digits) {
    std::ostringstream s;
    s.setf(std::ios::fixed);
    s.precision(digits);
    s << v;
    return s.str();
}

std::vector<std::string> split_labels(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s + ",") {
        if (c != ',') {
            cur.push_back(c);
            continue;
        }
        out.push_back(cur);
        cur.clear();
    }
    return out;
}

// The key from --keyfile, or typed (echoed: it is not a password) or a key
// file's path typed at the prompt; with the label it tells.
std::pair<MapKey, std::string> obtain_key(const Args& a) {
    SecureBuffer text = a.value("keyfile") ? cli::read_secret_file(*a.value("keyfile"), "key file")
                                           : cli::prompt_key("Partition map key (or its key file): ", "use --keyfile FILE");
    std::string label = cli::label_before_unlock(a.value("keyfile"), text.view());
    return {parse_map_key(text.view()), label};
}

// The password from --passfile, --extpass CMD, or the terminal.
SecureBuffer password_for(const Args& a, const std::optional<std::string>& passfile, const std::string& label) {
    if (passfile) return cli::read_secret_file(*passfile, "password file");
    if (auto cmd = a.value("extpass"))
        return cli::run_extpass(*cmd, label, a.positional.empty() ? "" : a.positional[0]);
    return cli::prompt_secret(label.empty() ? "Password: " : "Password for partition " + label + ": ",
                              "use --passfile FILE or --extpass CMD");
}

// Recovery, then the partition the command line's (or the prompted) key and
// password open, with the key and password (passwd and rekey need them).
// Before prompting, the storage is read (a bad file is told before anyone
// types); with both from files it is read while the KDF runs.
struct Unlocked {
    MapKey key;
    SecureBuffer password;
    Partition partition;
};
Unlocked unlock_one(Store& store, const Args& a) {
    store.recover();
    if (!a.value("keyfile") || (!a.value("passfile") && !a.value("extpass"))) store.load();
    auto [key, label] = obtain_key(a);
    SecureBuffer pw = password_for(a, a.value("passfile"), label);
    Partition p = store.unlock(key, pw.view());
    return {std::move(key), std::move(pw), std::move(p)};
}

Partition open_partition(Store& store, const Args& a) { return std::move(unlock_one(store, a).partition); }

// A password asked twice on the terminal, again after a mismatch (three tries).
SecureBuffer ask_twice(const std::string& prompt, const std::string& repeat, const std::string& hint,
                       const std::string& what) {
    for (int attempt = 1;; ++attempt) {
        SecureBuffer p1 = cli::prompt_secret(prompt, hint);
        SecureBuffer p2 = cli::prompt_secret(repeat, hint);
        if (p1.view() == p2.view()) return p1;
        if (attempt == 3) throw Error(Errc::usage, "the " + what + " differ");
        std::cerr << "shamirfs: the two passwords differ; again\n";
    }
}

// The key's line: the key and a newline, in locked memory.
SecureBuffer key_line(const SecureBuffer& key) {
    SecureBuffer line(key.size() + 1);
    std::copy(key.data(), key.data() + key.size(), line.data());
    line.data()[key.size()] = '\n';
    return line;
}

// Every --keyfile (with the --passfile at the same position, or a prompted
// password), in order; one prompted pair when none is given.
std::vector<Partition> open_partitions(Store& store, const Args& a) {
    const auto keys = a.all("keyfile"), passes = a.all("passfile");
    std::vector<Partition> out;
    if (keys.size() <= 1 && passes.size() <= 1) {
        out.push_back(open_partition(store, a));
        return out;
    }
    if (!passes.empty() && passes.size() != keys.size())
        throw Error(Errc::usage, "give one --passfile per --keyfile, or none (then each password is asked)");
    store.recover();
    store.load();
    for (std::size_t i = 0; i < keys.size(); ++i) {
        SecureBuffer text = cli::read_secret_file(keys[i], "key file");
        MapKey key = parse_map_key(text.view());
        SecureBuffer pw = password_for(a, passes.empty() ? std::nullopt : std::optional(passes[i]),
                                       cli::label_before_unlock(keys[i], text.view()));
        out.push_back(store.unlock(key, pw.view()));
        for (std::size_t j = 0; j + 1 < out.size(); ++j)
            if (out[j].slot == out.back().slot) throw Error(Errc::usage, keys[i] + " opens a partition given twice");
    }
    return out;
}

std::vector<const Partition*> others(const std::vector<Partition>& ps, std::size_t from) {
    std::vector<const Partition*> out;
    for (std::size_t i = from; i < ps.size(); ++i) out.push_back(&ps[i]);
    return out;
}

// The warning of a deniable storage, on the terminal before its first commit.
void warn_if_deniable(Store& store, std::size_t unlocked) {
    if (store.matrix().params().mode != StorageMode::deniable) return;
    std::cerr << "shamirfs: deniable storage: this commit rewrites every slot; the " << unlocked
              << " partition(s) unlocked now are kept, every other partition is ERASED\n";
}

// add and shrink in a shared storage act on slots the given keys do not open.
void require_all_unlocked(Store& store, const Args& a, const char* what) {
    if (store.matrix().params().mode == StorageMode::shared && !a.flag("all-unlocked"))
        throw Error(Errc::usage, std::string(what) +
                                     " in a shared storage could destroy partitions whose keys are not given here: "
                                     "give the key of every partition and --all-unlocked");
}

// A key file: the key's line, 0600, never over an existing file, fsynced.
void write_key_file(const std::string& path, const SecureBuffer& key) { write_new_file(path, key_line(key).view()); }

// "LABEL: key" on standard output, the key never in an ordinary string.
void print_key(const std::string& label, const SecureBuffer& key) {
    std::cout << label << ": " << std::flush;
    cli::write_stdout(key_line(key));
}

int cmd_create(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first,
                             {"partitions", "labels", "threshold", "shares", "slots", "pack", "growth", "capacity",
                              "kdf-ops", "kdf-mem", "key-dir", "passfile", "format"},
                             {"deniable"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "create needs exactly one STORAGE path");
    CreateSpec spec;
    spec.partitions = static_cast<unsigned>(a.number("partitions", spec.partitions));
    std::vector<std::string> labels;
    if (auto l = a.value("labels")) {
        labels = split_labels(*l);
        if (!a.value("partitions")) spec.partitions = static_cast<unsigned>(labels.size());
        if (labels.size() != spec.partitions) throw Error(Errc::usage, "--labels must name every partition");
    } else {
        for (unsigned i = 0; i < spec.partitions; ++i) labels.push_back(default_label(i));
    }
    std::set<std::string> unique(labels.begin(), labels.end());
    if (unique.size() != labels.size()) throw Error(Errc::usage, "labels must be distinct");
    for (const auto& l : labels) check_label(l);
    spec.threshold = static_cast<unsigned>(a.number("threshold", spec.threshold));
    spec.shares = static_cast<unsigned>(a.number("shares", spec.shares));
    spec.slots = static_cast<unsigned>(a.number("slots", spec.slots));
    spec.pack = static_cast<unsigned>(a.number("pack", spec.pack));
    spec.growth = static_cast<unsigned>(a.number("growth", spec.growth));
    spec.format = static_cast<unsigned>(a.number("format", spec.format));  // 1: for comparisons only
    if (spec.format != 1 && spec.format != kFormatVersion) throw Error(Errc::usage, "--format must be 1 or 2");
    spec.labels = labels;
    if (a.flag("deniable")) spec.mode = StorageMode::deniable;
    spec.capacity = a.number("capacity", spec.capacity);
    spec.kdf_ops = a.number("kdf-ops", spec.kdf_ops);
    spec.kdf_mem = a.number("kdf-mem", spec.kdf_mem);

    std::map<std::string, std::string> passfiles;
    for (const auto& pf : a.all("passfile")) {
        auto eq = pf.find('=');
        if (eq == std::string::npos || !unique.count(pf.substr(0, eq)))
            throw Error(Errc::usage, "--passfile needs LABEL=FILE with one of the partition labels");
        passfiles[pf.substr(0, eq)] = pf.substr(eq + 1);
    }
    check_create_spec(spec);  // before anything is asked
    if (struct stat st; ::stat(a.positional[0].c_str(), &st) == 0) throw Error(Errc::usage, a.positional[0] + " already exists");
    auto key_dir = a.value("key-dir");
    if (key_dir) {
        // A missing key directory is made (0700, as ~/.ssh) before anything is asked.
        if (::mkdir(key_dir->c_str(), 0700) != 0 && errno != EEXIST) throw_errno("cannot create key directory " + *key_dir, errno);
        if (::access(key_dir->c_str(), W_OK) != 0) throw_errno("cannot write keys into " + *key_dir, errno);
        for (const auto& l : labels) {
            struct stat st;
            if (::stat((*key_dir + "/" + l + ".key").c_str(), &st) == 0)
                throw Error(Errc::usage, *key_dir + "/" + l + ".key already exists");
        }
    }
    std::vector<SecureBuffer> passwords;
    for (const auto& l : labels) {
        if (auto it = passfiles.find(l); it != passfiles.end()) {
            passwords.push_back(cli::read_secret_file(it->second, "password file"));
            continue;
        }
        // A mistyped confirmation asks again: nothing typed so far is lost.
        passwords.push_back(ask_twice("Password for partition " + l + ": ", "Repeat the password for partition " + l + ": ",
                                      "use --passfile " + l + "=FILE", "passwords for partition " + l));
    }
    CreateResult r = Store::create(a.positional[0], spec, passwords);
    // A storage whose keys are not safely written can never be opened: if a
    // key file cannot be written, the new storage (it holds nothing yet) and
    // the keys written so far are removed, and the error is reported.
    std::vector<std::string> written;
    try {
        for (std::size_t i = 0; i < labels.size(); ++i) {
            SecureBuffer key = format_map_key(r.keys[i]);
            if (!key_dir) {
                print_key(labels[i], key);
                continue;
            }
            const std::string path = *key_dir + "/" + labels[i] + ".key";
            write_key_file(path, key);
            written.push_back(path);
        }
    } catch (const Error& e) {
        for (const auto& path : written) ::unlink(path.c_str());
        ::unlink(a.positional[0].c_str());
        throw Error(e.code(), std::string(e.what()) + "; the new storage was removed again (without its keys it could never be opened)");
    }
    std::cerr << "created " << a.positional[0] << ": " << labels.size() << " partition(s), capacity " << r.capacity
              << " rows, " << r.bytes_written << " bytes" << (key_dir ? ", keys in " + *key_dir : "") << "\n"
              << "A lost key or password is a lost document: keep a copy of every key, apart from the storage.\n";
    if (spec.mode == StorageMode::deniable)
        std::cerr << "deniable storage: every commit rewrites every slot, and a partition that is not unlocked when a\n"
                     "commit happens is ERASED. Unlock every partition you keep whenever you write (several\n"
                     "--keyfile/--passfile pairs on update; every partition in one mount).\n";
    return exit_code::ok;
}

int cmd_cat(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile"}, {"draft"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "cat needs exactly one STORAGE path");
    Store store(a.positional[0], cli_options());
    Partition p = open_partition(store, a);
    if (!a.flag("draft")) {
        cli::write_stdout(store.read(p));
        return exit_code::ok;
    }
    codec::Opened o = store.open(p);
    if (!o.draft) throw Error(Errc::usage, "no draft is kept for this partition");
    cli::write_stdout(*o.draft);
    return exit_code::ok;
}

// What a mount holds that is not committed: the mount's own account
// (user.shamirfs.status on its root).
int cmd_status(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {}, {});
    if (a.positional.size() != 1) throw Error(Errc::usage, "status needs exactly one MOUNTPOINT");
    const std::string& mnt = a.positional[0];
    std::string text(1 << 16, '\0');
    ssize_t n;
    while ((n = ::getxattr(mnt.c_str(), "user.shamirfs.status", text.data(), text.size())) < 0 && errno == ERANGE)
        text.resize(text.size() * 4);
    if (n < 0) throw Error(Errc::usage, mnt + " is not a shamirfs mount (" + std::strerror(errno) + ")");
    text.resize(static_cast<std::size_t>(n));
    auto j = nlohmann::json::parse(text);
    bool pending = false;
    for (const auto& p : j["partitions"]) {
        const bool open_text = p["uncommitted_text"], draft = p["draft"];
        pending = pending || open_text || draft;
        std::cout << "partition " << p["label"].get<std::string>() << ": last commit "
                  << (p["last_commit"].get<std::string>().empty() ? "(none in this mount)" : p["last_commit"].get<std::string>())
                  << "; uncommitted text: " << (open_text ? "yes" : "no") << "; draft kept: " << (draft ? "yes" : "no") << "\n";
        if (!p["last_refusal"].get<std::string>().empty())
            std::cout << "  refused at " << p["refused_at"].get<std::string>() << ": " << p["last_refusal"].get<std::string>() << "\n";
        if (p.contains("outside_change") && !p["outside_change"].get<std::string>().empty())
            std::cout << "  outside change: " << p["outside_change"].get<std::string>() << "\n";
        if (p.contains("vanished") && !p["vanished"].get<std::string>().empty())
            std::cout << "  the storage no longer opens it: " << p["vanished"].get<std::string>() << "\n";
    }
    if (!j["scratch_files_lost_at_unmount"].empty()) {
        pending = true;
        std::cout << "files that are not partitions (they vanish at unmount):\n";
        for (const auto& f : j["scratch_files_lost_at_unmount"])
            std::cout << "  " << f["name"].get<std::string>() << " (" << f["bytes"].get<std::size_t>() << " bytes)\n";
    }
    if (j.contains("conflict_copies") && !j["conflict_copies"].empty()) {
        pending = true;
        std::cout << "conflict copies of the storage (commits of another device; shamirfs merge brings them back):\n";
        for (const auto& c : j["conflict_copies"]) std::cout << "  " << c.get<std::string>() << "\n";
    }
    std::cout << "recent log:\n";
    for (const auto& line : j["log"]) std::cout << "  " << line.get<std::string>() << "\n";
    return pending ? exit_code::pending : exit_code::ok;
}

int cmd_update(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile"}, {"dry-run"});
    if (a.all("keyfile").empty() && a.all("passfile").size() > 1) throw Error(Errc::usage, "--passfile given more than once");
    if (a.positional.size() != 2) throw Error(Errc::usage, "update needs STORAGE and NEW.json (or -)");
    cli::DocumentFile source(a.positional[1]);
    Store store(a.positional[0], cli_options());
    // The document is read (a large file: mapped), compressed and checked
    // while the KDF runs (none of it needs the key); standard input is read
    // first (a prompt may need it).
    std::span<const std::uint8_t> doc;
    std::optional<PreparedDocument> prepared;
    auto read_and_prepare = [&] {
        doc = source.bytes();
        if (!a.flag("dry-run")) prepared.emplace(store.prepare(doc, [&] { source.check_unchanged(); }));
    };
    std::future<void> reading;
    if (source.is_stdin()) read_and_prepare();
    else reading = std::async(std::launch::async, read_and_prepare);
    std::vector<Partition> parts = open_partitions(store, a);
    if (reading.valid()) reading.get();
    const Partition& p = parts[0];
    if (a.flag("dry-run")) {
        DryRunResult d = store.dry_run(p, doc);
        std::cout << "dry run: nothing written\n"
                  << "rows now: " << d.rows_now << "\n"
                  << "rows after: " << d.rows_after << "\n"
                  << "document bytes: " << d.bytes_now << " -> " << d.bytes_after << "\n"
                  << "size change: " << (d.size_change_percent >= 0 ? "+" : "") << fixed(d.size_change_percent, 1)
                  << " %\n"
                  << "capacity: " << d.capacity_before << " -> " << d.capacity_after << " rows\n"
                  << "estimated time: " << fixed(d.estimated_seconds, 3) << " s\n";
        if (d.large_change) std::cout << "warning: the document's size changes by more than 50 %\n";
        return exit_code::ok;
    }
    warn_if_deniable(store, parts.size());
    const auto keep = others(parts, 1);
    CommitResult r = store.commit(p, std::move(*prepared), keep);
    if (r.replaced_concurrent_change)
        std::cerr << "shamirfs: warning: another writer changed this partition since it was read; "
                     "this update replaced that change\n";
    std::cout << "committed: " << r.document_bytes << " bytes\n"
              << "rebased: " << (r.rebased ? "yes" : "no") << "\n"
              << "document rows: " << r.document_rows << "\n"
              << "rows rewritten: " << r.rows_rewritten << "\n"
              << "shares regenerated: " << r.shares_regenerated << "\n"
              << "capacity: " << r.capacity_before << " -> " << r.capacity_after << " rows\n"
              << "bytes written: " << r.bytes_written << "\n"
              << "time: " << fixed(r.seconds, 3) << " s\n";
    return exit_code::ok;
}

int cmd_edit(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile"}, {});
    if (a.all("keyfile").empty() && a.all("passfile").size() > 1) throw Error(Errc::usage, "--passfile given more than once");
    if (a.positional.size() != 1) throw Error(Errc::usage, "edit needs exactly one STORAGE path");
    Store store(a.positional[0], cli_options());
    std::vector<Partition> parts = open_partitions(store, a);
    warn_if_deniable(store, parts.size());
    return cli::edit_document(store, parts[0], others(parts, 1));
}

int cmd_merge(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile", "base"}, {"remove"});
    if (a.positional.empty()) throw Error(Errc::usage, "merge needs STORAGE");
    const std::string storage = a.positional[0];
    std::vector<std::string> copies(a.positional.begin() + 1, a.positional.end());
    if (copies.empty()) copies = conflict_copies(storage);
    if (copies.empty()) {
        std::cout << "nothing to merge: no conflict copies beside " << storage << "\n";
        return exit_code::ok;
    }
    Store store(storage, cli_options());
    store.recover();
    std::vector<Partition> parts;
    if (!a.all("keyfile").empty()) parts = open_partitions(store, a);
    std::vector<const Partition*> unlocked;
    std::vector<std::string> labels;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        unlocked.push_back(&parts[i]);
        codec::Meta meta;
        try {
            store.open(parts[i], &meta);
        } catch (const Error&) {
        }
        labels.push_back(meta.label.empty() ? cli::default_label(static_cast<unsigned>(i)) : meta.label);
    }
    if (store.matrix().params().mode == StorageMode::deniable) warn_if_deniable(store, parts.size());
    MergeReport r = merge_versions(store, copies, a.value("base"), unlocked, labels);
    for (const auto& line : r.lines) std::cout << line << "\n";
    for (const auto& c : r.merged) {
        if (a.flag("remove")) {
            remove_file(c);
            std::cout << "removed " << c << "\n";
        } else {
            if (::rename(c.c_str(), (c + ".merged").c_str()) != 0) throw_errno("cannot move " + c + " aside", errno);
            std::cout << "moved " << c << " aside to " << c << ".merged\n";
        }
    }
    for (const auto& c : r.kept) std::cout << "kept " << c << " (it still holds what the storage does not)\n";
    return r.kept.empty() ? exit_code::ok : exit_code::pending;
}

int cmd_info(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {}, {"json"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "info needs exactly one STORAGE path");
    Store store(a.positional[0], cli_options());
    store.recover();
    const Matrix& m = store.load();
    const auto& p = m.params();
    struct stat st{};
    ::stat(a.positional[0].c_str(), &st);
    if (a.flag("json")) {
        nlohmann::ordered_json j = {{"format_version", p.version},
                                    {"field", kFieldName},
                                    {"threshold", p.threshold},
                                    {"shares", p.shares},
                                    {"slots", p.slots},
                                    {"columns", p.columns()},
                                    {"chunk_bytes", kChunkBytes},
                                    {"chunks_per_row", p.pack},
                                    {"capacity_classes_per_doubling", p.growth},
                                    {"mode", p.mode == StorageMode::deniable ? "deniable" : "shared"},
                                    {"capacity", m.capacity()},
                                    {"kdf", {{"algorithm", kKdfAlgorithm}, {"ops", p.kdf.ops}, {"mem", p.kdf.mem}}},
                                    {"file_bytes", st.st_size}};
        std::cout << j.dump(2) << "\n";
        return exit_code::ok;
    }
    std::cout << "format version: " << p.version << "\n"
              << "field: GF(" << kFieldName << ")\n"
              << "threshold: " << p.threshold << "\n"
              << "shares per row: " << p.shares << "\n"
              << "slots: " << p.slots << " (the most documents this storage can ever hold)\n"
              << "columns: " << p.columns() << "\n"
              << "chunk bytes: " << kChunkBytes << "\n"
              << "chunks per row: " << p.pack << "\n"
              << "capacity classes per doubling: " << p.growth << "\n"
              << "mode: " << (p.mode == StorageMode::deniable ? "deniable" : "shared") << "\n"
              << "capacity: " << m.capacity() << " rows\n"
              << "kdf: " << kKdfAlgorithm << ", ops " << p.kdf.ops << ", memory " << p.kdf.mem << " bytes\n"
              << "file size: " << st.st_size << " bytes\n";
    return exit_code::ok;
}

int cmd_fsck(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile"}, {"repair"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "fsck needs exactly one STORAGE path");
    if (a.value("passfile") && !a.value("keyfile")) throw Error(Errc::usage, "--passfile needs --keyfile");
    Store store(a.positional[0], cli_options());
    std::optional<Partition> p;
    if (a.value("keyfile")) p = open_partition(store, a);
    FsckReport r = store.fsck(p ? &*p : nullptr, a.flag("repair"));
    for (const auto& action : r.recovery) std::cout << "recovery: " << action << "\n";
    std::cout << "slot rows checked: " << r.rows_checked << "\n"
              << "bad cells: " << r.bad_cells << "\n"
              << "repaired cells: " << r.repaired_cells << "\n"
              << "unrecoverable rows: " << r.unrecoverable_rows << "\n"
              << "damaged header or separators: " << r.damaged_structure << "\n";
    for (const auto& line : r.problems) std::cout << "problem: " << line << "\n";
    std::cout << "document: " << (!r.document_checked ? "not checked (no credentials)" : r.document_ok ? "ok" : "damaged")
              << "\n";
    bool all_fixed = r.unrecoverable_rows == 0 && r.unrepaired_rows == 0 && r.repaired_cells == r.bad_cells &&
                     (!r.document_checked || r.document_ok);
    if (r.clean()) {
        std::cout << "status: clean\n";
        return exit_code::ok;
    }
    if (a.flag("repair") && all_fixed) {
        std::cout << "status: repaired\n";
        return exit_code::repaired;
    }
    std::cout << "status: damaged" << (a.flag("repair") ? "" : " (run with --repair to fix what can be fixed)") << "\n";
    return exit_code::damaged;
}

int cmd_add(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile", "label", "key-out", "new-passfile"}, {"all-unlocked"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "add needs exactly one STORAGE path");
    auto label = a.value("label"), key_out = a.value("key-out");
    if (!label || !key_out) throw Error(Errc::usage, "add needs --label and --key-out FILE");
    check_label(*label);
    struct stat st;
    if (::stat(key_out->c_str(), &st) == 0) throw Error(Errc::usage, *key_out + " already exists");
    Store store(a.positional[0], cli_options());
    std::vector<Partition> parts = open_partitions(store, a);
    require_all_unlocked(store, a, "add");
    SecureBuffer pw;
    if (auto f = a.value("new-passfile")) {
        pw = cli::read_secret_file(*f, "password file");
    } else {
        pw = cli::prompt_secret("Password for the new partition " + *label + ": ", "use --new-passfile FILE");
        if (cli::prompt_secret("Repeat it: ", "use --new-passfile FILE").view() != pw.view())
            throw Error(Errc::usage, "the passwords differ");
    }
    warn_if_deniable(store, parts.size() + 1);
    MapKey key = store.add(others(parts, 0), pw.view(), *label);
    write_key_file(*key_out, format_map_key(key));
    std::cerr << "added partition " << *label << "; its key is in " << *key_out
              << " (a lost key or password is a lost document: keep a copy)\n";
    return exit_code::ok;
}

// A new password, asked twice (again after a mismatch) or read from a file.
SecureBuffer new_password(const Args& a, const std::string& what) {
    if (auto f = a.value("new-passfile")) return cli::read_secret_file(*f, "password file");
    return ask_twice("New password for " + what + ": ", "Repeat the new password: ", "use --new-passfile FILE",
                     "new passwords");
}

int cmd_passwd(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile", "new-passfile"}, {});
    if (a.positional.size() != 1) throw Error(Errc::usage, "passwd needs exactly one STORAGE path");
    Store store(a.positional[0], cli_options());
    Unlocked u = unlock_one(store, a);
    SecureBuffer npw = new_password(a, "this partition");
    warn_if_deniable(store, 1);
    store.passwd(u.partition, u.key, npw.view());
    std::cerr << "password changed: the old one no longer opens this partition (a lost password is a lost document)\n";
    return exit_code::ok;
}

int cmd_rekey(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile", "new-key-out"}, {});
    if (a.positional.size() != 1) throw Error(Errc::usage, "rekey needs exactly one STORAGE path");
    auto out = a.value("new-key-out");
    if (!out) throw Error(Errc::usage, "rekey needs --new-key-out FILE");
    if (struct stat st; ::stat(out->c_str(), &st) == 0) throw Error(Errc::usage, *out + " already exists");
    Store store(a.positional[0], cli_options());
    Unlocked u = unlock_one(store, a);  // the partition keeps its password
    warn_if_deniable(store, 1);
    // The new key is on disk before the storage knows it: if the commit fails
    // it is removed, and the old key still works.
    MapKey nk = make_map_key(u.partition.slot);
    write_key_file(*out, format_map_key(nk));
    try {
        store.rekey(u.partition, nk, u.password.view());
    } catch (...) {
        ::unlink(out->c_str());
        throw;
    }
    std::cerr << "new key in " << *out << ": the old key no longer opens this partition (a lost key is a lost document)\n";
    return exit_code::ok;
}

int cmd_shrink(int argc, char** argv, int first) {
    Args a = cli::parse_args(argc, argv, first, {"keyfile", "passfile"}, {"all-unlocked"});
    if (a.positional.size() != 1) throw Error(Errc::usage, "shrink needs exactly one STORAGE path");
    Store store(a.positional[0], cli_options());
    std::vector<Partition> parts = open_partitions(store, a);
    require_all_unlocked(store, a, "shrink");
    warn_if_deniable(store, parts.size());
    CommitResult r = store.shrink(others(parts, 0));
    std::cout << "capacity: " << r.capacity_before << " -> " << r.capacity_after << " rows\n";
    if (r.bytes_written) std::cout << "bytes written: " << r.bytes_written << "\n";
    return exit_code::ok;
}

// "shamirfs STORAGE MOUNTPOINT -o OPTIONS" is how mount.fuse3 runs an fstab
// line of type fuse.shamirfs: hand it to mount.shamirfs beside this binary.
int exec_mount_helper(int argc, char** argv, int first) {
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) throw_errno("cannot find mount.shamirfs", errno);
    self[n] = '\0';
    std::string dir(self), helper;
    dir = dir.substr(0, dir.rfind('/'));
    for (const std::string& candidate : {dir + "/mount.shamirfs", dir + "/../sbin/mount.shamirfs", std::string("/sbin/mount.shamirfs")})
        if (::access(candidate.c_str(), X_OK) == 0) {
            helper = candidate;
            break;
        }
    if (helper.empty()) throw Error(Errc::io, "mount.shamirfs not found beside " + std::string(self));
    std::vector<char*> args{const_cast<char*>(helper.c_str())};
    for (int i = first; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    ::execv(helper.c_str(), args.data());
    throw_errno("cannot run " + helper, errno);
}

}  // namespace

namespace {

using Command = int (*)(int, char**, int);
const std::vector<std::pair<std::string, Command>> kCommands = {
    {"create", cmd_create}, {"cat", cmd_cat},       {"status", cmd_status}, {"update", cmd_update},
    {"info", cmd_info},     {"fsck", cmd_fsck},     {"add", cmd_add},       {"passwd", cmd_passwd},
    {"rekey", cmd_rekey},   {"shrink", cmd_shrink}, {"merge", cmd_merge},   {"edit", cmd_edit},
};

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
            diag = up;
        }
    }
    return row[b.size()];
}

// A percentage on the terminal while a long command works (create, update,
// fsck, shrink, merge, ...): shown after a second, on standard error only if
// it is a terminal, and wiped before the command prints anything (it taps
// std::cout and std::cerr for that) or ends.
class ProgressLine {
public:
    explicit ProgressLine(std::string what) : what_(std::move(what)) {
        if (::isatty(2) != 1) return;
        taps_[0].attach(std::cout, this);
        taps_[1].attach(std::cerr, this);
        thread_ = std::thread([this] {
            const auto t0 = std::chrono::steady_clock::now();
            std::unique_lock lock(mutex_);
            bool shown = false;
            while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return done_; })) {
                const double f = progress::fraction();
                if (f < 0 || std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)) continue;
                std::fprintf(stderr, "\rshamirfs: %s %3.0f %%", what_.c_str(), 100 * f);
                shown = true;
            }
            if (shown) std::fprintf(stderr, "\r\033[K");
        });
    }
    ~ProgressLine() {
        stop();
        for (auto& t : taps_) t.detach();
    }
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;

private:
    void stop() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    // Stands between a stream and its buffer: the first output ends the line.
    class Tap : public std::streambuf {
    public:
        void attach(std::ostream& os, ProgressLine* owner) {
            os_ = &os;
            owner_ = owner;
            out_ = os.rdbuf(this);
        }
        void detach() {
            if (os_) os_->rdbuf(out_);
            os_ = nullptr;
        }

    private:
        int overflow(int c) override {
            owner_->stop();
            return c == traits_type::eof() ? traits_type::not_eof(c) : out_->sputc(static_cast<char>(c));
        }
        std::streamsize xsputn(const char* s, std::streamsize n) override {
            owner_->stop();
            return out_->sputn(s, n);
        }
        int sync() override { return out_->pubsync(); }
        std::ostream* os_ = nullptr;
        ProgressLine* owner_ = nullptr;
        std::streambuf* out_ = nullptr;
    };

    std::string what_;
    Tap taps_[2];
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool done_ = false;
};

// Said by every command on a storage: what a sync engine left beside it.
void warn_of_conflict_copies(const std::string& storage) {
    auto copies = conflict_copies(storage);
    if (copies.empty()) return;
    std::string names;
    for (const auto& c : copies) names += (names.empty() ? "" : ", ") + c.substr(c.rfind('/') + 1);
    std::cerr << "shamirfs: warning: " << copies.size() << " conflict cop" << (copies.size() == 1 ? "y" : "ies")
              << " of this storage lie beside it (" << names
              << "): commits made on another device at the same time; shamirfs merge " << storage
              << " brings them back\n";
}

// The usage lines of one command (its entry in kUsage).
std::string usage_of(const std::string& cmd) {
    std::istringstream in(kUsage);
    std::string line, out;
    bool mine = false;
    while (std::getline(in, line)) {
        if (line.rfind("  " + cmd + " ", 0) == 0) mine = true;
        else if (line.rfind("  ", 0) == 0 && line.rfind("   ", 0) != 0) mine = false;
        if (mine) out += line + "\n";
    }
    return "usage: shamirfs [-v|-q] " + out.substr(2) + "See shamirfs(1).\n";
}

}  // namespace

int main(int argc, char** argv) {
    // A core dump would hold keys and documents.
    struct rlimit no_core = {0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    // -v and -q are global options, wherever they stand.
    std::vector<char*> args;
    for (int k = 0; k < argc; ++k) {
        const std::string s = argv[k];
        if (k > 0 && (s == "-v" || s == "--verbose")) log::set_level(log::Level::debug);
        else if (k > 0 && (s == "-q" || s == "--quiet")) log::set_level(log::Level::error);
        else args.push_back(argv[k]);
    }
    argc = static_cast<int>(args.size());
    argv = args.data();
    const int i = 1;
    if (i >= argc) {
        std::cerr << kUsage;
        return exit_code::usage;
    }
    std::string cmd = argv[i];
    if (log::level() == log::Level::info) log::set_level(log::Level::warn);  // CLI: quiet unless -v
    try {
        if (cmd == "--help" || cmd == "help" || cmd == "-h") {
            std::cout << kUsage;
            return exit_code::ok;
        }
        if (cmd == "--version") {
            std::cout << "shamirfs 0.1.0 (storage format " << kFormatVersion << ")\n";
            return exit_code::ok;
        }
        for (const auto& [name, run] : kCommands) {
            if (cmd != name) continue;
            for (int k = i + 1; k < argc; ++k)
                if (std::string(argv[k]) == "--help" || std::string(argv[k]) == "-h") {
                    std::cout << usage_of(name);
                    return exit_code::ok;
                }
            if (name != "create" && name != "status" && name != "merge" && i + 1 < argc && argv[i + 1][0] != '-')
                warn_of_conflict_copies(argv[i + 1]);
            std::optional<ProgressLine> shown;
            if (name != "status" && name != "cat" && name != "info" && name != "edit") shown.emplace(name);
            return run(argc, argv, i + 1);
        }
        // "shamirfs STORAGE MOUNTPOINT -o ..." (mount.fuse3 and fstab): the first
        // word is an existing file, never a mistyped command.
        struct stat st;
        if (cmd[0] != '-' && argc - i >= 2 && ::stat(cmd.c_str(), &st) == 0 && S_ISREG(st.st_mode))
            return exec_mount_helper(argc, argv, i);
        std::string nearest;
        std::size_t best = std::max<std::size_t>(2, cmd.size() / 2) + 1;  // suggest within a few edits
        for (const auto& [name, run] : kCommands)
            if (std::size_t d = edit_distance(cmd, name); d < best) best = d, nearest = name;
        std::cerr << "shamirfs: unknown command \"" << cmd << "\""
                  << (nearest.empty() ? "" : "; did you mean " + nearest + "?") << "\n(shamirfs --help for usage)\n";
        return exit_code::usage;
    } catch (const Error& e) {
        std::cerr << "shamirfs: " << e.what() << "\n";
        if (e.code() == Errc::usage) std::cerr << "(shamirfs --help for usage)\n";
        return exit_for(e.code());
    } catch (const std::bad_alloc&) {
        // A size limit of this machine, not a bug: the documented code for limits.
        std::cerr << "shamirfs: out of memory: the storage or document is too large for the memory this process may use "
                     "(ulimit -v, cgroup limits)\n";
        return exit_code::too_large;
    } catch (const std::exception& e) {
        std::cerr << "shamirfs: internal error: " << e.what() << "\n";
        return exit_code::internal;
    }
}
