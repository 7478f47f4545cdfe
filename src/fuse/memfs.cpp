#include "memfs.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sodium.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "shamirfs/codec.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/log.hpp"

#include <nlohmann/json.hpp>

namespace shamirfs::fs {
namespace {

constexpr const char* kErrorXattr = "user.shamirfs.error";
constexpr const char* kStatusXattr = "user.shamirfs.status";

// Files that editors and tools make and remove on their own while saving:
// they vanish at unmount without a word (every other scratch file is named).
bool editor_temporary(const std::string& name) {
    auto ends = [&](std::string_view s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
    auto starts = [&](std::string_view s) { return name.rfind(s, 0) == 0; };
    if (name == "4913" || ends("~") || starts(".#") || (starts("#") && ends("#"))) return true;  // vim probe, backups, emacs
    if (name.size() > 4 && name[0] == '.' && name[name.size() - 4] == '.' && name[name.size() - 3] == 's' &&
        name[name.size() - 2] == 'w')
        return true;  // vim and nano swap files (.NAME.swp, .swo, ...)
    if (starts("sed") && name.size() == 9) return true;  // sed -i
    return ends(".tmp") || ends(".save") || starts(".goutputstream-") || name.find(".tmp.") != std::string::npos;
}

std::string iso_time(const struct timespec& t) {
    if (t.tv_sec == 0) return "";
    char out[32];
    struct tm utc{};
    std::strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%SZ", ::gmtime_r(&t.tv_sec, &utc));
    return out;
}

struct timespec now() {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t;
}

// Where a failed commit's errno comes from (documented in mount.shamirfs(8)).
int errno_for(Errc c) {
    switch (c) {
    case Errc::invalid_json: return EINVAL;
    case Errc::no_space: return ENOSPC;
    case Errc::read_only: return EROFS;
    case Errc::busy: return EBUSY;
    case Errc::too_large: return EFBIG;
    default: return EIO;
    }
}

}  // namespace

struct MemFs::Node {
    std::uint64_t ino = 0;
    bool is_symlink = false;
    std::string target;
    mode_t mode = S_IFREG | 0600;
    uid_t uid = 0;
    gid_t gid = 0;
    struct timespec atime {}, mtime{}, ctime{};
    SecureBuffer buf;            // capacity; the content is the first `size` bytes
    std::size_t size = 0;
    std::string error;           // why the last commit of this content was refused
    std::size_t* memory_used = nullptr;

    std::string_view content() const { return {reinterpret_cast<const char*>(buf.data()), size}; }
    ~Node() {
        if (memory_used) *memory_used -= size;
    }
};

struct MemFs::Handle {
    std::shared_ptr<Node> node;
    int flags = 0;
    bool modified = false;       // wrote (or ftruncated) since its last commit
    bool commit_failed = false;  // ... and a commit of that was refused
};

MemFs::MemFs(Store& store, std::vector<MountedPartition> partitions, std::vector<SecureBuffer> documents,
             std::vector<std::optional<SecureBuffer>> drafts, FsOptions options, struct timespec mtime)
    : store_(store), parts_(std::move(partitions)), opt_(options), root_(std::make_shared<Node>()) {
    root_->ino = 1;
    root_->mode = S_IFDIR | (0777 & ~opt_.umask);
    root_->uid = opt_.uid;
    root_->gid = opt_.gid;
    root_->atime = root_->mtime = root_->ctime = mtime;
    auto file = [&](SecureBuffer content) {
        auto n = std::make_shared<Node>();
        n->ino = next_ino_++;
        n->mode = S_IFREG | (0666 & ~opt_.umask);
        n->uid = opt_.uid;
        n->gid = opt_.gid;
        n->atime = n->mtime = n->ctime = mtime;
        n->memory_used = &memory_used_;
        n->size = content.size();
        memory_used_ += n->size;
        n->buf = std::move(content);
        return n;
    };
    state_.resize(parts_.size());
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        auto n = file(std::move(documents[i]));
        state_[i].committed_hash = content_hash(n->content());
        entries_[parts_[i].label + ".json"] = n;
        if (i < drafts.size() && drafts[i]) {
            auto d = file(std::move(*drafts[i]));
            state_[i].draft_hash = content_hash(d->content());
            entries_[draft_name(i)] = d;
        }
    }
}

std::string MemFs::draft_name(std::size_t part) const { return parts_[part].label + ".draft.json"; }

std::shared_ptr<MemFs::Node> MemFs::draft_node(std::size_t part) const {
    auto it = entries_.find(draft_name(part));
    return it == entries_.end() || it->second->is_symlink ? nullptr : it->second;
}

std::vector<const Partition*> MemFs::others(std::size_t part) const {
    std::vector<const Partition*> keep;  // a deniable storage keeps every partition of this mount
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (i != part) keep.push_back(&parts_[i].partition);
    return keep;
}

MemFs::~MemFs() = default;

int MemFs::partition_index(const std::string& name) const {
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (name == parts_[i].label + ".json") return static_cast<int>(i);
    return -1;
}

int MemFs::partition_of(const std::shared_ptr<Node>& n) const {
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        auto it = entries_.find(parts_[i].label + ".json");
        if (it != entries_.end() && it->second == n) return static_cast<int>(i);
    }
    return -1;
}

