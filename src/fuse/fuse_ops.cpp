// Thin adapters: each request calls one MemFs method (which is safe to call
// from the loop's several threads) and sends exactly one reply.
#include "fuse_ops.hpp"

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace shamirfs::fs {
namespace {

MemFs& fs(fuse_req_t req) {
    auto& m = *static_cast<MemFs*>(fuse_req_userdata(req));
    m.touch();  // (-o idle)
    return m;
}
std::uint64_t fh_of(const fuse_file_info* fi) { return fi ? fi->fh : 0; }

Caller caller_of(fuse_req_t req, bool with_groups = false) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    Caller c{ctx->uid, ctx->gid, {}};
    if (with_groups) {
        std::vector<gid_t> groups(64);
        int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
        if (n > static_cast<int>(groups.size())) {
            groups.resize(static_cast<std::size_t>(n));
            n = fuse_req_getgroups(req, n, groups.data());
        }
        groups.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        c.groups = std::move(groups);
    }
    return c;
}

fuse_entry_param entry_param(const Entry& e) {
    fuse_entry_param p{};
    p.ino = e.ino;
    p.generation = 1;
    p.attr = e.attr;
    p.attr_timeout = p.entry_timeout = e.timeout;
    return p;
}

void reply_entry(fuse_req_t req, int r, const Entry& e) {
    if (r != 0) {
        fuse_reply_err(req, -r);
        return;
    }
    const fuse_entry_param p = entry_param(e);
    fuse_reply_entry(req, &p);
}

void reply_attr(fuse_req_t req, int r, const struct stat& st, double timeout) {
    if (r != 0) fuse_reply_err(req, -r);
    else fuse_reply_attr(req, &st, timeout);
}

void reply_count(fuse_req_t req, long r) {
    if (r < 0) fuse_reply_err(req, static_cast<int>(-r));
    else fuse_reply_xattr(req, static_cast<std::size_t>(r));
}

void op_init(void*, fuse_conn_info* conn) {
    // O_APPEND offsets and sizes come from us, and every write reaches the
    // file system before close returns (commits happen at close).
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
    conn->want |= conn->capable & FUSE_CAP_ATOMIC_O_TRUNC;  // O_TRUNC comes with the open
    conn->max_write = kWriteChunk;  // (libfuse lowers it to what its buffer holds)
}

void op_destroy(void* data) { static_cast<MemFs*>(data)->finish(); }

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    Entry e;
    int r = fs(req).lookup(parent, name, &e);
    reply_entry(req, r, e);  // (an error is not kept as a negative entry)
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    fs(req).forget(ino, nlookup);
    fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    for (size_t i = 0; i < count; ++i) fs(req).forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    struct stat st{};
    double timeout = 0;
    int r = fs(req).getattr(ino, &st, &timeout);
    reply_attr(req, r, st, timeout);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
    SetAttr set;
    if (to_set & FUSE_SET_ATTR_MODE) set.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) set.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) set.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) set.size = attr->st_size;
    if (to_set & FUSE_SET_ATTR_ATIME) set.atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME) set.mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) set.atime = timespec{0, UTIME_NOW};
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) set.mtime = timespec{0, UTIME_NOW};
    struct stat st{};
    double timeout = 0;
    int r = fs(req).setattr(ino, fh_of(fi), set, caller_of(req, static_cast<bool>(to_set & FUSE_SET_ATTR_GID)), &st,
                            &timeout);
    reply_attr(req, r, st, timeout);
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    std::string target;
    int r = fs(req).readlink(ino, &target);
    if (r != 0) fuse_reply_err(req, -r);
    else fuse_reply_readlink(req, target.c_str());
}

void op_mknod(fuse_req_t req, fuse_ino_t, const char* name, mode_t, dev_t) {
    // Scratch space holds files, directories and symlinks only.
    fuse_reply_err(req, std::strlen(name) > 255 ? ENAMETOOLONG : EPERM);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    Entry e;
    int r = fs(req).mkdir(parent, name, mode, caller_of(req), &e);
    reply_entry(req, r, e);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) { fuse_reply_err(req, -fs(req).unlink(parent, name)); }
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { fuse_reply_err(req, -fs(req).rmdir(parent, name)); }

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
    Entry e;
    int r = fs(req).symlink(target, parent, name, caller_of(req), &e);
    reply_entry(req, r, e);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent, const char* new_name,
               unsigned flags) {
    fuse_reply_err(req, -fs(req).rename(parent, name, new_parent, new_name, flags));
}

