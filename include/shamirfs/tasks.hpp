// Work for other threads, run by threads that are kept waiting for it.
//
// Starting a thread costs little, but Linux mostly puts a new thread on its
// parent's core, where it waits while the parent keeps running: up to a
// scheduler slice (2.5 ms measured on a 2-core VM, where a whole commit of a
// 1 MB document takes 5). A thread that waits for work is woken on an idle
// core within microseconds. So a task goes to a waiting thread, or to a new
// one when every thread is busy: tasks may wait for one another, and none
// ever waits for a thread. Up to kKeep threads are kept; a child of fork(2)
// (the daemon) starts its own.
#pragma once
#include <functional>
#include <future>
#include <memory>
#include <type_traits>

namespace shamirfs::tasks {

inline constexpr unsigned kKeep = 8;

// Runs `work` (which must not throw) on a kept or a new thread. Throws
// std::system_error if no thread can be started.
void post(std::function<void()> work);

// std::async(std::launch::async, f) on a kept thread.
template <class F>
std::future<std::invoke_result_t<F>> async(F&& f) {
    auto task = std::make_shared<std::packaged_task<std::invoke_result_t<F>()>>(std::forward<F>(f));
    auto result = task->get_future();
    post([task] { (*task)(); });
    return result;
}

}  // namespace shamirfs::tasks
