"""Conan 2 recipe of tessera, a header-only library of SIMD compute kernels.

The package contains the headers and the CMake helper tessera_add_runtime_dispatch
(a CMakeDeps build module). xsimd and Eigen come from Conan, or from the
system through a profile's [platform_requires]. With the option with_openmp
the OpenMP compiler and linker flag reaches consumers through cpp_info.
"""
import os
import re

from conan import ConanFile
from conan.errors import ConanException
from conan.tools.cmake import CMake, CMakeToolchain, cmake_layout
from conan.tools.files import load


class TesseraConan(ConanFile):
    name = "tessera"
    description = "Header-only C++17 SIMD compute kernels (xsimd) with scalar reference paths"
    license = "Apache-2.0"
    topics = ("simd", "xsimd", "quantization", "retrieval", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"with_openmp": [True, False]}
    default_options = {"with_openmp": True}
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*"
    no_copy_source = True

    def set_version(self):
        # The version is the one of project() in CMakeLists.txt, so there is one place to bump.
        cmake_lists = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        match = re.search(r"project\(\s*tessera\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", cmake_lists)
        if not match:
            raise ConanException("conanfile.py: no 'project(tessera VERSION x.y.z' in CMakeLists.txt")
        self.version = match.group(1)

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # xsimd 8.1 (Debian 12) to 13.x (Conan Center) and Eigen 3.4 or 5.x are supported.
        self.requires("xsimd/[>=8.1 <14]")
        self.requires("eigen/[>=3.4 <6]")

    def package_id(self):
        # Headers only: one package serves every setting and option.
        self.info.clear()

    def generate(self):
        toolchain = CMakeToolchain(self)
        toolchain.cache_variables["TESSERA_BUILD_TESTS"] = False
        toolchain.cache_variables["TESSERA_BUILD_BENCHMARKS"] = False
        toolchain.cache_variables["TESSERA_BUILD_EXAMPLES"] = False
        toolchain.cache_variables["TESSERA_NATIVE"] = False
        toolchain.generate()

    def package(self):
        # tessera's own install rules place the headers, LICENSE is copied by hand. Configuring
        # needs xsimd and Eigen, which CMake finds in the system or through CMAKE_PREFIX_PATH.
        cmake = CMake(self)
        cmake.configure()
        cmake.install()
        licenses = os.path.join(self.package_folder, "licenses")
        os.makedirs(licenses, exist_ok=True)
        with open(os.path.join(self.source_folder, "LICENSE"), "rb") as source:
            with open(os.path.join(licenses, "LICENSE"), "wb") as target:
                target.write(source.read())

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "tessera")
        self.cpp_info.set_property("cmake_target_name", "tessera::tessera")
        self.cpp_info.requires = ["xsimd::xsimd", "eigen::eigen"]
        # tessera_add_runtime_dispatch, loaded by find_package(tessera) in CMakeDeps consumers.
        self.cpp_info.builddirs = [os.path.join("share", "cmake", "tessera")]
        self.cpp_info.set_property(
            "cmake_build_modules", [os.path.join("share", "cmake", "tessera", "tesseraDispatch.cmake")]
        )
        if self.options.with_openmp:
            # GCC and clang (with libomp) spell OpenMP the same way.
            self.cpp_info.cxxflags = ["-fopenmp"]
            self.cpp_info.sharedlinkflags = ["-fopenmp"]
            self.cpp_info.exelinkflags = ["-fopenmp"]