namespace {
// A name in the root directory ("/" and 1 to 255 bytes without '/'): 0, or
// the error for a path that is not one.
int name_error(const char* path) {
    if (path == nullptr || path[0] != '/' || path[1] == '\0' || std::strchr(path + 1, '/') != nullptr) return -ENOENT;
    if (std::strlen(path + 1) > 255) return -ENAMETOOLONG;
    return 0;
}
}  // namespace

std::shared_ptr<MemFs::Node> MemFs::lookup(const char* path, int* err) {
    if (path != nullptr && std::strcmp(path, "/") == 0) return root_;
    if (int e = name_error(path)) {
        *err = e;
        return nullptr;
    }
    auto it = entries_.find(path + 1);
    if (it == entries_.end()) {
        *err = -ENOENT;
        return nullptr;
    }
    return it->second;
}

MemFs::Handle* MemFs::handle(std::uint64_t fh) {
    auto it = handles_.find(fh);
    return it == handles_.end() ? nullptr : it->second.get();
}

std::shared_ptr<MemFs::Node> MemFs::node_of(const char* path, std::uint64_t fh, int* err) {
    if (fh != 0) {
        if (Handle* h = handle(fh)) return h->node;
        *err = -EBADF;
        return nullptr;
    }
    return lookup(path, err);
}

void MemFs::fill_stat(const Node& n, struct stat* st) const {
    std::memset(st, 0, sizeof(*st));
    st->st_ino = n.ino;
    st->st_mode = n.mode;
    st->st_nlink = S_ISDIR(n.mode) ? 2 : 1;
    st->st_uid = n.uid;
    st->st_gid = n.gid;
    st->st_size = static_cast<off_t>(S_ISDIR(n.mode) ? 4096 : n.is_symlink ? n.target.size() : n.size);
    st->st_blksize = 4096;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_atim = n.atime;
    st->st_mtim = n.mtime;
    st->st_ctim = n.ctime;
}

int MemFs::getattr(const char* path, std::uint64_t fh, struct stat* st) {
    int err = 0;
    auto n = node_of(path, fh, &err);
    if (!n) return err;
    fill_stat(*n, st);
    return 0;
}

int MemFs::list(std::vector<std::pair<std::string, struct stat>>& out) {
    for (const auto& [name, n] : entries_) {
        struct stat st;
        fill_stat(*n, &st);
        out.emplace_back(name, st);
    }
    return 0;
}

