#include "memfs.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "shamirfs/codec.hpp"
#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/log.hpp"
#include "shamirfs/merge.hpp"
#include "shamirfs/commit_protocol.hpp"

#include <nlohmann/json.hpp>

namespace shamirfs::fs {
namespace {

constexpr const char* kErrorXattr = "user.shamirfs.error";
constexpr const char* kStatusXattr = "user.shamirfs.status";
constexpr std::size_t kNameMax = 255;
constexpr std::size_t kDirBytes = 4096;  // what a directory counts against memory_max
constexpr double kStableTimeout = 1.0;   // names and attributes that change only through the kernel

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

// 0, or the error for a name that cannot be made in a directory.
int name_error(const std::string& name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) return -EINVAL;
    return name.size() > kNameMax ? -ENAMETOOLONG : 0;
}

// Any exception becomes EIO (with a log line): none may reach libfuse.
template <typename F>
auto no_throw(const char* op, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& e) {
        log::error(std::string(op) + ": unexpected error: " + e.what());
    } catch (...) {
        log::error(std::string(op) + ": unexpected error");
    }
    return -EIO;
}

}  // namespace

struct MemFs::Node {
    Ino ino = 0;
    mode_t mode = S_IFREG | 0600;
    uid_t uid = 0;
    gid_t gid = 0;
    struct timespec atime {}, mtime{}, ctime{};
    std::string target;          // a symlink's
    // A file's capacity; the content is the first `size` bytes. Shared with a
    // commit in progress (which reads it without the tree lock): a change
    // then copies it first (writable()).
    std::shared_ptr<SecureBuffer> buf = std::make_shared<SecureBuffer>();
    std::size_t size = 0;
    std::map<std::string, std::shared_ptr<Node>> children;  // a directory's
    Ino parent = kRootIno;       // a directory's, for ".."
    unsigned nlink = 0;          // names (a directory: + "." + its subdirectories' "..")
    std::uint64_t nlookup = 0;   // the kernel's references
    std::string error;           // why the last commit of this content was refused
    std::string vanished;        // a partition's text that the storage no longer holds: why
    std::size_t charged = 0;     // bytes counted in *memory_used
    std::size_t* memory_used = nullptr;

