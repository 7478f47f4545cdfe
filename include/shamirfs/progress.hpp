// How far the long step of this process has come, for a progress display on a
// terminal (the CLI shows it; nothing else reads it): work units done out of a
// total. Any thread may advance it.
#pragma once
#include <cstdint>

namespace shamirfs::progress {

void start(std::uint64_t total);  // a new step (resets what was done)
void advance(std::uint64_t n = 1);
// Done / total of the current step, or a negative number before the first.
double fraction();

}  // namespace shamirfs::progress
