// Merging versions of one storage: what a sync engine's conflict copies (or
// its version history) hold back is committed into the storage again, for
// `shamirfs merge` and a mount's -o automerge.
//
// For every unlocked partition the newest version (generation, then commit
// time; both sealed) becomes the document; another text that changed too
// (with a base: that differs from the base's) is kept as its draft, never
// dropped. With a base, a shared storage's slots that no unlocked partition
// holds are merged without credentials: a slot changed on one side only takes
// that side's cells; a slot changed on both sides is reported (its key is
// needed). A copy is merged when everything it holds is in the storage now.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shamirfs/store.hpp"

namespace shamirfs {

struct MergeReport {
    std::vector<std::string> lines;   // what came from where, and what could not be merged, one line each
    std::vector<std::string> merged;  // copies whose every difference is in the storage now
    std::vector<std::string> kept;    // copies that still hold something the storage does not
    bool changed = false;             // the storage was committed to
};

// Same parameters and salt: versions of one storage.
bool same_storage(const StorageParams& a, const StorageParams& b);

// `labels[i]` names `unlocked[i]` in the report.
MergeReport merge_versions(Store& store, const std::vector<std::string>& copies, const std::optional<std::string>& base,
                           std::span<const Partition* const> unlocked, std::span<const std::string> labels);

}  // namespace shamirfs