int MemFs::resize(Node& n, std::size_t size) {
    if (size > codec::kMaxDocument) return -EFBIG;
    if (size > n.size && memory_used_ + (size - n.size) > opt_.memory_max) return -ENOSPC;
    if (size > n.buf.size()) {
        std::size_t cap = std::max(size, std::max<std::size_t>(n.buf.size() * 2, 4096));
        cap = std::min<std::size_t>(cap, codec::kMaxDocument);
        try {
            SecureBuffer bigger(cap);
            if (n.size) std::memcpy(bigger.data(), n.buf.data(), n.size);
            n.buf = std::move(bigger);
        } catch (const std::exception&) {
            return -ENOSPC;
        }
    }
    if (size > n.size) std::memset(n.buf.data() + n.size, 0, size - n.size);
    else if (size < n.size) sodium_memzero(n.buf.data() + size, n.size - size);
    memory_used_ = memory_used_ - n.size + size;
    n.size = size;
    n.mtime = n.ctime = now();
    return 0;
}

int MemFs::create(const char* path, mode_t mode, int flags, uid_t uid, gid_t gid, std::uint64_t* fh) {
    int err = 0;
    auto n = lookup(path, &err);
    if (n) {
        if (flags & O_EXCL) return -EEXIST;
        return open(path, flags, fh);  // (the directory answers EISDIR there)
    }
    if (int e = name_error(path)) return e;
    n = std::make_shared<Node>();
    n->ino = next_ino_++;
    n->mode = S_IFREG | (mode & 07777);
    n->uid = uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = now();
    n->memory_used = &memory_used_;
    entries_[path + 1] = n;
    auto h = std::make_unique<Handle>();
    h->node = n;
    h->flags = flags;
    *fh = next_fh_++;
    handles_[*fh] = std::move(h);
    return 0;
}

int MemFs::open(const char* path, int flags, std::uint64_t* fh) {
    int err = 0;
    auto n = lookup(path, &err);
    if (!n) return err;
    if (n == root_) return -EISDIR;
    if (n->is_symlink) return -ELOOP;
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        // Truncated at open: not a finished write, so no commit point by itself.
        if (int r = resize(*n, 0)) return r;
    }
    auto h = std::make_unique<Handle>();
    h->node = n;
    h->flags = flags;
    *fh = next_fh_++;
    handles_[*fh] = std::move(h);
    return 0;
}

long MemFs::read(std::uint64_t fh, char* buf, std::size_t size, off_t offset) {
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    const Node& n = *h->node;
    if (offset < 0) return -EINVAL;
    auto off = static_cast<std::size_t>(offset);
    if (off >= n.size) return 0;
    std::size_t len = std::min(size, n.size - off);
    std::memcpy(buf, n.buf.data() + off, len);
    return static_cast<long>(len);
}

long MemFs::write(std::uint64_t fh, const char* buf, std::size_t size, off_t offset) {
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    if ((h->flags & O_ACCMODE) == O_RDONLY) return -EBADF;
    Node& n = *h->node;
    if (offset < 0) return -EINVAL;
    std::size_t off = (h->flags & O_APPEND) ? n.size : static_cast<std::size_t>(offset);
    if (off + size > n.size)
        if (int r = resize(n, off + size)) return r;
    std::memcpy(n.buf.data() + off, buf, size);
    n.mtime = n.ctime = now();
    h->modified = true;
    h->commit_failed = false;
    return static_cast<long>(size);
}

int MemFs::truncate(const char* path, std::uint64_t fh, off_t size) {
    if (size < 0) return -EINVAL;
    int err = 0;
    auto n = node_of(path, fh, &err);
    if (!n) return err;
    if (n == root_) return -EISDIR;
    if (n->is_symlink) return -EINVAL;
    if (int r = resize(*n, static_cast<std::size_t>(size))) return r;
    if (fh != 0) {
        Handle* h = handle(fh);
        h->modified = true;  // an explicit ftruncate is a change made by this handle
        h->commit_failed = false;
        return 0;
    }
    // truncate(2) by name is a complete change by itself.
    int part = partition_of(n);
    return part < 0 ? 0 : commit(n, part, "truncate");
}

