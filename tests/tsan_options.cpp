// ThreadSanitizer's default options for the unit tests, compiled in only by ThreadSanitizer
// builds (tests/CMakeLists.txt). A function rather than TSAN_OPTIONS in the tests' environment,
// because ctest's ENVIRONMENT list does not survive catch_discover_tests intact.
//
// - halt_on_error: the first report fails the test case.
// - ignore_noninstrumented_modules: libomp is not instrumented; its synchronisation reaches
//   ThreadSanitizer through the archer tool (OMP_TOOL_LIBRARIES) instead.
extern "C" const char* __tsan_default_options()
{
    return "halt_on_error=1:ignore_noninstrumented_modules=1";
}
