// The libfuse (3.14, high-level API) operations table over MemFs.
#pragma once
#define FUSE_USE_VERSION 35
#include <fuse.h>

#include "memfs.hpp"

namespace shamirfs::fs {

// private_data of the fuse session must point to the MemFs.
const fuse_operations& operations();

}  // namespace shamirfs::fs