int MemFs::commit(const std::shared_ptr<Node>& n, int part, const char* why) {
    const auto i = static_cast<std::size_t>(part);
    const std::string& label = parts_[i].label;
    PartState& st = state_[i];
    std::string hash = content_hash(n->content());
    if (hash == st.committed_hash || n->size == 0) {
        // An empty text is pending, not an error: "empty it, then append"
        // works, and nothing is committed until the text holds JSON.
        n->error.clear();
        return 0;
    }
    // At the default level the log says neither which partition nor how
    // large (it must not tell what the file hides); -v adds both.
    auto refused = [&](const std::string& reason, const char* verb) {
        n->error = st.refusal = reason;
        st.refused_at = now();
        log::error(std::string("a commit at ") + why + " " + verb + ": " + reason);
        log::debug("partition " + label + ": commit at " + why + " " + verb);
    };
    try {
        CommitResult r = store_.commit(parts_[i].partition, std::span(n->buf.data(), n->size), others(i));
        st.committed_hash = hash;
        st.committed_at = now();
        st.refusal.clear();
        st.draft_hash.reset();  // a commit drops the draft kept beside the document
        if (draft_node(i)) entries_.erase(draft_name(i));
        n->error.clear();
        log::info(std::string("committed at ") + why);
        log::debug("partition " + label + ": committed at " + why + " (" + std::to_string(r.document_bytes) +
                   " bytes, " + std::to_string(r.rows_rewritten) + " rows, " + std::to_string(r.seconds) + " s)");
        return 0;
    } catch (const Error& e) {
        refused(e.what(), "was refused");
        return -errno_for(e.code());
    } catch (const std::exception& e) {
        refused(std::string("internal error: ") + e.what(), "failed");
        return -EIO;
    }
}

int MemFs::commit_handle(std::uint64_t fh, const char* why) {
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    if (!h->modified) return 0;
    int part = partition_of(h->node);
    if (part < 0) return 0;  // a scratch file: nothing to commit (yet)
    int r = commit(h->node, part, why);
    if (r == 0) h->modified = false;
    else h->commit_failed = true;  // close keeps failing while the content is refused
    return r;
}

int MemFs::flush(std::uint64_t fh) { return commit_handle(fh, "close"); }
int MemFs::fsync(std::uint64_t fh) { return commit_handle(fh, "fsync"); }

int MemFs::release(std::uint64_t fh) {
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    if (h->modified && !h->commit_failed) {
        // Last resort: nobody will see this error, so it is logged only.
        int part = partition_of(h->node);
        if (part >= 0) commit(h->node, part, "release");
    }
    handles_.erase(fh);
    return 0;
}

int MemFs::unlink(const char* path) {
    int err = 0;
    auto n = lookup(path, &err);
    if (!n) return err;
    if (n == root_) return -EISDIR;
    entries_.erase(path + 1);  // a document's committed version stays in the storage
    return 0;
}

int MemFs::rename(const char* from, const char* to, unsigned flags) {
    if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return -EINVAL;
    int err = 0;
    auto src = lookup(from, &err);
    if (!src) return err;
    if (src == root_) return -EBUSY;
    if (int e = name_error(to)) return e;
    if (std::strcmp(from, to) == 0) return 0;
    if ((flags & RENAME_NOREPLACE) && entries_.count(to + 1)) return -EEXIST;
    int part = partition_index(to + 1);
    if (part >= 0) {
        if (src->is_symlink) return -EPERM;
        // A rename onto a document's name commits the content; refused, nothing moves.
        if (int r = commit(src, part, "rename")) return r;
    }
    entries_[to + 1] = src;
    entries_.erase(from + 1);
    src->ctime = now();
    return 0;
}

int MemFs::symlink(const char* target, const char* path, uid_t uid, gid_t gid) {
    int err = 0;
    if (lookup(path, &err)) return -EEXIST;
    if (int e = name_error(path)) return e;
    if (partition_index(path + 1) >= 0) return -EPERM;
    auto n = std::make_shared<Node>();
    n->ino = next_ino_++;
    n->is_symlink = true;
    n->target = target;
    n->mode = S_IFLNK | 0777;
    n->uid = uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = now();
    entries_[path + 1] = n;
    return 0;
}

