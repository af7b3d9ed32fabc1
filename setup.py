"""Builds the C engine, resil._resil, from csrc/core and csrc/py.

RESIL_DEBUG=1 builds with -O0 -g and assertions; RESIL_SANITIZE=1 adds
AddressSanitizer and UndefinedBehaviorSanitizer; RESIL_WERROR=1 (set by the
Makefile) turns warnings into errors. A user's `pip install` never sets it:
a newer compiler's new warning must not break their install.
"""

import glob
import os

from setuptools import Extension, setup

debug = os.environ.get("RESIL_DEBUG") == "1"
sanitize = os.environ.get("RESIL_SANITIZE") == "1"
werror = os.environ.get("RESIL_WERROR") == "1"

# Hidden visibility: only PyInit__resil is exported, so LTO may inline the
# core into the binding (exported symbols could be interposed).
compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                "-fno-strict-aliasing", "-fvisibility=hidden"]
if werror:
    compile_args.append("-Werror")
link_args: list[str] = []
undef: list[str] = []
macros: list[tuple[str, str | None]] = []
if debug:
    compile_args += ["-O0", "-g"]
    undef.append("NDEBUG")
    macros.append(("RS_DEBUG", "1"))
else:
    # LTO lets the binding and the core inline across files (window, ring, breaker).
    compile_args += ["-O3", "-flto=auto"]
    link_args += ["-O3", "-flto=auto"]
if sanitize:
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    compile_args += flags
    link_args += flags

sources = sorted(glob.glob("csrc/core/*.c")) + sorted(glob.glob("csrc/py/*.c"))

setup(
    ext_modules=[
        Extension(
            "resil._resil",
            sources=sources,
            depends=sorted(glob.glob("csrc/core/*.h")) + sorted(glob.glob("csrc/py/*.h")),
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            undef_macros=undef,
            define_macros=macros,
        )
    ],
)
