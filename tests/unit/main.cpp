#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "shamirfs/log.hpp"

int main(int argc, char** argv) {
    shamirfs::log::set_level(shamirfs::log::Level::warn);
    return Catch::Session().run(argc, argv);
}