    bool is_dir() const { return S_ISDIR(mode); }
    bool is_file() const { return S_ISREG(mode); }
    std::string_view content() const { return {reinterpret_cast<const char*>(buf->data()), size}; }
    std::uint8_t* writable() {
        if (buf.use_count() > 1) {
            auto own = std::make_shared<SecureBuffer>(buf->size());
            if (size) std::memcpy(own->data(), buf->data(), size);
            buf = std::move(own);
        }
        return buf->data();
    }
    ~Node() {
        if (memory_used) *memory_used -= charged;
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
    : store_(store), parts_(std::move(partitions)), opt_(options) {
    root_ = new_node(S_IFDIR | (0777 & ~opt_.umask), opt_.uid, opt_.gid);
    root_->ino = kRootIno;
    root_->nlink = 2;
    root_->atime = root_->mtime = root_->ctime = mtime;
    --next_ino_;
    inodes_[kRootIno] = root_;
    auto file = [&](const std::string& name, SecureBuffer content) {
        auto n = new_node(S_IFREG | (0666 & ~opt_.umask), opt_.uid, opt_.gid);
        n->atime = n->mtime = n->ctime = mtime;
        n->charged = n->size = content.size();
        memory_used_ += n->size;
        n->buf = std::make_shared<SecureBuffer>(std::move(content));
        link(*root_, name, n);
        return n;
    };
    state_.resize(parts_.size());
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        state_[i].committed_hash = content_hash(file(parts_[i].label + ".json", std::move(documents[i]))->content());
        if (i < drafts.size() && drafts[i])
            state_[i].draft_hash = content_hash(file(draft_name(i), std::move(*drafts[i]))->content());
    }
    root_->mtime = root_->ctime = mtime;
    touch();
}

MemFs::~MemFs() = default;

// ---- the inode table ----

std::shared_ptr<MemFs::Node> MemFs::new_node(mode_t mode, uid_t uid, gid_t gid) {
    auto n = std::make_shared<Node>();
    n->ino = next_ino_++;
    n->mode = mode;
    n->uid = uid;
    n->gid = gid;
    n->atime = n->mtime = n->ctime = now();
    n->memory_used = &memory_used_;
    return n;
}

std::shared_ptr<MemFs::Node> MemFs::node(Ino ino) const {
    auto it = inodes_.find(ino);
    return it == inodes_.end() ? nullptr : it->second;
}

std::shared_ptr<MemFs::Node> MemFs::child(const Node& dir, const std::string& name) const {
    auto it = dir.children.find(name);
    return it == dir.children.end() ? nullptr : it->second;
}

int MemFs::existing(Ino parent, const std::string& name, std::shared_ptr<Node>& dir, std::shared_ptr<Node>& n) const {
    dir = node(parent);
    if (!dir) return -ENOENT;
    if (!dir->is_dir()) return -ENOTDIR;
    if (name.size() > kNameMax) return -ENAMETOOLONG;
    n = child(*dir, name);
    return n ? 0 : -ENOENT;
}

int MemFs::place_for(Ino parent, const std::string& name, std::shared_ptr<Node>& dir) const {
    dir = node(parent);
    if (!dir || dir->nlink == 0) return -ENOENT;  // (a removed directory takes no new names)
    if (!dir->is_dir()) return -ENOTDIR;
    return name_error(name);
}

void MemFs::link(Node& dir, const std::string& name, const std::shared_ptr<Node>& n) {
    dir.children[name] = n;
    inodes_[n->ino] = n;
    n->nlink += n->is_dir() ? 2 : 1;
    if (n->is_dir()) {
        n->parent = dir.ino;
        ++dir.nlink;
    }
    dir.mtime = dir.ctime = now();
}

void MemFs::unlink_node(Node& dir, const std::string& name) {
    auto it = dir.children.find(name);
    if (it == dir.children.end()) return;
    std::shared_ptr<Node> n = it->second;
    dir.children.erase(it);
    if (n->is_dir()) {
        --dir.nlink;
        n->nlink = 0;
    } else {
        --n->nlink;
    }
    n->ctime = dir.mtime = dir.ctime = now();
    drop_if_unused(n);
}

// An inode leaves the table when no name and no kernel reference hold it
// (open handles keep their own reference to the node).
void MemFs::drop_if_unused(const std::shared_ptr<Node>& n) {
    if (n->nlink == 0 && n->nlookup == 0 && n != root_) inodes_.erase(n->ino);
}

MemFs::Handle* MemFs::handle(std::uint64_t fh) {
    auto it = handles_.find(fh);
    return it == handles_.end() ? nullptr : it->second.get();
}

int MemFs::partition_index(const Node& dir, const std::string& name) const {
    if (&dir != root_.get()) return -1;  // partition files live in the root only
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (name == parts_[i].label + ".json") return static_cast<int>(i);
    return -1;
}

std::shared_ptr<MemFs::Node> MemFs::document(std::size_t part) const {
    return child(*root_, parts_[part].label + ".json");
}

int MemFs::partition_of(const std::shared_ptr<Node>& n) const {
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (document(i) == n) return static_cast<int>(i);
    return -1;
}

std::string MemFs::draft_name(std::size_t part) const { return parts_[part].label + ".draft.json"; }

std::shared_ptr<MemFs::Node> MemFs::draft_node(std::size_t part) const {
    auto n = child(*root_, draft_name(part));
    return n && n->is_file() ? n : nullptr;
}

std::vector<const Partition*> MemFs::others(std::size_t part) const {
    std::vector<const Partition*> keep;  // a deniable storage keeps every partition of this mount
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (i != part) keep.push_back(&parts_[i].partition);
    return keep;
}

// How long the kernel may keep a name and its attributes. The root and a
// draft change outside its sight (outside commits, a commit dropping the
// draft): it asks again each time. A partition's document is replaced by a
// new inode when an outside commit shows, and the watcher tells the kernel to
// forget the name then (watch_step); everything else changes only through it.
double MemFs::timeout_of(const Node& n) const {
    if (&n == root_.get()) return 0;
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (draft_node(i).get() == &n) return 0;
    return kStableTimeout;
}

bool MemFs::changes_outside(const Node& n) const {
    if (&n == root_.get()) return true;
    for (std::size_t i = 0; i < parts_.size(); ++i)
        if (document(i).get() == &n || draft_node(i).get() == &n) return true;
    return false;
}

void MemFs::fill_stat(const Node& n, struct stat* st) const {
    std::memset(st, 0, sizeof(*st));
    st->st_ino = n.ino;
    st->st_mode = n.mode;
    st->st_nlink = n.nlink;
    st->st_uid = n.uid;
    st->st_gid = n.gid;
    st->st_size = static_cast<off_t>(n.is_dir() ? kDirBytes : S_ISLNK(n.mode) ? n.target.size() : n.size);
    st->st_blksize = kWriteChunk;  // cp and others write in pieces of this size
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_atim = n.atime;
    st->st_mtim = n.mtime;
    st->st_ctim = n.ctime;
}

Entry MemFs::entry_of(const std::shared_ptr<Node>& n) {
    ++n->nlookup;
    inodes_[n->ino] = n;
    Entry e;
    e.ino = n->ino;
    fill_stat(*n, &e.attr);
    e.timeout = timeout_of(*n);
    return e;
}

int MemFs::charge(std::size_t bytes) {
    if (memory_used_ + bytes > opt_.memory_max) return -ENOSPC;
    memory_used_ += bytes;
    return 0;
}

int MemFs::resize(Node& n, std::size_t size, std::size_t written_from) {
    if (size > codec::kMaxDocument) return -EFBIG;
    if (size > n.size && memory_used_ + (size - n.size) > opt_.memory_max) return -ENOSPC;
    if (size > n.buf->size()) {
        std::size_t cap = std::max(size, std::max<std::size_t>(n.buf->size() * 2, 4096));
        cap = std::min<std::size_t>(cap, codec::kMaxDocument);
        try {
            auto bigger = std::make_shared<SecureBuffer>(cap);
            if (n.size) std::memcpy(bigger->data(), n.buf->data(), n.size);
            n.buf = std::move(bigger);
        } catch (const std::exception&) {
            return -ENOSPC;
        }
    }
    try {
        if (size > n.size) {
            const std::size_t zero_end = std::max(n.size, std::min(size, written_from));
            std::uint8_t* data = n.writable();  // (copied first if a commit holds it)
            std::memset(data + n.size, 0, zero_end - n.size);
        }
        else if (size < n.size) sodium_memzero(n.writable() + size, n.size - size);
    } catch (const std::exception&) {
        return -ENOSPC;
    }
    memory_used_ = memory_used_ - n.size + size;
    n.charged = n.size = size;
    n.mtime = n.ctime = now();
    return 0;
}

// ---- name operations ----

int MemFs::lookup(Ino parent, const std::string& name, Entry* e) {
    return no_throw("lookup", [&] {
        if (parent == kRootIno) check_outside();  // partition files live in the root
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir, n;
        if (int r = existing(parent, name, dir, n)) return r;
        *e = entry_of(n);
        return 0;
    });
}

void MemFs::forget(Ino ino, std::uint64_t nlookup) {
    Lock tree(tree_mu_);
    auto n = node(ino);
    if (!n) return;
    n->nlookup -= std::min(n->nlookup, nlookup);
    drop_if_unused(n);
}

int MemFs::getattr(Ino ino, struct stat* st, double* timeout) {
    return no_throw("getattr", [&] {
        Lock tree(tree_mu_);
        auto n = node(ino);
        if (!n) return -ENOENT;
        if (changes_outside(*n)) {
            tree.unlock();
            check_outside();
            tree.lock();
        }
        fill_stat(*n, st);
        *timeout = timeout_of(*n);
        return 0;
    });
}

int MemFs::setattr(Ino ino, std::uint64_t fh, const SetAttr& set, const Caller& caller, struct stat* st, double* timeout) {
    return no_throw("setattr", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> n;
        if (fh != 0) {
            Handle* h = handle(fh);
            if (!h) return -EBADF;
            n = h->node;
        } else {
            n = node(ino);
        }
        if (!n) return -ENOENT;
        const struct timespec t = now();
        if (set.uid || set.gid) {
            // Only root gives a file away; an owner may change its group to
            // one it belongs to.
            const bool uid_same = !set.uid || *set.uid == n->uid;
            const bool gid_ok = !set.gid || *set.gid == n->gid || *set.gid == caller.gid ||
                                std::find(caller.groups.begin(), caller.groups.end(), *set.gid) != caller.groups.end();
            if (caller.uid != 0 && !(uid_same && gid_ok && caller.uid == n->uid)) return -EPERM;
            if (set.uid) n->uid = *set.uid;
            if (set.gid) n->gid = *set.gid;
            n->ctime = t;
        }
        if (set.mode) {
            if (caller.uid != 0 && caller.uid != n->uid) return -EPERM;
            n->mode = (n->mode & S_IFMT) | (*set.mode & 07777);
            n->ctime = t;
        }
        auto apply = [&](struct timespec& field, const std::optional<struct timespec>& v) {
            if (!v) return;
            field = v->tv_nsec == UTIME_NOW ? t : *v;
            n->ctime = t;
        };
        apply(n->atime, set.atime);
        apply(n->mtime, set.mtime);
        if (set.size) {
            if (*set.size < 0) return -EINVAL;
            if (n->is_dir()) return -EISDIR;
            if (!n->is_file()) return -EINVAL;
            if (!n->vanished.empty()) return -EIO;
            if (int r = resize(*n, static_cast<std::size_t>(*set.size))) return r;
            if (fh != 0) {
                Handle* h = handle(fh);
                h->modified = true;  // an explicit ftruncate is a change made by this handle
                h->commit_failed = false;
            } else if (int part = partition_of(n); part >= 0) {
                // truncate(2) by name is a complete change by itself.
                if (int r = commit(tree, n, part, "truncate")) return r;
            }
        }
        fill_stat(*n, st);
        *timeout = timeout_of(*n);
        return 0;
    });
}