void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char* name) {
    fuse_reply_err(req, std::strlen(name) > 255 ? ENAMETOOLONG : EPERM);  // one name per file
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    std::uint64_t fh = 0;
    int r = fs(req).open(ino, fi->flags, &fh);
    if (r != 0) {
        fuse_reply_err(req, -r);
        return;
    }
    fi->fh = fh;
    // Pages stay cached across opens: an inode's content changes only through
    // the kernel (an outside commit makes a new inode).
    fi->keep_cache = 1;
    if (fuse_reply_open(req, fi) == -ENOENT) fs(req).release(fh);  // the opener was interrupted
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
    Entry e;
    std::uint64_t fh = 0;
    int r = fs(req).create(parent, name, mode, fi->flags, caller_of(req), &e, &fh);
    if (r != 0) {
        fuse_reply_err(req, -r);
        return;
    }
    const fuse_entry_param p = entry_param(e);
    fi->fh = fh;
    fi->keep_cache = 1;
    if (fuse_reply_create(req, &p, fi) == -ENOENT) fs(req).release(fh);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    // Answered from the file's locked memory itself: no copy of the text.
    long r = fs(req).read(fi->fh, size, off, [&](const char* data, std::size_t len) { fuse_reply_buf(req, data, len); });
    if (r < 0) fuse_reply_err(req, static_cast<int>(-r));
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
    long r = fs(req).write(fi->fh, buf, size, off);
    if (r < 0) fuse_reply_err(req, static_cast<int>(-r));
    else fuse_reply_write(req, static_cast<std::size_t>(r));
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { fuse_reply_err(req, -fs(req).flush(fi->fh)); }
void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) { fuse_reply_err(req, -fs(req).fsync(fi->fh)); }
void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) { fuse_reply_err(req, -fs(req).release(fi->fh)); }

// A directory listing is taken whole at opendir, so that offsets stay
// meaningful while names come and go.
struct DirHandle {
    std::vector<DirEntry> entries;
};

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto* d = new DirHandle;
    int r = fs(req).readdir(ino, d->entries);
    if (r != 0) {
        delete d;
        fuse_reply_err(req, -r);
        return;
    }
    fi->fh = reinterpret_cast<std::uint64_t>(d);
    if (fuse_reply_open(req, fi) == -ENOENT) delete d;
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
    auto* d = reinterpret_cast<DirHandle*>(fi->fh);
    std::vector<char> buf(size);
    std::size_t used = 0;
    for (auto i = static_cast<std::size_t>(std::max<off_t>(off, 0)); i < d->entries.size(); ++i) {
        struct stat st{};
        st.st_ino = d->entries[i].ino;
        st.st_mode = d->entries[i].mode;
        std::size_t n = fuse_add_direntry(req, buf.data() + used, size - used, d->entries[i].name.c_str(), &st,
                                          static_cast<off_t>(i + 1));
        if (n > size - used) break;
        used += n;
    }
    fuse_reply_buf(req, buf.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    delete reinterpret_cast<DirHandle*>(fi->fh);
    fuse_reply_err(req, 0);
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void op_statfs(fuse_req_t req, fuse_ino_t) {
    struct statvfs st{};
    fs(req).statfs(&st);
    fuse_reply_statfs(req, &st);
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char*, const char*, size_t, int) {
    fuse_reply_err(req, -fs(req).setxattr(ino));
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    std::vector<char> buf(size);
    long r = fs(req).getxattr(ino, name, buf.data(), size);
    if (r >= 0 && size > 0) fuse_reply_buf(req, buf.data(), static_cast<std::size_t>(r));
    else reply_count(req, r);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    std::vector<char> buf(size);
    long r = fs(req).listxattr(ino, buf.data(), size);
    if (r >= 0 && size > 0) fuse_reply_buf(req, buf.data(), static_cast<std::size_t>(r));
    else reply_count(req, r);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char*) { fuse_reply_err(req, -fs(req).removexattr(ino)); }

fuse_lowlevel_ops make_operations() {
    fuse_lowlevel_ops o{};
    o.init = op_init;
    o.destroy = op_destroy;
    o.lookup = op_lookup;
    o.forget = op_forget;
    o.forget_multi = op_forget_multi;
    o.getattr = op_getattr;
    o.setattr = op_setattr;
    o.readlink = op_readlink;
    o.mknod = op_mknod;
    o.mkdir = op_mkdir;
    o.unlink = op_unlink;
    o.rmdir = op_rmdir;
    o.symlink = op_symlink;
    o.rename = op_rename;
    o.link = op_link;
    o.open = op_open;
    o.create = op_create;
    o.read = op_read;
    o.write = op_write;
    o.flush = op_flush;
    o.fsync = op_fsync;
    o.release = op_release;
    o.opendir = op_opendir;
    o.readdir = op_readdir;
    o.releasedir = op_releasedir;
    o.fsyncdir = op_fsyncdir;
    o.statfs = op_statfs;
    o.setxattr = op_setxattr;
    o.getxattr = op_getxattr;
    o.listxattr = op_listxattr;
    o.removexattr = op_removexattr;
    return o;
}

}  // namespace

const fuse_lowlevel_ops& operations() {
    static const fuse_lowlevel_ops ops = make_operations();
    return ops;
}

}  // namespace shamirfs::fs
