// The task pool (tasks.hpp): results and errors come back, no task waits for
// a thread, threads are kept, and a child of fork(2) has a pool of its own.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "shamirfs/tasks.hpp"

using namespace shamirfs;

TEST_CASE("tasks: results and exceptions come back through the future", "[tasks]") {
    auto sum = tasks::async([] { return 20 + 22; });
    CHECK(sum.get() == 42);
    auto failing = tasks::async([]() -> int { throw std::runtime_error("from the task"); });
    CHECK_THROWS_WITH(failing.get(), "from the task");
}

TEST_CASE("tasks: every task gets a thread, even when all are busy", "[tasks]") {
    // Each task waits until all have started: with a fixed number of threads
    // (fewer than the tasks) this would never end.
    constexpr int kTasks = static_cast<int>(tasks::kKeep) + 6;
    std::atomic<int> started{0};
    std::vector<std::future<bool>> all;
    for (int i = 0; i < kTasks; ++i)
        all.push_back(tasks::async([&] {
            ++started;
            const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (started < kTasks && std::chrono::steady_clock::now() < until) std::this_thread::yield();
            return started == kTasks;
        }));
    for (auto& f : all) CHECK(f.get());
}

TEST_CASE("tasks: threads are kept for the next tasks", "[tasks]") {
    // One after another, each task says whether its thread ran one before.
    // New threads each time would say no every time; kept ones say yes but
    // for the first task of each thread, and at most kKeep threads wait
    // (plus the ones still finishing a task).
    int again = 0;
    for (int i = 0; i < 50; ++i) again += tasks::async([] {
                                               thread_local bool ran = false;
                                               return std::exchange(ran, true);
                                           }).get();
    CHECK(again >= 50 - 2 * static_cast<int>(tasks::kKeep));
}

TEST_CASE("tasks: a child of fork has a pool of its own", "[tasks]") {
    tasks::async([] {}).get();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // its thread waits for work again: the child has none

    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::alarm(20);  // a task left queued for a thread that is not there would hang
        const bool ran = tasks::async([] { return true; }).get();
        ::_exit(ran ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