int MemFs::readdir(Ino ino, std::vector<DirEntry>& out) {
    return no_throw("readdir", [&] {
        if (ino == kRootIno) check_outside();
        Lock tree(tree_mu_);
        auto dir = node(ino);
        if (!dir) return -ENOENT;
        if (!dir->is_dir()) return -ENOTDIR;
        out.push_back({".", dir->ino, S_IFDIR});
        out.push_back({"..", dir->parent, S_IFDIR});
        for (const auto& [name, n] : dir->children) out.push_back({name, n->ino, n->mode});
        return 0;
    });
}

int MemFs::mkdir(Ino parent, const std::string& name, mode_t mode, const Caller& caller, Entry* e) {
    return no_throw("mkdir", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir;
        if (int r = place_for(parent, name, dir)) return r;
        if (child(*dir, name)) return -EEXIST;
        if (partition_index(*dir, name) >= 0) return -EPERM;  // a partition's name is for its document
        if (int r = charge(kDirBytes)) return r;
        auto n = new_node(S_IFDIR | (mode & 07777), caller.uid, caller.gid);
        n->charged = kDirBytes;
        link(*dir, name, n);
        *e = entry_of(n);
        return 0;
    });
}

int MemFs::rmdir(Ino parent, const std::string& name) {
    return no_throw("rmdir", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir, n;
        if (int r = existing(parent, name, dir, n)) return r;
        if (!n->is_dir()) return -ENOTDIR;
        if (!n->children.empty()) return -ENOTEMPTY;
        unlink_node(*dir, name);
        return 0;
    });
}