int MemFs::readlink(const char* path, char* buf, std::size_t size) {
    int err = 0;
    auto n = lookup(path, &err);
    if (!n) return err;
    if (!n->is_symlink) return -EINVAL;
    if (size == 0) return -EINVAL;
    std::size_t len = std::min(size - 1, n->target.size());
    std::memcpy(buf, n->target.data(), len);
    buf[len] = '\0';
    return 0;
}

int MemFs::chmod(const char* path, std::uint64_t fh, mode_t mode) {
    int err = 0;
    auto n = node_of(path, fh, &err);
    if (!n) return err;
    n->mode = (n->mode & S_IFMT) | (mode & 07777);
    n->ctime = now();
    return 0;
}

int MemFs::chown(const char* path, std::uint64_t fh, uid_t uid, gid_t gid, uid_t caller) {
    int err = 0;
    auto n = node_of(path, fh, &err);
    if (!n) return err;
    bool uid_same = uid == static_cast<uid_t>(-1) || uid == n->uid;
    bool gid_same = gid == static_cast<gid_t>(-1) || gid == n->gid;
    if (caller != 0 && !(uid_same && gid_same)) return -EPERM;
    if (uid != static_cast<uid_t>(-1)) n->uid = uid;
    if (gid != static_cast<gid_t>(-1)) n->gid = gid;
    n->ctime = now();
    return 0;
}

int MemFs::utimens(const char* path, std::uint64_t fh, const struct timespec tv[2]) {
    int err = 0;
    auto n = node_of(path, fh, &err);
    if (!n) return err;
    struct timespec t = now();
    auto apply = [&](struct timespec& field, const struct timespec& v) {
        if (v.tv_nsec == UTIME_OMIT) return;
        field = v.tv_nsec == UTIME_NOW ? t : v;
    };
    if (tv == nullptr) {
        n->atime = n->mtime = t;
    } else {
        apply(n->atime, tv[0]);
        apply(n->mtime, tv[1]);
    }
    n->ctime = t;
    return 0;
}

std::string MemFs::error_of(const std::shared_ptr<Node>& n) const {
    // A document's refusal belongs to the partition, not to the inode: it
    // survives the rename dance of vim and emacs, until the text is committed.
    int part = partition_of(n);
    return part < 0 ? n->error : state_[static_cast<std::size_t>(part)].refusal;
}

long MemFs::getxattr(const char* path, const char* name, char* value, std::size_t size) {
    int err = 0;
    auto n = lookup(path, &err);
    if (!n) return err;
    std::string v;
    if (n == root_ && std::strcmp(name, kStatusXattr) == 0) v = status();
    else if (n != root_ && std::strcmp(name, kErrorXattr) == 0) v = error_of(n);
    if (v.empty()) return -ENODATA;
    if (size == 0) return static_cast<long>(v.size());
    if (size < v.size()) return -ERANGE;
    std::memcpy(value, v.data(), v.size());
    return static_cast<long>(v.size());
}

long MemFs::listxattr(const char* path, char* list, std::size_t size) {
    int err = 0;
    auto n = lookup(path, &err);
    if (!n) return err;
    const char* name = n == root_ ? kStatusXattr : kErrorXattr;
    if (n != root_ && error_of(n).empty()) return 0;
    std::size_t need = std::strlen(name) + 1;
    if (size == 0) return static_cast<long>(need);
    if (size < need) return -ERANGE;
    std::memcpy(list, name, need);
    return static_cast<long>(need);
}

int MemFs::setxattr(const char* path, const char*) {
    int err = 0;
    if (!lookup(path, &err)) return err;
    return -EOPNOTSUPP;  // ACLs and user attributes are not stored; tools fall back to chmod
}

int MemFs::removexattr(const char* path, const char*) {
    int err = 0;
    if (!lookup(path, &err)) return err;
    return -ENODATA;
}

