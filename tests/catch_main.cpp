// The main function of the unit tests under Catch2 v2. Catch2 v3 builds do not compile this
// file, because they link Catch2::Catch2WithMain instead.
#define CATCH_CONFIG_MAIN
#include "catch.hpp"