int MemFs::create(Ino parent, const std::string& name, mode_t mode, int flags, const Caller& caller, Entry* e,
                  std::uint64_t* fh) {
    return no_throw("create", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir;
        if (int r = place_for(parent, name, dir)) return r;
        auto n = child(*dir, name);
        if (n) {
            if (flags & O_EXCL) return -EEXIST;
            if (n->is_dir()) return -EISDIR;
            if (!n->is_file()) return -ELOOP;
            if (!n->vanished.empty()) return -EIO;
            if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
                if (int r = resize(*n, 0)) return r;
        } else {
            n = new_node(S_IFREG | (mode & 07777), caller.uid, caller.gid);
            link(*dir, name, n);
        }
        auto h = std::make_unique<Handle>();
        h->node = n;
        h->flags = flags;
        *fh = next_fh_++;
        handles_[*fh] = std::move(h);
        *e = entry_of(n);
        return 0;
    });
}

int MemFs::symlink(const std::string& target, Ino parent, const std::string& name, const Caller& caller, Entry* e) {
    return no_throw("symlink", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir;
        if (int r = place_for(parent, name, dir)) return r;
        if (target.size() > 4095) return -ENAMETOOLONG;
        if (child(*dir, name)) return -EEXIST;
        if (partition_index(*dir, name) >= 0) return -EPERM;
        auto n = new_node(S_IFLNK | 0777, caller.uid, caller.gid);
        n->target = target;
        link(*dir, name, n);
        *e = entry_of(n);
        return 0;
    });
}

int MemFs::readlink(Ino ino, std::string* target) {
    return no_throw("readlink", [&] {
        Lock tree(tree_mu_);
        auto n = node(ino);
        if (!n) return -ENOENT;
        if (!S_ISLNK(n->mode)) return -EINVAL;
        *target = n->target;
        return 0;
    });
}

int MemFs::unlink(Ino parent, const std::string& name) {
    return no_throw("unlink", [&] {
        Lock tree(tree_mu_);
        std::shared_ptr<Node> dir, n;
        if (int r = existing(parent, name, dir, n)) return r;
        if (n->is_dir()) return -EISDIR;
        unlink_node(*dir, name);  // a document's committed version stays in the storage
        return 0;
    });
}

int MemFs::rename(Ino parent, const std::string& name, Ino new_parent, const std::string& new_name, unsigned flags) {
    return no_throw("rename", [&] {
        if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return -EINVAL;
        Lock tree(tree_mu_);
        auto from_dir = node(parent), to_dir = node(new_parent);
        if (!from_dir || !to_dir) return -ENOENT;
        if (!from_dir->is_dir() || !to_dir->is_dir()) return -ENOTDIR;
        if (name.size() > kNameMax) return -ENAMETOOLONG;
        if (int r = name_error(new_name)) return r;
        auto src = child(*from_dir, name);
        if (!src) return -ENOENT;
        if (from_dir == to_dir && name == new_name) return 0;
        auto dst = child(*to_dir, new_name);
        if (dst && (flags & RENAME_NOREPLACE)) return -EEXIST;
        if (src->is_dir()) {
            // Not into itself: walk up from the target directory.
            for (auto d = to_dir; d && d != root_; d = node(d->parent))
                if (d == src) return -EINVAL;
            if (dst && !dst->is_dir()) return -ENOTDIR;
            if (dst && !dst->children.empty()) return -ENOTEMPTY;
        } else if (dst && dst->is_dir()) {
            return -EISDIR;
        }
        if (int part = partition_index(*to_dir, new_name); part >= 0) {
            if (!src->is_file()) return -EPERM;
            // A rename onto a document's name commits the content; refused, nothing moves.
            if (int r = commit(tree, src, part, "rename")) return r;
            // (the tree lock was let go during the commit: look again)
            if (child(*from_dir, name) != src) return -ENOENT;
            dst = child(*to_dir, new_name);
            if (dst && dst->is_dir()) return -EISDIR;
        }
        if (dst) unlink_node(*to_dir, new_name);
        unlink_node(*from_dir, name);
        link(*to_dir, new_name, src);  // (back in the inode table, if unlink_node took it out)
        src->ctime = now();
        return 0;
    });
}

