// Errors of the core library. Exceptions inside the core; the CLI maps them to
// exit codes (src/cli/main.cpp) and the FUSE layer to errno, each at one place.
#pragma once
#include <stdexcept>
#include <string>

namespace shamirfs {

enum class Errc {
    internal = 1,     // a bug or an unexpected library failure
    usage,            // bad parameters given by the caller
    io,               // the storage or another file could not be read/written
    no_space,         // ENOSPC / EDQUOT while writing
    corrupt,          // the storage file is not a valid storage of a known version
    malformed_key,    // the partition map key fails its syntax or checksum
    auth_failed,      // wrong key, wrong password, or no such partition: one message
    damaged,          // authenticated, but the partition's data cannot be recovered
    invalid_json,     // a document to store is not valid JSON
    too_large,        // a document or storage exceeds a documented cap
    busy,             // the storage lock could not be taken
    read_only,        // the storage cannot be written (read-only directory or file)
};

class Error : public std::runtime_error {
public:
    Error(Errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
    Errc code() const noexcept { return code_; }

private:
    Errc code_;
};

// The one message for every authentication failure (DESIGN: wrong key, wrong
// password and a missing partition must be indistinguishable).
inline constexpr const char* kAuthFailedMessage =
    "cannot unlock: wrong partition map key or password";

[[noreturn]] void throw_errno(const std::string& context, int err);

}  // namespace shamirfs