int MemFs::statfs(struct statvfs* st) {
    std::memset(st, 0, sizeof(*st));
    st->f_bsize = st->f_frsize = 4096;
    st->f_blocks = opt_.memory_max / 4096;
    st->f_bfree = st->f_bavail = (opt_.memory_max - std::min(memory_used_, opt_.memory_max)) / 4096;
    st->f_files = 1u << 20;
    st->f_ffree = st->f_favail = st->f_files - entries_.size();
    st->f_namemax = 255;
    return 0;
}

void MemFs::relock() {
    for (auto& [name, n] : entries_) n->buf.relock();
    for (auto& [fh, h] : handles_) h->node->buf.relock();
    for (auto& p : parts_) {
        p.partition.keys.header_key.relock();
        p.partition.keys.body_key.relock();
        p.partition.keys.order_key.relock();
    }
}

std::vector<std::pair<std::string, std::size_t>> MemFs::scratch_files() const {
    std::vector<std::pair<std::string, std::size_t>> out;
    for (const auto& [name, n] : entries_) {
        if (partition_index(name) >= 0 || editor_temporary(name)) continue;
        bool draft = false;
        for (std::size_t i = 0; i < parts_.size(); ++i) draft = draft || name == draft_name(i);
        if (!draft) out.emplace_back(name, n->size);
    }
    return out;
}

std::string MemFs::status() const {
    nlohmann::ordered_json j;
    j["partitions"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        const PartState& st = state_[i];
        auto it = entries_.find(parts_[i].label + ".json");
        const bool pending = it != entries_.end() && content_hash(it->second->content()) != st.committed_hash;
        const bool draft = draft_node(i) != nullptr || st.draft_hash.has_value();
        j["partitions"].push_back({{"label", parts_[i].label},
                                   {"last_commit", iso_time(st.committed_at)},
                                   {"uncommitted_text", pending},
                                   {"draft", draft},
                                   {"last_refusal", st.refusal},
                                   {"refused_at", st.refusal.empty() ? "" : iso_time(st.refused_at)}});
    }
    j["scratch_files_lost_at_unmount"] = nlohmann::ordered_json::array();
    for (const auto& [name, size] : scratch_files()) j["scratch_files_lost_at_unmount"].push_back({{"name", name}, {"bytes", size}});
    j["log"] = log::recent();
    return j.dump();
}

void MemFs::finish() {
    if (finished_) return;
    finished_ = true;
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        PartState& st = state_[i];
        // What the partition should keep as its draft: a text at its name
        // that could not be committed, else the draft file's text, else none.
        std::shared_ptr<Node> keep;
        auto it = entries_.find(parts_[i].label + ".json");
        if (it != entries_.end() && !it->second->is_symlink && content_hash(it->second->content()) != st.committed_hash) {
            if (commit(it->second, static_cast<int>(i), "unmount") == 0 && it->second->size > 0)
                log::info("committed an unsaved text at unmount");
            else
                keep = it->second;
        }
        if (!keep) keep = draft_node(i);
        const std::optional<std::string> want = keep ? std::optional(content_hash(keep->content())) : std::nullopt;
        if (want == st.draft_hash) continue;
        try {
            std::optional<std::span<const std::uint8_t>> draft;
            if (keep) draft = std::span<const std::uint8_t>(keep->buf.data(), keep->size);
            store_.save_draft(parts_[i].partition, draft, others(i));
            st.draft_hash = want;
            log::info(keep ? "kept a text that could not be committed as a draft: it shows as LABEL.draft.json at "
                             "the next mount (shamirfs cat --draft prints it)"
                           : "dropped a draft whose file was removed");
        } catch (const Error& e) {
            log::error(std::string("a text that could not be committed is lost at unmount: ") + e.what());
        }
    }
    auto lost = scratch_files();
    if (!lost.empty()) {
        std::string names;
        for (const auto& [name, size] : lost) names += (names.empty() ? "" : ", ") + name + " (" + std::to_string(size) + " bytes)";
        log::warn("files that are not partitions vanish at unmount (the mount stores only the partition files): " + names);
    }
}

}  // namespace shamirfs::fs