// ---- open files ----

int MemFs::open(Ino ino, int flags, std::uint64_t* fh) {
    return no_throw("open", [&] {
        // (no look at the storage here: the kernel resolved the name already,
        // through a lookup that looked, or a name the watcher keeps current)
        Lock tree(tree_mu_);
        auto n = node(ino);
        if (!n) return -ENOENT;
        if (n->is_dir()) return -EISDIR;
        if (!n->is_file()) return -ELOOP;
        if (!n->vanished.empty()) return -EIO;
        if ((flags & O_ACCMODE) != O_WRONLY)
            if (int part = partition_of(n); part >= 0) state_[static_cast<std::size_t>(part)].outside_unread = false;
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
    });
}

long MemFs::read(std::uint64_t fh, std::size_t size, off_t offset,
                 const std::function<void(const char*, std::size_t)>& reply) {
    Lock tree(tree_mu_);
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    const Node& n = *h->node;
    if (offset < 0) return -EINVAL;
    const auto off = std::min(static_cast<std::size_t>(offset), n.size);
    const std::size_t len = std::min(size, n.size - off);
    reply(reinterpret_cast<const char*>(n.buf->data()) + off, len);
    return static_cast<long>(len);
}

long MemFs::write(std::uint64_t fh, const char* buf, std::size_t size, off_t offset) {
    Lock tree(tree_mu_);
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    if ((h->flags & O_ACCMODE) == O_RDONLY) return -EBADF;
    Node& n = *h->node;
    if (offset < 0) return -EINVAL;
    std::size_t off = (h->flags & O_APPEND) ? n.size : static_cast<std::size_t>(offset);
    if (off + size > n.size)
        if (int r = resize(n, off + size, off)) return r;
    try {
        std::memcpy(n.writable() + off, buf, size);
    } catch (const std::exception&) {
        return -ENOSPC;
    }
    n.mtime = n.ctime = now();
    h->modified = true;
    h->commit_failed = false;
    return static_cast<long>(size);
}

int MemFs::commit_handle(Lock& tree, std::uint64_t fh, const char* why) {
    Handle* h = handle(fh);
    if (!h) return -EBADF;
    if (!h->modified) return 0;
    std::shared_ptr<Node> n = h->node;
    int part = partition_of(n);
    if (part < 0) return 0;  // a scratch file: nothing to commit (yet)
    int r = commit(tree, n, part, why);
    if ((h = handle(fh)) == nullptr) return r;
    if (r == 0) h->modified = false;
    else h->commit_failed = true;  // close keeps failing while the content is refused
    return r;
}

int MemFs::flush(std::uint64_t fh) {
    return no_throw("flush", [&] {
        Lock tree(tree_mu_);
        return commit_handle(tree, fh, "close");
    });
}

int MemFs::fsync(std::uint64_t fh) {
    return no_throw("fsync", [&] {
        Lock tree(tree_mu_);
        return commit_handle(tree, fh, "fsync");
    });
}

int MemFs::release(std::uint64_t fh) {
    return no_throw("release", [&] {
        Lock tree(tree_mu_);
        Handle* h = handle(fh);
        if (!h) return -EBADF;
        if (h->modified && !h->commit_failed) {
            // Last resort: nobody will see this error, so it is logged only.
            std::shared_ptr<Node> n = h->node;
            if (int part = partition_of(n); part >= 0) commit(tree, n, part, "release");
        }
        handles_.erase(fh);
        return 0;
    });
}

// ---- commits ----

std::optional<MemFs::CommitJob> MemFs::prepare_commit(const std::shared_ptr<Node>& n, int part) {
    const auto i = static_cast<std::size_t>(part);
    std::string hash = content_hash(n->content());
    if (hash == state_[i].committed_hash || n->size == 0) {
        // An empty text is pending, not an error: "empty it, then append"
        // works, and nothing is committed until the text holds JSON.
        n->error.clear();
        return std::nullopt;
    }
    CommitJob job;
    job.part = i;
    job.text = n->buf;  // shared, not copied: a write meanwhile copies it first
    job.size = n->size;
    job.hash = std::move(hash);
    job.node = n;
    return job;
}

