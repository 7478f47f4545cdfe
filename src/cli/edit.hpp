// shamirfs edit (see edit.cpp).
#pragma once
#include <span>

#include "shamirfs/store.hpp"

namespace shamirfs::cli {

// Opens the partition's document (or its draft) in the user's editor on a
// memory-backed copy and commits the result once it is valid JSON. Returns
// the exit status.
int edit_document(Store& store, const Partition& p, std::span<const Partition* const> keep);

}  // namespace shamirfs::cli
