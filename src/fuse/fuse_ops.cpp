// Thin adapters: each FUSE request calls one MemFs method and returns its
// -errno, one request at a time (the loop has several threads; MemFs is not
// thread-safe). Exceptions never cross into libfuse: anything unexpected is
// logged and answered with EIO.
#include "fuse_ops.hpp"

#include <cerrno>
#include <cstring>
#include <mutex>

#include "shamirfs/log.hpp"

namespace shamirfs::fs {
namespace {

MemFs& fs() { return *static_cast<MemFs*>(fuse_get_context()->private_data); }
std::uint64_t fh_of(const fuse_file_info* fi) { return fi ? fi->fh : 0; }

std::mutex g_mutex;  // one request at a time in MemFs

template <typename F>
auto guarded(const char* op, F&& f) -> decltype(f()) {
    std::lock_guard<std::mutex> lock(g_mutex);
    try {
        return f();
    } catch (const std::exception& e) {
        log::error(std::string(op) + ": unexpected error: " + e.what());
    } catch (...) {
        log::error(std::string(op) + ": unexpected error");
    }
    return -EIO;
}

void* op_init(fuse_conn_info* conn, fuse_config* cfg) {
    cfg->use_ino = 1;          // stable st_ino per file
    cfg->hard_remove = 1;      // unlink really unlinks (no .fuse_hidden names)
    cfg->nullpath_ok = 1;      // operations on open, unlinked files come by handle
    // Every change of a name, an attribute or a content comes through the kernel
    // (the daemon never changes a file by itself: a refused commit leaves the
    // content as written, and other writers' commits are not shown), so the
    // kernel's caches stay exact and may be kept: names, attributes, and pages
    // across opens (a read is answered from memory without a request).
    cfg->entry_timeout = 1;
    cfg->negative_timeout = 0;
    cfg->attr_timeout = 1;
    cfg->kernel_cache = 1;
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);  // O_APPEND offsets and sizes from us
    return fuse_get_context()->private_data;
}

void op_destroy(void* data) { static_cast<MemFs*>(data)->finish(); }

int op_getattr(const char* path, struct stat* st, fuse_file_info* fi) {
    return guarded("getattr", [&] { return fs().getattr(path, fh_of(fi), st); });
}

int op_readdir(const char*, void* buf, fuse_fill_dir_t filler, off_t, fuse_file_info*, fuse_readdir_flags) {
    return guarded("readdir", [&] {
        std::vector<std::pair<std::string, struct stat>> entries;
        fs().list(entries);
        filler(buf, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
        filler(buf, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
        for (auto& [name, st] : entries) filler(buf, name.c_str(), &st, 0, static_cast<fuse_fill_dir_flags>(0));
        return 0;
    });
}

int op_create(const char* path, mode_t mode, fuse_file_info* fi) {
    return guarded("create", [&] {
        auto* ctx = fuse_get_context();
        return fs().create(path, mode, fi->flags, ctx->uid, ctx->gid, &fi->fh);
    });
}

int op_open(const char* path, fuse_file_info* fi) {
    return guarded("open", [&] { return fs().open(path, fi->flags, &fi->fh); });
}

int op_read(const char*, char* buf, size_t size, off_t off, fuse_file_info* fi) {
    return guarded("read", [&] { return static_cast<int>(fs().read(fi->fh, buf, size, off)); });
}

int op_write(const char*, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
    return guarded("write", [&] { return static_cast<int>(fs().write(fi->fh, buf, size, off)); });
}

int op_truncate(const char* path, off_t size, fuse_file_info* fi) {
    return guarded("truncate", [&] { return fs().truncate(path, fh_of(fi), size); });
}

int op_flush(const char*, fuse_file_info* fi) { return guarded("flush", [&] { return fs().flush(fi->fh); }); }
int op_fsync(const char*, int, fuse_file_info* fi) { return guarded("fsync", [&] { return fs().fsync(fi->fh); }); }
int op_release(const char*, fuse_file_info* fi) { return guarded("release", [&] { return fs().release(fi->fh); }); }
int op_fsyncdir(const char*, int, fuse_file_info*) { return 0; }
int op_unlink(const char* path) { return guarded("unlink", [&] { return fs().unlink(path); }); }

int op_rename(const char* from, const char* to, unsigned flags) {
    return guarded("rename", [&] { return fs().rename(from, to, flags); });
}

int op_symlink(const char* target, const char* path) {
    return guarded("symlink", [&] {
        auto* ctx = fuse_get_context();
        return fs().symlink(target, path, ctx->uid, ctx->gid);
    });
}

int op_readlink(const char* path, char* buf, size_t size) {
    return guarded("readlink", [&] { return fs().readlink(path, buf, size); });
}

int op_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
    return guarded("chmod", [&] { return fs().chmod(path, fh_of(fi), mode); });
}

int op_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
    return guarded("chown", [&] { return fs().chown(path, fh_of(fi), uid, gid, fuse_get_context()->uid); });
}

int op_utimens(const char* path, const struct timespec tv[2], fuse_file_info* fi) {
    return guarded("utimens", [&] { return fs().utimens(path, fh_of(fi), tv); });
}

int op_getxattr(const char* path, const char* name, char* value, size_t size) {
    return guarded("getxattr", [&] { return static_cast<int>(fs().getxattr(path, name, value, size)); });
}

int op_listxattr(const char* path, char* list, size_t size) {
    return guarded("listxattr", [&] { return static_cast<int>(fs().listxattr(path, list, size)); });
}

int op_setxattr(const char* path, const char* name, const char*, size_t, int) {
    return guarded("setxattr", [&] { return fs().setxattr(path, name); });
}

int op_removexattr(const char* path, const char* name) {
    return guarded("removexattr", [&] { return fs().removexattr(path, name); });
}

int op_statfs(const char*, struct statvfs* st) { return guarded("statfs", [&] { return fs().statfs(st); }); }

fuse_operations make_operations() {
    fuse_operations o{};
    o.init = op_init;
    o.destroy = op_destroy;
    o.getattr = op_getattr;
    o.readdir = op_readdir;
    o.create = op_create;
    o.open = op_open;
    o.read = op_read;
    o.write = op_write;
    o.truncate = op_truncate;
    o.flush = op_flush;
    o.fsync = op_fsync;
    o.release = op_release;
    o.fsyncdir = op_fsyncdir;
    o.unlink = op_unlink;
    o.rename = op_rename;
    o.symlink = op_symlink;
    o.readlink = op_readlink;
    o.chmod = op_chmod;
    o.chown = op_chown;
    o.utimens = op_utimens;
    o.getxattr = op_getxattr;
    o.listxattr = op_listxattr;
    o.setxattr = op_setxattr;
    o.removexattr = op_removexattr;
    o.statfs = op_statfs;
    return o;
}

}  // namespace

const fuse_operations& operations() {
    static const fuse_operations ops = make_operations();
    return ops;
}

}  // namespace shamirfs::fs