int MemFs::commit(Lock& tree, const std::shared_ptr<Node>& n, int part, const char* why) {
    const auto i = static_cast<std::size_t>(part);
    if (!state_[i].vanished.empty()) {
        n->error = state_[i].refusal = "the storage no longer holds this partition: " + state_[i].vanished;
        return -EIO;
    }
    std::optional<CommitJob> job = prepare_commit(n, part);
    if (!job) return 0;
    const std::string& label = parts_[i].label;
    // The commit runs without the tree lock (requests that only read or
    // write memory go on), under the storage lock (one commit at a time).
    tree.unlock();
    Lock storage(storage_mu_);
    commit_running_ = true;
    std::optional<CommitResult> result;
    std::string failure;
    Errc code = Errc::internal;
    try {
        result = store_.commit(parts_[i].partition, std::span(job->text->data(), job->size), others(i));
    } catch (const Error& e) {
        failure = e.what();
        code = e.code();
    } catch (const std::exception& e) {
        failure = std::string("internal error: ") + e.what();
    }
    commit_running_ = false;
    tree.lock();
    PartState& st = state_[i];
    // At the default level the log says neither which partition nor how
    // large (it must not tell what the file hides); -v adds both.
    if (!result) {
        n->error = st.refusal = failure;
        st.refused_at = now();
        log::error(std::string("a commit at ") + why + " was refused: " + failure);
        log::debug("partition " + label + ": commit at " + why + " was refused");
        return -errno_for(code);
    }
    const CommitResult& r = *result;
    st.committed_hash = job->hash;
    st.committed_at = now();
    st.refusal.clear();
    st.note.clear();
    if (st.stale_base || st.outside_unread || r.replaced_concurrent_change) {
        // Last writer wins, as on any file system; said where it can be seen.
        st.note = "this save replaced a version committed outside this mount that was not read here";
        log::warn(std::string("a commit at ") + why + " replaced a version committed outside this mount");
    }
    st.stale_base = st.outside_unread = false;
    if (r.rebased) force_refresh_ = true;  // the other partitions may have changed too
    st.draft_hash.reset();  // a commit drops the draft kept beside the document
    if (draft_node(i)) unlink_node(*root_, draft_name(i));
    job->node->error.clear();
    log::info(std::string("committed at ") + why);
    log::debug("partition " + label + ": committed at " + why + " (" + std::to_string(r.document_bytes) + " bytes, " +
               std::to_string(r.rows_rewritten) + " rows, " + std::to_string(r.seconds) + " s)");
    return 0;
}

// ---- outside changes ----

void MemFs::check_outside() {
    // A commit of this mount in progress holds the storage: it reads the file
    // again itself if needed, and nobody waits for it here.
    Lock storage(storage_mu_, std::try_to_lock);
    if (!storage.owns_lock()) {
        if (commit_running_) return;
        storage.lock();  // another request is reading the file again: its result is wanted
    }
    if (finished_) return;
    check_conflict_copies(storage);
    if (!force_refresh_ && !store_.changed_on_disk()) return;
    refresh(storage);
}

std::vector<std::string> MemFs::watch_step() {
    {
        Lock storage(storage_mu_);
        if (!finished_) {
            check_conflict_copies(storage);
            if (force_refresh_ || store_.changed_on_disk()) refresh(storage);
        }
    }
    Lock tree(tree_mu_);
    return std::exchange(replaced_names_, {});
}

void MemFs::check_conflict_copies(Lock& storage) {
    (void)storage;
    const auto t = std::chrono::steady_clock::now();
    if (t - copies_checked_ < std::chrono::seconds(1)) return;
    copies_checked_ = t;
    std::vector<std::string> copies = conflict_copies(store_.path());
    if (copies == copies_) return;
    copies_ = copies;
    if (copies.empty()) return;
    if (!opt_.automerge) {
        log::warn(std::to_string(copies.size()) + " conflict copies of the storage lie beside it (commits of another "
                  "device made at the same time): shamirfs merge, or mount with -o automerge");
        return;
    }
    std::vector<const Partition*> unlocked;
    std::vector<std::string> labels;
    for (const auto& p : parts_) {
        unlocked.push_back(&p.partition);
        labels.push_back(p.label);
    }
    try {
        MergeReport r = merge_versions(store_, copies, std::nullopt, unlocked, labels);
        for (const auto& line : r.lines) log::debug("automerge: " + line);
        for (const auto& c : r.merged) {
            if (::rename(c.c_str(), (c + ".merged").c_str()) != 0) log::warn("automerge: cannot move a merged copy aside");
        }
        log::info("automerge: merged " + std::to_string(r.merged.size()) + " conflict copies; " +
                  std::to_string(r.kept.size()) + " hold partitions not mounted here and stay");
        copies_ = conflict_copies(store_.path());
    } catch (const std::exception& e) {
        log::error(std::string("automerge failed: ") + e.what());
    }
    force_refresh_ = true;  // the merge read the file again (and may have committed): show what it holds
}

