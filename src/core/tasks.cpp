#include "shamirfs/tasks.hpp"

#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace shamirfs::tasks {
namespace {

struct Pool {
    std::mutex mutex;
    std::condition_variable posted;
    std::deque<std::function<void()>> queue;
    unsigned waiting = 0;  // threads waiting for work

    // A thread's life after its first task: the next ones, while at most
    // kKeep threads wait.
    void serve() {
        std::unique_lock lock(mutex);
        while (waiting < kKeep) {
            ++waiting;
            posted.wait(lock, [this] { return !queue.empty(); });
            --waiting;
            auto work = std::move(queue.front());
            queue.pop_front();
            lock.unlock();
            work();
            work = nullptr;  // (what it holds goes now, not when the next task comes)
            lock.lock();
        }
    }
};

// This process's pool; a child of fork(2) has none of its parent's threads.
// (Never destroyed: its threads may be waiting on it at exit.)
Pool& pool() {
    static std::mutex mutex;
    static Pool* p = nullptr;
    static pid_t owner = 0;
    std::lock_guard lock(mutex);
    if (p == nullptr || owner != ::getpid()) {
        p = new Pool;
        owner = ::getpid();
    }
    return *p;
}

}  // namespace

void post(std::function<void()> work) {
    Pool& p = pool();
    {
        std::lock_guard lock(p.mutex);
        if (p.waiting > p.queue.size()) {  // a waiting thread takes it
            p.queue.push_back(std::move(work));
            p.posted.notify_one();
            return;
        }
    }
    std::thread([&p, first = std::move(work)]() mutable {
        first();
        first = nullptr;
        p.serve();
    }).detach();
}

}  // namespace shamirfs::tasks
