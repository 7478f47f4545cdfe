#include "shamirfs/merge.hpp"

#include <algorithm>
#include <ctime>
#include <memory>

#include "shamirfs/error.hpp"
#include "shamirfs/fileio.hpp"
#include "shamirfs/log.hpp"

namespace shamirfs {
namespace {

std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::string when(std::uint64_t t) {
    char out[32];
    std::time_t s = static_cast<std::time_t>(t);
    struct tm utc{};
    std::strftime(out, sizeof(out), "%Y-%m-%d %H:%M:%SZ", ::gmtime_r(&s, &utc));
    return out;
}

// One partition as one file holds it.
struct Version {
    std::string from;  // file name
    SecureBuffer text;
    std::optional<SecureBuffer> draft;
    codec::Meta meta;
    std::string hash;
    bool newer_than(const Version& o) const {
        return meta.generation != o.meta.generation ? meta.generation > o.meta.generation : meta.time > o.meta.time;
    }
};

std::optional<Version> version_in(Store& s, const Partition& p, const std::string& from) {
    try {
        Version v;
        codec::Opened o = s.open(p, &v.meta);
        v.from = from;
        v.text = std::move(o.document);
        v.draft = std::move(o.draft);
        v.hash = content_hash(v.text.view());
        return v;
    } catch (const Error& e) {
        if (e.code() == Errc::auth_failed || e.code() == Errc::damaged) return std::nullopt;
        throw;
    }
}

}  // namespace

bool same_storage(const StorageParams& a, const StorageParams& b) {
    return a.version == b.version && a.threshold == b.threshold && a.shares == b.shares && a.slots == b.slots &&
           a.pack == b.pack && a.growth == b.growth && a.mode == b.mode && a.kdf.ops == b.kdf.ops &&
           a.kdf.mem == b.kdf.mem && a.kdf.salt == b.kdf.salt;
}

MergeReport merge_versions(Store& store, const std::vector<std::string>& copy_paths,
                           const std::optional<std::string>& base_path, std::span<const Partition* const> unlocked,
                           std::span<const std::string> labels) {
    MergeReport report;
    const StorageParams params = store.load().params();
    const bool deniable = params.mode == StorageMode::deniable;
    auto open_version_file = [&](const std::string& path) -> std::unique_ptr<Store> {
        auto s = std::make_unique<Store>(path);
        s->load();
        if (!same_storage(s->matrix().params(), params)) return nullptr;
        return s;
    };
    std::vector<std::unique_ptr<Store>> copies;
    std::vector<std::string> names;
    for (const auto& path : copy_paths) {
        auto s = open_version_file(path);
        if (!s) {
            report.lines.push_back(name_of(path) + " is not a version of this storage (other parameters or salt): left alone");
            report.kept.push_back(path);
            continue;
        }
        copies.push_back(std::move(s));
        names.push_back(path);
    }
    std::unique_ptr<Store> base;
    if (base_path) {
        base = open_version_file(*base_path);
        if (!base) throw Error(Errc::usage, *base_path + " is not a version of this storage (other parameters or salt)");
    }
    std::vector<bool> keep_copy(copies.size(), false);
    auto keep = [&](std::size_t c, const std::string& why) {
        keep_copy[c] = true;
        report.lines.push_back(name_of(names[c]) + ": " + why);
    };

    // Partitions with credentials: the newest version wins, another changed text is its draft.
    std::vector<unsigned> held;
    for (std::size_t i = 0; i < unlocked.size(); ++i) {
        const Partition& p = *unlocked[i];
        const std::string& label = labels[i];
        held.push_back(p.slot);
        std::vector<Version> versions;
        auto current = version_in(store, p, name_of(store.path()));
        for (std::size_t c = 0; c < copies.size(); ++c)
            if (auto v = version_in(*copies[c], p, name_of(names[c]))) versions.push_back(std::move(*v));
        std::optional<std::string> base_hash;
        if (base)
            if (auto b = version_in(*base, p, "base")) base_hash = b->hash;
        if (versions.empty()) {
            report.lines.push_back("partition " + label + ": in no copy");
            continue;
        }
        // The newest of all (the storage's own first, so that it wins a tie).
        const Version* newest = current ? &*current : nullptr;
        for (const auto& v : versions)
            if (!newest || v.newer_than(*newest)) newest = &v;
        codec::Meta top = newest->meta;  // its label, and the highest generation of all
        for (const auto& v : versions) top.generation = std::max(top.generation, v.meta.generation);
        // Texts that changed too and are neither the document nor kept already.
        const std::optional<std::string> kept_draft =
            current && current->draft ? std::optional(content_hash(current->draft->view())) : std::nullopt;
        std::vector<const Version*> others;
        auto consider = [&](const Version& v) {
            if (&v == newest || v.hash == newest->hash || v.hash == kept_draft || v.hash == base_hash) return;
            for (const Version* o : others)
                if (o->hash == v.hash) return;
            others.push_back(&v);
        };
        if (current) consider(*current);
        for (const auto& v : versions) consider(v);
        std::sort(others.begin(), others.end(), [](const Version* a, const Version* b) { return a->newer_than(*b); });
        const Version* draft = others.empty() ? nullptr : others.front();
        for (std::size_t k = 1; k < others.size(); ++k)
            for (std::size_t c = 0; c < copies.size(); ++c)
                if (others[k]->from == name_of(names[c]))
                    keep(c, "partition " + label + " has a third text here (generation " +
                                std::to_string(others[k]->meta.generation) + "); it stays in this copy");
        const bool new_document = !current || newest->hash != current->hash;
        if (!new_document && !draft) {
            report.lines.push_back("partition " + label + ": the storage has the newest text already (generation " +
                                   std::to_string(newest->meta.generation) + ")");
            continue;
        }
        const SecureBuffer& doc = newest->text;
        std::optional<std::span<const std::uint8_t>> draft_bytes;
        if (draft) draft_bytes = draft->text.bytes();
        else if (current && current->draft && !new_document) draft_bytes = current->draft->bytes();
        std::vector<const Partition*> others_kept;
        for (const Partition* q : unlocked)
            if (q != &p) others_kept.push_back(q);
        store.commit_merged(p, doc.bytes(), draft_bytes, top, others_kept);
        report.changed = true;
        std::string line = "partition " + label + ": ";
        line += new_document ? "document from " + newest->from + " (generation " + std::to_string(newest->meta.generation) +
                                   ", " + when(newest->meta.time) + ")"
                             : "document unchanged";
        if (draft)
            line += "; the text from " + draft->from + " (generation " + std::to_string(draft->meta.generation) +
                    ") changed too and is kept as its draft (LABEL.draft.json in a mount, shamirfs cat --draft)";
        report.lines.push_back(line);
    }

    // Slots without credentials: compared cell by cell.
    if (deniable && !copies.empty()) {
        report.lines.push_back("deniable storage: only the partitions given are merged, and every other one is erased by "
                               "any commit; give every partition's key and password");
    }
    const Matrix& now = store.matrix();
    std::vector<std::pair<unsigned, std::size_t>> take;  // slot, from copy
    for (unsigned s = 0; s < params.slots && !deniable; ++s) {
        if (std::find(held.begin(), held.end(), s) != held.end()) continue;
        for (std::size_t c = 0; c < copies.size(); ++c) {
            const Matrix& theirs = copies[c]->matrix();
            if (theirs.same_slot(now, s)) continue;
            if (!base) {
                keep(c, "slot " + std::to_string(s) + " differs and no key for it was given (give its key, or --base "
                                                      "with the version before the conflict)");
                continue;
            }
            const Matrix& old = base->matrix();
            if (theirs.capacity() != now.capacity() || old.capacity() != now.capacity()) {
                keep(c, "slot " + std::to_string(s) + " differs and the capacities differ: give its key to merge it");
            } else if (theirs.same_slot(old, s)) {
                // Changed here only: the storage is newer.
            } else if (now.same_slot(old, s)) {
                if (std::any_of(take.begin(), take.end(), [&](const auto& t) { return t.first == s; }))
                    keep(c, "slot " + std::to_string(s) + " changed in several copies: give its key to merge it");
                else
                    take.emplace_back(s, c);
            } else {
                keep(c, "slot " + std::to_string(s) + " changed on both sides: give its key to merge it");
            }
        }
    }
    for (std::size_t c = 0; c < copies.size(); ++c) {
        std::vector<unsigned> slots;
        for (const auto& [s, from] : take)
            if (from == c) slots.push_back(s);
        if (slots.empty()) continue;
        store.copy_slots_from(copies[c]->matrix(), slots);
        report.changed = true;
        for (unsigned s : slots)
            report.lines.push_back("slot " + std::to_string(s) + ": taken from " + name_of(names[c]) +
                                   " (changed there only)");
    }
    for (std::size_t c = 0; c < copies.size(); ++c) (keep_copy[c] ? report.kept : report.merged).push_back(names[c]);
    return report;
}

}  // namespace shamirfs