void MemFs::refresh(Lock& storage) {
    (void)storage;
    log::debug(force_refresh_ ? "reading the storage again after a merge or a rebased commit"
                              : "reading the storage again: it changed outside this mount");
    force_refresh_ = false;
    std::vector<std::optional<SecureBuffer>> docs(parts_.size());
    std::vector<codec::Meta> metas(parts_.size());
    std::vector<std::string> why(parts_.size());
    try {
        store_.load();
        for (std::size_t i = 0; i < parts_.size(); ++i) {
            try {
                docs[i] = store_.open(parts_[i].partition, &metas[i]).document;
            } catch (const Error& e) {
                why[i] = e.what();
            }
        }
    } catch (const Error& e) {
        if (e.code() == Errc::io) return;  // gone for a moment (a sync tool replacing it): look again later
        for (auto& w : why) w = e.what();
    }
    Lock tree(tree_mu_);
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        PartState& st = state_[i];
        std::shared_ptr<Node> old = document(i);
        if (!docs[i]) {
            if (st.vanished.empty()) log::error("the storage changed outside this mount and no longer opens a partition of it: " + why[i]);
            st.vanished = why[i];
            if (old && old->vanished.empty() && content_hash(old->content()) == st.committed_hash) {
                auto gone = new_node(old->mode, old->uid, old->gid);
                gone->vanished = why[i];
                unlink_node(*root_, parts_[i].label + ".json");
                link(*root_, parts_[i].label + ".json", gone);
                replaced_names_.push_back(parts_[i].label + ".json");
            }
            continue;  // (a text with changes not yet committed stays: its commit is refused)
        }
        const std::string hash = content_hash(docs[i]->view());
        const bool was_vanished = !st.vanished.empty();
        st.vanished.clear();
        if (hash == st.committed_hash && !(old && !old->vanished.empty())) continue;
        const bool pending = old && old->vanished.empty() && content_hash(old->content()) != st.committed_hash;
        st.committed_hash = hash;
        st.committed_at = {static_cast<time_t>(metas[i].time), 0};
        if (pending) {
            // Someone is editing this text: it stays; its next commit is a
            // plain last-writer-wins save, and says so.
            st.stale_base = true;
            log::warn("a partition changed outside this mount while its text here has changes not yet committed");
            continue;
        }
        auto fresh = new_node(old ? old->mode : S_IFREG | (0666 & ~opt_.umask), old ? old->uid : opt_.uid,
                              old ? old->gid : opt_.gid);
        fresh->charged = fresh->size = docs[i]->size();
        memory_used_ += fresh->size;
        fresh->buf = std::make_shared<SecureBuffer>(std::move(*docs[i]));
        if (old) unlink_node(*root_, parts_[i].label + ".json");
        link(*root_, parts_[i].label + ".json", fresh);
        replaced_names_.push_back(parts_[i].label + ".json");
        st.outside_unread = true;
        log::info(was_vanished ? "a partition opens again after an outside change; its text is shown"
                               : "a partition was committed outside this mount; its new text is shown");
    }
}

// ---- attributes of the file system ----

std::string MemFs::error_of(const std::shared_ptr<Node>& n) const {
    if (!n->vanished.empty()) return "the storage no longer holds this partition: " + n->vanished;
    // A document's refusal belongs to the partition, not to the inode: it
    // survives the rename dance of vim and emacs, until the text is committed.
    int part = partition_of(n);
    if (part < 0) return n->error;
    const PartState& st = state_[static_cast<std::size_t>(part)];
    return st.refusal.empty() ? st.note : st.refusal;
}

long MemFs::getxattr(Ino ino, const std::string& name, char* value, std::size_t size) {
    return no_throw("getxattr", [&]() -> long {
        Lock tree(tree_mu_);
        auto n = node(ino);
        if (!n) return -ENOENT;
        std::string v;
        if (n == root_ && name == kStatusXattr) {
            tree.unlock();
            v = status();
        } else if (n != root_ && name == kErrorXattr) {
            v = error_of(n);
        }
        if (v.empty()) return -ENODATA;
        if (size == 0) return static_cast<long>(v.size());
        if (size < v.size()) return -ERANGE;
        std::memcpy(value, v.data(), v.size());
        return static_cast<long>(v.size());
    });
}

long MemFs::listxattr(Ino ino, char* list, std::size_t size) {
    return no_throw("listxattr", [&]() -> long {
        Lock tree(tree_mu_);
        auto n = node(ino);
        if (!n) return -ENOENT;
        const char* name = n == root_ ? kStatusXattr : kErrorXattr;
        if (n != root_ && error_of(n).empty()) return 0;
        std::size_t need = std::strlen(name) + 1;
        if (size == 0) return static_cast<long>(need);
        if (size < need) return -ERANGE;
        std::memcpy(list, name, need);
        return static_cast<long>(need);
    });
}

int MemFs::setxattr(Ino ino) {
    Lock tree(tree_mu_);
    if (!node(ino)) return -ENOENT;
    return -EOPNOTSUPP;  // ACLs and user attributes are not stored; tools fall back to chmod
}

int MemFs::removexattr(Ino ino) {
    Lock tree(tree_mu_);
    if (!node(ino)) return -ENOENT;
    return -ENODATA;
}

