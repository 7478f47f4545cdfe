// The libfuse (3.14) low-level operations over MemFs: one reply per request.
#pragma once
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "memfs.hpp"

namespace shamirfs::fs {

// The session's userdata must be the MemFs.
const fuse_lowlevel_ops& operations();

}  // namespace shamirfs::fs