int MemFs::statfs(struct statvfs* st) {
    Lock tree(tree_mu_);
    std::memset(st, 0, sizeof(*st));
    st->f_bsize = st->f_frsize = 4096;
    st->f_blocks = opt_.memory_max / 4096;
    st->f_bfree = st->f_bavail = (opt_.memory_max - std::min(memory_used_, opt_.memory_max)) / 4096;
    st->f_files = 1u << 20;
    st->f_ffree = st->f_favail = st->f_files - std::min<std::size_t>(inodes_.size(), st->f_files);
    st->f_namemax = kNameMax;
    return 0;
}

void MemFs::relock() {
    Lock tree(tree_mu_);
    for (auto& [ino, n] : inodes_) n->buf->relock();
    for (auto& [fh, h] : handles_) h->node->buf->relock();
    for (auto& p : parts_) {
        p.partition.keys.header_key.relock();
        p.partition.keys.body_key.relock();
        p.partition.keys.order_key.relock();
    }
}

// Scratch files and directories at the root, with the bytes under each.
std::vector<std::pair<std::string, std::size_t>> MemFs::scratch_files() const {
    std::vector<std::pair<std::string, std::size_t>> out;
    auto bytes = [](const Node& n, auto&& self) -> std::size_t {
        std::size_t total = n.size;
        for (const auto& [name, c] : n.children) total += self(*c, self);
        return total;
    };
    for (const auto& [name, n] : root_->children) {
        if (partition_index(*root_, name) >= 0 || editor_temporary(name)) continue;
        bool draft = false;
        for (std::size_t i = 0; i < parts_.size(); ++i) draft = draft || name == draft_name(i);
        if (draft) continue;
        if (n->is_dir() && n->children.empty()) continue;  // an empty directory holds nothing to lose
        out.emplace_back(n->is_dir() ? name + "/" : name, bytes(*n, bytes));
    }
    return out;
}

std::string MemFs::status() {
    Lock tree(tree_mu_);
    nlohmann::ordered_json j;
    j["partitions"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        const PartState& st = state_[i];
        auto doc = document(i);
        const bool pending = doc && doc->vanished.empty() && content_hash(doc->content()) != st.committed_hash;
        const bool draft = draft_node(i) != nullptr || st.draft_hash.has_value();
        j["partitions"].push_back({{"label", parts_[i].label},
                                   {"last_commit", iso_time(st.committed_at)},
                                   {"uncommitted_text", pending},
                                   {"draft", draft},
                                   {"last_refusal", st.refusal},
                                   {"refused_at", st.refusal.empty() ? "" : iso_time(st.refused_at)},
                                   {"outside_change", st.stale_base ? "a newer version was committed outside this "
                                                                      "mount while this text was edited"
                                                                    : st.note},
                                   {"vanished", st.vanished}});
    }
    j["scratch_files_lost_at_unmount"] = nlohmann::ordered_json::array();
    for (const auto& [name, size] : scratch_files()) j["scratch_files_lost_at_unmount"].push_back({{"name", name}, {"bytes", size}});
    j["conflict_copies"] = nlohmann::ordered_json::array();
    for (const auto& c : conflict_copies(store_.path())) j["conflict_copies"].push_back(c.substr(c.rfind('/') + 1));
    j["log"] = log::recent();
    return j.dump();
}

void MemFs::touch() {
    last_use_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();
}

double MemFs::idle_seconds() const {
    const std::int64_t now_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    return static_cast<double>(now_ns - last_use_ns_) / 1e9;
}

bool MemFs::has_open_files() const {
    Lock tree(tree_mu_);
    return !handles_.empty();
}

void MemFs::finish() {
    if (finished_) return;
    Lock storage(storage_mu_);
    Lock tree(tree_mu_);
    finished_ = true;
    for (std::size_t i = 0; i < parts_.size(); ++i) {
        PartState& st = state_[i];
        // What the partition should keep as its draft: a text at its name
        // that could not be committed, else the draft file's text, else none.
        std::shared_ptr<Node> keep;
        auto doc = document(i);
        if (doc && doc->is_file() && doc->vanished.empty() && content_hash(doc->content()) != st.committed_hash) {
            storage.unlock();  // commit() takes it
            const bool committed = commit(tree, doc, static_cast<int>(i), "unmount") == 0;
            tree.unlock();
            storage.lock();
            tree.lock();
            if (committed && doc->size > 0) log::info("committed an unsaved text at unmount");
            else keep = doc;
        }
        if (!st.vanished.empty()) continue;  // nothing can be written into a partition the storage no longer holds
        if (!keep) keep = draft_node(i);
        const std::optional<std::string> want = keep ? std::optional(content_hash(keep->content())) : std::nullopt;
        if (want == st.draft_hash) continue;
        try {
            std::optional<std::span<const std::uint8_t>> draft;
            if (keep) draft = std::span<const std::uint8_t>(keep->buf->data(), keep->size);
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
